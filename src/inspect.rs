//! `aepiot-stream inspect device ID`: a device's state read from the state changelog, without a
//! running instance. Prints the JSON that `GET /api/devices/{device_id}` answers
//! ([`crate::status::device`]), with `"source": "changelog"`: the state as of the last batch
//! whose state changes reached the changelog.
//!
//! Every partition of the changelog of each input topic is read from its beginning to its end
//! (committed data only), keeping the latest record of the device: the changelog is compacted,
//! so this is about one record per device with state.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::config::Config;
use crate::core::snapshot;
use crate::kafka::client::{admin_config, end_reader};
use crate::status::device::{device_json, StateSource};

const TIMEOUT: Duration = Duration::from_secs(30);

/// [`device`], or an error that says why a device may have no state.
pub fn known_device(config: &Config, device_id: &str) -> anyhow::Result<Value> {
    match device(config, device_id)? {
        Some(state) => Ok(state),
        None => anyhow::bail!(
            "no state for device {device_id:?} in the state changelog of group {:?} ({}): it has              had no event within its window and the state grace period, or it is another              group's or topic's device",
            config.group_id,
            config
                .input_topics
                .iter()
                .map(|t| config.changelog_topic(t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The device's state from the changelog, or `None` when no changelog partition holds it.
/// Blocking.
pub fn device(config: &Config, device_id: &str) -> anyhow::Result<Option<Value>> {
    anyhow::ensure!(
        config.state_changelog,
        "state_changelog is off: there is no changelog to read (ask the running instance: \
         GET /api/devices/{{device_id}} on its metrics address)"
    );
    let limits = config.engine_settings().limits;
    let consumer: BaseConsumer = end_reader(admin_config(config), "aepiot-stream-inspect")
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create a Kafka client: {e}"))?;
    let mut found = Vec::new();
    for input in config.input_topics.iter().filter(|t| !t.trim().is_empty()) {
        anyhow::ensure!(
            !input.starts_with('^'),
            "name the input topic (--input-topic), not a pattern ({input:?})"
        );
        let topic = config.changelog_topic(input);
        for (partition, value) in latest_of(&consumer, &topic, device_id)? {
            let state = snapshot::decode(&value).map_err(|e| {
                anyhow::anyhow!(
                    "the state record of {device_id:?} in {topic}/{partition} is unreadable: {e}"
                )
            })?;
            found.push(device_json(
                device_id,
                input,
                partition,
                &state,
                &limits,
                StateSource::Changelog,
            ));
        }
    }
    found.sort_by(|a, b| b["device_clock"].as_str().cmp(&a["device_clock"].as_str()));
    let mut found = found.into_iter();
    Ok(found.next().map(|mut first| {
        let others: Vec<Value> = found
            .map(|v| json!({"topic": v["topic"], "partition": v["partition"]}))
            .collect();
        if !others.is_empty() {
            first["also_on_partitions"] = others.into();
        }
        first
    }))
}

/// The latest value of key `device_id` in each partition of `topic` where its latest record is
/// not a tombstone.
fn latest_of(
    consumer: &BaseConsumer,
    topic: &str,
    device_id: &str,
) -> anyhow::Result<Vec<(i32, Vec<u8>)>> {
    let md = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot read the metadata of {topic:?}: {e}"))?;
    let partitions: Vec<i32> = md
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        !partitions.is_empty(),
        "state changelog topic {topic:?} does not exist (check --group-id and --input-topic: the \
         changelog of input topic T is <group_id>-T-changelog)"
    );
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .map_err(|e| anyhow::anyhow!("cannot read the offsets of {topic}/{p}: {e}"))?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    let mut latest: HashMap<i32, Option<Vec<u8>>> = HashMap::new();
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let mut done = std::collections::HashSet::new();
    let mut last_progress = Instant::now();
    while done.len() < ends.len() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {
                anyhow::ensure!(
                    last_progress.elapsed() < TIMEOUT,
                    "nothing read from {topic} for {} s",
                    TIMEOUT.as_secs()
                );
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // Under read_committed the end is the last stable offset: may be short of `high`.
                done.insert(p);
            }
            Some(Err(e)) => anyhow::bail!("cannot read {topic}: {e}"),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                if m.key() == Some(device_id.as_bytes()) {
                    latest.insert(m.partition(), m.payload().map(<[u8]>::to_vec));
                }
                if m.offset() + 1 >= ends[&m.partition()] {
                    done.insert(m.partition());
                }
            }
        }
    }
    let mut out: Vec<(i32, Vec<u8>)> = latest
        .into_iter()
        .filter_map(|(p, v)| v.map(|v| (p, v)))
        .collect();
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}
