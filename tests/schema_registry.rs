//! Schema Registry input on the real broker and a real registry (Apicurio, `scripts/registry.sh`),
//! with records written by confluent-kafka's own `AvroSerializer`, `ProtobufSerializer` and
//! `JSONSerializer` (`tests/fixtures/sr_clients.py`): the same events in every encoding give the
//! same URL records; each failure is its own dead letter; a registry outage mid-stream, across a
//! schema's evolution, loses nothing and dead-letters nothing.
//!
//! Needs the registry (`SCHEMA_REGISTRY_URL`, or `scripts/registry.sh start`, which these tests run
//! when the variable is unset) and Python's confluent-kafka (`scripts/install-ci-deps.sh`); a
//! missing one fails the test with what to run.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use rdkafka::Message;
use serde_json::Value;

/// The registry's Confluent-compatible base URL.
fn registry_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SCHEMA_REGISTRY_URL") {
            return url;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/registry.sh");
        assert!(
            script.exists(),
            "no Schema Registry: set SCHEMA_REGISTRY_URL, or merge main for scripts/registry.sh"
        );
        for command in ["start", "url"] {
            let out = Command::new("bash").arg(&script).arg(command).output().unwrap();
            assert!(
                out.status.success(),
                "scripts/registry.sh {command} failed (it starts the Schema Registry these tests need):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if command == "url" {
                return String::from_utf8(out.stdout).unwrap().trim().to_string();
            }
        }
        unreachable!()
    })
}

/// `sr_clients.py produce`: `events` (JSON lines) produced to `topic` with the format's serializer
/// and `schema` variant; returns the schema id the records carry.
fn produce_with(topic: &str, format: &str, schema: &str, events: &[Value]) -> u64 {
    produce_to_partition(topic, None, format, schema, events)
}

/// [`produce_with`], every record to `partition` when given.
fn produce_to_partition(
    topic: &str,
    partition: Option<i32>,
    format: &str,
    schema: &str,
    events: &[Value],
) -> u64 {
    produce_via(registry_url(), topic, partition, format, schema, events)
}

/// [`produce_to_partition`] against the registry at `registry`.
fn produce_via(
    registry: &str,
    topic: &str,
    partition: Option<i32>,
    format: &str,
    schema: &str,
    events: &[Value],
) -> u64 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sr_clients.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args([
            "produce", "--topic", topic, "--format", format, "--schema", schema,
        ])
        .args(
            partition
                .map(|p| ["--partition".to_string(), p.to_string()])
                .into_iter()
                .flatten(),
        )
        .env("KAFKA_BOOTSTRAP", brokers())
        .env("SCHEMA_REGISTRY_URL", registry)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs tests/fixtures/sr_clients.py");
    {
        let mut stdin = child.stdin.take().unwrap();
        for e in events {
            writeln!(stdin, "{e}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sr_clients.py produce --format {format} failed (confluent-kafka[avro,protobuf,json] comes with scripts/install-ci-deps.sh):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["produced"], events.len());
    line["schema_id"].as_u64().unwrap()
}

/// Events of every shape the fields take, timestamps in milliseconds as the serializers keep them.
fn events(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let event_type = ["temperature_alert", "door_open", "pressure_drop"][i % 3];
            let severity = ["low", "high"][i % 2];
            let region = ["europe", "north_america", "asia_pacific", "global"][i % 4];
            let mut e = serde_json::json!({
                "device_id": format!("{tag}-{i:03}"),
                "event_type": event_type,
                "severity": severity,
                "location": format!("Plant {} / \"Line\" é{}", i % 4, i % 3),
                "value": (i as f64) * 1.25 + 0.5,
                "timestamp": format!("2026-11-26T08:{:02}:{:02}.{:03}Z", i % 60, (i * 7) % 60, i % 1000),
                "region": region,
            });
            if i % 5 == 0 {
                e["dashboard_url"] = format!("https://grafana.example.com/d/{i}?x=1&y=2").into();
                e["description"] = "a description".into();
            }
            e
        })
        .collect()
}

/// (key, payload) records.
type Records = Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>;

/// Events as plain JSON records, keyed by device.
fn as_json(events: &[Value]) -> Records {
    events
        .iter()
        .map(|e| {
            let key = e["device_id"].as_str().unwrap().as_bytes().to_vec();
            (Some(key), Some(e.to_string().into_bytes()))
        })
        .collect()
}

fn wire_config(t: &Topics, url: &str) -> aepiot_stream::config::Config {
    let mut c = config(t, true);
    c.schema_registry.url = url.to_string();
    c.schema_registry.retry_backoff_ms = 100;
    c.schema_registry.retry_backoff_max_ms = 500;
    c.schema_registry.request_timeout_ms = 2000;
    c
}

/// A URL record without what differs between two runs of one event: where it came from and when
/// it was processed.
fn comparable(v: &Value) -> String {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("source");
    o.remove("processed_at");
    v.to_string()
}

#[test]
fn the_same_events_in_every_encoding_give_the_same_url_records() {
    let n = 30;
    let evs = events(n, "same");
    let formats = ["json", "avro", "protobuf", "json_schema"];
    let inputs: Vec<String> = formats
        .iter()
        .map(|f| unique(&format!("sr-same-{f}")))
        .collect();
    let out = unique("sr-same-out");
    let dlq = unique("sr-same-dlq");
    let mut topics: Vec<(&str, i32)> = inputs.iter().map(|t| (t.as_str(), 1)).collect();
    topics.extend([(out.as_str(), 1), (dlq.as_str(), 1)]);
    create_topics(&topics);
    let json = as_json(evs.as_slice());
    produce(&inputs[0], &json);
    produce_with(&inputs[1], "avro", "v1", &evs);
    produce_with(&inputs[2], "protobuf", "v1", &evs);
    produce_with(&inputs[3], "json", "v1", &evs);

    let t = Topics {
        input: inputs[0].clone(),
        output: out.clone(),
        dlq: dlq.clone(),
        group: unique("sr-same-group"),
    };
    let mut c = wire_config(&t, registry_url());
    c.input_topics = inputs.clone();
    let running = start(c);
    let records = consume(&out, 4 * n, Duration::from_secs(60));
    running.shutdown();
    assert_eq!(
        consume_all(&dlq, Duration::from_secs(10)).len(),
        0,
        "no dead letters"
    );
    assert_eq!(records.len(), 4 * n);
    // By input topic, in offset order: the URL records of each encoding.
    let mut by_topic: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for m in &records {
        let v = common::json(m);
        assert_eq!(v["status"], "success", "{v}");
        let topic = v["source"]["topic"].as_str().unwrap().to_string();
        by_topic
            .entry(topic)
            .or_default()
            .push((v["source"]["offset"].as_i64().unwrap(), comparable(&v)));
    }
    let mut lists: Vec<Vec<String>> = inputs
        .iter()
        .map(|t| {
            let mut l = by_topic.remove(t).unwrap_or_default();
            l.sort();
            l.into_iter().map(|(_, r)| r).collect()
        })
        .collect();
    let from_json = lists.remove(0);
    assert_eq!(from_json.len(), n);
    for (format, list) in formats[1..].iter().zip(lists) {
        assert_eq!(
            list, from_json,
            "{format}: URL records differ from the JSON ones"
        );
    }
}

/// Reads back `n` records of `topic`: their payloads, in order.
fn payloads(topic: &str, n: usize) -> Vec<Vec<u8>> {
    let got = consume(topic, n, Duration::from_secs(30));
    assert_eq!(got.len(), n);
    let mut got: Vec<_> = got
        .iter()
        .map(|m| (m.offset(), m.payload().unwrap().to_vec()))
        .collect();
    got.sort();
    got.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn each_failure_is_its_own_dead_letter() {
    let t = topics("sr-fail", 1);
    let scratch = unique("sr-fail-scratch");
    create_topics(&[(&scratch, 1)]);
    let ev = events(1, "fail");
    let avro_id = produce_with(&scratch, "avro", "v1", &ev);
    let proto_id = produce_with(&scratch, "protobuf", "v1", &ev);
    let mismatch_id = produce_with(&scratch, "avro", "no-device-id", &ev);
    let json_id = produce_with(&scratch, "json", "v1", &ev);
    let p = payloads(&scratch, 4);
    let cut = |b: &Vec<u8>| b[..b.len() - 4].to_vec();
    let mut garbage_json = p[3][..5].to_vec();
    garbage_json.extend_from_slice(b"{not json");
    let unknown = [0u8, 0x7f, 0xff, 0xff, 0xf0, 1, 2, 3].to_vec();
    let inputs = [
        (unknown, "unknown_schema", 0x7fff_fff0u64),
        (cut(&p[0]), "invalid_avro", avro_id),
        (cut(&p[1]), "invalid_protobuf", proto_id),
        (p[2].clone(), "schema_mismatch", mismatch_id),
        (garbage_json, "invalid_json", json_id),
        (p[0].clone(), "success", avro_id),
    ];
    let records: Vec<_> = inputs
        .iter()
        .map(|(b, _, _)| (Some(b"fail-000".to_vec()), Some(b.clone())))
        .collect();
    produce(&t.input, &records);
    let running = start(wire_config(&t, registry_url()));
    let letters = consume(&t.dlq, 5, Duration::from_secs(60));
    let outputs = consume(&t.output, 1, Duration::from_secs(30));
    running.shutdown();
    assert_eq!(outputs.len(), 1);
    assert_eq!(common::json(&outputs[0])["status"], "success");
    assert_eq!(letters.len(), 5);
    let mut letters: Vec<Value> = letters.iter().map(common::json).collect();
    letters.sort_by_key(|l| l["source"]["offset"].as_i64());
    for (letter, (bytes, kind, id)) in letters.iter().zip(&inputs) {
        let e = &letter["error"];
        assert_eq!(e["kind"], *kind, "{letter}");
        assert_eq!(e["schema_id"], *id, "{letter}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("schema id {id}"))
                || *kind != "unknown_schema",
            "{letter}"
        );
        assert_eq!(
            letter["payload_bytes"],
            bytes.len(),
            "the record as it came"
        );
    }
    assert_eq!(letters[3]["error"]["field"], "device_id");
}

/// A TCP forwarder to the registry that can be stopped (connections refused, open ones cut) and
/// started again on the same port: the registry going away and coming back, as the processor
/// sees it, without touching the registry other tests share.
struct Proxy {
    rt: tokio::runtime::Runtime,
    port: u16,
    target: String,
    stop: Option<tokio_util::sync::CancellationToken>,
}

impl Proxy {
    fn new(target_url: &str) -> Proxy {
        let u = url::Url::parse(target_url).unwrap();
        let target = format!(
            "{}:{}",
            u.host_str().unwrap(),
            u.port_or_known_default().unwrap()
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let port = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = Proxy {
            rt,
            port,
            target,
            stop: None,
        };
        p.start();
        p
    }

    /// The registry's URL through the proxy.
    fn url(&self, target_url: &str) -> String {
        let mut u = url::Url::parse(target_url).unwrap();
        u.set_port(Some(self.port)).unwrap();
        u.to_string()
    }

    fn start(&mut self) {
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .unwrap();
        let (target, s) = (self.target.clone(), stop.clone());
        self.rt.spawn(async move {
            loop {
                let (mut conn, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    c = listener.accept() => c.unwrap(),
                };
                let (target, s) = (target.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = s.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
                    }
                });
            }
        });
        self.stop = Some(stop);
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.cancel();
        }
        // The listener is closed once its task sees the cancellation.
        wait_until("the proxy's port to close", Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }
}

fn metric(metrics: &aepiot_stream::metrics::Metrics, name: &str) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_registry_outage_mid_stream_loses_nothing_and_dead_letters_nothing() {
    let t = topics("sr-outage", 2);
    let mut proxy = Proxy::new(registry_url());
    let mut c = wire_config(&t, &proxy.url(registry_url()));
    c.commit_interval_ms = 100;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    c.metrics_addr = addr.to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let metrics = aepiot_stream::metrics::Metrics::new();
    let hooks = aepiot_stream::processor::RunHooks {
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    let task = rt.spawn(aepiot_stream::processor::run(
        c,
        Some(listener),
        stop.clone(),
        hooks,
    ));

    // v1, with the registry up: processed, the schema kept.
    let v1 = events(40, "out-a");
    produce_to_partition(&t.input, Some(0), "avro", "v1", &v1);
    wait_until("v1 processed", Duration::from_secs(60), || {
        consume_all(&t.output, Duration::from_secs(5)).len() == v1.len()
    });
    // The registry goes away. On partition 0 the producers move to v2 (a new optional field, a
    // new schema id), and JSON records follow; partition 1 gets v1 records (a schema at hand)
    // and JSON ones.
    proxy.stop();
    let mut v2 = events(40, "out-b");
    for (i, e) in v2.iter_mut().enumerate() {
        e["firmware"] = format!("2.{i}").into();
    }
    let v2_id = produce_to_partition(&t.input, Some(0), "avro", "v2", &v2);
    let plain = events(10, "out-c");
    let keyed = |evs: &[Value]| -> Vec<(Vec<u8>, Vec<u8>)> {
        as_json(evs)
            .into_iter()
            .map(|(k, v)| (k.unwrap(), v.unwrap()))
            .collect()
    };
    produce_to(&t.input, 0, &keyed(&plain));
    let others = events(20, "out-d");
    produce_to_partition(&t.input, Some(1), "avro", "v1", &others[..10]);
    produce_to(&t.input, 1, &keyed(&others[10..]));
    wait_until(
        "partition 0 waiting for the registry",
        Duration::from_secs(30),
        || metric(&metrics, "aepiot_schema_registry_waiting_partitions") >= 1.0,
    );
    let (status, body) = http_get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("/0 needs schema id {v2_id}")),
        "{body}"
    );
    let (_, page) = http_get(addr, "/api/status");
    let page: Value = serde_json::from_str(&page).unwrap();
    let waits = page["schema_registry_waits"].as_array().unwrap();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(waits[0]["schema_id"], v2_id);
    // Partition 1 goes on meanwhile; partition 0 processes nothing after its waiting record.
    wait_until("partition 1 processed", Duration::from_secs(30), || {
        consume_all(&t.output, Duration::from_secs(5)).len() == v1.len() + others.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(metric(&metrics, "aepiot_schema_registry_errors_total") >= 2.0);
    assert_eq!(
        consume_all(&t.output, Duration::from_secs(5)).len(),
        v1.len() + others.len(),
        "nothing after a waiting record is processed"
    );
    assert_eq!(
        consume_all(&t.dlq, Duration::from_secs(5)).len(),
        0,
        "nothing dead-lettered"
    );
    // Back: everything comes out, once, and the wait is over.
    proxy.start();
    let total = v1.len() + v2.len() + plain.len() + others.len();
    wait_until("every record processed", Duration::from_secs(60), || {
        consume_all(&t.output, Duration::from_secs(5)).len() >= total
    });
    wait_until("the wait is over", Duration::from_secs(10), || {
        http_get(addr, "/readyz").0 == 200
    });
    wait_until("offsets committed", Duration::from_secs(30), || {
        all_committed(&t.group, &t.input)
    });
    stop.cancel();
    rt.block_on(task).unwrap().unwrap();
    let outputs = consume_all(&t.output, Duration::from_secs(10));
    assert_eq!(outputs.len(), total, "one URL record per event");
    assert_eq!(consume_all(&t.dlq, Duration::from_secs(5)).len(), 0);
    let devices: std::collections::HashSet<String> = outputs
        .iter()
        .map(|m| common::json(m)["device_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(devices.len(), total, "every device's event, none twice");
    assert_eq!(
        metric(&metrics, "aepiot_schema_registry_waiting_partitions"),
        0.0
    );
}

#[test]
fn under_exactly_once_a_wait_holds_no_transaction_and_loses_nothing() {
    let t = topics("sr-eos", 1);
    let mut proxy = Proxy::new(registry_url());
    proxy.stop();
    let mut c = wire_config(&t, &proxy.url(registry_url()));
    c.processing_guarantee = aepiot_stream::config::Guarantee::ExactlyOnce;
    let before = events(10, "eos-a");
    produce(&t.input, &as_json(&before));
    let after = events(10, "eos-b");
    produce_with(&t.input, "avro", "v1", &after);
    let running = start(c);
    // The JSON records before the waiting one are committed (read_committed readers see them):
    // the wait holds no transaction open.
    wait_until(
        "the records before the wait committed",
        Duration::from_secs(60),
        || consume_all(&t.output, Duration::from_secs(5)).len() == before.len(),
    );
    assert!(metric(&running.metrics, "aepiot_schema_registry_errors_total") >= 1.0);
    proxy.start();
    wait_until("every record committed", Duration::from_secs(60), || {
        consume_all(&t.output, Duration::from_secs(5)).len() >= before.len() + after.len()
    });
    running.shutdown();
    let outputs = consume_all(&t.output, Duration::from_secs(10));
    assert_eq!(outputs.len(), before.len() + after.len(), "each once");
    assert_eq!(consume_all(&t.dlq, Duration::from_secs(5)).len(), 0);
}

/// A registry of this test's own (`scripts/registry.sh` on a free port, its schemas in an H2 file
/// in a temporary directory: `REGISTRY_STORAGE=file`), stopped and started like a production
/// registry in a restart, keeping its schemas; stopped when dropped.
struct OwnRegistry {
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRegistry {
    fn start() -> OwnRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = OwnRegistry {
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        r.script("start");
        r
    }

    fn script(&self, command: &str) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/registry.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(command)
            .env("REGISTRY_PORT", self.port.to_string())
            .env("REGISTRY_DATA_DIR", self.dir.path())
            .env("REGISTRY_STORAGE", "file")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/registry.sh {command} (port {}, file storage) failed:\n{}{}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn url(&self) -> String {
        self.script("url")
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.script("stop")));
    }
}

/// The registry process itself stopped (SIGTERM) mid-stream and started again with the schemas it
/// keeps: records whose schema the processor holds go on, a new schema id waits for it, nothing is
/// dead-lettered and every record comes out once. The records are real producers' (written by
/// confluent-kafka's serializer while the registry was up, as a long-lived producer that holds
/// its schema ids keeps writing while the registry is down) and reach the input while it is down.
#[test]
fn the_registry_stopped_and_started_again_mid_stream_loses_nothing() {
    let registry = OwnRegistry::start();
    let url = registry.url();
    let t = topics("sr-restart", 2);
    let staging = unique("sr-restart-staged");
    create_topics(&[(&staging, 1)]);
    let mut c = wire_config(&t, &url);
    c.commit_interval_ms = 100;
    let running = start(c);

    let v1 = events(30, "rs-a");
    produce_via(&url, &t.input, Some(0), "avro", "v1", &v1);
    wait_until("v1 processed", Duration::from_secs(60), || {
        consume_all(&t.output, Duration::from_secs(5)).len() == v1.len()
    });
    // Written by the serializer now, reaching the input once the registry is down: more v1 (an
    // id the processor holds) and v2 (a new id it must fetch).
    let more_v1 = events(20, "rs-b");
    produce_via(&url, &staging, None, "avro", "v1", &more_v1);
    let mut v2 = events(20, "rs-c");
    for (i, e) in v2.iter_mut().enumerate() {
        e["firmware"] = format!("3.{i}").into();
    }
    let v2_id = produce_via(&url, &staging, None, "avro", "v2", &v2);
    let staged: Vec<(Vec<u8>, Vec<u8>)> = consume_all(&staging, Duration::from_secs(10))
        .iter()
        .map(|m| (m.key().unwrap().to_vec(), m.payload().unwrap().to_vec()))
        .collect();
    assert_eq!(staged.len(), more_v1.len() + v2.len());

    registry.script("stop");
    // Partition 0: the staged records, v1 (an id the processor holds) first, then v2; partition 1:
    // JSON records.
    produce_to(&t.input, 0, &staged[..more_v1.len()]);
    produce_to(&t.input, 0, &staged[more_v1.len()..]);
    let json = events(10, "rs-d");
    let keyed: Vec<(Vec<u8>, Vec<u8>)> = as_json(&json)
        .into_iter()
        .map(|(k, v)| (k.unwrap(), v.unwrap()))
        .collect();
    produce_to(&t.input, 1, &keyed);
    let before = v1.len() + more_v1.len() + json.len();
    wait_until(
        "everything but v2 processed, v2 waiting",
        Duration::from_secs(60),
        || {
            consume_all(&t.output, Duration::from_secs(5)).len() == before
                && metric(
                    &running.metrics,
                    "aepiot_schema_registry_waiting_partitions",
                ) == 1.0
        },
    );
    assert!(metric(&running.metrics, "aepiot_schema_registry_errors_total") >= 1.0);
    assert_eq!(consume_all(&t.dlq, Duration::from_secs(5)).len(), 0);

    registry.script("start");
    let total = before + v2.len();
    wait_until("every record processed", Duration::from_secs(90), || {
        consume_all(&t.output, Duration::from_secs(5)).len() >= total
    });
    wait_until("offsets committed", Duration::from_secs(30), || {
        all_committed(&t.group, &t.input)
    });
    let metrics = running.metrics.clone();
    running.shutdown();
    let outputs = consume_all(&t.output, Duration::from_secs(10));
    assert_eq!(outputs.len(), total, "one URL record per event, none twice");
    assert_eq!(
        consume_all(&t.dlq, Duration::from_secs(5)).len(),
        0,
        "nothing dead-lettered"
    );
    let firmware_devices = outputs
        .iter()
        .filter(|m| {
            common::json(m)["device_id"]
                .as_str()
                .unwrap()
                .starts_with("rs-c")
        })
        .count();
    assert_eq!(
        firmware_devices,
        v2.len(),
        "every v2 record (schema id {v2_id})"
    );
    assert_eq!(
        metric(&metrics, "aepiot_schema_registry_waiting_partitions"),
        0.0
    );
}
