//! The allocator's own view of memory, read at each scrape (feature `jemalloc`, the default):
//! `aepiot_allocator_allocated_bytes` (live allocations, Rust and librdkafka alike) and
//! `aepiot_allocator_resident_bytes` (pages the allocator holds resident). RSS alone cannot tell
//! a growing state from freed memory the allocator keeps (fragmentation after a partition's state
//! was dropped, say); the two together can.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::IntGauge;

pub struct AllocatorCollector {
    allocated: IntGauge,
    resident: IntGauge,
}

impl Default for AllocatorCollector {
    fn default() -> Self {
        AllocatorCollector {
            allocated: IntGauge::new(
                "aepiot_allocator_allocated_bytes",
                "Bytes in live allocations (jemalloc stats.allocated), Rust and librdkafka alike",
            )
            .expect("valid metric"),
            resident: IntGauge::new(
                "aepiot_allocator_resident_bytes",
                "Bytes in pages the allocator holds resident (jemalloc stats.resident): live allocations, fragmentation and free pages not yet returned",
            )
            .expect("valid metric"),
        }
    }
}

impl Collector for AllocatorCollector {
    fn desc(&self) -> Vec<&Desc> {
        [&self.allocated, &self.resident]
            .into_iter()
            .flat_map(|g| g.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // jemalloc's statistics are a snapshot refreshed by advancing its epoch.
        if tikv_jemalloc_ctl::epoch::advance().is_ok() {
            if let Ok(a) = tikv_jemalloc_ctl::stats::allocated::read() {
                self.allocated.set(a as i64);
            }
            if let Ok(r) = tikv_jemalloc_ctl::stats::resident::read() {
                self.resident.set(r as i64);
            }
        }
        [&self.allocated, &self.resident]
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}
