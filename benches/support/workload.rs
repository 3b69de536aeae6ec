//! The deterministic synthetic stream of `/work/shared/reference/seed_bench.py`, byte for byte,
//! and the loop that feeds it through [`Engine::process`]. Shared by `benches/core.rs` (criterion)
//! and `examples/core_bench.rs` (the seed_bench.py twin), via `#[path]`.
//!
//! Payloads are the exact `json.dumps(...)` text of seed_bench.py's `events(n, devices)`
//! (separators `", "` / `": "`, `value` as Python's float repr), including the constant
//! `"timestamp": "2026-11-26T10:00:00Z"`. seed_bench.py passes `now = t0 + i ms` to the seed; here
//! `RecordMeta { record_time_ms: t0 + i, now_ms: t0 + i }`. Because the payload carries a
//! timestamp, the engine judges every event at 10:00:00.000Z (the event time wins over the record
//! time), while the seed judges event i at 10:00:00 + i ms. On the benchmarked workloads the two
//! give identical statuses (see BENCHMARKS.md); `Variant::NoTimestamp` drops the field so that the
//! engine falls back to `record_time_ms` and uses exactly the seed's clock, as a cross-check.
#![allow(dead_code)]

use std::hint::black_box;
use std::io::Write;
use std::ops::Range;

use aepiot_stream::core::{Decision, Engine, EngineSettings, Output, RecordMeta, Shared, Source};

/// seed_bench.py's `t0 = datetime(2026, 11, 26, 10)`: 2026-11-26T10:00:00Z in epoch ms.
pub const T0_MS: i64 = 1_795_687_200_000;

/// The binary's allocator (feature `jemalloc`, default), so the figures are the shipped build's.
/// Here because every bench and example that times the engine includes this file.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Record metadata of event `i`: record time and wall clock `T0_MS + i` ms (the seed bench's
/// clock), read from partition 0 at offset `i`, as in the service.
pub fn meta(i: usize) -> RecordMeta<'static> {
    let t = T0_MS + i as i64;
    RecordMeta {
        record_time_ms: Some(t),
        now_ms: t,
        source: Some(Source::Kafka {
            topic: "iot-events",
            partition: 0,
            offset: i as i64,
        }),
    }
}

const TYPES: [&str; 3] = ["temperature_alert", "vibration_anomaly", "pressure_drop"];
const SEVERITIES: [&str; 4] = ["low", "normal", "high", "critical"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Byte-identical to seed_bench.py (the benchmarked workload).
    SeedBytes,
    /// The same without the `timestamp` field: event time = record time = seed's `now`.
    NoTimestamp,
}

/// `n` pre-serialized payloads in one buffer.
pub struct Workload {
    pub events: usize,
    pub devices: usize,
    buf: Vec<u8>,
    spans: Vec<Range<usize>>,
}

impl Workload {
    pub fn new(events: usize, devices: usize, variant: Variant) -> Self {
        assert!(devices > 0, "devices must be positive");
        let mut buf = Vec::with_capacity(events * 200);
        let mut spans = Vec::with_capacity(events);
        for i in 0..events {
            let d = i % devices;
            let start = buf.len();
            // round(20 + (i % 1000) / 10, 1) printed by Python: always one decimal.
            let tenths = 200 + i % 1000;
            write!(
                buf,
                r#"{{"device_id": "dev-{d:07}", "event_type": "{}", "severity": "{}", "location": "Plant {} / Line {}", "value": {}.{}"#,
                TYPES[i % 3],
                SEVERITIES[(i / 7) % 4],
                d % 17,
                d % 5,
                tenths / 10,
                tenths % 10,
            )
            .expect("write to Vec");
            if variant == Variant::SeedBytes {
                buf.extend_from_slice(br#", "timestamp": "2026-11-26T10:00:00Z""#);
            }
            buf.extend_from_slice(br#", "region": "europe"}"#);
            spans.push(start..buf.len());
        }
        Workload {
            events,
            devices,
            buf,
            spans,
        }
    }

    pub fn payload(&self, i: usize) -> &[u8] {
        &self.buf[self.spans[i].clone()]
    }

    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|r| &self.buf[r.clone()])
    }
}

/// A fresh engine with the default (seed) settings.
pub fn engine() -> Engine {
    Engine::new(Shared::new(EngineSettings::default()))
}

/// Status counts, in first-seen order like seed_bench.py's `counts` dict.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub statuses: Vec<(&'static str, u64)>,
    /// Bytes of encoded output (URL records and dead letters).
    pub output_bytes: u64,
}

impl Counts {
    fn add(&mut self, status: &'static str) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
    }

    /// `{"success": 100000, "cached": 25713}` as Python's json.dumps prints a dict.
    pub fn statuses_json(&self) -> String {
        let items: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("\"{s}\": {n}"))
            .collect();
        format!("{{{}}}", items.join(", "))
    }
}

/// Runs the whole workload through `engine`. Per event: parse → rate limit → dedupe → URLs →
/// JSON encoding (the last two for `success` only, as the service writes only those).
/// Each record carries a Kafka source, as in the service.
#[inline(never)]
pub fn run(engine: &mut Engine, w: &Workload, counts: &mut Counts) {
    for (i, payload) in w.payloads().enumerate() {
        let meta = meta(i);
        let status = match engine.process(Some(black_box(payload)), &meta) {
            Output::Record { status, json, .. } => {
                counts.output_bytes += black_box(json).len() as u64;
                status.as_str()
            }
            Output::Suppressed { status, .. } => status.as_str(),
            Output::DeadLetter { json, .. } => {
                counts.output_bytes += black_box(json).len() as u64;
                "dead_letter"
            }
        };
        counts.add(status);
    }
}

/// Just the loop, without counting by name (for the timed criterion runs).
#[inline(never)]
pub fn run_quiet(engine: &mut Engine, w: &Workload) -> u64 {
    let mut successes = 0u64;
    for (i, payload) in w.payloads().enumerate() {
        let meta = meta(i);
        if let Output::Record { status, json, .. } = engine.process(Some(black_box(payload)), &meta)
        {
            black_box(json);
            successes += (status == Decision::Success) as u64;
        }
    }
    successes
}
