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
//! Zombie fencing: the offsets are sent with the consumer group metadata (KIP-447), so an instance
//! that lost its partitions cannot commit them; a fenced producer is fatal and the process stops.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::RwLock;

use super::acks::ProducerCtx;
use super::deferred::Deferred;
use crate::metrics::Metrics;

/// Why a commit did not go through.
#[derive(Debug)]
pub struct CommitError {
    /// Unrecoverable (fenced, or the producer is in a fatal state): stop the instance. Otherwise
    /// the caller stops the workers, calls [`Transactions::abort`], rewinds every partition to its
    /// committed offset (restoring its state) and begins anew with [`Transactions::begin`].
    pub fatal: bool,
    pub message: String,
}

pub struct Transactions {
    pub producer: Arc<ThreadedProducer<ProducerCtx>>,
    /// Workers process a batch under a read guard; a commit holds the write guard.
    pub gate: Arc<RwLock<()>>,
    /// What workers produce while the periodic commit runs.
    pub deferred: Arc<Deferred>,
    /// Serialises commits from the commit thread and the consumer thread; taken before the gate.
    commit_lock: Mutex<()>,
    timeout: Duration,
    metrics: Metrics,
}

impl Transactions {
    /// Initialises the transactional producer (fencing any earlier producer with the same
    /// `transactional.id`) and begins the first transaction.
    pub fn start(
        producer: Arc<ThreadedProducer<ProducerCtx>>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(30);
        producer
            .init_transactions(timeout)
            .map_err(|e| anyhow::anyhow!("cannot initialise Kafka transactions: {e}"))?;
        producer.begin_transaction()?;
        Ok(Transactions {
            producer,
            gate: Arc::new(RwLock::new(())),
            deferred: Arc::new(Deferred::default()),
            commit_lock: Mutex::new(()),
            timeout,
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
    /// [`Deferred`]. `group` is the consumer's group metadata (generation and member): with it
    /// the broker fences a zombie that lost its partitions.
    pub fn commit(
        &self,
        group: Option<&ConsumerGroupMetadata>,
        positions: &[((String, i32), i64)],
    ) -> Result<(), CommitError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in positions {
            if *next >= 0 {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
            }
        }
        let _timer = self.metrics.transaction_commit.start_timer();
        let result = (|| {
            if tpl.count() > 0 {
                let group = group.ok_or(KafkaError::NoMessageReceived)?;
                self.producer
                    .send_offsets_to_transaction(&tpl, group, self.timeout)?;
            }
            self.producer.commit_transaction(self.timeout)?;
            self.producer.begin_transaction()
        })();
        result.map_err(|e| {
            self.metrics.commit_failures.inc();
            CommitError {
                fatal: matches!(&e, KafkaError::Transaction(t) if t.is_fatal()),
                message: e.to_string(),
            }
        })
    }

    /// Aborts the open transaction: its outputs and state changes are never seen by read_committed
    /// readers.
    pub fn abort(&self) -> Result<(), String> {
        self.producer
            .abort_transaction(self.timeout)
            .map_err(|e| e.to_string())
    }

    pub fn begin(&self) -> Result<(), String> {
        self.producer.begin_transaction().map_err(|e| e.to_string())
    }
}
