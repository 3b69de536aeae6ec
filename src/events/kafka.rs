//! Events of the Kafka clients both services run: client errors, offset commits, rebalances.

use std::fmt::Display;

use crate::metrics::Metrics;

/// A producer's client error (a broker unreachable, authentication refused), per cluster. While a
/// regional cluster is away its producer keeps retrying, so this is where the outage shows.
pub struct ProducerError<'a> {
    /// `main`, or a name of `[clusters]`.
    pub cluster: &'a str,
    pub error: &'a dyn Display,
    pub reason: &'a str,
}

impl ProducerError<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics
            .producer_errors
            .with_label_values(&[self.cluster])
            .inc();
        tracing::warn!(cluster = %self.cluster, error = %self.error, reason = self.reason, "Kafka producer error");
    }
}

/// An output the cluster did not take. Counted with the client errors of its cluster; it is
/// logged where it is sorted (a dead letter of its own, or the instance's stop, which names it).
pub struct DeliveryRefused<'a> {
    pub cluster: &'a str,
}

impl DeliveryRefused<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics
            .producer_errors
            .with_label_values(&[self.cluster])
            .inc();
    }
}

/// A partition's output (or dead letter) that the cluster did not take for a reason that is not
/// the record's own: the partition stops there and so does the instance. Counted once per
/// partition; the log line is the stop's, which names the cause ([`crate::processor::fatal`]).
pub struct DeliveryFailed;

impl DeliveryFailed {
    pub fn emit(self, metrics: &Metrics) {
        metrics.delivery_failures.inc();
    }
}

/// An offset commit that failed ("nothing to commit" is not one). `what` is the log message:
/// which commit it was.
pub struct CommitFailed<'a> {
    pub error: &'a dyn Display,
    pub what: &'a str,
}

impl CommitFailed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.commit_failures.inc();
        tracing::warn!(error = %self.error, "{}", self.what);
    }
}

/// Exactly-once: a transaction commit that failed (after its retries). Counted with the offset
/// commits that failed; the log line is where it is handled: the abort (and rewind) it leads to,
/// or the instance's stop, which names the cause.
pub struct TransactionCommitFailed;

impl TransactionCommitFailed {
    pub fn emit(self, metrics: &Metrics) {
        metrics.commit_failures.inc();
    }
}

/// The processor's consumer group moved partitions: to this instance, away from it (revoked, or
/// lost: the group moved on without this instance), or failed to. A lost assignment counts as a
/// revoke (`kind="revoke"`).
pub enum Rebalance<'a> {
    Assigned { partitions: usize },
    Revoked { partitions: usize },
    Lost { partitions: usize },
    Error { error: &'a dyn Display },
}

impl Rebalance<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let kind = match self {
            Rebalance::Assigned { partitions } => {
                tracing::info!(partitions, "partitions assigned");
                "assign"
            }
            Rebalance::Revoked { partitions } => {
                tracing::info!(partitions, "partitions revoked");
                "revoke"
            }
            Rebalance::Lost { partitions } => {
                tracing::warn!(partitions, "partitions lost (the group moved on without this instance): their work is not committed");
                "revoke"
            }
            Rebalance::Error { error } => {
                tracing::warn!(error = %error, "rebalance error");
                "error"
            }
        };
        metrics.rebalances.with_label_values(&[kind]).inc();
    }
}
