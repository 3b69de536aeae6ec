//! `output.format = "avro"` on the real broker and a real Schema Registry (`scripts/registry.sh`,
//! Apicurio): the URL records, read back with confluent-kafka's own `AvroDeserializer`
//! (tests/fixtures/sr_clients.py), equal the JSON output of the same input field by field; a
//! registry that refuses the schema stops the start with a configuration error; one that answers
//! 503 is waited for, and `/readyz` says so.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aepiot_stream::config::{Config, OutputConfig, OutputFormat, SchemaRegistryConfig};
use common::*;
use rdkafka::Message;
use serde_json::Value;

/// The registry of `scripts/registry.sh`: `SCHEMA_REGISTRY_URL`, else its default address. A test
/// fails (never skips) when nothing answers there.
fn registry_url() -> String {
    let url = std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:19781/apis/ccompat/v7".into());
    let answer = blocking(async { reqwest::get(format!("{url}/subjects")).await });
    match answer {
        Ok(r) if r.status().is_success() => url,
        other => panic!(
            "no Schema Registry answers at {url} ({other:?}): start one with \
             `scripts/registry.sh start` (scripts/test.sh does), or set SCHEMA_REGISTRY_URL"
        ),
    }
}

fn blocking<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn avro_config(t: &Topics, url: &str) -> Config {
    Config {
        output: OutputConfig {
            format: OutputFormat::Avro,
        },
        schema_registry: SchemaRegistryConfig {
            url: url.to_string(),
            ..Default::default()
        },
        ..config(t, true)
    }
}

/// tests/fixtures/sr_clients.py with `args`: its stdout lines as JSON.
fn sr_clients(url: &str, args: &[&str]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sr_clients.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--registry", url, "--bootstrap", brokers()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3: {e} (scripts/install-ci-deps.sh installs it)"));
    assert!(
        out.status.success(),
        "sr_clients.py {args:?} failed: {}\n(scripts/install-ci-deps.sh installs confluent-kafka)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A URL record as compared across formats: without `processed_at` (each run's wall clock), and
/// without the nulls Avro writes for the optional fields JSON leaves out.
fn comparable(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    o.remove("processed_at");
    for k in ["urls", "regional_url", "source"] {
        if o.get(k) == Some(&Value::Null) {
            o.remove(k);
        }
    }
    v
}

fn by_source(records: impl IntoIterator<Item = Value>) -> HashMap<(i64, i64), Value> {
    records
        .into_iter()
        .map(|v| {
            let s = (
                v["source"]["partition"].as_i64().unwrap(),
                v["source"]["offset"].as_i64().unwrap(),
            );
            (s, comparable(v))
        })
        .collect()
}

#[test]
fn avro_output_read_by_confluent_s_deserializer_equals_the_json_output() {
    let url = registry_url();
    let events = generated(300, 40, 11);
    let json_run = topics("avro-json", 3);
    produce(&json_run.input, &events);
    // The Avro run reads the same input with a group and outputs of its own.
    let avro_run = Topics {
        input: json_run.input.clone(),
        output: unique("avro-avro-out"),
        dlq: unique("avro-avro-dlq"),
        group: unique("avro-avro-group"),
    };
    create_topics(&[(&avro_run.output, 3), (&avro_run.dlq, 1)]);

    let a = start(config(&json_run, true));
    let b = start(avro_config(&avro_run, &url));
    for t in [&json_run, &avro_run] {
        wait_until(
            "every input offset committed",
            Duration::from_secs(90),
            || all_committed(&t.group, &t.input),
        );
    }
    a.shutdown();
    b.shutdown();

    let json_out = consume_all(&json_run.output, Duration::from_secs(30));
    let n = json_out.len();
    assert!(n > 250, "{n} URL records");
    let avro_raw = consume_all(&avro_run.output, Duration::from_secs(30));
    assert_eq!(avro_raw.len(), n);

    // The wire format, with the id the registry has for <topic>-value.
    let subject = format!("{}-value", avro_run.output);
    let latest: Value = blocking(async {
        reqwest::get(format!("{url}/subjects/{subject}/versions/latest"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let id = latest["id"].as_u64().expect("the subject has a schema id") as u32;
    for m in &avro_raw {
        let p = m.payload().unwrap();
        assert_eq!(p[0], 0, "magic byte");
        assert_eq!(u32::from_be_bytes(p[1..5].try_into().unwrap()), id);
    }
    let registered: Value = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
    let ours: Value =
        serde_json::from_str(aepiot_stream::core::avro_record::URL_RECORD_AVSC).unwrap();
    assert_eq!(registered["name"], ours["name"]);

    // Keys and headers as the JSON run's; records equal field by field.
    let keys = |ms: &[rdkafka::message::OwnedMessage]| {
        let mut k: Vec<(Vec<u8>, Option<String>)> = ms
            .iter()
            .map(|m| {
                let status = header(m, "aepiot.status").map(str::to_string);
                (m.key().unwrap().to_vec(), status)
            })
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&avro_raw), keys(&json_out));
    let count = n.to_string();
    let avro = sr_clients(
        &url,
        &["consume", "--topic", &avro_run.output, "--count", &count],
    );
    let json_records = by_source(json_out.iter().map(json));
    let avro = by_source(avro);
    assert_eq!(avro.len(), n);
    for (source, j) in &json_records {
        assert_eq!(avro.get(source), Some(j), "the record of input {source:?}");
    }
    // Dead letters stay JSON.
    for m in consume_all(&avro_run.dlq, Duration::from_secs(10)) {
        assert_eq!(json(&m)["source"]["topic"], avro_run.input.as_str());
    }
}

#[test]
fn a_registry_that_refuses_the_schema_stops_the_start() {
    let url = registry_url();
    let t = topics("avro-refused", 1);
    // The subject holds an incompatible schema and demands full compatibility.
    let subject = format!("{}-value", t.output);
    blocking(async {
        let c = reqwest::Client::new();
        let r = c
            .post(format!("{url}/subjects/{subject}/versions"))
            .json(&serde_json::json!({"schema": "\"string\""}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
        let r = c
            .put(format!("{url}/config/{subject}"))
            .json(&serde_json::json!({"compatibility": "FULL"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    });
    let running = start(avro_config(&t, &url));
    let err = running
        .rt
        .block_on(running.task)
        .unwrap()
        .expect_err("the start must fail");
    let err = format!("{err:#}");
    assert!(
        err.contains("refused the URL record schema") && err.contains(&subject),
        "{err}"
    );
}

/// A registry that answers 503 twice, then gives the schema id 4242.
fn flaky_registry(rt: &tokio::runtime::Runtime) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/subjects/{subject}/versions",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < 2 {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "busy".to_string(),
                    )
                } else {
                    (axum::http::StatusCode::OK, r#"{"id":4242}"#.to_string())
                }
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

#[test]
fn an_unavailable_registry_is_waited_for_and_readyz_says_so() {
    let t = topics("avro-wait", 1);
    produce(
        &t.input,
        &[(
            Some(b"d1".to_vec()),
            Some(br#"{"device_id":"d1","event_type":"x"}"#.to_vec()),
        )],
    );
    let server = tokio::runtime::Runtime::new().unwrap();
    let (url, calls) = flaky_registry(&server);
    let mut c = avro_config(&t, &url);
    // Waits of 1 s and 2 s: time for the polls below to see /readyz while it waits.
    c.schema_registry.retry_backoff_ms = 1_000;
    let (running, addr) = start_with_page(c);
    // The first answer is a 503: /readyz says what the start waits for.
    wait_until(
        "/readyz names the registry",
        Duration::from_secs(20),
        || {
            let (code, body) = http_get(addr, "/readyz");
            code == 503 && body.contains("waiting for the Schema Registry")
        },
    );
    wait_until("the record is written", Duration::from_secs(60), || {
        all_committed(&t.group, &t.input)
    });
    running.shutdown();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two 503s, then the id");
    let out = consume_all(&t.output, Duration::from_secs(10));
    assert_eq!(out.len(), 1);
    let p = out[0].payload().unwrap();
    assert_eq!(
        &p[..5],
        &[0, 0, 0, 0x10, 0x92],
        "the wire format with id 4242"
    );
}
