//! The largest output `run` may produce: the smaller of the producer's `message.max.bytes` and the
//! output and dead-letter topics' `max.message.bytes`, read once at start. The engine checks every
//! URL record against it before producing, so an event whose URL record is too large becomes its
//! own dead letter (`output_too_large`) instead of a delivery failure.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::config::Config;
use crate::kafka::client::admin_config_on;

/// librdkafka's default `message.max.bytes`.
pub const PRODUCER_DEFAULT: usize = 1_000_000;

/// Room for what a record carries besides the value and the header values the engine counts:
/// key, header names, record and batch overhead.
const OVERHEAD: usize = 2048;

/// Reads the limit over every cluster records go to; a topic whose configuration cannot be read
/// (or a regional cluster that is away) counts with the producer's limit.
pub async fn max_output_bytes(config: &Config) -> anyhow::Result<usize> {
    let routes = config.routes();
    let mut limit = usize::MAX;
    for i in 0..routes.clusters.len() {
        let access = config.cluster_access(&routes, i);
        let mut topics = routes.topics_of(i, &config.output_topic);
        if i == 0 {
            topics.push(config.dead_letter_topic.clone());
        }
        let producer = producer_limit(access.kafka_properties(), &access.name)?;
        let client = admin_config_on(config, &routes, i);
        limit = limit.min(topics_limit(client, &access.name, &topics, producer).await?);
    }
    let limit = known_limit(limit);
    tracing::info!(max_output_bytes = limit, "largest output record");
    Ok(limit)
}

/// The room left for an output's value under a record size limit.
pub fn known_limit(record_limit: usize) -> usize {
    record_limit.saturating_sub(OVERHEAD).max(OVERHEAD)
}

/// The producer's `message.max.bytes` from a cluster's `[kafka]` properties, or the default.
fn producer_limit<'a>(
    mut properties: impl Iterator<Item = (&'a str, String)>,
    cluster: &str,
) -> anyhow::Result<usize> {
    properties
        .find(|(k, _)| *k == "message.max.bytes")
        .map(|(_, v)| {
            v.parse::<usize>().map_err(|_| {
                anyhow::anyhow!(
                    "message.max.bytes = {v:?} (cluster {cluster:?}) is not a number of bytes"
                )
            })
        })
        .transpose()
        .map(|v| v.unwrap_or(PRODUCER_DEFAULT))
}

/// The smallest `max.message.bytes` of `topics` on one cluster, and `producer`.
async fn topics_limit(
    client: rdkafka::ClientConfig,
    cluster: &str,
    topics: &[String],
    producer: usize,
) -> anyhow::Result<usize> {
    let admin: AdminClient<DefaultClientContext> = client
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka admin client ({cluster}): {e}"))?;
    let resources: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(t.as_str()))
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut limit = producer;
    match admin.describe_configs(&resources, &opts).await {
        Ok(results) => {
            for (topic, r) in topics.iter().zip(results) {
                let value = r
                    .ok()
                    .and_then(|r| r.get("max.message.bytes").and_then(|e| e.value.clone()))
                    .and_then(|v| v.parse::<usize>().ok());
                match value {
                    Some(v) => limit = limit.min(v),
                    None => {
                        tracing::warn!(%topic, cluster, "cannot read max.message.bytes; assuming the producer's limit")
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(cluster, error = %e, "cannot read the output topics' max.message.bytes; assuming the producer's limit")
        }
    }
    Ok(limit)
}
