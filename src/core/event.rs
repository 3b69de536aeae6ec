//! Decoding and validating one IoT event (see `schemas/iot-event.schema.json`).
//!
//! Parsing borrows from the input buffer: field values stay raw JSON until they are rendered, so an
//! event costs one pass of the JSON parser and no allocation in the common case.
//!
//! Field typing rules (documented in README, "Event format"):
//! - `device_id` must be a non-empty string of at most [`MAX_DEVICE_ID_BYTES`] UTF-8 bytes.
//! - `null` is treated as absent for every optional field.
//! - Text fields (`event_type`, `severity`, `location`, `description`, `region`, `value`) accept
//!   any JSON value: strings are used as they are, numbers print as Python would, everything else
//!   as compact JSON text.
//! - `dashboard_url` becomes a link on a public page, so it must be an absolute `http(s)://` URL
//!   with an allowed host ([`check_link`]); it is then used byte for byte.
//! - `timestamp` must be an RFC 3339 string or an integer of epoch milliseconds; anything else is
//!   rejected, because it would silently change which rate-limit window the event falls in.
//! - Unknown fields are ignored; a field given twice is rejected (which one would win is ambiguous).

use std::borrow::Cow;

use super::error::{ErrorKind, RecordError};
use super::flat_json::parse_flat;
use super::links::{check_link, LinkHosts};
use super::raw_fields::{json_kind, parse_raw, RawFields};
use super::render::{render, RenderError};
use super::time::parse_rfc3339_ms;

/// The fields an event may have (others are ignored), as `schemas/iot-event.schema.json` names them.
pub const FIELDS: [&str; 9] = [
    "device_id",
    "event_type",
    "severity",
    "location",
    "description",
    "dashboard_url",
    "region",
    "value",
    "timestamp",
];

/// Longest accepted `device_id`, in bytes: it becomes a Kafka key and a state key.
pub const MAX_DEVICE_ID_BYTES: usize = 256;

pub use super::render::MAX_RENDER_DEPTH;

/// An event whose fields borrow from the record's payload.
#[derive(Debug, Default)]
pub struct Event<'a> {
    pub device_id: Cow<'a, str>,
    pub event_type: Option<Cow<'a, str>>,
    pub severity: Option<Cow<'a, str>>,
    pub location: Option<Cow<'a, str>>,
    pub description: Option<Cow<'a, str>>,
    pub dashboard_url: Option<Cow<'a, str>>,
    pub region: Option<Cow<'a, str>>,
    pub value: Option<Cow<'a, str>>,
    /// `timestamp` as the seed prints it in the description (`Time: …`).
    pub timestamp_text: Option<Cow<'a, str>>,
    /// `timestamp` as epoch milliseconds.
    pub timestamp_ms: Option<i64>,
}

/// Parses and validates one payload, allowing a `dashboard_url` of any host. `max_bytes` is the
/// configured record size limit.
pub fn parse_event(payload: Option<&[u8]>, max_bytes: usize) -> Result<Event<'_>, RecordError> {
    parse_event_with_hosts(payload, max_bytes, &LinkHosts::default())
}

/// [`parse_event`], with `dashboard_url` limited to `link_hosts` (`urls.allowed_link_hosts`).
pub fn parse_event_with_hosts<'a>(
    payload: Option<&'a [u8]>,
    max_bytes: usize,
    link_hosts: &LinkHosts,
) -> Result<Event<'a>, RecordError> {
    let bytes = payload.ok_or_else(|| {
        RecordError::new(
            ErrorKind::NullPayload,
            "record has no payload (a tombstone); expected a JSON object",
        )
    })?;
    if bytes.len() > max_bytes {
        return Err(RecordError::new(
            ErrorKind::TooLarge,
            format!(
                "record is {} bytes, over the limit of {max_bytes} bytes",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        RecordError::new(
            ErrorKind::NotUtf8,
            format!("payload is not valid UTF-8: {e}"),
        )
    })?;
    // The common flat event takes the fast pass; anything else (and every error) the full parser.
    let raw = match parse_flat(text) {
        Some(raw) => raw,
        None => parse_raw(text)?,
    };
    typed(raw, link_hosts)
}

/// `None` for absent or `null`.
fn present(raw: Option<&str>) -> Option<&str> {
    raw.filter(|r| *r != "null")
}

fn text_field<'a>(
    raw: Option<&'a str>,
    name: &'static str,
) -> Result<Option<Cow<'a, str>>, RecordError> {
    match present(raw) {
        None => Ok(None),
        Some(r) => render(r).map(Some).map_err(|e| match e {
            RenderError::NumberOutOfRange => RecordError::field(
                ErrorKind::InvalidField,
                name,
                format!("field `{name}` is a number out of the range of a 64-bit float"),
            ),
            RenderError::TooDeep => RecordError::field(
                ErrorKind::TooDeep,
                name,
                format!("field `{name}` is nested deeper than {MAX_RENDER_DEPTH} levels"),
            ),
            RenderError::LoneSurrogate => RecordError::field(
                ErrorKind::InvalidField,
                name,
                format!(
                    "field `{name}` contains an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF), which is not text"
                ),
            ),
        }),
    }
}

fn typed<'a>(raw: RawFields<'a>, link_hosts: &LinkHosts) -> Result<Event<'a>, RecordError> {
    let device_id = match present(raw.device_id) {
        None => {
            return Err(RecordError::field(
                ErrorKind::MissingField,
                "device_id",
                "field `device_id` is required",
            ))
        }
        Some(r) if !r.starts_with('"') => {
            return Err(RecordError::field(
                ErrorKind::InvalidField,
                "device_id",
                format!("field `device_id` must be a string, got {}", json_kind(r)),
            ))
        }
        Some(r) => text_field(Some(r), "device_id")?.unwrap_or_default(),
    };
    if device_id.is_empty() {
        return Err(RecordError::field(
            ErrorKind::InvalidField,
            "device_id",
            "field `device_id` is empty",
        ));
    }
    if device_id.len() > MAX_DEVICE_ID_BYTES {
        return Err(RecordError::field(
            ErrorKind::InvalidField,
            "device_id",
            format!(
                "field `device_id` is {} bytes, over the limit of {MAX_DEVICE_ID_BYTES}",
                device_id.len()
            ),
        ));
    }
    let (timestamp_text, timestamp_ms) = timestamp(raw.timestamp)?;
    Ok(Event {
        device_id,
        event_type: text_field(raw.event_type, "event_type")?,
        severity: text_field(raw.severity, "severity")?,
        location: text_field(raw.location, "location")?,
        description: text_field(raw.description, "description")?,
        dashboard_url: link_field(raw.dashboard_url, link_hosts)?,
        region: text_field(raw.region, "region")?,
        value: text_field(raw.value, "value")?,
        timestamp_text,
        timestamp_ms,
    })
}

/// `dashboard_url`: a text field that must also pass [`check_link`].
fn link_field<'a>(
    raw: Option<&'a str>,
    hosts: &LinkHosts,
) -> Result<Option<Cow<'a, str>>, RecordError> {
    let link = text_field(raw, "dashboard_url")?;
    if let Some(l) = &link {
        check_link(l, hosts).map_err(|why| {
            RecordError::field(
                ErrorKind::InvalidField,
                "dashboard_url",
                format!("field `dashboard_url` {why}: {:?}", truncate(l)),
            )
        })?;
    }
    Ok(link)
}

type Timestamp<'a> = (Option<Cow<'a, str>>, Option<i64>);

fn timestamp(raw: Option<&str>) -> Result<Timestamp<'_>, RecordError> {
    let Some(text) = present(raw) else {
        return Ok((None, None));
    };
    let invalid = |why: String| RecordError::field(ErrorKind::InvalidField, "timestamp", why);
    if text.starts_with('"') {
        let s = text_field(Some(text), "timestamp")?.unwrap_or_default();
        let ms = parse_rfc3339_ms(&s).ok_or_else(|| {
            invalid(format!(
                "field `timestamp` is not an RFC 3339 date-time: {:?}",
                truncate(&s)
            ))
        })?;
        return Ok((Some(s), Some(ms)));
    }
    if !text.contains(['.', 'e', 'E']) && text.as_bytes()[0] != b'-' {
        if let Ok(ms) = text.parse::<i64>() {
            if ms <= super::time::MAX_EPOCH_MS {
                return Ok((Some(Cow::Borrowed(text)), Some(ms)));
            }
        }
    }
    Err(invalid(format!(
        "field `timestamp` must be an RFC 3339 string or non-negative integer epoch milliseconds up to year 9999, got {}",
        truncate(text)
    )))
}

/// Keeps error messages bounded whatever the input.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Event<'_>, RecordError> {
        parse_event(Some(s.as_bytes()), 1 << 20)
    }

    fn kind(s: &str) -> (ErrorKind, Option<&'static str>) {
        let e = parse(s).unwrap_err();
        (e.kind, e.field)
    }

    #[test]
    fn parses_all_fields_and_ignores_unknown_ones() {
        let e = parse(
            r#"{"device_id":"d1","event_type":"temp","severity":"high","location":"L","description":"D",
               "dashboard_url":"https://x","region":"europe","value":20.50,"timestamp":"2026-11-26T08:00:00Z",
               "extra":{"deep":[1,2,{"x":null}]}}"#,
        )
        .unwrap();
        assert_eq!(e.device_id, "d1");
        assert_eq!(e.value.as_deref(), Some("20.5"));
        assert_eq!(e.timestamp_text.as_deref(), Some("2026-11-26T08:00:00Z"));
        assert_eq!(e.timestamp_ms, Some(1_795_680_000_000));
        assert_eq!(e.region.as_deref(), Some("europe"));
    }

    #[test]
    fn null_is_absent_and_non_strings_render_as_json() {
        let e = parse(
            r#"{"device_id":"d","event_type":5,"severity":null,"value":true,"location":[1, "a"]}"#,
        )
        .unwrap();
        assert_eq!(e.event_type.as_deref(), Some("5"));
        assert_eq!(e.severity, None);
        assert_eq!(e.value.as_deref(), Some("true"));
        assert_eq!(e.location.as_deref(), Some(r#"[1,"a"]"#));
    }

    #[test]
    fn keys_with_escapes_are_decoded_before_matching() {
        let e = parse(r#"{"device\u005fid":"a","\u0076alue":1.50,"other\n":{"x":[1]}}"#).unwrap();
        assert_eq!(e.device_id, "a");
        assert_eq!(e.value.as_deref(), Some("1.5"));
        assert_eq!(
            kind(r#"{"device_id":"a","device\u005fid":"b"}"#),
            (ErrorKind::DuplicateField, Some("device_id"))
        );
        assert_eq!(
            kind(r#"{"device\ud800id":"a"}"#),
            (ErrorKind::InvalidJson, None)
        );
    }

    #[test]
    fn epoch_millis_timestamp() {
        let e = parse(r#"{"device_id":"d","timestamp":1795680000000}"#).unwrap();
        assert_eq!(e.timestamp_ms, Some(1_795_680_000_000));
        assert_eq!(e.timestamp_text.as_deref(), Some("1795680000000"));
    }

    #[test]
    fn rejects_bad_records_with_kind_and_field() {
        assert_eq!(kind("not json"), (ErrorKind::InvalidJson, None));
        assert_eq!(kind("[1,2]"), (ErrorKind::NotObject, None));
        assert_eq!(kind("42"), (ErrorKind::NotObject, None));
        assert_eq!(kind("null"), (ErrorKind::NotObject, None));
        assert_eq!(
            kind(r#"{"device_id":"a"} trailing"#),
            (ErrorKind::InvalidJson, None)
        );
        assert_eq!(kind("{}"), (ErrorKind::MissingField, Some("device_id")));
        assert_eq!(
            kind(r#"{"device_id":null}"#),
            (ErrorKind::MissingField, Some("device_id"))
        );
        assert_eq!(
            kind(r#"{"device_id":""}"#),
            (ErrorKind::InvalidField, Some("device_id"))
        );
        assert_eq!(
            kind(r#"{"device_id":7}"#),
            (ErrorKind::InvalidField, Some("device_id"))
        );
        assert_eq!(
            kind(r#"{"device_id":"a","device_id":"b"}"#),
            (ErrorKind::DuplicateField, Some("device_id"))
        );
        assert_eq!(
            kind(r#"{"device_id":"a","timestamp":"yesterday"}"#),
            (ErrorKind::InvalidField, Some("timestamp"))
        );
        assert_eq!(
            kind(r#"{"device_id":"a","timestamp":-5}"#),
            (ErrorKind::InvalidField, Some("timestamp"))
        );
        assert_eq!(
            kind(r#"{"device_id":"a","timestamp":1.5}"#),
            (ErrorKind::InvalidField, Some("timestamp"))
        );
        assert_eq!(
            kind(r#"{"device_id":"a","value":1e400}"#),
            (ErrorKind::InvalidField, Some("value"))
        );
        // An unpaired surrogate escape is not text (never decoded silently to "").
        assert_eq!(
            kind(r#"{"device_id":"\ud800"}"#),
            (ErrorKind::InvalidField, Some("device_id"))
        );
        assert_eq!(
            kind(r#"{"device_id":"a","value":"x\udfff"}"#),
            (ErrorKind::InvalidField, Some("value"))
        );
        let long = format!(r#"{{"device_id":"{}"}}"#, "x".repeat(257));
        assert_eq!(kind(&long), (ErrorKind::InvalidField, Some("device_id")));
        let ok = format!(r#"{{"device_id":"{}"}}"#, "é".repeat(128));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn dashboard_url_must_be_a_safe_link() {
        let link = |url: &str| {
            format!(
                r#"{{"device_id":"d","dashboard_url":{}}}"#,
                serde_json::json!(url)
            )
        };
        for bad in [
            "javascript:alert(document.cookie)",
            "JaVaScRiPt:alert(1)",
            " https://dash.example/",
            "data:text/html;base64,PHNjcmlwdD4=",
            "vbscript:msgbox(1)",
            "//evil.example/phish",
            "devices/d1",
        ] {
            let e = parse(&link(bad)).unwrap_err();
            assert_eq!(
                (e.kind, e.field),
                (ErrorKind::InvalidField, Some("dashboard_url")),
                "{bad:?}"
            );
            assert!(
                e.message.starts_with("field `dashboard_url` "),
                "{}",
                e.message
            );
        }
        // Not a string at all: not a URL either.
        assert_eq!(
            kind(r#"{"device_id":"d","dashboard_url":42}"#),
            (ErrorKind::InvalidField, Some("dashboard_url"))
        );
        // Valid links are kept byte for byte, escapes decoded.
        let ok = r#"{"device_id":"d","dashboard_url":"HTTPS://Dash.example/d?a=1&b=é#x"}"#;
        assert_eq!(
            parse(ok).unwrap().dashboard_url.as_deref(),
            Some("HTTPS://Dash.example/d?a=1&b=é#x")
        );
        // Allowed hosts apply when given.
        let hosts = LinkHosts::new(&["*.example.com".to_string()]).unwrap();
        let with = |s: &str| {
            parse_event_with_hosts(Some(s.as_bytes()), 1 << 20, &hosts)
                .err()
                .map(|e| (e.field, e.message))
        };
        assert_eq!(with(&link("https://grafana.example.com/d")), None);
        assert_eq!(with(r#"{"device_id":"d"}"#), None);
        let (field, message) = with(&link("https://evil.example/d")).unwrap();
        assert_eq!(field, Some("dashboard_url"));
        assert!(message.contains("evil.example"), "{message}");
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        for depth in [33, 200, 100_000] {
            // Unknown fields are skipped by an iterative scanner: any depth is harmless there.
            let deep = format!(
                r#"{{"device_id":"a","x":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert!(parse(&deep).is_ok());
            let deep_value = format!(
                r#"{{"device_id":"a","value":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert_eq!(kind(&deep_value), (ErrorKind::TooDeep, Some("value")));
        }
        let ok = format!(
            r#"{{"device_id":"a","value":{}{}}}"#,
            "[".repeat(32),
            "]".repeat(32)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn size_utf8_and_tombstones() {
        assert_eq!(
            parse_event(None, 10).unwrap_err().kind,
            ErrorKind::NullPayload
        );
        assert_eq!(
            parse_event(Some(b"{\"device_id\":\"abc\"}"), 10)
                .unwrap_err()
                .kind,
            ErrorKind::TooLarge
        );
        assert_eq!(
            parse_event(Some(b"{\"device_id\":\"\xff\"}"), 100)
                .unwrap_err()
                .kind,
            ErrorKind::NotUtf8
        );
    }
}
