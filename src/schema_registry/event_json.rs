//! The event a decoder found, written as the JSON object the JSON path reads: only the known
//! fields of an event (`crate::core::event::FIELDS`), so a decoded event is judged by exactly the
//! rules of a JSON one (size limits, field typing, safe links, future skew) and gives the same
//! URL record byte for byte.
//!
//! How values are written, so that the same logical event gives the same text in every encoding:
//! strings as JSON strings; integers as their digits; floats as the shortest text that reads back
//! as the same float (`20.5`, and a 32-bit `0.1` as `0.1`), which the JSON path prints as Python
//! would; nested records, maps and lists as JSON objects and arrays (map keys sorted, so the text
//! does not depend on a hash order); an instant (Avro `timestamp-millis`/`-micros`/`-nanos`,
//! Protobuf `google.protobuf.Timestamp`) as RFC 3339 UTC with three fraction digits, or six or nine
//! when it has sub-millisecond precision, as `event_time` is written.

use crate::core::time::{format_rfc3339_ms, MAX_EPOCH_MS};

/// Writes one JSON object into a reusable buffer.
pub struct ObjectWriter<'b> {
    out: &'b mut Vec<u8>,
    empty: bool,
}

impl<'b> ObjectWriter<'b> {
    /// Starts an object in `out`, which is cleared first.
    pub fn new(out: &'b mut Vec<u8>) -> Self {
        out.clear();
        out.push(b'{');
        ObjectWriter { out, empty: true }
    }

    /// Starts an object after what `out` holds (a value nested in another).
    pub fn nested(out: &'b mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, empty: true }
    }

    /// Writes `"name":` and hands the buffer over for the value.
    pub fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, name);
        self.out.push(b':');
        self.out
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// The field of an event `name` is, if it is one the JSON path reads (others are not written).
pub fn event_field(name: &str) -> Option<&'static str> {
    crate::core::event::FIELDS
        .iter()
        .copied()
        .find(|f| *f == name)
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Text of a `bytes` value: only UTF-8 text has a place in a URL.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), String> {
    let text =
        std::str::from_utf8(b).map_err(|_| "is bytes that are not UTF-8 text".to_string())?;
    write_str(out, text);
    Ok(())
}

pub fn write_int(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    write!(out, "{v}").expect("writing to a Vec cannot fail");
}

pub fn write_f64(out: &mut Vec<u8>, v: f64) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!("is {v}, which is not a number a URL can carry"));
    }
    serde_json::to_writer(&mut *out, &v).expect("writing to a Vec cannot fail");
    Ok(())
}

/// A 32-bit float by its own shortest text (`0.1`, not the `0.10000000149011612` of its widening).
pub fn write_f32(out: &mut Vec<u8>, v: f32) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!("is {v}, which is not a number a URL can carry"));
    }
    serde_json::to_writer(&mut *out, &v).expect("writing to a Vec cannot fail");
    Ok(())
}

/// An instant of `secs` seconds and `nanos` nanoseconds after the epoch, as RFC 3339 UTC (see
/// the module's header). One outside the years 1970-9999 is written as its epoch milliseconds,
/// which the JSON path then refuses as it refuses the same number in a JSON event.
pub fn write_instant(out: &mut Vec<u8>, secs: i64, nanos: u32) {
    let ms = secs
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(nanos / 1_000_000)));
    let Some(ms) = ms.filter(|ms| (0..=MAX_EPOCH_MS).contains(ms)) else {
        write_int(out, secs.saturating_mul(1000));
        return;
    };
    let text = format_rfc3339_ms(ms); // `…SS.mmmZ`
    out.push(b'"');
    out.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
    let below_ms = nanos % 1_000_000;
    if below_ms != 0 {
        let digits = if below_ms % 1000 == 0 {
            format!("{:03}", below_ms / 1000)
        } else {
            format!("{below_ms:06}")
        };
        out.extend_from_slice(digits.as_bytes());
    }
    out.extend_from_slice(b"Z\"");
}

/// [`write_instant`] of a count of `unit`s per second (1,000 for millis, 1,000,000 for micros…).
pub fn write_epoch(out: &mut Vec<u8>, count: i64, per_second: i64) {
    let secs = count.div_euclid(per_second);
    let rest = count.rem_euclid(per_second);
    let nanos = (rest * (1_000_000_000 / per_second)) as u32;
    write_instant(out, secs, nanos);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_object_of_the_known_fields() {
        let mut buf = b"stale".to_vec();
        let mut o = ObjectWriter::new(&mut buf);
        write_str(o.key("device_id"), "d\"1");
        write_f64(o.key("value"), 20.5).unwrap();
        o.finish();
        assert_eq!(buf, br#"{"device_id":"d\"1","value":20.5}"#);
        assert_eq!(event_field("dashboard_url"), Some("dashboard_url"));
        assert_eq!(event_field("firmware"), None);
    }

    #[test]
    fn numbers_by_their_shortest_text_and_never_nan() {
        assert_eq!(text(|o| write_f32(o, 0.1).unwrap()), "0.1");
        assert_eq!(text(|o| write_f64(o, 1e16).unwrap()), "1e+16");
        assert_eq!(text(|o| write_int(o, -5i64)), "-5");
        assert!(write_f64(&mut Vec::new(), f64::NAN).is_err());
        assert!(write_f32(&mut Vec::new(), f32::INFINITY).is_err());
        assert!(write_bytes(&mut Vec::new(), &[0xff]).is_err());
    }

    #[test]
    fn instants_as_event_time_is_written() {
        let ms = 1_795_680_301_000; // 2026-11-26T08:05:01Z
        assert_eq!(
            text(|o| write_epoch(o, ms, 1000)),
            r#""2026-11-26T08:05:01.000Z""#
        );
        assert_eq!(
            text(|o| write_epoch(o, ms * 1000 + 123_000, 1_000_000)),
            r#""2026-11-26T08:05:01.123Z""#
        );
        assert_eq!(
            text(|o| write_epoch(o, ms * 1000 + 123_456, 1_000_000)),
            r#""2026-11-26T08:05:01.123456Z""#
        );
        assert_eq!(
            text(|o| write_instant(o, ms / 1000, 7)),
            r#""2026-11-26T08:05:01.000000007Z""#
        );
        // Before 1970 or after 9999: the number, which the JSON path refuses.
        assert_eq!(text(|o| write_epoch(o, -1, 1000)), "-1000");
        // The text reads back as the same instant.
        let t = text(|o| write_epoch(o, ms + 5, 1000));
        assert_eq!(
            crate::core::time::parse_rfc3339_ms(t.trim_matches('"')),
            Some(ms + 5)
        );
    }
}
