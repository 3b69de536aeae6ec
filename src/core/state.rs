//! The rate-limit and dedupe state of the devices of one partition.
//!
//! Owned by exactly one partition worker, so it needs no locks. Idle devices are expired by an
//! incremental sweep (a couple of entries looked at per event), never by a full scan: memory stays
//! proportional to the devices active within the retention period, and no event waits for a sweep.
//!
//! When is a device idle? Its state can only matter to its own next event, and it is certainly
//! irrelevant once that event is a window after the device clock. The next event time is unknown,
//! so expiry needs two signs at once: the partition's event time (its watermark) has moved on by
//! the window plus a grace, *and* the device has not been seen for the grace in wall-clock time.
//! Event time alone would drop a device whose events lag the others' (a replay mixed with live
//! traffic) and change its outcomes; wall time alone would never expire anything in a fast replay
//! of old data, which is fine, but would also keep state that event time says is dead. With both,
//! a replay (`process` of a file) is exact, and a live stream keeps memory to the active devices.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use indexmap::map::raw_entry_v1::{RawEntryApiV1, RawEntryMut};
use indexmap::IndexMap;

use super::limiter::{Decision, DeviceState, Limits};
use super::placement::Placement;
use super::snapshot::{self, SnapshotError};

/// Devices looked at by the expiry sweep per event: more than one, so the sweep outpaces growth.
const SWEEP_PER_EVENT: usize = 2;

/// Devices sampled to pick the least recently active one to evict (as Redis's approximated LRU
/// does): an exact LRU order would cost a list update on every event.
const EVICTION_SAMPLE: usize = 16;

/// The bound on devices held by all the partitions of one instance (`limits.max_devices`): a
/// fleet larger than planned, or device ids made up by a faulty client, cannot grow memory past
/// it. Shared by every partition's [`DeviceStates`]; each evicts from its own devices.
#[derive(Debug)]
pub struct DeviceBudget {
    max: usize,
    held: AtomicUsize,
}

impl DeviceBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(DeviceBudget {
            max,
            held: AtomicUsize::new(0),
        })
    }

    /// Devices held now by every partition of the instance.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn full(&self) -> bool {
        self.held() >= self.max
    }

    fn add(&self, n: usize) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}

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
    /// Wall clock (epoch ms) of the first event: `seen` times count from here.
    wall_epoch_ms: Option<i64>,
    /// Devices dropped by the sweep since the last [`DeviceStates::take_expired`], when tracked
    /// (a changelog writes a tombstone for each, so a restore does not bring them back).
    expired: Option<Vec<CompactString>>,
    /// Wall-clock seconds of the latest event.
    last_wall: u32,
    budget: Arc<DeviceBudget>,
    /// Devices evicted by the budget so far (they are also in `expired`, for their tombstones).
    evictions: u64,
    /// Where the devices' allocations go (see [`Placement`]); none in `process` and the tests.
    placement: Option<Box<dyn Placement>>,
}

impl Drop for DeviceStates {
    /// A revoked partition's devices leave the instance's budget with it.
    fn drop(&mut self) {
        self.budget.sub(self.devices.len());
        // Freed inside the placement too, so that its pages empty out.
        self.placed(|s| drop((std::mem::take(&mut s.devices), s.expired.take())));
    }
}

impl DeviceStates {
    pub fn new(limits: Limits, grace_ms: i64) -> Self {
        Self::with_budget(limits, grace_ms, DeviceBudget::new(usize::MAX))
    }

    /// States whose devices count against `budget`, shared with the instance's other partitions.
    pub fn with_budget(limits: Limits, grace_ms: i64, budget: Arc<DeviceBudget>) -> Self {
        DeviceStates {
            devices: IndexMap::default(),
            limits,
            grace_ms,
            watermark_ms: i64::MIN,
            cache_entries: 0,
            sweep_cursor: 0,
            wall_epoch_ms: None,
            expired: None,
            last_wall: 0,
            budget,
            evictions: 0,
            placement: None,
        }
    }

    /// Runs `f` inside the placement, if any. The placement is moved out for the call, so that `f`
    /// may borrow the states mutably.
    fn placed<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let Some(placement) = self.placement.take() else {
            return f(self);
        };
        let (mut f, mut out) = (Some(f), None);
        placement.place(&mut || out = f.take().map(|f| f(self)));
        self.placement = Some(placement);
        out.expect("a placement runs its closure")
    }

    /// Places the devices' allocations from now on (before the first event: what was allocated
    /// earlier stays where it is).
    pub fn set_placement(&mut self, placement: Box<dyn Placement>) {
        self.placement = Some(placement);
    }

    /// Devices evicted to keep the instance within its budget, since this state began.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Starts recording expired devices for [`DeviceStates::take_expired`].
    pub fn track_expired(&mut self) {
        self.expired.get_or_insert_with(Vec::new);
    }

    /// Devices expired since the last call.
    pub fn take_expired(&mut self) -> Vec<CompactString> {
        self.expired
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Forgets a device (a tombstone read back from the changelog).
    pub fn remove(&mut self, device_id: &str) {
        self.placed(|s| s.remove_here(device_id))
    }

    fn remove_here(&mut self, device_id: &str) {
        if let Some(old) = self.devices.swap_remove(device_id) {
            self.cache_entries -= old.cache.len();
            self.budget.sub(1);
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Judges one event of `device_id` at `event_ms`; returns the decision and the time it was
    /// judged at (the device clock, never earlier than any event of this device seen before).
    /// `now_ms` is the wall clock, used only for expiry.
    pub fn decide(
        &mut self,
        device_id: &str,
        event_ms: i64,
        cache_key: u64,
        now_ms: i64,
    ) -> (Decision, i64) {
        self.placed(|s| s.decide_here(device_id, event_ms, cache_key, now_ms))
    }

    fn decide_here(
        &mut self,
        device_id: &str,
        event_ms: i64,
        cache_key: u64,
        now_ms: i64,
    ) -> (Decision, i64) {
        let wall = self.wall_secs(now_ms);
        self.last_wall = wall;
        self.sweep(wall);
        // Only when the instance is full (rare) does a new device cost a second probe.
        if self.budget.full() && !self.devices.contains_key(device_id) {
            self.evict_one();
        }
        let limits = self.limits;
        // One hash and one probe whether the device is known or new (a new device is the
        // common case of a large, sparse fleet).
        let state = match self.devices.raw_entry_mut_v1().from_key(device_id) {
            RawEntryMut::Occupied(e) => e.into_mut(),
            RawEntryMut::Vacant(e) => {
                self.budget.add(1);
                e.insert(CompactString::from(device_id), DeviceState::new(event_ms))
                    .1
            }
        };
        state.seen = wall;
        let judged_at = state.advance(event_ms, &limits);
        let (decision, delta) = state.decide(cache_key, &limits);
        self.cache_entries = (self.cache_entries as isize + delta) as usize;
        self.watermark_ms = self.watermark_ms.max(judged_at);
        (decision, judged_at)
    }

    /// Wall-clock seconds since this state began (saturating: a clock going backwards reads 0).
    fn wall_secs(&mut self, now_ms: i64) -> u32 {
        let epoch = *self.wall_epoch_ms.get_or_insert(now_ms);
        ((now_ms - epoch).max(0) / 1000).min(u32::MAX as i64) as u32
    }

    /// Looks at a few devices and drops those idle for longer than the retention.
    fn sweep(&mut self, wall: u32) {
        let now = self.watermark_ms.saturating_sub(self.grace_ms);
        let grace_secs = (self.grace_ms / 1000).min(u32::MAX as i64) as u32;
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
            if state.is_idle_at(now, &self.limits) && wall.saturating_sub(state.seen) >= grace_secs
            {
                let (id, removed) = self
                    .devices
                    .swap_remove_index(self.sweep_cursor)
                    .expect("cursor in range");
                self.cache_entries -= removed.cache.len();
                self.budget.sub(1);
                if let Some(expired) = &mut self.expired {
                    expired.push(id);
                }
            } else {
                self.sweep_cursor += 1;
            }
        }
    }

    /// Drops the least recently active of a sample of devices (by wall-clock `seen`, then by
    /// device clock): the budget is per instance, the sample from this partition.
    fn evict_one(&mut self) {
        let n = self.devices.len();
        if n == 0 {
            return;
        }
        let start = self.sweep_cursor % n;
        let victim = (0..EVICTION_SAMPLE.min(n))
            .map(|i| (start + i) % n)
            .min_by_key(|&i| {
                let s = &self.devices[i];
                (s.seen, s.clock_ms())
            })
            .expect("sample is not empty");
        let (id, removed) = self
            .devices
            .swap_remove_index(victim)
            .expect("victim in range");
        self.cache_entries -= removed.cache.len();
        self.budget.sub(1);
        self.evictions += 1;
        self.sweep_cursor = start + EVICTION_SAMPLE;
        if let Some(expired) = &mut self.expired {
            expired.push(id);
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

    /// Puts back a device's state saved before an event: the engine's undo when the event's URL
    /// record would be too large to write. (A changelog's records go through
    /// [`DeviceStates::restore_encoded`].)
    pub fn restore(&mut self, device_id: &str, state: DeviceState) {
        // The saved state was cloned outside the placement: copied into it.
        let copy = self.placement.is_some();
        self.placed(|s| {
            let state = if copy { state.clone() } else { state };
            s.restore_here(device_id, state)
        })
    }

    /// Restores changelog records: a device id and its encoded state ([`snapshot`]), or `None`
    /// for a tombstone (the device expired). Decoded inside the placement, where they will live,
    /// so nothing is copied in, and the placement is entered once for all of them (a restore
    /// hands over a batch at a time). A value that does not decode is told to `unreadable` and
    /// skipped.
    pub fn restore_encoded<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        mut unreadable: impl FnMut(&str, SnapshotError),
    ) {
        self.placed(|s| {
            for (device_id, value) in records {
                match value.map(snapshot::decode) {
                    None => s.remove_here(device_id),
                    Some(Ok(state)) => s.restore_here(device_id, state),
                    Some(Err(e)) => unreadable(device_id, e),
                }
            }
        })
    }

    fn restore_here(&mut self, device_id: &str, mut state: DeviceState) {
        // A restored device counts as just seen, so wall-clock expiry starts afresh.
        state.seen = self.last_wall;
        self.watermark_ms = self.watermark_ms.max(state.clock_ms());
        self.cache_entries += state.cache.len();
        match self.devices.insert(CompactString::from(device_id), state) {
            Some(old) => self.cache_entries -= old.cache.len(),
            None => {
                self.budget.add(1);
                if self.budget.held() > self.budget.max {
                    self.evict_one();
                }
            }
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
            s.decide(&format!("old-{i}"), 0, cache_key(None, None), 0);
        }
        assert_eq!(s.device_count(), 1000);
        assert_eq!(s.cache_entries(), 1000);
        // Two hours later (window + grace) in event time but not in wall time: all kept.
        for i in 0..600 {
            s.decide("busy", 2 * hour + i, cache_key(None, None), 0);
        }
        assert_eq!(s.device_count(), 1001);
        // And an hour later in wall time too: steady traffic from one device sweeps the rest away.
        for i in 0..600 {
            s.decide("busy", 2 * hour + i, cache_key(None, None), hour);
        }
        assert_eq!(s.device_count(), 1);
        assert_eq!(s.cache_entries(), 1);
    }

    #[test]
    fn the_budget_evicts_the_least_recently_active_device_across_partitions() {
        let hour = 3_600_000;
        let budget = DeviceBudget::new(3);
        let mut a = DeviceStates::with_budget(Limits::default(), hour, budget.clone());
        let mut b = DeviceStates::with_budget(Limits::default(), hour, budget.clone());
        a.track_expired();
        let k = cache_key(None, None);
        a.decide("old", 0, k, 0);
        a.decide("mid", 0, k, 5_000);
        b.decide("other", 0, k, 6_000);
        assert_eq!(budget.held(), 3);
        // The instance is full: a new device in `a` evicts `a`'s least recently seen one.
        a.decide("new", 0, k, 10_000);
        assert_eq!(budget.held(), 3);
        assert!(a.get("old").is_none() && a.get("mid").is_some() && a.get("new").is_some());
        assert_eq!(a.evictions(), 1);
        assert_eq!(a.take_expired(), vec![CompactString::from("old")]);
        // A known device never evicts; a revoked partition gives its devices back.
        a.decide("mid", 1, k, 11_000);
        assert_eq!(a.evictions(), 1);
        drop(b);
        assert_eq!(budget.held(), 2);
    }

    #[test]
    fn devices_within_grace_are_kept() {
        let hour = 3_600_000;
        let key = |i: i64| cache_key(Some(&i.to_string()), None);
        let mut s = DeviceStates::new(Limits::default(), hour);
        s.decide("late", 0, cache_key(None, None), 0);
        for i in 0..100 {
            s.decide("busy", 2 * hour - 200 + i, key(i), 2 * hour);
        }
        assert!(s.get("late").is_some());
        // A device far behind the others in event time, but seen recently, is kept.
        for i in 0..100 {
            s.decide("busy", 10 * hour + i, key(i), 2 * hour + 1000);
        }
        s.decide("late", 1000, cache_key(None, None), 2 * hour + 2000);
        for i in 0..100 {
            s.decide("busy", 20 * hour + i, key(i), 2 * hour + 3000);
        }
        assert!(s.get("late").is_some());
    }

    /// Counts how often the state enters its placement.
    #[derive(Debug, Default)]
    struct Entered(std::sync::atomic::AtomicUsize);

    impl Placement for Arc<Entered> {
        fn place(&self, f: &mut dyn FnMut()) {
            self.0.fetch_add(1, Ordering::Relaxed);
            f()
        }
    }

    #[test]
    fn changelog_records_restore_in_one_placement_the_latest_winning() {
        let limits = Limits::default();
        let mut written = DeviceStates::new(limits.clone(), 3_600_000);
        written.decide("a", 1_000, cache_key(Some("t"), None), 0);
        written.decide("b", 1_000, cache_key(None, None), 0);
        let encoded = |id: &str| {
            let mut out = Vec::new();
            snapshot::encode(written.get(id).unwrap(), &mut out);
            out
        };
        let (a, b) = (encoded("a"), encoded("b"));
        let entered = Arc::new(Entered::default());
        let mut s = DeviceStates::new(limits, 3_600_000);
        s.set_placement(Box::new(entered.clone()));
        let mut unreadable = Vec::new();
        s.restore_encoded(
            [
                ("a", Some(&b[..])),
                ("gone", Some(&a[..])),
                ("a", Some(&a[..])),
                ("bad", Some(&[9u8][..])),
                ("gone", None),
                ("b", Some(&b[..])),
            ],
            |id, e| unreadable.push((id.to_string(), e)),
        );
        assert_eq!(
            entered.0.load(Ordering::Relaxed),
            1,
            "one placement for the batch"
        );
        assert_eq!(s.device_count(), 2);
        assert_eq!(
            s.get("a"),
            written.get("a"),
            "the latest record of a device wins"
        );
        assert_eq!(s.get("b").map(|d| d.cache.len()), Some(1));
        assert!(s.get("gone").is_none(), "a tombstone removes the device");
        assert_eq!(s.cache_entries(), 2);
        assert_eq!(
            unreadable,
            vec![("bad".to_string(), SnapshotError::Version(9))]
        );
    }
}
