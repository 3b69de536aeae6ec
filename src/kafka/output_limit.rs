//! The largest output `run` may produce: the smaller of the producer's `message.max.bytes` and the
//! output and dead-letter topics' `max.message.bytes`, read once at start. The engine checks every
//! URL record against it before producing, so an event whose URL record is too large becomes its
//! own dead letter (`output_too_large`) instead of a delivery failure.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use super::client::admin_config;
use crate::config::Config;

/// librdkafka's default `message.max.bytes`.
const PRODUCER_DEFAULT: usize = 1_000_000;

/// Room for what a record carries besides the value and the header values the engine counts:
/// key, header names, record and batch overhead.
const OVERHEAD: usize = 2048;

/// Reads the limit; a topic whose configuration cannot be read counts with the broker default.
pub async fn max_output_bytes(config: &Config) -> anyhow::Result<usize> {
    let producer = config
        .kafka_properties()
        .find(|(k, _)| *k == "message.max.bytes")
        .map(|(_, v)| {
            v.parse::<usize>().map_err(|_| {
                anyhow::anyhow!("[kafka] message.max.bytes = {v:?} is not a number of bytes")
            })
        })
        .transpose()?
        .unwrap_or(PRODUCER_DEFAULT);
    let admin: AdminClient<DefaultClientContext> = admin_config(config)
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka admin client: {e}"))?;
    let mut topics = config.output_topics();
    topics.push(config.dead_letter_topic.clone());
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
                        tracing::warn!(%topic, "cannot read max.message.bytes; assuming the producer's limit")
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the output topics' max.message.bytes; assuming the producer's limit")
        }
    }
    let limit = limit.saturating_sub(OVERHEAD).max(OVERHEAD);
    tracing::info!(max_output_bytes = limit, "largest output record");
    Ok(limit)
}
