//! Timestamps as epoch milliseconds: parsing event times and formatting RFC 3339 output.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// 9999-12-31T23:59:59.999Z: the last instant RFC 3339 can write with a four-digit year.
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// Parses an RFC 3339 date-time (any offset) to epoch milliseconds; sub-millisecond digits truncate.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let ms = i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?;
    (0..=MAX_EPOCH_MS).contains(&ms).then_some(ms)
}

/// Formats epoch milliseconds as RFC 3339 UTC with exactly three fraction digits,
/// e.g. `2026-11-26T08:05:01.000Z`. Out-of-range input clamps to the representable range.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let mut out = String::with_capacity(RFC3339_MS_LEN);
    write_rfc3339_ms(&mut out, ms);
    out
}

/// Length of every [`format_rfc3339_ms`] text.
pub const RFC3339_MS_LEN: usize = 24;

/// Appends [`format_rfc3339_ms`]`(ms)` to `out`, without allocating once `out` has room.
///
/// Called for every record (its `event_time` and `processed_at`), so it does the calendar
/// arithmetic itself (days to civil date, proleptic Gregorian, as `time` does) instead of going
/// through `time` and `format!`.
pub fn write_rfc3339_ms(out: &mut String, ms: i64) {
    let ms = ms.clamp(0, MAX_EPOCH_MS);
    let (days, ms_of_day) = (ms / 86_400_000, (ms % 86_400_000) as u32);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (s, frac) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, mo);
    put(8, 2, d);
    put(11, 2, h);
    put(14, 2, mi);
    put(17, 2, s);
    put(20, 3, frac);
    out.push_str(std::str::from_utf8(&b).expect("ASCII digits"));
}

/// (year, month, day) of a non-negative count of days since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as u32, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = parse_rfc3339_ms("2026-11-26T08:05:01Z").unwrap();
        assert_eq!(format_rfc3339_ms(ms), "2026-11-26T08:05:01.000Z");
        assert_eq!(
            parse_rfc3339_ms("2026-11-26T09:05:01.123456+01:00"),
            Some(ms + 123)
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-26"), None);
        assert_eq!(format_rfc3339_ms(MAX_EPOCH_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
    }

    /// The former implementation (through `time` and `format!`), kept as the reference.
    fn reference(ms: i64) -> String {
        let ms = ms.clamp(0, MAX_EPOCH_MS);
        let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
        let (y, mo, d) = (t.year(), t.month() as u8, t.day());
        let (h, mi, s) = (t.hour(), t.minute(), t.second());
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
            ms.rem_euclid(1000)
        )
    }

    #[test]
    fn fast_formatting_matches_the_reference() {
        const DAY: i64 = 86_400_000;
        // Every day from 1970 to 9999 (all leap rules), at its first and last millisecond.
        let mut day = 0;
        while day * DAY <= MAX_EPOCH_MS {
            for ms in [day * DAY, day * DAY + DAY - 1] {
                assert_eq!(format_rfc3339_ms(ms), reference(ms), "{ms}");
            }
            day += 1;
        }
        // Pseudo-random instants over the whole range, and appending after existing text.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut out = String::from("x");
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = (x % (MAX_EPOCH_MS as u64 + 1)) as i64;
            out.truncate(1);
            write_rfc3339_ms(&mut out, ms);
            assert_eq!(&out[1..], reference(ms), "{ms}");
        }
    }
}
