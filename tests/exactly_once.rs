//! Exactly-once mode and state restore on the real broker.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use aepiot_stream::config::{Config, Guarantee};
use common::*;

fn eos(t: &Topics) -> Config {
    Config {
        processing_guarantee: Guarantee::ExactlyOnce,
        ..config(t, true)
    }
}

#[test]
fn exactly_once_writes_one_output_per_input() {
    let t = topics("eos", 3);
    let mut records = generated(5_000, 1_000, 31);
    records.push((Some(b"bad".to_vec()), Some(b"{not json".to_vec())));
    produce(&t.input, &records);
    let running = start(eos(&t));
    wait_until(
        "all input offsets committed",
        Duration::from_secs(120),
        || all_committed(&t.group, &t.input),
    );
    running.shutdown();

    // consume() reads with isolation.level=read_committed.
    let (total, sources) = all_sources(&t);
    assert_eq!(sources, expected_sources(&t.input));
    assert_eq!(total, sources.len(), "duplicates under exactly-once");
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
