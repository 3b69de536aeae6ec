//! Data residency on the real brokers: each region's URL records in its own topic and nowhere
//! else, the `global` fallback, strict `unknown_region = "dead_letter"`, a start-up check that
//! covers every region's topic, and a region on a second cluster (the broker of
//! `KAFKA_BOOTSTRAP_EU`, which scripts/test.sh starts). A regional cluster's outage is in
//! tests/residency_outage.rs, on a broker of its own.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aepiot_stream::config::{Config, Guarantee, UnknownRegion};
use aepiot_stream::residency::{ClusterConfig, RegionOutput, TopicOnCluster};
use common::*;

struct Residency {
    t: Topics,
    eu: String,
    ap: String,
}

fn setup(name: &str) -> Residency {
    let t = topics(name, 2);
    let (eu, ap) = (unique(&format!("{name}-eu")), unique(&format!("{name}-ap")));
    create_topics(&[(&eu, 2), (&ap, 1)]);
    Residency { t, eu, ap }
}

fn residency_config(r: &Residency, unknown: UnknownRegion) -> Config {
    let mut c = config(&r.t, false);
    c.output_topics_by_region
        .insert("europe".into(), r.eu.as_str().into());
    c.output_topics_by_region
        .insert("asia_pacific".into(), r.ap.as_str().into());
    c.unknown_region = unknown;
    c
}

/// 10 events each from Europe, Asia-Pacific and North America, 5 with no region, 5 from "mars".
fn events() -> Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for (prefix, region) in [
        ("eu", Some("europe")),
        ("ap", Some("asia_pacific")),
        ("na", Some("north_america")),
    ] {
        for i in 0..10 {
            out.push(event(&format!("{prefix}-{i}"), region));
        }
    }
    for i in 0..5 {
        out.push(event(&format!("none-{i}"), None));
        out.push(event(&format!("mars-{i}"), Some("mars")));
    }
    out
}

fn event(device: &str, region: Option<&str>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let region = region.map_or(String::new(), |r| format!(r#","region":"{r}""#));
    let e = format!(r#"{{"device_id":"{device}","event_type":"t"{region}}}"#);
    (Some(device.as_bytes().to_vec()), Some(e.into_bytes()))
}

/// Device-id prefix → count, and the `region` field of every record, of one topic.
fn read(topic: &str) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut prefixes = BTreeMap::new();
    let mut regions = Vec::new();
    for m in consume_all(topic, Duration::from_secs(30)) {
        let v = json(&m);
        let device = v["device_id"].as_str().unwrap();
        let prefix = device.split('-').next().unwrap().to_owned();
        *prefixes.entry(prefix).or_insert(0) += 1;
        regions.push(v["region"].as_str().unwrap().to_owned());
    }
    (prefixes, regions)
}

fn run_to_end(cfg: Config, r: &Residency) -> aepiot_stream::metrics::Metrics {
    produce(&r.t.input, &events());
    let running = start(cfg);
    wait_until("all committed", Duration::from_secs(90), || {
        all_committed(&r.t.group, &r.t.input)
    });
    let metrics = running.metrics.clone();
    running.shutdown();
    metrics
}

#[test]
fn each_region_writes_to_its_own_topic_and_unknown_regions_fall_back_to_global() {
    let r = setup("residency");
    let metrics = run_to_end(residency_config(&r, UnknownRegion::Global), &r);

    let (eu, eu_regions) = read(&r.eu);
    assert_eq!(eu, BTreeMap::from([("eu".to_string(), 10)]));
    assert!(eu_regions.iter().all(|x| x == "europe"));
    let (ap, _) = read(&r.ap);
    assert_eq!(ap, BTreeMap::from([("ap".to_string(), 10)]));
    // North America has no topic of its own; absent and unknown regions count as `global`.
    let (rest, rest_regions) = read(&r.t.output);
    assert_eq!(
        rest,
        BTreeMap::from([
            ("mars".to_string(), 5),
            ("na".to_string(), 10),
            ("none".to_string(), 5)
        ])
    );
    assert_eq!(rest_regions.iter().filter(|x| *x == "global").count(), 10);
    assert!(consume_all(&r.t.dlq, Duration::from_secs(10)).is_empty());
    let written = |t: &str| metrics.records_written.with_label_values(&[t]).get();
    assert_eq!(
        (written(&r.eu), written(&r.ap), written(&r.t.output)),
        (10, 10, 20)
    );
}

#[test]
fn strict_residency_makes_dead_letters_of_absent_and_unknown_regions() {
    let r = setup("strict");
    run_to_end(residency_config(&r, UnknownRegion::DeadLetter), &r);

    assert_eq!(read(&r.eu).0, BTreeMap::from([("eu".to_string(), 10)]));
    assert_eq!(read(&r.ap).0, BTreeMap::from([("ap".to_string(), 10)]));
    assert_eq!(
        read(&r.t.output).0,
        BTreeMap::from([("na".to_string(), 10)])
    );
    let dead = consume_all(&r.t.dlq, Duration::from_secs(30));
    assert_eq!(dead.len(), 10);
    for d in &dead {
        let v = json(d);
        assert_eq!(v["error"]["kind"], "invalid_field");
        assert_eq!(v["error"]["field"], "region");
    }
}

#[test]
fn a_missing_region_topic_fails_the_start_up_check() {
    let t = topics("residency-missing", 1);
    let missing = unique("residency-nowhere");
    let mut cfg = config(&t, false);
    cfg.output_topics_by_region
        .insert("europe".into(), missing.as_str().into());
    cfg.startup_timeout_ms = 3_000;
    let running = start(cfg);
    let err = running
        .rt
        .block_on(running.task)
        .unwrap()
        .expect_err("start-up must fail");
    assert!(err.to_string().contains(&missing), "{err}");
}

/// Europe's records on the second cluster.
fn on_eu_cluster(cfg: &mut Config, topic: &str) {
    cfg.clusters.insert(
        "eu".into(),
        ClusterConfig {
            brokers: eu_brokers().to_string(),
            ..Default::default()
        },
    );
    cfg.output_topics_by_region.insert(
        "europe".into(),
        RegionOutput::OnCluster(TopicOnCluster {
            topic: topic.into(),
            cluster: "eu".into(),
        }),
    );
}

/// Device-id prefix → count of a topic on the second cluster.
fn read_eu(topic: &str) -> BTreeMap<String, usize> {
    let mut prefixes = BTreeMap::new();
    for m in consume_all_on(eu_brokers(), topic, Duration::from_secs(30)) {
        let v = json(&m);
        assert_eq!(v["region"], "europe");
        let device = v["device_id"].as_str().unwrap();
        *prefixes
            .entry(device.split('-').next().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    prefixes
}

#[test]
fn a_region_on_its_own_cluster_stays_there_and_its_topic_is_created_there() {
    let r = setup("cluster");
    // The European topic exists on neither cluster: `create_topics` makes it on the EU cluster.
    let eu_topic = unique("cluster-eu-only");
    let mut cfg = residency_config(&r, UnknownRegion::Global);
    on_eu_cluster(&mut cfg, &eu_topic);
    cfg.create_topics = true;
    let metrics = run_to_end(cfg, &r);

    assert!(topic_exists_on(eu_brokers(), &eu_topic));
    assert!(
        !topic_exists_on(brokers(), &eu_topic),
        "the EU topic was made on the main cluster too"
    );
    assert_eq!(read_eu(&eu_topic), BTreeMap::from([("eu".to_string(), 10)]));
    // Nothing European on the main cluster: not in Europe's old topic, nor the fallback.
    assert!(consume_all(&r.eu, Duration::from_secs(10)).is_empty());
    assert_eq!(read(&r.ap).0, BTreeMap::from([("ap".to_string(), 10)]));
    assert_eq!(
        read(&r.t.output).0,
        BTreeMap::from([
            ("mars".to_string(), 5),
            ("na".to_string(), 10),
            ("none".to_string(), 5)
        ])
    );
    let written = |t: &str| metrics.records_written.with_label_values(&[t]).get();
    assert_eq!((written(&eu_topic), written(&r.t.output)), (10, 20));
    let label = |c: &str| metrics.producer_errors.with_label_values(&[c]).get();
    assert_eq!((label("main"), label("eu")), (0, 0));
}

#[test]
fn a_missing_topic_on_the_regional_cluster_fails_the_start_up_check() {
    let r = setup("cluster-missing");
    let missing = unique("cluster-nowhere");
    // It exists on the main cluster, which must not count.
    create_topics(&[(&missing, 1)]);
    let mut cfg = residency_config(&r, UnknownRegion::Global);
    on_eu_cluster(&mut cfg, &missing);
    cfg.startup_timeout_ms = 5_000;
    let running = start(cfg);
    let err = running
        .rt
        .block_on(running.task)
        .unwrap()
        .expect_err("start-up must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&missing) && msg.contains("cluster \"eu\""),
        "{msg}"
    );
}

#[test]
fn exactly_once_with_a_second_cluster_is_refused_at_start() {
    let r = setup("cluster-eos");
    let mut cfg = residency_config(&r, UnknownRegion::Global);
    on_eu_cluster(&mut cfg, &r.eu);
    cfg.processing_guarantee = Guarantee::ExactlyOnce;
    let running = start(cfg);
    let err = running
        .rt
        .block_on(running.task)
        .unwrap()
        .expect_err("exactly-once across clusters must be refused");
    assert!(
        err.to_string()
            .contains("a Kafka transaction cannot span clusters"),
        "{err}"
    );
}
