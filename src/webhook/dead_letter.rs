//! Webhook dead letters: a record that one endpoint refused or kept failing, with what happened.
//! Pure encoding; the service produces them to `webhooks.dead_letter_topic` (key = device_id).
//!
//! ```json
//! {"endpoint":{"index":0,"origin":"https://hooks.example.com"},"error":"HTTP 500 Internal Server Error: …",
//!  "http_status":500,"attempts":5,"retryable":true,"idempotency_key":"aepiot-urls-3-1042",
//!  "failed_at":"2026-11-26T08:05:09.301Z","source":{"topic":"aepiot-urls","partition":3,"offset":1042},
//!  "record":{…the URL record as it was on the output topic…}}
//! ```
//!
//! The endpoint is named by its position in `webhooks.endpoints` and its origin only: a URL's
//! path, query or user info may carry credentials. One dead letter per endpoint that failed, so
//! replaying a dead letter re-sends to that endpoint only.

use serde::Serialize;
use serde_json::value::RawValue;

/// Most bytes of the URL record a dead letter embeds: a URL record may be close to the output
/// topic's size limit, and the dead letter around it must still fit its own topic. A larger record
/// is embedded as the text of its first bytes, with `record_truncated` and its full size.
pub const MAX_EMBEDDED_RECORD_BYTES: usize = 256 << 10;

/// Header names of a webhook dead letter (besides the JSON body).
pub const HEADER_ENDPOINT: &str = "aepiot.webhook.endpoint";
pub const HEADER_ERROR: &str = "aepiot.webhook.error";
pub const HEADER_ATTEMPTS: &str = "aepiot.webhook.attempts";

/// The endpoint a dead letter failed at.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EndpointRef<'a> {
    /// Position in `webhooks.endpoints`.
    pub index: usize,
    /// `scheme://host[:port]`.
    pub origin: &'a str,
}

/// Where the URL record was.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RecordSource<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// One webhook dead letter.
#[derive(Debug, Clone, Copy)]
pub struct WebhookDeadLetter<'a> {
    pub endpoint: EndpointRef<'a>,
    /// The last attempt's error.
    pub error: &'a str,
    /// The last attempt's HTTP status, when there was a response.
    pub http_status: Option<u16>,
    pub attempts: u32,
    /// False when the endpoint refused the record (not retried); true when attempts ran out.
    pub retryable: bool,
    pub idempotency_key: &'a str,
    /// RFC 3339 UTC time of the last attempt's end.
    pub failed_at: &'a str,
    pub source: RecordSource<'a>,
    /// The URL record's payload, as read from the output topic.
    pub record: &'a [u8],
}

#[derive(Serialize)]
struct Encoded<'a> {
    endpoint: EndpointRef<'a>,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    attempts: u32,
    retryable: bool,
    idempotency_key: &'a str,
    failed_at: &'a str,
    source: RecordSource<'a>,
    record: Record<'a>,
    /// The URL record's size, when only its first bytes are embedded.
    #[serde(skip_serializing_if = "Option::is_none")]
    record_bytes: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    record_truncated: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Record<'a> {
    Json(&'a RawValue),
    /// Not JSON (never written by this program): kept as text.
    Text(String),
}

impl WebhookDeadLetter<'_> {
    /// The dead letter's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let truncated = self.record.len() > MAX_EMBEDDED_RECORD_BYTES;
        let record = match std::str::from_utf8(self.record)
            .ok()
            .filter(|_| !truncated)
            .and_then(|s| serde_json::from_str::<&RawValue>(s).ok())
        {
            Some(raw) => Record::Json(raw),
            None => {
                let prefix = &self.record[..self.record.len().min(MAX_EMBEDDED_RECORD_BYTES)];
                let text = String::from_utf8_lossy(prefix);
                Record::Text(truncate(&text, MAX_EMBEDDED_RECORD_BYTES).to_owned())
            }
        };
        serde_json::to_vec(&Encoded {
            endpoint: self.endpoint,
            error: self.error,
            http_status: self.http_status,
            attempts: self.attempts,
            retryable: self.retryable,
            idempotency_key: self.idempotency_key,
            failed_at: self.failed_at,
            source: self.source,
            record,
            record_bytes: truncated.then_some(self.record.len()),
            record_truncated: truncated,
        })
        .expect("a dead letter serializes")
    }
}

/// `scheme://host[:port]` of an endpoint URL: what dead letters and logs name it by.
pub fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// An error text cut to at most `max` bytes (at a character boundary), for headers and logs.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(record: &[u8]) -> serde_json::Value {
        let d = WebhookDeadLetter {
            endpoint: EndpointRef {
                index: 1,
                origin: "https://hooks.example.com",
            },
            error: "HTTP 500 Internal Server Error",
            http_status: Some(500),
            attempts: 5,
            retryable: true,
            idempotency_key: "out-0-7",
            failed_at: "2026-11-26T08:05:09.301Z",
            source: RecordSource {
                topic: "out",
                partition: 0,
                offset: 7,
            },
            record,
        };
        serde_json::from_slice(&d.to_json()).unwrap()
    }

    #[test]
    fn carries_the_endpoint_error_attempts_and_record() {
        let v = letter(br#"{"device_id":"d","status":"success"}"#);
        assert_eq!(v["endpoint"]["index"], 1);
        assert_eq!(v["endpoint"]["origin"], "https://hooks.example.com");
        assert_eq!(v["error"], "HTTP 500 Internal Server Error");
        assert_eq!(v["http_status"], 500);
        assert_eq!(v["attempts"], 5);
        assert_eq!(v["retryable"], true);
        assert_eq!(v["idempotency_key"], "out-0-7");
        assert_eq!(v["source"]["offset"], 7);
        assert_eq!(v["record"]["device_id"], "d");
        assert_eq!(letter(b"not json")["record"], "not json");
        assert!(letter(b"{}").get("record_truncated").is_none());
    }

    #[test]
    fn a_large_record_is_embedded_cut_with_its_size() {
        let big = format!(r#"{{"device_id":"{}"}}"#, "é".repeat(300_000));
        let json = WebhookDeadLetter {
            endpoint: EndpointRef {
                index: 0,
                origin: "https://h",
            },
            error: "HTTP 500",
            http_status: Some(500),
            attempts: 5,
            retryable: true,
            idempotency_key: "k",
            failed_at: "2026-11-26T08:05:09.301Z",
            source: RecordSource {
                topic: "out",
                partition: 0,
                offset: 7,
            },
            record: big.as_bytes(),
        }
        .to_json();
        assert!(
            json.len() < MAX_EMBEDDED_RECORD_BYTES + 4096,
            "{}",
            json.len()
        );
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["record_truncated"], true);
        assert_eq!(v["record_bytes"], big.len());
        assert!(v["record"]
            .as_str()
            .unwrap()
            .starts_with(r#"{"device_id":"éé"#));
    }

    #[test]
    fn origins_hide_credentials_and_paths() {
        let u =
            url::Url::parse("https://user:pw@hooks.example.com:8443/T0/B1/secret?token=x").unwrap();
        assert_eq!(origin(&u), "https://hooks.example.com:8443");
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
