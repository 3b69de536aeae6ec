//! What every partition worker of a process shares: the producers and their ack router, the
//! engine settings, metrics, topics, the stop signal, the transaction gate, the changelog.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dashmap::DashMap;
use rdkafka::ClientConfig;
use tokio::sync::RwLock;

use super::acks::AckRouter;
use super::deferred::Deferred;
use super::fatal::Fatal;
use super::shared_producer::SharedProducer;
use crate::core::{ErrorKind, Shared};
use crate::kafka::offsets::OffsetStore;
use crate::metrics::Metrics;

/// Where state changes go and are restored from.
pub struct ChangelogEnv {
    /// Client settings for restoring and for creating changelog topics (brokers, security).
    pub restore_client: ClientConfig,
    /// `<group_id>-`: the changelog of input topic `t` is `<prefix><t>-changelog`.
    pub prefix: String,
    /// Input topics whose changelog is known to exist (created at start, or by a first worker).
    pub ensured: Mutex<HashSet<String>>,
    /// How often state changes are cut and written (`commit_interval_ms`).
    pub interval: Duration,
    /// `topics.replication_factor` of a changelog a worker creates (0: the cluster's default).
    pub replication_factor: i16,
    /// Restores running now, at most [`RESTORES_AT_ONCE`].
    pub restores: tokio::sync::Semaphore,
    /// Where every restore asks for its partition's ends.
    pub ends: Arc<super::changelog::Ends>,
}

/// Most partitions restoring their state at once. Each restore that has records to read is a Kafka
/// client of its own (threads, connections, prefetched records) on a blocking thread (their ends
/// are asked through one shared client, [`super::changelog::Ends`]): an instance assigned hundreds
/// of partitions would otherwise open hundreds of clients at once, and two cores gain nothing
/// from more than a few restores decoding in parallel.
pub const RESTORES_AT_ONCE: usize = 8;

impl ChangelogEnv {
    pub fn topic_for(&self, input_topic: &str) -> String {
        format!("{}{input_topic}-changelog", self.prefix)
    }
}

/// Records whose output the broker refused inside a transaction, by (topic, partition, offset):
/// the replay after the abort writes their dead letters instead.
pub type Poison = DashMap<(String, i32, i64), ErrorKind>;

/// What every worker of a process shares.
pub struct WorkerEnv {
    /// Where offsets are stored for commit (the consumer, which names this module's users).
    pub consumer: Weak<dyn OffsetStore>,
    /// Every cluster's producer by cluster index (`Routes::clusters`): the main cluster's first
    /// (outputs, dead letters, state, transactions), then one per regional cluster. Their acks all
    /// go through `router`.
    pub producers: Vec<Arc<SharedProducer>>,
    /// The cluster of each region's topic, by region index.
    pub region_clusters: Vec<usize>,
    pub router: Arc<AckRouter>,
    pub shared: Arc<Shared>,
    pub metrics: Metrics,
    /// The passthrough's output topic, and the fallback of every region.
    pub output_topic: String,
    /// The output topic of each region, by region index (`output_topics_by_region`).
    pub region_topics: Vec<String>,
    /// `aepiot_records_written_total` of each region's topic, by region index.
    pub written: Vec<prometheus::IntCounter>,
    pub dead_letter_topic: String,
    pub drain_timeout: Duration,
    /// Raised when the cluster or the configuration fails: the process stops without committing
    /// past the failure.
    pub fatal: Arc<Fatal>,
    /// Exactly-once: the transaction gate (batches under its read guard, commits under its write
    /// guard). `None` under at-least-once.
    pub gate: Option<Arc<RwLock<()>>>,
    /// Exactly-once: where records wait while a commit runs (see [`Deferred`]).
    pub deferred: Option<Arc<Deferred>>,
    /// Exactly-once: see [`Poison`].
    pub poison: Option<Poison>,
    /// Exactly-once: set when an output was not delivered because the cluster was away; the next
    /// commit aborts and rewinds every partition instead (see [`super::transactions`]).
    pub rewind: Option<Arc<std::sync::atomic::AtomicBool>>,
    pub changelog: Option<ChangelogEnv>,
    /// What a worker does with each record.
    pub step: Step,
    /// The status page (recent records, device queries); `None` when it is off.
    pub status: Option<Arc<crate::status::StatusHub>>,
    /// `[schema_registry]`: how records in the registry's wire format are read; `None` when no
    /// registry is configured (every record is JSON).
    pub schema_registry: Option<Arc<crate::schema_registry::RegistryInput>>,
    /// Traces (`[tracing]`); `None` when off, and then no record's headers are looked at.
    pub otel: Option<Arc<crate::otel::Otel>>,
}

impl WorkerEnv {
    /// Whether `topic` receives URL records.
    pub fn output_topics_contain(&self, topic: &str) -> bool {
        topic == self.output_topic || self.region_topics.iter().any(|t| t == topic)
    }
}

/// What a worker does with each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The engine: a URL record, a counted suppression or a dead letter.
    Engine,
    /// The benchmarks' reference (`aepiot-stream passthrough`): the record's key, payload and
    /// headers to the output topic unchanged, without the engine; everything else (queues,
    /// tasks, producer, acks, commits, transactions) is the pipeline's own.
    Passthrough,
}
