//! One device's rate-limit window and dedupe cache, with the seed's semantics:
//!
//! 1. Rate limit first: at most `max_per_window` successes in any sliding window; an entry exactly
//!    one window old no longer counts. A rate-limited event is not cached and not counted.
//! 2. Then the dedupe cache, keyed by (event_type, severity) within the device: a hit younger than
//!    the TTL is `cached` and does not count against the limit; an entry exactly TTL old is expired.
//! 3. Otherwise `success`: the success is counted and the cache entry (re)set.
//!
//! Time is an input. Each device has a monotonic clock (the latest event time seen), so a
//! back-dated event is judged at the device's clock and cannot reopen a closed window.
//!
//! Compactness: times are `u32` milliseconds relative to a per-device base (rebased long before
//! they could overflow), successes are kept ascending in a small inline vector (the device clock is
//! monotonic, so appends are in order and expiry pops from the front), and cache keys are 64-bit
//! hashes. A typical device costs ~64 bytes plus its id.

use smallvec::SmallVec;

/// Limits of the rate limiter and cache, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_per_window: u32,
    pub window_ms: u32,
    pub cache_ttl_ms: u32,
}

impl Default for Limits {
    /// The seed: 10 URLs per device per hour, 5-minute dedupe.
    fn default() -> Self {
        Limits {
            max_per_window: 10,
            window_ms: 3_600_000,
            cache_ttl_ms: 300_000,
        }
    }
}

/// What the limiter and cache decide for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Success,
    Cached,
    RateLimited,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Success => "success",
            Decision::Cached => "cached",
            Decision::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheEntry {
    /// Hash of (event_type, severity), see [`cache_key`].
    pub key: u64,
    /// When the cached URLs were generated, ms since the device's base.
    pub at: u32,
}

/// A device's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// Epoch ms that the relative times below count from.
    pub base_ms: i64,
    /// The device clock: the latest event time seen, ms since base.
    pub clock: u32,
    /// Wall-clock seconds (since its partition's state began) when the device was last seen: the
    /// expiry sweep drops a device only once it is idle in event time *and* in wall time.
    pub seen: u32,
    /// Times of counted successes, ascending, ms since base.
    pub hits: SmallVec<[u32; 3]>,
    pub cache: SmallVec<[CacheEntry; 1]>,
}

/// Relative times are rebased once they pass this (~24.8 days), far below `u32::MAX`.
const REBASE_AFTER_MS: u32 = 1 << 31;

/// The dedupe key within a device, with the seed's defaults (`unknown`, `normal`) for absent fields.
pub fn cache_key(event_type: Option<&str>, severity: Option<&str>) -> u64 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(event_type.unwrap_or("unknown").as_bytes());
    // 0xFF never occurs in UTF-8, so ("a", "bc") and ("ab", "c") cannot collide by concatenation.
    h.update(&[0xFF]);
    h.update(severity.unwrap_or("normal").as_bytes());
    h.digest()
}

impl DeviceState {
    pub fn new(now_ms: i64) -> Self {
        DeviceState {
            base_ms: now_ms,
            clock: 0,
            seen: 0,
            hits: SmallVec::new(),
            cache: SmallVec::new(),
        }
    }

    /// The device clock as epoch ms.
    pub fn clock_ms(&self) -> i64 {
        self.base_ms + self.clock as i64
    }

    /// Moves the device clock to `event_ms` if that is later, and returns the clock (epoch ms):
    /// the time the event is judged at.
    pub fn advance(&mut self, event_ms: i64, limits: &Limits) -> i64 {
        if event_ms > self.clock_ms() {
            let mut rel = event_ms - self.base_ms;
            if rel >= REBASE_AFTER_MS as i64 {
                self.rebase(event_ms, limits);
                rel = event_ms - self.base_ms;
            }
            self.clock = rel as u32;
        }
        self.clock_ms()
    }

    /// Moves the base forward so that relative times stay small: entries that are expired at
    /// `now_ms` are dropped, the rest shifted.
    fn rebase(&mut self, now_ms: i64, limits: &Limits) {
        let keep_from = now_ms - limits.window_ms.max(limits.cache_ttl_ms) as i64;
        let new_base = keep_from.max(self.base_ms);
        let shift = new_base - self.base_ms;
        let shifted = |t: u32| (t as i64 - shift).max(0) as u32;
        self.hits.retain(|t| self.base_ms + *t as i64 > keep_from);
        self.hits.iter_mut().for_each(|t| *t = shifted(*t));
        self.cache
            .retain(|e| self.base_ms + e.at as i64 > keep_from);
        self.cache.iter_mut().for_each(|e| e.at = shifted(e.at));
        self.clock = shifted(self.clock);
        self.base_ms = new_base;
    }

    /// Decides the outcome of an event judged at the device clock. Returns the decision and the
    /// change in the number of cache entries (for the state-size metric).
    pub fn decide(&mut self, key: u64, limits: &Limits) -> (Decision, isize) {
        let now = self.clock;
        // Successes at or before `now - window` no longer count.
        let window_start = now as i64 - limits.window_ms as i64;
        let expired = self
            .hits
            .iter()
            .take_while(|t| (**t as i64) <= window_start)
            .count();
        if expired > 0 {
            self.hits.drain(..expired);
        }
        let before = self.cache.len() as isize;
        self.cache.retain(|e| now - e.at < limits.cache_ttl_ms);
        if self.hits.len() >= limits.max_per_window as usize {
            return (Decision::RateLimited, self.cache.len() as isize - before);
        }
        if self.cache.iter().any(|e| e.key == key) {
            return (Decision::Cached, self.cache.len() as isize - before);
        }
        self.cache.push(CacheEntry { key, at: now });
        self.hits.push(now);
        (Decision::Success, self.cache.len() as isize - before)
    }

    /// Whether nothing of this state can matter any more for an event at or after `now_ms`.
    pub fn is_idle_at(&self, now_ms: i64, limits: &Limits) -> bool {
        now_ms - self.clock_ms() >= limits.window_ms.max(limits.cache_ttl_ms) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn run(state: &mut DeviceState, t: i64, key: u64) -> Decision {
        let limits = Limits::default();
        state.advance(t, &limits);
        state.decide(key, &limits).0
    }

    #[test]
    fn cache_hits_do_not_count_and_expire_at_exactly_ttl() {
        let mut s = DeviceState::new(0);
        let k = cache_key(Some("temp"), None);
        assert_eq!(run(&mut s, 0, k), Decision::Success);
        assert_eq!(run(&mut s, 5 * MIN - 1, k), Decision::Cached);
        assert_eq!(run(&mut s, 5 * MIN, k), Decision::Success);
        assert_eq!(s.hits.len(), 2);
    }

    #[test]
    fn the_limit_slides_and_an_hour_old_entry_no_longer_counts() {
        let mut s = DeviceState::new(0);
        for i in 0..10 {
            assert_eq!(
                run(&mut s, i, cache_key(Some(&i.to_string()), None)),
                Decision::Success
            );
        }
        // Rate limit before cache: even a would-be cache hit is rate_limited.
        assert_eq!(
            run(&mut s, 10, cache_key(Some("0"), None)),
            Decision::RateLimited
        );
        assert_eq!(
            run(&mut s, 60 * MIN - 1, cache_key(Some("x"), None)),
            Decision::RateLimited
        );
        assert_eq!(
            run(&mut s, 60 * MIN, cache_key(Some("x"), None)),
            Decision::Success
        );
    }

    #[test]
    fn a_back_dated_event_is_judged_at_the_device_clock() {
        let mut s = DeviceState::new(0);
        let k = cache_key(None, None);
        assert_eq!(run(&mut s, 10 * MIN, k), Decision::Success);
        // Five minutes before the first event: still within the TTL of the device clock.
        assert_eq!(run(&mut s, 5 * MIN, k), Decision::Cached);
        assert_eq!(s.clock_ms(), 10 * MIN);
    }

    #[test]
    fn rebasing_keeps_decisions() {
        let limits = Limits::default();
        let mut s = DeviceState::new(0);
        let k = cache_key(None, None);
        let day = 24 * 60 * MIN;
        for d in 0..200 {
            let t = d * day / 3;
            for j in 0..12 {
                s.advance(t + j * 1000, &limits);
                let want = if j == 0 {
                    Decision::Success
                } else {
                    Decision::Cached
                };
                assert_eq!(s.decide(k, &limits).0, want, "d={d} j={j}");
            }
        }
        assert!(s.base_ms > 0);
    }

    #[test]
    fn cache_key_uses_seed_defaults() {
        assert_eq!(
            cache_key(None, None),
            cache_key(Some("unknown"), Some("normal"))
        );
        assert_ne!(
            cache_key(Some("a"), Some("bc")),
            cache_key(Some("ab"), Some("c"))
        );
    }
}
