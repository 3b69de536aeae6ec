//! A partition taken away while its worker waits for its turn to restore (restores run a few at a
//! time) or restores lets go like any other worker: its per-partition gauges, which the status
//! page and dashboards read as "this instance holds that partition", go with it. Before, such a
//! worker ended without its end, so two instances went on showing the same partitions (the fault
//! harness, which reads owners from the workers' start and stop lines, saw two owners).
//!
//! Instance A is assigned 480 partitions and starts restoring them, eight at a time (a few
//! seconds: with 120 the restores could all end before the group had moved any); B joins the
//! group while A is still at it and takes half. Then A's and B's partitions, as their gauges say,
//! must be disjoint and cover the topic.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aepiot_stream::metrics::Metrics;

const PARTITIONS: i32 = 480;

/// The input partitions `m`'s instance shows as held: those with an `aepiot_state_devices` series.
fn shown(m: &Metrics) -> BTreeSet<i32> {
    use prometheus::core::Collector;
    m.state_devices
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter_map(|metric| {
            metric
                .get_label()
                .iter()
                .find(|l| l.name() == "partition")
                .and_then(|l| l.value().parse().ok())
        })
        .collect()
}

#[test]
fn a_partition_taken_away_during_its_restore_is_let_go() {
    let t = common::topics("restore-revoke", PARTITIONS);
    let a = common::start(common::config(&t, false));
    let restored = a.metrics.state_restore_seconds.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    while restored.get_sample_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "A restored no partition in 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let b = common::start(common::config(&t, false));
    let at_join = restored.get_sample_count();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (held_a, held_b) = (shown(&a.metrics), shown(&b.metrics));
        let both: Vec<i32> = held_a.intersection(&held_b).copied().collect();
        let all = held_a.union(&held_b).count();
        if both.is_empty() && all == PARTITIONS as usize && !held_a.is_empty() && !held_b.is_empty()
        {
            println!(
                "B joined with {at_join} of {PARTITIONS} restores done; A shows {}, B {}",
                held_a.len(),
                held_b.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "120 s after B joined (A had restored {at_join} of {PARTITIONS}): A shows {} \
             partitions, B {}, {} shown by both (first: {:?}), {all} of {PARTITIONS} shown",
            held_a.len(),
            held_b.len(),
            both.len(),
            &both[..both.len().min(8)]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    b.shutdown();
    a.shutdown();
}
