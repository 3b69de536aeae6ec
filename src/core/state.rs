//! The rate-limit and dedupe state of the devices of one partition.
//!
//! Owned by exactly one partition worker, so it needs no locks. Idle devices are expired by an
//! incremental sweep (a couple of entries looked at per event), never by a full scan: memory stays
//! proportional to the devices active within the retention period, and no event waits for a sweep.

use compact_str::CompactString;
use indexmap::IndexMap;

use super::limiter::{Decision, DeviceState, Limits};

/// Devices looked at by the expiry sweep per event: more than one, so the sweep outpaces growth.
const SWEEP_PER_EVENT: usize = 2;

#[derive(Debug)]
pub struct DeviceStates {
    devices: IndexMap<CompactString, DeviceState, foldhash::fast::RandomState>,
    limits: Limits,
    /// Extra time an idle device is kept after its last window closed, measured on the partition's
    /// watermark. Devices in one partition do not share a clock: a device whose events arrive
    /// late relative to the others must still find its state. See README, "State".
    grace_ms: i64,
    /// Latest event time judged in this partition.
    watermark_ms: i64,
    cache_entries: usize,
    sweep_cursor: usize,
}

impl DeviceStates {
    pub fn new(limits: Limits, grace_ms: i64) -> Self {
        DeviceStates {
            devices: IndexMap::default(),
            limits,
            grace_ms,
            watermark_ms: i64::MIN,
            cache_entries: 0,
            sweep_cursor: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Judges one event of `device_id` at `event_ms`; returns the decision and the time it was
    /// judged at (the device clock, never earlier than any event of this device seen before).
    pub fn decide(&mut self, device_id: &str, event_ms: i64, cache_key: u64) -> (Decision, i64) {
        self.sweep();
        let limits = self.limits;
        let state = match self.devices.get_mut(device_id) {
            Some(s) => s,
            None => {
                self.devices
                    .insert(CompactString::from(device_id), DeviceState::new(event_ms));
                self.devices
                    .last_mut()
                    .map(|(_, s)| s)
                    .expect("just inserted")
            }
        };
        let judged_at = state.advance(event_ms, &limits);
        let (decision, delta) = state.decide(cache_key, &limits);
        self.cache_entries = (self.cache_entries as isize + delta) as usize;
        self.watermark_ms = self.watermark_ms.max(judged_at);
        (decision, judged_at)
    }

    /// Looks at a few devices and drops those idle for longer than the retention.
    fn sweep(&mut self) {
        let now = self.watermark_ms.saturating_sub(self.grace_ms);
        for _ in 0..SWEEP_PER_EVENT {
            if self.devices.is_empty() {
                return;
            }
            if self.sweep_cursor >= self.devices.len() {
                self.sweep_cursor = 0;
            }
            let (_, state) = self
                .devices
                .get_index(self.sweep_cursor)
                .expect("cursor in range");
            if state.is_idle_at(now, &self.limits) {
                let (_, removed) = self
                    .devices
                    .swap_remove_index(self.sweep_cursor)
                    .expect("cursor in range");
                self.cache_entries -= removed.cache.len();
            } else {
                self.sweep_cursor += 1;
            }
        }
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    pub fn cache_entries(&self) -> usize {
        self.cache_entries
    }

    pub fn get(&self, device_id: &str) -> Option<&DeviceState> {
        self.devices.get(device_id)
    }

    /// Puts a restored device state in place (used when state is restored from a changelog).
    pub fn restore(&mut self, device_id: &str, state: DeviceState) {
        self.watermark_ms = self.watermark_ms.max(state.clock_ms());
        self.cache_entries += state.cache.len();
        if let Some(old) = self.devices.insert(CompactString::from(device_id), state) {
            self.cache_entries -= old.cache.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::limiter::cache_key;

    #[test]
    fn idle_devices_expire_by_the_incremental_sweep() {
        let hour = 3_600_000;
        let mut s = DeviceStates::new(Limits::default(), hour);
        for i in 0..1000 {
            s.decide(&format!("old-{i}"), 0, cache_key(None, None));
        }
        assert_eq!(s.device_count(), 1000);
        assert_eq!(s.cache_entries(), 1000);
        // Two hours later (window + grace), steady traffic from one device sweeps the rest away.
        for i in 0..600 {
            s.decide("busy", 2 * hour + i, cache_key(None, None));
        }
        assert_eq!(s.device_count(), 1);
        assert_eq!(s.cache_entries(), 1);
    }

    #[test]
    fn devices_within_grace_are_kept() {
        let hour = 3_600_000;
        let mut s = DeviceStates::new(Limits::default(), hour);
        s.decide("late", 0, cache_key(None, None));
        for i in 0..100 {
            s.decide(
                "busy",
                2 * hour - 200 + i,
                cache_key(Some(&i.to_string()), None),
            );
        }
        assert!(s.get("late").is_some());
    }
}
