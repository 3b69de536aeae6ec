//! One partition's worker: restores its devices' state, reads its partition queue, runs the
//! engine, produces outputs and state changes, and tracks what may be committed.
//!
//! At-least-once: an offset is stored for commit only after the outputs (URL record or dead
//! letter, and state-changelog records) of that record and of every earlier record of the
//! partition are acknowledged by the broker. A crash can repeat outputs, never lose one.
//!
//! Exactly-once: the worker processes each batch under the transaction gate's read guard and
//! publishes its position; the commit (see [`super::transactions`]) puts outputs, state changes
//! and that position in one transaction.
//!
//! The worker owns its partition's engine (device state and buffers): devices are sharded by
//! partition (producers key events by device_id), so the hot path shares nothing and locks nothing.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{oneshot, Notify, RwLock};
use tokio_util::sync::CancellationToken;

use super::acks::{Ack, AckRouter, ProducerCtx};
use super::changelog;
use super::rebalance::ConsumerCtx;
use crate::core::snapshot;
use crate::core::{Decision, Engine, Output, RecordMeta, Shared, Source};
use crate::metrics::{Metrics, OutcomeCounters};
use prometheus::local::LocalHistogram;

/// Records read from the partition queue before the worker looks at acks and yields.
const BATCH: usize = 256;

/// Where state changes go and are restored from.
pub struct ChangelogEnv {
    /// Consumer settings for restoring (brokers, security).
    pub restore_client: ClientConfig,
    /// `<group_id>-`: the changelog of input topic `t` is `<prefix><t>-changelog`.
    pub prefix: String,
}

impl ChangelogEnv {
    pub fn topic_for(&self, input_topic: &str) -> String {
        format!("{}{input_topic}-changelog", self.prefix)
    }
}

/// What every worker of a process shares.
pub struct WorkerEnv {
    pub consumer: Weak<BaseConsumer<ConsumerCtx>>,
    pub producer: Arc<ThreadedProducer<ProducerCtx>>,
    pub router: Arc<AckRouter>,
    pub shared: Arc<Shared>,
    pub metrics: Metrics,
    pub output_topic: String,
    pub dead_letter_topic: String,
    pub drain_timeout: Duration,
    /// Cancelled when an output cannot be delivered: the process stops without committing past it.
    pub fatal: CancellationToken,
    /// Exactly-once: the transaction gate (batches under its read guard, commits under its write
    /// guard). `None` under at-least-once.
    pub gate: Option<Arc<RwLock<()>>>,
    pub changelog: Option<ChangelogEnv>,
    /// The benchmark's reference (`aepiot-stream passthrough`): every record's key, payload and
    /// headers go to the output topic unchanged, without the engine; everything else (queues,
    /// tasks, producer, acks, commits, transactions) is the pipeline's own.
    pub passthrough: bool,
}

/// The rebalance handler's side of a worker.
pub struct WorkerHandle {
    pub stop: CancellationToken,
    pub done: oneshot::Receiver<()>,
    /// Next offset to process (-1 until the first record): the lag metric, and under exactly-once
    /// the offset committed with the transaction.
    pub position: Arc<AtomicI64>,
}

struct Pending {
    offset: i64,
    /// Outputs of this record (and, on a batch's last record, the batch's state changes) not yet
    /// acknowledged.
    outstanding: u32,
    consumed_at: Instant,
    record_time_ms: Option<i64>,
}

struct Worker {
    notify: Arc<Notify>,
    engine: Engine,
    id: u32,
    position: Arc<AtomicI64>,
    counters: OutcomeCounters,
    /// Devices whose state changed in the current batch (written to the changelog at its end).
    dirty: HashSet<CompactString>,
    snapshot: Vec<u8>,
    /// Separate from the engine so acks can be taken while an output borrows the engine's buffer.
    tracker: Tracker,
}

/// The partition's in-flight records and their acks.
struct Tracker {
    env: Arc<WorkerEnv>,
    topic: String,
    partition: i32,
    id: u32,
    acks: UnboundedReceiver<Ack>,
    /// In-flight input records in offset order; `base_seq` is the sequence number of the front.
    pending: VecDeque<Pending>,
    base_seq: u64,
    failed: bool,
    /// `aepiot_processing_latency_seconds` and `aepiot_event_age_seconds`, buffered per worker
    /// and flushed with every progress update (no shared atomics per record).
    latency: LocalHistogram,
    age: LocalHistogram,
}

/// Starts the worker of one partition on the runtime. `position` is the offset it starts from,
/// when known (a rewind), else -1.
pub fn spawn(
    env: Arc<WorkerEnv>,
    rt: &tokio::runtime::Handle,
    topic: &str,
    partition: i32,
    mut queue: PartitionQueue<ConsumerCtx>,
    position: i64,
) -> WorkerHandle {
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    // Wakes the worker when its queue goes from empty to non-empty.
    queue.set_nonempty_callback(move || n.notify_one());
    let (id, acks) = env.router.register();
    let stop = CancellationToken::new();
    let (done_tx, done) = oneshot::channel();
    let position = Arc::new(AtomicI64::new(position));
    let worker = Worker {
        engine: Engine::new(env.shared.clone()),
        counters: env.metrics.outcome_counters(),
        notify,
        id,
        position: position.clone(),
        dirty: HashSet::new(),
        snapshot: Vec::with_capacity(64),
        tracker: Tracker {
            latency: env.metrics.processing_latency.local(),
            age: env.metrics.event_age.local(),
            env,
            topic: topic.to_owned(),
            partition,
            id,
            acks,
            pending: VecDeque::new(),
            base_seq: 0,
            failed: false,
        },
    };
    let stop_w = stop.clone();
    rt.spawn(async move {
        worker.run(queue, stop_w).await;
        let _ = done_tx.send(());
    });
    WorkerHandle {
        stop,
        done,
        position,
    }
}

impl Worker {
    async fn run(mut self, queue: PartitionQueue<ConsumerCtx>, stop: CancellationToken) {
        let (topic, partition) = (self.tracker.topic.clone(), self.tracker.partition);
        let env = self.tracker.env.clone();
        let labels = [topic.as_str(), &partition.to_string()];
        let devices = env.metrics.state_devices.with_label_values(&labels);
        let cache = env.metrics.state_cache_entries.with_label_values(&labels);
        tracing::info!(%topic, partition, "partition worker started");
        if env.changelog.is_some() && !self.restore().await {
            env.fatal.cancel();
            return;
        }
        while !self.tracker.failed && !stop.is_cancelled() {
            // Exactly-once: a batch runs inside one transaction, never across a commit.
            let guard = match &env.gate {
                None => None,
                Some(gate) => tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    g = gate.clone().read_owned() => Some(g),
                },
            };
            let mut read = 0;
            // One clock reading per batch: a batch takes well under a millisecond, and reading
            // the clocks per record cost ~4 % of the processor's CPU.
            let clock = Clock::now();
            while read < BATCH {
                match queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(msg)) => {
                        read += 1;
                        self.handle(&msg, &clock).await;
                        self.position.store(msg.offset() + 1, Ordering::Relaxed);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%topic, partition, error = %e, "consumer error");
                        break;
                    }
                }
            }
            if read > 0 {
                self.write_state_changes().await;
            }
            drop(guard);
            self.tracker.take_acks();
            self.tracker.store_progress();
            devices.set(self.engine.states().device_count() as i64);
            cache.set(self.engine.states().cache_entries() as i64);
            if read == BATCH {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(ack) = self.tracker.acks.recv() => self.tracker.on_ack(ack, &Clock::now()),
                _ = self.notify.notified() => {}
            }
        }
        if env.gate.is_none() {
            self.tracker.drain().await;
        }
        let _ = env.metrics.state_devices.remove_label_values(&labels);
        let _ = env.metrics.state_cache_entries.remove_label_values(&labels);
        env.router.unregister(self.id);
        tracing::info!(%topic, partition, "partition worker stopped");
    }

    /// Restores the partition's device state from its changelog; false if that failed.
    async fn restore(&mut self) -> bool {
        let env = self.tracker.env.clone();
        let Some(cl) = &env.changelog else {
            return true;
        };
        let changelog_topic = cl.topic_for(&self.tracker.topic);
        let client = cl.restore_client.clone();
        let partition = self.tracker.partition;
        let mut engine = std::mem::replace(&mut self.engine, Engine::new(env.shared.clone()));
        let result = tokio::task::spawn_blocking(move || {
            let r = changelog::restore(&client, &changelog_topic, partition, engine.states_mut());
            (engine, r)
        })
        .await;
        let (engine, result) = match result {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "state restore panicked");
                return false;
            }
        };
        self.engine = engine;
        self.engine.states_mut().track_expired();
        match result {
            Ok(r) => {
                env.metrics.state_restore_seconds.observe(r.seconds);
                env.metrics.state_restored_records.inc_by(r.records);
                tracing::info!(
                    topic = %self.tracker.topic,
                    partition,
                    records = r.records,
                    devices = r.devices,
                    seconds = r.seconds,
                    "state restored"
                );
                true
            }
            Err(e) => {
                tracing::error!(topic = %self.tracker.topic, partition, error = %e, "state restore failed; stopping");
                false
            }
        }
    }

    async fn handle(&mut self, msg: &BorrowedMessage<'_>, clock: &Clock) {
        if self.tracker.env.passthrough {
            return self.forward(msg, clock).await;
        }
        let t = &mut self.tracker;
        let env = t.env.clone();
        let offset = msg.offset();
        let record_time_ms = msg.timestamp().to_millis();
        let meta = RecordMeta {
            record_time_ms,
            now_ms: clock.wall_ms,
            source: Some(Source::Kafka {
                topic: &t.topic,
                partition: t.partition,
                offset,
            }),
        };
        let opaque = t.next_opaque();
        let out = self.engine.process(msg.payload(), &meta);
        if let Some(device) = out.device_id() {
            if msg.key() != Some(device.as_bytes()) {
                self.counters.misrouted.inc();
            }
        }
        let produced = match out {
            Output::Record {
                status,
                json,
                region,
                device_id,
                event_type,
                urls,
            } => {
                self.counters.decision(status, urls);
                if status == Decision::Success && env.changelog.is_some() {
                    self.dirty.insert(CompactString::from(device_id));
                }
                let mut headers = OwnedHeaders::new_with_capacity(3)
                    .insert(Header {
                        key: "aepiot.status",
                        value: Some(status.as_str()),
                    })
                    .insert(Header {
                        key: "aepiot.device_id",
                        value: Some(device_id),
                    });
                if let Some(t) = event_type {
                    headers = headers.insert(Header {
                        key: "aepiot.event_type",
                        value: Some(t),
                    });
                }
                let record = BaseRecord::with_opaque_to(&env.output_topic, opaque)
                    .key(region.as_bytes())
                    .payload(json)
                    .headers(headers);
                Some(record)
            }
            Output::Suppressed { status, .. } => {
                self.counters.decision(status, 0);
                None
            }
            Output::DeadLetter { error, json } => {
                self.counters.invalid(error.kind);
                let partition = t.partition.to_string();
                let offset_text = offset.to_string();
                let headers = OwnedHeaders::new_with_capacity(5)
                    .insert(Header {
                        key: "aepiot.error.kind",
                        value: Some(error.kind.as_str()),
                    })
                    .insert(Header {
                        key: "aepiot.error.message",
                        value: Some(error.message.as_str()),
                    })
                    .insert(Header {
                        key: "aepiot.source.topic",
                        value: Some(t.topic.as_str()),
                    })
                    .insert(Header {
                        key: "aepiot.source.partition",
                        value: Some(partition.as_str()),
                    })
                    .insert(Header {
                        key: "aepiot.source.offset",
                        value: Some(offset_text.as_str()),
                    });
                let mut record = BaseRecord::with_opaque_to(&env.dead_letter_topic, opaque)
                    .payload(json)
                    .headers(headers);
                if let Some(key) = msg.key() {
                    record = record.key(key);
                }
                Some(record)
            }
        };
        t.track(msg, clock, produced).await;
    }

    /// Passthrough: the record's bytes to the output topic, counted as a `success`.
    async fn forward(&mut self, msg: &BorrowedMessage<'_>, clock: &Clock) {
        let t = &mut self.tracker;
        let env = t.env.clone();
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&env.output_topic, t.next_opaque());
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(v) = msg.payload() {
            record = record.payload(v);
        }
        if let Some(h) = msg.headers() {
            record = record.headers(h.detach());
        }
        self.counters.decision(Decision::Success, 0);
        t.track(msg, clock, Some(record)).await;
    }

    /// Writes the batch's state changes to the changelog: the latest state of each device that
    /// had a success, and a tombstone for each expired device. Their acks count towards the
    /// batch's last record, so its offset is committed only once they are durable.
    async fn write_state_changes(&mut self) {
        let env = self.tracker.env.clone();
        let Some(cl) = &env.changelog else { return };
        let expired = self.engine.states_mut().take_expired();
        if self.dirty.is_empty() && expired.is_empty() {
            return;
        }
        let topic = cl.topic_for(&self.tracker.topic);
        let t = &mut self.tracker;
        let seq = t.base_seq + t.pending.len() as u64 - 1;
        let Some(last) = t.pending.back_mut() else {
            return;
        };
        last.outstanding += (self.dirty.len() + expired.len()) as u32;
        let opaque = AckRouter::opaque(t.id, seq as u32);
        for device in self.dirty.drain() {
            match self.engine.states().get(&device) {
                Some(state) => snapshot::encode(state, &mut self.snapshot),
                // Expired within the batch: its tombstone follows.
                None => {
                    t.on_ack(
                        Ack {
                            seq: seq as u32,
                            error: None,
                        },
                        &Clock::now(),
                    );
                    continue;
                }
            }
            let record = BaseRecord::with_opaque_to(&topic, opaque)
                .partition(t.partition)
                .key(device.as_bytes())
                .payload(self.snapshot.as_slice());
            t.send(record).await;
        }
        for device in expired {
            let record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&topic, opaque)
                    .partition(t.partition)
                    .key(device.as_bytes());
            t.send(record).await;
        }
    }
}

impl Tracker {
    /// The delivery opaque of the record about to be tracked (its sequence number: the next slot
    /// of `pending`).
    fn next_opaque(&self) -> usize {
        AckRouter::opaque(self.id, (self.base_seq + self.pending.len() as u64) as u32)
    }

    /// Records an input as in flight until its output (if any) is acknowledged, and produces it.
    async fn track<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
        &mut self,
        msg: &BorrowedMessage<'_>,
        clock: &Clock,
        produced: Option<BaseRecord<'_, K, P, usize>>,
    ) {
        self.pending.push_back(Pending {
            offset: msg.offset(),
            outstanding: produced.is_some() as u32,
            consumed_at: clock.instant,
            record_time_ms: msg.timestamp().to_millis(),
        });
        if let Some(record) = produced {
            self.send(record).await;
        }
    }

    /// Produces with back-pressure: a full producer queue waits for acks; nothing is dropped.
    async fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
        &mut self,
        mut record: BaseRecord<'_, K, P, usize>,
    ) {
        loop {
            match self.env.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.take_acks();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    self.fail(&e);
                    return;
                }
            }
        }
    }

    fn take_acks(&mut self) {
        let mut clock = None;
        while let Ok(ack) = self.acks.try_recv() {
            let clock = clock.get_or_insert_with(Clock::now);
            self.on_ack(ack, clock);
        }
    }

    /// Waits for the acks of everything produced, within the drain deadline, and stores the offset.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.env.drain_timeout;
        while !self.failed && self.pending.iter().any(|p| p.outstanding > 0) {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(ack)) => self.on_ack(ack, &Clock::now()),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        topic = %self.topic,
                        partition = self.partition,
                        in_flight = self.pending.iter().filter(|p| p.outstanding > 0).count(),
                        "drain deadline passed with outputs unacknowledged; their inputs will be reprocessed"
                    );
                    break;
                }
            }
        }
        self.store_progress();
    }

    fn on_ack(&mut self, ack: Ack, clock: &Clock) {
        let idx = ack.seq.wrapping_sub(self.base_seq as u32) as usize;
        if let Some(error) = &ack.error {
            self.fail(error);
        }
        if let Some(p) = self.pending.get_mut(idx) {
            p.outstanding = p.outstanding.saturating_sub(1);
            if p.outstanding == 0 {
                self.latency.observe(
                    clock
                        .instant
                        .saturating_duration_since(p.consumed_at)
                        .as_secs_f64(),
                );
                if let Some(ts) = p.record_time_ms {
                    self.age
                        .observe(((clock.wall_ms - ts).max(0)) as f64 / 1000.0);
                }
            }
        }
    }

    fn fail(&mut self, error: &KafkaError) {
        if !self.failed {
            tracing::error!(
                topic = %self.topic,
                partition = self.partition,
                error = %error,
                "an output could not be delivered; stopping without committing past it"
            );
            self.env.metrics.delivery_failures.inc();
            self.failed = true;
            self.env.fatal.cancel();
        }
    }

    /// Drops the acknowledged prefix of the partition; under at-least-once, stores the offset
    /// after it for the next commit (exactly-once commits positions with the transaction).
    fn store_progress(&mut self) {
        self.latency.flush();
        self.age.flush();
        if self.failed {
            return;
        }
        let mut last = None;
        while self.pending.front().is_some_and(|p| p.outstanding == 0) {
            last = self.pending.pop_front().map(|p| p.offset);
            self.base_seq += 1;
        }
        if self.env.gate.is_some() {
            return;
        }
        let (Some(offset), Some(consumer)) = (last, self.env.consumer.upgrade()) else {
            return;
        };
        // rd_kafka_offset_store commits offset + 1: the next record to read.
        if let Err(e) = consumer.store_offset(&self.topic, self.partition, offset) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not store offset");
        }
    }
}

/// The clocks, read once for a batch of records or acks.
struct Clock {
    instant: Instant,
    wall_ms: i64,
}

impl Clock {
    fn now() -> Self {
        Clock {
            instant: Instant::now(),
            wall_ms: now_ms(),
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
