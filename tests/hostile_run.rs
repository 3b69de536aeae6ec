//! The hostile-input corpus through `run`, on the real broker (the `process` side is in
//! tests/process_cli.rs): every record becomes exactly one URL record or one dead letter with a
//! reason, the pipeline never stalls (committed offsets reach the end), every URL keeps exactly its
//! three parameters whatever the fields hold, and the counts add up to the input.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;

/// Largest record of the corpus is 10 MiB and a bit: the input topic and the test's producer
/// allow 12 MB (the broker's default is 1 MB).
const TOPIC_MAX_BYTES: &str = "12000000";
const PARTITIONS: i32 = 3;
/// `urls.dashboard_base_url`'s default: the links of events without a `dashboard_url`.
const DASHBOARD: &str = "https://dashboard.example.com";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Success,
    Dead(&'static str),
}

struct Case {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    expect: Expect,
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every field of an event set to `text` (a JSON string literal's content, already escaped);
/// `dashboard_url`, which must be a link, holds it in its path.
fn every_field(device_id: &str, text: &str) -> Vec<u8> {
    format!(
        r#"{{"device_id":"{device_id}{text}","event_type":"{text}","severity":"{text}","location":"{text}","description":"{text}","dashboard_url":"https://dash.example/{text}/","region":"{text}","value":"{text}","timestamp":"2026-11-26T08:00:00Z","{text}":"{text}"}}"#
    )
    .into_bytes()
}

fn corpus() -> Vec<Case> {
    use Expect::*;
    let b = |s: &str| Some(s.as_bytes().to_vec());
    let ten_mb = format!(
        r#"{{"device_id":"big","pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let cases: Vec<(Option<Vec<u8>>, Expect)> = vec![
        // Not JSON, not an object.
        (b("not json"), Dead("invalid_json")),
        (b(""), Dead("invalid_json")),
        (b("   \t "), Dead("invalid_json")),
        (b("\u{feff}{\"device_id\":\"bom\"}"), Dead("invalid_json")),
        (b("[]"), Dead("not_object")),
        (b(r#"[{"device_id":"in-array"}]"#), Dead("not_object")),
        (b(r#""str""#), Dead("not_object")),
        (b("42"), Dead("not_object")),
        (b("null"), Dead("not_object")),
        (b("true"), Dead("not_object")),
        // Tombstones (no value at all).
        (None, Dead("null_payload")),
        (None, Dead("null_payload")),
        // device_id missing, empty, over-long, not a string.
        (b("{}"), Dead("missing_field")),
        (b(r#"{"event_type":"temp"}"#), Dead("missing_field")),
        (b(r#"{"device_id":null}"#), Dead("missing_field")),
        (b(r#"{"device_id":""}"#), Dead("invalid_field")),
        (
            Some(format!(r#"{{"device_id":"{}"}}"#, "x".repeat(300)).into_bytes()),
            Dead("invalid_field"),
        ),
        (
            Some(format!(r#"{{"device_id":"{}"}}"#, "y".repeat(256)).into_bytes()),
            Success,
        ),
        (
            Some(format!(r#"{{"device_id":"{}"}}"#, "😀".repeat(65)).into_bytes()),
            Dead("invalid_field"),
        ),
        (
            Some(format!(r#"{{"device_id":"{}"}}"#, "😀".repeat(64)).into_bytes()),
            Success,
        ),
        (b(r#"{"device_id":42}"#), Dead("invalid_field")),
        (b(r#"{"device_id":{"id":"a"}}"#), Dead("invalid_field")),
        (b(r#"{"device_id":["a"]}"#), Dead("invalid_field")),
        (b(r#"{"device_id":true}"#), Dead("invalid_field")),
        // Invalid UTF-8 and NUL bytes.
        (
            Some(b"{\"device_id\":\"\xff\xfe\x80\"}".to_vec()),
            Dead("not_utf8"),
        ),
        (Some(b"\xc3\x28".to_vec()), Dead("not_utf8")),
        (Some(vec![0xff; 1000]), Dead("not_utf8")),
        (
            b(r#"{"device_id":"nul\u0000escaped","value":"\u0000"}"#),
            Success,
        ),
        (
            Some(b"{\"device_id\":\"nul\0raw\"}".to_vec()),
            Dead("invalid_json"),
        ),
        (Some(vec![0u8; 100]), Dead("invalid_json")),
        (
            Some(b"{\"device_id\":\"raw\rcr\"}".to_vec()),
            Dead("invalid_json"),
        ),
        // Over the size limit (1 MiB): 10 MiB.
        (Some(ten_mb.into_bytes()), Dead("too_large")),
        // Nesting 100k deep: in a text field it is refused; in an unknown field it is skipped.
        (
            Some(
                format!(
                    r#"{{"device_id":"deep-value","value":{}}}"#,
                    nested(100_000)
                )
                .into_bytes(),
            ),
            Dead("too_deep"),
        ),
        (
            Some(
                format!(
                    r#"{{"device_id":"deep-type","event_type":{}}}"#,
                    nested(100_000)
                )
                .into_bytes(),
            ),
            Dead("too_deep"),
        ),
        (
            Some(format!(r#"{{"device_id":"deep-unknown","x":{}}}"#, nested(100_000)).into_bytes()),
            Success,
        ),
        (
            Some(
                format!(
                    r#"{{"device_id":"deep-unknown-obj","x":{}1{}}}"#,
                    r#"{"a":"#.repeat(100_000),
                    "}".repeat(100_000)
                )
                .into_bytes(),
            ),
            Success,
        ),
        (Some(nested(100_000).into_bytes()), Dead("not_object")),
        // Numbers out of range.
        (
            b(r#"{"device_id":"big-value","value":1e400}"#),
            Dead("invalid_field"),
        ),
        (
            b(r#"{"device_id":"neg-big-value","value":-1e400}"#),
            Dead("invalid_field"),
        ),
        (
            b(r#"{"device_id":"big-ts","timestamp":1e400}"#),
            Dead("invalid_field"),
        ),
        (
            b(r#"{"device_id":"neg-ts","timestamp":-1}"#),
            Dead("invalid_field"),
        ),
        (
            b(r#"{"device_id":"huge-ts","timestamp":99999999999999999999999}"#),
            Dead("invalid_field"),
        ),
        (b(r#"{"device_id":"big-unknown","x":1e400}"#), Success),
        (
            b(r#"{"device_id":"long-int","value":123456789012345678901234567890}"#),
            Success,
        ),
        // Duplicate keys.
        (
            b(r#"{"device_id":"dup","device_id":"dup2"}"#),
            Dead("duplicate_field"),
        ),
        (
            b(r#"{"device_id":"dup-v","value":1,"value":1}"#),
            Dead("duplicate_field"),
        ),
        (b(r#"{"device_id":"dup-unknown","x":1,"x":2}"#), Success),
        // CR/LF, `& = # ?` and more in every field: still three parameters per URL.
        (Some(every_field("crlf-", r"\r\n&=#?%+\t")), Success),
        (
            Some(every_field("amp-", r"a&b=c#d?e&title=x&link=y#z")),
            Success,
        ),
        (
            Some(every_field(
                "inject-",
                r"x\r\nHost: evil\r\n\r\n&description=pwn",
            )),
            Success,
        ),
        (Some(every_field("pct-", r"%26%3D%23%3F%0D%0A")), Success),
        // Bidi controls and emoji, raw and escaped.
        (
            Some(every_field(
                "bidi-",
                "\u{202E}evil\u{202C} 😀🚀 \u{2066}x\u{2069}",
            )),
            Success,
        ),
        (
            Some(every_field("esc-bidi-", r"\u202e\ud83d\ude00")),
            Success,
        ),
        (b("{\"device_id\":\"crlf-ending\"}\r\n"), Success),
        (
            b(r#"{"device_id":"ts","timestamp":"yesterday"}"#),
            Dead("invalid_field"),
        ),
        (b(r#"{"device_id":"trailing"} x"#), Dead("invalid_json")),
        (b(r#"{"device_id":"\ud800"}"#), Dead("invalid_field")),
        (b(r#"{"device_id":"plain-last"}"#), Success),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (payload, expect))| {
            // Keys: mostly an index, some absent, some hostile bytes (copied to dead letters).
            let key = match i % 7 {
                0 => None,
                1 => Some(vec![0xff, 0x00, b'\n', 0xfe]),
                2 => Some(format!("k{i}-&=#?\r\n").into_bytes()),
                _ => Some(format!("key-{i}").into_bytes()),
            };
            Case {
                key,
                payload,
                expect,
            }
        })
        .collect()
}

fn create_input(topic: &str, others: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let mut new = vec![NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))
        .set("max.message.bytes", TOPIC_MAX_BYTES)];
    new.extend(
        others
            .iter()
            .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
    for t in std::iter::once(topic).chain(others.iter().map(|(t, _)| *t)) {
        wait_until(&format!("topic {t}"), Duration::from_secs(30), || {
            admin
                .inner()
                .fetch_metadata(Some(t), Duration::from_secs(5))
                .is_ok_and(|m| {
                    m.topics()
                        .first()
                        .is_some_and(|x| !x.partitions().is_empty() && x.error().is_none())
                })
        });
    }
}

/// Produces case `i` to partition `i % PARTITIONS`; returns each case's (partition, offset).
fn produce_corpus(topic: &str, corpus: &[Case]) -> Vec<(i64, i64)> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("message.max.bytes", TOPIC_MAX_BYTES)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut at = Vec::new();
    for (i, c) in corpus.iter().enumerate() {
        let part = (i % PARTITIONS as usize) as i32;
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(part);
        if let Some(k) = &c.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &c.payload {
            r = r.payload(v.as_slice());
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
        at.push((part as i64, next[part as usize]));
        next[part as usize] += 1;
    }
    p.flush(Duration::from_secs(60)).unwrap();
    // The idempotent producer keeps each partition's order: offsets are 0, 1, 2, … per partition.
    let ends = end_offsets(topic);
    for (part, n) in next.iter().enumerate() {
        assert_eq!(ends[&(part as i32)], *n, "partition {part}");
    }
    at
}

/// A URL's decoded parameters, in order.
type Params = Vec<(String, String)>;

/// Every URL of a record: https, `/backlink.html`, no fragment, exactly the three parameters
/// title, description, link; returns the decoded parameters of the distributed URLs (all alike)
/// and of the regional URL.
fn check_urls(record: &Value) -> (Params, Params) {
    let mut urls: Vec<&str> = record["urls"]
        .as_array()
        .map(|a| a.iter().map(|u| u.as_str().unwrap()).collect())
        .unwrap_or_default();
    urls.extend(record["regional_url"].as_str());
    assert_eq!(urls.len(), 5, "{record}");
    let mut all = Vec::new();
    for u in urls {
        assert!(
            !u.bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80),
            "raw control, space or non-ASCII byte in {u:?}"
        );
        let parsed = url::Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"));
        assert_eq!(parsed.scheme(), "https", "{u}");
        assert_eq!(parsed.path(), "/backlink.html", "{u}");
        assert_eq!(parsed.fragment(), None, "{u}");
        let pairs: Params = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["title", "description", "link"], "{u}");
        all.push(pairs);
    }
    let regional = all.pop().unwrap();
    for other in &all[1..] {
        assert_eq!(
            other, &all[0],
            "distributed URLs differ in their parameters"
        );
    }
    (all.swap_remove(0), regional)
}

/// The event's text fields as the URLs print them: strings as they are, integers as written
/// (as Python prints them, whatever their size), other values as JSON. `None` when the test's
/// own JSON parser cannot read the event (over 128 levels deep).
fn event_texts(payload: &str) -> Option<HashMap<String, String>> {
    let raw: HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(payload.trim_end()).ok()?;
    let mut texts = HashMap::new();
    for (name, v) in raw {
        let r = v.get();
        let text = if r.starts_with('"') {
            serde_json::from_str::<String>(r).ok()?
        } else if r == "null" {
            continue;
        } else if r
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            r.to_string()
        } else {
            serde_json::from_str::<Value>(r).ok()?.to_string()
        };
        texts.insert(name, text);
    }
    Some(texts)
}

#[test]
fn hostile_records_through_run_each_yield_one_output_or_dead_letter() {
    let corpus = corpus();
    let t = Topics {
        input: unique("hostile-in"),
        output: unique("hostile-out"),
        dlq: unique("hostile-dlq"),
        group: unique("hostile-group"),
    };
    create_input(&t.input, &[(&t.output, 3), (&t.dlq, 1)]);
    let at = produce_corpus(&t.input, &corpus);
    let case_at: HashMap<(i64, i64), usize> = at.iter().enumerate().map(|(i, s)| (*s, i)).collect();

    let running = start(config(&t, true));
    // No stall: every input offset is committed (i.e. its output was acknowledged).
    wait_until(
        "all hostile records committed",
        Duration::from_secs(120),
        || all_committed(&t.group, &t.input),
    );
    let metrics = running.metrics.clone();
    running.shutdown();

    let outputs = consume_all(&t.output, Duration::from_secs(60));
    let letters = consume_all(&t.dlq, Duration::from_secs(60));
    assert_eq!(
        outputs.len() + letters.len(),
        corpus.len(),
        "outputs + dead letters = input records"
    );

    // Every input offset is exactly one output or dead letter.
    let mut by_case: BTreeMap<usize, (&str, &OwnedMessage, Value)> = BTreeMap::new();
    for (what, m) in outputs
        .iter()
        .map(|m| ("record", m))
        .chain(letters.iter().map(|m| ("dead letter", m)))
    {
        let v = json(m);
        assert_eq!(v["source"]["topic"], t.input.as_str());
        let src = source_of(m);
        let i = *case_at
            .get(&src)
            .unwrap_or_else(|| panic!("{what} for unknown input {src:?}"));
        assert!(
            by_case.insert(i, (what, m, v)).is_none(),
            "input {src:?} (case {i}) has two outputs"
        );
    }
    assert_eq!(by_case.len(), corpus.len());

    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (i, case) in corpus.iter().enumerate() {
        let (what, m, v) = &by_case[&i];
        let shown = case
            .payload
            .as_ref()
            .map(|p| String::from_utf8_lossy(&p[..p.len().min(60)]).to_string());
        match case.expect {
            Expect::Success => {
                assert_eq!(*what, "record", "case {i} {shown:?}: {v}");
                assert_eq!(v["status"], "success", "case {i} {shown:?}: {v}");
                let (params, regional) = check_urls(v);
                // The parameters decode back to exactly the event's texts: nothing added, nothing
                // cut, whatever `& = # ?`, CR/LF, NUL, bidi or emoji they hold; the regional URL's
                // too. (The test's own JSON parser stops at 128 levels: events with such unknown
                // fields are checked by device only.)
                let text = std::str::from_utf8(case.payload.as_ref().unwrap()).unwrap();
                match event_texts(text) {
                    Some(f) => {
                        let field = |n: &str| f.get(n).cloned();
                        let device = field("device_id").unwrap();
                        assert_eq!(v["device_id"], device.as_str());
                        let title = format!(
                            "{} - {device}",
                            field("event_type").unwrap_or("Event".into())
                        );
                        let parts: Vec<String> = [
                            ("Location", "location"),
                            ("Value", "value"),
                            ("Time", "timestamp"),
                        ]
                        .iter()
                        .filter_map(|(label, n)| field(n).map(|t| format!("{label}: {t}")))
                        .collect();
                        let description = if parts.is_empty() {
                            "IoT event notification".to_string()
                        } else {
                            parts.join(" | ")
                        };
                        let link = field("dashboard_url")
                            .unwrap_or(format!("{DASHBOARD}/devices/{device}"));
                        let expected = |t: String, d: String, l: String| -> Params {
                            vec![
                                ("title".into(), t),
                                ("description".into(), d),
                                ("link".into(), l),
                            ]
                        };
                        assert_eq!(params, expected(title, description, link), "case {i}");
                        let regional_description = format!(
                            "Region: {} | {}",
                            field("region").unwrap_or("global".into()),
                            field("description").unwrap_or("Event data".into())
                        );
                        assert_eq!(
                            regional,
                            expected(
                                format!("IoT Event - {device}"),
                                regional_description,
                                field("dashboard_url").unwrap_or(DASHBOARD.into())
                            ),
                            "case {i}: regional URL"
                        );
                    }
                    None => {
                        let device = v["device_id"].as_str().unwrap();
                        assert!(text.contains(&format!("{{\"device_id\":\"{device}\",")));
                    }
                }
                assert_eq!(
                    std::str::from_utf8(m.key().unwrap()).unwrap(),
                    v["region"].as_str().unwrap()
                );
            }
            Expect::Dead(kind) => {
                assert_eq!(*what, "dead letter", "case {i} {shown:?}: {v}");
                assert_eq!(v["error"]["kind"], kind, "case {i} {shown:?}: {v}");
                let message = v["error"]["message"].as_str().unwrap_or("");
                assert!(!message.is_empty(), "case {i}: no reason: {v}");
                assert_eq!(header(m, "aepiot.error.kind"), Some(kind));
                assert!(!header(m, "aepiot.error.message").unwrap_or("").is_empty());
                // The dead letter is keyed by the input's key, byte for byte.
                assert_eq!(m.key(), case.key.as_deref(), "case {i}: key");
                // Bounded whatever the input (64 KiB of payload at most).
                let kept = v["payload"].as_str().map_or(0, str::len);
                assert!(kept <= 64 * 1024 * 4 / 3 + 4, "case {i}: {kept} bytes kept");
                if let Some(p) = &case.payload {
                    assert_eq!(v["payload_bytes"], p.len(), "case {i}");
                    assert_eq!(v["payload_truncated"], p.len() > 64 * 1024, "case {i}");
                } else {
                    assert!(v["payload"].is_null(), "tombstone payload: {v}");
                }
                *kinds.entry(kind.to_string()).or_default() += 1;
            }
        }
    }

    // The 10 MiB record: its dead letter says how big it was and keeps 64 KiB of it.
    let (big, _) = corpus
        .iter()
        .enumerate()
        .find(|(_, c)| c.payload.as_ref().is_some_and(|p| p.len() > 10_000_000))
        .unwrap();
    let d = &by_case[&big].2;
    assert_eq!(d["payload_truncated"], true);
    assert_eq!(d["payload"].as_str().unwrap().len(), 64 * 1024);
    assert!(d["error"]["message"]
        .as_str()
        .unwrap()
        .contains("over the limit"));
    // Invalid UTF-8 travels as base64.
    for (i, c) in corpus.iter().enumerate() {
        if c.expect == Expect::Dead("not_utf8") {
            assert_eq!(by_case[&i].2["payload_encoding"], "base64", "case {i}");
        }
    }

    // The counts add up: per outcome, per dead-letter kind, and to the input.
    let records = corpus
        .iter()
        .filter(|c| c.expect == Expect::Success)
        .count();
    assert_eq!(outputs.len(), records);
    assert_eq!(letters.len(), corpus.len() - records);
    assert_eq!(metrics.events_of("success"), records as u64);
    assert_eq!(metrics.events_of("invalid"), letters.len() as u64);
    assert_eq!(
        metrics.events_of("success")
            + metrics.events_of("cached")
            + metrics.events_of("rate_limited")
            + metrics.events_of("invalid"),
        corpus.len() as u64
    );
    for (kind, n) in &kinds {
        assert_eq!(
            metrics.dead_letters.with_label_values(&[kind]).get(),
            *n,
            "aepiot_dead_letters_total{{kind={kind:?}}}"
        );
    }
}
