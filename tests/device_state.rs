//! A device's state on request, on the real broker: `GET /api/devices/{device_id}` answered by the
//! partition worker that holds the device (10 URL sets, then a `rate_limited` event: 10 used, and
//! the next allowed one window after the first), 404 with a clear message elsewhere, and
//! `aepiot-stream inspect device` reading the same state from the changelog after the processor
//! stopped.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use aepiot_stream::core::time::format_rfc3339_ms;
use common::*;
use serde_json::{json, Value};

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path);
    (status, serde_json::from_str(&body).unwrap())
}

fn ev(device: &str, event_type: &str, ms: i64) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let v = json!({"device_id": device, "event_type": event_type, "timestamp": ms});
    (
        Some(device.as_bytes().to_vec()),
        Some(serde_json::to_vec(&v).unwrap()),
    )
}

/// The state without where it was read from (the changelog's copy is as of the last batch in
/// which the device got a URL set, so its clock may be earlier than the live one).
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("source");
    o.remove("device_clock");
    v
}

#[test]
fn a_rate_limited_device_reports_its_window_live_and_from_the_changelog() {
    let t = topics("device", 3);
    let (running, addr) = start_with_page(config(&t, true));
    let t0 = aepiot_stream::kafka::clock::now_ms() - 600_000;
    // 10 URL sets (distinct event types, so none is cached), then one more: rate_limited.
    let mut records: Vec<_> = (0..10)
        .map(|i| ev("lim-1", &format!("type-{i}"), t0 + i * 1000))
        .collect();
    records.push(ev("lim-1", "type-x", t0 + 20_000));
    // And a device with one set and a cache hit.
    records.push(ev("dup-1", "temp", t0));
    records.push(ev("dup-1", "temp", t0 + 5000));
    produce(&t.input, &records);
    wait_until("input committed", Duration::from_secs(60), || {
        all_committed(&t.group, &t.input)
    });
    assert_eq!(running.metrics.events_of("rate_limited"), 1);
    assert_eq!(running.metrics.events_of("cached"), 1);
    // The partition the device's records went to, from its URL records.
    let outputs = consume(&t.output, records.len(), Duration::from_secs(30));
    let partition_of = |d: &str| {
        outputs
            .iter()
            .map(json)
            .find(|v| v["device_id"] == d)
            .unwrap()["source"]["partition"]
            .clone()
    };

    let (status, live) = get_json(addr, "/api/devices/lim-1");
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["device_id"], "lim-1");
    assert_eq!(live["topic"], t.input.as_str());
    assert_eq!(live["partition"], partition_of("lim-1"));
    assert_eq!(live["source"], "instance");
    assert_eq!(live["device_clock"], format_rfc3339_ms(t0 + 20_000));
    let rl = &live["rate_limit"];
    assert_eq!(rl["used"], 10, "{live}");
    assert_eq!(rl["limit"], 10);
    assert_eq!(rl["rate_limited"], true);
    assert_eq!(rl["next_allowed_at"], format_rfc3339_ms(t0 + 3_600_000));
    assert_eq!(rl["successes"].as_array().unwrap().len(), 10);
    assert_eq!(live["dedupe"]["entries"].as_array().unwrap().len(), 10);

    let (status, dup) = get_json(addr, "/api/devices/dup-1");
    assert_eq!(status, 200, "{dup}");
    assert_eq!(dup["rate_limit"]["used"], 1);
    assert_eq!(dup["rate_limit"]["rate_limited"], false);
    assert_eq!(dup["rate_limit"]["next_allowed_at"], Value::Null);
    let entries = dup["dedupe"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["cached_at"], format_rfc3339_ms(t0));
    assert_eq!(entries[0]["expires_at"], format_rfc3339_ms(t0 + 300_000));

    // A device no partition of this instance holds: 404, saying so.
    let (status, missing) = get_json(addr, "/api/devices/nobody%2Fhere");
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["device_id"], "nobody/here");
    let error = missing["error"].as_str().unwrap();
    assert!(error.contains("not held by this instance"), "{error}");
    assert!(error.contains(&t.group), "{error}");
    assert_eq!(missing["partitions"].as_array().unwrap().len(), 3);

    running.shutdown();

    // Without a running instance: the same state from the changelog.
    let out = Command::new(bin())
        .args(["inspect", "device", "lim-1", "--brokers", brokers()])
        .args(["--group-id", &t.group, "--input-topic", &t.input])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspect failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stored["source"], "changelog");
    assert_eq!(comparable(&stored), comparable(&live));
    // The changelog has the state as of the end of the last batch in which the device got a URL
    // set: its clock is at most the live one.
    assert!(stored["device_clock"].as_str() <= live["device_clock"].as_str());

    let out = Command::new(bin())
        .args(["inspect", "device", "nobody", "--brokers", brokers()])
        .args(["--group-id", &t.group, "--input-topic", &t.input])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no state for device \"nobody\""),
        "{stderr}"
    );
}
