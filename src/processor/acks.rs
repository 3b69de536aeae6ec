//! Delivery acknowledgements, routed from librdkafka's delivery callback back to the partition
//! worker that produced the record.
//!
//! Each record carries a `usize` opaque (worker id << 32 | sequence number) instead of a boxed
//! future, so producing allocates nothing per record for tracking. The callback runs on the
//! producer's polling thread and only sends the ack down the worker's channel.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Message, Statistics};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::ack_wait::AckWait;
use crate::events::kafka::{DeliveryRefused, ProducerError};
use crate::metrics::Metrics;

const _: () = assert!(
    usize::BITS >= 64,
    "the delivery opaque packs two u32s into a usize"
);

/// One acknowledgement: the record's sequence number within its worker, and what failed if the
/// broker did not take it.
#[derive(Debug)]
pub struct Ack {
    pub seq: u32,
    pub error: Option<Box<Failed>>,
}

/// A record the broker did not take: enough of it to write its dead letter.
#[derive(Debug)]
pub struct Failed {
    pub error: KafkaError,
    pub topic: String,
    /// The first [`FAILED_PAYLOAD_PREFIX`] bytes of the record's value.
    pub payload: Vec<u8>,
    pub payload_len: usize,
    /// The record's trace context (`[tracing]`): its dead letter carries it on.
    pub trace: Option<crate::otel::propagate::Carried>,
}

/// Bytes of a failed record's value kept for its dead letter (which cuts it further to fit).
pub const FAILED_PAYLOAD_PREFIX: usize = 64 << 10;

impl Failed {
    pub fn new(error: KafkaError, topic: &str, payload: Option<&[u8]>) -> Self {
        let payload = payload.unwrap_or_default();
        Failed {
            error,
            topic: topic.to_owned(),
            payload: payload[..payload.len().min(FAILED_PAYLOAD_PREFIX)].to_vec(),
            payload_len: payload.len(),
            trace: None,
        }
    }
}

/// Where acks go: one channel per live worker.
#[derive(Default)]
pub struct AckRouter {
    routes: DashMap<u32, UnboundedSender<Ack>>,
    next_id: AtomicU32,
}

impl AckRouter {
    /// Registers a new worker; acks for its records arrive on the returned receiver.
    pub fn register(&self) -> (u32, UnboundedReceiver<Ack>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded_channel();
        self.routes.insert(id, tx);
        (id, rx)
    }

    pub fn unregister(&self, id: u32) {
        self.routes.remove(&id);
    }

    pub fn opaque(worker: u32, seq: u32) -> usize {
        ((worker as usize) << 32) | seq as usize
    }

    fn route(&self, opaque: usize, error: Option<Box<Failed>>) {
        let (worker, seq) = ((opaque >> 32) as u32, opaque as u32);
        // A worker that is gone (revoked after its drain deadline) no longer needs the ack.
        if let Some(tx) = self.routes.get(&worker) {
            let _ = tx.send(Ack { seq, error });
        }
    }
}

/// A producer's context: routes acks (every cluster's producer into the same router, so a worker
/// tracks its outputs wherever they went) and reports its cluster's metrics.
pub struct ProducerCtx {
    pub router: Arc<AckRouter>,
    pub metrics: Metrics,
    /// `main`, or the name in `[clusters]`: the `cluster` label.
    cluster: String,
    /// Acknowledgements so far (successful or not), for the ack wait.
    acked: AtomicU64,
    wait: Mutex<AckWait>,
}

impl ProducerCtx {
    pub fn new(router: Arc<AckRouter>, metrics: Metrics, cluster: &str) -> Self {
        // The series exist at 0 from the start.
        metrics.producer_errors.with_label_values(&[cluster]);
        metrics
            .cluster_outputs_waiting
            .with_label_values(&[cluster]);
        metrics.cluster_ack_wait.with_label_values(&[cluster]);
        ProducerCtx {
            router,
            metrics,
            cluster: cluster.to_owned(),
            acked: AtomicU64::new(0),
            wait: Mutex::new(AckWait::default()),
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    fn is_main(&self) -> bool {
        self.cluster == crate::residency::MAIN_CLUSTER
    }
}

impl ClientContext for ProducerCtx {
    fn stats(&self, statistics: Statistics) {
        // msg_cnt: produced and not yet delivery-reported (queued or awaiting the broker's ack).
        let waiting = statistics.msg_cnt;
        if self.is_main() {
            self.metrics.producer_queue_messages.set(waiting as i64);
        }
        let label = [self.cluster.as_str()];
        self.metrics
            .cluster_outputs_waiting
            .with_label_values(&label)
            .set(waiting as i64);
        let acked = self.acked.load(Ordering::Relaxed);
        let secs = self.wait.lock().expect("ack wait lock").observe(
            crate::kafka::clock::now_ms(),
            waiting,
            acked,
        );
        self.metrics
            .cluster_ack_wait
            .with_label_values(&label)
            .set(secs);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        ProducerError {
            cluster: &self.cluster,
            error: &error,
            reason,
        }
        .emit(&self.metrics);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        let failed = result.as_ref().err().map(|(e, m)| {
            DeliveryRefused {
                cluster: &self.cluster,
            }
            .emit(&self.metrics);
            let mut failed = Failed::new(e.clone(), m.topic(), m.payload());
            failed.trace = m
                .headers()
                .and_then(crate::otel::propagate::Carried::from_headers);
            Box::new(failed)
        });
        self.router.route(opaque, failed);
    }
}

/// The main cluster's producer (also what renews it under exactly-once).
pub fn main_producer(
    client: &rdkafka::ClientConfig,
    router: &Arc<AckRouter>,
    metrics: &Metrics,
) -> anyhow::Result<rdkafka::producer::ThreadedProducer<ProducerCtx>> {
    client
        .create_with_context(ProducerCtx::new(
            router.clone(),
            metrics.clone(),
            crate::residency::MAIN_CLUSTER,
        ))
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))
}
