//! The move from one consumer group for every endpoint (`<webhooks group>`, before endpoints
//! had positions of their own) to one group per endpoint (`<webhooks group>-<name>`): at start,
//! an endpoint group with no committed offset on any output partition is given the offsets the
//! single group had committed, so an upgrade neither skips records nor sends the whole topic
//! again. A group that has committed offsets is left alone; so is every group when the single
//! group has none (they start at `auto_offset_reset`). The single group itself is not touched:
//! rolling back still finds it (behind by what was delivered since).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::kafka::client::admin_config;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Seeds the endpoint groups that have no committed offsets from the single group's. Blocking
/// work runs off the async workers. A refused seed (an endpoint group whose members joined in
/// the meantime: another instance seeded it) is logged, not fatal.
pub async fn seed_endpoint_groups(config: &Config) -> anyhow::Result<()> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || seed_blocking(&config)).await?
}

fn seed_blocking(config: &Config) -> anyhow::Result<()> {
    let legacy = config.webhooks_group_id();
    let partitions = output_partitions(config, &legacy)?;
    let legacy_offsets = committed(config, &legacy, &partitions)?;
    if legacy_offsets.count() == 0 {
        return Ok(());
    }
    for e in &config.webhooks.endpoints {
        let group = config.webhook_endpoint_group(e);
        if committed(config, &group, &partitions)?.count() > 0 {
            continue;
        }
        let client = group_client(config, &group)?;
        match client.commit(&legacy_offsets, CommitMode::Sync) {
            Ok(()) => tracing::info!(
                %group,
                from = %legacy,
                partitions = legacy_offsets.count(),
                "endpoint group starts where the single webhook group left off"
            ),
            Err(err) => tracing::warn!(
                %group,
                error = %err,
                "could not seed the endpoint group from the single webhook group"
            ),
        }
    }
    Ok(())
}

/// A client of `group` that never joins it.
fn group_client(config: &Config, group: &str) -> anyhow::Result<BaseConsumer> {
    let mut c = admin_config(config);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c.create()
        .map_err(|e| anyhow::anyhow!("cannot create a Kafka client: {e}"))
}

fn output_partitions(config: &Config, group: &str) -> anyhow::Result<TopicPartitionList> {
    let client = group_client(config, group)?;
    let mut all = TopicPartitionList::new();
    for topic in config.output_topics() {
        let md = client
            .fetch_metadata(Some(&topic), TIMEOUT)
            .map_err(|e| anyhow::anyhow!("cannot read the metadata of {topic:?}: {e}"))?;
        for t in md.topics() {
            for p in t.partitions() {
                all.add_partition(&topic, p.id());
            }
        }
    }
    Ok(all)
}

/// `group`'s committed offsets on `partitions`: only the partitions that have one.
fn committed(
    config: &Config,
    group: &str,
    partitions: &TopicPartitionList,
) -> anyhow::Result<TopicPartitionList> {
    let client = group_client(config, group)?;
    let found = client
        .committed_offsets(partitions.clone(), TIMEOUT)
        .map_err(|e| {
            anyhow::anyhow!("cannot read the committed offsets of group {group:?}: {e}")
        })?;
    let mut out = TopicPartitionList::new();
    for e in found.elements() {
        if let Offset::Offset(o) = e.offset() {
            out.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))?;
        }
    }
    Ok(out)
}
