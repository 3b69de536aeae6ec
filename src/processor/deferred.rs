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
//!
//! Bounded in bytes (`max_deferred_bytes`): a commit can take long while the cluster is slow or
//! away (each call may wait half of `transaction.timeout.ms`, retriable calls are tried again),
//! and the workers must not fill the memory meanwhile. Once the kept records reach the bound the
//! workers end their batch and wait ([`Deferred::room`]) until the commit ends; each worker can
//! add at most the outputs of one record (and its batch's state cut) past it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use rdkafka::error::KafkaError;
use rdkafka::message::{OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::acks::ProducerCtx;
use crate::kafka::send::send_waiting;

/// Records kept while a commit runs. The flag only changes under the transaction gate's write
/// guard and workers produce only under its read guard, so it is constant during a batch.
pub struct Deferred {
    committing: AtomicBool,
    records: Mutex<Vec<Kept>>,
    /// Bytes of the kept records (keys, payloads, headers' values).
    bytes: AtomicUsize,
    max_bytes: usize,
    /// Wakes the workers waiting for room when the commit ends.
    ended: Notify,
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
    /// Keeps at most about `max_bytes` (see the module's opening comment).
    pub fn new(max_bytes: usize) -> Self {
        Deferred {
            committing: AtomicBool::new(false),
            records: Mutex::default(),
            bytes: AtomicUsize::new(0),
            max_bytes,
            ended: Notify::new(),
        }
    }

    /// Whether the kept records reached the bound: the worker ends its batch and waits for
    /// [`Deferred::room`].
    pub fn full(&self) -> bool {
        self.committing.load(Ordering::Acquire)
            && self.bytes.load(Ordering::Acquire) >= self.max_bytes
    }

    /// Waits until records may be kept again: at once unless [`Deferred::full`], else until the
    /// commit ends. Call without the gate's read guard: the commit's end takes its write guard.
    pub async fn room(&self) {
        loop {
            let ended = self.ended.notified();
            if !self.full() {
                return;
            }
            ended.await;
        }
    }

    /// Bytes kept now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    fn ended(&self) {
        self.bytes.store(0, Ordering::Release);
        self.committing.store(false, Ordering::Release);
        self.ended.notify_waiters();
    }

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
        let size = record.key.map_or(0, |k| k.to_bytes().len())
            + record.payload.map_or(0, |p| p.to_bytes().len())
            + record.topic.len();
        self.bytes.fetch_add(size, Ordering::AcqRel);
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
        self.ended();
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
        self.ended();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    fn record(payload: &[u8]) -> BaseRecord<'_, [u8], [u8], usize> {
        BaseRecord::with_opaque_to("out", 7)
            .key(&b"k"[..])
            .payload(payload)
    }

    #[test]
    fn records_pass_through_unless_a_commit_runs() {
        let d = Deferred::new(1 << 20);
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
        let d = Deferred::new(1 << 20);
        d.start();
        assert!(d.keep(record(b"a")).is_none());
        d.discard();
        assert!(d.records.lock().unwrap().is_empty());
        assert!(d.keep(record(b"b")).is_some());
    }

    #[test]
    fn a_full_deferral_holds_the_workers_until_the_commit_ends() {
        let d = Deferred::new(10);
        futures::executor::block_on(d.room());
        d.start();
        assert!(d.keep(record(b"01234")).is_none());
        assert!(!d.full(), "9 bytes (topic, key, payload) of 10");
        assert!(d.keep(record(b"56789")).is_none());
        assert!(d.full());
        assert_eq!(d.bytes(), 18);
        let mut room = Box::pin(d.room());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(
            room.as_mut().poll(&mut cx).is_pending(),
            "no room while full"
        );
        d.discard();
        assert!(
            room.as_mut().poll(&mut cx).is_ready(),
            "room once the commit ends"
        );
        assert_eq!(d.bytes(), 0);
    }
}
