//! Endpoints and their lanes: where records wait for their turn, and the attempt loop that
//! delivers each one (retries, backoff, dead letter).
//!
//! An endpoint has `webhooks.concurrency` lanes; a record goes to lane `hash(device_id) % lanes`
//! and each lane sends one request at a time, in arrival order. So an endpoint sees at most
//! `concurrency` requests at once, and a device's records reach it in order (a record being
//! retried holds back the later ones of its lane — that is the price of the order). Lanes are
//! shared by all partitions of the endpoint's consumer group; each partition hands its records
//! over in offset order.
//!
//! Every attempt's result feeds the endpoint's health ([`super::outage`]): while the endpoint is
//! down one lane probes with its record and the others hold theirs, so their queues fill, the
//! partition readers stop handing over and the endpoint's group stops reading.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dead_letter::{
    self, EndpointRef, RecordSource, WebhookDeadLetter, HEADER_ATTEMPTS, HEADER_ENDPOINT,
    HEADER_ERROR,
};
use super::health::{Gate, HealthPolicy};
use super::outage::EndpointHealth;
use super::payload::lane_of;
use super::policy::{Attempt, RetryPolicy, Verdict};
use super::request::{self, Request, Sent};
use super::sign::Secret;
use super::trace::{Delivered, DeliverySpan};
use crate::events::webhook::{Attempted, WebhookDeadLettered, WebhookRetry};
use crate::metrics::Metrics;

/// Records waiting per lane before a partition's hand-over waits (back-pressure).
const LANE_CAPACITY: usize = 32;

/// One record on its way to its endpoints.
pub struct Delivery {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub idempotency_key: String,
    pub device_id: String,
    pub body: Vec<u8>,
    /// The URL record as read, for dead letters.
    pub record: Vec<u8>,
    /// Endpoints still to finish; the last one reports `seq` on `finished`.
    pub remaining: AtomicUsize,
    pub seq: u64,
    pub finished: mpsc::UnboundedSender<u64>,
    /// Cancelled when the partition is given up (drain deadline passed, fatal error): attempts
    /// stop at once, and the record is left to the partition's next owner.
    pub abandon: CancellationToken,
    /// [`QUEUED`], [`STARTED`] or [`SKIPPED`].
    pub state: AtomicU8,
    /// The trace context the URL record carries, when tracing is on and the record is traced:
    /// the parent of its delivery spans.
    pub trace: Option<opentelemetry::Context>,
}

/// No lane has started the record yet.
pub const QUEUED: u8 = 0;
/// A lane has started attempts: a stopping partition waits for it (within its drain deadline).
pub const STARTED: u8 = 1;
/// The partition is stopping and no lane had started the record: lanes skip it, and the
/// partition does not wait for it (its next owner sends it).
pub const SKIPPED: u8 = 2;

impl Delivery {
    fn finish_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.finished.send(self.seq);
        }
    }

    /// Called by a lane before the first attempt: false when the record was skipped.
    fn try_start(&self) -> bool {
        match self
            .state
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == STARTED,
        }
    }

    /// Called by a stopping partition: true when no lane had started the record (it is skipped).
    pub fn try_skip(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, SKIPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// One configured endpoint.
pub struct Endpoint {
    pub index: usize,
    /// Up or down, and the endpoint's gauges.
    pub health: EndpointHealth,
    pub url: reqwest::Url,
    pub origin: String,
    pub regions: Vec<String>,
    pub secret: Option<Secret>,
    lanes: Vec<mpsc::Sender<Arc<Delivery>>>,
}

impl Endpoint {
    /// Hands a record to its device's lane, waiting while the lane is full.
    pub async fn enqueue(&self, d: Arc<Delivery>) -> Result<(), ()> {
        let lane = lane_of(&d.device_id, self.lanes.len());
        self.lanes[lane].send(d).await.map_err(|_| ())
    }
}

/// What every lane shares.
pub struct LaneEnv {
    pub client: reqwest::Client,
    pub policy: RetryPolicy,
    pub health: HealthPolicy,
    pub producer: Arc<FutureProducer>,
    pub dead_letter_topic: String,
    pub metrics: Metrics,
    /// Cancelled when a dead letter cannot be written: the service stops without committing
    /// past it.
    pub fatal: CancellationToken,
    /// Traces (`[tracing]`); `None` when off.
    pub otel: Option<Arc<crate::otel::Otel>>,
}

/// Pre-resolved metric children of the attempt loop.
struct Counters {
    delivered: (IntCounter, Histogram),
    retried: (IntCounter, Histogram),
    dead_lettered: (IntCounter, Histogram),
    failed: (IntCounter, Histogram),
}

impl Counters {
    fn new(m: &Metrics) -> Self {
        let pair = |r: &str| {
            (
                m.webhook.requests.with_label_values(&[r]),
                m.webhook.latency.with_label_values(&[r]),
            )
        };
        Counters {
            delivered: pair("delivered"),
            retried: pair("retried"),
            dead_lettered: pair("dead_lettered"),
            failed: pair("failed"),
        }
    }
}

/// Creates an endpoint and starts its lanes on the current runtime. The lanes end when the
/// endpoint is dropped (and their queues are empty).
pub fn start(
    env: Arc<LaneEnv>,
    index: usize,
    name: &str,
    url: reqwest::Url,
    regions: Vec<String>,
    secret: Option<Secret>,
    lanes: usize,
) -> Arc<Endpoint> {
    let origin = dead_letter::origin(&url);
    let mut senders = Vec::with_capacity(lanes);
    let mut receivers = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, rx) = mpsc::channel(LANE_CAPACITY);
        senders.push(tx);
        receivers.push(rx);
    }
    let health = EndpointHealth::new(name, &origin, env.health, &env.metrics);
    let endpoint = Arc::new(Endpoint {
        index,
        health,
        url,
        origin,
        regions,
        secret,
        lanes: senders,
    });
    for (lane, rx) in receivers.into_iter().enumerate() {
        // The lane holds a weak reference: dropping the endpoint closes its queues.
        tokio::spawn(run_lane(env.clone(), Arc::downgrade(&endpoint), lane, rx));
    }
    endpoint
}

enum Finished {
    Delivered,
    DeadLettered,
    Abandoned,
}

async fn run_lane(
    env: Arc<LaneEnv>,
    endpoint: std::sync::Weak<Endpoint>,
    lane: usize,
    mut rx: mpsc::Receiver<Arc<Delivery>>,
) {
    let counters = Counters::new(&env.metrics);
    while let Some(d) = rx.recv().await {
        let Some(ep) = endpoint.upgrade() else { break };
        if d.abandon.is_cancelled() || !d.try_start() {
            continue;
        }
        let at = Delivered {
            endpoint: ep.health.name(),
            origin: &ep.origin,
            topic: &d.topic,
            partition: d.partition,
            offset: d.offset,
        };
        let mut span = DeliverySpan::start(env.otel.as_deref(), d.trace.as_ref(), at);
        let finished = deliver(&env, &counters, &ep, (lane, &mut span), &d).await;
        // Whatever became of the record, this lane no longer probes with it.
        ep.health.release(lane);
        span.finish(match finished {
            Finished::Delivered => "delivered",
            Finished::DeadLettered => "dead_lettered",
            Finished::Abandoned => "abandoned",
        });
        if !matches!(finished, Finished::Abandoned) {
            d.finish_one();
        }
    }
}

/// Attempts until delivered, given up (then dead-lettered) or abandoned. While the endpoint is
/// up, failures count towards `max_attempts`; while it is down, the record waits, or (as the
/// probe) is retried with backoff uncounted; once the outage is longer than `outage_max_secs`,
/// one failed attempt is the record's dead letter.
async fn deliver(
    env: &LaneEnv,
    counters: &Counters,
    ep: &Endpoint,
    (lane, span): (usize, &mut DeliverySpan),
    d: &Delivery,
) -> Finished {
    // Every attempt (the `X-Aepiot-Attempt` header, the dead letter's count), those counted
    // against `max_attempts` (made while the endpoint was up), and the probe's failures.
    let (mut tries, mut counted, mut probes) = (0, 0, 0);
    loop {
        let changed = ep.health.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let gate = ep.health.gate(lane);
        if let Gate::Wait(at_most) = gate {
            // A record that waited out an outage starts its count afresh.
            counted = 0;
            tokio::select! {
                biased;
                _ = d.abandon.cancelled() => return Finished::Abandoned,
                _ = changed => {}
                _ = tokio::time::sleep(at_most) => {}
            }
            continue;
        }
        tries += 1;
        if gate == Gate::Attempt {
            counted += 1;
        } else {
            counted = 0;
        }
        let (sent, elapsed) = attempt(env, ep, d, tries, span).await;
        let Some(sent) = sent else {
            observe(&counters.failed, elapsed);
            return Finished::Abandoned;
        };
        let jitter = rand::random::<f64>();
        let delay = match env.policy.decide(counted.max(1), &sent.attempt, jitter) {
            Verdict::Delivered => {
                ep.health.on_answer();
                observe(&counters.delivered, elapsed);
                return Finished::Delivered;
            }
            Verdict::GiveUp { retryable: false } => {
                // Refused: the endpoint answered, it is up; the record is its own failure.
                if matches!(sent.attempt, Attempt::Response { .. }) {
                    ep.health.on_answer();
                }
                observe(&counters.dead_lettered, elapsed);
                return dead_letter(
                    env,
                    ep,
                    (d, &*span),
                    tries,
                    false,
                    &sent.error,
                    &sent.attempt,
                )
                .await;
            }
            verdict => {
                ep.health.on_failure();
                if gate == Gate::LastChance {
                    observe(&counters.dead_lettered, elapsed);
                    let error = format!(
                        "endpoint down for longer than webhooks.outage_max_secs; last error: {}",
                        sent.error
                    );
                    return dead_letter(env, ep, (d, &*span), tries, true, &error, &sent.attempt)
                        .await;
                }
                if !ep.health.is_up() {
                    // Down (now, or already as the probe): no count, no dead letter.
                    probes += 1;
                    env.policy.probe_delay(probes, &sent.attempt, jitter)
                } else {
                    match verdict {
                        Verdict::Retry(delay) => delay,
                        _ => {
                            observe(&counters.dead_lettered, elapsed);
                            return dead_letter(
                                env,
                                ep,
                                (d, &*span),
                                tries,
                                true,
                                &sent.error,
                                &sent.attempt,
                            )
                            .await;
                        }
                    }
                }
            }
        };
        observe(&counters.retried, elapsed);
        WebhookRetry {
            at: attempted(ep, d),
            attempt: tries,
            error: &sent.error,
            delay_ms: delay.as_millis() as u64,
        }
        .emit(&env.metrics);
        tokio::select! {
            biased;
            _ = d.abandon.cancelled() => return Finished::Abandoned,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One request with the delivery span's trace context: its result (`None`: abandoned) and seconds.
async fn attempt(
    env: &LaneEnv,
    ep: &Endpoint,
    d: &Delivery,
    tries: u32,
    span: &mut DeliverySpan,
) -> (Option<Sent>, f64) {
    let request = Request {
        url: &ep.url,
        body: &d.body,
        webhook_id: &d.idempotency_key,
        secret: ep.secret.as_ref(),
        attempt: tries,
        traceparent: span.traceparent(),
        tracestate: span.tracestate(),
    };
    let started = Instant::now();
    env.metrics.webhook.in_flight.inc();
    let sent = tokio::select! {
        biased;
        _ = d.abandon.cancelled() => None,
        sent = request::post(&env.client, &request) => Some(sent),
    };
    env.metrics.webhook.in_flight.dec();
    if let Some(sent) = &sent {
        span.attempted(tries, sent);
    }
    (sent, started.elapsed().as_secs_f64())
}

/// The endpoint and record of an attempt, as events name them.
fn attempted<'a>(ep: &'a Endpoint, d: &'a Delivery) -> Attempted<'a> {
    Attempted {
        endpoint: ep.index,
        origin: &ep.origin,
        key: &d.idempotency_key,
    }
}

fn observe(c: &(IntCounter, Histogram), secs: f64) {
    c.0.inc();
    c.1.observe(secs);
}

/// Writes the dead letter and waits for the broker's ack.
async fn dead_letter(
    env: &LaneEnv,
    ep: &Endpoint,
    (d, span): (&Delivery, &DeliverySpan),
    attempts: u32,
    retryable: bool,
    error: &str,
    attempt: &Attempt,
) -> Finished {
    let failed_at = crate::core::time::format_rfc3339_ms(now_ms());
    let http_status = match attempt {
        Attempt::Response { status, .. } => Some(*status),
        _ => None,
    };
    let json = WebhookDeadLetter {
        endpoint: EndpointRef {
            index: ep.index,
            origin: &ep.origin,
        },
        error,
        http_status,
        attempts,
        retryable,
        idempotency_key: &d.idempotency_key,
        failed_at: &failed_at,
        source: RecordSource {
            topic: &d.topic,
            partition: d.partition,
            offset: d.offset,
        },
        record: &d.record,
    }
    .to_json();
    let index = ep.index.to_string();
    let attempts_text = attempts.to_string();
    let partition = d.partition.to_string();
    let offset = d.offset.to_string();
    let headers = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: HEADER_ENDPOINT,
            value: Some(index.as_str()),
        })
        .insert(Header {
            key: HEADER_ERROR,
            value: Some(dead_letter::truncate(error, 512)),
        })
        .insert(Header {
            key: HEADER_ATTEMPTS,
            value: Some(attempts_text.as_str()),
        })
        .insert(Header {
            key: "aepiot.source.topic",
            value: Some(&*d.topic),
        })
        .insert(Header {
            key: "aepiot.source.partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "aepiot.source.offset",
            value: Some(offset.as_str()),
        });
    // Traced: the dead letter continues the trace with the delivery span as parent.
    let headers = span.kafka_headers(headers);
    let record = FutureRecord::to(&env.dead_letter_topic)
        .key(d.device_id.as_bytes())
        .payload(&json)
        .headers(headers);
    let result = tokio::select! {
        biased;
        _ = d.abandon.cancelled() => return Finished::Abandoned,
        r = env.producer.send(record, Timeout::After(Duration::from_secs(60))) => r,
    };
    match result {
        Ok(_) => {
            WebhookDeadLettered {
                at: attempted(ep, d),
                attempts,
                error: &dead_letter::truncate(error, 300),
                trace_id: crate::otel::trace_id_of(d.trace.as_ref()),
            }
            .emit(&env.metrics);
            Finished::DeadLettered
        }
        Err((e, _)) => {
            tracing::error!(
                topic = %env.dead_letter_topic,
                error = %e,
                "cannot write a webhook dead letter; stopping without committing past it"
            );
            env.fatal.cancel();
            Finished::Abandoned
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
