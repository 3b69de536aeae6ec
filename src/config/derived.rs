//! What each service takes from the configuration: the engine's settings, the output routes and
//! each cluster's client access, librdkafka properties, group ids.

use std::sync::Arc;

use super::{Config, ConfigError, KafkaProperties, UnknownRegion};
use crate::core::avro_record::RecordEncoding;
use crate::core::urls::LinkHosts;
use crate::core::{EngineSettings, Limits, UrlSettings};
use crate::residency::{self, Routes};
use crate::schema_registry::{RegistryInput, Waits};
use crate::security::SecurityConfig;

impl Config {
    /// `[schema_registry]` as the partition workers take it (`None` without a registry); `waits`
    /// is where they say what they wait for.
    pub fn registry_input(
        &self,
        waits: Arc<Waits>,
    ) -> Result<Option<Arc<RegistryInput>>, ConfigError> {
        RegistryInput::new(&self.schema_registry, self.input.max_record_bytes, waits)
            .map_err(ConfigError::Invalid)
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
            // Set by `run` once the registry gave the URL record schema its id (output.format).
            record_encoding: RecordEncoding::Json,
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
        self.kafka.iter()
    }

    /// The webhook service's consumer group: `webhooks.group_id`, or `<group_id>-webhooks`.
    pub fn webhooks_group_id(&self) -> String {
        if self.webhooks.group_id.is_empty() {
            format!("{}-webhooks", self.group_id)
        } else {
            self.webhooks.group_id.clone()
        }
    }

    /// The consumer group of one webhook endpoint: `<webhooks group>-<endpoint name>`. Each
    /// endpoint reads at its own position, so one that is down never holds back another.
    pub fn webhook_endpoint_group(
        &self,
        endpoint: &crate::webhook::config::WebhookEndpointConfig,
    ) -> String {
        format!("{}-{}", self.webhooks_group_id(), endpoint.name())
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
    pub kafka: &'a KafkaProperties,
}

impl ClusterAccess<'_> {
    /// librdkafka properties from this cluster's `kafka` table, values as strings.
    pub fn kafka_properties(&self) -> impl Iterator<Item = (&str, String)> {
        self.kafka.iter()
    }
}
