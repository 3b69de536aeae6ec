//! A regional cluster's outage, on real brokers: Europe's records go to a second cluster, which is
//! stopped while the processor runs. Its records wait (the partition holding them is not committed
//! past them, and the metrics show the wait), the other regions and partitions go on, and once the
//! cluster is back everything is delivered, once, and committed.
//!
//! The stopped cluster is a broker of this test's own (port 19698, data in
//! /tmp/aepiot-kafka-outage), in a test binary of its own, so stopping it disturbs no other test.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aepiot_stream::config::KafkaProperties;
use aepiot_stream::residency::{ClusterConfig, RegionOutput, TopicOnCluster};
use common::*;

const PORT: u16 = 19698;
const DATA_DIR: &str = "/tmp/aepiot-kafka-outage";

/// Stops this test's broker when the test ends, however it ends.
struct Broker;

impl Drop for Broker {
    fn drop(&mut self) {
        kafka_sh(PORT, DATA_DIR, "stop");
    }
}

fn event(device: &str, region: &str) -> (Vec<u8>, Vec<u8>) {
    let e = format!(r#"{{"device_id":"{device}","event_type":"t","region":"{region}"}}"#);
    (device.as_bytes().to_vec(), e.into_bytes())
}

fn events(prefix: &str, region: &str, from: usize, to: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (from..to)
        .map(|i| event(&format!("{prefix}-{i}"), region))
        .collect()
}

/// Device id → copies, of a topic.
fn devices(bootstrap: &str, topic: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in consume_all_on(bootstrap, topic, Duration::from_secs(30)) {
        let device = json(&m)["device_id"].as_str().unwrap().to_owned();
        *out.entry(device).or_insert(0) += 1;
    }
    out
}

fn once(names: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    names.into_iter().map(|n| (n, 1)).collect()
}

#[test]
fn a_stopped_regional_cluster_holds_back_its_partitions_only_and_loses_nothing() {
    let eu = start_broker(PORT, DATA_DIR);
    let _broker = Broker;
    let t = topics("outage", 2);
    let eu_topic = unique("outage-eu");
    create_topics_on(&eu, &[(&eu_topic, 1)]);

    let mut cfg = config(&t, false);
    let mut kafka = KafkaProperties::default();
    // Statistics (the wait metrics) every second, and quick reconnects once the cluster is back.
    kafka.insert("statistics.interval.ms".into(), "1000".into());
    kafka.insert("reconnect.backoff.max.ms".into(), "1000".into());
    cfg.clusters.insert(
        "eu".into(),
        ClusterConfig {
            brokers: eu.clone(),
            kafka,
            ..Default::default()
        },
    );
    cfg.output_topics_by_region.insert(
        "europe".into(),
        RegionOutput::OnCluster(TopicOnCluster {
            topic: eu_topic.clone(),
            cluster: "eu".into(),
        }),
    );

    // Partition 0 mixes Europe and North America; partition 1 has no European record.
    let mut p0 = events("eu", "europe", 0, 5);
    p0.extend(events("na", "north_america", 0, 5));
    produce_to(&t.input, 0, &p0);
    produce_to(&t.input, 1, &events("ap", "asia_pacific", 0, 5));
    let running = start(cfg);
    let m = running.metrics.clone();
    wait_until(
        "the first records committed",
        Duration::from_secs(90),
        || all_committed(&t.group, &t.input),
    );

    kafka_sh(PORT, DATA_DIR, "stop");
    // Europe's records first on partition 0: everything after them on it waits for their acks.
    let held_at = end_offsets(&t.input)[&0];
    let mut p0 = events("eu", "europe", 5, 10);
    p0.extend(events("na", "north_america", 5, 10));
    produce_to(&t.input, 0, &p0);
    produce_to(&t.input, 1, &events("na", "north_america", 10, 15));

    let eu_label = ["eu"];
    wait_until(
        "partition 1 committed, North America's records written, the wait in the metrics",
        Duration::from_secs(90),
        || {
            let ends = end_offsets(&t.input);
            committed_offsets(&t.group, &t.input)[&1] == ends[&1]
                && m.cluster_ack_wait.with_label_values(&eu_label).get() >= 2.0
                && m.cluster_outputs_waiting.with_label_values(&eu_label).get() >= 5
                && consume_all(&t.output, Duration::from_secs(30)).len() == 20
        },
    );
    assert_eq!(
        committed_offsets(&t.group, &t.input)[&0],
        held_at,
        "partition 0 must not be committed past its first European record while the EU cluster is away"
    );
    assert!(m.producer_errors.with_label_values(&eu_label).get() > 0);
    assert_eq!(m.producer_errors.with_label_values(&["main"]).get(), 0);
    assert_eq!(m.cluster_ack_wait.with_label_values(&["main"]).get(), 0.0);

    kafka_sh(PORT, DATA_DIR, "start");
    wait_until(
        "everything committed and acknowledged once the EU cluster is back",
        Duration::from_secs(120),
        || {
            all_committed(&t.group, &t.input)
                && m.cluster_outputs_waiting.with_label_values(&eu_label).get() == 0
                && m.cluster_ack_wait.with_label_values(&eu_label).get() == 0.0
        },
    );
    running.shutdown();

    // Every European record on the EU cluster, once; none on the main cluster.
    let eu_devices = (0..10).map(|i| format!("eu-{i}"));
    assert_eq!(devices(&eu, &eu_topic), once(eu_devices));
    let main_devices = (0..15)
        .map(|i| format!("na-{i}"))
        .chain((0..5).map(|i| format!("ap-{i}")));
    assert_eq!(devices(brokers(), &t.output), once(main_devices));
    assert!(consume_all(&t.dlq, Duration::from_secs(10)).is_empty());
}
