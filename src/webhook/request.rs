//! One HTTP attempt: POST the body with its headers, classify what came back for the
//! [`policy`](super::policy). The only module here that talks HTTP.
//!
//! One `reqwest` client serves every endpoint: connections are pooled per host and reused across
//! requests (keep-alive), up to `webhooks.concurrency` idle ones per host. Redirects are not
//! followed. The response body is read (at most [`MAX_RESPONSE_BYTES`]) so the connection can go
//! back to the pool, and its start is kept for the error text of a failure.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use super::policy::{parse_retry_after, Attempt};
use super::sign::{Secret, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("aepiot-stream/", env!("CARGO_PKG_VERSION"));

/// The attempt number (1-based), for receivers' logs.
pub const ATTEMPT_HEADER: &str = "X-Aepiot-Attempt";

/// Response bytes read at most; a longer body is dropped with its connection.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Response bytes kept in an error text.
const ERROR_BODY_BYTES: usize = 200;

/// The shared HTTP client.
pub fn client(timeout: Duration, idle_per_host: usize) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(idle_per_host)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
}

/// One request to send.
pub struct Request<'a> {
    pub url: &'a reqwest::Url,
    pub body: &'a [u8],
    /// `webhook-id`: the record's idempotency key, the same on every attempt.
    pub webhook_id: &'a str,
    pub secret: Option<&'a Secret>,
    pub attempt: u32,
    /// The delivery span's W3C trace context (`[tracing]`, a traced record), sent as the
    /// `traceparent` and `tracestate` headers.
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
}

/// What an attempt came to, and a one-line description for dead letters and logs (never the URL:
/// it may carry credentials).
pub struct Sent {
    pub attempt: Attempt,
    pub error: String,
}

/// Sends one attempt, stamped with the current time (`webhook-timestamp`) and signed for it.
pub async fn post(client: &reqwest::Client, r: &Request<'_>) -> Sent {
    let timestamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut req = client
        .post(r.url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(ID_HEADER, r.webhook_id)
        .header(TIMESTAMP_HEADER, timestamp)
        .header(ATTEMPT_HEADER, r.attempt)
        .body(r.body.to_vec());
    if let Some(traceparent) = r.traceparent {
        req = req.header(crate::otel::propagate::TRACEPARENT, traceparent);
    }
    if let Some(tracestate) = r.tracestate {
        req = req.header(crate::otel::propagate::TRACESTATE, tracestate);
    }
    if let Some(secret) = r.secret {
        req = req.header(
            SIGNATURE_HEADER,
            secret.sign(r.webhook_id, timestamp, r.body),
        );
    }
    let mut resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => return from_error(e),
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // Read the body so the connection is reusable; keep its start for the error text.
    let mut head = Vec::new();
    let mut read = 0;
    let mut body_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = ERROR_BODY_BYTES.saturating_sub(head.len());
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if read > MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                body_error = Some(e);
                break;
            }
        }
    }
    if status.is_success() {
        // Accepted: a body that broke off afterwards does not undo that.
        return Sent {
            attempt: Attempt::Response {
                status: status.as_u16(),
                retry_after: None,
            },
            error: String::new(),
        };
    }
    let mut error = format!("HTTP {status}");
    let text = String::from_utf8_lossy(&head);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() {
        error.push_str(": ");
        error.push_str(&text);
    }
    if let Some(e) = body_error {
        error.push_str(&format!(" (response body: {})", describe(&e)));
    }
    Sent {
        attempt: Attempt::Response {
            status: status.as_u16(),
            retry_after,
        },
        error,
    }
}

fn from_error(e: reqwest::Error) -> Sent {
    let attempt = if e.is_timeout() {
        Attempt::Timeout
    } else if e.is_builder() {
        Attempt::Invalid
    } else {
        Attempt::Connection
    };
    Sent {
        attempt,
        error: describe(&e),
    }
}

/// The error and its causes on one line, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_builder() {
        "invalid request"
    } else {
        "connection error"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
