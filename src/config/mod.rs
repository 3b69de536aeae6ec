//! Configuration: seed defaults, overlaid by a TOML file, then `AEPIOT_*` environment variables,
//! then command-line flags. Each field's doc comment is its user documentation (README,
//! "Configuration reference", mirrors it; a test checks that every key is documented there).
//!
//! This file holds the schema; [`load`] reads it (file, environment, flags), [`validate`] rejects
//! impossible settings, [`derived`] turns it into what each service takes (engine settings,
//! routes, client access), [`redact`] prints it without secrets. The webhook service's settings
//! live beside it ([`crate::webhook::config`]), the Kafka security settings in
//! [`crate::security`], the regional clusters' in [`crate::residency`].

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::core::{EngineSettings, HostChoice, Limits, UrlSettings};
pub use crate::otel::config::TracingConfig;
use crate::residency::{ClusterConfig, RegionOutput};
pub use crate::schema_registry::SchemaRegistryConfig;
pub use crate::webhook::config::{WebhookEndpointConfig, WebhooksConfig};

mod derived;
mod guarantee;
mod load;
pub mod properties;
mod redact;
#[cfg(test)]
mod tests;
mod validate;

pub use derived::ClusterAccess;
pub use guarantee::TRANSACTION_TIMEOUT_MS;
pub use load::ENV_PREFIX;
pub(crate) use properties::is_secret_key;
pub use properties::KafkaProperties;

/// Errors that stop the program at start, each with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The parser's message and position only: its usual excerpt of the offending line could
    /// show a password written there.
    #[error("config file {path} is not valid TOML: {message} (line {line}, column {column})")]
    Toml {
        path: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// How outputs relate to input offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Offsets are committed after outputs are acknowledged: nothing is lost, a crash can repeat
    /// outputs.
    #[default]
    AtLeastOnce,
    /// Outputs, state changes and input offsets are committed in one Kafka transaction every
    /// `commit_interval_ms`: nothing lost, nothing repeated, for readers with
    /// `isolation.level=read_committed`.
    ExactlyOnce,
}

/// Where a new consumer group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// From the beginning of each partition (as Kafka Streams does): no event is skipped.
    #[default]
    Earliest,
    /// Only events produced after the group first joins.
    Latest,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// See [`Config::unknown_region`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownRegion {
    #[default]
    Global,
    DeadLetter,
}

/// The Kafka consumer group protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// KIP-848: the broker assigns, incrementally.
    #[default]
    Consumer,
    /// The classic protocol: a group leader assigns with `partition_assignment_strategy`.
    Classic,
}

impl GroupProtocol {
    /// librdkafka's `group.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Consumer => "consumer",
            GroupProtocol::Classic => "classic",
        }
    }
}

/// How the classic protocol's leader assigns partitions (librdkafka's
/// `partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum AssignmentStrategy {
    /// Incremental: only the partitions that move are revoked.
    #[default]
    #[serde(rename = "cooperative-sticky")]
    CooperativeSticky,
    /// Eager: every partition is revoked at each rebalance.
    #[serde(rename = "range")]
    Range,
    /// Eager, round robin.
    #[serde(rename = "roundrobin")]
    RoundRobin,
}

impl AssignmentStrategy {
    /// librdkafka's `partition.assignment.strategy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Topics to consume. An entry starting with `^` is a regular expression matched against all
    /// topic names (new matching topics are picked up).
    pub input_topics: Vec<String>,
    /// Topic for URL records; Kafka key = region.
    pub output_topic: String,
    /// Region → topic for that region's URL records (data residency), e.g.
    /// `europe = "aepiot-urls-eu"`, or a topic on another cluster of `[clusters]`:
    /// `europe = { topic = "aepiot-urls-eu", cluster = "eu" }`. Regions not in it go to
    /// `output_topic`; an event whose region is absent or unknown counts as `global` (see
    /// `unknown_region`).
    pub output_topics_by_region: IndexMap<String, RegionOutput>,
    /// Other Kafka clusters regions' records are written to (`[clusters.<name>]`: `brokers`,
    /// `[clusters.<name>.security]` as `[security]`, `[clusters.<name>.kafka]` properties).
    /// At-least-once only: an input offset is committed once every output it caused is
    /// acknowledged, whichever cluster it went to.
    pub clusters: IndexMap<String, ClusterConfig>,
    /// What an event with no or an unknown `region` becomes: `global` (the seed's fallback: the
    /// `global` region's hosts and topic) or `dead_letter` (`invalid_field`, field `region`).
    pub unknown_region: UnknownRegion,
    /// Topic for dead letters (invalid input records).
    pub dead_letter_topic: String,
    /// Consumer group id; instances with the same id share the input partitions.
    pub group_id: String,
    /// Also write `cached` and `rate_limited` records (they are always counted in metrics).
    pub emit_suppressed: bool,
    /// Address of the HTTP server for `/metrics`, `/healthz` and `/readyz`; empty disables it.
    pub metrics_addr: String,
    /// Serve the status page (`/`) and its JSON (`/api/status`, `/api/devices/{device_id}`: a
    /// device's state) on `metrics_addr` too, with `run` and `demo`.
    pub status_page: bool,
    /// Where a consumer group with no committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: OffsetReset,
    /// Create the output and dead-letter topics at start if they are missing.
    pub create_topics: bool,
    /// Partitions of topics created by `create_topics`.
    pub create_topics_partitions: i32,
    /// Delivery guarantee: `at_least_once` or `exactly_once`.
    pub processing_guarantee: Guarantee,
    /// With `exactly_once`: how often the transaction is committed, in milliseconds. Outputs become
    /// visible to read_committed readers at each commit.
    pub commit_interval_ms: u64,
    /// With `exactly_once`: most bytes of outputs kept in memory while a transaction commits (they
    /// go into the next one). Past it the partition workers wait for the commit to end, so a slow
    /// or unreachable cluster holds the input back instead of filling the memory.
    pub max_deferred_bytes: usize,
    /// With `exactly_once`: the producer's `transactional.id`. Empty derives a unique one per
    /// process (`<group_id>-<hostname>-<pid>`); zombies are fenced by the consumer group
    /// generation either way (KIP-447). Set a stable id per replica (e.g. the pod name) to also
    /// fence a previous incarnation of the same replica at start.
    pub transactional_id: String,
    /// Write every change of a device's state to a compacted changelog topic
    /// (`<group_id>-<input topic>-changelog`, one partition per input partition) and restore it
    /// when a partition is assigned, so rate limits and dedupe survive rebalances and restarts.
    pub state_changelog: bool,
    /// Static group membership (`group.instance.id`, KIP-345): a unique, stable id per instance,
    /// e.g. the pod name. A crashed instance restarted with the same id gets its partitions back
    /// at once; without it they wait for the broker to expire the dead member (45 s by default).
    /// The cost: an instance that stops for good holds its partitions until that timeout too.
    /// Needs `group_protocol = "classic"`. Empty (the default): dynamic membership.
    pub group_instance_id: String,
    /// Kafka group protocol: `consumer` (KIP-848, incremental, the default) or `classic`
    /// (then `partition_assignment_strategy` applies).
    pub group_protocol: GroupProtocol,
    /// With `group_protocol = "classic"`: `cooperative-sticky` (incremental) or `range`/`roundrobin`
    /// (eager).
    pub partition_assignment_strategy: AssignmentStrategy,
    /// How long a revoked partition or a shutdown may take to drain in-flight outputs and commit,
    /// in milliseconds. Keep it below the session timeout (45 s by default).
    pub drain_timeout_ms: u64,
    /// How long to keep retrying at start before giving up on an unreachable broker or a missing
    /// input topic, in milliseconds.
    pub startup_timeout_ms: u64,
    /// Interval of the progress log line, in seconds; 0 disables it.
    pub progress_interval_secs: u64,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    pub limits: LimitsConfig,
    pub urls: UrlsConfig,
    pub input: InputConfig,
    pub output: OutputConfig,
    pub topics: TopicsConfig,
    pub webhooks: WebhooksConfig,
    pub schema_registry: SchemaRegistryConfig,
    pub tracing: TracingConfig,
    pub security: crate::security::SecurityConfig,
    /// Raw librdkafka properties, passed to every client as they are (e.g. `"linger.ms" = "5"`).
    /// They override the processor's own client settings.
    pub kafka: KafkaProperties,
}

/// Rate limit, dedupe cache and state retention.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most URL sets generated per device in any sliding window.
    pub max_urls_per_device: u32,
    /// The rate-limit window, in seconds.
    pub window_secs: u32,
    /// How long an event with the same device, event type and severity is `cached`, in seconds.
    pub cache_ttl_secs: u32,
    /// How long an idle device's state is kept after its window closed, in seconds, measured on
    /// its partition's latest event time: covers devices whose events lag the others'.
    pub state_grace_secs: u32,
    /// Most devices one instance keeps state for, over all its partitions. Past it, the least
    /// recently active device (of a sample) is evicted, counted in
    /// `aepiot_state_evictions_total`: its next event is judged as a new device's. The default
    /// (1,500,000, about 300 MB of state) fits the Helm chart's memory limit with room for
    /// 1M devices without eviction.
    pub max_devices: usize,
}

/// URL generation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlsConfig {
    /// Hosts of the distributed URLs, in output order.
    pub hosts: Vec<String>,
    /// Region → candidate hosts of the regional URL. Must contain `global`, the fallback for
    /// events with no or an unknown `region`.
    pub regions: IndexMap<String, Vec<String>>,
    /// Default link target: `<base>/devices/<device_id>`, and `<base>` in regional URLs. Checked
    /// at start like an event's `dashboard_url`: an absolute http(s) URL with an allowed host.
    pub dashboard_base_url: String,
    /// How the regional host is picked: `hash` (stable per device) or `random`.
    pub regional_host_choice: HostChoice,
    /// Hosts an event's `dashboard_url` may link to: exact hosts (`grafana.example.com`) and
    /// `*.example.com` patterns (any subdomain, not the domain itself). Empty allows any host; an
    /// event linking elsewhere is a dead letter (`invalid_field`, field `dashboard_url`).
    pub allowed_link_hosts: Vec<String>,
}

/// Topics the processor creates: the output and dead-letter topics (`create_topics`) and the
/// state changelog.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Replication factor of created topics; 0 (the default) takes the cluster's
    /// `default.replication.factor`. A changelog with 3 or more replicas also gets
    /// `min.insync.replicas = 2`, so an acknowledged state change survives the loss of a broker.
    pub replication_factor: i16,
}

/// Input limits: what a record may be, and how much input is fetched ahead.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Largest accepted record, in bytes; larger ones are dead letters.
    pub max_record_bytes: usize,
    /// Most bytes of the original payload kept in a dead letter.
    pub max_dead_letter_payload_bytes: usize,
    /// An event time (its `timestamp`, or the Kafka record timestamp) further ahead of the wall
    /// clock than this many seconds is a dead letter (`invalid_field`, field `timestamp`); 0
    /// disables the check. The default is Kafka's own `message.timestamp.after.max.ms` (1 hour).
    /// `process` never applies it: it replays files in their own time, as the seed does.
    pub max_future_skew_secs: u64,
    /// Most bytes of input records fetched ahead of processing, over every partition this
    /// instance owns: each input partition gets an equal share of it (this over the partitions of
    /// the input topics at start, the most one instance can own). Beyond its share a partition is
    /// not fetched until its worker has read some of it.
    pub prefetch_budget_bytes: usize,
}

/// How URL records are written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// URL records as `json` (`schemas/url-record.schema.json`) or `avro`: the Schema Registry
    /// wire format of `schemas/url-record.avsc`, registered under `<output topic>-value` of every
    /// output topic at start (needs `schema_registry.url`). Dead letters are JSON either way.
    pub format: OutputFormat,
}

/// See [`OutputConfig::format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    #[default]
    Json,
    Avro,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            brokers: "127.0.0.1:9092".into(),
            input_topics: vec!["iot-events".into()],
            output_topic: "aepiot-urls".into(),
            output_topics_by_region: IndexMap::new(),
            clusters: IndexMap::new(),
            unknown_region: UnknownRegion::Global,
            dead_letter_topic: "aepiot-dead-letters".into(),
            group_id: "aepiot-stream".into(),
            emit_suppressed: false,
            metrics_addr: "127.0.0.1:9464".into(),
            status_page: true,
            auto_offset_reset: OffsetReset::Earliest,
            create_topics: false,
            create_topics_partitions: 12,
            processing_guarantee: Guarantee::AtLeastOnce,
            commit_interval_ms: 100,
            max_deferred_bytes: 64 << 20,
            transactional_id: String::new(),
            state_changelog: true,
            group_instance_id: String::new(),
            group_protocol: GroupProtocol::Consumer,
            partition_assignment_strategy: AssignmentStrategy::CooperativeSticky,
            drain_timeout_ms: 10_000,
            startup_timeout_ms: 30_000,
            progress_interval_secs: 10,
            log_format: LogFormat::Text,
            limits: LimitsConfig::default(),
            urls: UrlsConfig::default(),
            input: InputConfig::default(),
            output: OutputConfig::default(),
            topics: TopicsConfig::default(),
            webhooks: WebhooksConfig::default(),
            schema_registry: SchemaRegistryConfig::default(),
            tracing: TracingConfig::default(),
            security: Default::default(),
            kafka: KafkaProperties::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_urls_per_device: l.max_per_window,
            window_secs: l.window_ms / 1000,
            cache_ttl_secs: l.cache_ttl_ms / 1000,
            state_grace_secs: 3600,
            max_devices: 1_500_000,
        }
    }
}

impl Default for UrlsConfig {
    fn default() -> Self {
        let u = UrlSettings::default();
        UrlsConfig {
            hosts: u.hosts,
            regions: u.regions,
            dashboard_base_url: u.dashboard_base_url,
            regional_host_choice: u.host_choice,
            allowed_link_hosts: Vec::new(),
        }
    }
}

impl Default for InputConfig {
    fn default() -> Self {
        let e = EngineSettings::default();
        InputConfig {
            max_record_bytes: e.max_record_bytes,
            max_dead_letter_payload_bytes: e.max_dead_letter_payload_bytes,
            max_future_skew_secs: 3600,
            prefetch_budget_bytes: 64 << 20,
        }
    }
}
