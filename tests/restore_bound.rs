//! An instance assigned many partitions restores their state a few at a time
//! (`processor::worker_env::RESTORES_AT_ONCE`): each restore that reads records is a Kafka client of
//! its own, and without the bound every assigned partition opened one at once; an empty changelog
//! partition opens none (its ends come through the one shared client). Counted from outside the code
//! that bounds it: every librdkafka client runs a thread named `rdk:main`, so this process's
//! `rdk:main` threads, sampled while 120 partitions restore, are its live clients. Alone in its
//! test binary, so that no other test's clients count.

mod common;

use std::time::{Duration, Instant};

use aepiot_stream::processor::worker_env::RESTORES_AT_ONCE;

const PARTITIONS: i32 = 120;

/// This process's librdkafka clients now: its threads named `rdk:main`.
fn clients() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "rdk:main")
        .count()
}

/// Samples this process's clients until `running` has restored every partition; the most seen.
fn most_clients_while_restoring(running: &common::Running) -> usize {
    let restores = running.metrics.state_restore_seconds.clone();
    let (mut most, deadline) = (0, Instant::now() + Duration::from_secs(180));
    while restores.get_sample_count() < PARTITIONS as u64 {
        most = most.max(clients());
        assert!(
            Instant::now() < deadline,
            "{} of {PARTITIONS} partitions restored in 180 s",
            restores.get_sample_count()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    most
}

#[test]
fn many_partitions_restore_a_few_at_a_time() {
    let t = common::topics("restore-bound", PARTITIONS);
    let config = common::config(&t, false);

    // A new group: every changelog partition is empty, and its restore needs no client of its
    // own, only the one every restore asks for ends.
    let running = common::start(config.clone());
    let most = most_clients_while_restoring(&running);
    running.shutdown();
    println!("empty changelog: at most {most} Kafka clients at once");
    assert!(
        most <= 3,
        "{most} Kafka clients at once while {PARTITIONS} empty changelog partitions restored \
         (the consumer, the producer and the one that asks for ends)"
    );
    assert!(
        most >= 2,
        "the sampling saw the consumer and the producer: {most}"
    );

    // One state record in every changelog partition: each restore reads with a client of its
    // own, at most RESTORES_AT_ONCE at a time.
    let changelog = format!("{}-{}-changelog", t.group, t.input);
    for p in 0..PARTITIONS {
        common::produce_to(&changelog, p, &[(b"dev".to_vec(), b"not a state".to_vec())]);
    }
    let running = common::start(config);
    let most = most_clients_while_restoring(&running);
    running.shutdown();
    println!("one record a partition: at most {most} Kafka clients at once");
    // A read client may still be closing as the next opens; besides the restores, the consumer,
    // the producer and the ends' client.
    assert!(
        most <= 2 * RESTORES_AT_ONCE + 3,
        "{most} Kafka clients at once while {PARTITIONS} partitions restored (at most \
         {RESTORES_AT_ONCE} restores at a time, besides the consumer, the producer and the \
         ends' client)"
    );
    assert!(
        most > 3,
        "restores that read records opened clients of their own: {most}"
    );
}
