//! The status page in a real browser: a processor runs in this process on the real broker, with
//! traffic (valid events, dead letters, and events whose `device_id` and `event_type` are HTML),
//! and headless Chromium loads `/` from its metrics address. Required: no console error (script
//! errors, failed loads, Content-Security-Policy violations), the processed count it shows equals
//! `/metrics`, recent device ids appear, and the hostile values are shown as text and add no
//! element. A screenshot of the whole page is written for a person to look at
//! (`<target>/tmp/status-page.png`; its path is printed with `--nocapture`).

mod browser;
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aepiot_stream::generate::{Generator, Profile};
use browser::Browser;
use common::*;
use serde_json::{json, Value};

const HOSTILE_DEVICE: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_TYPE: &str = "<script>alert(2)</script><b>bold</b>";

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path)
}

/// The sum of `aepiot_events_total` over its outcomes, from `/metrics`.
fn processed_from_metrics(addr: SocketAddr) -> u64 {
    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with("aepiot_events_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

fn event(device: &str, event_type: &str, region: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let v = json!({"device_id": device, "event_type": event_type, "severity": "high",
        "region": region, "location": "Hall 3", "value": 81.5});
    (
        Some(device.as_bytes().to_vec()),
        Some(serde_json::to_vec(&v).unwrap()),
    )
}

/// About `secs` seconds of generated traffic at a varying rate (so the chart has a shape), with
/// some invalid records.
fn traffic(topic: &str, secs: u64) {
    let mut g = Generator::new(Profile::Factory, 300, 7, 0.03);
    let start = Instant::now();
    let mut batch = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let t = start.elapsed().as_secs_f64();
        let per_tick = (20.0 + 15.0 * (t / 2.0).sin()) as usize;
        for _ in 0..per_tick {
            let r = g.next(aepiot_stream::kafka::clock::now_ms());
            batch.push((Some(r.key.into_bytes()), Some(r.payload)));
        }
        produce(topic, &batch);
        batch.clear();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_status_page_in_a_real_browser() {
    let t = topics("page", 3);
    let (running, addr) = start_with_page(config(&t, false));

    traffic(&t.input, 12);
    // Caught up first: the recent-records sampler keeps at most 20 records per partition per
    // 100 ms, so a worker still working off a backlog could skip the records below.
    wait_until(
        "background traffic committed",
        Duration::from_secs(60),
        || all_committed(&t.group, &t.input),
    );
    // The newest records: named devices, and hostile HTML as a device id and an event type.
    let named = ["press-7", "oven-12", "robot-arm-3", "conveyor-9"];
    let mut last: Vec<_> = named
        .iter()
        .map(|d| event(d, "temperature_alert", "europe"))
        .collect();
    last.push(event(HOSTILE_DEVICE, HOSTILE_TYPE, "north_america"));
    last.push((Some(b"broken".to_vec()), Some(b"{not json".to_vec())));
    produce(&t.input, &last);
    wait_until("input committed", Duration::from_secs(60), || {
        all_committed(&t.group, &t.input)
    });
    let processed = processed_from_metrics(addr);
    let produced: i64 = end_offsets(&t.input).values().sum();
    assert_eq!(processed, produced as u64);

    // The API the page reads: the same figures.
    let (status, body) = get(addr, "/api/status");
    assert_eq!(status, 200);
    let api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["processed"], processed);
    assert!(
        api["partitions"].as_array().unwrap().len() == 3,
        "{}",
        api["partitions"]
    );
    let recent = api["recent"]["records"].as_array().unwrap();
    assert!(
        recent.iter().any(|r| r["device_id"] == HOSTILE_DEVICE),
        "{}",
        api["recent"]
    );

    let b = Browser::start(1280, 1750);
    b.goto(&format!("http://{addr}/"));
    b.wait_for(
        "the page shows the processed count of /metrics",
        Duration::from_secs(15),
        &format!(
            "return document.getElementById('processed').textContent.replace(/,/g, '') === '{processed}'"
        ),
        "return document.getElementById('processed').textContent",
    );
    b.wait_for(
        "recent device ids appear",
        Duration::from_secs(10),
        &format!(
            "var ids = Array.from(document.querySelectorAll('#recent td.device-id')).map(function (e) {{ return e.textContent; }}); \
             return {} .every(function (d) {{ return ids.indexOf(d) >= 0; }})",
            serde_json::to_string(&named).unwrap()
        ),
        "return document.getElementById('recent').textContent",
    );

    // The hostile values are text: no element was made from them, no script ran.
    let check = b.eval(&format!(
        "var cells = Array.from(document.querySelectorAll('#recent td')); \
         var dev = cells.filter(function (c) {{ return c.textContent === {dev}; }}); \
         var typ = cells.filter(function (c) {{ return c.textContent === {typ}; }}); \
         return {{ img: document.getElementsByTagName('img').length, \
                  b: document.getElementsByTagName('b').length, \
                  scripts: document.getElementsByTagName('script').length, \
                  dev: dev.length, devChildren: dev.length ? dev[0].children.length : -1, \
                  typ: typ.length, typChildren: typ.length ? typ[0].children.length : -1 }}",
        dev = serde_json::to_string(HOSTILE_DEVICE).unwrap(),
        typ = serde_json::to_string(HOSTILE_TYPE).unwrap(),
    ));
    assert_eq!(
        check,
        json!({"img": 0, "b": 0, "scripts": 1, "dev": 1, "devChildren": 0, "typ": 1, "typChildren": 0}),
        "hostile input must show as text"
    );
    // Other figures the page shows, against the API.
    let shown = b.eval(
        "return { dead: document.getElementById('dead').textContent, \
                  parts: document.querySelectorAll('#partitions tr').length, \
                  urls: document.getElementById('urls').textContent.replace(/,/g, '') }",
    );
    assert_eq!(shown["parts"], 3);
    assert_eq!(
        shown["urls"].as_str().unwrap(),
        api["urls_generated"].to_string()
    );
    assert!(shown["dead"].as_str().unwrap().contains("invalid_json"));

    // A device's state, looked up from the page.
    b.eval(
        "document.getElementById('device-id').value = 'press-7'; \
         document.getElementById('lookup').click(); return true",
    );
    b.wait_for(
        "the device lookup answers",
        Duration::from_secs(10),
        "return document.getElementById('device-result').textContent.indexOf('\"rate_limit\"') >= 0",
        "return document.getElementById('device-result').textContent",
    );
    // Let the chart draw a few more points of the quiet period, then take the picture of the
    // whole page.
    std::thread::sleep(Duration::from_secs(2));
    b.fit_to_page();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    b.screenshot(&shot);
    eprintln!("status page screenshot: {}", shot.display());
    let errors = b.console_errors();
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    drop(b);
    running.shutdown();
}

#[test]
fn the_page_is_self_contained_and_locked_down() {
    let t = topics("page-csp", 1);
    let (running, addr) = start_with_page(config(&t, false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(reqwest::get(format!("http://{addr}/")))
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = rt.block_on(r.text()).unwrap();
    // Nothing is loaded from anywhere else, and no data is written as HTML.
    for banned in [
        "http://",
        "https://",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
    ] {
        assert!(!html.contains(banned), "the page contains {banned:?}");
    }
    let (status, body) = get(addr, "/api/status");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["info"]["group_id"], t.group.as_str());
    // Other methods are refused on the new paths too.
    let post = rt
        .block_on(
            reqwest::Client::new()
                .post(format!("http://{addr}/api/status"))
                .send(),
        )
        .unwrap();
    assert_eq!(post.status(), 405);
    running.shutdown();
}
