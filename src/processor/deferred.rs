//! Exactly-once: what workers produce while a transaction commits.
//!
//! librdkafka takes records only while a transaction is open. From `commit_transaction` to the
//! next `begin_transaction` (the flush of the transaction's records, then the round trips to the
//! transaction coordinator: tens of milliseconds, every `commit_interval_ms`) it refuses them.
//! Workers that waited out every commit would leave the instance idle for much of its time (see
//! BENCHMARKS.md, "Exactly-once: the workers no longer wait for the commit"), so the commit takes
//! the workers' positions, lets them go on, and what they produce meanwhile is kept here, in
//! order, and produced into the next transaction right after it begins. None of it counts in the
//! committing transaction: its positions were taken before any of it was processed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::error::KafkaError;
use rdkafka::message::{OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::acks::ProducerCtx;
use crate::kafka::send::send_waiting;

/// Records kept while a commit runs. The flag only changes under the transaction gate's write
/// guard and workers produce only under its read guard, so it is constant during a batch.
#[derive(Default)]
pub struct Deferred {
    committing: AtomicBool,
    records: Mutex<Vec<Kept>>,
}

/// One record, owned: the worker's buffers are reused for the next record.
struct Kept {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
    timestamp: Option<i64>,
    opaque: usize,
}

impl Deferred {
    /// A commit begins: from now on records are kept. Call with the gate's write guard held.
    pub fn start(&self) {
        self.committing.store(true, Ordering::Release);
    }

    /// Keeps `record` while a commit runs (`None`); gives it back to be produced now otherwise.
    pub fn keep<'a, K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
        &self,
        record: BaseRecord<'a, K, P, usize>,
    ) -> Option<BaseRecord<'a, K, P, usize>> {
        if !self.committing.load(Ordering::Acquire) {
            return Some(record);
        }
        let kept = Kept {
            topic: record.topic.to_owned(),
            partition: record.partition,
            key: record.key.map(|k| k.to_bytes().to_vec()),
            payload: record.payload.map(|p| p.to_bytes().to_vec()),
            headers: record.headers,
            timestamp: record.timestamp,
            opaque: record.delivery_opaque,
        };
        self.records.lock().expect("deferred lock").push(kept);
        None
    }

    /// The next transaction has begun: produces the kept records into it, in the order they were
    /// kept, and lets workers produce directly again. Call with the gate's write guard held. An
    /// error is a record the producer refused outright (a full queue is waited out): the caller
    /// aborts the transaction and rewinds, as for a failed commit.
    pub fn release(&self, producer: &ThreadedProducer<ProducerCtx>) -> Result<usize, KafkaError> {
        let kept = std::mem::take(&mut *self.records.lock().expect("deferred lock"));
        self.committing.store(false, Ordering::Release);
        let n = kept.len();
        for k in kept {
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&k.topic, k.opaque);
            record.partition = k.partition;
            record.key = k.key.as_deref();
            record.payload = k.payload.as_deref();
            record.headers = k.headers;
            record.timestamp = k.timestamp;
            send_waiting(producer, record, || false)?;
        }
        Ok(n)
    }

    /// The transaction aborts: what was kept is dropped (the partitions rewind to their committed
    /// offsets and process it again).
    pub fn discard(&self) {
        self.records.lock().expect("deferred lock").clear();
        self.committing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> BaseRecord<'_, [u8], [u8], usize> {
        BaseRecord::with_opaque_to("out", 7)
            .key(&b"k"[..])
            .payload(payload)
    }

    #[test]
    fn records_pass_through_unless_a_commit_runs() {
        let d = Deferred::default();
        assert!(d.keep(record(b"a")).is_some());
        d.start();
        assert!(d.keep(record(b"b")).is_none());
        assert!(d.keep(record(b"c")).is_none());
        let kept = d.records.lock().unwrap();
        let payloads: Vec<_> = kept.iter().map(|k| k.payload.clone().unwrap()).collect();
        assert_eq!(payloads, [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(
            (kept[0].opaque, kept[0].key.as_deref()),
            (7, Some(&b"k"[..]))
        );
    }

    #[test]
    fn an_abort_drops_what_was_kept_and_ends_the_commit() {
        let d = Deferred::default();
        d.start();
        assert!(d.keep(record(b"a")).is_none());
        d.discard();
        assert!(d.records.lock().unwrap().is_empty());
        assert!(d.keep(record(b"b")).is_some());
    }
}
