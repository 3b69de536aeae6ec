//! The fuzz targets' oracles on every committed fuzz input, in the ordinary test run: each
//! target's body is one function of fuzz/fuzz_targets/check.rs (`check::parse_event`,
//! `check::engine`), which the target calls too, so this runs exactly the target's checks with the
//! target's settings (the engine's small limits: 3 URLs per 60 s, a 10 s cache). Inputs: the seeds
//! (`fuzz/seeds/<target>/`) and the inputs that once made a target fail (`fuzz/regressions/<target>/`,
//! none so far: put a crash input from `fuzz/artifacts/<target>/` there, next to its fix).
//! `scripts/fuzz.sh` runs the targets proper.

use std::path::{Path, PathBuf};

#[path = "../fuzz/fuzz_targets/check.rs"]
mod check;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// Runs `oracle` on `data`, naming the input if it fails.
fn replay<T>(path: &Path, data: &[u8], oracle: impl Fn(&[u8]) -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| oracle(data))) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fuzz input {} failed its oracle", path.display());
            std::panic::resume_unwind(e)
        }
    }
}

#[test]
fn parse_event_inputs() {
    let all = inputs("parse_event");
    assert!(all.len() >= 10, "fuzz/seeds/parse_event is missing");
    let mut total = check::ParseSummary::default();
    for (path, data) in &all {
        let s = replay(path, data, check::parse_event);
        total.accepted += s.accepted;
        total.rejected += s.rejected;
        total.urls += s.urls;
    }
    // The seeds reach both sides of the oracle: accepted events (5 URLs each) and rejections.
    assert!(total.accepted >= 5, "{total:?}");
    assert!(total.rejected >= 1, "{total:?}");
    assert_eq!(total.urls, total.accepted * 5, "{total:?}");
}

#[test]
fn engine_inputs() {
    let all = inputs("engine");
    assert!(!all.is_empty(), "fuzz/seeds/engine is missing");
    let mut total = check::EngineSummary::default();
    for (path, data) in &all {
        total += replay(path, data, check::engine);
    }
    // Every path of the engine is reached by the seeds (the target's small limits make
    // rate_limited and cached occur; long invalid records make truncated dead letters).
    assert!(
        total.success > 0
            && total.cached > 0
            && total.rate_limited > 0
            && total.dead_letters > 0
            && total.truncated_dead_letters > 0,
        "the seeds miss an outcome: {total:?}"
    );
}
