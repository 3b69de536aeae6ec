//! Start-up of the webhook service: its Kafka client settings, and the checks that the brokers
//! answer, the output topic exists (waiting for it within `startup_timeout_ms`: with
//! `run --webhooks` the pipeline may be creating it) and the webhook dead-letter topic exists (or
//! is created with `create_topics`).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;

use crate::config::Config;
use crate::kafka::client::{base, group_consumer, overlay};
use crate::kafka::startup::{metadata_until, LastError};

/// One endpoint's consumer of the output topic: the endpoint's own group, read_committed (only records of committed
/// transactions are delivered), offsets stored only once a record is finished and committed from
/// the store every second and at every revoke and shutdown.
pub fn consumer_config(config: &Config, group: &str) -> ClientConfig {
    let mut c = group_consumer(config, "webhooks-consumer", group);
    c.set("isolation.level", "read_committed")
        // Prefetch bounded per partition, as the processor's input: a consumer per endpoint, and
        // one whose endpoint is down reads nothing for as long as the outage lasts.
        .set("queued.min.messages", "10000")
        .set("queued.max.messages.kbytes", "4096");
    overlay(c, config)
}

/// The dead-letter producer: idempotent, acknowledged by all in-sync replicas.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = base(config, "webhooks-producer");
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    overlay(c, config)
}

/// Runs the checks, creating the dead-letter topic if configured. The brokers are reached as the
/// processor reaches them ([`metadata_until`]): a refused password or certificate stops the
/// service at once, naming the refusal, instead of being retried until the timeout.
pub async fn check(config: &Config) -> anyhow::Result<()> {
    let client = overlay(base(config, "webhooks-admin"), config);
    let admin: AdminClient<DefaultClientContext> = client
        .create()
        .map_err(|e| anyhow::anyhow!("invalid Kafka client settings: {e}"))?;
    let probe: BaseProducer<LastError> = client
        .create_with_context(LastError::default())
        .map_err(|e| anyhow::anyhow!("invalid Kafka client settings: {e}"))?;
    let deadline = Instant::now() + Duration::from_millis(config.startup_timeout_ms);
    let dlq = &config.webhooks.dead_letter_topic;
    loop {
        let m = metadata_until(&probe, &config.brokers, config, deadline).await?;
        let exists = |t: &str| {
            m.topics()
                .iter()
                .any(|x| x.name() == t && !x.partitions().is_empty())
        };
        let missing_output = config.output_topics().into_iter().find(|t| !exists(t));
        let (out, dl) = (missing_output.is_none(), exists(dlq));
        if out && dl {
            return Ok(());
        }
        if out && config.create_topics {
            return create(&admin, config, dlq).await;
        }
        if Instant::now() >= deadline {
            if let Some(topic) = missing_output {
                anyhow::bail!(
                    "output topic {topic:?} does not exist (the webhook service reads it)"
                );
            }
            anyhow::bail!("webhook dead-letter topic {dlq:?} does not exist (create it, or set create_topics = true)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn create(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    topic: &str,
) -> anyhow::Result<()> {
    let new = NewTopic::new(
        topic,
        config.create_topics_partitions,
        TopicReplication::Fixed(-1),
    );
    let results = admin
        .create_topics(
            &[new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot create topic {topic:?}: {e}"))?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => anyhow::bail!("cannot create topic {t:?}: {code}"),
        }
    }
    Ok(())
}
