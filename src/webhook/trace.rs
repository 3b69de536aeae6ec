//! A record's delivery span at one endpoint (`[tracing]`, see [`crate::otel`]): its parent is the
//! trace context the URL record carries (the processing span that wrote it), every attempt is an
//! event on it (a retry adds an event, not a span), and every request carries a `traceparent`
//! naming it as parent. Without `[tracing]`, or for a record that is not traced, it is empty and
//! costs nothing.

use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

use super::policy::Attempt;
use super::request::Sent;
use crate::otel::{Hop, Otel};

/// Error text kept on an attempt's event.
const ERROR_CHARS: usize = 200;

/// What a delivery span knows of the record and its endpoint.
pub struct Delivered<'a> {
    pub endpoint: &'a str,
    /// The endpoint's origin only: a URL's path or query may carry a token.
    pub origin: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The span, its requests' trace context, and what the last attempt came to.
#[derive(Default)]
pub struct DeliverySpan {
    hop: Option<Hop>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    attempts: u32,
    status: Option<u16>,
}

impl DeliverySpan {
    /// Starts the span under `parent` (none without tracing or a traced record).
    pub fn start(otel: Option<&Otel>, parent: Option<&Context>, at: Delivered<'_>) -> Self {
        let (Some(otel), Some(parent)) = (otel, parent) else {
            return DeliverySpan::default();
        };
        let hop = otel.span(
            parent,
            format!("deliver {}", at.endpoint),
            SpanKind::Client,
            vec![
                KeyValue::new("aepiot.webhook.endpoint", at.endpoint.to_owned()),
                KeyValue::new("aepiot.webhook.origin", at.origin.to_owned()),
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.destination.name", at.topic.to_owned()),
                KeyValue::new(
                    "messaging.destination.partition.id",
                    at.partition.to_string(),
                ),
                KeyValue::new("messaging.kafka.offset", at.offset),
            ],
        );
        DeliverySpan {
            traceparent: Some(hop.traceparent()),
            tracestate: hop.tracestate(),
            hop: Some(hop),
            ..DeliverySpan::default()
        }
    }

    /// The `traceparent` of this delivery's requests.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The `tracestate` of this delivery's requests.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// An attempt (1-based) and what it came to, as an event.
    pub fn attempted(&mut self, attempt: u32, sent: &Sent) {
        let Some(hop) = &mut self.hop else { return };
        self.attempts = attempt;
        let mut attributes = vec![KeyValue::new("aepiot.webhook.attempt", i64::from(attempt))];
        self.status = match sent.attempt {
            Attempt::Response { status, .. } => Some(status),
            _ => None,
        };
        match (&sent.attempt, self.status) {
            (_, Some(status)) => attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            )),
            (Attempt::Timeout, None) => attributes.push(KeyValue::new("error.type", "timeout")),
            _ => attributes.push(KeyValue::new("error.type", "connection")),
        }
        if !sent.error.is_empty() {
            let error: String = sent.error.chars().take(ERROR_CHARS).collect();
            attributes.push(KeyValue::new("error.message", error));
        }
        hop.event("attempt", attributes);
    }

    /// Ends the span with the delivery's result: `delivered`, `dead_lettered` or `abandoned`.
    pub fn finish(self, result: &'static str) {
        let Some(mut hop) = self.hop else { return };
        hop.set(KeyValue::new("aepiot.webhook.result", result));
        hop.set(KeyValue::new(
            "aepiot.webhook.attempts",
            i64::from(self.attempts),
        ));
        if let Some(status) = self.status {
            hop.set(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if result != "delivered" {
            hop.fail(result);
        }
        hop.end();
    }

    /// `headers` with this delivery's trace context when traced (a webhook dead letter's: like
    /// the requests that failed, it names the delivery span as parent).
    pub fn kafka_headers(
        &self,
        headers: rdkafka::message::OwnedHeaders,
    ) -> rdkafka::message::OwnedHeaders {
        match self.traceparent() {
            Some(tp) => crate::otel::propagate::insert(headers, tp, self.tracestate()),
            None => headers,
        }
    }
}
