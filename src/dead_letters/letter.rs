//! One record of a dead-letter topic, read back: which kind it is and what a replay would send.
//! Pure: the Kafka reader hands over the record's parts ([`Raw`]).
//!
//! Two writers fill dead-letter topics, and a record says which by its JSON:
//! - the processor (`dead_letter_topic`, `schemas/dead-letter.schema.json`): the input's payload
//!   (text or base64), its key as the record's key, its headers under
//!   [`headers::INPUT_HEADER_PREFIX`], and its source topic, partition and offset;
//! - the webhook service (`webhooks.dead_letter_topic`, [`crate::webhook::dead_letter`]): the
//!   endpoint (position and origin), the `webhook-id` it was sent with, and the URL record.
//!
//! A dead letter that cannot be replayed faithfully says why instead ([`What`]'s `Err`): a payload
//! kept only in part, a processor dead letter that carries the refused URL record rather than the
//! event, a webhook dead letter whose URL record was cut.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::kafka::headers;
use crate::webhook::payload::{self, Parsed};

/// A dead-letter record as read from its topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (when it was dead-lettered), epoch milliseconds.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Headers in order, repeated names and null values kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Raw {
    /// `<topic>-<partition>-<offset>`: how output and the replayed records' header name it.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.topic, self.partition, self.offset)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The kind of every webhook dead letter (processor dead letters have their error's kind).
pub const WEBHOOK_KIND: &str = "webhook";

/// A record that is neither a processor's nor a webhook dead letter.
pub const UNKNOWN_KIND: &str = "unknown";

/// A dead letter, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The error kind (`invalid_field`, …), [`WEBHOOK_KIND`] or [`UNKNOWN_KIND`].
    pub kind: String,
    pub what: What,
}

/// What replaying a dead letter means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A processor dead letter: produce the input again.
    Input {
        /// Where the input was (the topic it goes back to without `--to`).
        source: Option<SourceRef>,
        original: Result<Original, String>,
    },
    /// A webhook dead letter: deliver the URL record again to its endpoint.
    Webhook {
        /// Position in `webhooks.endpoints`.
        endpoint: usize,
        /// The endpoint's `scheme://host[:port]`.
        origin: String,
        /// `webhook-id` of the original delivery.
        webhook_id: String,
        /// Attempts made before it was dead-lettered.
        attempts: u32,
        /// The request body, as the service built it.
        body: Result<Vec<u8>, String>,
    },
    /// Not a dead letter this program wrote.
    Unknown(String),
}

/// The input record's place.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.topic, self.partition, self.offset)
    }
}

/// The input record, as it was produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Letter {
    /// The reason it cannot be replayed, if so.
    pub fn not_replayable(&self) -> Option<&str> {
        match &self.what {
            What::Input { original, .. } => original.as_ref().err().map(String::as_str),
            What::Webhook { body, .. } => body.as_ref().err().map(String::as_str),
            What::Unknown(why) => Some(why),
        }
    }
}

#[derive(Deserialize)]
struct Json<'a> {
    // Processor dead letters (a webhook dead letter's `error` is its text).
    error: Option<ErrorField>,
    payload: Option<String>,
    payload_encoding: Option<String>,
    #[serde(default)]
    payload_truncated: bool,
    payload_bytes: Option<u64>,
    source: Option<SourceRef>,
    // Webhook dead letters.
    endpoint: Option<EndpointJson>,
    idempotency_key: Option<String>,
    #[serde(default)]
    attempts: u32,
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    #[serde(default)]
    record_truncated: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Processor { kind: String },
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct EndpointJson {
    index: usize,
    origin: String,
}

/// Reads a dead-letter record.
pub fn read(raw: &Raw) -> Letter {
    let unknown = |why: String| Letter {
        kind: UNKNOWN_KIND.into(),
        what: What::Unknown(why),
    };
    let Some(bytes) = raw.payload.as_deref() else {
        return unknown("an empty record (tombstone), not a dead letter".into());
    };
    let json: Json<'_> = match serde_json::from_slice(bytes) {
        Ok(j) => j,
        Err(e) => return unknown(format!("not a dead letter of this program: {e}")),
    };
    if let (Some(ep), Some(id)) = (&json.endpoint, &json.idempotency_key) {
        return Letter {
            kind: WEBHOOK_KIND.into(),
            what: What::Webhook {
                endpoint: ep.index,
                origin: ep.origin.clone(),
                webhook_id: id.clone(),
                attempts: json.attempts,
                body: webhook_body(&json),
            },
        };
    }
    let Some(ErrorField::Processor { kind }) = &json.error else {
        return unknown("not a dead letter of this program: no `error` and no `endpoint`".into());
    };
    Letter {
        kind: kind.clone(),
        what: What::Input {
            source: json.source.clone(),
            original: original(raw, &json, kind),
        },
    }
}

fn original(raw: &Raw, json: &Json<'_>, kind: &str) -> Result<Original, String> {
    let at = json
        .source
        .as_ref()
        .map_or_else(String::new, |s| format!("; the event itself is at {s}"));
    if raw.header(headers::DEAD_LETTER_PAYLOAD) == Some(headers::PAYLOAD_URL_RECORD.as_bytes()) {
        return Err(format!(
            "it carries the URL record the broker refused, not the event{at}"
        ));
    }
    if json.payload_truncated {
        return Err(format!(
            "it kept only a prefix of the event's {} payload bytes (input.max_dead_letter_payload_bytes){at}",
            json.payload_bytes.unwrap_or_default()
        ));
    }
    let payload = match (json.payload_encoding.as_deref(), &json.payload) {
        (Some("none"), _) if kind == "null_payload" => None,
        (Some("none"), _) => {
            return Err(format!(
                "it was written without the event's payload (its full dead letter was refused){at}"
            ))
        }
        (Some("utf8"), Some(text)) => Some(text.clone().into_bytes()),
        (Some("base64"), Some(b64)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("its base64 payload does not decode: {e}"))?,
        ),
        (encoding, _) => return Err(format!("unknown payload encoding {encoding:?}")),
    };
    let headers = raw
        .headers
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(headers::INPUT_HEADER_PREFIX)
                .map(|name| (name.to_owned(), v.clone()))
        })
        .collect();
    Ok(Original {
        key: raw.key.clone(),
        payload,
        headers,
    })
}

fn webhook_body(json: &Json<'_>) -> Result<Vec<u8>, String> {
    if json.record_truncated {
        return Err("it kept only the start of its URL record (over 256 KiB)".into());
    }
    let record = json.record.ok_or("it carries no URL record")?;
    match payload::parse(Some(record.get().as_bytes())) {
        Ok(Parsed::Deliver(r)) => Ok(r.body),
        Ok(Parsed::Skip) => Err("its URL record is not a `success` record".into()),
        Err(e) => Err(format!("its URL record cannot be read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::dead_letter::{EndpointRef, RecordSource, WebhookDeadLetter};

    fn raw(payload: &str, headers: &[(&str, &str)]) -> Raw {
        Raw {
            topic: "dlq".into(),
            partition: 0,
            offset: 4,
            timestamp_ms: Some(1_000),
            key: Some(b"dev-1".to_vec()),
            payload: Some(payload.as_bytes().to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
                .collect(),
        }
    }

    const SOURCE: &str = r#""source":{"topic":"in","partition":2,"offset":9}"#;

    fn processor(kind: &str, payload: &str, encoding: &str, truncated: bool) -> String {
        format!(
            r#"{{"error":{{"kind":"{kind}","message":"m"}},"payload":{payload},"payload_encoding":"{encoding}","payload_bytes":10,"payload_truncated":{truncated},"processed_at":"2026-11-26T08:05:01.000Z",{SOURCE}}}"#
        )
    }

    #[test]
    fn a_processor_dead_letter_gives_back_payload_key_and_headers_in_order() {
        let r = raw(
            &processor("invalid_field", r#""{\"device_id\":\"d\"}""#, "utf8", false),
            &[
                ("aepiot.error.kind", "invalid_field"),
                ("aepiot.input.header.trace", "a"),
                ("aepiot.input.header.x", "1"),
                ("aepiot.input.header.trace", "b"),
            ],
        );
        let l = read(&r);
        assert_eq!(l.kind, "invalid_field");
        let What::Input { source, original } = l.what else {
            panic!("{l:?}")
        };
        assert_eq!(source.unwrap().to_string(), "in-2-9");
        let o = original.unwrap();
        assert_eq!(o.payload.unwrap(), br#"{"device_id":"d"}"#);
        assert_eq!(o.key.unwrap(), b"dev-1");
        let names: Vec<_> = o
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("trace", b"a".to_vec()),
                ("x", b"1".to_vec()),
                ("trace", b"b".to_vec())
            ]
        );
        assert_eq!(r.id(), "dlq-0-4");
    }

    #[test]
    fn base64_payloads_decode_and_tombstones_stay_tombstones() {
        let l = read(&raw(
            &processor("not_utf8", r#""/w==""#, "base64", false),
            &[],
        ));
        let What::Input { original, .. } = l.what else {
            panic!()
        };
        assert_eq!(original.unwrap().payload.unwrap(), [0xff]);
        let l = read(&raw(&processor("null_payload", "null", "none", false), &[]));
        let What::Input { original, .. } = l.what else {
            panic!()
        };
        assert_eq!(original.unwrap().payload, None);
    }

    #[test]
    fn what_cannot_be_replayed_faithfully_says_why() {
        let cut = read(&raw(
            &processor("too_large", r#""{\"a""#, "utf8", true),
            &[],
        ));
        assert!(cut.not_replayable().unwrap().contains("prefix"), "{cut:?}");
        assert!(cut.not_replayable().unwrap().contains("in-2-9"));
        let url = read(&raw(
            &processor("output_too_large", r#""{}""#, "utf8", false),
            &[("aepiot.dead_letter.payload", "url_record")],
        ));
        assert!(url.not_replayable().unwrap().contains("URL record"));
        let dropped = read(&raw(
            &processor("output_rejected", "null", "none", false),
            &[],
        ));
        assert!(dropped.not_replayable().unwrap().contains("without"));
        let other = read(&raw("hello", &[]));
        assert_eq!(other.kind, UNKNOWN_KIND);
        assert!(other.not_replayable().is_some());
    }

    fn webhook(record: &[u8]) -> Letter {
        let json = WebhookDeadLetter {
            endpoint: EndpointRef {
                index: 1,
                origin: "http://127.0.0.1:9",
            },
            error: "HTTP 400",
            http_status: Some(400),
            attempts: 1,
            retryable: false,
            idempotency_key: "out-0-7",
            failed_at: "2026-11-26T08:05:09.301Z",
            source: RecordSource {
                topic: "out",
                partition: 0,
                offset: 7,
            },
            record,
        }
        .to_json();
        read(&raw(std::str::from_utf8(&json).unwrap(), &[]))
    }

    #[test]
    fn a_webhook_dead_letter_gives_back_the_body_the_service_sent() {
        let record = br#"{"device_id":"d","event_type":"t","severity":null,"region":"eu","status":"success","urls":["https://a/x"],"event_time":"2026-11-26T08:05:01.000Z","processed_at":"2026-11-26T08:05:01.000Z"}"#;
        let l = webhook(record);
        assert_eq!(l.kind, WEBHOOK_KIND);
        let What::Webhook {
            endpoint,
            origin,
            webhook_id,
            attempts,
            body,
        } = l.what
        else {
            panic!()
        };
        let Ok(Parsed::Deliver(sent)) = payload::parse(Some(record)) else {
            panic!()
        };
        assert_eq!(
            (endpoint, origin.as_str(), webhook_id.as_str(), attempts),
            (1, "http://127.0.0.1:9", "out-0-7", 1)
        );
        assert_eq!(
            body.unwrap(),
            sent.body,
            "byte for byte the body the service sent"
        );
        let cut = webhook(format!(r#"{{"device_id":"{}"}}"#, "x".repeat(300_000)).as_bytes());
        assert!(cut.not_replayable().unwrap().contains("start"));
    }
}
