//! Exactly-once: outputs, state-changelog records and input offsets go into one Kafka transaction,
//! committed every `commit_interval_ms`, on every revoke and at shutdown (rules 8-11 of
//! `docs/delivery.md`: what a transaction holds, what an abort rewinds).
//!
//! Workers hold a read guard of [`Transactions::gate`] while they process a batch; a commit takes
//! the write guard to read the positions, so it sees every worker between batches and the
//! positions match exactly the outputs in the transaction. The periodic commit then lets the
//! workers go on while it commits: what they produce meanwhile waits in [`Deferred`] for the next
//! transaction. Commits on a revoke or at shutdown hold the gate throughout. The blocking
//! transaction calls run on the commit thread or the consumer thread, never on the async workers.
//!
//! Each error is handled by the class librdkafka gives it ([`super::txn_calls`]): retriable,
//! the same call again; abortable, abort and rewind; fatal, stop. What each does, and how the
//! abort and the rewind wait for the cluster (paced by [`Transactions::backoff`], each call timed
//! out before the transaction would be), is rule 10 of `docs/delivery.md`.
//!
//! Zombie fencing: the offsets are sent with the consumer group metadata (KIP-447), so an instance
//! that lost its partitions cannot commit them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::RwLock;

use super::acks::ProducerCtx;
use super::deferred::Deferred;
use super::fatal::FatalCause;
use super::txn_calls::{Class, OffsetCalls, TxnCalls, TxnError};
use crate::events::kafka::TransactionCommitFailed;
use crate::kafka::split::Tp;
use crate::metrics::Metrics;

/// Why a commit did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// The transaction cannot commit: the caller stops the workers, aborts and rewinds every
    /// partition ([`Transactions::rewind_to_committed`]).
    Abort(String),
    /// Stop the instance.
    Fatal(FatalCause),
}

pub struct Transactions {
    pub producer: Arc<ThreadedProducer<ProducerCtx>>,
    /// Workers process a batch under a read guard; a commit holds the write guard.
    pub gate: Arc<RwLock<()>>,
    /// What workers produce while the periodic commit runs.
    pub deferred: Arc<Deferred>,
    /// Set by a worker whose output the cluster did not take in time: the open transaction cannot
    /// commit, so the next commit aborts and rewinds. Cleared by the rewind.
    pub rewind: Arc<AtomicBool>,
    /// Serialises commits from the commit thread and the consumer thread; taken before the gate.
    commit_lock: Mutex<()>,
    /// Each blocking call's time-out: shorter than `transaction.timeout.ms`.
    pub timeout: Duration,
    /// The pause before a retriable call is tried again.
    pub backoff: Duration,
    metrics: Metrics,
}

/// Each transactional call's time-out: half of the producer's `transaction.timeout.ms` (librdkafka's
/// default, 60 s, when unset), so that a call gives up before its transaction does.
pub fn call_timeout(producer_config: &ClientConfig) -> Duration {
    let ms = producer_config
        .get("transaction.timeout.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60_000);
    Duration::from_millis(ms / 2)
}

impl Transactions {
    /// Initialises the transactional producer (fencing any earlier producer with the same
    /// `transactional.id`) and begins the first transaction. `timeout`: each call's (see
    /// [`call_timeout`]); `max_deferred_bytes`: see [`Deferred`].
    pub fn start(
        producer: Arc<ThreadedProducer<ProducerCtx>>,
        metrics: Metrics,
        timeout: Duration,
        max_deferred_bytes: usize,
    ) -> anyhow::Result<Self> {
        producer
            .init_transactions(Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!("cannot initialise Kafka transactions: {e}"))?;
        producer.begin_transaction()?;
        Ok(Transactions {
            producer,
            gate: Arc::new(RwLock::new(())),
            deferred: Arc::new(Deferred::new(max_deferred_bytes)),
            rewind: Arc::default(),
            commit_lock: Mutex::new(()),
            timeout,
            backoff: Duration::from_millis(500),
            metrics,
        })
    }

    /// One commit at a time: taken before the gate, held until the next transaction has begun
    /// and what was deferred is produced into it.
    pub fn lock_commits(&self) -> MutexGuard<'_, ()> {
        self.commit_lock.lock().expect("commit lock")
    }

    /// Commits the open transaction with the given next offsets, then begins the next one. The
    /// caller holds [`Transactions::lock_commits`], and either the gate's write guard or a started
    /// [`Deferred`]. `calls` carries the consumer's group metadata (generation and member): with
    /// it the broker fences a zombie that lost its partitions. A retriable error is tried again
    /// until `stopping()`.
    pub fn commit(
        &self,
        calls: &dyn TxnCalls,
        positions: &[(Tp, i64)],
        stopping: &dyn Fn() -> bool,
    ) -> Result<(), CommitError> {
        let _timer = self.metrics.transaction_commit.start_timer();
        let r = Retrying {
            timeout: self.timeout,
            backoff: self.backoff,
            stopping,
        };
        let result = commit_with(calls, positions, &self.rewind, &r);
        if result.is_err() {
            TransactionCommitFailed.emit(&self.metrics);
        }
        result
    }

    /// Aborts the open transaction (its outputs and state changes are never seen by
    /// read_committed readers) and finds where every partition of `partitions` starts again: its
    /// committed offset, seeked to, or `-1` where none is committed (seeked to the beginning when
    /// `earliest`, else the end). Then begins the next transaction. Retriable errors are tried
    /// again until `stopping()`; `Ok(None)` when it gave up because the instance stops.
    pub fn rewind_to_committed(
        &self,
        calls: &dyn TxnCalls,
        offsets: &dyn OffsetCalls,
        partitions: &[Tp],
        earliest: bool,
        stopping: &dyn Fn() -> bool,
    ) -> Result<Option<Vec<(Tp, i64)>>, FatalCause> {
        let r = Retrying {
            timeout: self.timeout,
            backoff: self.backoff,
            stopping,
        };
        self.rewind.store(false, Ordering::SeqCst);
        rewind_with(calls, offsets, partitions, earliest, &r)
    }

    /// Aborts the open transaction, trying a retriable error again until `stopping()`.
    pub fn abort(
        &self,
        calls: &dyn TxnCalls,
        stopping: &dyn Fn() -> bool,
    ) -> Result<bool, FatalCause> {
        let r = Retrying {
            timeout: self.timeout,
            backoff: self.backoff,
            stopping,
        };
        abort_with(calls, &r)
    }
}

/// The commit's calls, each error by its class (see the module's opening comment).
fn commit_with(
    calls: &dyn TxnCalls,
    positions: &[(Tp, i64)],
    rewind: &AtomicBool,
    r: &Retrying<'_>,
) -> Result<(), CommitError> {
    if rewind.load(Ordering::SeqCst) {
        return Err(CommitError::Abort(
            "an output of this transaction was not delivered".into(),
        ));
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in positions {
        if *next >= 0 {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
    }
    if tpl.count() > 0 {
        r.resolve("sending the offsets to the transaction", || {
            calls.send_offsets(&tpl, r.timeout)
        })?;
    }
    r.resolve("committing the transaction", || calls.commit(r.timeout))?;
    // Committed: a begin that fails now leaves no transaction to abort, and is not the cluster's
    // (it is a local call); only the rewind's own begin can follow.
    calls.begin().map_err(|e| match e.class {
        Class::Fatal { fenced } => {
            CommitError::Fatal(fatal(fenced, "beginning the next transaction", &e))
        }
        _ => CommitError::Abort(format!("beginning the next transaction: {}", e.message)),
    })
}

fn fatal(fenced: bool, what: &str, e: &TxnError) -> FatalCause {
    let message = format!("{what}: {}", e.message);
    if fenced {
        FatalCause::Fenced(message)
    } else {
        FatalCause::Transaction(message)
    }
}

/// How the abort and the rewind wait for the cluster.
struct Retrying<'a> {
    timeout: Duration,
    backoff: Duration,
    stopping: &'a dyn Fn() -> bool,
}

impl Retrying<'_> {
    /// Calls a commit call until it resolves. librdkafka's rule: a retriable error means the same
    /// call again (it resumes the operation under way; an abort meanwhile is refused as a
    /// conflicting call), until it succeeds or answers abortable or fatal (past
    /// `transaction.timeout.ms` the coordinator aborts the transaction, and the call says so).
    /// Given up as abortable once the instance stops.
    fn resolve(
        &self,
        what: &str,
        call: impl Fn() -> Result<(), TxnError>,
    ) -> Result<(), CommitError> {
        loop {
            let e = match call() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            match e.class {
                Class::Retriable if !(self.stopping)() => {
                    tracing::warn!(error = %e.message, "{what} failed; trying again");
                    std::thread::sleep(self.backoff);
                }
                Class::Retriable | Class::Abortable => {
                    return Err(CommitError::Abort(format!("{what}: {}", e.message)))
                }
                Class::Fatal { fenced } => return Err(CommitError::Fatal(fatal(fenced, what, &e))),
            }
        }
    }

    /// Calls `call` until it succeeds (`Some`), the instance stops (`None`) or a non-retriable
    /// error (fatal whatever its class: these calls have no abortable answer to give).
    fn until_done<T>(
        &self,
        what: &str,
        call: impl Fn() -> Result<T, TxnError>,
    ) -> Result<Option<T>, FatalCause> {
        loop {
            match call() {
                Ok(t) => return Ok(Some(t)),
                Err(e) if e.class == Class::Retriable => {
                    if (self.stopping)() {
                        tracing::warn!(error = %e.message, "{what} failed; not trying again: the instance stops");
                        return Ok(None);
                    }
                    tracing::warn!(error = %e.message, "{what} failed; waiting for the cluster");
                    std::thread::sleep(self.backoff);
                }
                Err(e) => {
                    let fenced = matches!(e.class, Class::Fatal { fenced: true });
                    return Err(fatal(fenced, what, &e));
                }
            }
        }
    }
}

/// Aborts the open transaction; `Ok(false)` when it gave up because the instance stops (the
/// coordinator aborts it after `transaction.timeout.ms`).
fn abort_with(calls: &dyn TxnCalls, r: &Retrying<'_>) -> Result<bool, FatalCause> {
    Ok(
        r.until_done("aborting the transaction", || calls.abort(r.timeout))?
            .is_some(),
    )
}

fn rewind_with(
    calls: &dyn TxnCalls,
    offsets: &dyn OffsetCalls,
    partitions: &[Tp],
    earliest: bool,
    r: &Retrying<'_>,
) -> Result<Option<Vec<(Tp, i64)>>, FatalCause> {
    if !abort_with(calls, r)? {
        return Ok(None);
    }
    let Some(committed) = r.until_done("reading the committed offsets", || {
        offsets.committed(partitions, r.timeout)
    })?
    else {
        return Ok(None);
    };
    let mut positions = Vec::with_capacity(committed.len());
    for (tp, offset) in committed {
        let (to, position) = match offset {
            Some(o) => (Offset::Offset(o), o),
            None if earliest => (Offset::Beginning, -1),
            None => (Offset::End, -1),
        };
        if r.until_done("seeking to the committed offset", || {
            offsets.seek(&tp, to, r.timeout)
        })?
        .is_none()
        {
            return Ok(None);
        }
        positions.push((tp, position));
    }
    if r.until_done("beginning the next transaction", || calls.begin())?
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some(positions))
}

#[cfg(test)]
mod tests;
