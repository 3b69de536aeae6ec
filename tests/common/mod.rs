//! Helpers for tests on the project's real Kafka broker (`scripts/kafka.sh`). The broker is
//! started if it is not running; every test uses its own topics and group, so tests run in
//! parallel.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aepiot_stream::config::Config;
use aepiot_stream::generate::{Generator, Profile};
use aepiot_stream::metrics::Metrics;
use aepiot_stream::processor::{self, RunHooks};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::HashSet;
use tokio_util::sync::CancellationToken;

/// Points every helper here at a broker the test binary started itself (a fault test's own broker
/// or cluster). Each helper reads `KAFKA_BOOTSTRAP` once, through [`brokers`], so this must run
/// before anything has asked for it: the assertion catches a caller that came too late.
pub fn use_brokers(addr: &str) {
    std::env::set_var("KAFKA_BOOTSTRAP", addr);
    assert_eq!(
        brokers(),
        addr,
        "common::brokers() was initialised too early"
    );
}

/// The broker's bootstrap address: `KAFKA_BOOTSTRAP`, or the project's broker, started on demand.
pub fn brokers() -> &'static str {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS.get_or_init(|| {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return b;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run scripts/kafka.sh");
        assert!(
            out.status.success(),
            "scripts/kafka.sh start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("bash")
            .arg(&script)
            .arg("bootstrap")
            .output()
            .expect("run scripts/kafka.sh");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// The second cluster's bootstrap address (data-residency tests): `KAFKA_BOOTSTRAP_EU`, which
/// scripts/test.sh sets, or a broker of the project's on port 19696 (data in
/// /tmp/aepiot-kafka-eu), started on demand. Never skipped: a broker that cannot start fails the
/// test.
pub fn eu_brokers() -> &'static str {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS.get_or_init(|| {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP_EU") {
            return b;
        }
        start_broker(19696, "/tmp/aepiot-kafka-eu")
    })
}

/// Starts (if not running) a broker of scripts/kafka.sh on `port` with its data in `data_dir`;
/// returns its bootstrap address.
pub fn start_broker(port: u16, data_dir: &str) -> String {
    kafka_sh(port, data_dir, "start");
    format!("127.0.0.1:{port}")
}

/// Runs `scripts/kafka.sh <command>` for the broker on `port`; panics with its output on failure.
pub fn kafka_sh(port: u16, data_dir: &str, command: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(command)
        .env("KAFKA_PORT", port.to_string())
        .env("KAFKA_DATA_DIR", data_dir)
        .output()
        .expect("run scripts/kafka.sh");
    assert!(
        out.status.success(),
        "scripts/kafka.sh {command} (port {port}) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{prefix}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn create_topics(topics: &[(&str, i32)]) {
    create_topics_on(brokers(), topics)
}

/// Creates topics on the cluster at `bootstrap` (the cluster's default replication factor) and
/// waits until their metadata shows.
pub fn create_topics_on(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(-1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap();
    for r in results {
        r.unwrap();
    }
    // Wait until every topic's metadata shows up, so producers and consumers see it.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (t, p) in topics {
        loop {
            let md = admin
                .inner()
                .fetch_metadata(Some(t), Duration::from_secs(5));
            if md.is_ok_and(|m| {
                m.topics()
                    .first()
                    .is_some_and(|x| x.partitions().len() == *p as usize && x.error().is_none())
            }) {
                break;
            }
            assert!(Instant::now() < deadline, "topic {t} did not appear");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Produces `(key, payload)` records (payload `None` = tombstone) and waits for all acks.
pub fn produce(topic: &str, records: &[(Option<Vec<u8>>, Option<Vec<u8>>)]) {
    produce_within(topic, records, Duration::from_secs(30));
}

/// [`produce`], waiting up to `flush` for the acknowledgements (a test whose broker it is about to
/// hang, or a cluster that is still electing leaders, needs more than the usual 30 s).
pub fn produce_within(
    topic: &str,
    records: &[(Option<Vec<u8>>, Option<Vec<u8>>)],
    flush: Duration,
) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (k, v) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = k {
            r = r.key(k.as_slice());
        }
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        send_waiting(&p, r);
    }
    p.flush(flush).unwrap();
    assert_eq!(p.in_flight_count(), 0);
}

/// Reads a topic from the beginning until `n` records arrived (or `timeout`), read_committed.
pub fn consume(topic: &str, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            // Transient client errors (a broker connection dropped): librdkafka recovers.
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
    }
    out
}

/// Reads everything committed in a topic: every partition up to its end (read_committed, so
/// transaction markers and aborted records are skipped).
pub fn consume_all(topic: &str, timeout: Duration) -> Vec<OwnedMessage> {
    consume_all_on(brokers(), topic, timeout)
}

/// [`consume_all`] on the cluster at `bootstrap`.
pub fn consume_all_on(bootstrap: &str, topic: &str, timeout: Duration) -> Vec<OwnedMessage> {
    let ends = end_offsets_on(bootstrap, topic);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut at_end: HashSet<i32> = ends
        .iter()
        .filter(|(_, e)| **e == 0)
        .map(|(p, _)| *p)
        .collect();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while at_end.len() < ends.len() {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                // EOF counts only once the position has reached the end taken at the start.
                let pos = c.position().unwrap();
                let reached = pos.elements().iter().any(|e| {
                    e.partition() == p && matches!(e.offset(), Offset::Offset(o) if o >= ends[&p])
                });
                if reached {
                    at_end.insert(p);
                }
            }
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
    }
    out
}

/// Retries a broker query through transient client errors (a connection being re-established).
fn retry<T, E: std::fmt::Display>(what: &str, mut f: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// High watermarks per partition.
pub fn end_offsets(topic: &str) -> HashMap<i32, i64> {
    end_offsets_on(brokers(), topic)
}

/// [`end_offsets`] on the cluster at `bootstrap`.
pub fn end_offsets_on(bootstrap: &str, topic: &str) -> HashMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = retry("metadata", || {
        c.fetch_metadata(Some(topic), Duration::from_secs(10))
    });
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            (
                p.id(),
                retry("watermarks", || {
                    c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                })
                .1,
            )
        })
        .collect()
}

/// Whether `topic` exists on the cluster at `bootstrap`.
pub fn topic_exists_on(bootstrap: &str, topic: &str) -> bool {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = retry("metadata", || {
        c.fetch_metadata(None, Duration::from_secs(10))
    });
    md.topics()
        .iter()
        .any(|t| t.name() == topic && !t.partitions().is_empty())
}

/// Sends `r`, waiting while the producer's queue is full (the library's own loop); any other
/// error fails the test.
pub fn send_waiting(p: &ThreadedProducer<DefaultProducerContext>, r: BaseRecord<'_, [u8], [u8]>) {
    aepiot_stream::kafka::send::send_waiting(p, r, || false).expect("produce");
}

/// Sends SIGTERM to a child process (the `run` under test), as Kubernetes does to stop a pod.
pub fn sigterm(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {}", child.id());
}

/// Produces `(key, payload)` records to one partition and waits for all acks.
pub fn produce_to(topic: &str, partition: i32, records: &[(Vec<u8>, Vec<u8>)]) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (k, v) in records {
        let r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(partition)
            .key(k.as_slice())
            .payload(v.as_slice());
        send_waiting(&p, r);
    }
    p.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(p.in_flight_count(), 0);
}

/// Offsets committed by `group` for each partition of `topic` (-1 when none).
pub fn committed_offsets(group: &str, topic: &str) -> HashMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let parts = end_offsets(topic);
    let mut tpl = TopicPartitionList::new();
    for p in parts.keys() {
        tpl.add_partition(topic, *p);
    }
    let got = retry("committed offsets", || {
        c.committed_offsets(tpl.clone(), Duration::from_secs(10))
    });
    got.elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                if let Offset::Offset(o) = e.offset() {
                    o
                } else {
                    -1
                },
            )
        })
        .collect()
}

/// Waits until `cond` holds, checking every 100 ms; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn header<'a>(m: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    let h = m.headers()?;
    h.iter()
        .find(|x| x.key == key)
        .and_then(|x| x.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

pub fn json(m: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(m.payload().expect("payload")).expect("JSON payload")
}

/// `(partition, offset)` of the input record an output or dead letter came from.
pub fn source_of(m: &OwnedMessage) -> (i64, i64) {
    let v = json(m);
    (
        v["source"]["partition"].as_i64().unwrap(),
        v["source"]["offset"].as_i64().unwrap(),
    )
}

pub fn vectors_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors-seed-1")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aepiot-stream")
}

pub struct Topics {
    pub input: String,
    pub output: String,
    pub dlq: String,
    pub group: String,
}

/// `aepiot-stream run` on `t` under exactly-once, with `--emit-suppressed` (one output per valid
/// input, so tests can count them) and no metrics server; stdout and stderr are the caller's.
pub fn exactly_once_run(t: &Topics) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--brokers", brokers(), "--input-topics", &t.input])
        .args(["--output-topic", &t.output, "--dead-letter-topic", &t.dlq])
        .args([
            "--group-id",
            &t.group,
            "--emit-suppressed",
            "--metrics-addr",
            "",
        ])
        .env("AEPIOT_PROCESSING_GUARANTEE", "exactly_once");
    c
}

pub fn topics(name: &str, partitions: i32) -> Topics {
    let t = Topics {
        input: unique(&format!("{name}-in")),
        output: unique(&format!("{name}-out")),
        dlq: unique(&format!("{name}-dlq")),
        group: unique(&format!("{name}-group")),
    };
    create_topics(&[(&t.input, partitions), (&t.output, 3), (&t.dlq, 1)]);
    t
}

pub fn config(t: &Topics, emit_suppressed: bool) -> Config {
    Config {
        brokers: brokers().to_string(),
        input_topics: vec![t.input.clone()],
        output_topic: t.output.clone(),
        dead_letter_topic: t.dlq.clone(),
        group_id: t.group.clone(),
        emit_suppressed,
        metrics_addr: String::new(),
        progress_interval_secs: 0,
        ..Config::default()
    }
}

/// A pipeline running in this process on its own runtime.
pub struct Running {
    pub rt: tokio::runtime::Runtime,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub metrics: Metrics,
}

pub fn start(config: Config) -> Running {
    start_with(config, RunHooks::default())
}

/// Starts a pipeline with `hooks` (its metrics are the hooks' or new ones).
pub fn start_with(config: Config, hooks: RunHooks) -> Running {
    let rt = runtime();
    start_on(rt, None, config, hooks)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a pipeline on `rt` serving its metrics on `listener`, if any.
fn start_on(
    rt: tokio::runtime::Runtime,
    listener: Option<tokio::net::TcpListener>,
    config: Config,
    mut hooks: RunHooks,
) -> Running {
    let stop = CancellationToken::new();
    let metrics = hooks.metrics.get_or_insert_with(Metrics::new).clone();
    let task = rt.spawn(processor::run(config, listener, stop.clone(), hooks));
    Running {
        rt,
        stop,
        task,
        metrics,
    }
}

/// Binds a free loopback port on `rt`, for a metrics server: the listener and its address.
pub fn free_listener(
    rt: &tokio::runtime::Runtime,
) -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// GET `http://{addr}{path}`: the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// Starts a pipeline serving `/metrics` and the status page on a free port; returns its address.
pub fn start_with_page(config: Config) -> (Running, std::net::SocketAddr) {
    let rt = runtime();
    let (listener, addr) = free_listener(&rt);
    (
        start_on(rt, Some(listener), config, RunHooks::default()),
        addr,
    )
}

impl Running {
    pub fn shutdown(self) {
        self.stop.cancel();
        self.rt.block_on(self.task).unwrap().unwrap();
    }
}

pub fn all_committed(group: &str, topic: &str) -> bool {
    caught_up(&end_offsets(topic), &committed_offsets(group, topic))
}

/// Whether every non-empty partition's committed offset is its end offset.
pub fn caught_up(end: &HashMap<i32, i64>, committed: &HashMap<i32, i64>) -> bool {
    end.iter()
        .all(|(p, e)| *e == 0 || committed.get(p) == Some(e))
}

pub fn generated(n: usize, devices: u64, seed: u64) -> Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let mut g = Generator::new(Profile::City, devices, seed, 0.01);
    (0..n)
        .map(|_| {
            let r = g.next(aepiot_stream::kafka::clock::now_ms());
            (Some(r.key.into_bytes()), Some(r.payload))
        })
        .collect()
}

pub fn all_sources(t: &Topics) -> (usize, HashSet<(i64, i64)>) {
    let msgs: Vec<_> = consume_all(&t.output, Duration::from_secs(60))
        .into_iter()
        .chain(consume_all(&t.dlq, Duration::from_secs(30)))
        .collect();
    let total = msgs.len();
    (total, msgs.iter().map(source_of).collect())
}

pub fn expected_sources(topic: &str) -> HashSet<(i64, i64)> {
    end_offsets(topic)
        .iter()
        .flat_map(|(p, e)| (0..*e).map(move |o| (*p as i64, o)))
        .collect()
}

pub mod standard_webhooks;

/// How the offline engine (the `process` path: the default configuration's engine settings, the
/// input's partitions each judged in offset order, with the records' own timestamps) judges every
/// record of `topic`:
/// `Some(status)` for a valid event, `None` for a dead letter. What a pipeline over the topic
/// must agree with, whatever faults it went through.
pub fn judged_offline(topic: &str) -> HashMap<(i64, i64), Option<aepiot_stream::core::Decision>> {
    use aepiot_stream::core::{Engine, EngineSettings, Output, RecordMeta, Shared};
    let mut records: Vec<OwnedMessage> = consume_all(topic, Duration::from_secs(120));
    records.sort_by_key(|m| (m.partition(), m.offset()));
    // emit_suppressed only makes the engine show its judgement of every record; the judgement is
    // the same without it.
    let shared = Shared::new(EngineSettings {
        emit_suppressed: true,
        ..Config::default().engine_settings()
    });
    let mut engines: HashMap<i32, Engine> = HashMap::new();
    let mut out = HashMap::new();
    for m in &records {
        let engine = engines
            .entry(m.partition())
            .or_insert_with(|| Engine::new(shared.clone()));
        let meta = RecordMeta {
            record_time_ms: m.timestamp().to_millis(),
            now_ms: aepiot_stream::kafka::clock::now_ms(),
            source: None,
        };
        let status = match engine.process(m.payload(), &meta) {
            Output::Record { status, .. } | Output::Suppressed { status, .. } => Some(status),
            Output::DeadLetter { .. } => None,
        };
        out.insert((m.partition() as i64, m.offset()), status);
    }
    out
}

/// Sets a topic's `max.message.bytes` (AlterConfigs) and waits until the broker reports it: how
/// tests make the broker itself refuse a record the processor already sent.
pub fn set_max_message_bytes(topic: &str, bytes: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let value = bytes.to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let change =
            AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value);
        let r = admin
            .alter_configs([&change], &AdminOptions::new())
            .await
            .unwrap();
        assert!(r.iter().all(Result::is_ok), "{r:?}");
    });
    wait_until("the topic's new limit", Duration::from_secs(30), || {
        rt.block_on(
            admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
        )
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(Result::ok)
        .and_then(|c| c.get("max.message.bytes").and_then(|e| e.value.clone()))
            == Some(value.clone())
    });
}
