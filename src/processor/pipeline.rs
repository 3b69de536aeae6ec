//! `aepiot-stream run`: wires the consumer, the partition workers, the producers and the metrics
//! server together, and shuts them down in order. [`run`] goes through five phases, one function
//! each, in this order:
//!
//! 1. [`serve`]: the metrics server (`/metrics`, the probes, the status page) on the listener the
//!    caller bound, so a probe answers while the rest waits for the cluster;
//! 2. [`check`]: the start-up checks (brokers, topics, `--start-from`, the output topics' size
//!    limit); a shutdown during them stops at once;
//! 3. [`restore_topics`]: the state changelog topic of every named input topic exists before a
//!    partition is assigned, for its worker to restore the partition's device state from;
//! 4. [`consume`]: a producer per cluster (warmed up, transactional under exactly-once), the
//!    consumer and its threads; from here partitions are restored and processed by their
//!    workers as the group assigns them;
//! 5. [`drain`]: on SIGTERM/SIGINT or a fatal cause, the shutdown below.
//!
//! Shutdown (SIGTERM/SIGINT): every worker stops reading and drains its in-flight outputs within
//! `drain_timeout_ms`; the stored offsets are committed synchronously; the consumer leaves the
//! group; the producer is flushed. Exit 0. A delivery failure instead stops the instance without
//! committing past the failed record, and `run` returns an error (non-zero exit).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{Producer as _, ThreadedProducer};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::acks::{main_producer, AckRouter, ProducerCtx};
use super::changelog;
use super::fatal::{Fatal, FatalCause};
use super::progress::log_progress;
use super::rebalance::ConsumerCtx;
use super::shared_producer::{Producer, SharedProducer};
use super::transactions::{call_timeout, MakeProducer, Transactions};
use super::txn_calls::TxnId;
use super::worker_env::{ChangelogEnv, Step, WorkerEnv};
use crate::config::{Config, Guarantee, OffsetReset};
use crate::core::{EngineSettings, Shared};
use crate::http::{self, Health};
use crate::kafka::client::{
    admin_config, consumer_config, producer_config, regional_producer_config,
};
use crate::kafka::main_queue;
use crate::kafka::shutdown;
use crate::kafka::startup;
use crate::metrics::Metrics;
use crate::status::StatusHub;

/// Hooks for embedding (`demo`, tests): shared metrics and what replaces a broker's answer.
#[derive(Clone, Default)]
pub struct RunHooks {
    pub metrics: Option<Metrics>,
    /// Forward records unprocessed (the benchmark's reference; see [`crate::passthrough`]).
    pub passthrough: bool,
    /// `run --start-from`: a group with no committed offsets starts at this time
    /// (see [`crate::replay`]).
    pub start_from: Option<crate::replay::StartFrom>,
    /// The output topics' size limit when the caller knows it, instead of asking the brokers.
    /// The demo's mock cluster never answers that admin request, so the demo passes the limit and
    /// does not wait out the request's timeout.
    pub max_output_bytes: Option<usize>,
}

/// Runs until `shutdown` is cancelled (clean exit) or an output cannot be delivered (error).
/// `listener`: where to serve the metrics server (see [`crate::http::bind`]); none without one.
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
    hooks: RunHooks,
) -> anyhow::Result<()> {
    config.validate_for_run()?;
    let metrics = hooks.metrics.clone().unwrap_or_default();
    let (served, _server) = serve(&config, listener, &metrics)?;
    let otel = crate::otel::Otel::start(&config.tracing, &config.group_id, &metrics)?;
    let Some(max_output_bytes) = check(&config, &hooks, &shutdown).await? else {
        tracing::info!("stopped during the start-up checks");
        return Ok(());
    };
    let Some(encoding) =
        super::output_schema::record_encoding(&config, &served.health, &shutdown).await?
    else {
        tracing::info!("stopped while waiting for the Schema Registry");
        return Ok(());
    };
    let ensured = restore_topics(&config).await?;
    let settings = EngineSettings {
        record_encoding: encoding,
        ..config.run_engine_settings(max_output_bytes)
    };
    let consuming = consume(&config, &hooks, served, settings, (ensured, otel.clone())).await?;
    crate::otel::finish(otel, drain(consuming, &config, &shutdown).await).await
}

/// What the metrics server shares with the pipeline.
struct Served {
    metrics: Metrics,
    health: Arc<Health>,
    status: Option<Arc<StatusHub>>,
}

/// Phase 1: serves the metrics server on `listener` (with the status page if configured), until
/// the returned guard is dropped.
fn serve(
    config: &Config,
    listener: Option<TcpListener>,
    metrics: &Metrics,
) -> anyhow::Result<(Served, DropGuard)> {
    let health = Arc::new(Health::default());
    let server_stop = CancellationToken::new();
    let status = (config.status_page && listener.is_some())
        .then(|| StatusHub::new(config, metrics.clone(), health.clone()));
    if let Some(listener) = listener {
        let addr = http::serve_on(
            listener,
            metrics.clone(),
            health.clone(),
            status.as_ref().map(|s| s.routes()).unwrap_or_default(),
            server_stop.clone(),
        )?;
        if let Some(s) = &status {
            s.start(server_stop.clone());
        }
        tracing::info!(%addr, status_page = status.is_some(), "serving /metrics, /healthz, /readyz");
    }
    let served = Served {
        metrics: metrics.clone(),
        health,
        status,
    };
    Ok((served, server_stop.drop_guard()))
}

/// Phase 2: the start-up checks; returns the largest output record the brokers take, or `None`
/// when `shutdown` came while they still waited.
async fn check(
    config: &Config,
    hooks: &RunHooks,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<usize>> {
    tokio::select! {
        r = startup::check(config) => r?,
        // SIGTERM while start-up still waits (for a broker, a topic): stop at once.
        _ = shutdown.cancelled() => return Ok(None),
    }
    if let Some(from) = &hooks.start_from {
        crate::replay::start_from(config, from).await?;
    }
    Ok(Some(match hooks.max_output_bytes {
        Some(limit) => limit,
        None => super::output_limit::max_output_bytes(config).await?,
    }))
}

/// Phase 3: creates the state changelog topic of every input topic named in the configuration,
/// if missing; returns those input topics. Topics matched by a pattern get theirs when first
/// assigned (see the worker's restore).
async fn restore_topics(config: &Config) -> anyhow::Result<HashSet<String>> {
    let mut ensured = HashSet::new();
    if !config.state_changelog {
        return Ok(ensured);
    }
    for topic in config
        .input_topics
        .iter()
        .filter(|t| !t.is_empty() && !t.starts_with('^'))
    {
        let (admin, topic, changelog) = (
            admin_config(config),
            topic.clone(),
            config.changelog_topic(topic),
        );
        let (t, rf) = (topic.clone(), config.topics.replication_factor);
        tokio::task::spawn_blocking(move || {
            changelog::ensure_replicated_topic(&admin, &t, &changelog, rf)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("state changelog: {e}"))?;
        ensured.insert(topic);
    }
    Ok(ensured)
}

/// The pipeline while it consumes: what [`drain`] stops.
struct Consuming {
    fatal: Arc<Fatal>,
    /// Stops the consumer's thread, the commit thread and the progress log.
    stop: CancellationToken,
    poller: std::thread::JoinHandle<()>,
    progress: tokio::task::JoinHandle<()>,
}

/// Phase 4: the producers, the consumer with its workers' environment, and the threads that
/// serve them; the group assigns partitions from here on.
async fn consume(
    config: &Config,
    hooks: &RunHooks,
    served: Served,
    settings: EngineSettings,
    (ensured, otel): (HashSet<String>, Option<Arc<crate::otel::Otel>>),
) -> anyhow::Result<Consuming> {
    let Served {
        metrics,
        health,
        status,
    } = served;
    let router = Arc::new(AckRouter::default());
    let (producers, routes) = producers(config, hooks.passthrough, &metrics, &router)?;
    warm_up(&producers, &routes, &config.dead_letter_topic).await?;
    let producers: Vec<Arc<SharedProducer>> =
        producers.into_iter().map(SharedProducer::new).collect();
    let txn = match config.processing_guarantee {
        Guarantee::AtLeastOnce => None,
        Guarantee::ExactlyOnce => {
            let (p, m) = (producers[0].clone(), metrics.clone());
            let (timeout, deferred) = (
                call_timeout(&producer_config(config)),
                config.max_deferred_bytes,
            );
            let id = if config.transactional_id.is_empty() {
                TxnId::Derived
            } else {
                TxnId::Configured
            };
            let (client, router, metrics) =
                (producer_config(config), router.clone(), metrics.clone());
            let make: MakeProducer = Box::new(move || main_producer(&client, &router, &metrics));
            Some(Arc::new(
                tokio::task::spawn_blocking(move || {
                    Transactions::start(p, (id, make), m, timeout, deferred)
                })
                .await??,
            ))
        }
    };

    let earliest = config.auto_offset_reset == OffsetReset::Earliest;
    let (partitions, _) = crate::kafka::prefetch::input_share(config, admin_config(config)).await?;
    let ctx = ConsumerCtx::new(
        tokio::runtime::Handle::current(),
        metrics.clone(),
        health.clone(),
        earliest,
        partitions,
    );
    let consumer: BaseConsumer<ConsumerCtx> = consumer_config(config, partitions)
        .create_with_context(ctx)
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
    let consumer = Arc::new(consumer);
    let fatal = Arc::new(Fatal::default());
    let region_topics = routes.region_topics;
    let offsets = Arc::downgrade(&consumer);
    let offsets: std::sync::Weak<dyn crate::kafka::offsets::OffsetStore> = offsets;
    let env = Arc::new(WorkerEnv {
        consumer: offsets,
        producers: producers.clone(),
        region_clusters: routes.region_clusters,
        router,
        shared: Shared::new(settings),
        metrics: metrics.clone(),
        output_topic: config.output_topic.clone(),
        written: region_topics
            .iter()
            .map(|t| metrics.records_written.with_label_values(&[t]))
            .collect(),
        region_topics,
        dead_letter_topic: config.dead_letter_topic.clone(),
        drain_timeout: Duration::from_millis(config.drain_timeout_ms),
        fatal: fatal.clone(),
        gate: txn.as_ref().map(|t| t.gate.clone()),
        deferred: txn.as_ref().map(|t| t.deferred.clone()),
        poison: txn.as_ref().map(|_| Default::default()),
        rewind: txn.as_ref().map(|t| t.rewind.clone()),
        step: if hooks.passthrough {
            Step::Passthrough
        } else {
            Step::Engine
        },
        changelog: config
            .state_changelog
            .then(|| changelog_env(config, ensured)),
        status,
        schema_registry: config.registry_input(health.registry_waits.clone())?,
        otel,
    });
    let exactly_once = txn.is_some();
    consumer
        .context()
        .attach(Arc::downgrade(&consumer), env, txn);
    let topics: Vec<&str> = config
        .input_topics
        .iter()
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {topics:?}: {e}"))?;
    tracing::info!(?topics, group = %config.group_id, output = %config.output_topic, "processing");
    start_threads(
        config,
        consumer,
        producers,
        exactly_once,
        fatal,
        metrics,
        health,
    )
}

/// The producer of each cluster (the main cluster's first, then one per regional cluster, their
/// acks all into `router`: a worker's in-flight tracker sees every output of a record, whichever
/// cluster it went to), and the routes they serve.
fn producers(
    config: &Config,
    passthrough: bool,
    metrics: &Metrics,
    router: &Arc<AckRouter>,
) -> anyhow::Result<(Vec<Producer>, crate::residency::Routes)> {
    let producer = main_producer(&producer_config(config), router, metrics)?;
    let routes = if passthrough {
        // Everything to `output_topic`, counted on its series.
        crate::residency::Routes {
            region_topics: vec![config.output_topic.clone(); config.urls.regions.len().max(1)],
            region_clusters: vec![0; config.urls.regions.len().max(1)],
            clusters: vec![crate::residency::MAIN_CLUSTER.into()],
        }
    } else {
        config.routes()
    };
    let mut producers = vec![Arc::new(producer)];
    for (i, name) in routes.clusters.iter().enumerate().skip(1) {
        let p: ThreadedProducer<ProducerCtx> = regional_producer_config(config, &routes, i)
            .create_with_context(ProducerCtx::new(router.clone(), metrics.clone(), name))
            .map_err(|e| anyhow::anyhow!("cannot create the producer of cluster {name:?}: {e}"))?;
        producers.push(Arc::new(p));
    }
    Ok((producers, routes))
}

/// Where the workers' state changes go and are restored from; `ensured`: the input topics whose
/// changelog exists ([`restore_topics`]).
fn changelog_env(config: &Config, ensured: HashSet<String>) -> ChangelogEnv {
    let client = admin_config(config);
    ChangelogEnv {
        ends: Arc::new(changelog::Ends::new(client.clone())),
        restore_client: client,
        prefix: format!("{}-", config.group_id),
        ensured: std::sync::Mutex::new(ensured),
        interval: Duration::from_millis(config.commit_interval_ms),
        replication_factor: config.topics.replication_factor,
        restores: tokio::sync::Semaphore::new(super::worker_env::RESTORES_AT_ONCE),
    }
}

/// Output topics' metadata into each producer's cache before the first event (see kafka::warm).
async fn warm_up(
    producers: &[Producer],
    routes: &crate::residency::Routes,
    dead_letter_topic: &str,
) -> anyhow::Result<()> {
    let mut per_cluster: Vec<Vec<String>> = vec![Vec::new(); producers.len()];
    for (t, &c) in routes.region_topics.iter().zip(&routes.region_clusters) {
        per_cluster[c].push(t.clone());
    }
    per_cluster[0].push(dead_letter_topic.to_string());
    let producers = producers.to_vec();
    tokio::task::spawn_blocking(move || {
        for (p, topics) in producers.iter().zip(&per_cluster) {
            crate::kafka::warm::warm_up(p.client(), topics, Duration::from_secs(5));
        }
    })
    .await?;
    Ok(())
}

/// The threads of a consuming pipeline: the progress log, the consumer's main-queue loop, and
/// under exactly-once the transaction committer.
fn start_threads(
    config: &Config,
    consumer: Arc<BaseConsumer<ConsumerCtx>>,
    producers: Vec<Arc<SharedProducer>>,
    exactly_once: bool,
    fatal: Arc<Fatal>,
    metrics: Metrics,
    health: Arc<Health>,
) -> anyhow::Result<Consuming> {
    let stop = CancellationToken::new();
    let progress = tokio::spawn(log_progress(
        metrics,
        config.progress_interval_secs,
        stop.clone(),
    ));
    // Exactly-once: commit the transaction every commit interval, from a thread of its own
    // (the calls block).
    let committer = if exactly_once {
        let (weak, stop, every) = (
            Arc::downgrade(&consumer),
            stop.clone(),
            Duration::from_millis(config.commit_interval_ms),
        );
        Some(
            std::thread::Builder::new()
                .name("aepiot-commit".into())
                .spawn(move || {
                    while !stop.is_cancelled() {
                        std::thread::sleep(every);
                        if let Some(consumer) = weak.upgrade() {
                            consumer.context().commit_transaction(&consumer);
                        }
                    }
                })?,
        )
    } else {
        None
    };
    let poller = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("aepiot-consumer".into())
            .spawn(move || poll_until_stopped(consumer, producers, stop, health, committer))?
    };
    Ok(Consuming {
        fatal,
        stop,
        poller,
        progress,
    })
}

/// Phase 5: waits for `shutdown` or a fatal cause, then stops the threads within the shutdown's
/// bound; the fatal cause, if any, is the error.
async fn drain(
    consuming: Consuming,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Consuming {
        fatal,
        stop,
        poller,
        progress,
    } = consuming;
    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("shutting down: draining partitions"),
        _ = fatal.raised() => {}
    }
    stop.cancel();
    shutdown::wait(poller, config.drain_timeout_ms, "consumer").await?;
    let _ = progress.await;
    if let Some(cause) = fatal.cause() {
        anyhow::bail!("stopped: {cause}; offsets were not committed past it");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The consumer's main-queue loop, on its own thread: it serves rebalance callbacks (which may
/// block while partitions drain) until `stop`, then shuts the consumer and producer down.
fn poll_until_stopped(
    consumer: Arc<BaseConsumer<ConsumerCtx>>,
    producers: Vec<Arc<SharedProducer>>,
    stop: CancellationToken,
    health: Arc<Health>,
    committer: Option<std::thread::JoinHandle<()>>,
) {
    main_queue::serve(&consumer, &stop, "processor", || {
        if let Some(env) = consumer.context().env() {
            env.fatal.raise(FatalCause::Consumer(
                "a record arrived on the consumer's main queue (a partition without its own queue)"
                    .into(),
            ));
        }
    });
    health.set_ready(false);
    // A commit waiting for the cluster gives up now: the shutdown must finish.
    consumer.context().close();
    if let Some(c) = committer {
        let _ = c.join();
    }
    consumer.context().stop(&consumer, None);
    // Dropping the last reference closes the consumer: it leaves the group, so the partitions move
    // to the other instances right away instead of after the session timeout.
    drop(consumer);
    // One deadline for all: a regional cluster that is away must not add its own 10 s. What is
    // not flushed was not committed either: the next owner produces it again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for p in producers {
        let p = p.get();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if let Err(e) = p.flush(left) {
            tracing::warn!(cluster = %p.context().cluster(), error = %e, "producer flush did not complete");
        }
    }
}
