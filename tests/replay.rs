//! Replay from a point in time, on the real broker. Input records carry Kafka timestamps in three
//! periods (old, middle, new):
//! - `run --start-from T` on a group with no committed offsets processes only the records at or
//!   after `T`;
//! - on the same group, now with committed offsets, it refuses and names `reset-offsets`;
//! - `reset-offsets` refuses while the group has an active member, then moves the stopped
//!   group's offsets to a later time, says what happens to the state, and a plain `run`
//!   processes only the records at or after that time.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use aepiot_stream::processor::RunHooks;
use aepiot_stream::replay::StartFrom;
use common::*;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::json;

/// Produces one event per device id with the given Kafka record timestamp (and no `timestamp`
/// field, so the record's is the event time too).
fn produce_at(topic: &str, devices: &[String], ms: i64) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for d in devices {
        let payload = serde_json::to_vec(&json!({"device_id": d, "event_type": "replay"})).unwrap();
        p.send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .key(d.as_bytes())
                .payload(&payload)
                .timestamp(ms),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn devices(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn start_from(config: aepiot_stream::config::Config, from: Option<StartFrom>) -> Running {
    let hooks = RunHooks {
        start_from: from,
        ..RunHooks::default()
    };
    start_with(config, hooks)
}

/// Device ids of every record of `topic`.
fn output_devices(topic: &str) -> Vec<String> {
    consume_all(topic, Duration::from_secs(60))
        .iter()
        .map(|m| json(m)["device_id"].as_str().unwrap().to_string())
        .collect()
}

fn reset_offsets(group: &str, input: &str, to: &str) -> std::process::Output {
    Command::new(bin())
        .args(["reset-offsets", "--brokers", brokers(), "--group-id", group])
        .args(["--input-topic", input, "--to-datetime", to])
        .output()
        .unwrap()
}

#[test]
fn replay_from_a_point_in_time_on_a_new_group_then_by_resetting_a_stopped_one() {
    let t = topics("replay", 3);
    let now = aepiot_stream::kafka::clock::now_ms();
    let (old_at, mid_at, new_at) = (now - 3 * 3_600_000, now - 2 * 3_600_000, now - 3_600_000);
    let (old, mid, new) = (devices("old", 12), devices("mid", 12), devices("new", 12));
    produce_at(&t.input, &old, old_at);
    produce_at(&t.input, &mid, mid_at);
    produce_at(&t.input, &new, new_at);

    // A new group from the middle period on (relative: "-150m" is between old and mid).
    let from = StartFrom::parse("-150m", now).unwrap();
    let running = start_from(config(&t, true), Some(from));
    wait_until("input committed", Duration::from_secs(60), || {
        all_committed(&t.group, &t.input)
    });
    running.shutdown();
    let seen: HashSet<String> = output_devices(&t.output).into_iter().collect();
    let want: HashSet<String> = mid.iter().chain(&new).cloned().collect();
    assert_eq!(seen, want, "only events at or after the time are processed");

    // The group has committed offsets now: --start-from refuses and names reset-offsets.
    let again = start_from(config(&t, true), Some(from));
    let err = again
        .rt
        .block_on(again.task)
        .unwrap()
        .expect_err("--start-from on a group with committed offsets must refuse")
        .to_string();
    assert!(
        err.contains(&format!(
            "aepiot-stream reset-offsets --group-id {} --to-datetime {}",
            t.group,
            from.rfc3339()
        )),
        "{err}"
    );

    // While an instance of the group runs, reset-offsets refuses.
    let running = start_from(config(&t, true), None);
    wait_until("the instance joined", Duration::from_secs(60), || {
        running.metrics.assigned_partitions.get() == 3
    });
    let to = aepiot_stream::core::time::format_rfc3339_ms(new_at);
    let out = reset_offsets(&t.group, &t.input, &to);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "reset-offsets must refuse while the group runs"
    );
    assert!(stderr.contains("active member"), "{stderr}");
    running.shutdown();

    // Stopped: the offsets move to the newest period; a plain run replays only that.
    let out = reset_offsets(&t.group, &t.input, &to);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reset-offsets failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("moved to the first records at or after"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&config(&t, true).changelog_topic(&t.input)),
        "{stdout}"
    );
    assert!(stdout.contains("empty state"), "{stdout}");
    let out2 = unique("replay-out2");
    create_topics(&[(&out2, 3)]);
    let mut second = config(&t, true);
    second.output_topic = out2.clone();
    let running = start_from(second, None);
    wait_until("input committed again", Duration::from_secs(60), || {
        all_committed(&t.group, &t.input)
    });
    running.shutdown();
    let mut replayed = output_devices(&out2);
    replayed.sort();
    let mut want = new.clone();
    want.sort();
    assert_eq!(
        replayed, want,
        "only events at or after the reset time are processed"
    );
}
