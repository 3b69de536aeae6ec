//! `aepiot-stream dead-letters stats|replay` on the real broker, through the binary:
//! - a future-dated event (`invalid_field`, `timestamp`) is dead-lettered with its key and
//!   headers, and one over `input.max_dead_letter_payload_bytes` whose dead letter keeps a prefix;
//!   `stats` counts them; `--dry-run` produces and commits nothing; `replay` produces the
//!   event again, byte for byte with its key and headers and a header naming its dead letter; a
//!   larger one is read at its source offset; a second `replay` produces nothing; with `input.max_future_skew_secs` raised, the pipeline
//!   turns the replayed event into its URL record;
//! - webhook dead letters from a receiver that refuses (HTTP 400): `stats` counts them by
//!   endpoint; a replay while it still refuses stops at the first one and commits nothing;
//!   `--dry-run` sends nothing; when it refuses only the second, a replay delivers the first, stops
//!   there and the next run resumes at the second; so each is delivered once, with the original
//!   `webhook-id` and a signature the `standardwebhooks` package accepts; a second `replay`
//!   delivers nothing.

mod common;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aepiot_stream::config::{Config, WebhookEndpointConfig, WebhooksConfig};
use aepiot_stream::core::time::format_rfc3339_ms;
use aepiot_stream::metrics::Metrics;
use aepiot_stream::webhook::{self, WebhookHooks};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::standard_webhooks::{self, Received};
use common::*;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// Runs the binary's `dead-letters` with `args`.
fn dead_letters(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .arg("dead-letters")
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "dead-letters {args:?}: {}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn lines_with(text: &str, prefix: &str) -> usize {
    text.lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn a_future_dated_event_is_replayed_once_its_skew_is_allowed() {
    let t = topics("dlr-skew", 1);
    let now = aepiot_stream::kafka::clock::now_ms();
    let future = serde_json::to_vec(&serde_json::json!({
        "device_id": "dev-future",
        "event_type": "alarm",
        "timestamp": format_rfc3339_ms(now + 2 * 3_600_000),
    }))
    .unwrap();
    // Over the dead letters' payload limit below: its dead letter keeps a prefix, and the replay
    // reads the event at its source offset.
    let big = serde_json::to_vec(&serde_json::json!({
        "device_id": "dev-big",
        "event_type": "alarm",
        "description": "x".repeat(400),
        "timestamp": format_rfc3339_ms(now + 2 * 3_600_000),
    }))
    .unwrap();
    let fine = br#"{"device_id":"dev-fine","event_type":"alarm"}"#.to_vec();
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    send_waiting(
        &p,
        BaseRecord::to(&t.input)
            .key(&b"dev-fine"[..])
            .payload(&fine[..]),
    );
    let input_headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("t-1"),
        })
        .insert(Header {
            key: "tenant",
            value: Some("acme"),
        })
        .insert(Header::<&str> {
            key: "empty",
            value: None,
        });
    send_waiting(
        &p,
        BaseRecord::to(&t.input)
            .key(&b"dev-future"[..])
            .payload(&future[..])
            .headers(input_headers),
    );
    send_waiting(
        &p,
        BaseRecord::to(&t.input)
            .key(&b"dev-big"[..])
            .payload(&big[..])
            .headers(OwnedHeaders::new().insert(Header {
                key: "trace",
                value: Some("t-big"),
            })),
    );
    p.flush(Duration::from_secs(30)).unwrap();

    let mut first_config = config(&t, false);
    first_config.input.max_dead_letter_payload_bytes = 300;
    let running = start(first_config);
    wait_until("the URL record and the dead letters", WAIT, || {
        end_offsets(&t.output).values().sum::<i64>() == 1 && end_offsets(&t.dlq)[&0] == 2
    });
    wait_until("the group to commit", WAIT, || {
        all_committed(&t.group, &t.input)
    });
    running.shutdown();
    let dls = consume_all(&t.dlq, WAIT);
    let dl = &dls[0];
    assert_eq!(json(dl)["error"]["kind"], "invalid_field");
    assert_eq!(json(dl)["error"]["field"], "timestamp");
    assert_eq!(header(dl, "aepiot.input.header.trace"), Some("t-1"));
    assert_eq!(json(&dls[1])["payload_truncated"], true);

    let brokers = brokers();
    let stats = stdout(&dead_letters(&[
        "stats",
        "--brokers",
        brokers,
        "--topic",
        &t.dlq,
    ]));
    assert!(stats.contains("dead letters: 2\n"), "{stats}");
    assert!(stats.contains("kind invalid_field: 2\n"), "{stats}");
    assert!(
        stats.contains("not replayable from the dead letter alone: 1\n"),
        "{stats}"
    );
    let later = stdout(&dead_letters(&[
        "stats",
        "--brokers",
        brokers,
        "--topic",
        &t.dlq,
        "--since",
        "2100-01-01T00:00:00Z",
    ]));
    assert!(later.contains("dead letters: 0\n"), "{later}");

    let replay = [
        "replay",
        "--brokers",
        brokers,
        "--topic",
        &t.dlq,
        "--kind",
        "invalid_field",
    ];
    let dry = dead_letters(&[&replay[..], &["--dry-run"]].concat());
    assert!(dry.status.success());
    let from = format!("{}-0-0", t.dlq);
    assert!(
        stdout(&dry).contains(&format!(
            "would replay {from} (invalid_field) -> {}\n",
            t.input
        )),
        "{}",
        stdout(&dry)
    );
    assert!(
        stdout(&dry).contains(&format!(
            "would replay {}-0-1 (invalid_field) -> {} (read from its source)\n",
            t.dlq, t.input
        )),
        "{}",
        stdout(&dry)
    );
    assert_eq!(end_offsets(&t.input)[&0], 3, "--dry-run produces nothing");

    let first = dead_letters(&replay);
    assert!(first.status.success());
    assert_eq!(lines_with(&stdout(&first), "replayed "), 2);
    assert_eq!(end_offsets(&t.input)[&0], 5);
    let mut input = consume_all(&t.input, WAIT);
    let replayed_big = input.remove(4);
    assert_eq!(
        replayed_big.payload(),
        Some(&big[..]),
        "the whole event, from its source"
    );
    assert_eq!(replayed_big.key(), Some(&b"dev-big"[..]));
    assert_eq!(header(&replayed_big, "trace"), Some("t-big"));
    assert_eq!(
        header(&replayed_big, "aepiot.replayed_from"),
        Some(format!("{}-0-1", t.dlq).as_str())
    );
    let replayed = input.remove(3);
    assert_eq!(
        replayed.payload(),
        Some(&future[..]),
        "the event byte for byte"
    );
    assert_eq!(replayed.key(), Some(&b"dev-future"[..]));
    let h: Vec<(String, Option<Vec<u8>>)> = replayed
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(
        h,
        [
            ("trace".to_string(), Some(b"t-1".to_vec())),
            ("tenant".to_string(), Some(b"acme".to_vec())),
            ("empty".to_string(), None),
            (
                "aepiot.replayed_from".to_string(),
                Some(from.clone().into_bytes())
            ),
        ]
    );

    let second = dead_letters(&replay);
    assert!(second.status.success());
    assert!(
        stdout(&second).contains("replayed: 0,"),
        "{}",
        stdout(&second)
    );
    assert_eq!(end_offsets(&t.input)[&0], 5, "a second run replays nothing");

    let mut fixed = config(&t, false);
    fixed.input.max_future_skew_secs = 3 * 3600;
    let running = start(fixed);
    wait_until("the replayed events' URL records", WAIT, || {
        end_offsets(&t.output).values().sum::<i64>() == 3
    });
    wait_until("the group to commit", WAIT, || {
        all_committed(&t.group, &t.input)
    });
    running.shutdown();
    let records = consume_all(&t.output, WAIT);
    let r = records
        .iter()
        .map(json)
        .find(|r| r["device_id"] == "dev-future")
        .expect("the replayed event's URL record");
    assert_eq!(r["status"], "success");
    assert_eq!(r["source"]["offset"], 3);
    let r = records
        .iter()
        .map(json)
        .find(|r| r["device_id"] == "dev-big")
        .expect("the large replayed event's URL record");
    assert_eq!(r["status"], "success");
    assert_eq!(r["source"]["offset"], 4);
    assert_eq!(end_offsets(&t.dlq)[&0], 2, "no new dead letter");
}

/// A receiver answering `status` to every request (400 to the `webhook-id` `refuse`), keeping
/// what it got and whether it accepted it.
struct Receiver {
    status: AtomicU16,
    refuse: Mutex<Option<String>>,
    got: Mutex<Vec<(Received, bool)>>,
}

impl Receiver {
    fn got(&self) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }
    fn accepted(&self) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(_, ok)| *ok)
            .map(|(r, _)| r.clone())
            .collect()
    }
}

async fn handle(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let received = Received {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect(),
        body: body.to_vec(),
    };
    let refused = r.refuse.lock().unwrap().as_deref() == Some(header_of(&received, "webhook-id"));
    let status = if refused {
        400
    } else {
        r.status.load(Ordering::SeqCst)
    };
    r.got.lock().unwrap().push((received, status == 200));
    StatusCode::from_u16(status).unwrap()
}

fn header_of<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

fn url_record(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "device_id": format!("dev-{i}"),
        "event_type": "alarm",
        "severity": "high",
        "region": "global",
        "status": "success",
        "urls": [format!("https://aepiot.com/backlink.html?title=dev-{i}")],
        "event_time": "2026-12-07T10:00:00.000Z",
        "processed_at": "2026-12-07T10:00:00.001Z",
    }))
    .unwrap()
}

#[test]
fn webhook_dead_letters_are_delivered_once_when_the_receiver_accepts() {
    let out = unique("dlr-hook-out");
    let dlq = unique("dlr-hook-dlq");
    create_topics(&[(&out, 2), (&dlq, 1)]);
    let records: Vec<_> = (0..3)
        .map(|i| (Some(format!("k{i}").into_bytes()), Some(url_record(i))))
        .collect();
    produce(&out, &records);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receiver = Arc::new(Receiver {
        status: AtomicU16::new(400),
        refuse: Mutex::new(None),
        got: Mutex::new(Vec::new()),
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(handle))
        .with_state(receiver.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let secret = standard_webhooks::secret(27);
    let secret_file = std::env::temp_dir().join(unique("dlr-secret"));
    std::fs::write(&secret_file, &secret).unwrap();
    let endpoint = WebhookEndpointConfig {
        name: None,
        url: format!("http://{addr}/hook"),
        regions: Vec::new(),
        secret_env: None,
        secret_file: Some(secret_file.display().to_string()),
    };
    let config = Config {
        brokers: brokers().to_string(),
        output_topic: out.clone(),
        group_id: unique("dlr-hook-group"),
        metrics_addr: String::new(),
        webhooks: WebhooksConfig {
            endpoints: vec![endpoint.clone()],
            group_id: unique("dlr-hook-webhooks"),
            dead_letter_topic: dlq.clone(),
            ..WebhooksConfig::default()
        },
        ..Config::default()
    };
    let stop = CancellationToken::new();
    let service = rt.spawn(webhook::run(
        config,
        stop.clone(),
        WebhookHooks {
            metrics: Some(Metrics::new()),
            no_metrics_server: true,
        },
    ));
    wait_until("three webhook dead letters", WAIT, || {
        end_offsets(&dlq)[&0] == 3
    });
    stop.cancel();
    rt.block_on(service).unwrap().unwrap();
    let originals = receiver.got();
    assert_eq!(originals.len(), 3, "400 is refused at once, not retried");
    let mut ids: Vec<String> = originals
        .iter()
        .map(|r| header_of(r, "webhook-id").to_string())
        .collect();
    ids.sort();

    let config_file = std::env::temp_dir().join(unique("dlr-config"));
    std::fs::write(
        &config_file,
        format!(
            "brokers = {:?}\n[[webhooks.endpoints]]\nurl = {:?}\nsecret_file = {:?}\n",
            brokers(),
            endpoint.url,
            endpoint.secret_file.as_deref().unwrap()
        ),
    )
    .unwrap();
    let config_arg = config_file.display().to_string();
    let on = ["--config", config_arg.as_str(), "--topic", dlq.as_str()];

    let stats = stdout(&dead_letters(&[&["stats"], &on[..]].concat()));
    assert!(stats.contains("dead letters: 3\n"), "{stats}");
    assert!(stats.contains("kind webhook: 3\n"), "{stats}");
    assert!(
        stats.contains(&format!("endpoint 0 http://{addr}: 3\n")),
        "{stats}"
    );

    let replay = [&["replay"], &on[..]].concat();
    let refused = dead_letters(&replay);
    assert!(!refused.status.success(), "a refused replay is a failure");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("replay stopped at dead letter"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
    assert_eq!(receiver.got().len(), 4, "it stops at the first refusal");

    let dry = dead_letters(&[&replay[..], &["--dry-run"]].concat());
    assert!(dry.status.success());
    assert_eq!(
        lines_with(&stdout(&dry), "would replay "),
        3,
        "{}",
        stdout(&dry)
    );
    assert_eq!(receiver.got().len(), 4, "--dry-run sends nothing");

    // In the topic's order: the second dead letter's webhook-id.
    let second_id = stdout(&dry)
        .lines()
        .filter_map(|l| l.split("webhook-id ").nth(1))
        .nth(1)
        .unwrap()
        .to_string();
    receiver.status.store(200, Ordering::SeqCst);
    *receiver.refuse.lock().unwrap() = Some(second_id);
    let partial = dead_letters(&replay);
    assert!(!partial.status.success());
    let err = String::from_utf8_lossy(&partial.stderr);
    assert!(err.contains(&format!("{dlq}-0-1 (webhook)")), "{err}");
    assert!(
        err.contains("The 1 dead letter(s) before it are done"),
        "{err}"
    );
    assert_eq!(
        receiver.got().len(),
        6,
        "the first is delivered, the second refused"
    );

    *receiver.refuse.lock().unwrap() = None;
    let rest = dead_letters(&replay);
    assert!(rest.status.success());
    assert_eq!(
        lines_with(&stdout(&rest), "replayed "),
        2,
        "it resumes at the refused one: {}",
        stdout(&rest)
    );
    let replayed = receiver.accepted();
    let mut replayed_ids: Vec<String> = replayed
        .iter()
        .map(|r| header_of(r, "webhook-id").to_string())
        .collect();
    replayed_ids.sort();
    assert_eq!(
        replayed_ids, ids,
        "each dead letter once, with its original webhook-id"
    );
    for r in &replayed {
        assert_eq!(header_of(r, "x-aepiot-attempt"), "2");
        let original = originals
            .iter()
            .find(|o| header_of(o, "webhook-id") == header_of(r, "webhook-id"))
            .unwrap();
        assert_eq!(
            r.body, original.body,
            "the same body as the original delivery"
        );
    }
    for verdict in standard_webhooks::verify(&secret, &replayed) {
        verdict.expect("a valid Standard Webhooks signature");
    }

    let again = dead_letters(&replay);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("replayed: 0,"),
        "{}",
        stdout(&again)
    );
    assert_eq!(receiver.got().len(), 8, "a second run delivers nothing");
    let _ = std::fs::remove_file(secret_file);
    let _ = std::fs::remove_file(config_file);
}

/// A URL record the broker refuses after it was sent (the output topic's limit lowered while the
/// pipeline runs) is dead-lettered with the URL record, marked so; the replay produces the event,
/// read at its source offset, with its key and headers.
#[test]
fn a_dead_letter_carrying_the_refused_url_record_is_replayed_from_its_source() {
    let t = topics("dlr-refused", 1);
    produce(
        &t.input,
        &[(
            Some(b"dev-first".to_vec()),
            Some(br#"{"device_id":"dev-first","event_type":"alarm"}"#.to_vec()),
        )],
    );
    let running = start(config(&t, false));
    wait_until("the first URL record", WAIT, || {
        end_offsets(&t.output).values().sum::<i64>() == 1
    });
    // Below a URL record's size, compressed and batched, after the pipeline read the limit at
    // its start.
    set_max_message_bytes(&t.output, 100);
    let event = br#"{"device_id":"dev-refused","event_type":"alarm"}"#.to_vec();
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    send_waiting(
        &p,
        BaseRecord::to(&t.input)
            .key(&b"dev-refused"[..])
            .payload(&event[..])
            .headers(OwnedHeaders::new().insert(Header {
                key: "trace",
                value: Some("t-r"),
            })),
    );
    p.flush(Duration::from_secs(30)).unwrap();
    wait_until("the refused record's dead letter", WAIT, || {
        end_offsets(&t.dlq)[&0] == 1
    });
    wait_until("the group to commit", WAIT, || {
        all_committed(&t.group, &t.input)
    });
    running.shutdown();
    let dl = consume_all(&t.dlq, WAIT).remove(0);
    assert_eq!(
        json(&dl)["error"]["kind"],
        "output_too_large",
        "{}",
        json(&dl)
    );
    assert_eq!(
        header(&dl, "aepiot.dead_letter.payload"),
        Some("url_record")
    );
    assert_eq!(dl.key(), None);

    let out = dead_letters(&[
        "replay",
        "--brokers",
        brokers(),
        "--topic",
        &t.dlq,
        "--kind",
        "output_too_large",
    ]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("(read from its source)"),
        "{}",
        stdout(&out)
    );
    let replayed = consume_all(&t.input, WAIT).remove(2);
    assert_eq!(replayed.payload(), Some(&event[..]));
    assert_eq!(replayed.key(), Some(&b"dev-refused"[..]));
    assert_eq!(header(&replayed, "trace"), Some("t-r"));
    assert_eq!(
        header(&replayed, "aepiot.replayed_from"),
        Some(format!("{}-0-0", t.dlq).as_str())
    );
}
