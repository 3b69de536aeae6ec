//! A worker's reports after each batch, and when it stops: what it counted into the shared
//! metrics, its state's gauges, and the devices evicted since the last report.

use super::*;
use crate::events::state::StateEvicted;

impl Worker {
    /// After a batch: the counts into the shared metrics, the state's gauges, new evictions.
    pub(super) fn report(
        &mut self,
        devices: &prometheus::IntGauge,
        cache: &prometheus::IntGauge,
        wall_ms: i64,
    ) {
        self.flush_counts();
        devices.set(self.engine.states().device_count() as i64);
        cache.set(self.engine.states().cache_entries() as i64);
        self.count_evictions(wall_ms);
    }

    /// Adds what this worker counted since the last time to the shared metrics.
    pub(super) fn flush_counts(&self) {
        self.counters.flush();
        for w in &self.written {
            w.flush();
        }
    }

    /// Reports this partition's new evictions.
    fn count_evictions(&mut self, wall_ms: i64) {
        let total = self.engine.states().evictions();
        let new = total - self.evictions_counted;
        if new == 0 {
            return;
        }
        self.evictions_counted = total;
        let env = &self.inflight.env;
        StateEvicted {
            devices: new,
            max_devices: env.shared.settings.max_devices,
            now_ms: wall_ms,
        }
        .emit(&env.metrics);
    }
}
