//! `aepiot-stream demo`: the whole pipeline with nothing installed. librdkafka's in-process mock
//! cluster stands in for Kafka, the built-in generator plays a factory, and the processor runs
//! exactly as `run` does, serving metrics. Prints a live summary and sample URLs, then stops.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, GroupProtocol};
use crate::generate::Profile;
use crate::http;
use crate::metrics::Metrics;
use crate::processor::{self, output_limit, RunHooks};
use crate::simulate::{simulate, SimulateOptions};

/// The demo's defaults (its flags' defaults; README's quick start states them, and
/// tests/readme.rs checks that it does).
pub mod defaults {
    /// Seconds of generated events.
    pub const DURATION_SECS: u64 = 15;
    /// Events per second.
    pub const RATE: u64 = 2000;
    /// Distinct simulated devices.
    pub const DEVICES: u64 = 500;
    /// Where the status page, `/metrics` and the probes are served.
    pub const METRICS_ADDR: &str = "127.0.0.1:9464";
    /// The fleet's shape.
    pub const PROFILE: crate::generate::Profile = crate::generate::Profile::Factory;
}

pub struct DemoOptions {
    pub duration: Duration,
    pub rate: u64,
    pub devices: u64,
    pub profile: Profile,
    pub metrics_addr: String,
    pub samples: usize,
}

const INPUT: &str = "iot-events";
const PARTITIONS: i32 = 6;

pub async fn demo(opts: DemoOptions) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)
        .map_err(|e| anyhow::anyhow!("cannot start the mock Kafka cluster: {e}"))?;
    let config = Config {
        brokers: cluster.bootstrap_servers(),
        input_topics: vec![INPUT.into()],
        group_id: "aepiot-demo".into(),
        metrics_addr: opts.metrics_addr.clone(),
        // The mock cluster models the classic group protocol only.
        group_protocol: GroupProtocol::Classic,
        progress_interval_secs: 0,
        ..Config::default()
    };
    // The state changelog too: the mock cluster ignores the partition count of a CreateTopics
    // request (its topics get 4), so `run` would find a changelog that does not match the input.
    let changelog = config.changelog_topic(INPUT);
    for (topic, partitions) in [
        (INPUT, PARTITIONS),
        (&config.output_topic, 3),
        (&config.dead_letter_topic, 1),
        (&changelog, PARTITIONS),
    ] {
        cluster
            .create_topic(topic, partitions, 1)
            .map_err(|e| anyhow::anyhow!("cannot create {topic}: {e}"))?;
    }
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let listener = http::bind(&opts.metrics_addr).await?;
    // The status page's address first: it is what to open while the demo runs.
    if let Some(addr) = listener.as_ref().map(|l| l.local_addr()).transpose()? {
        println!(
            "aepiot-stream demo: live status page at http://{addr}/ (open it while the demo runs)"
        );
        println!("  metrics: http://{addr}/metrics  (also /healthz, /readyz, /api/status)");
    }
    let hooks = RunHooks {
        metrics: Some(metrics.clone()),
        // The mock cluster does not answer DescribeConfigs; its topics take librdkafka's default.
        max_output_bytes: Some(output_limit::known_limit(output_limit::PRODUCER_DEFAULT)),
        ..RunHooks::default()
    };
    let mut pipeline = tokio::spawn(processor::run(
        config.clone(),
        listener,
        shutdown.clone(),
        hooks,
    ));
    println!("  in-process mock Kafka at {}", config.brokers);
    println!(
        "  {} events/s from {} simulated {:?} devices for {} s → topic {INPUT} ({PARTITIONS} partitions)",
        opts.rate,
        opts.devices,
        opts.profile,
        opts.duration.as_secs()
    );

    let sim_opts = SimulateOptions {
        brokers: config.brokers.clone(),
        topic: INPUT.into(),
        profile: opts.profile,
        devices: opts.devices,
        rate: opts.rate,
        count: None,
        duration: Some(opts.duration),
        seed: 1,
        invalid_ratio: 0.005,
        event_bytes: 0,
        kafka: vec![],
        progress: false,
    };
    let sim_stop = shutdown.child_token();
    let sim = tokio::task::spawn_blocking(move || simulate(&sim_opts, &sim_stop));
    let samples = tokio::spawn(print_samples(
        config.brokers.clone(),
        config.output_topic.clone(),
        opts.samples,
    ));

    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    let report = loop {
        tokio::select! {
            _ = tick.tick() => print_summary(&metrics, start),
            _ = tokio::signal::ctrl_c() => { shutdown.cancel(); }
        }
        if sim.is_finished() {
            break sim.await??;
        }
        if pipeline.is_finished() && !shutdown.is_cancelled() {
            shutdown.cancel();
            (&mut pipeline).await??;
            anyhow::bail!("the processor stopped before the demo ended");
        }
    };
    // Let the processor catch up with what was produced, then stop it cleanly.
    let settle = Instant::now();
    while processed(&metrics) < report.acked && settle.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    pipeline.await??;
    samples.abort();
    print_summary(&metrics, start);
    println!(
        "Batch processed: {}/{} successful (cached: {}, rate_limited: {}, invalid: {}); {} URLs generated; {} events produced",
        metrics.events_of("success"),
        processed(&metrics),
        metrics.events_of("cached"),
        metrics.events_of("rate_limited"),
        metrics.events_of("invalid"),
        metrics.urls_generated.get(),
        report.acked
    );
    Ok(())
}

fn processed(m: &Metrics) -> u64 {
    crate::metrics::OUTCOMES
        .iter()
        .map(|o| m.events_of(o))
        .sum()
}

fn print_summary(m: &Metrics, start: Instant) {
    let total = processed(m);
    println!(
        "[{:>5.1}s] processed {total} ({:.0}/s): success {}, cached {}, rate_limited {}, invalid {}; URLs {}",
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64().max(1e-3),
        m.events_of("success"),
        m.events_of("cached"),
        m.events_of("rate_limited"),
        m.events_of("invalid"),
        m.urls_generated.get()
    );
}

/// Reads the output topic and prints the first few URL records.
async fn print_samples(brokers: String, topic: String, n: usize) -> anyhow::Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "aepiot-demo-samples")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    for _ in 0..n {
        let msg = consumer.recv().await?;
        let record: serde_json::Value = serde_json::from_slice(msg.payload().unwrap_or_default())?;
        println!(
            "  sample (key {}): {} [{}] → {}\n      regional: {}",
            String::from_utf8_lossy(msg.key().unwrap_or_default()),
            record["device_id"].as_str().unwrap_or(""),
            record["status"].as_str().unwrap_or(""),
            record["urls"][0].as_str().unwrap_or(""),
            record["regional_url"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
