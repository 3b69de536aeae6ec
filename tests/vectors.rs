//! The golden vectors made from the seed's own Python: URLs byte for byte, statuses event for
//! event. Reads `../shared/vectors` (the project's source of truth) and the vector sets of other
//! seeds kept in `tests/data/` (made by `shared/reference/make_vectors.py SEED`).

use std::path::{Path, PathBuf};

use aepiot_stream::core::event::parse_event;
use aepiot_stream::core::urls::{stable_hash, UrlBuilder, UrlSet, UrlSettings};
use aepiot_stream::core::{Engine, EngineSettings, Output, RecordMeta, Shared};
use serde_json::Value;

fn vector_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vectors-seed-")
        })
        .collect();
    let shared = root.join("../shared/vectors");
    if shared.is_dir() {
        dirs.push(shared);
    }
    dirs.sort();
    assert!(dirs.len() >= 5, "vector sets missing: {dirs:?}");
    dirs
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn url_vectors_are_byte_exact() {
    let builder = UrlBuilder::new(UrlSettings::default());
    let mut set = UrlSet::default();
    let mut checked = 0;
    for dir in vector_dirs() {
        for v in lines(&dir.join("url_vectors.jsonl")) {
            let text = serde_json::to_string(&v["event"]).unwrap();
            let event = parse_event(Some(text.as_bytes()), 1 << 20).unwrap();
            builder.build(&event, &mut set);
            let want: Vec<&str> = v["urls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap())
                .collect();
            assert_eq!(
                set.urls().collect::<Vec<_>>(),
                want,
                "{}: {text}",
                dir.display()
            );

            for (region, candidates) in v["regional_candidates"].as_object().unwrap() {
                let mut with_region = v["event"].clone();
                with_region["region"] = Value::String(region.clone());
                let text = serde_json::to_string(&with_region).unwrap();
                let event = parse_event(Some(text.as_bytes()), 1 << 20).unwrap();
                builder.build(&event, &mut set);
                let candidates: Vec<&str> = candidates
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap())
                    .collect();
                // The default host choice is a stable hash of device_id over the candidates.
                let pick = (stable_hash(&event.device_id) % candidates.len() as u64) as usize;
                assert_eq!(
                    set.regional(),
                    candidates[pick],
                    "{}: region {region}: {text}",
                    dir.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 300);
}

fn replay(path: &Path) -> usize {
    let settings = EngineSettings {
        emit_suppressed: true,
        ..Default::default()
    };
    let mut engine = Engine::new(Shared::new(settings));
    let mut n = 0;
    for (i, v) in lines(path).iter().enumerate() {
        let text = serde_json::to_string(&v["event"]).unwrap();
        // A wall clock far from the event times: only the event's own time may matter.
        let meta = RecordMeta {
            record_time_ms: None,
            now_ms: 0,
            source: None,
        };
        let status = match engine.process(Some(text.as_bytes()), &meta) {
            Output::Record { status, .. } => status.as_str(),
            other => panic!("{}:{}: unexpected {other:?}", path.display(), i + 1),
        };
        assert_eq!(
            status,
            v["status"].as_str().unwrap(),
            "{}:{}: {text}",
            path.display(),
            i + 1
        );
        n += 1;
    }
    n
}

#[test]
fn stateful_scenarios_reproduce_every_status() {
    let mut n = 0;
    for dir in vector_dirs() {
        n += replay(&dir.join("stateful_scenario.jsonl"));
        n += replay(&dir.join("burst_scenario.jsonl"));
    }
    assert!(n >= 3500);
}
