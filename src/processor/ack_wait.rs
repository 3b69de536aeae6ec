//! How long a cluster has kept outputs waiting without acknowledging any: the gauge
//! `aepiot_cluster_ack_wait_seconds{cluster}`, which shows a regional cluster's outage (its
//! producer retries for ever, so nothing fails; records just wait, and so do the commits of the
//! partitions that produced them).
//!
//! Pure: fed from the producer's statistics callback (outputs waiting, from librdkafka) and its
//! delivery callback (a running count of acknowledgements), with the time passed in. No clock is
//! read per record.

/// The wait of one cluster.
#[derive(Debug, Default)]
pub struct AckWait {
    /// The acknowledgement count at the last observation.
    acked: u64,
    /// Since when outputs have waited with no acknowledgement, in ms.
    since_ms: Option<i64>,
}

impl AckWait {
    /// One observation at `now_ms`: `waiting` outputs not yet acknowledged, `acked` the running
    /// count of acknowledgements. Returns the wait in seconds: 0 while the cluster acknowledges or
    /// has nothing to acknowledge, else the time since it last did (or since outputs started to
    /// wait, if it never did).
    pub fn observe(&mut self, now_ms: i64, waiting: u64, acked: u64) -> f64 {
        let progressed = acked != self.acked;
        self.acked = acked;
        if waiting == 0 || progressed {
            // Acknowledged something since the last look: not stuck, whatever still waits.
            self.since_ms = (waiting > 0).then_some(now_ms);
            return 0.0;
        }
        let since = *self.since_ms.get_or_insert(now_ms);
        (now_ms - since).max(0) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_only_while_nothing_is_acknowledged() {
        let mut w = AckWait::default();
        assert_eq!(w.observe(0, 0, 0), 0.0, "idle");
        assert_eq!(w.observe(5_000, 10, 0), 0.0, "outputs start to wait");
        assert_eq!(w.observe(10_000, 10, 0), 5.0);
        assert_eq!(
            w.observe(15_000, 12, 0),
            10.0,
            "more wait, none acknowledged"
        );
        assert_eq!(w.observe(20_000, 3, 9), 0.0, "the cluster is back");
        assert_eq!(
            w.observe(25_000, 3, 9),
            5.0,
            "stuck again since the last progress"
        );
        assert_eq!(w.observe(30_000, 0, 12), 0.0, "all acknowledged");
        assert_eq!(w.observe(35_000, 0, 12), 0.0);
    }

    #[test]
    fn a_busy_cluster_that_acknowledges_never_waits() {
        let mut w = AckWait::default();
        for i in 1..100 {
            assert_eq!(w.observe(i * 5_000, 100_000, i as u64 * 1_000), 0.0);
        }
    }
}
