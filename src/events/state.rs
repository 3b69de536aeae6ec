//! Events of the processor's device state: evictions past `limits.max_devices`, and each
//! partition's restore from its changelog.

use super::LogLimit;
use crate::metrics::Metrics;

/// Devices whose state a partition dropped to keep the instance within `limits.max_devices`.
/// Counted every time; the warning, which says what to do, at most once a minute.
pub struct StateEvicted {
    /// Devices evicted since the partition's last report.
    pub devices: u64,
    pub max_devices: usize,
    /// Wall-clock time, for the log's rate limit.
    pub now_ms: i64,
}

static EVICTION_LOG: LogLimit = LogLimit::new(60_000);

impl StateEvicted {
    pub fn emit(self, metrics: &Metrics) {
        metrics.state_evictions.inc_by(self.devices);
        if EVICTION_LOG.allow(self.now_ms) {
            tracing::warn!(
                max_devices = self.max_devices,
                evictions = metrics.state_evictions.get(),
                "the instance holds limits.max_devices devices: the least recently active are evicted (their next events are judged as new devices'); raise the limit and memory, or add instances"
            );
        }
    }
}

/// A partition's restore from its changelog begins: what can take minutes (millions of
/// records), so an operator watching a slow start sees what it waits for.
pub struct RestoreStarted<'a> {
    pub changelog_topic: &'a str,
    pub partition: i32,
    pub records: i64,
}

impl RestoreStarted<'_> {
    pub fn emit(self) {
        tracing::info!(
            topic = self.changelog_topic,
            partition = self.partition,
            records = self.records,
            "restoring state from the changelog"
        );
    }
}

/// A partition's restore ended: done, or stopped by a revoke or the shutdown (nothing of the
/// partition was processed then). A restore that fails stops the instance instead
/// ([`crate::processor::fatal`]).
pub enum RestoreEnded<'a> {
    Restored {
        topic: &'a str,
        partition: i32,
        records: u64,
        devices: usize,
        seconds: f64,
    },
    Stopped {
        topic: &'a str,
        partition: i32,
    },
}

impl RestoreEnded<'_> {
    pub fn emit(self, metrics: &Metrics) {
        match self {
            RestoreEnded::Restored {
                topic,
                partition,
                records,
                devices,
                seconds,
            } => {
                metrics.state_restore_seconds.observe(seconds);
                metrics.state_restored_records.inc_by(records);
                tracing::info!(%topic, partition, records, devices, seconds, "state restored");
            }
            RestoreEnded::Stopped { topic, partition } => {
                tracing::info!(%topic, partition, "state restore stopped: the partition was revoked or the instance stops");
            }
        }
    }
}
