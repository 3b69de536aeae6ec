//! The fuzz targets' oracles (fuzz/fuzz_targets/check.rs) on every committed fuzz input, in the
//! ordinary test run: the seeds (`fuzz/seeds/<target>/`) and the inputs that once made a target
//! fail (`fuzz/regressions/<target>/`, none so far: put a crash input from
//! `fuzz/artifacts/<target>/` there, next to its fix). `scripts/fuzz.sh` runs the targets proper.

use std::path::{Path, PathBuf};

use aepiot_stream::core::event::parse_event;
use aepiot_stream::core::urls::{UrlBuilder, UrlSet, UrlSettings};
use aepiot_stream::core::{Engine, EngineSettings, Output, RecordMeta, Shared};

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
    out
}

#[test]
fn parse_event_inputs() {
    let b = UrlBuilder::new(UrlSettings::default());
    let all = inputs("parse_event");
    assert!(all.len() >= 10, "fuzz/seeds/parse_event is missing");
    let mut accepted = 0;
    for (path, data) in all {
        if let Ok(event) = parse_event(Some(&data), 1 << 20) {
            let mut set = UrlSet::default();
            b.build(&event, &mut set);
            let n = check::urls_match_event(&event, set.urls(), set.regional(), b.settings());
            assert_eq!(n, 5, "{}", path.display());
            accepted += 1;
        }
    }
    assert!(accepted >= 5);
}

#[test]
fn engine_inputs() {
    let shared = Shared::new(EngineSettings {
        emit_suppressed: true,
        max_dead_letter_payload_bytes: 100,
        max_record_bytes: 2048,
        ..Default::default()
    });
    let all = inputs("engine");
    assert!(!all.is_empty(), "fuzz/seeds/engine is missing");
    for (path, data) in all {
        let mut engine = Engine::new(shared.clone());
        for (i, piece) in data.split(|b| *b == b'\n').enumerate() {
            let payload = (!piece.is_empty()).then_some(piece);
            let meta = RecordMeta {
                record_time_ms: None,
                now_ms: 1_790_000_000_000 + i as i64 * 7919,
                source: None,
            };
            match engine.process(payload, &meta) {
                Output::Record { json, urls, .. } => {
                    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
                    if urls > 0 {
                        for u in v["urls"].as_array().unwrap() {
                            check::three_params_cheap(u.as_str().unwrap());
                            check::three_params(u.as_str().unwrap(), &shared.settings.urls);
                        }
                    }
                }
                Output::DeadLetter { json, .. } => {
                    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
                    assert!(v["error"]["kind"].is_string(), "{}", path.display());
                }
                Output::Suppressed { .. } => panic!("suppressed with emit_suppressed"),
            }
        }
    }
}
