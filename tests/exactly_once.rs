//! Exactly-once mode and state restore on the real broker.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use aepiot_stream::config::{Config, Guarantee};
use aepiot_stream::core::limiter::Limits;
use aepiot_stream::core::snapshot;
use aepiot_stream::core::state::DeviceStates;
use aepiot_stream::processor::changelog;
use common::*;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;

fn eos(t: &Topics) -> Config {
    Config {
        processing_guarantee: Guarantee::ExactlyOnce,
        ..config(t, true)
    }
}

/// Also the records produced while a transaction commits (kept and produced into the next one):
/// 40k events take several commit intervals, so some are processed during commits.
#[test]
fn exactly_once_writes_one_output_per_input() {
    let t = topics("eos", 3);
    let mut records = generated(40_000, 1_000, 31);
    records.push((Some(b"bad".to_vec()), Some(b"{not json".to_vec())));
    produce(&t.input, &records);
    let (deferred, _) = one_output_per_input(&t, eos(&t));
    assert!(
        deferred > 0,
        "no record was produced while a transaction committed: the test did not exercise that path"
    );
}

/// Runs `config` on the input until every input offset is committed, checks that each input has
/// exactly one output, and returns the records kept while a transaction committed and the commits.
fn one_output_per_input(t: &Topics, config: Config) -> (u64, u64) {
    let running = start(config);
    wait_until(
        "all input offsets committed",
        Duration::from_secs(120),
        || all_committed(&t.group, &t.input),
    );
    let deferred = running.metrics.transaction_deferred.get();
    let commits = running.metrics.transaction_commit.get_sample_count();
    running.shutdown();

    // consume() reads with isolation.level=read_committed.
    let (total, sources) = all_sources(t);
    assert_eq!(sources, expected_sources(&t.input));
    assert_eq!(total, sources.len(), "duplicates under exactly-once");
    (deferred, commits)
}

/// Rule 9 (the bound of what is kept while a transaction commits): past `max_deferred_bytes` a
/// worker ends its batch and waits until the commit ends. With a bound of one byte, each of the
/// three workers keeps at most one record's output and its batch's state record per commit;
/// without the wait a batch read during a commit keeps all it reads (up to 256 records, the input
/// being there already).
#[test]
fn a_full_deferral_holds_each_worker_to_one_record_per_commit() {
    let t = topics("eos-bound", 3);
    let config = Config {
        max_deferred_bytes: 1,
        ..eos(&t)
    };
    produce(&t.input, &generated(20_000, 1_000, 37));
    let (deferred, commits) = one_output_per_input(&t, config);
    assert!(
        deferred > 0,
        "nothing was kept during a commit: the test did not exercise the bound"
    );
    assert!(
        deferred <= 2 * 3 * commits,
        "{deferred} records kept over {commits} commits: more than one record (and its state) per worker and commit"
    );
}

fn spawn_eos(t: &Topics) -> std::process::Child {
    exactly_once_run(t)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm_and_wait(child: std::process::Child) -> String {
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "exit {:?}:\n{log}", out.status);
    assert!(log.contains("stopped cleanly"), "{log}");
    log
}

/// Records per partition of what was read from a topic.
fn per_partition(msgs: &[rdkafka::message::OwnedMessage]) -> HashMap<i32, i64> {
    let mut n = HashMap::new();
    for m in msgs {
        *n.entry(m.partition()).or_default() += 1;
    }
    n
}

/// A SIGTERM mid-stream and a restart: every input offset still has exactly one output or dead
/// letter, each judged as the offline engine judges it (the state restored from the changelog is
/// the state the outputs reflect), and the outputs were written in transactions: every output
/// partition holds commit markers, which take offsets (an at-least-once pipeline leaves none).
#[test]
fn exactly_once_survives_a_sigterm_mid_stream_and_a_restart() {
    let t = topics("eos-restart", 4);
    const N: usize = 100_000;
    let mut records = generated(N, 3_000, 33);
    records.push((Some(b"bad".to_vec()), Some(b"{not json".to_vec())));
    let (head, tail) = records.split_at(1_000);
    produce(&t.input, head);

    let first = spawn_eos(&t);
    wait_until("some outputs", Duration::from_secs(90), || {
        end_offsets(&t.output).values().sum::<i64>() >= 500
    });
    // The rest arrives at ~10k events/s while the first instance runs, so the SIGTERM lands
    // mid-stream, with transactions in flight, however fast the instance is.
    let (tail, input) = (tail.to_vec(), t.input.clone());
    let feeder = std::thread::spawn(move || {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for chunk in tail.chunks(1_000) {
            for (k, v) in chunk {
                send_waiting(
                    &p,
                    BaseRecord::to(&input)
                        .key(k.as_deref().unwrap())
                        .payload(v.as_deref().unwrap()),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        p.flush(Duration::from_secs(30)).unwrap();
    });
    wait_until("more outputs", Duration::from_secs(90), || {
        end_offsets(&t.output).values().sum::<i64>() >= 5_000
    });
    sigterm_and_wait(first);
    feeder.join().unwrap();
    let committed: i64 = committed_offsets(&t.group, &t.input)
        .values()
        .filter(|o| **o > 0)
        .sum();
    assert!(
        committed > 0 && committed < N as i64,
        "the first instance committed {committed} of {N}: the stop was not mid-stream"
    );

    let second = spawn_eos(&t);
    wait_until(
        "all input offsets committed",
        Duration::from_secs(180),
        || all_committed(&t.group, &t.input),
    );
    sigterm_and_wait(second);

    let outputs = consume_all(&t.output, Duration::from_secs(60));
    let letters = consume_all(&t.dlq, Duration::from_secs(30));
    let mut seen = HashSet::new();
    for m in outputs.iter().chain(&letters) {
        assert!(
            seen.insert(source_of(m)),
            "offset {:?} written twice under exactly-once",
            source_of(m)
        );
    }
    assert_eq!(seen, expected_sources(&t.input), "every input offset once");

    // Each output's status is the offline engine's judgement of its input.
    let offline = judged_offline(&t.input);
    for m in &outputs {
        let v = json(m);
        let expected = offline[&source_of(m)].map(|d| d.as_str());
        assert_eq!(
            v["status"].as_str(),
            expected,
            "input {:?} judged differently after the restart",
            source_of(m)
        );
    }
    for m in &letters {
        assert_eq!(offline[&source_of(m)], None);
    }

    // Transactional output: commit markers take offsets, so every written partition ends past
    // its records (read_committed reads records only).
    for (topic, msgs) in [(&t.output, &outputs), (&t.dlq, &letters)] {
        let ends = end_offsets(topic);
        for (p, n) in per_partition(msgs) {
            assert!(
                ends[&p] > n,
                "{topic} partition {p}: {n} records end at offset {}: no transaction markers",
                ends[&p]
            );
        }
    }
}

/// A device that used its 10 URLs stays rate limited after its partition moves to a new instance:
/// the new owner restores the state from the changelog.
fn state_survives_a_restart(guarantee: Guarantee) {
    let t = topics("restore", 2);
    let cfg = Config {
        processing_guarantee: guarantee,
        ..config(&t, true)
    };
    let event = |i: usize| {
        let e = format!(
            r#"{{"device_id":"dev-r","event_type":"t{i}","timestamp":"2026-11-26T10:{i:02}:00Z"}}"#
        );
        (Some(b"dev-r".to_vec()), Some(e.into_bytes()))
    };
    produce(&t.input, &(0..10).map(event).collect::<Vec<_>>());
    let first = start(cfg.clone());
    wait_until("first batch committed", Duration::from_secs(90), || {
        all_committed(&t.group, &t.input)
    });
    first.shutdown();

    produce(&t.input, &(10..12).map(event).collect::<Vec<_>>());
    let second = start(cfg);
    wait_until("second batch committed", Duration::from_secs(90), || {
        all_committed(&t.group, &t.input)
    });
    let restored = second.metrics.state_restored_records.get();
    second.shutdown();

    let outputs = consume_all(&t.output, Duration::from_secs(30));
    let mut statuses: Vec<(i64, String)> = outputs
        .iter()
        .map(|m| {
            (
                source_of(m).1,
                json(m)["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    statuses.sort();
    let statuses: Vec<&str> = statuses.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses.len(), 12, "{statuses:?}");
    assert!(
        statuses[..10].iter().all(|s| *s == "success"),
        "{statuses:?}"
    );
    assert_eq!(&statuses[10..], ["rate_limited", "rate_limited"]);
    assert!(restored >= 1, "restored {restored} changelog records");
    let unique: HashSet<_> = outputs.iter().map(source_of).collect();
    assert_eq!(unique.len(), 12);
}

#[test]
fn state_survives_a_restart_at_least_once() {
    state_survives_a_restart(Guarantee::AtLeastOnce);
}

#[test]
fn state_survives_a_restart_exactly_once() {
    state_survives_a_restart(Guarantee::ExactlyOnce);
}

/// A device's state as the changelog holds it: one success at `event_ms`.
fn one_success(device: &str, event_ms: i64) -> Vec<u8> {
    let mut states = DeviceStates::new(Limits::default(), 0);
    states.decide(device, event_ms, 1, event_ms);
    let mut bytes = Vec::new();
    snapshot::encode(states.get(device).expect("a state"), &mut bytes);
    bytes
}

/// Rule 11 (a restore's end): a restore reads to the end of the changelog partition as of its
/// start, records of a transaction still open then included, and waits for that transaction. The
/// previous owner's last committed transaction is open in this sense until the coordinator has
/// written its markers (right after a hand-over or a rewind, for seconds when the coordinator's
/// broker died), while the offsets committed with it already hold: a restore that ended at the
/// last stable offset, which a read_committed client is told as the end, judged the replayed
/// events without those successes (`kill_coordinators_exactly_once`: a device at 12 URLs an hour).
#[test]
fn a_restore_reads_to_the_end_as_of_its_start_past_an_open_transaction() {
    let topic = unique("restore-end");
    create_topics(&[(&topic, 1)]);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", &topic)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    let state = |device: &str| (device.to_owned(), one_success(device, 1_700_000_000_000));
    let send = |(device, state): (String, Vec<u8>)| {
        let r = BaseRecord::to(&topic)
            .partition(0)
            .key(device.as_bytes())
            .payload(&state[..]);
        send_waiting(&producer, r);
    };
    producer.begin_transaction().unwrap();
    send(state("committed"));
    producer.commit_transaction(timeout).unwrap();
    producer.begin_transaction().unwrap();
    send(state("open"));
    producer.flush(timeout).unwrap();

    let client = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .clone();
    let end = changelog::restore_end(&client, &topic, 0).unwrap();
    // 0: "committed", 1: its commit marker, 2: "open" (the last stable offset is 2).
    assert_eq!(
        end,
        (0, 3),
        "the end includes the open transaction's record"
    );
    let reader = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            let mut states = DeviceStates::new(Limits::default(), 0);
            let cancel = CancellationToken::new();
            changelog::read_to(&client, &topic, 0, end, &mut states, &cancel).unwrap();
            ["committed", "open"].map(|d| states.get(d).is_some())
        })
    };
    // The reader meets the end of the committed data (offset 2) within a second; it must wait
    // there while the transaction is open. One that stopped at that end finishes now: a reader
    // still waiting after 3 s is the one that waits (a slow machine can only hide the fault).
    let open_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < open_until {
        assert!(
            !reader.is_finished(),
            "the restore ended at the open transaction's last stable offset"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    producer.commit_transaction(timeout).unwrap();
    assert_eq!(
        reader.join().unwrap(),
        [true, true],
        "both devices restored"
    );
}
