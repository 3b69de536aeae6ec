//! An instance assigned many partitions restores their state a few at a time
//! (`processor::worker_env::RESTORES_AT_ONCE`): each restore is a Kafka client of its own, and
//! without the bound every assigned partition opened one at once. Counted from outside the code
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

#[test]
fn many_partitions_restore_a_few_at_a_time() {
    let t = common::topics("restore-bound", PARTITIONS);
    let running = common::start(common::config(&t, false));
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
    running.shutdown();
    println!("at most {most} Kafka clients at once");
    // A restore opens two clients in turn (its end, then the read), and one may still be closing
    // as the next opens; besides the restores, the consumer and the producer.
    assert!(
        most <= 2 * RESTORES_AT_ONCE + 2,
        "{most} Kafka clients at once while {PARTITIONS} partitions restored (at most \
         {RESTORES_AT_ONCE} restores at a time, besides the consumer and the producer)"
    );
    assert!(
        most >= 2,
        "the sampling saw the consumer and the producer: {most}"
    );
}
