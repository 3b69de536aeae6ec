//! Traces end to end (issue 31), on the real broker and a real collector: Jaeger v2
//! (`scripts/jaeger.sh`, OTLP in, in-memory storage, the query API read back here). Records are
//! produced with a W3C `traceparent` as an instrumented producer writes it; the processor and the
//! webhook service run in this process, a local receiver takes the requests. The trace in Jaeger
//! must hold the processing span (child of the producer's span) and the delivery span (child of
//! the processing span); the URL record, the dead letter and the webhook request carry
//! `traceparent`s naming them. And a collector that is down costs spans, never records.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aepiot_stream::config::{Config, TracingConfig, WebhookEndpointConfig, WebhooksConfig};
use aepiot_stream::metrics::Metrics;
use aepiot_stream::processor::RunHooks;
use aepiot_stream::webhook::{self, WebhookHooks};
use axum::http::HeaderMap;
use common::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Jaeger's OTLP/HTTP traces endpoint and query address: `JAEGER_OTLP_ENDPOINT` and
/// `JAEGER_QUERY_URL` (`eval "$(scripts/jaeger.sh env)"`, as scripts/test.sh does), or
/// scripts/jaeger.sh's defaults, started on demand (built first if needed). Never skipped: a
/// Jaeger that cannot start fails the test.
fn jaeger() -> &'static (String, SocketAddr) {
    static JAEGER: OnceLock<(String, SocketAddr)> = OnceLock::new();
    JAEGER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/jaeger.sh");
        if std::env::var("JAEGER_QUERY_URL").is_err() {
            let out = Command::new("bash")
                .arg(&script)
                .arg("start")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "no Jaeger: `scripts/jaeger.sh start` failed (it builds Jaeger with Go the first \
                 time; scripts/install-ci-deps.sh does that in CI):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = Command::new("bash")
            .arg(&script)
            .arg("env")
            .output()
            .unwrap();
        let vars = String::from_utf8(out.stdout).unwrap();
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                let prefix = format!("export {name}=");
                vars.lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .unwrap()
                    .to_string()
            })
        };
        let query = var("JAEGER_QUERY_URL");
        let addr = query.trim_start_matches("http://").parse().unwrap();
        (var("JAEGER_OTLP_ENDPOINT"), addr)
    })
}

/// Jaeger's trace `trace_id` once it holds `spans` spans (the export is asynchronous).
fn jaeger_trace(trace_id: &str, spans: usize) -> Vec<Value> {
    let (_, query) = jaeger();
    let mut got = Vec::new();
    wait_until(
        &format!("Jaeger holds {spans} spans of trace {trace_id}"),
        Duration::from_secs(30),
        || {
            let (status, body) = http_get(*query, &format!("/api/traces/{trace_id}"));
            if status != 200 {
                return false;
            }
            let v: Value = serde_json::from_str(&body).unwrap();
            got = v["data"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            got.len() >= spans
        },
    );
    got
}

/// The span named `prefix…` of a Jaeger trace.
fn span<'a>(spans: &'a [Value], prefix: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["operationName"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no span {prefix}… in {spans:#?}"))
}

/// The id of the span a Jaeger span is a child of.
fn parent_of(span: &Value) -> &str {
    let r = &span["references"][0];
    assert_eq!(r["refType"], "CHILD_OF", "{span:#}");
    r["spanID"].as_str().unwrap()
}

fn tag<'a>(span: &'a Value, key: &str) -> &'a Value {
    let tags = span["tags"].as_array().unwrap();
    let t = tags.iter().find(|t| t["key"] == key);
    &t.unwrap_or_else(|| panic!("no tag {key} in {span:#}"))["value"]
}

/// (trace id, parent span id) of a `traceparent`, checked for version 00 and the sampled flag.
fn parse(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!((parts[0], parts[3]), ("00", "01"), "{traceparent}");
    (parts[1].to_string(), parts[2].to_string())
}

/// A random trace id and span id, as a producer's instrumentation makes them.
fn ids() -> (String, String) {
    (
        format!("{:032x}", rand::random::<u128>()),
        format!("{:016x}", rand::random::<u64>()),
    )
}

/// Produces `(key, payload, traceparent)` records and waits for the acks.
fn produce_traced(topic: &str, records: &[(&str, &str, Option<String>)]) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    for (key, payload, traceparent) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload.as_bytes());
        if let Some(tp) = traceparent {
            r = r.headers(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(tp.as_str()),
            }));
        }
        send_waiting(&p, r);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// A receiver that answers `status` and keeps each request's `traceparent` (or none).
fn receiver(
    rt: &tokio::runtime::Runtime,
    status: u16,
) -> (Arc<Mutex<Vec<Option<String>>>>, SocketAddr) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let s = s.clone();
            async move {
                let tp = headers
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_string());
                s.lock().unwrap().push(tp);
                (axum::http::StatusCode::from_u16(status).unwrap(), "ok")
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await });
    (seen, addr)
}

/// The webhook service of `c`, on `running`'s runtime, delivering to one endpoint (`name`, the
/// receiver at `addr`), its dead letters to `dlq`; stopped by the token it returns.
fn webhooks_to(
    running: &Running,
    mut c: Config,
    (name, addr): (&str, SocketAddr),
    dlq: &str,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    c.webhooks = WebhooksConfig {
        endpoints: vec![WebhookEndpointConfig {
            name: Some(name.into()),
            url: format!("http://{addr}/hook"),
            regions: vec![],
            secret_env: None,
            secret_file: None,
        }],
        dead_letter_topic: dlq.to_string(),
        ..WebhooksConfig::default()
    };
    let stop = CancellationToken::new();
    let hooks = WebhookHooks {
        metrics: Some(Metrics::new()),
        no_metrics_server: true,
    };
    let webhooks = running.rt.spawn(webhook::run(c, stop.clone(), hooks));
    (stop, webhooks)
}

fn event(device: &str) -> String {
    format!(r#"{{"device_id":"{device}","event_type":"alert","severity":"critical"}}"#)
}

fn traced_config(t: &Topics, endpoint: &str, ratio: f64) -> Config {
    Config {
        tracing: TracingConfig {
            otlp_endpoint: endpoint.to_string(),
            sample_ratio: ratio,
            export_timeout_ms: 1_000,
            ..TracingConfig::default()
        },
        ..config(t, false)
    }
}

/// Issue 31: one trace from the producer's span through the processing span to the webhook
/// delivery, in Jaeger and in the headers of the URL record and the request; a record that becomes
/// a dead letter is traced the same way; a record without a `traceparent` (with `sample_ratio` 0)
/// is not traced at all, and a sampled parent is followed whatever the ratio.
#[test]
fn a_traced_event_is_one_trace_from_the_producer_to_the_receiver() {
    let (otlp, _) = jaeger();
    let t = topics("trace", 1);
    let webhook_dlq = unique("trace-wh-dlq");
    create_topics(&[(&webhook_dlq, 1)]);
    let running = start_with(traced_config(&t, otlp, 0.0), RunHooks::default());
    let rt = &running.rt;
    let (seen, addr) = receiver(rt, 200);
    let (stop, webhooks) = webhooks_to(
        &running,
        traced_config(&t, otlp, 0.0),
        ("receiver", addr),
        &webhook_dlq,
    );

    let ((trace, producer_span), (dl_trace, dl_producer_span)) = (ids(), ids());
    let (traced, plain) = (event("d-traced"), event("d-plain"));
    produce_traced(
        &t.input,
        &[
            (
                "d-traced",
                traced.as_str(),
                Some(format!("00-{trace}-{producer_span}-01")),
            ),
            ("d-plain", plain.as_str(), None),
            (
                "d-bad",
                "not json",
                Some(format!("00-{dl_trace}-{dl_producer_span}-01")),
            ),
        ],
    );

    let out = consume(&t.output, 2, Duration::from_secs(30));
    assert_eq!(out.len(), 2);
    let url_record = |key: &str| {
        out.iter()
            .find(|m| json(m)["device_id"] == key)
            .unwrap_or_else(|| panic!("no URL record of {key}"))
    };
    assert_eq!(header(url_record("d-plain"), "traceparent"), None);
    let (record_trace, processing) = parse(header(url_record("d-traced"), "traceparent").unwrap());
    assert_eq!(record_trace, trace);
    let dead = consume(&t.dlq, 1, Duration::from_secs(30));
    let (dead_trace, dead_processing) = parse(header(&dead[0], "traceparent").unwrap());
    assert_eq!(dead_trace, dl_trace);

    wait_until(
        "the receiver got both records",
        Duration::from_secs(30),
        || seen.lock().unwrap().len() >= 2,
    );
    let requests = seen.lock().unwrap().clone();
    assert_eq!(
        requests.iter().filter(|tp| tp.is_none()).count(),
        1,
        "{requests:?}"
    );
    let request_tp = requests.iter().flatten().next().unwrap();
    let (request_trace, delivery) = parse(request_tp);
    assert_eq!(request_trace, trace);

    let spans = jaeger_trace(&trace, 2);
    let process = span(&spans, "process ");
    assert_eq!(process["spanID"], processing.as_str());
    assert_eq!(parent_of(process), producer_span);
    assert_eq!(tag(process, "messaging.system"), "kafka");
    assert_eq!(tag(process, "messaging.destination.name"), t.input.as_str());
    assert_eq!(
        tag(process, "messaging.consumer.group.name"),
        t.group.as_str()
    );
    assert_eq!(tag(process, "aepiot.status"), "success");
    let deliver = span(&spans, "deliver receiver");
    assert_eq!(deliver["spanID"], delivery.as_str());
    assert_eq!(parent_of(deliver), processing);
    assert_eq!(tag(deliver, "aepiot.webhook.result"), "delivered");
    assert_eq!(tag(deliver, "http.response.status_code"), 200);

    let spans = jaeger_trace(&dl_trace, 1);
    let process = span(&spans, "process ");
    assert_eq!(process["spanID"], dead_processing.as_str());
    assert_eq!(parent_of(process), dl_producer_span);
    assert_eq!(tag(process, "aepiot.dead_letter.kind"), "invalid_json");
    assert!(running.metrics.trace_spans_exported.get() >= 2);
    assert_eq!(running.metrics.trace_spans_dropped.get(), 0);

    stop.cancel();
    rt.block_on(webhooks).unwrap().unwrap();
    running.shutdown();
}

/// This test binary's log lines, as JSON (the format `--log-format json` writes), from every
/// thread: a global subscriber installed once, writing into a buffer the tests read.
fn logged() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(log))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    })
}

struct Capture(&'static Mutex<Vec<u8>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 31: dead letters written after the record's processing carry its trace on too: the
/// webhook service's dead letter of a request the receiver refused (the delivery span its
/// parent, like the requests'), and the dead letter of a URL record the broker refused after it
/// was sent (the processing span its parent, like the URL record's).
#[test]
fn later_dead_letters_carry_the_trace_on() {
    let log = logged();
    let (otlp, _) = jaeger();
    let t = topics("trace-later", 1);
    let webhook_dlq = unique("trace-later-wh-dlq");
    create_topics(&[(&webhook_dlq, 1)]);
    let running = start_with(traced_config(&t, otlp, 0.0), RunHooks::default());
    let rt = &running.rt;
    let (_, addr) = receiver(rt, 400);
    let (stop, webhooks) = webhooks_to(
        &running,
        traced_config(&t, otlp, 0.0),
        ("refuser", addr),
        &webhook_dlq,
    );

    // Refused by the receiver (400: not retried): the webhook dead letter.
    let (trace, producer_span) = ids();
    let refused = event("d-refused");
    let tp = format!("00-{trace}-{producer_span}-01");
    produce_traced(&t.input, &[("d-refused", refused.as_str(), Some(tp))]);
    let url = consume(&t.output, 1, Duration::from_secs(30));
    let (_, processing) = parse(header(&url[0], "traceparent").unwrap());
    let dead = consume(&webhook_dlq, 1, Duration::from_secs(30));
    let (dead_trace, delivery) = parse(header(&dead[0], "traceparent").expect("a traceparent"));
    assert_eq!(dead_trace, trace);
    let spans = jaeger_trace(&trace, 2);
    let deliver = span(&spans, "deliver refuser");
    assert_eq!(
        deliver["spanID"],
        delivery.as_str(),
        "the delivery span is the parent"
    );
    assert_eq!(parent_of(deliver), processing);
    assert_eq!(tag(deliver, "aepiot.webhook.result"), "dead_lettered");
    // The warning about that record, in the JSON logs, names its trace.
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let warning = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "webhook undeliverable; record dead-lettered")
        .unwrap_or_else(|| panic!("no dead-letter warning in the log:\n{text}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["fields"]["trace_id"], trace.as_str(), "{warning}");

    // Refused by the broker after it was sent (the output topic's limit lowered below a URL
    // record's size): the processor's dead letter.
    set_max_message_bytes(&t.output, 100);
    let (trace, producer_span) = ids();
    let big = event("d-broker-refused");
    let tp = format!("00-{trace}-{producer_span}-01");
    produce_traced(&t.input, &[("d-broker-refused", big.as_str(), Some(tp))]);
    let dead = consume(&t.dlq, 1, Duration::from_secs(30));
    let (dead_trace, parent) = parse(header(&dead[0], "traceparent").expect("a traceparent"));
    assert_eq!(dead_trace, trace);
    let spans = jaeger_trace(&trace, 1);
    let process = span(&spans, "process ");
    assert_eq!(
        process["spanID"],
        parent.as_str(),
        "the processing span is the parent"
    );
    assert_eq!(parent_of(process), producer_span);

    stop.cancel();
    rt.block_on(webhooks).unwrap().unwrap();
    running.shutdown();
}

/// Issue 31, "never in the way": with the collector down (a closed port) and every record sampled,
/// every record still becomes its URL record, with its `traceparent`, the offsets are committed,
/// and the spans are dropped and counted.
#[test]
fn a_collector_that_is_down_costs_spans_not_records() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let t = topics("trace-down", 2);
    const N: usize = 300;
    let records: Vec<(String, String)> = (0..N)
        .map(|i| (format!("d-{i}"), event(&format!("d-{i}"))))
        .collect();
    let records: Vec<(&str, &str, Option<String>)> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str(), None))
        .collect();
    produce_traced(&t.input, &records);
    let running = start(traced_config(&t, &endpoint, 1.0));
    let out = consume(&t.output, N, Duration::from_secs(60));
    assert_eq!(out.len(), N);
    assert!(out.iter().all(|m| header(m, "traceparent").is_some()));
    wait_until(
        "every input offset committed",
        Duration::from_secs(30),
        || all_committed(&t.group, &t.input),
    );
    wait_until(
        "every span dropped and counted",
        Duration::from_secs(30),
        || running.metrics.trace_spans_dropped.get() >= N as u64,
    );
    assert_eq!(running.metrics.trace_spans_exported.get(), 0);
    running.shutdown();
}

/// `[tracing]` from the environment, as the Helm chart sets it: a decimal ratio is a number, and
/// a value that only looks like one (`1.2.3`) stays a string.
#[test]
fn tracing_settings_from_the_environment() {
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let c = Config::load(
        None,
        env(&[
            ("AEPIOT_TRACING__OTLP_ENDPOINT", "http://c:4318/v1/traces"),
            ("AEPIOT_TRACING__SAMPLE_RATIO", "0.25"),
            ("AEPIOT_OUTPUT_TOPIC", "1.2.3"),
        ]),
        toml::Table::new(),
    )
    .unwrap();
    assert!(c.tracing.enabled());
    assert_eq!(c.tracing.sample_ratio, 0.25);
    assert_eq!(c.output_topic, "1.2.3");
    let bad = env(&[("AEPIOT_TRACING__SAMPLE_RATIO", "1.5")]);
    let e = Config::load(None, bad, toml::Table::new()).unwrap_err();
    assert!(e.to_string().contains("tracing.sample_ratio"), "{e}");
}
