//! A record's processing span (`[tracing]`, see [`crate::otel`]): started before the engine runs,
//! told the outcome, and its context added to the record's URL record or dead letter, so their
//! `traceparent` names this span as parent. Without `[tracing]` none of this runs.

use opentelemetry::KeyValue;
use rdkafka::message::OwnedHeaders;

use super::*;
use crate::otel::Hop;

impl Worker {
    /// The record's processing span: under its `traceparent`, or a new root when sampled; `None`
    /// when tracing is off or the record is not traced.
    pub(super) fn trace(&self, msg: &BorrowedMessage<'_>) -> Option<Hop> {
        let env = &self.inflight.env;
        let otel = env.otel.as_ref()?;
        let parent = otel.parent(msg.headers())?;
        let (topic, partition) = (&self.inflight.topic, self.inflight.partition);
        Some(otel.consumed(&parent, topic, partition, msg.offset()))
    }
}

/// A URL record's headers, with the trace context of `hop` when traced; the span learns the
/// record's status and output topic.
pub(super) fn url_record(
    hop: Option<&mut Hop>,
    headers: OwnedHeaders,
    status: Decision,
    topic: &str,
) -> OwnedHeaders {
    let Some(hop) = hop else { return headers };
    hop.set(KeyValue::new("aepiot.status", status.as_str()));
    hop.set(KeyValue::new("aepiot.output.topic", topic.to_owned()));
    hop.kafka_headers(headers)
}

/// A suppressed record (`cached`, `rate_limited`): its span says so.
pub(super) fn suppressed(hop: Option<&mut Hop>, status: Decision) {
    if let Some(hop) = hop {
        hop.set(KeyValue::new("aepiot.status", status.as_str()));
    }
}

/// A record that became a dead letter: its span fails with the dead letter's kind.
pub(super) fn dead_lettered(hop: Option<&mut Hop>, error: &RecordError) {
    if let Some(hop) = hop {
        hop.set(KeyValue::new("aepiot.status", "invalid"));
        hop.set(KeyValue::new(
            "aepiot.dead_letter.kind",
            error.kind.as_str(),
        ));
        hop.fail(error.kind.as_str());
    }
}
