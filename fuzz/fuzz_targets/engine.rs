//! Arbitrary bytes → the engine, as a partition's records (split at `\n`, at most 64; an empty
//! piece is a tombstone), with `emit_suppressed` and small limits so that every path runs: it never panics,
//! every output is valid JSON of the right shape, and valid events are exactly the ones that do
//! not become dead letters.
#![no_main]

use std::sync::{Arc, OnceLock};

use aepiot_stream::core::event::parse_event;
use aepiot_stream::core::{
    Engine, EngineSettings, Limits, Output, RecordMeta, Shared, Source, UrlSettings,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[path = "check.rs"]
mod check;

const MAX_RECORD: usize = 2048;
const MAX_DLQ_PAYLOAD: usize = 100;

fn shared() -> &'static Arc<Shared> {
    static S: OnceLock<Arc<Shared>> = OnceLock::new();
    S.get_or_init(|| {
        Shared::new(EngineSettings {
            urls: UrlSettings::default(),
            limits: Limits {
                max_per_window: 3,
                window_ms: 60_000,
                cache_ttl_ms: 10_000,
            },
            state_grace_ms: 30_000,
            max_record_bytes: MAX_RECORD,
            max_dead_letter_payload_bytes: MAX_DLQ_PAYLOAD,
            emit_suppressed: true,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let shared = shared();
    let settings = &shared.settings;
    let mut engine = Engine::new(shared.clone());
    let base = 1_790_000_000_000i64;
    for (i, piece) in data.split(|b| *b == b'\n').take(64).enumerate() {
        let payload = (!piece.is_empty()).then_some(piece);
        let i = i as i64;
        let meta = RecordMeta {
            record_time_ms: (i % 2 == 1).then_some(base + i * 997),
            now_ms: base + i * 7919,
            source: Some(Source::Kafka {
                topic: "fuzz",
                partition: 0,
                offset: i,
            }),
        };
        let valid = parse_event(payload, MAX_RECORD).is_ok();
        match engine.process(payload, &meta) {
            Output::Record {
                status,
                json,
                device_id,
                urls,
                ..
            } => {
                assert!(valid, "a record for an invalid event");
                let v: Value = serde_json::from_slice(json).expect("URL record is JSON");
                assert_eq!(v["status"], status.as_str());
                assert_eq!(v["device_id"], device_id);
                assert_eq!(v["source"]["offset"], i);
                if status.as_str() == "success" {
                    assert_eq!(urls, settings.urls.hosts.len());
                    let list = v["urls"].as_array().expect("urls");
                    assert_eq!(list.len(), urls);
                    // A cheap structural check here (the parse_event target parses every URL
                    // with the url crate): one `?`, two `&`, three `=`, no `#`, nothing raw.
                    for u in list.iter().chain(std::iter::once(&v["regional_url"])) {
                        check::three_params_cheap(u.as_str().unwrap());
                    }
                } else {
                    assert_eq!(urls, 0);
                    assert!(v.get("urls").is_none() && v.get("regional_url").is_none());
                }
            }
            Output::Suppressed { .. } => panic!("suppressed output with emit_suppressed"),
            Output::DeadLetter { error, json } => {
                assert!(!valid, "a dead letter for a valid event");
                let v: Value = serde_json::from_slice(json).expect("dead letter is JSON");
                assert_eq!(v["error"]["kind"], error.kind.as_str());
                assert!(!v["error"]["message"].as_str().unwrap().is_empty());
                assert_eq!(v["payload_bytes"], piece.len());
                match v["payload_encoding"].as_str().unwrap() {
                    "utf8" => {
                        let p = v["payload"].as_str().unwrap();
                        assert!(p.len() <= MAX_DLQ_PAYLOAD);
                        assert!(piece.starts_with(p.as_bytes()), "kept text is a prefix");
                        assert_eq!(v["payload_truncated"], p.len() < piece.len());
                    }
                    "base64" => {
                        let p = v["payload"].as_str().unwrap();
                        assert!(p.len() <= MAX_DLQ_PAYLOAD.div_ceil(3) * 4);
                        assert!(std::str::from_utf8(piece).is_err());
                    }
                    "none" => assert!(payload.is_none()),
                    other => panic!("payload_encoding {other}"),
                }
            }
        }
    }
});
