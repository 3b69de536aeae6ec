//! One output partition's reader: reads the partition's queue in offset order, skips what is not
//! to be delivered, hands each `success` record to its endpoints' lanes, and stores the offset
//! after the longest prefix of records finished at every endpoint (delivered or dead-lettered).
//!
//! At most `webhooks.max_pending_per_partition` records are read ahead of that offset: when a
//! receiver stalls, the reader stops reading and the group's lag grows, memory does not. On a
//! revoke or shutdown the reader stops reading, withdraws the records no lane has started yet
//! that come after every record delivered or being attempted (withdrawing an earlier one would
//! leave a gap that stops the commit there, and the next owner would send the later, delivered
//! ones again), waits for the others within `drain_timeout_ms`, then abandons what is left
//! (attempts stop). Withdrawn and abandoned records are not committed: the partition's next owner
//! sends them again, with the same idempotency keys, after this reader has committed (a revoked
//! partition is handed over only once its revoke returns), so a device's order holds. (Rules
//! 22-23 of `docs/delivery.md`.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::ConsumerContext;
use rdkafka::Message;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::lane::{Delivery, Endpoint, QUEUED};
use super::payload::{self, accepts, Parsed};
use crate::kafka::assignments::PartitionHandle;
use crate::kafka::offset_tracker::OffsetTracker;
use crate::kafka::offsets::OffsetStore;

/// Records read before the reader looks at completions and yields.
const BATCH: usize = 256;

/// What every partition reader shares.
pub struct PartitionEnv {
    pub consumer: Weak<dyn OffsetStore>,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub max_pending: usize,
    pub drain_timeout: Duration,
    /// Cancelled on an error that stops the service (a dead letter that cannot be written).
    pub fatal: CancellationToken,
    /// Traces (`[tracing]`); `None` when off, and then no record's headers are looked at.
    pub otel: Option<Arc<crate::otel::Otel>>,
}

struct Reader {
    env: Arc<PartitionEnv>,
    topic: Arc<str>,
    partition: i32,
    tracker: OffsetTracker,
    finished_tx: mpsc::UnboundedSender<u64>,
    finished_rx: mpsc::UnboundedReceiver<u64>,
    abandon: CancellationToken,
    /// Records handed to lanes and not finished, by sequence number.
    in_flight: HashMap<u64, Arc<Delivery>>,
    /// Records that cannot finish here: skipped because the partition is stopping, or whose
    /// hand-over to the lanes a stop interrupted.
    unfinishable: HashSet<u64>,
    /// The latest record (sequence number) finished by its endpoints.
    last_finished: Option<u64>,
    /// The next offset to commit (-1 until the first one): the handle's position, for the lag
    /// metric.
    committed: Arc<AtomicI64>,
}

/// Starts the reader of one partition.
pub fn spawn<C: ConsumerContext + 'static>(
    env: Arc<PartitionEnv>,
    rt: &tokio::runtime::Handle,
    topic: &str,
    partition: i32,
    mut queue: PartitionQueue<C>,
) -> PartitionHandle {
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    queue.set_nonempty_callback(move || n.notify_one());
    let stop = CancellationToken::new();
    let (done_tx, done) = oneshot::channel();
    let committed = Arc::new(AtomicI64::new(-1));
    let (finished_tx, finished_rx) = mpsc::unbounded_channel();
    let reader = Reader {
        in_flight: HashMap::new(),
        unfinishable: HashSet::new(),
        last_finished: None,
        abandon: env.fatal.child_token(),
        env,
        topic: topic.into(),
        partition,
        tracker: OffsetTracker::default(),
        finished_tx,
        finished_rx,
        committed: committed.clone(),
    };
    let stop_r = stop.clone();
    rt.spawn(async move {
        reader.run(queue, notify, stop_r).await;
        let _ = done_tx.send(());
    });
    PartitionHandle {
        stop,
        done,
        position: committed,
    }
}

impl Reader {
    async fn run<C: ConsumerContext>(
        mut self,
        queue: PartitionQueue<C>,
        notify: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let (topic, partition) = (self.topic.clone(), self.partition);
        let fatal = self.env.fatal.clone();
        tracing::info!(%topic, partition, "webhook partition reader started");
        'outer: while !stop.is_cancelled() && !fatal.is_cancelled() {
            let mut read = 0;
            while read < BATCH && self.tracker.len() < self.env.max_pending {
                match queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(msg)) => {
                        read += 1;
                        let offset = msg.offset();
                        let payload = msg.payload().map(<[u8]>::to_vec);
                        let trace = self.env.otel.as_ref().and_then(|o| o.parent(msg.headers()));
                        drop(msg);
                        if !self.dispatch((offset, payload, trace), &stop).await {
                            break 'outer;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%topic, partition, error = %e, "consumer error");
                        break;
                    }
                }
            }
            self.take_finished();
            self.store();
            if read == BATCH {
                tokio::task::yield_now().await;
                continue;
            }
            if self.tracker.is_empty() {
                self.store_position();
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = fatal.cancelled() => break,
                Some(seq) = self.finished_rx.recv() => self.finish(seq),
                _ = notify.notified() => {}
            }
        }
        self.drain().await;
        tracing::info!(%topic, partition, "webhook partition reader stopped");
    }

    /// Hands one record over (its offset, payload and, when traced, the trace context it carries).
    /// False when a stop interrupted it.
    async fn dispatch(
        &mut self,
        (offset, payload, trace): (i64, Option<Vec<u8>>, Option<opentelemetry::Context>),
        stop: &CancellationToken,
    ) -> bool {
        let record = match payload::parse(payload.as_deref()) {
            Ok(Parsed::Deliver(r)) => r,
            Ok(Parsed::Skip) => {
                self.tracker.push(offset, 0, ());
                return true;
            }
            Err(e) => {
                let trace_id =
                    crate::otel::trace_id_of(trace.as_ref()).map(tracing::field::display);
                tracing::warn!(topic = %self.topic, partition = self.partition, offset, trace_id, error = %e, "skipping a record that is not a URL record");
                self.tracker.push(offset, 0, ());
                return true;
            }
        };
        let targets: Vec<Arc<Endpoint>> = self
            .env
            .endpoints
            .iter()
            .filter(|e| accepts(&e.regions, &record.region))
            .cloned()
            .collect();
        if targets.is_empty() {
            self.tracker.push(offset, 0, ());
            return true;
        }
        // One count for the record: `remaining` counts its endpoints, and the lanes report it
        // finished once, when the last one is done.
        let seq = self.tracker.push(offset, 1, ());
        let delivery = Arc::new(Delivery {
            idempotency_key: payload::idempotency_key(&self.topic, self.partition, offset),
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            device_id: record.device_id,
            body: record.body,
            record: payload.unwrap_or_default(),
            remaining: AtomicUsize::new(targets.len()),
            seq,
            finished: self.finished_tx.clone(),
            abandon: self.abandon.clone(),
            state: QUEUED.into(),
            trace,
        });
        self.in_flight.insert(seq, delivery.clone());
        for ep in targets {
            let handed = tokio::select! {
                biased;
                _ = stop.cancelled() => false,
                _ = self.env.fatal.cancelled() => false,
                r = ep.enqueue(delivery.clone()) => r.is_ok(),
            };
            if !handed {
                self.unfinishable.insert(seq);
                return false;
            }
        }
        true
    }

    fn take_finished(&mut self) {
        while let Ok(seq) = self.finished_rx.try_recv() {
            self.finish(seq);
        }
    }

    fn finish(&mut self, seq: u64) {
        self.last_finished = self.last_finished.max(Some(seq));
        self.in_flight.remove(&seq);
        self.tracker.complete(seq);
    }

    /// Stores the offset after the finished prefix, for the next commit.
    fn store(&mut self) {
        let Some(offset) = self.tracker.take_committable(u64::MAX) else {
            return;
        };
        self.committed.store(offset + 1, Ordering::Relaxed);
        let Some(consumer) = self.env.consumer.upgrade() else {
            return;
        };
        // rd_kafka_offset_store commits offset + 1: the next record to read.
        if let Err(e) = consumer.store(&self.topic, self.partition, offset) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not store offset");
        }
    }

    /// With everything read finished and the queue drained, stores the consumer's position when it
    /// is past the last stored offset: on a transactional output topic (exactly-once pipeline) a
    /// transaction marker follows the last records, and the committed offset should reach the
    /// end, past it, not stop one short.
    fn store_position(&mut self) {
        let Some(consumer) = self.env.consumer.upgrade() else {
            return;
        };
        let Some(position) = consumer.position_of(&self.topic, self.partition) else {
            return;
        };
        if position > self.committed.load(Ordering::Relaxed) && position > 0 {
            self.committed.store(position, Ordering::Relaxed);
            if let Err(e) = consumer.store(&self.topic, self.partition, position - 1) {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not store offset");
            }
        }
    }

    /// Skips the records no lane has started after the last one finished or started, waits for
    /// the others within the drain deadline, abandons the rest, stores.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.env.drain_timeout;
        self.take_finished();
        // From the latest record down: skipped while no lane has started it; once one has been
        // started or finished, every earlier record is waited for, so the committed prefix
        // reaches every record delivered here.
        let mut seqs: Vec<u64> = self.in_flight.keys().copied().collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        let mut keep_below = self.last_finished;
        for seq in seqs {
            if keep_below.is_some_and(|k| seq < k) {
                break;
            }
            if self.in_flight[&seq].try_skip() {
                self.unfinishable.insert(seq);
            } else {
                keep_below = keep_below.max(Some(seq));
            }
        }
        while !self.env.fatal.is_cancelled() && self.tracker.unfinished() > self.unfinishable.len()
        {
            match tokio::time::timeout_at(deadline, self.finished_rx.recv()).await {
                Ok(Some(seq)) => self.finish(seq),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        topic = %self.topic,
                        partition = self.partition,
                        in_flight = self.tracker.unfinished(),
                        "drain deadline passed with webhooks undelivered; the partition's next owner sends them again"
                    );
                    break;
                }
            }
        }
        self.abandon.cancel();
        self.take_finished();
        self.store();
    }
}
