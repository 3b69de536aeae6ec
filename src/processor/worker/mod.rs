//! One partition's worker: restores its devices' state, reads its partition queue in batches, runs
//! the engine on each record and produces its output.
//!
//! What it may commit and when, and what a failure does, are the delivery rules of
//! `docs/delivery.md` (1-5: at-least-once, through [`super::inflight`] and
//! [`super::state_writes`]; 8-11: exactly-once, the batch under the transaction gate's read guard,
//! its position published for [`super::transactions`]; 16-17: one record's failure or the
//! cluster's).
//!
//! The worker owns its partition's engine (device state and buffers): devices are sharded by
//! partition (producers key events by device_id), so the hot path shares nothing and locks nothing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::local::LocalIntCounter;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::ConsumerContext;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::BaseRecord;
use rdkafka::Message;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::changelog;
use super::failure::{classify, Failure};
use super::fatal::FatalCause;
use super::inflight::Inflight;
use super::state_writes::StateWrites;
use super::worker_env::{Step, WorkerEnv};
use crate::core::{Decision, Engine, Output, RecordError, RecordMeta, Source};
use crate::kafka::assignments::{self, PartitionHandle};
use crate::kafka::clock::{now_ms, Clock};
use crate::kafka::headers;
use crate::metrics::OutcomeCounters;
use crate::status::link::WorkerLink;

mod dead_letter;
mod listen;
mod passthrough;
mod report;
mod restore;
mod schemas;
pub mod supervise;
mod trace;

use dead_letter::send_dead_letter;

/// Records read from the partition queue before the worker looks at acks and yields.
const BATCH: usize = 256;

struct Worker {
    notify: Arc<Notify>,
    engine: Engine,
    /// Next offset to process (-1 until the first record), shared with the rebalance handler:
    /// the lag metric, and under exactly-once the offset committed with the transaction.
    position: Arc<AtomicI64>,
    /// The outcome counters and records written per region, counted here and added to the shared
    /// metrics once per batch ([`Worker::flush_counts`]): no shared atomics per record.
    counters: OutcomeCounters,
    written: Vec<LocalIntCounter>,
    inflight: Inflight,
    state: Option<StateWrites>,
    /// Evictions of this partition's state already counted in the metric.
    evictions_counted: u64,
    /// Inputs whose dead letter was already sent again without payload.
    dead_letters_resent: HashSet<u64>,
    /// Recent records and device queries for the status page (see [`crate::status::link`]).
    status_link: WorkerLink,
    /// With a Schema Registry: the schemas at hand, for records in its wire format.
    schemas: Option<schemas::Schemas>,
}

/// Starts the worker of one partition on the runtime. `position` is the offset it starts from,
/// when known (a rewind), else -1. `previous`: the end of the partition's previous worker, when
/// it had not finished stopping; this one reads nothing before it (a partition is never read by
/// two workers).
pub fn spawn<C: ConsumerContext + 'static>(
    env: Arc<WorkerEnv>,
    rt: &tokio::runtime::Handle,
    topic: &str,
    partition: i32,
    queue: PartitionQueue<C>,
    position: i64,
    previous: Option<oneshot::Receiver<()>>,
) -> PartitionHandle {
    // The queue's wake-up is registered in `run`, once the predecessor is gone (see `listen`).
    let notify = Arc::new(Notify::new());
    let (id, acks) = env.router.register();
    let stop = CancellationToken::new();
    let (done_tx, done) = oneshot::channel();
    let position = Arc::new(AtomicI64::new(position));
    let state = env
        .changelog
        .as_ref()
        .map(|cl| StateWrites::new(cl.topic_for(topic), cl.interval));
    let mut engine = Engine::new(env.shared.clone());
    let schemas = env.schema_registry.clone().map(schemas::Schemas::new);
    if let Some(p) = crate::allocator::placement() {
        engine.states_mut().set_placement(p);
    }
    let worker = Worker {
        engine,
        counters: env.metrics.outcome_counters(),
        written: env.written.iter().map(|c| c.local()).collect(),
        notify,
        position: position.clone(),
        status_link: WorkerLink::new(env.status.as_ref(), topic, partition),
        inflight: Inflight::new(env, topic, partition, id, acks, stop.clone()),
        state,
        evictions_counted: 0,
        dead_letters_resent: HashSet::new(),
        schemas,
    };
    let watch = supervise::Watch {
        topic: topic.to_owned(),
        partition,
        stop: stop.clone(),
        fatal: worker.inflight.env.fatal.clone(),
        rewind: worker.inflight.env.rewind.clone(),
    };
    let stop_w = stop.clone();
    rt.spawn(supervise::supervise(
        worker.run(queue, stop_w, previous),
        watch,
        done_tx,
    ));
    PartitionHandle {
        stop,
        done,
        position,
    }
}

impl Worker {
    async fn run<C: ConsumerContext>(
        mut self,
        mut queue: PartitionQueue<C>,
        stop: CancellationToken,
        previous: Option<oneshot::Receiver<()>>,
    ) {
        let (topic, partition) = (self.inflight.topic.clone(), self.inflight.partition);
        let env = self.inflight.env.clone();
        if !self.after_predecessor(previous, &stop).await {
            return;
        }
        listen::listen(&mut queue, &self.notify);
        let labels = [topic.as_str(), &partition.to_string()];
        let devices = env.metrics.state_devices.with_label_values(&labels);
        let cache = env.metrics.state_cache_entries.with_label_values(&labels);
        tracing::info!(%topic, partition, "partition worker started");
        if env.changelog.is_some() && !self.restore(&stop).await {
            // Let go while it waited for or ran its restore (revoked, or the instance stopping):
            // it ends like any other worker, so that its partition is not reported as still held.
            self.ended(&labels);
            return;
        }
        // A record whose schema must be fetched first, and its schema id (see `schemas`).
        let (mut pending, mut waiting) = (None, None);
        while !self.inflight.failed && !stop.is_cancelled() {
            if !self.wait_for_schema(waiting.take(), &stop).await {
                break;
            }
            // Exactly-once: while a commit runs with its deferred outputs at their bound, wait
            // for it to end (outside the gate: its end takes the write guard).
            if let Some(deferred) = &env.deferred {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    _ = deferred.room() => {}
                }
            }
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
            self.inflight.batch_started();
            // One clock reading per batch: a batch takes well under a millisecond, so every record
            // of it may share one reading, and clock reads stay off the per-record path (see
            // BENCHMARKS.md, "What changed since the interim figures").
            let clock = Clock::now();
            let full = || env.deferred.as_ref().is_some_and(|d| d.full());
            // Set when the batch ends at the deferral's bound with records left to read.
            let mut held = false;
            while read < BATCH && !self.inflight.failed {
                if full() {
                    held = true;
                    break;
                }
                match next(&mut pending, &queue) {
                    None => break,
                    Some(Ok(msg)) => {
                        let needs = self.schemas.as_mut().and_then(|s| s.needs(msg.payload()));
                        if needs.is_some() {
                            (pending, waiting) = (Some(msg), needs);
                            break;
                        }
                        read += 1;
                        self.handle(&msg, &clock).await;
                        if !self.inflight.failed {
                            self.position.store(msg.offset() + 1, Ordering::Relaxed);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%topic, partition, error = %e, "consumer error");
                        break;
                    }
                }
            }
            if let (Some(state), true) = (&mut self.state, env.gate.is_some() && read > 0) {
                // Exactly-once: the batch's state changes join its outputs in the transaction.
                state.cut(self.engine.states_mut(), &mut self.inflight, None);
                state.write_when_acked(&mut self.inflight, true).await;
            }
            self.inflight.batch_ended();
            drop(guard);
            self.inflight.take_acks();
            self.after_acks(Some(&clock)).await;
            self.status_link.answer_waiting(&self.engine);
            self.report(&devices, &cache, clock.wall_ms);
            // Records are left: read on (after waiting for room, when held) instead of idling
            // until the queue signals, which it does only when it goes from empty to non-empty.
            if read == BATCH || held || waiting.is_some() {
                tokio::task::yield_now().await;
                continue;
            }
            let due = self
                .state
                .as_ref()
                .filter(|_| env.gate.is_none())
                .and_then(|s| s.due_at(&self.inflight));
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(ack) = self.inflight.recv_ack() => {
                    self.inflight.on_ack(ack, &Clock::now());
                    self.after_acks(None).await;
                }
                _ = self.notify.notified() => {}
                _ = sleep_until(due) => self.after_acks(Some(&Clock::now())).await,
                q = self.status_link.query() => self.status_link.answer(q, &self.engine),
            }
        }
        if env.gate.is_none() {
            self.drain().await;
        }
        self.ended(&labels);
    }

    /// The end of every worker that said it started: its counts flushed, its gauges and its
    /// router entry gone, and the line that says it stopped (operators and the fault harness read
    /// a partition's owner from the started/stopped pair).
    fn ended(&self, labels: &[&str; 2]) {
        let env = &self.inflight.env;
        self.flush_counts();
        let _ = env.metrics.state_devices.remove_label_values(labels);
        let _ = env.metrics.state_cache_entries.remove_label_values(labels);
        env.router.unregister(self.inflight.id);
        let (topic, partition) = (&self.inflight.topic, self.inflight.partition);
        tracing::info!(%topic, partition, "partition worker stopped");
    }

    /// Waits for the partition's previous worker, if it had not finished stopping (a partition is
    /// never read by two workers); false, this worker let go, when stopped first.
    async fn after_predecessor(
        &mut self,
        previous: Option<oneshot::Receiver<()>>,
        stop: &CancellationToken,
    ) -> bool {
        let (topic, partition) = (&self.inflight.topic, self.inflight.partition);
        if previous.is_some() {
            tracing::info!(%topic, partition, "waiting for the partition's previous worker to stop");
        }
        let go = assignments::after_predecessor(previous, stop).await;
        if !go {
            self.inflight.env.router.unregister(self.inflight.id);
        }
        go
    }

    /// After acks came in: dead letters for refused outputs, the state cut (at-least-once; a new
    /// one when `clock` says it is due), and the committable offset.
    async fn after_acks(&mut self, clock: Option<&Clock>) {
        self.dead_letter_refused().await;
        if self.inflight.env.gate.is_none() {
            if let Some(state) = &mut self.state {
                if let Some(clock) = clock {
                    state.cut(
                        self.engine.states_mut(),
                        &mut self.inflight,
                        Some(clock.instant),
                    );
                }
                state.write_when_acked(&mut self.inflight, false).await;
            }
        }
        self.inflight.store_progress();
    }

    /// Waits for the acks of everything produced, writing the last state cut, within the drain
    /// deadline, and stores the offset.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.inflight.env.drain_timeout;
        loop {
            self.dead_letter_refused().await;
            if let Some(state) = &mut self.state {
                state.cut(self.engine.states_mut(), &mut self.inflight, None);
                state.write_when_acked(&mut self.inflight, false).await;
            }
            let staged = self.state.as_ref().is_some_and(StateWrites::staged);
            if self.inflight.failed || (!self.inflight.unacknowledged() && !staged) {
                break;
            }
            if !self.inflight.next_ack_until(deadline).await {
                tracing::warn!(
                    topic = %self.inflight.topic,
                    partition = self.inflight.partition,
                    in_flight = self.inflight.in_flight(),
                    "drain deadline passed with outputs unacknowledged; their inputs will be reprocessed"
                );
                break;
            }
        }
        self.inflight.store_progress();
    }

    async fn handle(&mut self, msg: &BorrowedMessage<'_>, clock: &Clock) {
        if self.inflight.env.step == Step::Passthrough {
            return self.forward(msg, clock).await;
        }
        let env = self.inflight.env.clone();
        let offset = msg.offset();
        let record_time_ms = msg.timestamp().to_millis();
        let meta = RecordMeta {
            record_time_ms,
            now_ms: clock.wall_ms,
            source: Some(Source::Kafka {
                topic: &self.inflight.topic,
                partition: self.inflight.partition,
                offset,
            }),
        };
        let seq = self.inflight.next_seq();
        let opaque = self.inflight.opaque(seq);
        let mut hop = self.trace(msg);
        let poisoned = env.poison.as_ref().and_then(|p| {
            p.get(&(self.inflight.topic.clone(), self.inflight.partition, offset))
                .map(|k| *k)
        });
        let out = match (poisoned, &mut self.schemas) {
            (None, None) => self.engine.process(msg.payload(), &meta),
            (None, Some(schemas)) => schemas.process(&mut self.engine, msg.payload(), &meta),
            (Some(kind), _) => {
                let error = RecordError::new(
                    kind,
                    "the broker refused this event's URL record, so the transaction holding it was aborted; this dead letter replaces it",
                );
                let len = msg.payload().map_or(0, <[u8]>::len);
                self.engine.reject(error, msg.payload(), len, &meta)
            }
        };
        if let Some(device) = out.device_id() {
            if msg.key() != Some(device.as_bytes()) {
                self.counters.misrouted.inc();
            }
        }
        self.inflight.track(offset, record_time_ms, clock, 0);
        let refused = match out {
            Output::Record {
                status,
                json,
                region,
                region_index,
                device_id,
                event_type,
                urls,
            } => {
                self.counters.decision(status, urls);
                self.status_link.offer(region, json, clock.wall_ms);
                if status == Decision::Success {
                    if let Some(state) = &mut self.state {
                        state.changed(device_id);
                    }
                }
                let topic = &env.region_topics[region_index];
                let meta = headers::url_record(status.as_str(), device_id, event_type);
                let record = BaseRecord::with_opaque_to(topic, opaque)
                    .key(region.as_bytes())
                    .payload(json)
                    .headers(trace::url_record(hop.as_mut(), meta, status, topic));
                self.inflight.add_outputs(seq, 1);
                let cluster = env.region_clusters[region_index];
                match self.inflight.send_on(cluster, record).await {
                    Ok(()) => {
                        self.written[region_index].inc();
                        None
                    }
                    Err((e, _)) => Some((e, topic.clone())),
                }
            }
            Output::Suppressed { status, .. } => {
                self.counters.decision(status, 0);
                trace::suppressed(hop.as_mut(), status);
                None
            }
            Output::DeadLetter { error, json } => {
                self.counters.invalid(error.kind);
                trace::dead_lettered(hop.as_mut(), error);
                self.inflight.add_outputs(seq, 1);
                let input = (Some(msg), hop.as_ref().map(crate::otel::Hop::carried));
                send_dead_letter(&mut self.inflight, seq, offset, input, error, json).await;
                None
            }
        };
        if let Some((e, topic)) = refused {
            self.refused_at_once(msg, hop.as_mut(), seq, clock, (e, &topic))
                .await;
        }
    }

    /// The producer refused the URL record at once (over its `message.max.bytes`, which the
    /// engine's check should have caught): the event's dead letter instead, or the cluster's
    /// fault ([`super::inflight::Inflight::cluster_failed`]). The slot's one outstanding output is
    /// now the dead letter.
    async fn refused_at_once(
        &mut self,
        msg: &BorrowedMessage<'_>,
        mut hop: Option<&mut crate::otel::Hop>,
        seq: u64,
        clock: &Clock,
        (e, topic): (rdkafka::error::KafkaError, &str),
    ) {
        let kind = match classify(&e) {
            Failure::Record(kind) => kind,
            Failure::Cluster => return self.inflight.cluster_failed(topic, &e),
        };
        let offset = msg.offset();
        let error = RecordError::new(
            kind,
            format!("the producer refused this event's URL record: {e}"),
        );
        let len = msg.payload().map_or(0, <[u8]>::len);
        let meta = RecordMeta {
            source: Some(Source::Kafka {
                topic: &self.inflight.topic,
                partition: self.inflight.partition,
                offset,
            }),
            record_time_ms: msg.timestamp().to_millis(),
            now_ms: clock.wall_ms,
        };
        let Output::DeadLetter { error, json } =
            self.engine.reject(error, msg.payload(), len, &meta)
        else {
            unreachable!("reject makes a dead letter")
        };
        self.counters.invalid(error.kind);
        trace::dead_lettered(hop.as_deref_mut(), error);
        let input = (Some(msg), hop.as_deref().map(crate::otel::Hop::carried));
        send_dead_letter(&mut self.inflight, seq, offset, input, error, json).await;
    }
}

/// The record that waited for its schema, else the next of the queue.
fn next<'q, C: ConsumerContext>(
    pending: &mut Option<BorrowedMessage<'q>>,
    queue: &'q PartitionQueue<C>,
) -> Option<rdkafka::error::KafkaResult<BorrowedMessage<'q>>> {
    pending
        .take()
        .map(Ok)
        .or_else(|| queue.poll(Duration::ZERO))
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
