//! Validation: impossible settings are refused at start with a message that says what to change.

use super::{Config, ConfigError, GroupProtocol, Guarantee, OutputFormat};
use crate::core::urls::{check_link, LinkHosts, FALLBACK_REGION};
use crate::residency;

impl Config {
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
        if self.input.prefetch_budget_bytes < 1 << 20 {
            return bad("input.prefetch_budget_bytes must be at least 1048576 (1 MiB)".into());
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
        if self.topics.replication_factor < 0 {
            return bad(
                "topics.replication_factor must be 0 (the cluster's default) or a number of replicas"
                    .into(),
            );
        }
        self.tracing.validate().map_err(ConfigError::Invalid)?;
        self.check_guarantee_overrides()
            .map_err(ConfigError::Invalid)?;
        self.webhooks
            .validate(self.urls.regions.keys())
            .map_err(ConfigError::Invalid)?;
        self.check_residency()?;
        if self.output.format == OutputFormat::Avro && self.schema_registry.url.is_empty() {
            return bad(
                "output.format = \"avro\" needs schema_registry.url: the URL record schema is \
                 registered there at start"
                    .into(),
            );
        }
        if !self.group_instance_id.is_empty() && self.group_protocol != GroupProtocol::Classic {
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

    /// Regions' topics and clusters: see [`residency::check`].
    fn check_residency(&self) -> Result<(), ConfigError> {
        residency::check(
            self.urls.regions.keys(),
            &self.output_topics_by_region,
            &self.clusters,
            self.processing_guarantee == Guarantee::ExactlyOnce,
        )
        .map_err(ConfigError::Invalid)
    }

    /// Checks what `run` needs beyond [`Config::validate`].
    pub fn validate_for_run(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        // Also for a configuration built in code rather than loaded (`demo`, embedding, tests).
        self.check_residency()?;
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
        if self
            .webhooks
            .endpoints
            .iter()
            .any(|e| self.webhook_endpoint_group(e) == self.group_id)
        {
            return bad(
                "an endpoint's consumer group (<webhooks group>-<name>) must differ from group_id",
            );
        }
        Ok(())
    }
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
