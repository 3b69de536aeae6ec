//! Per-event cost of the core path (`Engine::process`: parse → rate limit → dedupe → URLs → JSON)
//! on exactly seed_bench.py's synthetic stream (see `support/workload.rs`).
//!
//!   cargo bench --bench core
//!
//! One criterion iteration = the whole pre-serialized workload through a fresh engine (state
//! matters: the status mix depends on it), timed with `iter_custom` so that building and dropping
//! the engine stay outside the measurement. Throughput is per event.

#[path = "support/workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use workload::{Counts, Variant, Workload};

/// (events, devices): the workloads of benches/core_vs_seed.sh.
const WORKLOADS: [(usize, usize, &str); 2] = [
    (200_000, 10_000, "10k_devices"),
    (1_000_000, 1_000_000, "1M_devices"),
];

fn core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/engine_process");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .nresamples(10_000);
    for (events, devices, name) in WORKLOADS {
        let w = Workload::new(events, devices, Variant::SeedBytes);

        // Once, untimed: the status counts, to compare with seed_bench.py's `statuses`.
        let mut engine = workload::engine();
        let mut counts = Counts::default();
        workload::run(&mut engine, &w, &mut counts);
        drop(engine);
        println!(
            "core/engine_process/{name}: {{\"events\": {events}, \"devices\": {devices}, \"statuses\": {}, \"output_bytes\": {}}}",
            counts.statuses_json(),
            counts.output_bytes
        );

        group.throughput(Throughput::Elements(events as u64));
        group.bench_with_input(
            BenchmarkId::new(name, format!("{events}_events")),
            &w,
            |b, w| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut engine = workload::engine();
                        let start = Instant::now();
                        std::hint::black_box(workload::run_quiet(&mut engine, w));
                        total += start.elapsed();
                        drop(engine);
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
