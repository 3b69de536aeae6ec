//! `aepiot-stream webhooks` (and `run --webhooks`): wires the output-topic consumer, the partition
//! readers, the endpoints' lanes, the dead-letter producer and (standalone) the metrics server,
//! and shuts them down in order.
//!
//! Shutdown (SIGTERM/SIGINT, or the embedding `run` stopping): every reader stops reading, waits
//! for its in-flight records within `drain_timeout_ms` and abandons the rest; the stored offsets
//! are committed synchronously; the consumer leaves the group; the dead-letter producer is
//! flushed. A dead letter that cannot be written stops the service with an error, without
//! committing past that record.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;

use super::consumer::WebhookConsumerCtx;
use super::lane::{self, LaneEnv};
use super::partition::PartitionEnv;
use super::policy::RetryPolicy;
use super::request;
use super::sign::Secret;
use super::startup;
use crate::config::Config;
use crate::http::{self, Health};
use crate::kafka::main_queue;
use crate::metrics::Metrics;

/// Hooks for embedding (`run --webhooks`, tests).
#[derive(Clone, Default)]
pub struct WebhookHooks {
    /// Metrics to count into (`run --webhooks` shares the pipeline's); a new set when `None`.
    pub metrics: Option<Metrics>,
    /// Do not serve `metrics_addr`: the embedding program already serves the shared metrics.
    pub no_metrics_server: bool,
}

/// Runs until `shutdown` is cancelled (clean stop) or a dead letter cannot be written (error).
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    hooks: WebhookHooks,
) -> anyhow::Result<()> {
    config.validate_for_webhooks()?;
    let w = &config.webhooks;
    // URLs and secrets first: a misconfiguration fails before anything connects.
    let targets = targets(w)?;

    let metrics = hooks.metrics.clone().unwrap_or_default();
    let health = Arc::new(Health::default());
    let server_stop = CancellationToken::new();
    if !hooks.no_metrics_server && !config.metrics_addr.is_empty() {
        let addr = http::serve(
            &config.metrics_addr,
            metrics.clone(),
            health.clone(),
            server_stop.clone(),
        )
        .await?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    let _server_guard = server_stop.drop_guard();

    startup::check(&config).await?;

    let producer: FutureProducer = startup::producer_config(&config)
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
    let producer = Arc::new(producer);
    let fatal = CancellationToken::new();
    let client = request::client(Duration::from_millis(w.timeout_ms), w.concurrency)
        .map_err(|e| anyhow::anyhow!("cannot create the HTTP client: {e}"))?;
    let lane_env = Arc::new(LaneEnv {
        client,
        policy: RetryPolicy {
            max_attempts: w.max_attempts,
            base: Duration::from_millis(w.backoff_base_ms),
            max: Duration::from_millis(w.backoff_max_ms),
            retry_after_max: Duration::from_secs(w.retry_after_max_secs),
        },
        producer: producer.clone(),
        dead_letter_topic: w.dead_letter_topic.clone(),
        metrics: metrics.clone(),
        fatal: fatal.clone(),
    });
    let endpoints = targets
        .into_iter()
        .enumerate()
        .map(|(i, (url, regions, secret))| {
            lane::start(lane_env.clone(), i, url, regions, secret, w.concurrency)
        })
        .collect();

    let ctx = WebhookConsumerCtx::new(
        tokio::runtime::Handle::current(),
        metrics.clone(),
        health.clone(),
    );
    let consumer: BaseConsumer<WebhookConsumerCtx> = startup::consumer_config(&config)
        .create_with_context(ctx)
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
    let consumer = Arc::new(consumer);
    let offsets = Arc::downgrade(&consumer);
    let offsets: std::sync::Weak<dyn crate::kafka::offsets::OffsetStore> = offsets;
    let env = Arc::new(PartitionEnv {
        consumer: offsets,
        endpoints,
        max_pending: w.max_pending_per_partition,
        drain_timeout: Duration::from_millis(config.drain_timeout_ms),
        fatal: fatal.clone(),
    });
    consumer.context().attach(Arc::downgrade(&consumer), env);
    // Every output topic of the main cluster: each region's records, wherever they go.
    let topics = config.output_topics();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {topics:?}: {e}"))?;
    tracing::info!(
        ?topics,
        group = %config.webhooks_group_id(),
        endpoints = w.endpoints.len(),
        dead_letter_topic = %w.dead_letter_topic,
        "delivering webhooks"
    );

    let stop = CancellationToken::new();
    let poller = {
        let stop = stop.clone();
        let health = health.clone();
        std::thread::Builder::new()
            .name("aepiot-webhooks".into())
            .spawn(move || poll_until_stopped(consumer, stop, health))?
    };
    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("webhooks: shutting down, draining partitions"),
        _ = fatal.cancelled() => tracing::error!("webhooks: stopping after a fatal error"),
    }
    stop.cancel();
    crate::kafka::shutdown::wait(poller, config.drain_timeout_ms, "webhook consumer").await?;
    let flushed =
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await?;
    if let Err(e) = flushed {
        tracing::warn!(error = %e, "dead-letter producer flush did not complete");
    }
    if fatal.is_cancelled() {
        anyhow::bail!("webhooks stopped: a webhook dead letter could not be written to Kafka (see the log); offsets were not committed past it");
    }
    tracing::info!("webhooks stopped cleanly");
    Ok(())
}

/// An endpoint's URL, region filter and signing secret.
type Target = (reqwest::Url, Vec<String>, Option<Secret>);

/// Each endpoint's [`Target`] (its secret read from the environment or a file).
fn targets(w: &super::config::WebhooksConfig) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::with_capacity(w.endpoints.len());
    for (i, e) in w.endpoints.iter().enumerate() {
        let url = reqwest::Url::parse(&e.url)
            .map_err(|_| anyhow::anyhow!("webhooks.endpoints[{i}].url is not a URL"))?;
        let secret = Secret::load(e.secret_env.as_deref(), e.secret_file.as_deref(), |k| {
            std::env::var(k).ok()
        })
        .map_err(|m| anyhow::anyhow!("webhooks.endpoints[{i}]: {m}"))?;
        targets.push((url, e.regions.clone(), secret));
    }
    Ok(targets)
}

/// The consumer's main-queue loop, on its own thread: serves rebalance callbacks and keeps the
/// group membership alive however long deliveries take.
fn poll_until_stopped(
    consumer: Arc<BaseConsumer<WebhookConsumerCtx>>,
    stop: CancellationToken,
    health: Arc<Health>,
) {
    main_queue::serve(&consumer, &stop, "webhooks", || {
        if let Some(env) = consumer.context().env() {
            env.fatal.cancel();
        }
    });
    health.set_ready(false);
    consumer.context().stop(&consumer, None);
    drop(consumer);
}
