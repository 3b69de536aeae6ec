//! The clocks, in one place: the monotonic one for durations and deadlines, the wall clock (epoch
//! ms) for event times, both read once per batch rather than per record.

use std::time::Instant;

/// The clocks, read once for a batch of records or acks.
pub struct Clock {
    pub instant: Instant,
    pub wall_ms: i64,
}

impl Clock {
    pub fn now() -> Self {
        Clock {
            instant: Instant::now(),
            wall_ms: now_ms(),
        }
    }
}

/// Wall-clock time, epoch milliseconds (0 before 1970: a clock that broken is not ours to fix).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
