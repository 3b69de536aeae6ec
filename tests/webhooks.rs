//! Webhook delivery on the real broker, with local receivers (127.0.0.1 only) that are slow, fail
//! with 500, answer 429 with `Retry-After`, reset connections, never answer, refuse, stall, or
//! dedupe on the `webhook-id`. Signatures are verified with the `standardwebhooks` package. Every `success` record ends delivered once by key or in the
//! webhook dead-letter topic, the webhook group's committed offsets reach the output topic's end,
//! and URL generation does not wait for receivers.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aepiot_stream::config::{Config, WebhookEndpointConfig, WebhooksConfig};
use aepiot_stream::generate::{Generator, Profile};
use aepiot_stream::metrics::Metrics;
use aepiot_stream::processor::{self, RunHooks};
use aepiot_stream::webhook::{self, WebhookHooks};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use rand::{Rng, SeedableRng};
use rdkafka::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Receivers

/// What an axum receiver does with each request.
#[derive(Clone)]
enum Behaviour {
    /// 200 at once.
    Ok,
    /// 200 after a pause.
    Slow(Duration),
    /// 500 for the first `n` requests of each key, then 200.
    FailFirst(u32),
    /// 429 with `Retry-After: 1` for the first `n` requests of each key, then 200.
    TooManyFirst(u32),
    /// Always this status.
    Status(u16),
    /// Never answers.
    Never,
    /// Holds every request until the gate opens, then 200.
    Gate(tokio::sync::watch::Receiver<bool>),
    /// 503 while the flag is set, else 200.
    Outage(Arc<std::sync::atomic::AtomicBool>),
}

struct Seen {
    key: String,
    attempt: String,
    at: Instant,
    body: Bytes,
    signature: Option<String>,
    user_agent: String,
    /// Every header, for a Standard Webhooks verifier.
    headers: Vec<(String, String)>,
}

impl Seen {
    fn received(&self) -> standard_webhooks::Received {
        standard_webhooks::Received {
            headers: self.headers.clone(),
            body: self.body.to_vec(),
        }
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<Seen>,
    per_key: HashMap<String, u32>,
    /// 2xx answers per key: what a receiver deduping on the key applies once.
    accepted: HashMap<String, u32>,
    /// Keys answered 2xx, in the order of the answers.
    accepted_order: Vec<String>,
}

struct Receiver {
    behaviour: Behaviour,
    log: Mutex<Log>,
}

impl Receiver {
    fn accepted_keys(&self) -> HashSet<String> {
        self.log.lock().unwrap().accepted.keys().cloned().collect()
    }
    fn max_accepts(&self) -> u32 {
        self.log
            .lock()
            .unwrap()
            .accepted
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
    fn total_accepts(&self) -> u32 {
        self.log.lock().unwrap().accepted.values().sum()
    }
    fn requests(&self) -> usize {
        self.log.lock().unwrap().requests.len()
    }
}

async fn handle(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let key = h("webhook-id").unwrap_or_default();
    let n = {
        let mut log = r.log.lock().unwrap();
        let n = {
            let c = log.per_key.entry(key.clone()).or_default();
            *c += 1;
            *c
        };
        log.requests.push(Seen {
            key: key.clone(),
            attempt: h("x-aepiot-attempt").unwrap_or_default(),
            at: Instant::now(),
            body,
            signature: h("webhook-signature"),
            user_agent: h("user-agent").unwrap_or_default(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
        });
        n
    };
    match &r.behaviour {
        Behaviour::Ok => {}
        Behaviour::Slow(d) => tokio::time::sleep(*d).await,
        Behaviour::FailFirst(k) if n <= *k => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
        }
        Behaviour::FailFirst(_) => {}
        Behaviour::TooManyFirst(k) if n <= *k => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response()
        }
        Behaviour::TooManyFirst(_) => {}
        Behaviour::Status(s) => return (StatusCode::from_u16(*s).unwrap(), "no").into_response(),
        Behaviour::Never => std::future::pending::<()>().await,
        Behaviour::Gate(rx) => {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|open| *open).await;
        }
        Behaviour::Outage(down) if down.load(Ordering::SeqCst) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response()
        }
        Behaviour::Outage(_) => {}
    }
    // Only reached when the answer is 200 (a request whose client gave up is dropped before).
    let mut log = r.log.lock().unwrap();
    *log.accepted.entry(key.clone()).or_default() += 1;
    log.accepted_order.push(key);
    (StatusCode::OK, "ok").into_response()
}

fn receiver(rt: &Runtime, behaviour: Behaviour) -> (Arc<Receiver>, SocketAddr) {
    let r = Arc::new(Receiver {
        behaviour,
        log: Mutex::new(Log::default()),
    });
    let addr = serve(
        rt,
        &r,
        "127.0.0.1:0".parse().unwrap(),
        CancellationToken::new(),
    );
    (r, addr)
}

/// Serves `r` on `addr` until `stop`: then the listener is closed (connections are refused) and
/// open connections are shut.
fn serve(rt: &Runtime, r: &Arc<Receiver>, addr: SocketAddr, stop: CancellationToken) -> SocketAddr {
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(handle))
        .with_state(r.clone());
    rt.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    addr
}

/// A front that resets its first `resets` connections (accept, then close with SO_LINGER 0: the
/// client sees a reset) and pipes later ones to `backend`.
fn resetting(rt: &Runtime, backend: SocketAddr, resets: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let c = count.clone();
    rt.spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            if c.fetch_add(1, Ordering::SeqCst) < resets {
                let _ = s.set_zero_linger();
                drop(s);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut b).await;
                }
            });
        }
    });
    (addr, count)
}

/// A hand-written HTTP/1.1 receiver that fails at random, per request: 20% 500, 2% 429 with
/// `Retry-After: 1`, 5% connection reset after reading the request (the client cannot know
/// whether it was processed), else 200. Keep-alive; dedupes on the key.
#[derive(Default)]
struct Flaky {
    accepted: Mutex<HashMap<String, u32>>,
    requests: AtomicUsize,
    status_500: AtomicUsize,
    status_429: AtomicUsize,
    resets: AtomicUsize,
}

fn flaky(rt: &Runtime, seed: u64) -> (Arc<Flaky>, SocketAddr) {
    let f = Arc::new(Flaky::default());
    let rng = Arc::new(Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let f2 = f.clone();
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(flaky_connection(s, f2.clone(), rng.clone()));
        }
    });
    (f, addr)
}

async fn flaky_connection(
    s: tokio::net::TcpStream,
    f: Arc<Flaky>,
    rng: Arc<Mutex<rand::rngs::SmallRng>>,
) -> std::io::Result<()> {
    let mut reader = tokio::io::BufReader::new(s);
    loop {
        let (mut len, mut key) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => len = value.parse().unwrap(),
                    "webhook-id" => key = value.to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await?;
        f.requests.fetch_add(1, Ordering::SeqCst);
        let roll: f64 = rng.lock().unwrap().random();
        let response: &[u8] = if roll < 0.05 {
            f.resets.fetch_add(1, Ordering::SeqCst);
            let s = reader.into_inner();
            let _ = s.set_zero_linger();
            return Ok(());
        } else if roll < 0.25 {
            f.status_500.fetch_add(1, Ordering::SeqCst);
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nboom"
        } else if roll < 0.27 {
            f.status_429.fetch_add(1, Ordering::SeqCst);
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
        } else {
            *f.accepted.lock().unwrap().entry(key).or_default() += 1;
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        };
        reader.get_mut().write_all(response).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// Kafka side

fn runtime() -> Runtime {
    // Logs with RUST_LOG=info (and --nocapture).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const REGIONS: [&str; 4] = ["north_america", "europe", "asia_pacific", "global"];

/// A URL record as the pipeline writes it.
fn url_record(device: &str, region: &str, status: &str, i: usize) -> Vec<u8> {
    let mut v = serde_json::json!({
        "device_id": device, "event_type": "temperature_alert", "severity": "high",
        "region": region, "status": status,
        "event_time": format!("2026-11-26T08:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
        "processed_at": "2026-11-26T09:00:00.000Z",
        "source": {"topic": "in", "partition": 0, "offset": i},
    });
    if status == "success" {
        let q = format!("title=temperature_alert%20-%20{device}&n={i}");
        v["urls"] = serde_json::json!([
            "aepiot.com",
            "headlines-world.com",
            "aepiot.ro",
            "allgraph.ro"
        ]
        .iter()
        .map(|h| format!("https://{h}/backlink.html?{q}"))
        .collect::<Vec<_>>());
        v["regional_url"] = serde_json::json!(format!("https://eu.aepiot.com/backlink.html?{q}"));
        // Key order as the pipeline writes: urls and regional_url before event_time.
        let mut o = serde_json::Map::new();
        for k in [
            "device_id",
            "event_type",
            "severity",
            "region",
            "status",
            "urls",
            "regional_url",
            "event_time",
            "processed_at",
            "source",
        ] {
            o.insert(k.into(), v[k].clone());
        }
        v = serde_json::Value::Object(o);
    }
    serde_json::to_vec(&v).unwrap()
}

/// One output-topic record as read back.
#[derive(Clone)]
struct OutRecord {
    key: String,
    partition: i32,
    offset: i64,
    json: serde_json::Value,
}

/// Produces `devices × per_device` URL records (every 4th one `cached`) keyed by region, as the
/// pipeline does, and reads them back with their offsets.
fn produce_url_records(topic: &str, devices: usize, per_device: usize) -> Vec<OutRecord> {
    let mut records = Vec::new();
    for round in 0..per_device {
        for d in 0..devices {
            let i = round * devices + d;
            let region = REGIONS[d % REGIONS.len()];
            let status = if i % 4 == 3 { "cached" } else { "success" };
            records.push((
                Some(region.as_bytes().to_vec()),
                Some(url_record(&format!("dev-{d}"), region, status, i)),
            ));
        }
    }
    produce(topic, &records);
    read_back(topic)
}

fn read_back(topic: &str) -> Vec<OutRecord> {
    read_to_end(topic)
        .iter()
        .map(|m| OutRecord {
            key: format!("{topic}-{}-{}", m.partition(), m.offset()),
            partition: m.partition(),
            offset: m.offset(),
            json: json(m),
        })
        .collect()
}

/// Every committed record of `topic`, read_committed, until each partition's position reaches its
/// end offset (transaction markers take offsets too, so counting records would not do).
fn read_to_end(topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let end = end_offsets(topic);
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("wh-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in end.keys() {
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    loop {
        let positions = c.position().unwrap();
        let done = end.iter().all(|(p, e)| {
            *e == 0
                || matches!(positions.find_partition(topic, *p).map(|x| x.offset()), Some(rdkafka::Offset::Offset(o)) if o >= *e)
        });
        if done {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "could not read {topic} to its end"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(m.detach());
        }
    }
}

fn success_keys(records: &[OutRecord]) -> HashSet<String> {
    records
        .iter()
        .filter(|r| r.json["status"] == "success")
        .map(|r| r.key.clone())
        .collect()
}

fn endpoint(addr: SocketAddr) -> WebhookEndpointConfig {
    WebhookEndpointConfig {
        name: None,
        url: format!("http://{addr}/hook"),
        regions: vec![],
        secret_env: None,
        secret_file: None,
    }
}

/// A configuration for the webhook service (and, with an input topic, the pipeline), with small
/// timeouts and backoffs so failures are quick.
fn config(output: &str, webhook_dlq: &str, endpoints: Vec<WebhookEndpointConfig>) -> Config {
    Config {
        brokers: brokers().to_string(),
        output_topic: output.to_string(),
        group_id: unique("wh-group"),
        metrics_addr: String::new(),
        progress_interval_secs: 0,
        drain_timeout_ms: 2_000,
        webhooks: WebhooksConfig {
            endpoints,
            dead_letter_topic: webhook_dlq.to_string(),
            timeout_ms: 2_000,
            concurrency: 8,
            max_attempts: 5,
            backoff_base_ms: 20,
            backoff_max_ms: 200,
            retry_after_max_secs: 5,
            ..WebhooksConfig::default()
        },
        ..Config::default()
    }
}

struct Service {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: Metrics,
}

fn start_webhooks(rt: &Runtime, config: Config) -> Service {
    let stop = CancellationToken::new();
    let metrics = Metrics::new();
    let hooks = WebhookHooks {
        metrics: Some(metrics.clone()),
        no_metrics_server: true,
    };
    let task = rt.spawn(webhook::run(config, stop.clone(), hooks));
    Service {
        stop,
        task,
        metrics,
    }
}

impl Service {
    fn shutdown(self, rt: &Runtime) {
        self.stop.cancel();
        rt.block_on(self.task).unwrap().unwrap();
    }
    fn requests(&self, result: &str) -> u64 {
        self.metrics
            .webhook
            .requests
            .with_label_values(&[result])
            .get()
    }
}

/// `group`'s committed offsets equal `topic`'s end offsets on every partition.
fn committed_to_end(group: &str, topic: &str) -> bool {
    let end = end_offsets(topic);
    let committed = committed_offsets(group, topic);
    end.iter()
        .all(|(p, e)| *e == 0 || committed.get(p) == Some(e))
}

fn committed_total(group: &str, topic: &str) -> i64 {
    committed_offsets(group, topic)
        .values()
        .filter(|o| **o > 0)
        .sum()
}

/// Every endpoint's group committed the output topic's end offsets.
fn wait_webhooks_done(c: &Config, timeout: Duration) {
    wait_until(
        "every endpoint's group committed the output topic's end offsets",
        timeout,
        || {
            c.webhooks
                .endpoints
                .iter()
                .all(|e| committed_to_end(&c.webhook_endpoint_group(e), &c.output_topic))
        },
    );
}

/// Asserts that `standardwebhooks` (not this project's code) verifies every request with
/// `secret`, and that no request carries the old `X-Aepiot-Signature`.
fn assert_verified(secret: &str, requests: &[Seen]) {
    let received: Vec<_> = requests.iter().map(Seen::received).collect();
    for (s, verdict) in requests
        .iter()
        .zip(standard_webhooks::verify(secret, &received))
    {
        assert_eq!(verdict, Ok(()), "request {} attempt {}", s.key, s.attempt);
        assert!(s.headers.iter().all(|(k, _)| k != "x-aepiot-signature"));
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn delivers_each_success_record_once_signed_filtered_and_in_device_order() {
    let rt = runtime();
    let (out, dlq) = (unique("wh-out"), unique("wh-dlq"));
    create_topics(&[(&out, 3), (&dlq, 1)]);
    let records = produce_url_records(&out, 40, 6);
    let expected = success_keys(&records);
    let europe: HashSet<String> = records
        .iter()
        .filter(|r| r.json["status"] == "success" && r.json["region"] == "europe")
        .map(|r| r.key.clone())
        .collect();
    assert!(!europe.is_empty() && europe.len() < expected.len());

    // A secret being rotated: the new key and the old one, one per line.
    let (new_key, old_key) = (standard_webhooks::secret(1), standard_webhooks::secret(2));
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, format!("{new_key}\n{old_key}\n")).unwrap();
    let (all, all_addr) = receiver(&rt, Behaviour::Ok);
    let (eu, eu_addr) = receiver(&rt, Behaviour::Ok);
    let mut signed = endpoint(all_addr);
    signed.secret_file = Some(secret_path.to_str().unwrap().to_string());
    let mut eu_only = endpoint(eu_addr);
    eu_only.regions = vec!["europe".into()];
    let c = config(&out, &dlq, vec![signed, eu_only]);
    let service = start_webhooks(&rt, c.clone());
    wait_webhooks_done(&c, Duration::from_secs(60));

    // Every success record once, nothing else; the region filter holds.
    assert_eq!(all.accepted_keys(), expected);
    assert_eq!(
        all.requests(),
        expected.len(),
        "no retries against a healthy receiver"
    );
    assert_eq!(all.max_accepts(), 1);
    assert_eq!(eu.accepted_keys(), europe);
    assert_eq!(eu.max_accepts(), 1);
    assert_eq!(end_offsets(&dlq).values().sum::<i64>(), 0);

    let by_key: HashMap<&str, &OutRecord> = records.iter().map(|r| (r.key.as_str(), r)).collect();
    let log = all.log.lock().unwrap();
    let mut last_offset: HashMap<String, i64> = HashMap::new();
    for s in &log.requests {
        let r = by_key[s.key.as_str()];
        let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        // The seed's fields, then the extras.
        assert_eq!(body["aepiot_url"], r.json["urls"][0]);
        assert_eq!(body["device_id"], r.json["device_id"]);
        assert_eq!(body["event_type"], r.json["event_type"]);
        assert_eq!(body["timestamp"], r.json["event_time"]);
        assert_eq!(body["regional_url"], r.json["regional_url"]);
        assert_eq!(body["urls"], r.json["urls"]);
        assert_eq!(body.as_object().unwrap().len(), 6);
        // Headers: one signature per key (verified below).
        let signature = s.signature.as_deref().unwrap_or_default();
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        assert_eq!(
            s.user_agent,
            format!("aepiot-stream/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(s.attempt, "1");
        assert_eq!(s.key, format!("{out}-{}-{}", r.partition, r.offset));
        // A device's records arrive in offset order.
        let device = r.json["device_id"].as_str().unwrap().to_string();
        let prev = last_offset.insert(device.clone(), r.offset);
        assert!(
            prev.is_none_or(|p| p < r.offset),
            "device {device} out of order"
        );
    }
    // Receivers that know either key verify every request; one that knows neither, none.
    assert_verified(&new_key, &log.requests);
    assert_verified(&old_key, &log.requests);
    let stranger =
        standard_webhooks::verify(&standard_webhooks::secret(3), &[log.requests[0].received()]);
    assert!(stranger[0].is_err());
    assert!(eu
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .all(|s| s.signature.is_none()));
    drop(log);
    assert_eq!(
        service.requests("delivered"),
        (expected.len() + europe.len()) as u64
    );
    assert_eq!(
        service.requests("retried") + service.requests("dead_lettered"),
        0
    );
    service.shutdown(&rt);
}

/// The wire-format Avro twin of a JSON URL record (`output.format = "avro"`).
fn avro_twin(v: &serde_json::Value) -> Vec<u8> {
    use aepiot_stream::core::record::{Source, UrlRecord};
    use aepiot_stream::core::Decision;
    let s = |k: &str| v[k].as_str();
    let urls: Option<Vec<&str>> = v["urls"]
        .as_array()
        .map(|a| a.iter().map(|u| u.as_str().unwrap()).collect());
    let status = match s("status").unwrap() {
        "success" => Decision::Success,
        "cached" => Decision::Cached,
        _ => Decision::RateLimited,
    };
    let record = UrlRecord {
        device_id: s("device_id").unwrap(),
        event_type: s("event_type"),
        severity: s("severity"),
        region: s("region").unwrap(),
        status,
        urls: urls.as_ref().map(|u| u.iter().copied()),
        regional_url: s("regional_url"),
        urls_json_safe: false,
        event_time: s("event_time").unwrap(),
        processed_at: s("processed_at").unwrap(),
        source: Some(Source::Kafka {
            topic: v["source"]["topic"].as_str().unwrap(),
            partition: v["source"]["partition"].as_i64().unwrap() as i32,
            offset: v["source"]["offset"].as_i64().unwrap(),
        }),
    };
    let mut out = Vec::new();
    record.encode_avro(77, &mut out);
    out
}

#[test]
fn avro_url_records_are_posted_with_the_bodies_of_their_json_twins() {
    let rt = runtime();
    let (json_out, avro_out) = (unique("wh-json-out"), unique("wh-avro-out"));
    let (json_dlq, avro_dlq) = (unique("wh-json-dlq"), unique("wh-avro-dlq"));
    create_topics(&[
        (&json_out, 2),
        (&avro_out, 2),
        (&json_dlq, 1),
        (&avro_dlq, 1),
    ]);
    let records = produce_url_records(&json_out, 12, 3);
    // The same records in Avro, each to the same partition in the same order: same offsets.
    for p in 0..2 {
        let twins: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| {
                (
                    r.json["region"].as_str().unwrap().into(),
                    avro_twin(&r.json),
                )
            })
            .collect();
        produce_to(&avro_out, p, &twins);
    }
    let mut bodies = Vec::new();
    for (out, dlq) in [(&json_out, &json_dlq), (&avro_out, &avro_dlq)] {
        let (r, addr) = receiver(&rt, Behaviour::Ok);
        let c = config(out, dlq, vec![endpoint(addr)]);
        let service = start_webhooks(&rt, c.clone());
        wait_webhooks_done(&c, Duration::from_secs(60));
        service.shutdown(&rt);
        assert_eq!(end_offsets(dlq).values().sum::<i64>(), 0);
        // `<topic>-<partition>-<offset>` → body, the topic left out
        let by_place: BTreeMap<String, Bytes> = r
            .log
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|s| (s.key[out.len()..].to_string(), s.body.clone()))
            .collect();
        bodies.push(by_place);
    }
    assert_eq!(bodies[0].len(), success_keys(&records).len());
    assert_eq!(bodies[1], bodies[0], "the same bodies, byte for byte");
}

#[test]
fn retries_500s_429s_resets_and_slow_receivers_until_delivered() {
    let rt = runtime();
    let (out, dlq) = (unique("wh-retry-out"), unique("wh-retry-dlq"));
    create_topics(&[(&out, 3), (&dlq, 1)]);
    let records = produce_url_records(&out, 16, 2);
    let expected = success_keys(&records);

    let (fails, fails_addr) = receiver(&rt, Behaviour::FailFirst(2));
    let (busy, busy_addr) = receiver(&rt, Behaviour::TooManyFirst(1));
    let (behind, behind_addr) = receiver(&rt, Behaviour::Ok);
    let (reset_addr, resets) = resetting(&rt, behind_addr, 3);
    let (slow, slow_addr) = receiver(&rt, Behaviour::Slow(Duration::from_millis(300)));
    let mut c = config(
        &out,
        &dlq,
        vec![
            endpoint(fails_addr),
            endpoint(busy_addr),
            endpoint(reset_addr),
            endpoint(slow_addr),
        ],
    );
    c.webhooks.concurrency = 16;
    let started = Instant::now();
    let service = start_webhooks(&rt, c.clone());
    wait_webhooks_done(&c, Duration::from_secs(60));
    let elapsed = started.elapsed();

    for (name, r) in [
        ("500", &fails),
        ("429", &busy),
        ("reset", &behind),
        ("slow", &slow),
    ] {
        assert_eq!(
            r.accepted_keys(),
            expected,
            "{name}: every record delivered"
        );
        assert_eq!(r.max_accepts(), 1, "{name}: once each");
    }
    assert_eq!(
        end_offsets(&dlq).values().sum::<i64>(),
        0,
        "nothing dead-lettered"
    );
    {
        let log = fails.log.lock().unwrap();
        assert!(
            log.per_key.values().all(|n| *n == 3),
            "two 500s, then delivered"
        );
        let mut attempts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &log.requests {
            attempts
                .entry(s.key.clone())
                .or_default()
                .push(s.attempt.clone());
        }
        assert!(attempts.values().all(|a| a == &["1", "2", "3"]));
    }
    {
        // Retry-After: 1 is honoured.
        let log = busy.log.lock().unwrap();
        assert!(log.per_key.values().all(|n| *n == 2));
        let mut first: HashMap<&str, Instant> = HashMap::new();
        for s in &log.requests {
            match first.get(s.key.as_str()) {
                None => {
                    first.insert(&s.key, s.at);
                }
                Some(t) => {
                    let gap = s.at - *t;
                    assert!(
                        gap >= Duration::from_millis(950),
                        "retried after {gap:?}, before Retry-After"
                    );
                }
            }
        }
    }
    assert!(resets.load(Ordering::SeqCst) >= 3);
    let n = expected.len() as u64;
    assert!(
        service.metrics.webhook.retries.get() >= 2 * n + n + 3,
        "retries: {}",
        service.metrics.webhook.retries.get()
    );
    assert_eq!(service.requests("delivered"), 4 * n);
    assert_eq!(service.metrics.webhook.in_flight.get(), 0);
    eprintln!(
        "retries test: {n} records × 4 endpoints in {elapsed:?}, {} retries",
        service.metrics.webhook.retries.get()
    );
    service.shutdown(&rt);
}

#[test]
fn refused_and_hopeless_records_are_dead_lettered() {
    let rt = runtime();
    let (out, dlq) = (unique("wh-dl-out"), unique("wh-dl-dlq"));
    create_topics(&[(&out, 3), (&dlq, 1)]);
    let records = produce_url_records(&out, 10, 2);
    let expected = success_keys(&records);
    let n = expected.len();

    let (ok, ok_addr) = receiver(&rt, Behaviour::Ok);
    let (_never, never_addr) = receiver(&rt, Behaviour::Never);
    let (down, down_addr) = receiver(&rt, Behaviour::Status(500));
    let (refuses, refuses_addr) = receiver(&rt, Behaviour::Status(400));
    let mut c = config(
        &out,
        &dlq,
        vec![
            endpoint(ok_addr),
            endpoint(never_addr),
            endpoint(down_addr),
            endpoint(refuses_addr),
        ],
    );
    c.webhooks.timeout_ms = 300;
    c.webhooks.max_attempts = 3;
    // The two hopeless endpoints go down after 3 consecutive failures; their records are
    // dead-lettered once they have been down for 2 s, each after one more attempt.
    c.webhooks.outage_max_secs = 2;
    let service = start_webhooks(&rt, c.clone());
    wait_webhooks_done(&c, Duration::from_secs(60));

    assert_eq!(ok.accepted_keys(), expected);
    // No `max_accepts() == 1` here: with a 300 ms timeout, a loaded machine can time out a request
    // the healthy receiver did accept, and the retry (same webhook-id) is accepted again.
    // That is the at-least-once contract; the key lets the receiver dedupe.
    assert!(down.requests() >= n, "500: every record attempted");
    assert_eq!(refuses.requests(), n, "400: not retried");
    let endpoint_up = |name: &str| {
        service
            .metrics
            .webhook
            .endpoint_up
            .with_label_values(&[name])
            .get()
    };
    let names: Vec<String> = c.webhooks.endpoints.iter().map(|e| e.name()).collect();
    assert_eq!(endpoint_up(&names[0]), 1);
    assert_eq!(endpoint_up(&names[1]), 0, "timing out: down");
    assert_eq!(endpoint_up(&names[2]), 0, "500: down");
    // A 400 is an answer: the endpoint that refuses every record is up.
    assert_eq!(endpoint_up(&names[3]), 1, "400: up");
    assert_eq!(down.total_accepts() + refuses.total_accepts(), 0);

    let letters = consume(&dlq, 3 * n, Duration::from_secs(30));
    assert_eq!(letters.len(), 3 * n);
    assert_eq!(
        end_offsets(&dlq).values().sum::<i64>() as usize,
        3 * n,
        "one dead letter per record and failing endpoint"
    );
    let by_key: HashMap<&str, &OutRecord> = records.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut seen = HashSet::new();
    for m in &letters {
        let v = json(m);
        let idx = v["endpoint"]["index"].as_u64().unwrap();
        let key = v["idempotency_key"].as_str().unwrap().to_string();
        assert!(seen.insert((idx, key.clone())), "duplicate dead letter");
        let r = by_key[key.as_str()];
        assert_eq!(v["record"], r.json, "the original record");
        assert_eq!(v["source"]["partition"], r.partition);
        assert_eq!(v["source"]["offset"], r.offset);
        assert_eq!(m.key(), r.json["device_id"].as_str().map(str::as_bytes));
        assert_eq!(
            header(m, "aepiot.webhook.endpoint"),
            Some(idx.to_string().as_str())
        );
        let error = v["error"].as_str().unwrap();
        let outage = "endpoint down for longer than webhooks.outage_max_secs; last error: ";
        match idx {
            1 => {
                assert!(v["attempts"].as_u64().unwrap() >= 1);
                assert_eq!(v["retryable"], true);
                assert!(v.get("http_status").is_none());
                assert!(error.starts_with(&format!("{outage}timeout")), "{error}");
            }
            2 => {
                assert!(v["attempts"].as_u64().unwrap() >= 1);
                assert_eq!(v["http_status"].as_u64(), Some(500));
                assert_eq!(error, format!("{outage}HTTP 500 Internal Server Error: no"));
            }
            3 => {
                assert_eq!(
                    (v["attempts"].as_u64(), v["http_status"].as_u64()),
                    (Some(1), Some(400))
                );
                assert_eq!(v["retryable"], false);
            }
            _ => panic!("dead letter for endpoint {idx}"),
        }
        assert_eq!(
            v["endpoint"]["origin"].as_str().unwrap(),
            format!(
                "http://{}",
                [never_addr, down_addr, refuses_addr][idx as usize - 1]
            )
        );
    }
    for idx in 1..=3 {
        let keys: HashSet<String> = seen
            .iter()
            .filter(|(i, _)| *i == idx)
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(keys, expected, "endpoint {idx}: every record dead-lettered");
    }
    assert_eq!(service.metrics.webhook.dead_letters.get(), 3 * n as u64);
    assert_eq!(service.requests("dead_lettered"), 3 * n as u64);
    service.shutdown(&rt);
}

/// A pipeline config reading `input` and writing `output`, with the webhook settings of `c`.
fn pipeline_config(c: &Config, input: &str, dlq: &str) -> Config {
    Config {
        input_topics: vec![input.to_string()],
        dead_letter_topic: dlq.to_string(),
        ..c.clone()
    }
}

/// Kafka records to produce: (key, payload).
type Records = Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>;

fn events(n: usize, devices: u64, seed: u64) -> Records {
    let mut g = Generator::new(Profile::City, devices, seed, 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (0..n)
        .map(|_| {
            let r = g.next(now);
            (Some(r.key.into_bytes()), Some(r.payload))
        })
        .collect()
}

#[test]
fn url_generation_is_unaffected_by_a_stalled_receiver() {
    let rt = runtime();
    let (input, out, dlq, wdlq) = (
        unique("wh-stall-in"),
        unique("wh-stall-out"),
        unique("wh-stall-dlq"),
        unique("wh-stall-wdlq"),
    );
    create_topics(&[(&input, 3), (&out, 3), (&dlq, 1), (&wdlq, 1)]);
    produce(&input, &events(2_000, 5_000, 7));

    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let (stalled, addr) = receiver(&rt, Behaviour::Gate(gate_rx));
    let mut c = config(&out, &wdlq, vec![endpoint(addr)]);
    c.webhooks.timeout_ms = 1_000;
    c.webhooks.max_attempts = 100;
    c.webhooks.concurrency = 16;
    let pc = pipeline_config(&c, &input, &dlq);
    // Both in one runtime, as `run --webhooks` runs them.
    let service = start_webhooks(&rt, c.clone());
    let pipeline_stop = CancellationToken::new();
    let pipeline = rt.spawn(processor::run(
        pc.clone(),
        None,
        pipeline_stop.clone(),
        RunHooks {
            metrics: Some(Metrics::new()),
            ..RunHooks::default()
        },
    ));

    let started = Instant::now();
    wait_until(
        "the pipeline committed the whole input",
        Duration::from_secs(60),
        || committed_to_end(&pc.group_id, &input),
    );
    let pipeline_done = started.elapsed();
    // The pipeline is done while the receiver is stalled: nothing delivered or committed yet.
    let output_end: i64 = end_offsets(&out).values().sum();
    assert!(output_end > 1_000, "output records: {output_end}");
    wait_until("webhooks retrying", Duration::from_secs(10), || {
        service.metrics.webhook.retries.get() > 0
    });
    assert_eq!(stalled.total_accepts(), 0);
    assert_eq!(
        committed_total(&c.webhook_endpoint_group(&c.webhooks.endpoints[0]), &out),
        0,
        "webhook offsets moved while nothing was delivered"
    );
    wait_until(
        "requests in flight to the stalled receiver",
        Duration::from_secs(10),
        || service.metrics.webhook.in_flight.get() > 0,
    );
    let retries_while_stalled = service.metrics.webhook.retries.get();

    gate_tx.send(true).unwrap();
    let opened = Instant::now();
    wait_webhooks_done(&c, Duration::from_secs(60));
    let records = read_back(&out);
    let expected = success_keys(&records);
    assert_eq!(
        stalled.accepted_keys(),
        expected,
        "every record delivered once the receiver is back"
    );
    assert!(stalled.requests() >= expected.len());
    assert_eq!(end_offsets(&wdlq).values().sum::<i64>(), 0);
    eprintln!(
        "stalled receiver: pipeline committed {} input events in {pipeline_done:?} while webhooks were stalled \
         ({retries_while_stalled} retries by then); {} success records delivered {:?} after the receiver came back \
         ({} requests, {} accepted, max {} per key)",
        end_offsets(&input).values().sum::<i64>(),
        expected.len(),
        opened.elapsed(),
        stalled.requests(),
        stalled.total_accepts(),
        stalled.max_accepts()
    );
    pipeline_stop.cancel();
    rt.block_on(pipeline).unwrap().unwrap();
    service.shutdown(&rt);
}

#[test]
fn thousands_of_events_through_a_flaky_receiver() {
    let rt = runtime();
    let (input, out, dlq, wdlq) = (
        unique("wh-flaky-in"),
        unique("wh-flaky-out"),
        unique("wh-flaky-dlq"),
        unique("wh-flaky-wdlq"),
    );
    create_topics(&[(&input, 3), (&out, 3), (&dlq, 1), (&wdlq, 1)]);
    let n_events = 3_000;
    produce(&input, &events(n_events, 20_000, 11));

    let (f, addr) = flaky(&rt, 42);
    let mut c = config(&out, &wdlq, vec![endpoint(addr)]);
    c.webhooks.concurrency = 16;
    c.webhooks.max_attempts = 6;
    c.webhooks.backoff_base_ms = 10;
    c.webhooks.backoff_max_ms = 200;
    let pc = pipeline_config(&c, &input, &dlq);
    let started = Instant::now();
    let service = start_webhooks(&rt, c.clone());
    let pipeline_stop = CancellationToken::new();
    let pipeline = rt.spawn(processor::run(
        pc.clone(),
        None,
        pipeline_stop.clone(),
        RunHooks {
            metrics: Some(Metrics::new()),
            ..RunHooks::default()
        },
    ));
    wait_until(
        "the pipeline committed the whole input",
        Duration::from_secs(60),
        || committed_to_end(&pc.group_id, &input),
    );
    let pipeline_done = started.elapsed();
    wait_webhooks_done(&c, Duration::from_secs(90));
    let elapsed = started.elapsed();

    let records = read_back(&out);
    let expected = success_keys(&records);
    let letters = consume_all(&wdlq, Duration::from_secs(30));
    let dead: HashSet<String> = letters
        .iter()
        .map(|m| json(m)["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dead.len(), letters.len(), "one dead letter per record");
    let accepted = f.accepted.lock().unwrap().clone();
    let delivered: HashSet<String> = accepted.keys().cloned().collect();
    assert!(
        delivered.is_disjoint(&dead),
        "a record both delivered and dead-lettered"
    );
    let union: HashSet<String> = delivered.union(&dead).cloned().collect();
    assert_eq!(
        union, expected,
        "every success record delivered or dead-lettered"
    );
    let repeats = accepted.values().filter(|n| **n > 1).count();
    let m = &service.metrics;
    let attempts = service.requests("delivered")
        + service.requests("retried")
        + service.requests("dead_lettered")
        + service.requests("failed");
    assert!(attempts as usize >= expected.len());
    assert_eq!(
        f.requests.load(Ordering::SeqCst) as u64,
        attempts,
        "every attempt reached the receiver"
    );
    // The union above also holds with no retries at all (every failure dead-lettered): each
    // failed attempt (500, 429, reset) was retried unless it was a record's last, nothing was
    // abandoned, and dead letters stay rare (6 attempts at a ~27 % failure rate: ~0.04 %).
    let failures = (f.status_500.load(Ordering::SeqCst)
        + f.status_429.load(Ordering::SeqCst)
        + f.resets.load(Ordering::SeqCst)) as u64;
    assert!(m.webhook.retries.get() > 0, "no retries");
    assert_eq!(m.webhook.retries.get(), service.requests("retried"));
    assert_eq!(
        service.requests("retried") + service.requests("dead_lettered"),
        failures,
        "failed attempts = retried + dead-lettered"
    );
    assert_eq!(
        service.requests("delivered") as usize,
        accepted.values().sum::<u32>() as usize
    );
    assert_eq!(service.requests("failed"), 0, "attempts abandoned");
    assert!(
        dead.len() * 100 < expected.len(),
        "{} of {} records dead-lettered (1 % at most)",
        dead.len(),
        expected.len()
    );
    eprintln!(
        "flaky receiver: {n_events} events -> {} URL records ({} success) in {pipeline_done:?}; webhooks done after {elapsed:?}: \
         {} delivered once by key ({} keys accepted more than once, deduped by the receiver), {} dead-lettered, \
         {attempts} attempts ({} 500s, {} 429s, {} resets), {} retries",
        records.len(),
        expected.len(),
        delivered.len(),
        repeats,
        dead.len(),
        f.status_500.load(Ordering::SeqCst),
        f.status_429.load(Ordering::SeqCst),
        f.resets.load(Ordering::SeqCst),
        m.webhook.retries.get(),
    );
    pipeline_stop.cancel();
    rt.block_on(pipeline).unwrap().unwrap();
    service.shutdown(&rt);
}

#[test]
fn cli_run_with_webhooks_and_the_webhooks_command() {
    let rt = runtime();
    let (input, out, dlq, wdlq) = (
        unique("wh-cli-in"),
        unique("wh-cli-out"),
        unique("wh-cli-dlq"),
        unique("wh-cli-wdlq"),
    );
    create_topics(&[(&input, 2), (&out, 2), (&dlq, 1), (&wdlq, 1)]);
    let events: Records = (0..30)
        .map(|i| {
            let d = format!("cli-{i}");
            (
                Some(d.clone().into_bytes()),
                Some(
                    format!(r#"{{"device_id":"{d}","event_type":"door","region":"europe"}}"#)
                        .into_bytes(),
                ),
            )
        })
        .collect();
    produce(&input, &events);
    let (r, addr) = receiver(&rt, Behaviour::Ok);
    let cli_secret = standard_webhooks::secret(9);
    let group = unique("wh-cli-group");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aepiot.toml");
    std::fs::write(
        &path,
        format!(
            "brokers = \"{}\"\ninput_topics = [\"{input}\"]\noutput_topic = \"{out}\"\ndead_letter_topic = \"{dlq}\"\n\
             group_id = \"{group}\"\nmetrics_addr = \"\"\n[webhooks]\ndead_letter_topic = \"{wdlq}\"\n\
             [[webhooks.endpoints]]\nname = \"main\"\nurl = \"http://{addr}/hook\"\nsecret_env = \"WH_TEST_SECRET\"\n",
            brokers()
        ),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["run", "--webhooks", "--config", path.to_str().unwrap()])
        .env("WH_TEST_SECRET", &cli_secret)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("30 webhooks delivered", Duration::from_secs(60), || {
        r.accepted_keys().len() == 30
    });
    wait_until("webhook offsets committed", Duration::from_secs(30), || {
        committed_to_end(&format!("{group}-webhooks-main"), &out)
    });
    sigterm(&child);
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("webhooks stopped cleanly"), "{log}");
    assert!(!log.contains(&cli_secret[6..]));
    assert_verified(&cli_secret, &r.log.lock().unwrap().requests);

    // Without endpoints, or without the secret, the service refuses to start and says why.
    let out_cmd = Command::new(bin())
        .args(["webhooks", "--brokers", brokers(), "--metrics-addr", ""])
        .output()
        .unwrap();
    assert!(!out_cmd.status.success());
    assert!(String::from_utf8_lossy(&out_cmd.stderr).contains("webhooks.endpoints is empty"));
    let out_cmd = Command::new(bin())
        .args(["webhooks", "--config", path.to_str().unwrap()])
        .env_remove("WH_TEST_SECRET")
        .output()
        .unwrap();
    assert!(!out_cmd.status.success());
    let err = String::from_utf8_lossy(&out_cmd.stderr);
    assert!(
        err.contains("WH_TEST_SECRET") && err.contains("not set"),
        "{err}"
    );
}

/// With `exactly_once` the output topic is transactional: only committed records are delivered
/// (read_committed), and the webhook group's offsets still reach the end, past the transaction
/// markers that follow the last records.
#[test]
fn exactly_once_output_is_delivered_and_committed_past_transaction_markers() {
    let rt = runtime();
    let (input, out, dlq, wdlq) = (
        unique("wh-eos-in"),
        unique("wh-eos-out"),
        unique("wh-eos-dlq"),
        unique("wh-eos-wdlq"),
    );
    create_topics(&[(&input, 2), (&out, 3), (&dlq, 1), (&wdlq, 1)]);
    produce(&input, &events(500, 100, 5));
    let (r, addr) = receiver(&rt, Behaviour::Ok);
    let c = config(&out, &wdlq, vec![endpoint(addr)]);
    let pc = Config {
        processing_guarantee: aepiot_stream::config::Guarantee::ExactlyOnce,
        emit_suppressed: true,
        ..pipeline_config(&c, &input, &dlq)
    };
    let service = start_webhooks(&rt, c.clone());
    let pipeline_stop = CancellationToken::new();
    let pipeline = rt.spawn(processor::run(
        pc.clone(),
        None,
        pipeline_stop.clone(),
        RunHooks {
            metrics: Some(Metrics::new()),
            ..RunHooks::default()
        },
    ));
    wait_until(
        "the pipeline committed the whole input",
        Duration::from_secs(60),
        || committed_to_end(&pc.group_id, &input),
    );
    pipeline_stop.cancel();
    rt.block_on(pipeline).unwrap().unwrap();
    wait_webhooks_done(&c, Duration::from_secs(60));
    let records = read_back(&out);
    let expected = success_keys(&records);
    assert!(
        expected.len() < records.len(),
        "some cached or rate_limited records to skip"
    );
    assert_eq!(r.accepted_keys(), expected);
    assert_eq!(r.max_accepts(), 1);
    service.shutdown(&rt);
}

/// A second instance joining the webhook group takes over partitions mid-delivery: the revoked
/// partitions drain (attempts in flight finish, none is abandoned) and commit before the
/// hand-over, and every record is delivered exactly once: no repeat across the hand-over.
#[test]
fn a_second_instance_shares_the_partitions_mid_delivery() {
    let rt = runtime();
    let (out, dlq) = (unique("wh-share-out"), unique("wh-share-dlq"));
    create_topics(&[(&out, 3), (&dlq, 1)]);
    // Keyed by device (not region) so that every partition has records.
    let produced: Records = (0..240)
        .map(|i| {
            let d = format!("dev-{}", i % 60);
            (
                Some(d.clone().into_bytes()),
                Some(url_record(&d, "europe", "success", i)),
            )
        })
        .collect();
    produce(&out, &produced);
    let records = read_back(&out);
    let expected = success_keys(&records);
    let (r, addr) = receiver(&rt, Behaviour::Slow(Duration::from_millis(100)));
    let mut c = config(&out, &dlq, vec![endpoint(addr)]);
    c.webhooks.concurrency = 2;
    let a = start_webhooks(&rt, c.clone());
    wait_until("some deliveries", Duration::from_secs(30), || {
        r.total_accepts() >= 20
    });
    let b = start_webhooks(&rt, c.clone());
    wait_until(
        "the second instance delivering",
        Duration::from_secs(30),
        || b.requests("delivered") > 0,
    );
    wait_webhooks_done(&c, Duration::from_secs(60));
    assert_eq!(r.accepted_keys(), expected);
    let (da, db) = (a.requests("delivered"), b.requests("delivered"));
    assert!(da > 0 && db > 0);
    let repeated = r.total_accepts() as usize - expected.len();
    eprintln!(
        "shared group: {} records, instance A delivered {da}, B {db}, {repeated} repeated across the hand-over",
        expected.len(),
    );
    // The revoked partitions drained (in-flight attempts finished, not abandoned) and committed
    // before the hand-over: nothing is delivered twice.
    assert_eq!(
        (a.requests("failed"), b.requests("failed")),
        (0, 0),
        "attempts abandoned at the revoke"
    );
    assert_eq!(repeated, 0, "records delivered again after the hand-over");
    assert_eq!(end_offsets(&dlq).values().sum::<i64>(), 0);
    a.shutdown(&rt);
    b.shutdown(&rt);
}

// ---------------------------------------------------------------------------------------------
// Endpoint outages

/// How the endpoint under test fails for a minute.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Answers 503.
    Unavailable,
    /// Its listener is closed (connections refused), then bound again on the same port.
    Refusing,
}

/// Produces `total` URL records in batches of `batch` every `every`, keyed by region as the
/// pipeline does; returns, per batch, when it was sent and how many success records had been
/// sent with it.
fn produce_paced(
    topic: &str,
    total: usize,
    batch: usize,
    every: Duration,
) -> Vec<(Instant, usize)> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let devices = 200;
    let mut batches = Vec::new();
    let mut success = 0;
    let started = Instant::now();
    for (b, first) in (0..total).step_by(batch).enumerate() {
        let at = started + every * b as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = Instant::now();
        for i in first..(first + batch).min(total) {
            let d = i % devices;
            let region = REGIONS[d % REGIONS.len()];
            let status = if i % 4 == 3 { "cached" } else { "success" };
            success += usize::from(status == "success");
            let payload = url_record(&format!("dev-{d}"), region, status, i);
            send_waiting(
                &p,
                BaseRecord::to(topic)
                    .key(region.as_bytes())
                    .payload(payload.as_slice()),
            );
        }
        p.flush(Duration::from_secs(30)).unwrap();
        batches.push((sent, success));
    }
    batches
}

/// Per device, the keys accepted by `r` in arrival order, and how many keys were accepted more
/// than once.
fn accepted_by_device(
    r: &Receiver,
    device_of: &HashMap<String, String>,
) -> (BTreeMap<String, Vec<String>>, usize) {
    let log = r.log.lock().unwrap();
    let mut seen = HashSet::new();
    let mut by_device: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in &log.accepted_order {
        if seen.insert(key) {
            by_device
                .entry(device_of[key].clone())
                .or_default()
                .push(key.clone());
        }
    }
    (by_device, log.accepted_order.len() - seen.len())
}

/// A receiver fails for 60 s in the middle of 20k records (every 4th `cached`, so 15k to
/// deliver) while a second endpoint is healthy: nothing is dead-lettered, both receive every
/// record exactly once and in device order, the failing endpoint is reported down with its lag
/// growing, and the healthy one keeps up with the records as they arrive throughout.
fn endpoint_outage(outage: Outage) {
    let rt = runtime();
    let (out, dlq) = (unique("wh-outage-out"), unique("wh-outage-dlq"));
    create_topics(&[(&out, 3), (&dlq, 1)]);
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (failing, failing_addr) = receiver(&rt, Behaviour::Outage(down.clone()));
    let (healthy, healthy_addr) = receiver(&rt, Behaviour::Ok);
    // The refusing receiver is served by a listener of its own, stopped and started again.
    let (refusing, refusing_addr) = {
        let r = Arc::new(Receiver {
            behaviour: Behaviour::Ok,
            log: Mutex::new(Log::default()),
        });
        let stop = CancellationToken::new();
        let addr = serve(&rt, &r, "127.0.0.1:0".parse().unwrap(), stop.clone());
        (r, (addr, stop))
    };
    let (target, target_addr) = match outage {
        Outage::Unavailable => (failing.clone(), failing_addr),
        Outage::Refusing => (refusing.clone(), refusing_addr.0),
    };
    let mut flaky = endpoint(target_addr);
    flaky.name = Some("flaky".into());
    let mut steady = endpoint(healthy_addr);
    steady.name = Some("steady".into());
    let mut c = config(&out, &dlq, vec![flaky, steady]);
    c.webhooks.max_attempts = 3;
    c.webhooks.backoff_base_ms = 50;
    c.webhooks.backoff_max_ms = 1_000;
    // A request that times out after the receiver accepted it is sent again (at-least-once); on a
    // loaded machine 2 s is not enough, and this test counts duplicates.
    c.webhooks.timeout_ms = 15_000;
    let service = start_webhooks(&rt, c.clone());
    let gauge = |f: fn(&Metrics, &str) -> f64, name: &str| f(&service.metrics, name);
    let up = |m: &Metrics, n: &str| m.webhook.endpoint_up.with_label_values(&[n]).get() as f64;
    let lag = |m: &Metrics, n: &str| m.webhook.lag.with_label_values(&[n]).get() as f64;
    let down_secs = |m: &Metrics, n: &str| {
        m.webhook
            .endpoint_down_seconds
            .with_label_values(&[n])
            .get()
    };

    // 20k records over 100 s; the outage from 20 s to 80 s.
    let (total, batch, every) = (20_000, 50, Duration::from_millis(250));
    let producer = {
        let out = out.clone();
        std::thread::spawn(move || produce_paced(&out, total, batch, every))
    };
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(20).saturating_sub(start.elapsed()));
    let outage_from = Instant::now();
    match outage {
        Outage::Unavailable => down.store(true, Ordering::SeqCst),
        Outage::Refusing => refusing_addr.1.cancel(),
    }
    wait_until("the failing endpoint down", Duration::from_secs(15), || {
        gauge(up, "flaky") == 0.0
    });
    assert_eq!(gauge(up, "steady"), 1.0);
    wait_until(
        "the failing endpoint's lag growing while it is down",
        Duration::from_secs(30),
        || gauge(lag, "flaky") > 1_000.0 && gauge(down_secs, "flaky") > 5.0,
    );
    std::thread::sleep(Duration::from_secs(60).saturating_sub(outage_from.elapsed()));
    assert_eq!(gauge(up, "flaky"), 0.0, "down for the whole outage");
    let outage_to = Instant::now();
    match outage {
        Outage::Unavailable => down.store(false, Ordering::SeqCst),
        Outage::Refusing => {
            serve(&rt, &refusing, refusing_addr.0, CancellationToken::new());
        }
    }
    let batches = producer.join().unwrap();
    wait_webhooks_done(&c, Duration::from_secs(120));
    let done = start.elapsed();

    let records = read_back(&out);
    let device_of: HashMap<String, String> = records
        .iter()
        .filter(|r| r.json["status"] == "success")
        .map(|r| {
            (
                r.key.clone(),
                r.json["device_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected: BTreeMap<String, Vec<(i32, i64, String)>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.json["status"] == "success") {
        expected
            .entry(device_of[&r.key].clone())
            .or_default()
            .push((r.partition, r.offset, r.key.clone()));
    }
    let expected: BTreeMap<String, Vec<String>> = expected
        .into_iter()
        .map(|(d, mut v)| {
            v.sort();
            (d, v.into_iter().map(|(_, _, k)| k).collect())
        })
        .collect();
    assert_eq!(device_of.len(), 15_000);
    assert_eq!(
        end_offsets(&dlq).values().sum::<i64>(),
        0,
        "no webhook dead letters"
    );
    for (name, r) in [("failing", &target), ("healthy", &healthy)] {
        let (by_device, duplicates) = accepted_by_device(r, &device_of);
        assert_eq!(duplicates, 0, "{name}: records accepted more than once");
        assert!(
            by_device == expected,
            "{name}: every record, once, in device order"
        );
    }
    // While down, one probe at a time: far fewer requests than records waiting.
    let tried_during_outage = target
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|s| s.at > outage_from + Duration::from_secs(5) && s.at < outage_to)
        .count();
    assert!(
        tried_during_outage < 200,
        "{tried_during_outage} requests to the endpoint while it was down"
    );
    assert_eq!(gauge(up, "flaky"), 1.0);
    assert_eq!(gauge(down_secs, "flaky"), 0.0);
    let outages = service
        .metrics
        .webhook
        .endpoint_outages
        .with_label_values(&["flaky"])
        .get();
    // Once, or twice when an answer to a request sent just before the outage began arrives after
    // the failures of requests sent just after: the endpoint did answer, so it was up then.
    assert!((1..=2).contains(&outages), "{outages} outages");

    // The healthy endpoint's delay: for each batch, from its sending to the moment the endpoint
    // had accepted as many records as were sent up to it (taken from the receiver's arrival
    // times afterwards, so a slow moment of the test thread does not count). A loaded machine
    // delays every delivery, outage or not, and in bursts (other processes' builds): the outage
    // must not add more than a second to the median delay of the 20 s before it. An endpoint held
    // back by the other's outage would be late for most batches, which moves the median; a burst
    // of load moves only the tail (printed, not asserted).
    let arrivals: Vec<Instant> = {
        let log = healthy.log.lock().unwrap();
        let mut a: Vec<Instant> = log.requests.iter().map(|s| s.at).collect();
        a.sort();
        a
    };
    let delays = |from: Instant, to: Instant| -> Vec<Duration> {
        let mut d: Vec<Duration> = batches
            .iter()
            .filter(|(at, n)| *at >= from && *at < to && *n > 0)
            .map(|(at, n)| arrivals[n - 1].saturating_duration_since(*at))
            .collect();
        d.sort();
        d
    };
    let p90 = |d: &[Duration]| d[d.len() * 9 / 10];
    let before = delays(start, outage_from);
    let during = delays(outage_from, outage_to);
    eprintln!(
        "{outage:?} outage: 15000 records to 2 endpoints in {done:?}; {tried_during_outage} requests while down; \
         healthy endpoint's delay before the outage p50 {:?} p90 {:?} max {:?}, during it p50 {:?} p90 {:?} max {:?}",
        before[before.len() / 2],
        p90(&before),
        before.last().unwrap(),
        during[during.len() / 2],
        p90(&during),
        during.last().unwrap(),
    );
    let p50 = |d: &[Duration]| d[d.len() / 2];
    assert!(
        p50(&during) <= p50(&before) + Duration::from_secs(1),
        "the healthy endpoint was delayed by the other's outage"
    );
    service.shutdown(&rt);
}

#[test]
fn a_503_outage_loses_nothing_and_delays_no_other_endpoint() {
    endpoint_outage(Outage::Unavailable);
}

#[test]
fn a_refusing_outage_loses_nothing_and_delays_no_other_endpoint() {
    endpoint_outage(Outage::Refusing);
}

/// Upgrading from the single webhook group: an endpoint group with no offsets starts where the
/// single group `<webhooks group>` had committed, neither skipping records nor sending the ones
/// before again; a group that has offsets of its own keeps them.
#[test]
fn endpoint_groups_start_where_the_single_group_left_off() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let rt = runtime();
    let (out, dlq) = (unique("wh-upgrade-out"), unique("wh-upgrade-dlq"));
    create_topics(&[(&out, 3), (&dlq, 1)]);
    let records = produce_url_records(&out, 12, 10);
    let (fresh, fresh_addr) = receiver(&rt, Behaviour::Ok);
    let (known, known_addr) = receiver(&rt, Behaviour::Ok);
    let mut a = endpoint(fresh_addr);
    a.name = Some("fresh".into());
    let mut b = endpoint(known_addr);
    b.name = Some("known".into());
    let c = config(&out, &dlq, vec![a, b]);
    let commit = |group: &str, at: &dyn Fn(i64) -> i64| {
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (p, end) in end_offsets(&out) {
            tpl.add_partition_offset(&out, p, rdkafka::Offset::Offset(at(end)))
                .unwrap();
        }
        client.commit(&tpl, CommitMode::Sync).unwrap();
    };
    // The single group had delivered half of each partition; the "known" endpoint's group (an
    // earlier start of this version) all but the last 5 records.
    commit(&c.webhooks_group_id(), &|end| end / 2);
    commit(
        &c.webhook_endpoint_group(&c.webhooks.endpoints[1]),
        &|end| end - 5,
    );
    let service = start_webhooks(&rt, c.clone());
    wait_webhooks_done(&c, Duration::from_secs(60));
    let ends = end_offsets(&out);
    let after = |cut: &dyn Fn(i64) -> i64| -> HashSet<String> {
        records
            .iter()
            .filter(|r| r.json["status"] == "success" && r.offset >= cut(ends[&r.partition]))
            .map(|r| r.key.clone())
            .collect()
    };
    assert_eq!(fresh.accepted_keys(), after(&|end| end / 2));
    assert_eq!(known.accepted_keys(), after(&|end| end - 5));
    service.shutdown(&rt);
}
