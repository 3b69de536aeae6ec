//! Configuration: seed defaults, overlaid by a TOML file, then `AEPIOT_*` environment variables,
//! then command-line flags. Each field's doc comment is its user documentation (README,
//! "Configuration reference", mirrors it; a test checks that every key is documented there).

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::core::urls::{check_link, LinkHosts, FALLBACK_REGION};
use crate::core::{EngineSettings, HostChoice, Limits, UrlSettings};
use crate::residency::{self, ClusterConfig, RegionOutput, Routes};
use crate::security::SecurityConfig;

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
    pub group_protocol: String,
    /// With `group_protocol = "classic"`: `cooperative-sticky` (incremental) or `range`/`roundrobin`
    /// (eager).
    pub partition_assignment_strategy: String,
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
    pub webhooks: WebhooksConfig,
    pub security: crate::security::SecurityConfig,
    /// Raw librdkafka properties, passed to every client as they are (e.g. `"linger.ms" = "5"`).
    /// They override the processor's own client settings.
    pub kafka: BTreeMap<String, toml::Value>,
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

/// Input validation limits.
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
            transactional_id: String::new(),
            state_changelog: true,
            group_instance_id: String::new(),
            group_protocol: "consumer".into(),
            partition_assignment_strategy: "cooperative-sticky".into(),
            drain_timeout_ms: 10_000,
            startup_timeout_ms: 30_000,
            progress_interval_secs: 10,
            log_format: LogFormat::Text,
            limits: LimitsConfig::default(),
            urls: UrlsConfig::default(),
            input: InputConfig::default(),
            webhooks: WebhooksConfig::default(),
            security: Default::default(),
            kafka: BTreeMap::new(),
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

/// Webhook delivery (`aepiot-stream webhooks`, or `run --webhooks`): every `success` URL record
/// of `output_topic` is POSTed to each endpoint, from a consumer group of its own, so a slow or
/// dead receiver only adds lag to that group and never slows URL generation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Endpoints every `success` record is POSTed to (`[[webhooks.endpoints]]` tables).
    pub endpoints: Vec<WebhookEndpointConfig>,
    /// Consumer group of the webhook service on `output_topic`; empty means `<group_id>-webhooks`.
    /// Must differ from `group_id`.
    pub group_id: String,
    /// Topic for records that could not be delivered to an endpoint: refused (a 4xx other than 408
    /// and 429, or a redirect) or still failing after `max_attempts`. Each carries the endpoint, the
    /// last error, the attempt count and the original URL record.
    pub dead_letter_topic: String,
    /// Timeout of one request (connecting, sending, and reading the response), in milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight per endpoint. Records are sharded by `device_id` into this many lanes, each
    /// sending one request at a time, so a device's records reach an endpoint in order.
    pub concurrency: usize,
    /// Attempts per record and endpoint, the first included, before the record is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles with each retry (with jitter: a
    /// random value between half and all of it).
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub backoff_max_ms: u64,
    /// Longest `Retry-After` (of a 429 or 503) that is honoured, in seconds; longer ones are capped.
    pub retry_after_max_secs: u64,
    /// Records per output partition read but not yet delivered or dead-lettered: bounds memory.
    /// When a receiver stalls, the service stops reading there and the group's lag grows.
    pub max_pending_per_partition: usize,
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    /// The `http` or `https` URL records are POSTed to. Redirects are not followed.
    pub url: String,
    /// Only records of these regions (the record's `region`, after fallback); empty means all.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Environment variable holding the signing secret: requests are then signed to the Standard
    /// Webhooks spec (`webhook-signature: v1,<base64 HMAC-SHA256>`). A secret is the spec's
    /// `whsec_<base64 of 24 to 64 bytes>`; several, one per line, during a rotation (each adds a
    /// signature). A malformed one stops the service at start. It is never logged or printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// File holding the signing secret(s), as `secret_env` (e.g. a mounted Kubernetes Secret);
    /// instead of `secret_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            endpoints: Vec::new(),
            group_id: String::new(),
            dead_letter_topic: "aepiot-webhook-dead-letters".into(),
            timeout_ms: 5_000,
            concurrency: 16,
            max_attempts: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            retry_after_max_secs: 60,
            max_pending_per_partition: 1_000,
        }
    }
}

impl WebhooksConfig {
    /// Rejects impossible webhook settings; `regions` are the configured region names.
    fn validate<'a>(
        &self,
        regions: impl Iterator<Item = &'a String> + Clone,
    ) -> Result<(), String> {
        if self.timeout_ms == 0 {
            return Err("webhooks.timeout_ms must be at least 1".into());
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err("webhooks.concurrency must be between 1 and 1024".into());
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err("webhooks.max_attempts must be between 1 and 100".into());
        }
        if self.backoff_base_ms == 0 || self.backoff_base_ms > self.backoff_max_ms {
            return Err(
                "webhooks.backoff_base_ms must be at least 1 and at most webhooks.backoff_max_ms"
                    .into(),
            );
        }
        if self.max_pending_per_partition == 0 {
            return Err("webhooks.max_pending_per_partition must be at least 1".into());
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let ok = url::Url::parse(&e.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                // The URL itself may carry credentials: name the endpoint by its position.
                return Err(format!("webhooks.endpoints[{i}].url is not an http(s) URL"));
            }
            if let Some(r) = e.regions.iter().find(|r| !regions.clone().any(|k| k == *r)) {
                return Err(format!(
                    "webhooks.endpoints[{i}].regions: {r:?} is not a region of urls.regions"
                ));
            }
            if e.secret_env.is_some() && e.secret_file.is_some() {
                return Err(format!(
                    "webhooks.endpoints[{i}]: set secret_env or secret_file, not both"
                ));
            }
            if e.secret_env.as_deref() == Some("") || e.secret_file.as_deref() == Some("") {
                return Err(format!(
                    "webhooks.endpoints[{i}]: secret_env and secret_file must not be empty"
                ));
            }
        }
        Ok(())
    }
}

impl Default for InputConfig {
    fn default() -> Self {
        let e = EngineSettings::default();
        InputConfig {
            max_record_bytes: e.max_record_bytes,
            max_dead_letter_payload_bytes: e.max_dead_letter_payload_bytes,
            max_future_skew_secs: 3600,
        }
    }
}

/// Environment variable prefix: `AEPIOT_OUTPUT_TOPIC`, `AEPIOT_LIMITS__CACHE_TTL_SECS`,
/// `AEPIOT_KAFKA__SASL_PASSWORD` (→ `kafka."sasl.password"`).
pub const ENV_PREFIX: &str = "AEPIOT_";

/// librdkafka properties whose values are never printed.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key.pem",
        "ssl.key",
        "keystore",
        "oauthbearer.config",
        "token",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl Config {
    /// Loads the configuration: defaults, then the file (if any), then `env` (pairs of name and
    /// value, normally `std::env::vars()`), then `overrides` (from flags, as TOML key paths).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: toml::Table,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let p = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            table = toml::from_str(&text).map_err(|e: toml::de::Error| {
                let at = e.span().map_or(0, |s| s.start).min(text.len());
                let before = text.get(..at).unwrap_or_default();
                ConfigError::Toml {
                    path: p,
                    message: e.message().trim_end().replace('\n', "; "),
                    line: before.matches('\n').count() + 1,
                    column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                }
            })?;
        }
        // Variables whose first part names no configuration key are not ours: Kubernetes, for
        // one, injects `<SERVICE>_PORT`-style variables for every Service in the namespace, and a
        // Service named `aepiot-…` makes `AEPIOT_…` ones. They are ignored; a typo inside a known
        // section (`AEPIOT_LIMITS__TYPO`) still fails as an unknown key.
        let known = toml::Value::try_from(Config::default()).expect("defaults serialize");
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                let path = env_path(rest);
                let ours = path
                    .first()
                    .is_some_and(|first| known.get(first.as_str()).is_some());
                if ours {
                    set_path(&mut table, &path, env_value(&path, &value));
                } else if !path.is_empty() {
                    tracing::debug!(variable = %name, "environment variable ignored: no such configuration key");
                }
            }
        }
        merge(&mut table, overrides);
        if let Some(key) = non_string_secret(&table, "") {
            return Err(ConfigError::Invalid(format!(
                "{key} must be a string (quote it in TOML; the value is not shown)"
            )));
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.security.resolve().map_err(ConfigError::Invalid)?;
        for (name, c) in config.clusters.iter_mut() {
            c.security
                .resolve_at(&format!("clusters.{name}.security"))
                .map_err(ConfigError::Invalid)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Rejects impossible settings with a message that says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let u = &self.urls;
        if u.hosts.is_empty() {
            return bad("urls.hosts must name at least one host".into());
        }
        for h in u.hosts.iter().chain(u.regions.values().flatten()) {
            check_host(h).map_err(ConfigError::Invalid)?;
        }
        if !u.regions.contains_key(FALLBACK_REGION) {
            return bad(format!(
                "urls.regions must contain `{FALLBACK_REGION}`, the fallback region"
            ));
        }
        if let Some((name, _)) = u.regions.iter().find(|(_, hs)| hs.is_empty()) {
            return bad(format!("urls.regions.{name} must name at least one host"));
        }
        let link_hosts = LinkHosts::new(&u.allowed_link_hosts)
            .map_err(|e| ConfigError::Invalid(format!("urls.allowed_link_hosts: {e}")))?;
        if let Err(why) = check_link(&u.dashboard_base_url, &link_hosts) {
            return bad(format!(
                "urls.dashboard_base_url {:?} {why}",
                u.dashboard_base_url
            ));
        }
        if self.limits.window_secs == 0 {
            return bad("limits.window_secs must be at least 1".into());
        }
        if self.limits.window_secs > 24 * 3600 * 7 || self.limits.cache_ttl_secs > 24 * 3600 * 7 {
            return bad(
                "limits.window_secs and limits.cache_ttl_secs must be at most 7 days".into(),
            );
        }
        if self.input.max_record_bytes == 0 {
            return bad("input.max_record_bytes must be at least 1".into());
        }
        if self.limits.max_devices == 0 {
            return bad("limits.max_devices must be at least 1".into());
        }
        if self.create_topics_partitions < 1 {
            return bad("create_topics_partitions must be at least 1".into());
        }
        if self.commit_interval_ms == 0 {
            return bad("commit_interval_ms must be at least 1".into());
        }
        self.webhooks
            .validate(self.urls.regions.keys())
            .map_err(ConfigError::Invalid)?;
        if !matches!(self.group_protocol.as_str(), "consumer" | "classic") {
            return bad(format!(
                "group_protocol must be `consumer` or `classic`, not {:?}",
                self.group_protocol
            ));
        }
        residency::check(
            self.urls.regions.keys(),
            &self.output_topics_by_region,
            &self.clusters,
            self.processing_guarantee == Guarantee::ExactlyOnce,
        )
        .map_err(ConfigError::Invalid)?;
        if !self.group_instance_id.is_empty() && self.group_protocol != "classic" {
            // Measured (benches/soak.sh): under the `consumer` protocol a crashed static member
            // that restarts is refused with a fatal UNRELEASED_INSTANCE_ID until the broker
            // expires the old one, so static membership only helps with `classic`.
            return bad(
                "group_instance_id needs group_protocol = \"classic\": under the `consumer` \
                 protocol a restarted static member is refused (UNRELEASED_INSTANCE_ID) until the \
                 session timeout expires the crashed one"
                    .into(),
            );
        }
        Ok(())
    }

    /// Checks what `run` needs beyond [`Config::validate`].
    pub fn validate_for_run(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        // Also for a configuration built in code rather than loaded (`demo`, embedding, tests).
        residency::check(
            self.urls.regions.keys(),
            &self.output_topics_by_region,
            &self.clusters,
            self.processing_guarantee == Guarantee::ExactlyOnce,
        )
        .map_err(ConfigError::Invalid)?;
        if self.brokers.trim().is_empty() {
            return bad("brokers must name at least one broker (host:port)");
        }
        if self.input_topics.iter().all(|t| t.trim().is_empty()) {
            return bad("input_topics must name at least one topic");
        }
        if self.output_topic.is_empty() || self.dead_letter_topic.is_empty() {
            return bad("output_topic and dead_letter_topic must be set");
        }
        let outputs = self.output_topics();
        if self
            .input_topics
            .iter()
            .any(|t| outputs.contains(t) || t == &self.dead_letter_topic)
        {
            return bad("an input topic cannot also be an output or the dead-letter topic");
        }
        if self.group_id.is_empty() {
            return bad("group_id must be set");
        }
        Ok(())
    }

    /// Every topic of the main cluster URL records go to: `output_topic` first, then the
    /// regions' own, each once. Topics on other clusters: [`Config::routes`].
    pub fn output_topics(&self) -> Vec<String> {
        self.routes().topics_of(0, &self.output_topic)
    }

    /// The output topic of each configured region, in the order of `urls.regions`.
    pub fn region_topics(&self) -> Vec<String> {
        self.routes().region_topics
    }

    /// Each region's topic and cluster, and the clusters records go to.
    pub fn routes(&self) -> Routes {
        Routes::new(
            self.urls.regions.keys(),
            &self.output_topics_by_region,
            &self.clusters,
            &self.output_topic,
        )
    }

    /// How to reach cluster `index` of [`Config::routes`] (0: the main cluster).
    pub fn cluster_access(&self, routes: &Routes, index: usize) -> ClusterAccess<'_> {
        match index {
            0 => ClusterAccess {
                name: residency::MAIN_CLUSTER.to_string(),
                brokers: &self.brokers,
                security: &self.security,
                kafka: &self.kafka,
            },
            i => {
                let name = &routes.clusters[i];
                let c = &self.clusters[name];
                ClusterAccess {
                    name: name.clone(),
                    brokers: &c.brokers,
                    security: &c.security,
                    kafka: &c.kafka,
                }
            }
        }
    }

    /// The changelog topic of an input topic's device state.
    pub fn changelog_topic(&self, input_topic: &str) -> String {
        format!("{}-{}-changelog", self.group_id, input_topic)
    }

    /// The engine's settings.
    pub fn engine_settings(&self) -> EngineSettings {
        let l = &self.limits;
        EngineSettings {
            urls: UrlSettings {
                hosts: self.urls.hosts.clone(),
                regions: self.urls.regions.clone(),
                dashboard_base_url: self.urls.dashboard_base_url.clone(),
                host_choice: self.urls.regional_host_choice,
                link_hosts: LinkHosts::new(&self.urls.allowed_link_hosts)
                    .expect("urls.allowed_link_hosts is checked by Config::validate"),
            },
            limits: Limits {
                max_per_window: l.max_urls_per_device,
                window_ms: l.window_secs * 1000,
                cache_ttl_ms: l.cache_ttl_secs * 1000,
            },
            state_grace_ms: l.state_grace_secs as i64 * 1000,
            max_record_bytes: self.input.max_record_bytes,
            max_dead_letter_payload_bytes: self.input.max_dead_letter_payload_bytes,
            emit_suppressed: self.emit_suppressed,
            max_future_skew_ms: 0,
            // Set by `run` from the topics' and the producer's limits (see kafka::startup).
            max_output_bytes: usize::MAX,
            max_devices: l.max_devices,
            unknown_region_dead_letter: self.unknown_region == UnknownRegion::DeadLetter,
        }
    }

    /// The engine's settings under `run`: with the event-time check, and outputs bounded by
    /// `max_output_bytes` (what the output topics and the producer accept).
    pub fn run_engine_settings(&self, max_output_bytes: usize) -> EngineSettings {
        EngineSettings {
            max_future_skew_ms: self.input.max_future_skew_secs.saturating_mul(1000) as i64,
            max_output_bytes,
            ..self.engine_settings()
        }
    }

    /// librdkafka properties from `[kafka]`, values as strings.
    pub fn kafka_properties(&self) -> impl Iterator<Item = (&str, String)> {
        self.kafka.iter().map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.as_str(), s)
        })
    }

    /// The webhook service's consumer group: `webhooks.group_id`, or `<group_id>-webhooks`.
    pub fn webhooks_group_id(&self) -> String {
        if self.webhooks.group_id.is_empty() {
            format!("{}-webhooks", self.group_id)
        } else {
            self.webhooks.group_id.clone()
        }
    }

    /// Checks what the webhook service needs beyond [`Config::validate`].
    pub fn validate_for_webhooks(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.brokers.trim().is_empty() {
            return bad("brokers must name at least one broker (host:port)");
        }
        if self.webhooks.endpoints.is_empty() {
            return bad(
                "webhooks.endpoints is empty: configure at least one [[webhooks.endpoints]] url",
            );
        }
        if self.output_topic.is_empty() || self.webhooks.dead_letter_topic.is_empty() {
            return bad("output_topic and webhooks.dead_letter_topic must be set");
        }
        let dlq = &self.webhooks.dead_letter_topic;
        if dlq == &self.output_topic
            || dlq == &self.dead_letter_topic
            || self.input_topics.contains(dlq)
        {
            return bad("webhooks.dead_letter_topic must differ from the input, output and dead-letter topics");
        }
        if self.group_id.is_empty() && self.webhooks.group_id.is_empty() {
            return bad("group_id or webhooks.group_id must be set");
        }
        if self.webhooks_group_id() == self.group_id {
            return bad("webhooks.group_id must differ from group_id (it would take over the input partitions)");
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets replaced by `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let cluster_kafka = shown.clusters.values_mut().map(|c| &mut c.kafka);
        for (k, v) in std::iter::once(&mut shown.kafka)
            .chain(cluster_kafka)
            .flat_map(|t| t.iter_mut())
        {
            if is_secret_key(k) {
                *v = toml::Value::String("[redacted]".into());
            }
        }
        for e in shown.webhooks.endpoints.iter_mut() {
            e.url = redact_url(&e.url);
        }
        toml::to_string_pretty(&shown).expect("config serializes to TOML")
    }
}

/// One cluster's connection settings: the main cluster's (`brokers`, `[security]`, `[kafka]`) or
/// a `[clusters.<name>]` table's.
#[derive(Debug, Clone)]
pub struct ClusterAccess<'a> {
    /// The `cluster` label in metrics and logs: `main`, or the name in `[clusters]`.
    pub name: String,
    pub brokers: &'a str,
    pub security: &'a SecurityConfig,
    pub kafka: &'a BTreeMap<String, toml::Value>,
}

impl ClusterAccess<'_> {
    /// librdkafka properties from this cluster's `kafka` table, values as strings.
    pub fn kafka_properties(&self) -> impl Iterator<Item = (&str, String)> {
        self.kafka.iter().map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.as_str(), s)
        })
    }
}

/// A webhook URL as `config check` shows it: scheme, host and port. Its user info, path and
/// query are dropped (`/[redacted]`): Slack-style URLs carry their token in the path, others in
/// the query or as `user:pass@`.
fn redact_url(text: &str) -> String {
    let Ok(u) = url::Url::parse(text) else {
        return "[redacted: not a URL]".into();
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
        return "[redacted]".into();
    };
    let bare = u.path() == "/" && u.query().is_none() && u.fragment().is_none();
    let bare = bare && u.username().is_empty() && u.password().is_none();
    let rest = if bare { "/" } else { "/[redacted]" };
    format!("{}://{host}:{port}{rest}", u.scheme())
}

/// A host must be a bare host name (optionally with a port): anything else would break the URL.
fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
        && url::Url::parse(&format!("https://{host}/")).is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a valid host name (letters, digits, `-`, `.`, optional `:port`)"
        ))
    }
}

/// `LIMITS__CACHE_TTL_SECS` → ["limits", "cache_ttl_secs"]; `KAFKA__SASL_PASSWORD` →
/// ["kafka", "sasl.password"] (librdkafka property names use dots).
fn env_path(rest: &str) -> Vec<String> {
    let mut parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
    if parts.len() == 2 && parts[0] == "kafka" {
        parts[1] = parts[1].replace('_', ".");
    }
    // `CLUSTERS__EU__KAFKA__SASL_PASSWORD` → clusters.eu.kafka."sasl.password"
    if parts.len() == 4 && parts[0] == "clusters" && parts[2] == "kafka" {
        parts[3] = parts[3].replace('_', ".");
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// Typed values from environment text: lists are comma-separated; numbers and booleans parse,
/// except in librdkafka properties and secret-bearing keys (`*password*`, `*secret*`, …), which
/// stay strings: `AEPIOT_SECURITY__SASL_PASSWORD=123456` is the password "123456", and a type
/// error could not be raised without naming the value.
fn env_value(path: &[String], value: &str) -> toml::Value {
    let key = path.last().map(String::as_str).unwrap_or("");
    let cluster_kafka = path[0] == "clusters" && path.get(2).is_some_and(|p| p == "kafka");
    if path[0] == "kafka"
        || path[0] == "output_topics_by_region"
        || cluster_kafka
        || is_secret_key(key)
    {
        return toml::Value::String(value.to_string());
    }
    if matches!(key, "input_topics" | "hosts" | "allowed_link_hosts") {
        return toml::Value::Array(
            value
                .split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        );
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_string()),
    }
}

/// The first secret-bearing key (`*password*`, `*secret*`, …) whose value is not a string, so
/// the error can name the key before serde's type error would print the value. `[kafka]` values
/// are all passed on as strings.
fn non_string_secret(table: &toml::Table, prefix: &str) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if key == "kafka" {
            return None;
        }
        if is_secret_key(k) && !v.is_str() {
            return Some(key);
        }
        v.as_table().and_then(|t| non_string_secret(t, &key))
    })
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.clone(), value);
}

/// Deep-merges `over` into `base`.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml_text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(&path), env, toml::Table::new())
    }

    #[test]
    fn region_topics_from_file_and_environment() {
        let c = load(
            "[output_topics_by_region]\neurope = \"urls-eu\"\n",
            &[("AEPIOT_OUTPUT_TOPICS_BY_REGION__ASIA_PACIFIC", "123")],
        )
        .unwrap();
        let mut topics = c.output_topics();
        assert_eq!(topics.remove(0), "aepiot-urls", "output_topic first");
        topics.sort();
        assert_eq!(
            topics,
            ["123", "urls-eu"],
            "a topic name of digits stays a string"
        );
        let by_region: Vec<_> = c.urls.regions.keys().zip(c.region_topics()).collect();
        assert!(by_region.contains(&(&"europe".to_string(), "urls-eu".to_string())));
        assert!(by_region.contains(&(&"global".to_string(), "aepiot-urls".to_string())));
        let bad = load("[output_topics_by_region]\nmars = \"x\"\n", &[]);
        assert!(bad.unwrap_err().to_string().contains("mars"));
        let strict = load("unknown_region = \"dead_letter\"\n", &[]).unwrap();
        assert!(strict.engine_settings().unknown_region_dead_letter);
    }

    #[test]
    fn a_region_on_another_cluster_with_its_own_security() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("eu-pw");
        std::fs::write(&pw, "eu-file-secret\n").unwrap();
        let text = format!(
            "[output_topics_by_region]\neurope = {{ topic = \"urls-eu\", cluster = \"eu\" }}\n\
             asia_pacific = \"urls-ap\"\n\
             [clusters.eu]\nbrokers = \"eu-1:9093\"\n\
             [clusters.eu.security]\nprotocol = \"sasl_ssl\"\nsasl_username = \"eu-user\"\n\
             sasl_password_file = {pw:?}\n\
             [clusters.eu.kafka]\n\"linger.ms\" = 10\n"
        );
        let c = load(
            &text,
            &[
                (
                    "AEPIOT_CLUSTERS__EU__KAFKA__SSL_KEY_PASSWORD",
                    "eu-key-secret",
                ),
                ("AEPIOT_OUTPUT_TOPICS_BY_REGION__NORTH_AMERICA", "urls-na"),
            ],
        )
        .unwrap();
        let eu = &c.clusters["eu"];
        assert_eq!(eu.security.sasl_password.expose(), "eu-file-secret");
        assert_eq!(eu.kafka["ssl.key.password"].as_str(), Some("eu-key-secret"));
        let routes = c.routes();
        assert_eq!(routes.clusters, ["main", "eu"]);
        assert_eq!(routes.topics_of(1, &c.output_topic), ["urls-eu"]);
        assert!(
            !c.output_topics().contains(&"urls-eu".to_string()),
            "main cluster's only"
        );
        assert!(
            c.output_topics().contains(&"urls-na".to_string()),
            "env: a plain topic"
        );
        let access = c.cluster_access(&routes, 1);
        assert_eq!((access.name.as_str(), access.brokers), ("eu", "eu-1:9093"));
        // config check: shown, secrets redacted, and what it shows loads again.
        let shown = c.to_redacted_toml();
        assert!(
            shown.contains("eu-1:9093") && shown.contains("eu-user"),
            "{shown}"
        );
        assert!(
            !shown.contains("eu-file-secret") && !shown.contains("eu-key-secret"),
            "{shown}"
        );
        let again = load(&shown.replace("[redacted]", "x"), &[]).unwrap();
        assert_eq!(again.output_topics_by_region, c.output_topics_by_region);
        assert_eq!(again.clusters["eu"].brokers, "eu-1:9093");
        assert_eq!(
            again.clusters["eu"].security, eu.security,
            "the password from its file"
        );

        let unknown = "[output_topics_by_region]\neurope = { topic = \"t\", cluster = \"us\" }\n";
        let e = load(unknown, &[]).unwrap_err().to_string();
        assert!(e.contains("cluster \"us\" is not defined"), "{e}");
        let bad_entry = "[output_topics_by_region]\neurope = { topic = \"t\", clutser = \"eu\" }\n";
        let e = load(bad_entry, &[]).unwrap_err().to_string();
        assert!(e.contains("a topic name, or a table"), "{e}");
        let eos = format!("processing_guarantee = \"exactly_once\"\n{text}");
        let e = load(&eos, &[]).unwrap_err().to_string();
        assert!(
            e.contains("a Kafka transaction cannot span clusters"),
            "{e}"
        );
        let no_password = "[clusters.eu]\nbrokers = \"b:1\"\n[clusters.eu.security]\nprotocol = \"sasl_plaintext\"\nsasl_username = \"u\"\n";
        let e = load(no_password, &[]).unwrap_err().to_string();
        assert!(
            e.contains("AEPIOT_CLUSTERS__EU__SECURITY__SASL_PASSWORD"),
            "{e}"
        );
    }

    #[test]
    fn defaults_are_the_seed() {
        let c = load("", &[]).unwrap();
        let e = c.engine_settings();
        assert_eq!(e.limits, Limits::default());
        assert_eq!(e.urls.hosts.len(), 4);
        assert_eq!(e.urls.regions.len(), 4);
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "output_topic = \"from-file\"\ngroup_id = \"g-file\"\n[limits]\ncache_ttl_secs = 60\n",
        )
        .unwrap();
        let env = vec![
            ("AEPIOT_GROUP_ID".to_string(), "g-env".to_string()),
            (
                "AEPIOT_LIMITS__MAX_URLS_PER_DEVICE".to_string(),
                "3".to_string(),
            ),
            ("AEPIOT_INPUT_TOPICS".to_string(), "a, b".to_string()),
            (
                "AEPIOT_KAFKA__SASL_PASSWORD".to_string(),
                "hunter2".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let mut flags = toml::Table::new();
        flags.insert("group_id".into(), "g-flag".into());
        let c = Config::load(Some(&path), env, flags).unwrap();
        assert_eq!(c.output_topic, "from-file");
        assert_eq!(c.group_id, "g-flag");
        assert_eq!(c.limits.cache_ttl_secs, 60);
        assert_eq!(c.limits.max_urls_per_device, 3);
        assert_eq!(c.input_topics, vec!["a", "b"]);
        let shown = c.to_redacted_toml();
        assert!(shown.contains("[redacted]"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn foreign_environment_variables_are_ignored() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        // What Kubernetes injects for a Service named `aepiot-stream`.
        assert!(load(
            "",
            &[
                ("AEPIOT_STREAM_SERVICE_HOST", "10.0.0.1"),
                ("AEPIOT_STREAM_PORT", "tcp://x")
            ]
        )
        .is_ok());
        assert!(Config::load(None, env("AEPIOT_LIMITS__TYPO", "1"), toml::Table::new()).is_err());
        let c = Config::load(None, env("AEPIOT_OUTPUT_TOPIC", "o"), toml::Table::new()).unwrap();
        assert_eq!(c.output_topic, "o");
    }

    #[test]
    fn rejects_unknown_keys_and_impossible_values() {
        assert!(
            matches!(load("outptu_topic = \"x\"", &[]), Err(ConfigError::Invalid(m)) if m.contains("outptu_topic"))
        );
        assert!(load("[urls]\nhosts = []", &[]).is_err());
        assert!(load("[urls.regions]\neurope = [\"eu.aepiot.com\"]", &[]).is_err());
        assert!(load("[urls]\nhosts = [\"a.example:8443\"]", &[]).is_ok());
        assert!(load("[urls]\nhosts = [\"evil.com/x?y=\"]", &[]).is_err());
        assert!(load("[urls]\ndashboard_base_url = \"not a url\"", &[]).is_err());
        assert!(load("[limits]\nwindow_secs = 0", &[]).is_err());
        assert!(matches!(load("x = ", &[]), Err(ConfigError::Toml { .. })));
    }

    /// Every secret-bearing key: the `[security]` passwords and librdkafka's secret properties.
    const SECRET_KEYS: [(&str, &str); 6] = [
        ("security", "sasl_password"),
        ("security", "ssl_key_password"),
        ("kafka", "sasl.password"),
        ("kafka", "ssl.key.password"),
        ("kafka", "ssl.keystore.password"),
        ("kafka", "sasl.oauthbearer.client.secret"),
    ];

    fn env_name(section: &str, key: &str) -> String {
        format!("AEPIOT_{}__{}", section, key.replace('.', "_")).to_ascii_uppercase()
    }

    fn shown(r: &Result<Config, ConfigError>) -> String {
        match r {
            Ok(c) => c.to_redacted_toml(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn secret_values_from_the_environment_are_strings_and_never_shown() {
        for (section, key) in SECRET_KEYS {
            for value in ["123456", "true", "false", "-7", "1.5", "hunter2"] {
                let c = load("", &[(&env_name(section, key), value)]).unwrap_or_else(|e| {
                    panic!("{section}.{key} = {value}: {e}");
                });
                let got = match section {
                    "security" if key == "sasl_password" => {
                        c.security.sasl_password.expose().to_string()
                    }
                    "security" => c.security.ssl_key_password.expose().to_string(),
                    _ => c.kafka[key].as_str().unwrap().to_string(),
                };
                assert_eq!(got, value, "{section}.{key}");
                let text = c.to_redacted_toml();
                assert!(
                    !text.contains(&format!("\"{value}\"")),
                    "{section}.{key}: {text}"
                );
            }
        }
    }

    #[test]
    fn secret_values_in_a_file_never_appear_in_errors() {
        for (section, key) in SECRET_KEYS {
            let key_toml = if section == "kafka" {
                format!("\"{key}\"")
            } else {
                key.to_string()
            };
            for value in [
                "123456",
                "987654.25",
                "true",
                "[\"hunter2\"]",
                "{ x = \"hunter2\" }",
                "1979-05-27T07:32:00Z",
            ] {
                let r = load(&format!("[{section}]\n{key_toml} = {value}\n"), &[]);
                let text = shown(&r);
                for secret in ["123456", "987654", "hunter2", "1979"] {
                    assert!(!text.contains(secret), "{section}.{key} = {value}: {text}");
                }
                // (An unquoted TOML date arrives as its text, a string: nothing to refuse.)
                if section == "security" && !value.starts_with("1979") {
                    assert!(
                        matches!(&r, Err(ConfigError::Invalid(m))
                            if m.contains("the value is not shown") && m.contains(key)),
                        "{section}.{key} = {value}: {text}"
                    );
                }
            }
            // Broken TOML around the secret: the parser's message and position only.
            for broken in [
                format!("[{section}]\n{key_toml} = \"hunter2\n"),
                format!("[{section}]\n{key_toml} = hunter2\n"),
                format!("[{section}]\n{key_toml} = 'hunter2\n"),
                format!("[{section}]\n{key_toml} = \"hunter2\" \"hunter2\"\n"),
                format!("[{section}]\n{key_toml} = \"\"\"hunter2\n"),
                format!("[{section}]\n{key_toml} = \"hunter2\"\n{key_toml} = \"hunter2\"\n"),
                format!("[{section}\n{key_toml} = \"hunter2\"\n"),
                format!("[{section}]\n{key_toml} = \"hunter2\\q\"\n"),
                format!("[{section}]\n{key_toml} = hunter2\"\n"),
                format!("[{section}]\n{key_toml} = [\"hunter2\",\n"),
                format!("[{section}]\n{key_toml} = 0xhunter2\n"),
            ] {
                let r = load(&broken, &[]);
                let text = shown(&r);
                assert!(
                    matches!(r, Err(ConfigError::Toml { .. })),
                    "{broken:?}: {text}"
                );
                assert!(
                    !text.contains("hunter2") && !text.contains("hunt"),
                    "{broken:?}: {text}"
                );
                assert!(text.contains("line "), "{text}");
            }
        }
        // The position is right.
        let e = load("a = 1\nbrokers = \"x\n", &[]).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn config_check_shows_webhook_urls_without_path_query_or_credentials() {
        for (url, want) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXXXXXXtoken",
                "https://hooks.slack.com:443/[redacted]",
            ),
            (
                "https://h.example:8443/hook?token=s3cr3t",
                "https://h.example:8443/[redacted]",
            ),
            (
                "https://u:pw@h.example/",
                "https://h.example:443/[redacted]",
            ),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
            ("http://h.example#frag", "http://h.example:80/[redacted]"),
        ] {
            let c = load(&format!("[[webhooks.endpoints]]\nurl = {url:?}\n"), &[]).unwrap();
            let text = c.to_redacted_toml();
            assert!(text.contains(&format!("url = {want:?}")), "{url}: {text}");
            for secret in ["services", "T000", "token", "s3cr3t", "pw", "frag"] {
                assert!(!text.contains(secret), "{url}: {text}");
            }
            // What it shows loads again.
            load(&text, &[]).unwrap();
        }
    }

    #[test]
    fn link_hosts_and_the_dashboard_base_url_are_checked_at_start() {
        let c = load(
            "[urls]\nallowed_link_hosts = [\"*.example.com\", \"grafana.plant.example\"]\ndashboard_base_url = \"https://dash.example.com\"",
            &[],
        )
        .unwrap();
        let hosts = c.engine_settings().urls.link_hosts;
        assert!(hosts.allows("a.example.com") && hosts.allows("grafana.plant.example"));
        assert!(!hosts.allows("example.com") && !hosts.allows("evil.example"));
        let env = load(
            "",
            &[
                ("AEPIOT_URLS__ALLOWED_LINK_HOSTS", "a.example, *.b.example"),
                ("AEPIOT_URLS__DASHBOARD_BASE_URL", "https://x.b.example"),
            ],
        )
        .unwrap();
        assert_eq!(
            env.urls.allowed_link_hosts,
            vec!["a.example", "*.b.example"]
        );
        for (toml_text, says) in [
            (
                "[urls]\ndashboard_base_url = \"javascript:alert(1)\"",
                "http",
            ),
            (
                "[urls]\ndashboard_base_url = \" https://dash.example.com\"",
                "whitespace",
            ),
            (
                "[urls]\ndashboard_base_url = \"//dash.example.com\"",
                "http",
            ),
            (
                "[urls]\ndashboard_base_url = \"https://\"",
                "dashboard_base_url",
            ),
            (
                "[urls]\nallowed_link_hosts = [\"https://x.example/\"]",
                "allowed_link_hosts",
            ),
            (
                "[urls]\nallowed_link_hosts = [\"x.example\"]",
                "allowed_link_hosts does not allow",
            ),
        ] {
            let e = load(toml_text, &[]).unwrap_err().to_string();
            assert!(e.contains(says), "{toml_text}: {e}");
        }
    }

    #[test]
    fn webhooks_section() {
        let c = load(
            "[webhooks]\ntimeout_ms = 250\n[[webhooks.endpoints]]\nurl = \"https://u:hunter2@hooks.example/x\"\nregions = [\"europe\"]\nsecret_env = \"HOOK_SECRET\"\n[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:8080/\"\n",
            &[("AEPIOT_WEBHOOKS__MAX_ATTEMPTS", "3")],
        )
        .unwrap();
        let w = &c.webhooks;
        assert_eq!((w.timeout_ms, w.max_attempts, w.concurrency), (250, 3, 16));
        assert_eq!(w.endpoints.len(), 2);
        assert_eq!(w.endpoints[0].regions, vec!["europe"]);
        assert_eq!(w.endpoints[1].secret_env, None);
        assert_eq!(c.webhooks_group_id(), "aepiot-stream-webhooks");
        c.validate_for_webhooks().unwrap();
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("secret_env = \"HOOK_SECRET\""));
        // The redacted TOML loads again.
        load(&shown, &[]).unwrap();

        let ep = "[[webhooks.endpoints]]\nurl = \"https://h.example/\"\n";
        assert!(load(&format!("{ep}regions = [\"mars\"]"), &[]).is_err());
        assert!(load(
            &format!("{ep}secret_env = \"A\"\nsecret_file = \"/b\""),
            &[]
        )
        .is_err());
        assert!(load(&format!("{ep}colour = 1"), &[]).is_err());
        assert!(load("[[webhooks.endpoints]]\nurl = \"ftp://h.example/\"", &[]).is_err());
        assert!(load("[[webhooks.endpoints]]\nregions = []", &[]).is_err());
        assert!(load("[webhooks]\nconcurrency = 0", &[]).is_err());
        assert!(load("[webhooks]\nmax_attempts = 0", &[]).is_err());
        assert!(load("[webhooks]\nbackoff_base_ms = 10\nbackoff_max_ms = 5", &[]).is_err());
        // `run` alone never needs endpoints; the webhook service does.
        assert!(load("", &[]).unwrap().validate_for_webhooks().is_err());
        let same_group = load(
            &format!("[webhooks]\ngroup_id = \"aepiot-stream\"\n{ep}"),
            &[],
        )
        .unwrap();
        assert!(same_group.validate_for_webhooks().is_err());
    }
}
