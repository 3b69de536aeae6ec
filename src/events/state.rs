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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The log lines written while `f` runs on this thread.
    fn logged(f: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn evictions_are_all_counted_and_warned_of_once_a_minute() {
        let metrics = Metrics::new();
        // Far from any other time this process's limit may have seen.
        let t0 = 4_000_000_000_000;
        let log = logged(|| {
            for (devices, now_ms) in [(3, t0), (2, t0 + 1_000), (5, t0 + 60_000)] {
                StateEvicted {
                    devices,
                    max_devices: 100,
                    now_ms,
                }
                .emit(&metrics);
            }
        });
        assert_eq!(metrics.state_evictions.get(), 10);
        assert_eq!(
            log.matches("the instance holds limits.max_devices").count(),
            2,
            "{log}"
        );
        assert!(
            log.contains("evictions=3") && log.contains("evictions=10"),
            "{log}"
        );
    }

    #[test]
    fn a_restore_counts_its_records_and_says_so() {
        let metrics = Metrics::new();
        let log = logged(|| {
            RestoreEnded::Restored {
                topic: "in",
                partition: 2,
                records: 7,
                devices: 3,
                seconds: 0.5,
            }
            .emit(&metrics);
            RestoreEnded::Stopped {
                topic: "in",
                partition: 3,
            }
            .emit(&metrics);
        });
        assert_eq!(metrics.state_restored_records.get(), 7);
        assert_eq!(metrics.state_restore_seconds.get_sample_count(), 1);
        assert!(
            log.contains("state restored") && log.contains("records=7"),
            "{log}"
        );
        assert!(log.contains("state restore stopped"), "{log}");
    }
}
