//! The passthrough step (`aepiot-stream passthrough`, the benchmarks' reference): each record's
//! key, payload and headers to the output topic unchanged, without the engine; everything else
//! (queues, tasks, producer, acks, commits, transactions) is the pipeline's own.

use super::*;

impl Worker {
    /// Passthrough: the record's bytes to the output topic, counted as a `success`.
    pub(super) async fn forward(&mut self, msg: &BorrowedMessage<'_>, clock: &Clock) {
        let env = self.inflight.env.clone();
        let seq = self.inflight.next_seq();
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&env.output_topic, self.inflight.opaque(seq));
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(v) = msg.payload() {
            record = record.payload(v);
        }
        if let Some(h) = msg.headers() {
            record = record.headers(h.detach());
        }
        self.counters.decision(Decision::Success, 0);
        self.written[0].inc();
        self.inflight
            .track(msg.offset(), msg.timestamp().to_millis(), clock, 1);
        self.inflight.send_or_stop(record).await;
    }
}
