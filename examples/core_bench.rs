//! The Rust twin of `/work/shared/reference/seed_bench.py`: the same synthetic stream, timed
//! through the core engine, printing the same JSON result line.
//!
//!   cargo run --release --example core_bench -- N DEVICES [--no-timestamp] [--dump]
//!
//! `--no-timestamp`: drop the payload's `timestamp` field, so events are judged at the record time
//! `t0 + i ms` exactly like the seed (a semantics cross-check; not the benchmarked workload).
//! `--dump`: print the payloads one per line instead of running (to compare bytes with Python).
//! `--repeat K`: run K times (fresh engine each) before printing the last result; for profiling.
//! `--digest`: print an XXH3 digest of every output (status + encoded JSON) instead of timing, to
//! check that a change to the engine leaves its output byte-for-byte unchanged.
//! `--digest-file PATH`: the same over the lines of a JSON Lines file (N and DEVICES are ignored).

#[path = "../benches/support/workload.rs"]
mod workload;

use std::io::{BufWriter, Write};
use std::time::Instant;

use workload::{Counts, Variant, Workload};

/// Python's `repr` of a float that `round(x, k)` produced.
fn py_float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn round_to(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn main() {
    let mut positional = Vec::new();
    let mut variant = Variant::SeedBytes;
    let mut dump = false;
    let mut digest = false;
    let mut digest_file = None;
    let mut repeat = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--no-timestamp" => variant = Variant::NoTimestamp,
            "--dump" => dump = true,
            "--digest" => digest = true,
            "--digest-file" => digest_file = Some(args.next().expect("--digest-file PATH")),
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--repeat K")
            }
            _ => positional.push(a),
        }
    }
    let [n, devices] = &positional[..] else {
        eprintln!("usage: core_bench N DEVICES [--no-timestamp] [--dump] [--repeat K]");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N is an integer");
    let devices: usize = devices.parse().expect("DEVICES is an integer");

    let w = Workload::new(n, devices, variant);
    if dump {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        for (i, p) in w.payloads().enumerate() {
            if i > 0 {
                out.write_all(b"\n").unwrap();
            }
            out.write_all(p).unwrap();
        }
        out.flush().unwrap();
        return;
    }

    if let Some(path) = digest_file {
        let text = std::fs::read(&path).expect("readable --digest-file");
        let lines: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        print_digest(lines.len(), 0, lines.into_iter());
        return;
    }
    if digest {
        print_digest(w.events, w.devices, w.payloads());
        return;
    }

    let mut result = (0.0, Counts::default());
    for _ in 0..repeat.max(1) {
        let mut engine = workload::engine();
        let mut counts = Counts::default();
        let start = Instant::now();
        workload::run(&mut engine, &w, &mut counts);
        let el = start.elapsed().as_secs_f64();
        // Dropping a million device states is not per-event work (seed_bench does not time it).
        drop(engine);
        result = (el, counts);
    }
    let (el, counts) = result;
    println!(
        "{{\"events\": {n}, \"devices\": {devices}, \"seconds\": {}, \"events_per_s\": {}, \"us_per_event\": {}, \"statuses\": {}}}",
        py_float(round_to(el, 3)),
        (n as f64 / el).round() as u64,
        py_float(round_to(el / n as f64 * 1e6, 2)),
        counts.statuses_json(),
    );
}

fn print_digest<'p>(events: usize, devices: usize, payloads: impl Iterator<Item = &'p [u8]>) {
    use aepiot_stream::core::Output;
    let mut engine = workload::engine();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut bytes = 0u64;
    // CORE_BENCH_DUMP=1: also print every output to stderr, to diff two builds.
    let show = std::env::var_os("CORE_BENCH_DUMP").is_some();
    for (i, payload) in payloads.enumerate() {
        let meta = workload::meta(i);
        let out = engine.process(Some(payload), &meta);
        if show {
            match &out {
                Output::Record { status, json, .. } => {
                    eprintln!("{} {}", status.as_str(), String::from_utf8_lossy(json))
                }
                Output::Suppressed { status, device_id } => {
                    eprintln!("{} {device_id}", status.as_str())
                }
                Output::DeadLetter { json, .. } => {
                    eprintln!("dead_letter {}", String::from_utf8_lossy(json))
                }
            }
        }
        match out {
            Output::Record { status, json, .. } => {
                h.update(status.as_str().as_bytes());
                h.update(json);
                bytes += json.len() as u64;
            }
            Output::Suppressed { status, device_id } => {
                h.update(status.as_str().as_bytes());
                h.update(device_id.as_bytes());
            }
            Output::DeadLetter { json, .. } => {
                h.update(b"dead_letter");
                h.update(json);
            }
        }
        h.update(b"\n");
    }
    println!(
        "{{\"events\": {}, \"devices\": {}, \"output_bytes\": {bytes}, \"xxh3\": \"{:016x}\"}}",
        events,
        devices,
        h.digest()
    );
}
