//! `aepiot-stream simulate`: a load generator that produces [`crate::generate`] events to a
//! topic, keyed by device_id, at a target rate, and reports what the broker acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;

use crate::generate::{Generator, Profile};
use crate::kafka::send::send_waiting;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub brokers: String,
    pub topic: String,
    pub profile: Profile,
    pub devices: u64,
    /// Events per second; 0 = as fast as possible.
    pub rate: u64,
    /// Stop after this many events…
    pub count: Option<u64>,
    /// …or after this long (whichever comes first; at least one must be set).
    pub duration: Option<Duration>,
    pub seed: u64,
    pub invalid_ratio: f64,
    /// Pad valid events to about this many bytes (0: their natural size, ~200 B).
    pub event_bytes: usize,
    /// Extra librdkafka properties.
    pub kafka: Vec<(String, String)>,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimulateReport {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub invalid_sent: u64,
    pub seconds: f64,
    pub events_per_s: f64,
}

#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    failed: AtomicU64,
}

struct Ctx(Arc<Counts>);
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let c = if r.is_ok() {
            &self.0.acked
        } else {
            &self.0.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Produces events until the count or duration is reached, then flushes. Blocking: call it from
/// a thread or `spawn_blocking`.
pub fn simulate(
    opts: &SimulateOptions,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<SimulateReport> {
    anyhow::ensure!(
        opts.count.is_some() || opts.duration.is_some(),
        "give --count or --duration"
    );
    let counts = Arc::new(Counts::default());
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &opts.brokers)
        .set("linger.ms", "10")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "500000");
    for (k, v) in &opts.kafka {
        cfg.set(k, v);
    }
    let producer: ThreadedProducer<Ctx> = cfg.create_with_context(Ctx(counts.clone()))?;
    let mut generator = Generator::new(opts.profile, opts.devices, opts.seed, opts.invalid_ratio)
        .with_event_bytes(opts.event_bytes);
    let bar = if opts.progress {
        ProgressBar::new(opts.count.unwrap_or(0))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} events [{elapsed_precise}] {per_sec} {msg}",
        )
        .expect("valid template"),
    );
    // The topic's metadata first, so that the rate is offered from the first event on: without
    // it the first events would queue for the metadata round trip and reach the broker in a burst.
    crate::kafka::warm::warm_up(
        producer.client(),
        std::slice::from_ref(&opts.topic),
        Duration::from_secs(10),
    );
    let start = Instant::now();
    let (mut sent, mut invalid_sent) = (0u64, 0u64);
    let now_ms = || crate::kafka::clock::now_ms();
    'outer: loop {
        if stop.is_cancelled() || opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        // Pacing: how many events should have been sent by now.
        let due = match opts.rate {
            0 => sent + 1000,
            r => (start.elapsed().as_secs_f64() * r as f64) as u64 + 1,
        };
        let due = opts.count.map_or(due, |c| due.min(c));
        if sent >= due {
            if opts.count.is_some_and(|c| sent >= c) {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let ts = now_ms();
        while sent < due {
            let g = generator.next(ts);
            let record = BaseRecord::to(&opts.topic)
                .key(g.key.as_bytes())
                .payload(&g.payload);
            match send_waiting(&producer, record, || stop.is_cancelled()) {
                Ok(true) => {}
                Ok(false) => break 'outer,
                Err(e) => return Err(anyhow::anyhow!("cannot produce to {}: {e}", opts.topic)),
            }
            sent += 1;
            invalid_sent += (!g.valid) as u64;
        }
        bar.set_position(sent);
    }
    producer.flush(Duration::from_secs(60))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    Ok(SimulateReport {
        sent,
        acked: counts.acked.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        invalid_sent,
        seconds,
        events_per_s: (sent as f64 / seconds.max(1e-9)).round(),
    })
}
