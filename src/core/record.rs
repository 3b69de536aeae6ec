//! Output records: URL records (`schemas/url-record.schema.json`) and dead letters
//! (`schemas/dead-letter.schema.json`), encoded as JSON into reusable buffers.

use base64::Engine as _;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use super::error::RecordError;
use super::limiter::Decision;

/// Where a record came from.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum Source<'a> {
    /// A Kafka record.
    Kafka {
        topic: &'a str,
        partition: i32,
        offset: i64,
    },
    /// A line of a JSON Lines file (1-based), in `process` mode.
    Line { line: u64 },
}

/// A URL record: the outcome of one valid event.
#[derive(Serialize)]
pub struct UrlRecord<'a, U: Iterator<Item = &'a str> + Clone> {
    pub device_id: &'a str,
    pub event_type: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub region: &'a str,
    #[serde(serialize_with = "decision_str")]
    pub status: Decision,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "url_list")]
    pub urls: Option<U>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regional_url: Option<&'a str>,
    /// The URLs need no JSON escaping ([`crate::core::urls::UrlSet::json_safe`]): `encode` copies
    /// them without scanning them (they are most of a record's bytes).
    #[serde(skip)]
    pub urls_json_safe: bool,
    pub event_time: &'a str,
    pub processed_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source<'a>>,
}

fn decision_str<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.as_str())
}

fn url_list<'a, S: Serializer, U: Iterator<Item = &'a str> + Clone>(
    urls: &Option<U>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let urls = urls.clone().expect("skipped when None");
    let mut seq = s.serialize_seq(None)?;
    for u in urls {
        seq.serialize_element(u)?;
    }
    seq.end()
}

/// How a dead letter carries the original payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// Valid UTF-8: the payload as a JSON string.
    Utf8,
    /// Not UTF-8: standard base64.
    Base64,
    /// The record had no payload (a tombstone).
    None,
}

/// A dead letter: a record that could not be processed, with why.
#[derive(Serialize)]
pub struct DeadLetter<'a> {
    pub error: &'a RecordError,
    pub payload: Option<String>,
    pub payload_encoding: PayloadEncoding,
    /// The original payload's size in bytes.
    pub payload_bytes: usize,
    /// True when `payload` holds only the first `max_dead_letter_payload_bytes` of the original.
    pub payload_truncated: bool,
    pub processed_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source<'a>>,
}

impl<'a> DeadLetter<'a> {
    /// Builds a dead letter carrying at most `max_payload` bytes of the original payload, so that
    /// an oversized record cannot make an oversized dead letter the broker would refuse.
    /// `payload` may itself be a prefix of an original of `original_len` bytes.
    pub fn new(
        error: &'a RecordError,
        payload: Option<&[u8]>,
        original_len: usize,
        max_payload: usize,
        processed_at: &'a str,
        source: Option<Source<'a>>,
    ) -> Self {
        let (payload, payload_encoding, payload_bytes, payload_truncated) = match payload {
            None => (None, PayloadEncoding::None, 0, false),
            Some(bytes) => {
                let kept = &bytes[..bytes.len().min(max_payload)];
                let truncated = kept.len() < original_len;
                let utf8 = match std::str::from_utf8(bytes) {
                    Ok(text) => Ok(text),
                    // A prefix may end inside a character: valid up to there still counts as text.
                    Err(e) if e.error_len().is_none() && bytes.len() < original_len => {
                        Ok(std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid prefix"))
                    }
                    Err(e) => Err(e),
                };
                match utf8 {
                    // Cut at a character boundary so the text stays valid.
                    Ok(text) => {
                        let mut end = kept.len().min(text.len());
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        (
                            Some(text[..end].to_owned()),
                            PayloadEncoding::Utf8,
                            original_len,
                            truncated || end < kept.len(),
                        )
                    }
                    Err(_) => (
                        Some(base64::engine::general_purpose::STANDARD.encode(kept)),
                        PayloadEncoding::Base64,
                        original_len,
                        truncated,
                    ),
                }
            }
        };
        DeadLetter {
            error,
            payload,
            payload_encoding,
            payload_bytes,
            payload_truncated,
            processed_at,
            source,
        }
    }
}

/// Serializes into `out` (cleared first). Serializing these types cannot fail.
pub fn encode_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    out.clear();
    serde_json::to_writer(&mut *out, value).expect("records serialize to JSON");
}

impl<'a, U: Iterator<Item = &'a str> + Clone> UrlRecord<'a, U> {
    /// Encodes into `out` (cleared first): the same bytes as `encode_json(out, self)`, without
    /// serde_json's byte-at-a-time escaping of strings that need none (URLs are percent-encoded,
    /// so they never do, and they are most of a record).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"{\"device_id\":");
        json_str(out, self.device_id);
        out.extend_from_slice(b",\"event_type\":");
        json_opt_str(out, self.event_type);
        out.extend_from_slice(b",\"severity\":");
        json_opt_str(out, self.severity);
        out.extend_from_slice(b",\"region\":");
        json_str(out, self.region);
        out.extend_from_slice(b",\"status\":");
        json_str(out, self.status.as_str());
        if let Some(urls) = &self.urls {
            out.extend_from_slice(b",\"urls\":[");
            for (i, url) in urls.clone().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_url(out, url, self.urls_json_safe);
            }
            out.push(b']');
        }
        if let Some(url) = self.regional_url {
            out.extend_from_slice(b",\"regional_url\":");
            json_url(out, url, self.urls_json_safe);
        }
        out.extend_from_slice(b",\"event_time\":");
        json_str(out, self.event_time);
        out.extend_from_slice(b",\"processed_at\":");
        json_str(out, self.processed_at);
        match self.source {
            None => {}
            Some(Source::Kafka {
                topic,
                partition,
                offset,
            }) => {
                out.extend_from_slice(b",\"source\":{\"topic\":");
                json_str(out, topic);
                out.extend_from_slice(b",\"partition\":");
                json_int(out, partition.into());
                out.extend_from_slice(b",\"offset\":");
                json_int(out, offset.into());
                out.push(b'}');
            }
            Some(Source::Line { line }) => {
                out.extend_from_slice(b",\"source\":{\"line\":");
                json_int(out, line.into());
                out.push(b'}');
            }
        }
        out.push(b'}');
    }
}

/// A JSON string as serde_json writes it: copied as it is when nothing needs escaping, else
/// through serde_json itself.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *out, s).expect("a string serializes to JSON");
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// A URL: copied as it is when known to need no escaping, else like any string.
fn json_url(out: &mut Vec<u8>, url: &str, safe: bool) {
    if safe {
        debug_assert!(!needs_escape(url.as_bytes()), "{url:?}");
        out.reserve(url.len() + 2);
        out.push(b'"');
        out.extend_from_slice(url.as_bytes());
        out.push(b'"');
    } else {
        json_str(out, url);
    }
}

/// An integer in decimal, as serde_json writes it.
fn json_int(out: &mut Vec<u8>, v: i128) {
    if v < 0 {
        out.push(b'-');
    }
    let mut v = v.unsigned_abs();
    let mut digits = [0u8; 39];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Whether serde_json would escape any byte: `"`, `\` and the control characters below 0x20.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    const W: usize = 16;
    let escapes = |b: u8| u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
    // A branch-free OR over a fixed-size window, which the compiler vectorizes.
    let window = |w: &[u8]| w.iter().fold(0, |any, &b| any | escapes(b)) != 0;
    if bytes.len() < W {
        return bytes.iter().any(|&b| escapes(b) != 0);
    }
    let mut chunks = bytes.chunks_exact(W);
    if chunks.any(window) {
        return true;
    }
    // The tail, as the last full window (overlapping the previous one).
    !chunks.remainder().is_empty() && window(&bytes[bytes.len() - W..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_url_record_encoding_matches_serde() {
        let texts = [
            "",
            "plain",
            "https://aepiot.com/backlink.html?title=temperature_alert%20-%20dev-0000001&link=x",
            "quote\"s and back\\slash",
            "new\nline, tab\t, nul\u{0}, bell\u{7}, del\u{7f}, unit sep\u{1f}",
            "é 温度 🚀 </script>",
            "exactly sixteen!",
            "exactly sixteen\"",
            "seventeen chars \n",
            "0123456789abcdef0123456789abcdef0123\"",
            "0123456789abcdef0123456789abcdef0123456789abcde\u{1}fghijklmnopqrstuv",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        let sources = [
            None,
            Some(Source::Kafka {
                topic: "iot-events",
                partition: 3,
                offset: 1 << 40,
            }),
            Some(Source::Line { line: 7 }),
            Some(Source::Kafka {
                topic: "odd \"topic\"\n",
                partition: -1,
                offset: i64::MIN,
            }),
            Some(Source::Kafka {
                topic: "t",
                partition: i32::MAX,
                offset: 0,
            }),
            Some(Source::Line { line: u64::MAX }),
            Some(Source::Line { line: 0 }),
        ];
        let statuses = [Decision::Success, Decision::Cached, Decision::RateLimited];
        let (mut fast, mut serde) = (Vec::new(), Vec::new());
        let mut n = 0;
        for (i, &a) in texts.iter().enumerate() {
            for &b in &texts {
                for (j, source) in sources.iter().enumerate() {
                    let with_urls = (i + j) % 2 == 0;
                    let urls = [a, b, "https://aepiot.ro/backlink.html?title=x"];
                    let record = UrlRecord {
                        device_id: a,
                        event_type: (j != 1).then_some(b),
                        severity: (i % 3 != 0).then_some(a),
                        region: b,
                        status: statuses[(i + j) % 3],
                        urls: with_urls.then(|| urls.iter().copied()),
                        regional_url: with_urls.then_some(b),
                        urls_json_safe: false,
                        event_time: a,
                        processed_at: "2026-11-26T10:00:00.000Z",
                        source: *source,
                    };
                    record.encode(&mut fast);
                    encode_json(&mut serde, &record);
                    assert_eq!(
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&serde)
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, texts.len() * texts.len() * sources.len());
        // An empty URL list too.
        let record = UrlRecord {
            device_id: "d",
            event_type: None,
            severity: None,
            region: "global",
            status: Decision::Success,
            urls: Some([].iter().copied()),
            regional_url: None,
            urls_json_safe: true,
            event_time: "t",
            processed_at: "p",
            source: None,
        };
        record.encode(&mut fast);
        encode_json(&mut serde, &record);
        assert_eq!(fast, serde);
        // URLs copied without a scan: the same bytes as serde_json's.
        let urls = ["https://a.example/backlink.html?title=x%22y&link=%5C"];
        let record = UrlRecord {
            urls: Some(urls.iter().copied()),
            regional_url: Some(urls[0]),
            ..record
        };
        record.encode(&mut fast);
        encode_json(&mut serde, &record);
        assert_eq!(fast, serde);
    }
}
