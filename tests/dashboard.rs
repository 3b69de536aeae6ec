//! The Grafana dashboard against a real Prometheus: a processor runs in this process on the real
//! broker with continuous traffic (valid and invalid events), a real `prometheus` server (Debian
//! package; `scripts/install-ci-deps.sh`) scrapes it every second, and every query of every panel
//! of `helm/aepiot-stream/dashboards/aepiot-stream.json` must return data through Prometheus's
//! HTTP API. The webhook service runs beside it with one endpoint that refuses connections, so
//! the per-endpoint panels (state, lag, time down) have an endpoint that is down. Also: `/healthz` and `/readyz` answer 200 once the processor has its partitions, and
//! (what the Helm chart's probes and disruption budget rely on) an instance left without a
//! partition is ready too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aepiot_stream::config::{Config, WebhookEndpointConfig, WebhooksConfig};
use aepiot_stream::generate::{Generator, Profile};
use aepiot_stream::metrics::Metrics;
use aepiot_stream::processor::{self, RunHooks};
use aepiot_stream::webhook::{self, WebhookHooks};
use common::*;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const DASHBOARD: &str = "helm/aepiot-stream/dashboards/aepiot-stream.json";
const JOB: &str = "aepiot-stream";

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(ps: &'a [Value], out: &mut Vec<&'a Value>) {
        for p in ps {
            out.push(p);
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        d["panels"].as_array().expect("dashboard has panels"),
        &mut out,
    );
    out
}

/// `(panel title, refId, expr)` of every target of every panel.
fn queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {:?}: a target without expr", p["title"]));
            out.push((
                p["title"].as_str().unwrap_or("").to_string(),
                t["refId"].as_str().unwrap_or("").to_string(),
                expr.to_string(),
            ));
        }
    }
    out
}

/// Grafana's variable substitution, as Grafana would do it with the time range of the last hour
/// and "All" selected for every multi-value variable.
fn substitute(expr: &str, d: &Value) -> String {
    let mut vars: Vec<(String, String)> = vec![
        ("__rate_interval".into(), "30s".into()),
        ("__interval".into(), "15s".into()),
        ("__range".into(), "1h".into()),
    ];
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap().to_string();
        if v["type"] == "datasource" {
            continue;
        }
        let value = v["allValue"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| ".*".into());
        vars.push((name, value));
    }
    // Longest names first, so `$__rate_interval` is not taken for `$__range` + a suffix.
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let mut e = expr.to_string();
    for (n, v) in &vars {
        e = e
            .replace(&format!("${{{n}}}"), v)
            .replace(&format!("[[{n}]]"), v)
            .replace(&format!("${n}"), v);
    }
    assert!(
        !e.contains('$'),
        "unknown Grafana variable left in {expr:?} → {e:?}"
    );
    e
}

/// `curl` GET: (status, body).
fn get(url: &str, query: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some(q) = query {
        cmd.args(["-G", "--data-urlencode"])
            .arg(format!("query={q}"));
    }
    let out = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match text.rsplit_once('\n') {
        Some((body, code)) => (code.trim().parse().unwrap_or(0), body.to_string()),
        None => (text.trim().parse().unwrap_or(0), String::new()),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `prometheus` server, killed on drop; its log is printed if the test fails.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let bin = ["/usr/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| {
                let out = Command::new("sh")
                    .args(["-c", "command -v prometheus"])
                    .output()
                    .ok()?;
                let p = String::from_utf8(out.stdout).ok()?.trim().to_string();
                (!p.is_empty()).then(|| PathBuf::from(p))
            });
        let bin = bin.expect("the `prometheus` binary is needed (Debian package prometheus: scripts/install-ci-deps.sh)");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/api/v1/query` at the current time: the result array, or why there is none.
    fn query(&mut self, q: &str) -> Result<Vec<Value>, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
        let (code, body) = get(&format!("{}/api/v1/query", self.url), Some(q));
        if code != 200 {
            return Err(format!("HTTP {code}: {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] != "success" {
            return Err(body);
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- prometheus log (last 40 lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Has at least one sample with a number (not NaN): a panel would draw something.
fn has_data(result: &[Value]) -> bool {
    result.iter().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|x| !x.is_nan())
    })
}

/// Produces events to `topic` until stopped: `rate` per second, some invalid.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(topic: &str, per_second: u64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (topic, s, n) = (topic.to_string(), stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()
                .unwrap();
            // 200 devices, 5 % invalid events: every outcome and dead letters keep coming.
            let mut g = Generator::new(Profile::Factory, 200, 7, 0.05);
            let tick = Duration::from_millis(100);
            let per_tick = (per_second / 10).max(1);
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                for _ in 0..per_tick {
                    let r = g.next(aepiot_stream::kafka::clock::now_ms());
                    let rec = BaseRecord::to(&topic)
                        .key(r.key.as_bytes())
                        .payload(r.payload.as_slice());
                    if p.send(rec).is_ok() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
                next += tick;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            p.flush(Duration::from_secs(30)).unwrap();
        });
        Traffic {
            stop,
            sent,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the dashboard must show (issue 4): each metric appears in some panel's query.
#[test]
fn dashboard_covers_every_metric_and_uses_the_datasource_variable() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` template variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let all: String = queries(&d).into_iter().map(|(_, _, e)| e + "\n").collect();
    for metric in [
        "aepiot_events_total",
        "aepiot_urls_generated_total",
        "aepiot_dead_letters_total",
        "aepiot_consumer_lag",
        "aepiot_processing_latency_seconds_bucket",
        "aepiot_event_age_seconds_bucket",
        "aepiot_webhook_requests_total",
        "aepiot_webhook_lag",
        "aepiot_webhook_endpoint_up",
        "aepiot_webhook_endpoint_down_seconds",
        "aepiot_state_devices",
        "aepiot_state_cache_entries",
        "aepiot_rebalances_total",
        "aepiot_assigned_partitions",
        "aepiot_producer_queue_messages",
        "aepiot_commit_failures_total",
        "aepiot_records_written_total",
        "aepiot_producer_errors_total",
        "aepiot_cluster_outputs_waiting",
        "aepiot_cluster_ack_wait_seconds",
        "aepiot_state_evictions_total",
        "process_resident_memory_bytes",
    ] {
        assert!(all.contains(metric), "no panel queries {metric}");
    }
    assert!(
        all.contains("histogram_quantile(0.5,") && all.contains("histogram_quantile(0.99,"),
        "p50 and p99 panels"
    );
    let mut ids = std::collections::HashSet::new();
    for p in panels(&d) {
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate panel id {}",
            p["id"]
        );
        assert!(
            p["gridPos"]["w"].as_i64().is_some(),
            "panel {} has no gridPos",
            p["title"]
        );
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {} datasource",
                p["title"]
            );
            assert!(
                !p["targets"].as_array().is_none_or(|t| t.is_empty()),
                "panel {} has no query",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "panel {} target datasource",
                    p["title"]
                );
            }
        }
    }
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let started = Instant::now();
    let d = dashboard();
    let input = unique("dash-in");
    let output = unique("dash-out");
    let dlq = unique("dash-dlq");
    let group = unique("dash-group");
    let webhook_dlq = unique("dash-wdlq");
    create_topics(&[(&input, 3), (&output, 3), (&dlq, 1), (&webhook_dlq, 1)]);
    // A few invalid records of several kinds up front, so dead letters exist from the start.
    produce(
        &input,
        &[
            (Some(b"bad-1".to_vec()), Some(b"not json".to_vec())),
            (Some(b"bad-2".to_vec()), Some(b"[1,2]".to_vec())),
            (
                Some(b"bad-3".to_vec()),
                Some(br#"{"event_type":"x"}"#.to_vec()),
            ),
            (Some(b"bad-4".to_vec()), None),
        ],
    );
    let traffic = Traffic::start(&input, 200);

    let config = Config {
        brokers: brokers().to_string(),
        input_topics: vec![input.clone()],
        output_topic: output.clone(),
        dead_letter_topic: dlq.clone(),
        group_id: group,
        metrics_addr: String::new(),
        progress_interval_secs: 0,
        webhooks: WebhooksConfig {
            // Nothing listens there: the endpoint goes down and stays down.
            endpoints: vec![WebhookEndpointConfig {
                name: Some("refusing".into()),
                url: format!("http://127.0.0.1:{}/hook", free_port()),
                regions: vec![],
                secret_env: None,
                secret_file: None,
            }],
            dead_letter_topic: webhook_dlq,
            backoff_base_ms: 50,
            backoff_max_ms: 500,
            ..WebhooksConfig::default()
        },
        ..Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let metrics = Metrics::new();
    let (listener, addr) = free_listener(&rt);
    let hooks = RunHooks {
        metrics: Some(metrics.clone()),
        ..RunHooks::default()
    };
    let webhooks = rt.spawn(webhook::run(
        config.clone(),
        stop.clone(),
        WebhookHooks {
            metrics: Some(metrics.clone()),
            no_metrics_server: true,
        },
    ));
    let task = rt.spawn(processor::run(config, Some(listener), stop.clone(), hooks));
    let base = format!("http://{addr}");

    // Health: alive at once; ready once the consumer group assigned the partitions.
    assert_eq!(get(&format!("{base}/healthz"), None).0, 200, "/healthz");
    wait_until("/readyz answers 200", Duration::from_secs(60), || {
        get(&format!("{base}/readyz"), None).0 == 200
    });
    wait_until("events processed", Duration::from_secs(60), || {
        metrics.events_of("success") > 0 && metrics.events_of("invalid") > 0
    });
    let (code, text) = get(&format!("{base}/metrics"), None);
    assert_eq!(code, 200, "/metrics");
    assert!(
        text.contains("aepiot_events_total{outcome=\"success\"}"),
        "/metrics serves the processor's metrics"
    );

    let mut prom = Prometheus::start(addr);
    let up = format!("up{{job=\"{JOB}\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match prom.query(&up) {
            Ok(r) if r.iter().any(|s| s["value"][1] == "1") => break,
            other => assert!(
                Instant::now() < deadline,
                "the scrape target never came up: {other:?}\n{}",
                prom.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let target_up = started.elapsed();

    // Every query of every panel, until each has data (rates need two scrapes in their window).
    let mut pending: Vec<(String, String, String)> = queries(&d)
        .into_iter()
        .map(|(title, r, e)| (format!("{title} [{r}]"), e.clone(), substitute(&e, &d)))
        .collect();
    let total = pending.len();
    assert!(total >= 12, "the dashboard has {total} queries");
    let mut last: std::collections::HashMap<String, String> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        pending.retain(|(name, _, q)| match prom.query(q) {
            Ok(r) if has_data(&r) => false,
            Ok(r) => {
                last.insert(name.clone(), format!("no data: {r:?}"));
                true
            }
            Err(e) => {
                last.insert(name.clone(), e);
                true
            }
        });
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let report: Vec<String> = pending
                .iter()
                .map(|(n, raw, q)| {
                    format!(
                        "  {n}: {raw}\n    as {q}\n    → {}",
                        last.get(n).map_or("", |s| s.as_str())
                    )
                })
                .collect();
            panic!(
                "{} of {total} dashboard queries returned no data:\n{}",
                pending.len(),
                report.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_data = started.elapsed();

    let sent = traffic.sent.load(Ordering::Relaxed);
    drop(traffic);
    drop(prom);
    stop.cancel();
    rt.block_on(task).unwrap().unwrap();
    rt.block_on(webhooks).unwrap().unwrap();
    eprintln!(
        "dashboard: {total} queries all returned data; target up after {:.1}s, all data after {:.1}s, {} events sent, {} invalid",
        target_up.as_secs_f64(),
        all_data.as_secs_f64(),
        sent,
        metrics.events_of("invalid")
    );
}

/// The chart's readiness probe and disruption budget assume that a replica with no partition (more
/// replicas than input partitions) is still ready: it joined the group, it just got nothing.
fn idle_replica_is_ready(group_protocol: &str) {
    let input = unique("idle-in");
    let output = unique("idle-out");
    let dlq = unique("idle-dlq");
    let group = unique("idle-group");
    create_topics(&[(&input, 1), (&output, 1), (&dlq, 1)]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut running = Vec::new();
    for _ in 0..2 {
        let config = Config {
            brokers: brokers().to_string(),
            input_topics: vec![input.clone()],
            output_topic: output.clone(),
            dead_letter_topic: dlq.clone(),
            group_id: group.clone(),
            group_protocol: toml::Value::from(group_protocol).try_into().unwrap(),
            metrics_addr: String::new(),
            progress_interval_secs: 0,
            ..Config::default()
        };
        let (listener, addr) = free_listener(&rt);
        let metrics = Metrics::new();
        let hooks = RunHooks {
            metrics: Some(metrics.clone()),
            ..RunHooks::default()
        };
        let stop = CancellationToken::new();
        let task = rt.spawn(processor::run(config, Some(listener), stop.clone(), hooks));
        running.push((addr, stop, task, metrics));
    }
    // One of the two owns the partition; then both must be ready.
    wait_until("the partition is assigned", Duration::from_secs(60), || {
        running
            .iter()
            .map(|r| r.3.assigned_partitions.get())
            .sum::<i64>()
            == 1
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<(i64, u16)> = running
            .iter()
            .map(|r| {
                (
                    r.3.assigned_partitions.get(),
                    get(&format!("http://{}/readyz", r.0), None).0,
                )
            })
            .collect();
        if states.iter().all(|(_, code)| *code == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "group.protocol={group_protocol}: (assigned partitions, /readyz) per instance: {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for (_, stop, task, _) in running {
        stop.cancel();
        rt.block_on(task).unwrap().unwrap();
    }
}

/// With the default KIP-848 protocol, librdkafka calls no rebalance callback for a member that
/// gets no partition: readiness comes from the consumer group state in the statistics instead.
#[test]
fn an_idle_replica_is_ready_consumer_protocol() {
    idle_replica_is_ready("consumer");
}

#[test]
fn an_idle_replica_is_ready_classic_protocol() {
    idle_replica_is_ready("classic");
}
