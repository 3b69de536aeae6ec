//! `aepiot-stream webhooks` (and `run --webhooks`): wires one output-topic consumer per endpoint
//! (each in a group of its own, so an endpoint that is down holds back no other), its partition
//! readers and lanes, the dead-letter producer and (standalone) the metrics server, and shuts them
//! down in order.
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
use super::health::HealthPolicy;
use super::lane::{self, LaneEnv};
use super::partition::PartitionEnv;
use super::policy::RetryPolicy;
use super::request;
use super::sign::Secret;
use super::startup;
use super::upgrade;
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
    let targets = targets(&config)?;

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

    let otel = crate::otel::Otel::start(&config.tracing, &config.group_id, &metrics)?;
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
        health: HealthPolicy {
            down_after: w.down_after_failures,
            outage_max: Duration::from_secs(w.outage_max_secs),
        },
        producer: producer.clone(),
        dead_letter_topic: w.dead_letter_topic.clone(),
        metrics: metrics.clone(),
        fatal: fatal.clone(),
        otel: otel.clone(),
    });
    upgrade::seed_endpoint_groups(&config).await?;
    let stop = CancellationToken::new();
    let mut pollers = Vec::with_capacity(targets.len());
    for (i, target) in targets.into_iter().enumerate() {
        let endpoint = lane::start(
            lane_env.clone(),
            i,
            &target.name,
            target.url,
            target.regions,
            target.secret,
            w.concurrency,
        );
        let env = Shared {
            metrics: &metrics,
            health: &health,
            fatal: &fatal,
            stop: &stop,
            otel: &otel,
        };
        pollers.push(start_endpoint(&config, i, &target.group, endpoint, env)?);
    }

    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("webhooks: shutting down, draining partitions"),
        _ = fatal.cancelled() => tracing::error!("webhooks: stopping after a fatal error"),
    }
    stop.cancel();
    // The pollers drain at the same time, each within the drain deadline.
    let waits = pollers
        .into_iter()
        .map(|p| crate::kafka::shutdown::wait(p, config.drain_timeout_ms, "webhook consumer"));
    for r in futures::future::join_all(waits).await {
        r?;
    }
    let flushed =
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await?;
    if let Err(e) = flushed {
        tracing::warn!(error = %e, "dead-letter producer flush did not complete");
    }
    crate::otel::finish(otel, ()).await;
    if fatal.is_cancelled() {
        anyhow::bail!("webhooks stopped: a webhook dead letter could not be written to Kafka (see the log); offsets were not committed past it");
    }
    tracing::info!("webhooks stopped cleanly");
    Ok(())
}

/// One endpoint: its name and consumer group, URL, region filter and signing secret.
struct Target {
    name: String,
    group: String,
    url: reqwest::Url,
    regions: Vec<String>,
    secret: Option<Secret>,
}

/// Each endpoint's [`Target`] (its secret read from the environment or a file).
fn targets(config: &Config) -> anyhow::Result<Vec<Target>> {
    let w = &config.webhooks;
    let mut targets = Vec::with_capacity(w.endpoints.len());
    for (i, e) in w.endpoints.iter().enumerate() {
        let url = reqwest::Url::parse(&e.url)
            .map_err(|_| anyhow::anyhow!("webhooks.endpoints[{i}].url is not a URL"))?;
        let secret = Secret::load(e.secret_env.as_deref(), e.secret_file.as_deref(), |k| {
            std::env::var(k).ok()
        })
        .map_err(|m| anyhow::anyhow!("webhooks.endpoints[{i}]: {m}"))?;
        targets.push(Target {
            name: e.name(),
            group: config.webhook_endpoint_group(e),
            url,
            regions: e.regions.clone(),
            secret,
        });
    }
    Ok(targets)
}

/// What every endpoint's consumer shares.
struct Shared<'a> {
    metrics: &'a Metrics,
    health: &'a Arc<Health>,
    fatal: &'a CancellationToken,
    stop: &'a CancellationToken,
    otel: &'a Option<Arc<crate::otel::Otel>>,
}

/// Starts one endpoint's consumer, in the endpoint's own group, subscribed to every output topic
/// of the main cluster (each region's records, wherever they go); returns its polling thread.
fn start_endpoint(
    config: &Config,
    index: usize,
    group: &str,
    endpoint: Arc<lane::Endpoint>,
    shared: Shared<'_>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let ctx = WebhookConsumerCtx::new(
        tokio::runtime::Handle::current(),
        shared.metrics.clone(),
        shared.health.clone(),
    );
    let consumer: BaseConsumer<WebhookConsumerCtx> = startup::consumer_config(config, group)
        .create_with_context(ctx)
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
    let consumer = Arc::new(consumer);
    let offsets = Arc::downgrade(&consumer);
    let offsets: std::sync::Weak<dyn crate::kafka::offsets::OffsetStore> = offsets;
    let name = endpoint.health.name().to_owned();
    let env = Arc::new(PartitionEnv {
        consumer: offsets,
        endpoints: vec![endpoint],
        max_pending: config.webhooks.max_pending_per_partition,
        drain_timeout: Duration::from_millis(config.drain_timeout_ms),
        fatal: shared.fatal.clone(),
        otel: shared.otel.clone(),
    });
    consumer.context().attach(Arc::downgrade(&consumer), env);
    let topics = config.output_topics();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {topics:?}: {e}"))?;
    tracing::info!(
        ?topics,
        endpoint = %name,
        %group,
        dead_letter_topic = %config.webhooks.dead_letter_topic,
        "delivering webhooks"
    );
    let (stop, health) = (shared.stop.clone(), shared.health.clone());
    Ok(std::thread::Builder::new()
        .name(format!("aepiot-webhooks-{index}"))
        .spawn(move || poll_until_stopped(consumer, stop, health))?)
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
