//! One device's state as JSON: what `GET /api/devices/{device_id}` answers and
//! `aepiot-stream inspect device` prints, built from the engine's [`DeviceState`] the same way
//! for both (a live worker's state, or the latest state record of the changelog).
//!
//! Times are event time (the device clock: the latest event time judged for the device), as the
//! rate limit and the dedupe cache count them.

use serde_json::{json, Value};

use crate::core::limiter::{DeviceState, Limits};
use crate::core::time::format_rfc3339_ms;

/// Where a device's state was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSource {
    /// The partition worker of a running instance.
    Instance,
    /// The state changelog topic.
    Changelog,
}

impl StateSource {
    fn as_str(self) -> &'static str {
        match self {
            StateSource::Instance => "instance",
            StateSource::Changelog => "changelog",
        }
    }
}

/// The device's partition, URL sets counted in the window ending at its clock and when the next
/// is allowed, and its live dedupe entries with their expiry.
pub fn device_json(
    device_id: &str,
    topic: &str,
    partition: i32,
    state: &DeviceState,
    limits: &Limits,
    source: StateSource,
) -> Value {
    let clock = state.clock_ms();
    let window_ms = limits.window_ms as i64;
    let ttl_ms = limits.cache_ttl_ms as i64;
    // As the limiter counts: a success exactly one window old no longer counts.
    let successes: Vec<i64> = state
        .hits
        .iter()
        .map(|t| state.base_ms + *t as i64)
        .filter(|t| *t > clock - window_ms)
        .collect();
    let used = successes.len();
    let max = limits.max_per_window as usize;
    // With `used` ≥ `max`, an event is allowed once the (used − max + 1) oldest successes have
    // left the window.
    let next_allowed = (used >= max && max > 0).then(|| successes[used - max] + window_ms);
    let entries: Vec<Value> = state
        .cache
        .iter()
        .map(|e| (e.key, state.base_ms + e.at as i64))
        .filter(|(_, at)| clock - at < ttl_ms)
        .map(|(key, at)| {
            json!({
                "key": format!("{key:016x}"),
                "cached_at": format_rfc3339_ms(at),
                "expires_at": format_rfc3339_ms(at + ttl_ms),
            })
        })
        .collect();
    json!({
        "device_id": device_id,
        "topic": topic,
        "partition": partition,
        "source": source.as_str(),
        "device_clock": format_rfc3339_ms(clock),
        "rate_limit": {
            "used": used,
            "limit": max,
            "window_secs": window_ms / 1000,
            "rate_limited": next_allowed.is_some(),
            "next_allowed_at": next_allowed.map(format_rfc3339_ms),
            "successes": successes.into_iter().map(format_rfc3339_ms).collect::<Vec<_>>(),
        },
        "dedupe": {
            "ttl_secs": ttl_ms / 1000,
            "entries": entries,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::limiter::{cache_key, Decision};

    #[test]
    fn ten_sets_then_rate_limited_reports_the_oldest_plus_a_window() {
        let limits = Limits::default();
        let t0 = 1_795_680_000_000;
        let mut s = DeviceState::new(t0);
        for i in 0..10 {
            s.advance(t0 + i * 1000, &limits);
            let key = cache_key(Some(&i.to_string()), None);
            assert_eq!(s.decide(key, &limits).0, Decision::Success);
        }
        s.advance(t0 + 20_000, &limits);
        assert_eq!(
            s.decide(cache_key(Some("x"), None), &limits).0,
            Decision::RateLimited
        );
        let v = device_json("d", "t", 2, &s, &limits, StateSource::Instance);
        assert_eq!(v["partition"], 2);
        assert_eq!(v["rate_limit"]["used"], 10);
        assert_eq!(v["rate_limit"]["rate_limited"], true);
        assert_eq!(
            v["rate_limit"]["next_allowed_at"],
            format_rfc3339_ms(t0 + 3_600_000)
        );
        assert_eq!(v["device_clock"], format_rfc3339_ms(t0 + 20_000));
        let entries = v["dedupe"]["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 10);
        assert_eq!(entries[0]["expires_at"], format_rfc3339_ms(t0 + 300_000));
    }

    #[test]
    fn under_the_limit_nothing_waits_and_expired_entries_are_left_out() {
        let limits = Limits::default();
        let t0 = 1_795_680_000_000;
        let mut s = DeviceState::new(t0);
        s.advance(t0, &limits);
        s.decide(cache_key(None, None), &limits);
        // The clock moves past the TTL (a restored state is not pruned until its next event).
        s.advance(t0 + 600_000, &limits);
        let v = device_json("d", "t", 0, &s, &limits, StateSource::Changelog);
        assert_eq!(v["source"], "changelog");
        assert_eq!(v["rate_limit"]["used"], 1);
        assert_eq!(v["rate_limit"]["next_allowed_at"], Value::Null);
        assert_eq!(v["dedupe"]["entries"].as_array().unwrap().len(), 0);
    }
}
