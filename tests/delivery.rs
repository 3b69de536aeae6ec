//! Delivery guarantees at the edges, on the real broker, with default settings: a record that
//! cannot be written is that record's dead letter and the partition goes on (both guarantees); a
//! far-future event time is a dead letter and does not disable its device; the state budget evicts
//! instead of growing; the changelog of a pattern-matched input topic is created on assignment.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use aepiot_stream::config::{Config, Guarantee};
use aepiot_stream::kafka::clock::now_ms;
use common::*;
use rdkafka::Message;

fn event(device: &str, body: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        Some(device.as_bytes().to_vec()),
        Some(format!(r#"{{"device_id":"{device}",{body}}}"#).into_bytes()),
    )
}

fn ordinary(n: usize) -> Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    (0..n)
        .map(|i| event(&format!("d-{i}"), r#""event_type":"temp""#))
        .collect()
}

/// A valid 200 KB event whose URL record (every `é` percent-encoded in five URLs) is over 1 MB.
fn poison() -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    event(
        "poison-1",
        &format!(r#""event_type":"big","location":"{}""#, "é".repeat(100_000)),
    )
}

fn poison_among_ordinary_records(guarantee: Guarantee) {
    let t = topics("poison", 3);
    let mut records = ordinary(300);
    records.insert(150, poison());
    records.extend(ordinary(300).into_iter().skip(200).map(|(k, v)| {
        let v = String::from_utf8(v.unwrap())
            .unwrap()
            .replace("temp", "door");
        (k, Some(v.into_bytes()))
    }));
    produce(&t.input, &records);
    let running = start(Config {
        processing_guarantee: guarantee,
        ..config(&t, false)
    });
    wait_until(
        "every input offset committed past the poison record",
        Duration::from_secs(120),
        || all_committed(&t.group, &t.input),
    );
    let metrics = running.metrics.clone();
    // A clean stop: the poison record stopped nothing.
    running.shutdown();

    let outputs = consume_all(&t.output, Duration::from_secs(60));
    let dead = consume_all(&t.dlq, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "exactly one dead letter");
    let letter = json(&dead[0]);
    assert_eq!(letter["error"]["kind"], "output_too_large", "{letter}");
    assert_eq!(
        header(&dead[0], "aepiot.error.kind"),
        Some("output_too_large")
    );
    assert_eq!(dead[0].key(), Some(&b"poison-1"[..]));
    assert_eq!(letter["payload_truncated"], true);
    assert!(letter["payload"]
        .as_str()
        .unwrap()
        .starts_with(r#"{"device_id":"poison-1","event_type":"big""#));
    assert!(dead[0].payload().unwrap().len() < 200_000);

    // Every other event is a success, each exactly once (no restart happened).
    let devices: Vec<(String, String)> = outputs
        .iter()
        .map(|m| {
            let v = json(m);
            assert_eq!(v["status"], "success", "{v}");
            (
                v["device_id"].as_str().unwrap().to_owned(),
                v["event_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(devices.len(), 400, "one URL record per ordinary event");
    assert_eq!(devices.iter().collect::<HashSet<_>>().len(), 400);
    assert!(!devices.iter().any(|(d, _)| d == "poison-1"));
    let mut sources: HashSet<(i64, i64)> = outputs.iter().map(source_of).collect();
    sources.insert(source_of(&dead[0]));
    assert_eq!(
        sources,
        expected_sources(&t.input),
        "every input offset has one output"
    );
    assert_eq!(
        metrics
            .dead_letters
            .with_label_values(&["output_too_large"])
            .get(),
        1
    );
    assert_eq!(metrics.events.with_label_values(&["success"]).get(), 400);
    assert_eq!(metrics.delivery_failures.get(), 0);
}

#[test]
fn a_poison_record_is_a_dead_letter_at_least_once() {
    poison_among_ordinary_records(Guarantee::AtLeastOnce);
}

#[test]
fn a_poison_record_is_a_dead_letter_exactly_once() {
    poison_among_ordinary_records(Guarantee::ExactlyOnce);
}

/// A valid event whose URL record is about 20 KB even compressed (random letters, which lz4 cannot
/// shrink; the five URLs repeat them, which it can).
fn big_event() -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut x: u64 = 26;
    let location: String = (0..20_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + ((x >> 33) % 26) as u8) as char
        })
        .collect();
    event(
        "big-1",
        &format!(r#""event_type":"big","location":"{location}""#),
    )
}

/// Issue 26: a record the broker itself refuses, not the processor's own size check (which reads
/// the topics' limits at start): the output topic's `max.message.bytes` is lowered while the
/// processor runs. The refused URL record becomes its event's dead letter, the partition goes on,
/// and no input offset is skipped.
fn a_record_the_broker_refuses(guarantee: Guarantee) {
    let t = topics("refused", 1);
    let running = start(Config {
        processing_guarantee: guarantee,
        ..config(&t, false)
    });
    let committed = || all_committed(&t.group, &t.input);
    produce(&t.input, &ordinary(20));
    wait_until(
        "the first events committed",
        Duration::from_secs(90),
        committed,
    );
    set_max_message_bytes(&t.output, 6_000);
    produce(&t.input, &[big_event()]);
    wait_until(
        "the refused event committed",
        Duration::from_secs(90),
        committed,
    );
    // A few small events after it: their URL records fit the lowered limit.
    let after: Vec<_> = (0..3)
        .map(|i| event(&format!("after-{i}"), r#""event_type":"door""#))
        .collect();
    produce(&t.input, &after);
    wait_until("every event committed", Duration::from_secs(90), committed);
    let metrics = running.metrics.clone();
    running.shutdown();

    let outputs = consume_all(&t.output, Duration::from_secs(60));
    let dead = consume_all(&t.dlq, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "exactly one dead letter");
    assert_eq!(source_of(&dead[0]), (0, 20), "the big event's dead letter");
    assert_eq!(json(&dead[0])["error"]["kind"], "output_too_large");
    assert_eq!(
        outputs.len(),
        23,
        "one URL record per other event, none repeated"
    );
    assert!(outputs.iter().all(|m| json(m)["status"] == "success"));
    let mut sources: HashSet<(i64, i64)> = outputs.iter().map(source_of).collect();
    sources.insert(source_of(&dead[0]));
    assert_eq!(
        sources,
        expected_sources(&t.input),
        "an input offset skipped"
    );
    assert_eq!(
        metrics.delivery_failures.get(),
        0,
        "the refusal stopped nothing"
    );
}

#[test]
fn a_record_the_broker_refuses_is_a_dead_letter_at_least_once() {
    a_record_the_broker_refuses(Guarantee::AtLeastOnce);
}

#[test]
fn a_record_the_broker_refuses_is_a_dead_letter_exactly_once() {
    a_record_the_broker_refuses(Guarantee::ExactlyOnce);
}

/// One event dated 9999 is refused; the device's later events are judged in their own time.
#[test]
fn a_far_future_event_is_a_dead_letter_and_its_device_goes_on() {
    let t = topics("future", 1);
    let now = now_ms();
    let mut records = vec![event(
        "f",
        r#""event_type":"t-0","timestamp":"9999-01-01T00:00:00Z""#,
    )];
    // Record timestamps are the producer's (now); the event without `timestamp` uses it.
    for i in 1..=12 {
        records.push(event(
            "f",
            &format!(r#""event_type":"t-{i}","timestamp":{}"#, now - 60_000 + i),
        ));
    }
    produce(&t.input, &records);
    let running = start(config(&t, true));
    wait_until("all committed", Duration::from_secs(90), || {
        all_committed(&t.group, &t.input)
    });
    running.shutdown();

    let dead = consume_all(&t.dlq, Duration::from_secs(30));
    assert_eq!(dead.len(), 1);
    let letter = json(&dead[0]);
    assert_eq!(letter["error"]["kind"], "invalid_field");
    assert_eq!(letter["error"]["field"], "timestamp");
    let message = letter["error"]["message"].as_str().unwrap();
    assert!(message.contains("ahead of the wall clock"), "{message}");
    assert!(message.contains("max_future_skew_secs"), "{message}");

    // The device was not moved to year 9999: 10 successes, then rate limited (the seed's limit).
    let mut statuses: Vec<(i64, String)> = consume_all(&t.output, Duration::from_secs(30))
        .iter()
        .map(|m| {
            let v = json(m);
            (source_of(m).1, v["status"].as_str().unwrap().to_owned())
        })
        .collect();
    statuses.sort();
    let statuses: Vec<&str> = statuses.iter().map(|(_, s)| s.as_str()).collect();
    let mut expected = vec!["success"; 10];
    expected.extend(["rate_limited"; 2]);
    assert_eq!(statuses, expected);
}

/// More devices than `limits.max_devices`: the least recently active are evicted and counted, and
/// every event still gets its URL record.
#[test]
fn the_device_budget_evicts_and_counts() {
    let t = topics("budget", 1);
    produce(&t.input, &ordinary(200));
    let mut cfg = config(&t, false);
    cfg.limits.max_devices = 50;
    let running = start(cfg);
    wait_until("all committed", Duration::from_secs(90), || {
        all_committed(&t.group, &t.input)
    });
    let metrics = running.metrics.clone();
    running.shutdown();
    assert_eq!(metrics.state_evictions.get(), 150);
    assert_eq!(metrics.events.with_label_values(&["success"]).get(), 200);
    assert_eq!(consume_all(&t.output, Duration::from_secs(30)).len(), 200);
}

/// `input_topics = ["^…"]` with the state changelog on (the default): the matched topic's
/// changelog is created when its partitions are first assigned, and state survives a restart.
#[test]
fn a_pattern_matched_topic_gets_its_changelog() {
    let t = topics("pattern", 2);
    let cfg = Config {
        input_topics: vec![format!("^{}$", t.input)],
        ..config(&t, true)
    };
    let limited = |i: usize| {
        event(
            "dev-p",
            &format!(r#""event_type":"t{i}","timestamp":"2026-11-26T10:{i:02}:00Z""#),
        )
    };
    produce(&t.input, &(0..10).map(limited).collect::<Vec<_>>());
    let first = start(cfg.clone());
    wait_until("first run committed", Duration::from_secs(90), || {
        all_committed(&t.group, &t.input)
    });
    first.shutdown();
    let changelog = format!("{}-{}-changelog", t.group, t.input);
    assert!(
        !consume_all(&changelog, Duration::from_secs(30)).is_empty(),
        "the changelog of the matched topic holds the device's state"
    );

    produce(&t.input, &[limited(11)]);
    let second = start(cfg);
    wait_until("second run committed", Duration::from_secs(90), || {
        all_committed(&t.group, &t.input)
    });
    second.shutdown();
    let last = consume_all(&t.output, Duration::from_secs(30))
        .into_iter()
        .max_by_key(source_of)
        .unwrap();
    assert_eq!(
        json(&last)["status"],
        "rate_limited",
        "state restored after restart"
    );
}

/// SIGTERM while a partition's state is being restored (issue 12 item 8): the restore stops and
/// the instance exits cleanly instead of finishing it first. The changelog holds 3M records
/// (seconds to read even here, minutes at production sizes); SIGTERM goes out as soon as the log
/// says the restore started, and the log must then say it stopped, never that it finished.
#[test]
fn sigterm_during_a_restore_stops_the_restore() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    const RECORDS: usize = 3_000_000;
    let t = topics("restore-stop", 1);
    let changelog = format!("{}-{}-changelog", t.group, t.input);
    create_topics(&[(&changelog, 1)]);
    // Tombstones: the cheapest records to restore, so the restore is as short as it can be.
    let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "50")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let key = format!("d-{i}");
        send_waiting(&p, BaseRecord::to(&changelog).key(key.as_bytes()));
    }
    p.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(p.in_flight_count(), 0);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{}\"\ninput_topics = [\"{}\"]\noutput_topic = \"{}\"\n\
             dead_letter_topic = \"{}\"\ngroup_id = \"{}\"\nmetrics_addr = \"\"\nlog_format = \"json\"\n",
            brokers(),
            t.input,
            t.output,
            t.dlq,
            t.group
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut run = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !read_log().contains("restoring state from the changelog") {
        if Instant::now() > deadline || run.try_wait().unwrap().is_some() {
            let _ = run.kill();
            panic!("the restore did not start:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sigterm(&run);
    // A minute tells "exits" from "hangs" without timing anything; what matters is the log.
    let stopped = Instant::now();
    while run.try_wait().unwrap().is_none() && stopped.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if run.try_wait().unwrap().is_none() {
        let _ = run.kill();
        panic!("run did not exit within 60 s of SIGTERM:\n{}", read_log());
    }
    let status = run.wait().unwrap();
    let log = read_log();
    assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
    assert!(
        log.contains(&format!("\"records\":{RECORDS}")),
        "the start line names the records to restore:\n{log}"
    );
    assert!(
        log.contains("state restore stopped") && !log.contains("state restored"),
        "the restore ran to its end instead of stopping:\n{log}"
    );
}
