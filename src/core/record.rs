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
