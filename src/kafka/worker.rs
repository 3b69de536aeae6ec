//! One partition's worker: reads its partition queue, runs the engine, produces outputs, and
//! stores the input offset once everything up to it is acknowledged.
//!
//! Delivery guarantee (at-least-once): an offset is stored for commit only after the output or
//! dead letter of that record and of every earlier record of the partition is acknowledged by the
//! broker. A crash can therefore repeat outputs produced after the last commit, never lose one.
//!
//! The worker owns its partition's engine (device state and buffers): devices are sharded by
//! partition (producers key events by device_id), so the hot path shares nothing and locks nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::Message;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::acks::{Ack, AckRouter, ProducerCtx};
use super::rebalance::ConsumerCtx;
use crate::core::{Engine, Output, RecordMeta, Shared, Source};
use crate::metrics::{Metrics, OutcomeCounters};

/// Records read from the partition queue before the worker looks at acks and yields.
const BATCH: usize = 256;

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
}

/// The rebalance handler's side of a worker.
pub struct WorkerHandle {
    pub stop: CancellationToken,
    pub done: oneshot::Receiver<()>,
    /// Next offset to process (-1 until the first record): for the lag metric.
    pub position: Arc<AtomicI64>,
}

struct Pending {
    offset: i64,
    done: bool,
    consumed_at: Instant,
    record_time_ms: Option<i64>,
}

struct Worker {
    notify: Arc<Notify>,
    engine: Engine,
    id: u32,
    position: Arc<AtomicI64>,
    counters: OutcomeCounters,
    /// Separate from the engine so acks can be taken while an output borrows the engine's buffer.
    tracker: Tracker,
}

/// The partition's in-flight records and their acks.
struct Tracker {
    env: Arc<WorkerEnv>,
    topic: String,
    partition: i32,
    acks: UnboundedReceiver<Ack>,
    /// In-flight input records in offset order; `base_seq` is the sequence number of the front.
    pending: VecDeque<Pending>,
    base_seq: u64,
    failed: bool,
}

/// Starts the worker of one partition on the runtime.
pub fn spawn(
    env: Arc<WorkerEnv>,
    rt: &tokio::runtime::Handle,
    topic: &str,
    partition: i32,
    mut queue: PartitionQueue<ConsumerCtx>,
) -> WorkerHandle {
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    // Wakes the worker when its queue goes from empty to non-empty.
    queue.set_nonempty_callback(move || n.notify_one());
    let (id, acks) = env.router.register();
    let stop = CancellationToken::new();
    let (done_tx, done) = oneshot::channel();
    let position = Arc::new(AtomicI64::new(-1));
    let worker = Worker {
        engine: Engine::new(env.shared.clone()),
        counters: env.metrics.outcome_counters(),
        notify,
        id,
        position: position.clone(),
        tracker: Tracker {
            env,
            topic: topic.to_owned(),
            partition,
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
        while !self.tracker.failed && !stop.is_cancelled() {
            let mut read = 0;
            while read < BATCH {
                match queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(msg)) => {
                        read += 1;
                        self.handle(&msg).await;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%topic, partition, error = %e, "consumer error");
                        break;
                    }
                }
            }
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
                Some(ack) = self.tracker.acks.recv() => self.tracker.on_ack(ack),
                _ = self.notify.notified() => {}
            }
        }
        self.tracker.drain().await;
        let _ = env.metrics.state_devices.remove_label_values(&labels);
        let _ = env.metrics.state_cache_entries.remove_label_values(&labels);
        env.router.unregister(self.id);
        tracing::info!(%topic, partition, "partition worker stopped");
    }

    async fn handle(&mut self, msg: &BorrowedMessage<'_>) {
        let t = &mut self.tracker;
        let env = t.env.clone();
        let offset = msg.offset();
        let record_time_ms = msg.timestamp().to_millis();
        let meta = RecordMeta {
            record_time_ms,
            now_ms: now_ms(),
            source: Some(Source::Kafka {
                topic: &t.topic,
                partition: t.partition,
                offset,
            }),
        };
        let seq = t.base_seq + t.pending.len() as u64;
        let opaque = AckRouter::opaque(self.id, seq as u32);
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
        let done = produced.is_none();
        t.pending.push_back(Pending {
            offset,
            done,
            consumed_at: Instant::now(),
            record_time_ms,
        });
        if let Some(mut record) = produced {
            // Back-pressure: a full producer queue waits for acks; nothing is dropped.
            loop {
                match env.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        t.take_acks();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => {
                        t.fail(&e);
                        return;
                    }
                }
            }
        }
        self.position.store(offset + 1, Ordering::Relaxed);
    }
}

impl Tracker {
    fn take_acks(&mut self) {
        while let Ok(ack) = self.acks.try_recv() {
            self.on_ack(ack);
        }
    }

    /// Waits for the acks of everything produced, within the drain deadline, and stores the offset.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.env.drain_timeout;
        while !self.failed && self.pending.iter().any(|p| !p.done) {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(ack)) => self.on_ack(ack),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        topic = %self.topic,
                        partition = self.partition,
                        in_flight = self.pending.iter().filter(|p| !p.done).count(),
                        "drain deadline passed with outputs unacknowledged; their inputs will be reprocessed"
                    );
                    break;
                }
            }
        }
        self.store_progress();
    }

    fn on_ack(&mut self, ack: Ack) {
        let idx = ack.seq.wrapping_sub(self.base_seq as u32) as usize;
        if let Some(error) = &ack.error {
            self.fail(error);
        }
        if let Some(p) = self.pending.get_mut(idx) {
            p.done = true;
            let m = &self.env.metrics;
            m.processing_latency
                .observe(p.consumed_at.elapsed().as_secs_f64());
            if let Some(ts) = p.record_time_ms {
                m.event_age
                    .observe(((now_ms() - ts).max(0)) as f64 / 1000.0);
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

    /// Stores the offset after the longest acknowledged prefix of the partition.
    fn store_progress(&mut self) {
        if self.failed {
            return;
        }
        let mut last = None;
        while self.pending.front().is_some_and(|p| p.done) {
            last = self.pending.pop_front().map(|p| p.offset);
            self.base_seq += 1;
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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
