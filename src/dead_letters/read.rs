//! Reads a dead-letter topic from a start (a group's committed offsets, or the beginning) up to
//! the end offsets it had when reading began, then stops: dead letters written meanwhile (a
//! replayed event that fails again) wait for the next run. The consumer is assigned its
//! partitions and never joins a group; a replay's progress is committed for its group directly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::kafka::client::{admin_config, end_reader};

use super::letter::Raw;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for the next record of a partition not yet at its end.
const STALL: Duration = Duration::from_secs(60);

/// A bounded read of a dead-letter topic.
pub struct Reader {
    consumer: Arc<StreamConsumer>,
    topic: String,
    /// Partitions not read to their end yet, with the end offset they had at the start.
    ends: BTreeMap<i32, i64>,
}

impl Reader {
    /// Starts reading `topic`: from `group`'s committed offsets where it has some, else from the
    /// beginning (`group` `None`: from the beginning).
    pub fn open(config: &Config, topic: &str, group: Option<&str>) -> anyhow::Result<Reader> {
        let name = group.unwrap_or("aepiot-dead-letters-stats");
        let consumer: StreamConsumer = end_reader(admin_config(config), name)
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| anyhow::anyhow!("cannot create a Kafka client: {e}"))?;
        let md = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| anyhow::anyhow!("cannot read the metadata of {topic:?}: {e}"))?;
        let partitions: Vec<i32> = md
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| anyhow::anyhow!("dead-letter topic {topic:?} does not exist"))?
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut all = TopicPartitionList::new();
        for p in &partitions {
            all.add_partition(topic, *p);
        }
        let committed = match group {
            Some(_) => Some(consumer.committed_offsets(all, TIMEOUT).map_err(|e| {
                anyhow::anyhow!("cannot read the replay group's committed offsets: {e}")
            })?),
            None => None,
        };
        let mut assign = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, TIMEOUT)
                .map_err(|e| anyhow::anyhow!("cannot read the end offsets of {topic:?}: {e}"))?;
            let start = committed
                .as_ref()
                .and_then(|c| c.find_partition(topic, p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(low)
                .max(low);
            if start < high {
                assign.add_partition_offset(topic, p, Offset::Offset(start))?;
                ends.insert(p, high);
            }
        }
        consumer
            .assign(&assign)
            .map_err(|e| anyhow::anyhow!("cannot read {topic:?}: {e}"))?;
        Ok(Reader {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            ends,
        })
    }

    /// The next dead letter, or `None` once every partition is read to its end.
    pub async fn next(&mut self) -> anyhow::Result<Option<Raw>> {
        while !self.ends.is_empty() {
            let msg = tokio::time::timeout(STALL, self.consumer.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no record from {:?} within {}s though partitions {:?} are not read to \
                         their end",
                        self.topic,
                        STALL.as_secs(),
                        self.ends.keys().collect::<Vec<_>>()
                    )
                })?;
            let msg = match msg {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    // An end-of-partition event can come before the records up to the end taken
                    // at the start (seen on a fresh assignment): only the position says.
                    let Some(&end) = self.ends.get(&p) else {
                        continue;
                    };
                    let reached = self.consumer.position().is_ok_and(|pos| {
                        pos.find_partition(&self.topic, p)
                            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end))
                    });
                    if reached {
                        self.ends.remove(&p);
                    }
                    continue;
                }
                Err(e) => anyhow::bail!("cannot read {:?}: {e}", self.topic),
            };
            let p = msg.partition();
            let Some(&end) = self.ends.get(&p) else {
                continue;
            };
            if msg.offset() + 1 >= end {
                self.ends.remove(&p);
            }
            if msg.offset() >= end {
                continue;
            }
            let headers = msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Some(Raw {
                topic: self.topic.clone(),
                partition: p,
                offset: msg.offset(),
                timestamp_ms: msg.timestamp().to_millis(),
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
                headers,
            }));
        }
        Ok(None)
    }

    /// Commits `next` (partition → the next offset to look at) for the reader's group, off the
    /// runtime (a synchronous commit blocks).
    pub async fn commit(&self, next: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot commit the replay's progress: {e}"))
    }
}
