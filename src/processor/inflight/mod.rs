//! A partition's in-flight input records: which of their outputs the broker has acknowledged, and
//! so which offset may be committed.
//!
//! Every input record gets a sequence number and a slot of the partition's [`OffsetTracker`]
//! holding the count of its outputs not yet acknowledged. The offset after the longest fully
//! acknowledged prefix is stored for commit, but never past `commit_limit`, the last durable
//! state cut (see [`super::state_writes`]): rules 1, 2 and 5 of `docs/delivery.md`.
//!
//! Failed deliveries are sorted here (rules 16-17): a failure of one record is kept in
//! `to_dead_letter` for the worker to turn into that record's dead letter; a failure of the
//! cluster stops the instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::local::LocalHistogram;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::BaseRecord;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::acks::{Ack, AckRouter, Failed};
use super::failure::{classify, cluster_away, producer_unusable, Failure};
use super::fatal::FatalCause;
use super::shared_producer::Producer;
use super::worker_env::WorkerEnv;
use crate::core::ErrorKind;
use crate::events::kafka::DeliveryFailed;
use crate::kafka::clock::Clock;
use crate::kafka::offset_tracker::OffsetTracker;

/// What an input record in flight keeps for the latency histograms, observed when its last
/// output (and, on the record holding a state cut, the cut's state records) is acknowledged.
struct Consumed {
    at: Instant,
    record_time_ms: Option<i64>,
}

/// An output the broker refused for a reason of its own: the worker writes its dead letter.
#[derive(Debug)]
pub struct Refused {
    pub seq: u64,
    /// The input record's offset.
    pub offset: i64,
    pub kind: ErrorKind,
    pub failed: Box<Failed>,
}

pub struct Inflight {
    pub env: Arc<WorkerEnv>,
    pub topic: String,
    pub partition: i32,
    pub id: u32,
    acks: UnboundedReceiver<Ack>,
    /// In-flight input records in offset order.
    tracker: OffsetTracker<Consumed>,
    /// Records with a sequence number below this may be committed once acknowledged.
    commit_limit: u64,
    /// Set once the instance must stop: nothing more is stored for commit.
    pub failed: bool,
    /// The worker's stop token (a revoke or a shutdown): see [`Inflight::send_on`].
    stop: CancellationToken,
    /// Set when a record was given up unproduced at a stop: nothing more is stored for commit.
    abandoned: bool,
    /// Outputs refused by the broker, waiting for their dead letters.
    pub to_dead_letter: Vec<Refused>,
    /// `aepiot_processing_latency_seconds` and `aepiot_event_age_seconds`, buffered per worker
    /// and flushed with every progress update (no shared atomics per record).
    latency: LocalHistogram,
    age: LocalHistogram,
    /// Each cluster's producer while a batch runs (see [`Inflight::batch_started`]); empty
    /// between batches.
    batch: Vec<Producer>,
}

impl Inflight {
    pub fn new(
        env: Arc<WorkerEnv>,
        topic: &str,
        partition: i32,
        id: u32,
        acks: UnboundedReceiver<Ack>,
        stop: CancellationToken,
    ) -> Self {
        // Without a changelog every acknowledged record may be committed.
        let commit_limit = if env.changelog.is_some() && env.gate.is_none() {
            0
        } else {
            u64::MAX
        };
        Inflight {
            latency: env.metrics.processing_latency.local(),
            age: env.metrics.event_age.local(),
            env,
            topic: topic.to_owned(),
            partition,
            id,
            acks,
            tracker: OffsetTracker::default(),
            commit_limit,
            failed: false,
            stop,
            abandoned: false,
            to_dead_letter: Vec::new(),
            batch: Vec::new(),
        }
    }

    /// A batch starts: its sends take each cluster's producer from here, instead of from the
    /// shared slot at every record (a lock and a reference count that every worker's sends
    /// touched). A producer is replaced only while no batch runs: under exactly-once the
    /// replacement holds the gate each batch reads under, and nothing replaces one otherwise.
    pub fn batch_started(&mut self) {
        self.batch.clear();
        self.batch
            .extend(self.env.producers.iter().map(|p| p.get()));
    }

    /// The batch ended: sends take the current producer again.
    pub fn batch_ended(&mut self) {
        self.batch.clear();
    }

    /// The sequence number the next tracked record gets.
    pub fn next_seq(&self) -> u64 {
        self.tracker.next_seq()
    }

    pub fn opaque(&self, seq: u64) -> usize {
        AckRouter::opaque(self.id, seq as u32)
    }

    /// Records an input as in flight with `outputs` outputs still to be acknowledged.
    pub fn track(&mut self, offset: i64, record_time_ms: Option<i64>, clock: &Clock, outputs: u32) {
        let consumed = Consumed {
            at: clock.instant,
            record_time_ms,
        };
        self.tracker.push(offset, outputs, consumed);
    }

    /// Adds `n` outputs to record `seq` (a state cut's records, counted on the oldest record not yet
    /// committed: see [`Inflight::oldest_before`]).
    pub fn add_outputs(&mut self, seq: u64, n: u32) {
        self.tracker.add(seq, n);
    }

    /// Whether every record before `seq` has all its outputs acknowledged.
    pub fn outputs_acked_before(&mut self, seq: u64) -> bool {
        self.tracker.finished_before(seq)
    }

    /// Lets records before `seq` be committed once acknowledged (their state is durable, or its
    /// records' acks are counted on the oldest of them: see [`Inflight::oldest_before`]).
    pub fn allow_commit_before(&mut self, seq: u64) {
        self.commit_limit = self.commit_limit.max(seq);
    }

    /// The oldest record not yet committed, if it comes before `seq`: a state cut counts its state
    /// records' acks on it, so that no record of the cut commits before its state is durable.
    pub fn oldest_before(&self, seq: u64) -> Option<u64> {
        let base = self.tracker.base_seq();
        (!self.tracker.is_empty() && base < seq).then_some(base)
    }

    /// Records processed but not yet allowed to commit (waiting for a state cut).
    pub fn uncut(&self) -> bool {
        self.commit_limit < self.next_seq()
    }

    /// Whether any output is unacknowledged.
    pub fn unacknowledged(&self) -> bool {
        self.tracker.unfinished() > 0
    }

    /// Produces to the main cluster: see [`Inflight::send_on`].
    pub async fn send<'a, K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
        &mut self,
        record: BaseRecord<'a, K, P, usize>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, usize>)> {
        self.send_on(0, record).await
    }

    /// Produces to cluster `cluster` (an index of `env.producers`) with back-pressure: a full
    /// producer queue waits for acks; nothing is dropped. Any other error is returned with the
    /// record, for the caller to classify.
    ///
    /// A regional producer retries for ever, so its queue stays full while its cluster is away.
    /// Once this worker is told to stop (a revoke, a shutdown) it gives up waiting on a regional
    /// queue: the record is not produced, and nothing more is stored for commit (its state
    /// changes may be in a cut to come), so the partition's next owner processes it again. The
    /// main cluster's queue is waited for even then: it drains as acks come, and giving up there
    /// would make the next owner repeat every record acknowledged after it (many, under load;
    /// `two_instances_share_the_partitions` counts the repeats).
    ///
    /// Exactly-once: while the transaction commits, a record for the main cluster is kept in
    /// [`super::deferred::Deferred`] and produced into the next transaction.
    pub async fn send_on<'a, K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
        &mut self,
        cluster: usize,
        mut record: BaseRecord<'a, K, P, usize>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, usize>)> {
        if let (0, Some(deferred)) = (cluster, &self.env.deferred) {
            match deferred.keep(record) {
                None => return Ok(()),
                Some(r) => record = r,
            }
        }
        loop {
            let sent = match self.batch.get(cluster) {
                Some(producer) => producer.send(record),
                None => self.env.producers[cluster].get().send(record),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if cluster != 0 && self.stop.is_cancelled() {
                        self.abandoned = true;
                        return Ok(());
                    }
                    record = r;
                    self.take_acks();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(failed) => return Err(failed),
            }
        }
    }

    /// Produces a record whose failure can only be the cluster's (state records, dead letters
    /// without payload): any error stops the instance.
    pub async fn send_or_stop<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
        &mut self,
        record: BaseRecord<'_, K, P, usize>,
    ) {
        if let Err((e, r)) = self.send(record).await {
            let topic = r.topic.to_owned();
            self.cluster_failed(&topic, &e);
        }
    }

    pub fn take_acks(&mut self) {
        let mut clock = None;
        while let Ok(ack) = self.acks.try_recv() {
            let clock = clock.get_or_insert_with(Clock::now);
            self.on_ack(ack, clock);
        }
    }

    /// Waits for the next ack, until `deadline`. False when the deadline passed or the router
    /// let go of this worker.
    pub async fn next_ack_until(&mut self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.acks.recv()).await {
            Ok(Some(ack)) => {
                self.on_ack(ack, &Clock::now());
                true
            }
            _ => false,
        }
    }

    /// Waits for the next ack (for the worker's idle select).
    pub async fn recv_ack(&mut self) -> Option<Ack> {
        self.acks.recv().await
    }

    pub fn on_ack(&mut self, ack: Ack, clock: &Clock) {
        // Acks carry the sequence number truncated to 32 bits (`AckRouter::opaque`): counted
        // from the oldest record in flight, fewer than 2^32 of them.
        let base_seq = self.tracker.base_seq();
        let seq = base_seq + ack.seq.wrapping_sub(base_seq as u32) as u64;
        if let Some(failed) = ack.error {
            if self.refused(seq, failed) {
                // The slot stays outstanding until the record's dead letter is acknowledged.
                return;
            }
        }
        let Some(consumed) = self.tracker.complete(seq) else {
            return;
        };
        self.latency.observe(
            clock
                .instant
                .saturating_duration_since(consumed.at)
                .as_secs_f64(),
        );
        if let Some(ts) = consumed.record_time_ms {
            self.age
                .observe(((clock.wall_ms - ts).max(0)) as f64 / 1000.0);
        }
    }

    /// Sorts a failed delivery: true when it becomes a dead letter, false when it stopped the
    /// instance.
    fn refused(&mut self, seq: u64, failed: Box<Failed>) -> bool {
        let env = self.env.clone();
        let kind = match classify(&failed.error) {
            Failure::Record(kind) => kind,
            Failure::Cluster => {
                self.cluster_failed(&failed.topic, &failed.error);
                return false;
            }
        };
        let Some(offset) = self.tracker.offset_of(seq) else {
            return false;
        };
        if failed.topic == env.dead_letter_topic && failed.payload_len == 0 {
            // Even a dead letter without payload was refused: the topic refuses records.
            self.stop(FatalCause::DeadLetterRefused {
                topic: failed.topic.clone(),
                error: failed.error.to_string(),
            });
            return false;
        }
        if failed.topic != env.dead_letter_topic && !env.output_topics_contain(&failed.topic) {
            // A state record: small and of the processor's own making, so the cluster's fault.
            self.stop(FatalCause::Delivery {
                topic: failed.topic.clone(),
                error: failed.error.to_string(),
            });
            return false;
        }
        if let Some(poison) = &env.poison {
            // Exactly-once: the transaction aborts and the partition rewinds; the replay writes
            // this record's dead letter instead of the output the broker refused.
            poison.insert((self.topic.clone(), self.partition, offset), kind);
            return true;
        }
        self.to_dead_letter.push(Refused {
            seq,
            offset,
            kind,
            failed,
        });
        true
    }

    /// An output was not delivered for a reason of the cluster's. Under exactly-once, when the
    /// cluster was only away (a time-out: the records of a transactional producer time out after
    /// `transaction.timeout.ms`), the transaction is marked for a rewind and this worker stops
    /// processing until the rewind replaces it; the instance goes on. So too when the producer is
    /// unusable: the commit decides whether it is renewed. Otherwise the instance stops.
    pub fn cluster_failed(&mut self, topic: &str, error: &KafkaError) {
        let transient = cluster_away(error) || producer_unusable(error);
        if let (Some(rewind), true) = (&self.env.rewind, transient) {
            if !self.failed {
                tracing::warn!(topic = %self.topic, partition = self.partition, output_topic = topic, %error, "an output was not delivered; the transaction aborts and the partitions rewind");
                self.failed = true;
            }
            rewind.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        self.stop(FatalCause::Delivery {
            topic: topic.to_owned(),
            error: error.to_string(),
        });
    }

    /// Stops the instance: nothing more is stored for commit.
    pub fn stop(&mut self, cause: FatalCause) {
        if !self.failed {
            DeliveryFailed.emit(&self.env.metrics);
            self.failed = true;
        }
        self.env.fatal.raise(cause);
    }

    /// Drops the acknowledged prefix of the partition (up to the commit limit); under
    /// at-least-once, stores the offset after it for the next commit (exactly-once commits
    /// positions with the transaction).
    pub fn store_progress(&mut self) {
        self.latency.flush();
        self.age.flush();
        if self.failed || self.abandoned {
            return;
        }
        let last = self.tracker.take_committable(self.commit_limit);
        if self.env.gate.is_some() {
            return;
        }
        let (Some(offset), Some(consumer)) = (last, self.env.consumer.upgrade()) else {
            return;
        };
        // rd_kafka_offset_store commits offset + 1: the next record to read.
        if let Err(e) = consumer.store(&self.topic, self.partition, offset) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not store offset");
        }
    }

    /// Records in flight with outputs unacknowledged.
    pub fn in_flight(&self) -> usize {
        self.tracker.unfinished()
    }
}

#[cfg(test)]
mod tests;
