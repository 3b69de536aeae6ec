//! Replay of processor dead letters: the event is produced again, payload, key and headers as
//! they were, to the topic it came from (or `--to`), with [`headers::REPLAYED_FROM`] naming the
//! dead letter. Each record is acknowledged (all in-sync replicas) before the next is sent, so a
//! replay that stops has produced exactly the records it reports.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::config::Config;
use crate::kafka::client::{base, overlay};
use crate::kafka::headers;

use super::letter::Original;

/// How long one record may wait for its acknowledgement before the replay stops.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The replay's producer.
pub struct Producer(FutureProducer);

impl Producer {
    pub fn new(config: &Config) -> anyhow::Result<Producer> {
        let mut c = base(config, "dead-letters-replay");
        c.set("enable.idempotence", "true").set("acks", "all").set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        );
        let p = overlay(c, config)
            .create()
            .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
        Ok(Producer(p))
    }

    /// Produces `original` to `topic`, naming dead letter `from`; the partition and offset it got.
    pub async fn send(
        &self,
        topic: &str,
        original: &Original,
        from: &str,
    ) -> Result<(i32, i64), String> {
        let mut h = OwnedHeaders::new_with_capacity(original.headers.len() + 1);
        for (key, value) in &original.headers {
            h = h.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        h = h.insert(Header {
            key: headers::REPLAYED_FROM,
            value: Some(from),
        });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(h);
        if let Some(k) = &original.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &original.payload {
            record = record.payload(p.as_slice());
        }
        self.0
            .send(record, Timeout::After(DELIVERY_TIMEOUT))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| format!("the broker did not take it on {topic:?}: {e}"))
    }
}
