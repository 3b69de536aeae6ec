//! The input record a processor dead letter came from, read again at its source offset: the way
//! to replay a dead letter that kept only part of the event (an event over
//! `input.max_dead_letter_payload_bytes`) or carries the refused URL record instead. Found while
//! the input topic's retention still holds it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::kafka::client::admin_config;

use super::letter::{Original, SourceRef};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Reads single records by position.
#[derive(Clone)]
pub struct Sources(Arc<BaseConsumer>);

impl Sources {
    pub fn new(config: &Config) -> anyhow::Result<Sources> {
        let mut c = admin_config(config);
        c.set("group.id", "aepiot-dead-letters-source")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error");
        let consumer = c
            .create()
            .map_err(|e| anyhow::anyhow!("cannot create a Kafka client: {e}"))?;
        Ok(Sources(Arc::new(consumer)))
    }

    /// The record at `at`, off the runtime. `Err`: why it cannot be read (gone, or unreachable).
    pub async fn fetch(&self, at: &SourceRef) -> Result<Original, String> {
        let (me, at) = (self.clone(), at.clone());
        tokio::task::spawn_blocking(move || me.fetch_blocking(&at))
            .await
            .map_err(|e| e.to_string())?
    }

    fn fetch_blocking(&self, at: &SourceRef) -> Result<Original, String> {
        let c = &self.0;
        let (low, high) = c
            .fetch_watermarks(&at.topic, at.partition, TIMEOUT)
            .map_err(|e| format!("cannot read the offsets of {:?}: {e}", at.topic))?;
        if at.offset < low || at.offset >= high {
            return Err(format!(
                "the event is no longer at {at} (the topic keeps offsets {low} to {high})"
            ));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&at.topic, at.partition, Offset::Offset(at.offset))
            .map_err(|e| e.to_string())?;
        c.assign(&tpl).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(m)) if m.offset() == at.offset => {
                    return Ok(Original {
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                }
                // Past it (an aborted or removed record), or at the end: it is not there.
                Some(Ok(_)) | Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    return Err(format!("the event is no longer at {at}"))
                }
                Some(Err(e)) => return Err(format!("cannot read {at}: {e}")),
            }
        }
        Err(format!(
            "no answer reading {at} within {}s",
            TIMEOUT.as_secs()
        ))
    }
}
