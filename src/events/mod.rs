//! Operational events: each thing that happens to an instance that an operator watches (a producer
//! error, a failed commit, a rebalance, a state eviction, a restore, a webhook retry or dead
//! letter, a webhook endpoint going down or up) is one type here, and its `emit()` counts it and
//! logs it together, so the metric and its log line cannot drift apart. A site builds the event
//! and emits it; none increments an operational metric or writes its log line by hand. (Vector's
//! `internal_events` has the same shape.) Per-record outcomes (`aepiot_events_total`, dead letters
//! by kind) stay in [`crate::metrics`]: they are counted on the hot path and never logged.
//!
//! Labels stay bounded (cluster, kind: never a device id, a URL or an error text). An event whose
//! log could flood (one per record or per poll) logs through a [`LogLimit`] of its own.
//!
//! - [`kafka`]: client errors, commits, rebalances.
//! - [`state`]: device state: evictions, restores.
//! - [`registry`]: partitions waiting for the Schema Registry.
//! - [`webhook`]: webhook retries and dead letters, endpoints down and up again.

pub mod kafka;
pub mod registry;
pub mod state;
pub mod webhook;

use std::sync::atomic::{AtomicI64, Ordering};

/// At most one log line per `every_ms` of wall-clock time, over every site and thread of the
/// process that emits the same event (production runs one instance per process). Time is passed
/// in, so it is tested without sleeping.
#[derive(Debug)]
pub struct LogLimit {
    every_ms: i64,
    last_ms: AtomicI64,
}

impl LogLimit {
    pub const fn new(every_ms: i64) -> LogLimit {
        LogLimit {
            every_ms,
            last_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether a line may be logged at `now_ms`; if so, the next one waits `every_ms` from now.
    /// Of threads asking at once, one is told yes.
    pub fn allow(&self, now_ms: i64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= self.every_ms
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval() {
        let limit = LogLimit::new(60_000);
        assert!(limit.allow(0));
        assert!(!limit.allow(1));
        assert!(!limit.allow(59_999));
        assert!(limit.allow(60_000));
        assert!(!limit.allow(60_001));
        assert!(limit.allow(200_000));
    }

    #[test]
    fn the_first_line_is_always_logged() {
        assert!(LogLimit::new(60_000).allow(0));
        assert!(LogLimit::new(60_000).allow(1_765_000_000_000));
    }

    #[test]
    fn of_threads_asking_at_once_one_logs() {
        let limit = LogLimit::new(60_000);
        let allowed = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| limit.allow(5))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&ok| ok)
                .count()
        });
        assert_eq!(allowed, 1);
    }
}
