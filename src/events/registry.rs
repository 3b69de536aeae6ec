//! Events of Schema Registry input: a partition that waits for the registry, and its end.

use super::LogLimit;
use crate::metrics::Metrics;

/// The registry could not answer for a record's schema: counted every time (by reason), and
/// logged at most every 5 s over the process, since every waiting partition retries.
pub struct RegistryUnavailable<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub schema_id: u32,
    /// The metric label: `unreachable`, `timeout`, `http_5xx`, `http_4xx`, `invalid_response`.
    pub reason: &'static str,
    pub message: &'a str,
    /// When the partition asks again.
    pub retry_in_ms: u64,
    /// Partitions waiting now.
    pub waiting: usize,
    /// Wall-clock time, for the log's rate limit.
    pub now_ms: i64,
}

static UNAVAILABLE_LOG: LogLimit = LogLimit::new(5_000);

impl RegistryUnavailable<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics
            .schema_registry_errors
            .with_label_values(&[self.reason])
            .inc();
        metrics.schema_registry_waiting.set(self.waiting as i64);
        if UNAVAILABLE_LOG.allow(self.now_ms) {
            tracing::warn!(
                topic = self.topic,
                partition = self.partition,
                schema_id = self.schema_id,
                reason = self.reason,
                error = self.message,
                retry_in_ms = self.retry_in_ms,
                waiting_partitions = self.waiting,
                "the schema registry cannot answer: the partition waits for it (nothing is skipped or dead-lettered)"
            );
        }
    }
}

/// A partition waits for the registry no more: its schema came, or it stopped.
pub struct RegistryWaitEnded<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// Whether it had waited (a failed attempt): then its end is logged.
    pub waited: bool,
    pub waiting: usize,
}

impl RegistryWaitEnded<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.schema_registry_waiting.set(self.waiting as i64);
        if self.waited {
            tracing::info!(
                topic = self.topic,
                partition = self.partition,
                "the partition waits for the schema registry no more"
            );
        }
    }
}
