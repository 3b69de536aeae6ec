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
    let ms = ms.clamp(0, MAX_EPOCH_MS);
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .expect("clamped to a representable range");
    let (y, mo, d) = (t.year(), t.month() as u8, t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms.rem_euclid(1000)
    )
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
    }
}
