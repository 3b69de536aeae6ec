//! The fuzz targets' oracles: each target's whole body is one function here ([`parse_event`],
//! [`engine`]), called by the target (fuzz/fuzz_targets/*.rs) and, on every committed fuzz input,
//! by tests/fuzz_regressions.rs, so the ordinary test run checks exactly what the fuzzer checks.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use aepiot_stream::core::event::{parse_event as parse, Event};
use aepiot_stream::core::urls::{UrlBuilder, UrlSet, UrlSettings, FALLBACK_REGION};
use aepiot_stream::core::{Engine, EngineSettings, Limits, Output, RecordMeta, Shared, Source};
use serde_json::Value;

/// What one input did in the `parse_event` oracle.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseSummary {
    pub accepted: usize,
    pub rejected: usize,
    /// URLs checked (distributed and regional).
    pub urls: usize,
}

/// The `parse_event` target: arbitrary bytes → `parse_event`; when it accepts them, the URLs
/// built from the event keep exactly three parameters that decode back to the event's texts;
/// when it rejects them, for a reason that fits.
pub fn parse_event(data: &[u8]) -> ParseSummary {
    static B: OnceLock<UrlBuilder> = OnceLock::new();
    let b = B.get_or_init(|| UrlBuilder::new(UrlSettings::default()));
    let mut summary = ParseSummary::default();
    match parse(Some(data), 1 << 20) {
        Ok(event) => {
            assert!(!event.device_id.is_empty() && event.device_id.len() <= 256);
            // Whichever pass read it (the fast one for flat events, or serde_json's), an accepted
            // payload is a JSON object to serde_json too. (Skipped unknown fields are not decoded,
            // so a lone surrogate escape there is accepted, as serde_json's own skipping does;
            // where every string decodes, the device_id is the same.)
            serde_json::from_slice::<serde::de::IgnoredAny>(data)
                .expect("accepted payload is JSON");
            assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
            if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(data) {
                assert_eq!(
                    object.get("device_id").and_then(Value::as_str),
                    Some(event.device_id.as_ref())
                );
            }
            let mut set = UrlSet::default();
            b.build(&event, &mut set);
            summary.urls = urls_match_event(&event, set.urls(), set.regional(), b.settings());
            summary.accepted += 1;
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            // A rejected payload is rejected for a reason that fits it.
            if data.len() <= 1 << 20 && std::str::from_utf8(data).is_err() {
                assert_eq!(e.kind.as_str(), "not_utf8", "{e:?}");
            }
            summary.rejected += 1;
        }
    }
    summary
}

/// The engine target's record size limit and dead-letter payload bound.
pub const ENGINE_MAX_RECORD: usize = 2048;
pub const ENGINE_MAX_DLQ_PAYLOAD: usize = 100;

/// What one input did in the engine oracle: records by status, dead letters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineSummary {
    pub success: usize,
    pub cached: usize,
    pub rate_limited: usize,
    pub dead_letters: usize,
    /// Dead letters whose payload was cut to the bound.
    pub truncated_dead_letters: usize,
}

impl std::ops::AddAssign for EngineSummary {
    fn add_assign(&mut self, o: Self) {
        self.success += o.success;
        self.cached += o.cached;
        self.rate_limited += o.rate_limited;
        self.dead_letters += o.dead_letters;
        self.truncated_dead_letters += o.truncated_dead_letters;
    }
}

fn engine_shared() -> &'static Arc<Shared> {
    static S: OnceLock<Arc<Shared>> = OnceLock::new();
    S.get_or_init(|| {
        Shared::new(EngineSettings {
            urls: UrlSettings::default(),
            // Small limits, so that rate_limited and cached occur within a few records.
            limits: Limits {
                max_per_window: 3,
                window_ms: 60_000,
                cache_ttl_ms: 10_000,
            },
            state_grace_ms: 30_000,
            max_record_bytes: ENGINE_MAX_RECORD,
            max_dead_letter_payload_bytes: ENGINE_MAX_DLQ_PAYLOAD,
            emit_suppressed: true,
            // A handful, so that eviction runs too (it changes judgements, never their shape).
            max_devices: 16,
            // The other bounds stay off: they turn valid events into dead letters, which the
            // "valid iff not a dead letter" check below would report (tests/delivery.rs covers them).
            ..EngineSettings::default()
        })
    })
}

/// The engine target: arbitrary bytes → the engine, as a partition's records (split at `\n`, at
/// most 64; an empty piece is a tombstone), with `emit_suppressed` and small limits so that every
/// path runs: it never panics, every output is valid JSON of the right shape (status, device,
/// source offset, URLs of a success, bounded dead-letter payloads), and valid events are exactly
/// the ones that do not become dead letters.
pub fn engine(data: &[u8]) -> EngineSummary {
    let shared = engine_shared();
    let settings = &shared.settings;
    let mut engine = Engine::new(shared.clone());
    let mut summary = EngineSummary::default();
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
        let valid = parse(payload, ENGINE_MAX_RECORD).is_ok();
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
                match status.as_str() {
                    "success" => summary.success += 1,
                    "cached" => summary.cached += 1,
                    _ => summary.rate_limited += 1,
                }
                if status.as_str() == "success" {
                    assert_eq!(urls, settings.urls.hosts.len());
                    let list = v["urls"].as_array().expect("urls");
                    assert_eq!(list.len(), urls);
                    // A cheap structural check here (the parse_event target parses every URL
                    // with the url crate): one `?`, two `&`, three `=`, no `#`, nothing raw.
                    for u in list.iter().chain(std::iter::once(&v["regional_url"])) {
                        three_params_cheap(u.as_str().unwrap());
                    }
                } else {
                    assert_eq!(urls, 0);
                    assert!(v.get("urls").is_none() && v.get("regional_url").is_none());
                }
            }
            Output::Suppressed { .. } => panic!("suppressed output with emit_suppressed"),
            Output::DeadLetter { error, json } => {
                assert!(!valid, "a dead letter for a valid event");
                summary.dead_letters += 1;
                let v: Value = serde_json::from_slice(json).expect("dead letter is JSON");
                assert_eq!(v["error"]["kind"], error.kind.as_str());
                assert!(!v["error"]["message"].as_str().unwrap().is_empty());
                assert_eq!(v["payload_bytes"], piece.len());
                summary.truncated_dead_letters += usize::from(v["payload_truncated"] == true);
                match v["payload_encoding"].as_str().unwrap() {
                    "utf8" => {
                        let p = v["payload"].as_str().unwrap();
                        assert!(p.len() <= ENGINE_MAX_DLQ_PAYLOAD);
                        assert!(piece.starts_with(p.as_bytes()), "kept text is a prefix");
                        assert_eq!(v["payload_truncated"], p.len() < piece.len());
                    }
                    "base64" => {
                        let p = v["payload"].as_str().unwrap();
                        assert!(p.len() <= ENGINE_MAX_DLQ_PAYLOAD.div_ceil(3) * 4);
                        assert!(std::str::from_utf8(piece).is_err());
                    }
                    "none" => assert!(payload.is_none()),
                    other => panic!("payload_encoding {other}"),
                }
            }
        }
    }
    summary
}

/// Every URL is `https://<configured host>/backlink.html?title=…&description=…&link=…` with
/// exactly those three parameters, no fragment, no raw control, space or non-ASCII byte.
/// Returns the decoded (title, description, link).
pub fn three_params(u: &str, settings: &UrlSettings) -> (String, String, String) {
    assert!(
        !u.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80),
        "raw control, space or non-ASCII byte in {u:?}"
    );
    let parsed = url::Url::parse(u).unwrap_or_else(|e| panic!("{u:?}: {e}"));
    assert_eq!(parsed.scheme(), "https", "{u}");
    assert_eq!(parsed.path(), "/backlink.html", "{u}");
    assert_eq!(parsed.fragment(), None, "{u}");
    let host = parsed.host_str().expect("host");
    assert!(
        settings
            .hosts
            .iter()
            .chain(settings.regions.values().flatten())
            .any(|h| h == host),
        "unknown host {host} in {u}"
    );
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["title", "description", "link"], "{u}");
    let mut it = pairs.into_iter().map(|(_, v)| v);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

/// The URLs decode back to exactly the event's texts: nothing added, nothing lost.
pub fn urls_match_event<'a>(
    event: &Event<'_>,
    urls: impl Iterator<Item = &'a str>,
    regional: &str,
    settings: &UrlSettings,
) -> usize {
    let device = event.device_id.as_ref();
    let base = settings.dashboard_base_url.as_str();
    // The seed's `format_description`: the present parts of location, value and time.
    let parts: Vec<String> = [
        ("Location", &event.location),
        ("Value", &event.value),
        ("Time", &event.timestamp_text),
    ]
    .iter()
    .filter_map(|(label, v)| v.as_deref().map(|v| format!("{label}: {v}")))
    .collect();
    let expected_description = if parts.is_empty() {
        "IoT event notification".to_string()
    } else {
        parts.join(" | ")
    };
    let mut n = 0;
    for u in urls {
        let (title, description, link) = three_params(u, settings);
        let event_type = event.event_type.as_deref().unwrap_or("Event");
        assert_eq!(title, format!("{event_type} - {device}"), "{u}");
        assert_eq!(description, expected_description, "{u}");
        match &event.dashboard_url {
            Some(d) => assert_eq!(&link, d, "{u}"),
            None => assert_eq!(link, format!("{base}/devices/{device}"), "{u}"),
        }
        n += 1;
    }
    assert_eq!(n, settings.hosts.len());
    let (title, description, link) = three_params(regional, settings);
    assert_eq!(title, format!("IoT Event - {device}"));
    assert_eq!(
        description,
        format!(
            "Region: {} | {}",
            event.region.as_deref().unwrap_or(FALLBACK_REGION),
            event.description.as_deref().unwrap_or("Event data")
        )
    );
    assert_eq!(link, event.dashboard_url.as_deref().unwrap_or(base));
    n + 1
}

/// The same guarantee as [`three_params`] by counting: the parameter values are percent-encoded,
/// so `?`, `&`, `=` and `#` appear only where the URL builder put them.
pub fn three_params_cheap(u: &str) {
    let count = |c: u8| u.bytes().filter(|b| *b == c).count();
    assert!(
        u.starts_with("https://") && u.contains("/backlink.html?title="),
        "{u:?}"
    );
    assert_eq!(
        (count(b'?'), count(b'&'), count(b'='), count(b'#')),
        (1, 2, 3, 0),
        "{u:?}"
    );
    assert!(u.contains("&description=") && u.contains("&link="), "{u:?}");
    assert!(
        !u.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80),
        "raw control, space or non-ASCII byte in {u:?}"
    );
}
