//! Start-up checks: the brokers answer, the input topics exist, the output topics exist (or are
//! created). Each failure is a clear error after a bounded retry, so a misconfigured instance
//! exits non-zero instead of idling. While it retries, the log says what it waits for: at the
//! first failed check what is missing and how long it will retry, then progress every
//! [`PROGRESS_EVERY`].

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use std::collections::HashSet;
use std::sync::Mutex;

use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::client::{admin_config, admin_config_on};
use super::replication;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach the Kafka brokers at {brokers} within {secs} s: {last_error}")]
    Unreachable {
        brokers: String,
        secs: u64,
        last_error: String,
    },
    #[error("input topic {0:?} does not exist (create it, or fix input_topics)")]
    MissingInputTopic(String),
    #[error("{role} topic {topic:?}{on} does not exist (create it, or set create_topics = true)")]
    MissingOutputTopic {
        role: &'static str,
        topic: String,
        /// Empty on the main cluster, else ` on cluster "<name>"`.
        on: String,
    },
    #[error("cannot create topic {topic:?}: {error}")]
    CreateTopic { topic: String, error: String },
    #[error("invalid Kafka client settings: {0}")]
    Client(String),
    #[error("Kafka refused the connection to {brokers}: {error} (check security.* credentials and certificates)")]
    Refused { brokers: String, error: String },
}

/// Keeps the client's last error: fetch_metadata only says "transport failure", the client's
/// error callback says why (wrong password, untrusted certificate, …). A refusal is kept even when
/// later errors (e.g. "all brokers are down", which follows it) arrive.
///
/// The callback only runs for a client whose main queue is polled: rdkafka's `AdminClient` never
/// polls it, so the probe is a `BaseProducer` (polled after each attempt) and not the admin client.
#[derive(Default)]
pub struct LastError(Mutex<Option<(bool, String)>>, Mutex<HashSet<String>>);

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        // Authentication and TLS failures will not fix themselves by retrying.
        let refused = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::SSL
            )
        ) || reason.contains("SSL handshake failed")
            || reason.contains("certificate verify failed");
        // Retries repeat the same errors (and rdkafka hands a producer's error events to the
        // context twice): log each distinct one once; "all brokers down" only at debug.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            tracing::debug!(error = %error, reason, "Kafka client error");
        } else if self
            .1
            .lock()
            .expect("logged lock")
            // "… (after 12ms in state SSL_HANDSHAKE, 1 identical error(s) suppressed)"
            .insert(
                reason
                    .split(" (after ")
                    .next()
                    .unwrap_or(reason)
                    .to_string(),
            )
        {
            tracing::warn!(error = %error, reason, "Kafka client error");
        }
        let mut last = self.0.lock().expect("last error lock");
        if refused || !last.as_ref().is_some_and(|(was_refused, _)| *was_refused) {
            *last = Some((refused, reason.to_string()));
        }
    }
}

impl ProducerContext for LastError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

impl LastError {
    fn get(&self) -> Option<(bool, String)> {
        self.0.lock().expect("last error lock").clone()
    }
}

/// Runs the checks, creating output topics if configured: the main cluster's (input, outputs,
/// dead letters), then each regional cluster's outputs on that cluster.
pub async fn check(config: &Config) -> Result<(), StartupError> {
    let admin: AdminClient<LastError> = admin_config(config)
        .create_with_context(LastError::default())
        .map_err(|e| StartupError::Client(e.to_string()))?;
    let probe: BaseProducer<LastError> = admin_config(config)
        .create_with_context(LastError::default())
        .map_err(|e| StartupError::Client(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_millis(config.startup_timeout_ms);
    let metadata = metadata_until(&probe, &config.brokers, config, deadline).await?;
    let exists = |t: &str| {
        metadata
            .topics()
            .iter()
            .any(|m| m.name() == t && !m.partitions().is_empty())
    };

    for topic in config.input_topics.iter().filter(|t| !t.starts_with('^')) {
        let mut found = exists(topic);
        let mut waiting = None;
        // A topic being created right now shows up shortly: retry within the start-up deadline.
        while !found && Instant::now() < deadline {
            waiting
                .get_or_insert_with(|| {
                    Waiting::start(format!("input topic {topic:?} to exist"), deadline)
                })
                .tick(None);
            tokio::time::sleep(Duration::from_millis(500)).await;
            found = metadata_until(&probe, &config.brokers, config, deadline)
                .await?
                .topics()
                .iter()
                .any(|m| m.name() == topic && !m.partitions().is_empty());
        }
        if !found {
            return Err(StartupError::MissingInputTopic(topic.clone()));
        }
    }

    let output_topics = config.output_topics();
    let outputs: Vec<(&'static str, &String)> = output_topics
        .iter()
        .map(|t| ("output", t))
        .chain([("dead-letter", &config.dead_letter_topic)])
        .collect();
    ensure_outputs(&admin, &metadata, config, &outputs, "").await?;

    let routes = config.routes();
    for (i, name) in routes.clusters.iter().enumerate().skip(1) {
        let access = config.cluster_access(&routes, i);
        let client = admin_config_on(config, &routes, i);
        let admin: AdminClient<LastError> = client
            .create_with_context(LastError::default())
            .map_err(|e| StartupError::Client(format!("cluster {name:?}: {e}")))?;
        let probe: BaseProducer<LastError> = client
            .create_with_context(LastError::default())
            .map_err(|e| StartupError::Client(format!("cluster {name:?}: {e}")))?;
        // A regional cluster that is away must not stop the other regions: its records wait in
        // its producer (which retries for ever) until it is back. Its topics are checked then, by
        // the producer: a missing one stops the instance with its name.
        let metadata = match metadata_until(&probe, access.brokers, config, deadline).await {
            Err(StartupError::Unreachable { last_error, .. }) => {
                tracing::warn!(cluster = %name, brokers = access.brokers, %last_error, "regional cluster unreachable at start; its records will wait for it, the other regions go on");
                continue;
            }
            other => other?,
        };
        let topics = routes.topics_of(i, &config.output_topic);
        let outputs: Vec<(&'static str, &String)> = topics.iter().map(|t| ("output", t)).collect();
        ensure_outputs(
            &admin,
            &metadata,
            config,
            &outputs,
            &format!(" on cluster {name:?}"),
        )
        .await?;
    }
    Ok(())
}

/// Checks that the `(role, topic)` outputs exist in `metadata`, creating the missing ones when
/// `create_topics` is set; `on` names the cluster in errors (empty for the main cluster).
async fn ensure_outputs(
    admin: &AdminClient<LastError>,
    metadata: &Metadata,
    config: &Config,
    outputs: &[(&'static str, &String)],
    on: &str,
) -> Result<(), StartupError> {
    let exists = |t: &str| {
        metadata
            .topics()
            .iter()
            .any(|m| m.name() == t && !m.partitions().is_empty())
    };
    for (role, topic) in outputs.iter().filter(|(_, t)| exists(t)) {
        replication::warn_if_single_replica(metadata, role, topic);
    }
    let missing: Vec<_> = outputs.iter().filter(|(_, t)| !exists(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !config.create_topics {
        let (role, topic) = missing[0];
        return Err(StartupError::MissingOutputTopic {
            role,
            topic: topic.to_string(),
            on: on.to_owned(),
        });
    }
    // -1: the cluster's default.replication.factor.
    let rf = match config.topics.replication_factor {
        0 => -1,
        n => i32::from(n),
    };
    let brokers = metadata.brokers().len();
    if replication::single_replica_on_a_cluster(rf.max(0) as usize, brokers) {
        tracing::warn!(
            brokers,
            "topics.replication_factor = 1 on a cluster of {brokers} brokers: the topics created              now lose what was acknowledged on a broker with that broker"
        );
    }
    let new: Vec<NewTopic> = missing
        .iter()
        .map(|(_, t)| {
            NewTopic::new(
                t,
                config.create_topics_partitions,
                TopicReplication::Fixed(rf),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| StartupError::CreateTopic {
            topic: missing[0].1.to_string(),
            error: e.to_string(),
        })?;
    for r in results {
        match r {
            Ok(topic) => {
                tracing::info!(%topic, partitions = config.create_topics_partitions, replication_factor = rf, cluster = on.trim(), "created topic")
            }
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(StartupError::CreateTopic {
                    topic,
                    error: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// How often a start-up wait logs its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One thing start-up waits for: logged when the wait starts (what, and how long it will retry),
/// then every [`PROGRESS_EVERY`].
struct Waiting {
    what: String,
    since: Instant,
    next: Instant,
    deadline: Instant,
}

impl Waiting {
    fn start(what: String, deadline: Instant) -> Self {
        let now = Instant::now();
        let left = deadline
            .saturating_duration_since(now)
            .as_millis()
            .div_ceil(1000);
        tracing::warn!("waiting for {what}; retrying for {left} s");
        Waiting {
            what,
            since: now,
            next: now + PROGRESS_EVERY,
            deadline,
        }
    }

    /// Logs progress when due; `why`: the last error, if known.
    fn tick(&mut self, why: Option<&str>) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + PROGRESS_EVERY;
        let waited = now.duration_since(self.since).as_secs();
        let left = self
            .deadline
            .saturating_duration_since(now)
            .as_millis()
            .div_ceil(1000);
        match why {
            Some(why) => tracing::warn!(
                "still waiting for {} ({waited} s so far, giving up in {left} s): {why}",
                self.what
            ),
            None => tracing::warn!(
                "still waiting for {} ({waited} s so far, giving up in {left} s)",
                self.what
            ),
        }
    }
}

/// Fetches the cluster's metadata until it answers or `deadline` passes; a refusal
/// (authentication, TLS) fails at once, naming it. Shared by the processor's and the webhook
/// service's start-up checks.
pub async fn metadata_until(
    probe: &BaseProducer<LastError>,
    brokers: &str,
    config: &Config,
    deadline: Instant,
) -> Result<Metadata, StartupError> {
    let mut first = true;
    let mut waiting: Option<Waiting> = None;
    let mut wait = |why: Option<String>| {
        waiting
            .get_or_insert_with(|| {
                Waiting::start(
                    format!("the Kafka brokers at {brokers} to answer"),
                    deadline,
                )
            })
            .tick(why.as_deref());
    };
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(500));
        let client = probe.client();
        // The first attempt is short, so that brokers that do not answer are reported at once.
        let attempt = left.min(Duration::from_secs(if first { 1 } else { 5 }));
        first = false;
        // fetch_metadata blocks: keep it off the async workers. Then serve the client's queued
        // error events, so that `LastError` learns why an attempt failed.
        let result = tokio::task::block_in_place(|| {
            let result = client.fetch_metadata(None, attempt);
            probe.poll(Duration::from_millis(50));
            result
        });
        match result {
            Ok(m) if !m.brokers().is_empty() => return Ok(m),
            Ok(_) if Instant::now() >= deadline => {
                return Err(StartupError::Unreachable {
                    brokers: brokers.to_owned(),
                    secs: config.startup_timeout_ms / 1000,
                    last_error: "no brokers in metadata".into(),
                })
            }
            Err(e) => {
                let why = client.context().get();
                if let Some((true, reason)) = &why {
                    return Err(StartupError::Refused {
                        brokers: brokers.to_owned(),
                        error: reason.clone(),
                    });
                }
                if Instant::now() >= deadline {
                    return Err(StartupError::Unreachable {
                        brokers: brokers.to_owned(),
                        secs: config.startup_timeout_ms / 1000,
                        last_error: why.map_or_else(|| e.to_string(), |(_, reason)| reason),
                    });
                }
                wait(why.map(|(_, reason)| reason));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => {
                wait(None);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
