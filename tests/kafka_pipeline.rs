//! The `run` pipeline on the real broker: records in → exactly the expected records out, dead
//! letters for bad input, offsets committed, nothing lost on SIGTERM, partitions shared by two
//! instances, kcat interop, and clear start-up errors.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use aepiot_stream::config::Config;
use aepiot_stream::core::{Engine, EngineSettings, Output, RecordMeta, Shared};
use aepiot_stream::metrics::Metrics;
use common::*;
use rdkafka::Message;

fn scenario_events() -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for f in ["stateful_scenario.jsonl", "burst_scenario.jsonl"] {
        let text = std::fs::read_to_string(vectors_dir().join(f)).unwrap();
        events.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone()),
        );
    }
    events
}

#[test]
fn records_in_exactly_the_expected_records_out() {
    let t = topics("e2e", 3);
    let events = scenario_events();
    let mut records: Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> = events
        .iter()
        .map(|e| {
            (
                Some(e["device_id"].as_str().unwrap().as_bytes().to_vec()),
                Some(serde_json::to_vec(e).unwrap()),
            )
        })
        .collect();
    let invalid: Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> = vec![
        (Some(b"bad-1".to_vec()), None),
        (Some(b"bad-2".to_vec()), Some(b"not json".to_vec())),
        (Some(b"bad-3".to_vec()), Some(b"[1,2]".to_vec())),
        (
            Some(b"bad-4".to_vec()),
            Some(br#"{"device_id":""}"#.to_vec()),
        ),
        (None, Some(vec![0xff, 0xfe, b'{'])),
    ];
    records.extend(invalid.iter().cloned());
    // One event keyed by something other than its device_id: processed, and counted as misrouted.
    records.push((
        Some(b"not-the-device".to_vec()),
        Some(br#"{"device_id":"mis-1","event_type":"x"}"#.to_vec()),
    ));
    produce(&t.input, &records);

    let running = start(config(&t, true));
    wait_until(
        "all input offsets committed",
        Duration::from_secs(90),
        || all_committed(&t.group, &t.input),
    );
    let metrics = running.metrics.clone();
    running.shutdown();

    let valid = events.len() + 1;
    let outputs = consume(&t.output, valid, Duration::from_secs(30));
    let letters = consume(&t.dlq, invalid.len(), Duration::from_secs(30));
    assert_eq!(outputs.len(), valid);
    assert_eq!(letters.len(), invalid.len());
    // Nothing more than expected arrived.
    assert_eq!(end_offsets(&t.output).values().sum::<i64>() as usize, valid);
    assert_eq!(
        end_offsets(&t.dlq).values().sum::<i64>() as usize,
        invalid.len()
    );

    // Every input offset ends as exactly one output or dead letter.
    let mut seen = HashSet::new();
    for m in outputs.iter().chain(&letters) {
        assert!(
            seen.insert(source_of(m)),
            "duplicate output for {:?}",
            source_of(m)
        );
    }
    let end = end_offsets(&t.input);
    let expected: HashSet<(i64, i64)> = end
        .iter()
        .flat_map(|(p, e)| (0..*e).map(move |o| (*p as i64, o)))
        .collect();
    assert_eq!(seen, expected);

    // Output records: Kafka key = region, useful headers.
    for m in &outputs {
        let v = json(m);
        assert_eq!(
            std::str::from_utf8(m.key().unwrap()).unwrap(),
            v["region"].as_str().unwrap()
        );
        assert_eq!(header(m, "aepiot.device_id"), v["device_id"].as_str());
        assert_eq!(header(m, "aepiot.status"), v["status"].as_str());
        assert_eq!(v["source"]["topic"], t.input.as_str());
    }
    for m in &letters {
        let v = json(m);
        assert_eq!(header(m, "aepiot.error.kind"), v["error"]["kind"].as_str());
        assert!(!header(m, "aepiot.error.message").unwrap().is_empty());
        assert_eq!(header(m, "aepiot.source.topic"), Some(t.input.as_str()));
        assert_eq!(
            header(m, "aepiot.source.offset").unwrap(),
            v["source"]["offset"].to_string()
        );
    }

    // Each device's outcome sequence equals the offline engine's (the `process` path).
    let mut by_device: BTreeMap<String, Vec<(i64, serde_json::Value)>> = BTreeMap::new();
    for m in &outputs {
        let v = json(m);
        by_device
            .entry(v["device_id"].as_str().unwrap().to_string())
            .or_default()
            .push((m.offset(), v));
    }
    let settings = EngineSettings {
        emit_suppressed: true,
        ..Default::default()
    };
    let mut engine = Engine::new(Shared::new(settings));
    let mut offline: HashMap<String, Vec<(String, serde_json::Value)>> = HashMap::new();
    for e in &events {
        let bytes = serde_json::to_vec(e).unwrap();
        if let Output::Record { status, json, .. } = engine.process(
            Some(&bytes),
            &RecordMeta {
                record_time_ms: None,
                now_ms: 0,
                source: None,
            },
        ) {
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            offline
                .entry(e["device_id"].as_str().unwrap().to_string())
                .or_default()
                .push((status.as_str().to_string(), v["urls"].clone()));
        }
    }
    for (device, mut got) in by_device {
        if device == "mis-1" {
            continue;
        }
        got.sort_by_key(|(o, _)| *o);
        let got: Vec<(String, serde_json::Value)> = got
            .into_iter()
            .map(|(_, v)| (v["status"].as_str().unwrap().to_string(), v["urls"].clone()))
            .collect();
        assert_eq!(&got, offline.get(&device).unwrap(), "device {device}");
    }
    assert_eq!(metrics.misrouted.get(), 1);
    assert_eq!(metrics.events_of("invalid"), invalid.len() as u64);
    assert_eq!(
        metrics.events_of("success")
            + metrics.events_of("cached")
            + metrics.events_of("rate_limited"),
        valid as u64
    );
}

fn spawn_run(t: &Topics) -> std::process::Child {
    Command::new(bin())
        .args([
            "run",
            "--brokers",
            brokers(),
            "--input-topics",
            &t.input,
            "--output-topic",
            &t.output,
        ])
        .args([
            "--dead-letter-topic",
            &t.dlq,
            "--group-id",
            &t.group,
            "--emit-suppressed",
            "--metrics-addr",
            "",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_mid_stream_loses_nothing() {
    let t = topics("sigterm", 4);
    produce(&t.input, &generated(30_000, 5_000, 11));
    let first = spawn_run(&t);
    wait_until("some outputs", Duration::from_secs(60), || {
        end_offsets(&t.output).values().sum::<i64>() >= 2_000
    });
    sigterm(&first);
    let out = first.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}:\n{log}", out.status);
    assert!(log.contains("stopped cleanly"), "{log}");
    let committed: i64 = committed_offsets(&t.group, &t.input)
        .values()
        .filter(|o| **o > 0)
        .sum();
    assert!(committed > 0, "the first instance committed nothing");
    // The stop came mid-stream: the first instance had not committed the whole input.
    assert!(
        committed < 30_000,
        "the first instance committed all {committed} records before its SIGTERM: not mid-stream"
    );

    // A clean stop commits exactly what was produced: the restart repeats nothing.
    let second = spawn_run(&t);
    wait_until(
        "all input offsets committed",
        Duration::from_secs(120),
        || all_committed(&t.group, &t.input),
    );
    sigterm(&second);
    assert!(second.wait_with_output().unwrap().status.success());

    let (total, sources) = all_sources(&t);
    assert_eq!(
        sources,
        expected_sources(&t.input),
        "every input offset has an output or dead letter"
    );
    assert_eq!(total, sources.len(), "duplicates after a clean SIGTERM");
}

fn processed(m: &Metrics) -> u64 {
    ["success", "cached", "rate_limited", "invalid"]
        .iter()
        .map(|o| m.events_of(o))
        .sum::<u64>()
}

/// README: "after a clean stop or a rebalance nothing is repeated". The input holds 30k records
/// before B starts, and the instances' producers hold outputs for 100 ms with at most 500 in
/// their queue (a worker waits while it is full): A works through the input at a few thousand
/// records/s, always with outputs unacknowledged, when B joins and partitions move (at full
/// speed A drained even 150k records before B had joined). Afterwards every input offset has
/// exactly one output or dead letter.
#[test]
fn two_instances_share_the_partitions() {
    let t = topics("share", 6);
    const BEFORE: usize = 30_000;
    produce(&t.input, &generated(BEFORE, 2_000, 21));
    let slow = || {
        let mut c = config(&t, true);
        for (k, v) in [
            ("linger.ms", "100"),
            ("queue.buffering.max.messages", "500"),
        ] {
            c.kafka.insert(k.into(), toml::Value::String(v.into()));
        }
        c
    };
    let a = start(slow());
    wait_until("A processing", Duration::from_secs(60), || {
        a.metrics.assigned_partitions.get() == 6 && processed(&a.metrics) >= 100
    });
    let b = start(slow());
    wait_until("B owns some partitions", Duration::from_secs(90), || {
        b.metrics.assigned_partitions.get() > 0 && a.metrics.assigned_partitions.get() < 6
    });
    // The partitions moved while A still had input to process: a rebalance mid-stream.
    let at_handover = processed(&a.metrics);
    assert!(
        at_handover < BEFORE as u64 && !all_committed(&t.group, &t.input),
        "A had processed {at_handover} of {BEFORE} records when B took partitions: the \
         rebalance was not mid-stream"
    );
    assert_eq!(
        a.metrics.assigned_partitions.get() + b.metrics.assigned_partitions.get(),
        6
    );
    produce(&t.input, &generated(3_000, 2_000, 22));
    wait_until(
        "all input offsets committed",
        Duration::from_secs(120),
        || all_committed(&t.group, &t.input),
    );
    let (pa, pb) = (processed(&a.metrics), processed(&b.metrics));
    a.shutdown();
    b.shutdown();
    assert!(
        pa > 0 && pb > 0,
        "both instances processed records: {pa} and {pb}"
    );
    let (total, sources) = all_sources(&t);
    eprintln!(
        "two instances: {} records; A processed {at_handover} before the hand-over, {pa} + {pb} \
         in all, {} repeated",
        sources.len(),
        total - sources.len()
    );
    assert_eq!(sources, expected_sources(&t.input));
    assert_eq!(
        total,
        sources.len(),
        "records repeated after a rebalance (README: nothing is repeated)"
    );
}

#[test]
fn kcat_produces_and_reads() {
    let kcat = which("kcat");
    let t = topics("kcat", 2);
    let lines: String = (0..50)
        .map(|i| format!("dev-{i}|{{\"device_id\":\"dev-{i}\",\"event_type\":\"door\",\"region\":\"europe\",\"value\":{i}}}\n"))
        .collect();
    let mut child = Command::new(&kcat)
        .args(["-b", brokers(), "-t", &t.input, "-P", "-K", "|"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());

    let running = start(config(&t, false));
    wait_until(
        "all input offsets committed",
        Duration::from_secs(90),
        || all_committed(&t.group, &t.input),
    );
    running.shutdown();

    let out = Command::new(&kcat)
        .args([
            "-b",
            brokers(),
            "-C",
            "-t",
            &t.output,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<(&str, serde_json::Value)> = text
        .lines()
        .map(|l| l.split_once('\t').unwrap())
        .map(|(k, v)| (k, serde_json::from_str(v).unwrap()))
        .collect();
    assert_eq!(records.len(), 50);
    for (key, v) in records {
        assert_eq!(key, "europe");
        assert_eq!(v["status"], "success");
        assert_eq!(v["urls"].as_array().unwrap().len(), 4);
        assert!(
            v["regional_url"]
                .as_str()
                .unwrap()
                .starts_with("https://aepiot.ro/")
                || v["regional_url"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://eu.aepiot.com/")
        );
    }
}

fn which(name: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} is not installed (CI installs it: scripts/install-ci-deps.sh)"
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run_expecting_failure(args: &[&str], env: &[(&str, &str)]) -> String {
    let start = std::time::Instant::now();
    let out = Command::new(bin())
        .arg("run")
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    stderr
}

#[test]
fn clear_errors_at_start() {
    let t = topics("startup", 1);
    let missing = unique("no-such-topic");
    let base = [
        "--brokers",
        brokers(),
        "--output-topic",
        &t.output,
        "--dead-letter-topic",
        &t.dlq,
        "--metrics-addr",
        "",
    ];
    let env = [("AEPIOT_STARTUP_TIMEOUT_MS", "2000")];

    let err = run_expecting_failure(&[&base[..], &["--input-topics", &missing]].concat(), &env);
    assert!(
        err.contains(&format!("input topic \"{missing}\" does not exist")),
        "{err}"
    );

    let err = run_expecting_failure(
        &[
            "--brokers",
            "127.0.0.1:1",
            "--input-topics",
            &t.input,
            "--metrics-addr",
            "",
        ],
        &env,
    );
    assert!(
        err.contains("cannot reach the Kafka brokers at 127.0.0.1:1"),
        "{err}"
    );

    let no_out = unique("no-out");
    let err = run_expecting_failure(
        &[
            "--brokers",
            brokers(),
            "--input-topics",
            &t.input,
            "--output-topic",
            &no_out,
            "--dead-letter-topic",
            &t.dlq,
            "--metrics-addr",
            "",
        ],
        &env,
    );
    assert!(
        err.contains(&format!("output topic \"{no_out}\" does not exist")),
        "{err}"
    );
}

#[test]
fn creates_missing_output_topics_when_asked() {
    let input = unique("create-in");
    create_topics(&[(&input, 1)]);
    let mut c = Config {
        brokers: brokers().to_string(),
        input_topics: vec![input.clone()],
        output_topic: unique("create-out"),
        dead_letter_topic: unique("create-dlq"),
        group_id: unique("create-group"),
        create_topics: true,
        create_topics_partitions: 2,
        metrics_addr: String::new(),
        ..Config::default()
    };
    c.progress_interval_secs = 0;
    produce(
        &input,
        &[
            (Some(b"d".to_vec()), Some(br#"{"device_id":"d"}"#.to_vec())),
            (Some(b"bad".to_vec()), Some(b"not json".to_vec())),
        ],
    );
    let running = start(c.clone());
    wait_until("committed", Duration::from_secs(90), || {
        all_committed(&c.group_id, &input)
    });
    running.shutdown();
    // Both output topics were created, with the configured partitions, and are written to.
    for topic in [&c.output_topic, &c.dead_letter_topic] {
        assert_eq!(end_offsets(topic).len(), 2, "{topic}");
    }
    let outputs = consume_all(&c.output_topic, Duration::from_secs(30));
    assert_eq!(outputs.len(), 1);
    assert_eq!(json(&outputs[0])["device_id"], "d");
    let letters = consume_all(&c.dead_letter_topic, Duration::from_secs(30));
    assert_eq!(letters.len(), 1);
    assert_eq!(json(&letters[0])["error"]["kind"], "invalid_json");
}
