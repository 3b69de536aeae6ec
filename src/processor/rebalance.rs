//! The consumer's context: turns rebalance callbacks into worker starts and stops, commits
//! (offsets under at-least-once, transactions under exactly-once), and reports lag from
//! librdkafka's statistics.
//!
//! Callbacks run on the thread that polls the consumer's main queue, which is a dedicated thread
//! (never an async worker), so a revoke may block there while the partition's worker drains: a
//! partition is only handed over once what was produced for it is committed (rules 12-15 of
//! `docs/delivery.md`: what a revoke drains, a lost assignment, and an aborted transaction's
//! rewind, rule 10).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use super::acks::ProducerCtx;
use super::fatal::FatalCause;
use super::handover::{handover, Handover};
use super::transactions::{CommitError, Transactions};
use super::txn_calls::{Live, LiveOffsets};
use super::worker;
use super::worker_env::WorkerEnv;
use crate::events::kafka as events;
use crate::http::Health;
use crate::kafka::assignments::{self, Assignments, Lingering, PartitionHandle};
use crate::kafka::commit::count_commit;
use crate::kafka::prefetch::{self, PrefetchShared};
use crate::kafka::split::{SplitQueues, Tp};
use crate::metrics::Metrics;

pub struct ConsumerCtx {
    /// Set right after the consumer is created: splitting a partition queue needs the `Arc`.
    consumer: OnceLock<Weak<BaseConsumer<ConsumerCtx>>>,
    env: OnceLock<Arc<WorkerEnv>>,
    /// Exactly-once only.
    txn: OnceLock<Arc<Transactions>>,
    workers: Assignments,
    /// The ends of workers that had not finished stopping by their deadline: a worker started for
    /// the same partition waits for its predecessor's (a partition is never read by two).
    lingering: Lingering,
    /// Queues of partitions being assigned, split off before librdkafka starts fetching them.
    split: SplitQueues<ConsumerCtx>,
    rt: tokio::runtime::Handle,
    metrics: Metrics,
    health: Arc<Health>,
    /// Where a partition with no committed offset starts when rewound.
    earliest: bool,
    /// The input partitions the prefetch budget was shared by at start.
    prefetch: PrefetchShared,
    /// Set when the instance shuts down: readiness must not come back.
    closing: std::sync::atomic::AtomicBool,
}

impl ConsumerCtx {
    pub fn new(
        rt: tokio::runtime::Handle,
        metrics: Metrics,
        health: Arc<Health>,
        earliest: bool,
        prefetch_partitions: usize,
    ) -> Self {
        ConsumerCtx {
            consumer: OnceLock::new(),
            env: OnceLock::new(),
            txn: OnceLock::new(),
            workers: Assignments::default(),
            lingering: Default::default(),
            split: SplitQueues::default(),
            rt,
            metrics,
            health,
            earliest,
            prefetch: PrefetchShared::new(prefetch_partitions),
            closing: Default::default(),
        }
    }

    /// Completes the context once the consumer, the worker environment and (exactly-once) the
    /// transactions exist.
    pub fn attach(
        &self,
        consumer: Weak<BaseConsumer<ConsumerCtx>>,
        env: Arc<WorkerEnv>,
        txn: Option<Arc<Transactions>>,
    ) {
        let _ = self.consumer.set(consumer);
        let _ = self.env.set(env);
        if let Some(t) = txn {
            let _ = self.txn.set(t);
        }
    }

    pub fn env(&self) -> Option<&Arc<WorkerEnv>> {
        self.env.get()
    }

    fn start(&self, tpl: &TopicPartitionList) {
        let mut workers = self.workers.lock();
        for e in tpl.elements() {
            self.spawn_worker(&mut workers, (e.topic().to_owned(), e.partition()), -1);
        }
        self.metrics.assigned_partitions.set(workers.len() as i64);
        self.prefetch.assigned(workers.len());
        self.split.clear();
    }

    fn split_queues(&self, tpl: &TopicPartitionList) {
        if let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) {
            self.split.split_ahead(&consumer, tpl);
        }
    }

    fn spawn_worker(&self, workers: &mut HashMap<Tp, PartitionHandle>, tp: Tp, position: i64) {
        let (Some(consumer), Some(env)) =
            (self.consumer.get().and_then(Weak::upgrade), self.env.get())
        else {
            tracing::error!("assignment before the consumer was attached");
            return;
        };
        if workers.contains_key(&tp) {
            return;
        }
        match self.split.take(&consumer, &tp) {
            Some(queue) => {
                let previous = self.lingering.predecessor(&tp);
                let handle = worker::spawn(
                    env.clone(),
                    &self.rt,
                    &tp.0,
                    tp.1,
                    queue,
                    position,
                    previous,
                );
                workers.insert(tp, handle);
            }
            None => {
                env.fatal.raise(FatalCause::Consumer(format!(
                    "cannot give {} partition {} a queue of its own",
                    tp.0, tp.1
                )));
            }
        }
    }

    /// Takes the workers of `partitions` (all for `None`) out of the map and stops them, waiting
    /// (within the drain deadline) until they are done. Returns their final positions.
    fn stop_workers(&self, partitions: Option<&TopicPartitionList>) -> Vec<(Tp, i64)> {
        let stopping = self.workers.take(partitions, |left| {
            self.metrics.assigned_partitions.set(left as i64);
        });
        for ((topic, partition), _) in &stopping {
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[topic, &partition.to_string()]);
        }
        // On the consumer's or the commit thread, never an async worker: blocking here is what
        // makes a hand-over wait for the drain.
        let (positions, lingering) = assignments::stop_all_lingering(
            stopping,
            &self.rt,
            self.env.get().map(|e| e.drain_timeout),
            "workers did not finish in time; a new worker of their partition waits for them",
        );
        self.lingering.keep(lingering);
        positions
    }

    /// Stops the workers of `partitions` (all for `None`: the instance shuts down) and commits what
    /// they did.
    pub fn stop(
        &self,
        consumer: &BaseConsumer<ConsumerCtx>,
        partitions: Option<&TopicPartitionList>,
    ) {
        if partitions.is_none() {
            self.close();
        }
        match self.txn.get() {
            None => {
                if self.stop_workers(partitions).is_empty() {
                    return;
                }
                count_commit(
                    &self.metrics,
                    consumer.commit_consumer_state(CommitMode::Sync),
                    "offset commit failed",
                );
            }
            Some(txn) => {
                // Between batches of every worker: the stopped workers' last outputs and their
                // positions go into the same transaction.
                let _serial = txn.lock_commits();
                let _gate = txn.gate.blocking_write();
                let stopped = self.stop_workers(partitions);
                if stopped.is_empty() {
                    return;
                }
                self.commit_locked(consumer, txn, stopped);
            }
        }
    }

    /// Exactly-once: the group moved on without this instance (a session that expired while the
    /// cluster was away), so the lost partitions' work, in the open transaction, is never
    /// committed as a revoke's is ([`Handover::AbortAndRewind`]).
    fn abort_lost(&self, consumer: &BaseConsumer<ConsumerCtx>, partitions: &TopicPartitionList) {
        let Some(txn) = self.txn.get() else { return };
        let _serial = txn.lock_commits();
        let _gate = txn.gate.blocking_write();
        self.stop_workers(Some(partitions));
        self.commit_failed(
            consumer,
            txn,
            CommitError::Abort("the assignment was lost".into()),
        );
    }

    /// Exactly-once: commits the open transaction with every live worker's position, every
    /// `commit_interval_ms`. The gate is held only to read the positions and, once the next
    /// transaction has begun, to produce into it what the workers produced meanwhile.
    pub fn commit_transaction(&self, consumer: &BaseConsumer<ConsumerCtx>) {
        let Some(txn) = self.txn.get() else { return };
        let _serial = txn.lock_commits();
        let positions = {
            let _gate = txn.gate.blocking_write();
            let Some(positions) = self.positions_to_commit(consumer, txn, Vec::new()) else {
                return;
            };
            txn.deferred.start();
            positions
        };
        let result = txn.commit(&live(consumer, txn), &positions, &|| self.stopping());
        let _gate = txn.gate.blocking_write();
        let result = match result {
            Ok(()) => txn
                .deferred
                .release(&txn.producer.get())
                .map(|n| {
                    self.metrics.transaction_deferred.inc_by(n as u64);
                })
                .map_err(|e| {
                    CommitError::Abort(format!(
                        "a record produced during the commit was refused: {e}"
                    ))
                }),
            Err(e) => {
                txn.deferred.discard();
                Err(e)
            }
        };
        if let Err(e) = result {
            self.commit_failed(consumer, txn, e);
        }
    }

    /// The instance shuts down: readiness stays false, and a commit or rewind waiting for the
    /// cluster gives up (the next owner processes again what was not committed).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Whether waiting for the cluster should end: the instance shuts down or stops for a failure.
    fn stopping(&self) -> bool {
        self.closing.load(Ordering::SeqCst) || self.env.get().is_some_and(|e| e.fatal.is_raised())
    }

    /// Every live worker's position, after `positions` (the stopped workers'); `None`, with the
    /// transaction aborted, once the instance is stopping for a failure. Runs with the gate held.
    fn positions_to_commit(
        &self,
        consumer: &BaseConsumer<ConsumerCtx>,
        txn: &Transactions,
        mut positions: Vec<(Tp, i64)>,
    ) -> Option<Vec<(Tp, i64)>> {
        {
            let workers = self.workers.lock();
            positions.extend(
                workers
                    .iter()
                    .map(|(tp, h)| (tp.clone(), h.position.load(Ordering::Relaxed))),
            );
        }
        // A worker that failed stopped before its failed record, but others may have gone on:
        // nothing is committed once the instance is stopping for a failure.
        if self.env.get().is_some_and(|env| env.fatal.is_raised()) {
            let _ = txn.abort(&live(consumer, txn), &|| true);
            return None;
        }
        Some(positions)
    }

    /// Commits with the gate held throughout; on failure aborts and rewinds every partition.
    fn commit_locked(
        &self,
        consumer: &BaseConsumer<ConsumerCtx>,
        txn: &Transactions,
        positions: Vec<(Tp, i64)>,
    ) {
        let Some(positions) = self.positions_to_commit(consumer, txn, positions) else {
            return;
        };
        if let Err(e) = txn.commit(&live(consumer, txn), &positions, &|| self.stopping()) {
            self.commit_failed(consumer, txn, e);
        }
    }

    /// A commit failed: a fatal error stops the instance; an abortable one aborts the transaction
    /// and rewinds every partition to its committed offset, or, while the instance shuts down,
    /// only aborts. Runs with the gate held.
    fn commit_failed(
        &self,
        consumer: &BaseConsumer<ConsumerCtx>,
        txn: &Transactions,
        e: CommitError,
    ) {
        let (message, renew) = match e {
            CommitError::Fatal(cause) => return self.raise(cause),
            CommitError::Abort(message) => (message, false),
            CommitError::Renew(message) => (message, true),
        };
        if self.closing.load(Ordering::SeqCst) {
            tracing::warn!(error = %message, "transaction commit failed while shutting down; aborting (the next owner processes it again)");
            if renew {
                // The coordinator has aborted it already.
                return;
            }
            match txn.abort(&live(consumer, txn), &|| true) {
                Ok(_) | Err(CommitError::Renew(_) | CommitError::Abort(_)) => {}
                Err(CommitError::Fatal(cause)) => self.raise(cause),
            }
            return;
        }
        tracing::warn!(error = %message, "transaction commit failed; aborting and rewinding to the committed offsets");
        self.rewind_locked(consumer, txn, renew);
    }

    fn raise(&self, cause: FatalCause) {
        if let Some(env) = self.env.get() {
            env.fatal.raise(cause);
        }
    }

    /// Stops every worker, aborts the transaction, seeks every partition back to its committed
    /// offset and starts new workers (which restore their state from the changelog, where the
    /// aborted changes are invisible). Waits for the cluster while it is away. Runs with the gate
    /// held.
    ///
    /// `renew`: the producer was fenced by the coordinator ([`CommitError::Renew`]): a new one
    /// takes its place first, once the workers have stopped. A rewind whose abort finds the
    /// producer fenced renews it too, once: a second fence in a row stops the instance.
    fn rewind_locked(&self, consumer: &BaseConsumer<ConsumerCtx>, txn: &Transactions, renew: bool) {
        let stopped = self.stop_workers(None);
        let partitions: Vec<Tp> = stopped.into_iter().map(|(tp, _)| tp).collect();
        let mut renew = renew;
        let mut renewed = false;
        let positions = loop {
            if renew {
                tracing::warn!("the transactional producer is unusable by the cluster's doing (fenced by the coordinator's time-out abort, a lost sequence, or a call that never returned); renewing it");
                match txn.renew(&|| self.stopping()) {
                    Ok(true) => {
                        tracing::info!("producer renewed; rewinding to the committed offsets")
                    }
                    Ok(false) => return,
                    Err(cause) => return self.raise(cause),
                }
                renewed = true;
            }
            let rewound = txn.rewind_to_committed(
                &live(consumer, txn),
                &LiveOffsets(consumer),
                &partitions,
                self.earliest,
                &|| self.stopping(),
            );
            match rewound {
                Ok(Some(positions)) => break positions,
                Ok(None) => return,
                Err(CommitError::Renew(_)) if !renewed => renew = true,
                Err(CommitError::Fatal(cause)) => return self.raise(cause),
                Err(CommitError::Renew(m) | CommitError::Abort(m)) => {
                    return self.raise(FatalCause::Transaction(m))
                }
            }
        };
        let mut workers = self.workers.lock();
        for (tp, position) in positions {
            self.spawn_worker(&mut workers, tp, position);
        }
        self.metrics.assigned_partitions.set(workers.len() as i64);
    }
}

/// The transactional producer's calls, with the consumer's group metadata.
fn live(consumer: &BaseConsumer<ConsumerCtx>, txn: &Transactions) -> Live<ProducerCtx> {
    Live {
        producer: txn.producer.get(),
        id: txn.id,
        group: consumer.group_metadata().map(Arc::new),
    }
}

impl ClientContext for ConsumerCtx {
    fn stats(&self, statistics: Statistics) {
        // Ready once in the group, assigned partitions or not: with the `consumer` protocol an
        // instance that gets no partition (more replicas than partitions) sees no rebalance
        // callback at all, and would otherwise never report ready. Such a member reports
        // coordinator state `up` with join state `init` (seen with librdkafka 2.12), an assigned
        // one `steady`; the `wait-*` states are a rebalance in progress.
        let joined = statistics
            .cgrp
            .as_ref()
            .is_some_and(|g| g.state == "up" && matches!(g.join_state.as_str(), "steady" | "init"));
        if joined && !self.closing.load(Ordering::Relaxed) {
            self.health.set_ready(true);
        }
        // Every partition queue's prefetched bytes: the budget at work.
        self.metrics
            .consumer_prefetch_bytes
            .set(prefetch::queued_bytes(&statistics));
        // Lag only for partitions this instance owns now: a revoked partition's series is removed
        // when it is revoked, and never set again.
        self.workers
            .for_each_lag(&statistics, |(topic, partition), lag| {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[topic, &partition.to_string()])
                    .set(lag);
            });
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions = tpl.count();
                let lost = consumer.assignment_lost();
                if lost {
                    events::Rebalance::Lost { partitions }.emit(&self.metrics);
                } else {
                    events::Rebalance::Revoked { partitions }.emit(&self.metrics);
                }
                match handover(lost, self.txn.get().is_some()) {
                    Handover::Commit => self.stop(consumer, Some(tpl)),
                    Handover::Drop => {
                        self.stop_workers(Some(tpl));
                    }
                    Handover::AbortAndRewind => self.abort_lost(consumer, tpl),
                }
            }
            Rebalance::Assign(tpl) => self.split_queues(tpl),
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                events::Rebalance::Assigned {
                    partitions: tpl.count(),
                }
                .emit(&self.metrics);
                self.start(tpl);
                self.health.set_ready(true);
            }
            Rebalance::Error(e) => events::Rebalance::Error { error: e }.emit(&self.metrics),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        count_commit(&self.metrics, result, "offset commit failed");
    }
}
