//! Dead letters produced by the worker: the input's own (bad input), and those of outputs the
//! broker refused for a reason of the record's own (too large, invalid).

use rdkafka::message::Header;

use super::*;

impl Worker {
    /// Writes the dead letters of outputs the broker refused. The input's slot stays outstanding
    /// until its dead letter is acknowledged. A refused dead letter is sent once more without its
    /// payload; refused again, the dead-letter topic itself is at fault and the instance stops.
    pub(super) async fn dead_letter_refused(&mut self) {
        if self.inflight.to_dead_letter.is_empty() {
            return;
        }
        let env = self.inflight.env.clone();
        for r in std::mem::take(&mut self.inflight.to_dead_letter) {
            let resend = r.failed.topic == env.dead_letter_topic;
            if resend && !self.dead_letters_resent.insert(r.seq) {
                self.inflight.stop(FatalCause::DeadLetterRefused {
                    topic: r.failed.topic.clone(),
                    error: r.failed.error.to_string(),
                });
                return;
            }
            let meta = RecordMeta {
                record_time_ms: None,
                now_ms: now_ms(),
                source: Some(Source::Kafka {
                    topic: &self.inflight.topic,
                    partition: self.inflight.partition,
                    offset: r.offset,
                }),
            };
            let (message, payload) = if resend {
                (
                    format!("this record's dead letter was refused ({}); sent again without its payload", r.failed.error),
                    None,
                )
            } else {
                (
                    format!(
                        "the broker refused this event's URL record: {}",
                        r.failed.error
                    ),
                    Some(r.failed.payload.as_slice()),
                )
            };
            self.counters.invalid(r.kind);
            let out = self.engine.reject(
                RecordError::new(r.kind, message),
                payload,
                r.failed.payload_len,
                &meta,
            );
            let Output::DeadLetter { error, json } = out else {
                unreachable!("reject makes a dead letter")
            };
            // The refused URL record's trace context: its processing span stays the parent.
            let input = (None, r.failed.trace.clone());
            send_dead_letter(&mut self.inflight, r.seq, r.offset, input, error, json).await;
        }
    }
}

/// Produces the dead letter of input `seq` (at `offset`). With `input` (its payload is the
/// input's), the dead letter is keyed like the input and carries its headers under
/// [`headers::INPUT_HEADER_PREFIX`]; without (its payload is the URL record the broker refused),
/// it is marked so with [`headers::DEAD_LETTER_PAYLOAD`], and `dead-letters replay` reads the
/// event at its source offset. With `trace` (the record's processing span's, when traced), it
/// carries that trace context.
pub(super) async fn send_dead_letter(
    inflight: &mut Inflight,
    seq: u64,
    offset: i64,
    (input, trace): (
        Option<&BorrowedMessage<'_>>,
        Option<crate::otel::propagate::Carried>,
    ),
    error: &RecordError,
    json: &[u8],
) {
    let env = inflight.env.clone();
    let mut meta = headers::dead_letter(
        error.kind.as_str(),
        &error.message,
        &inflight.topic,
        inflight.partition,
        offset,
    );
    let mut key = None;
    match input {
        Some(msg) => {
            key = msg.key();
            if let Some(h) = msg.headers() {
                meta = headers::with_input_headers(meta, h);
            }
        }
        None => {
            meta = meta.insert(Header {
                key: headers::DEAD_LETTER_PAYLOAD,
                value: Some(headers::PAYLOAD_URL_RECORD),
            });
        }
    }
    if let Some(trace) = trace {
        meta = trace.insert(meta);
    }
    let mut record = BaseRecord::with_opaque_to(&env.dead_letter_topic, inflight.opaque(seq))
        .payload(json)
        .headers(meta);
    if let Some(key) = key {
        record = record.key(key);
    }
    inflight.send_or_stop(record).await;
}
