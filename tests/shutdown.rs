//! SIGTERM while the cluster does not answer (issue 12 item 8, and the hang seen after broker
//! outages): librdkafka's synchronous commit waits for the group coordinator without a deadline,
//! so an instance stopped while its broker is frozen never exited. It must exit within
//! `drain_timeout_ms` + 15 s, with a non-zero status and a message naming the cause. A second
//! signal during that shutdown stops it at once, with a message saying what was given up.
//!
//! On a broker of its own (`scripts/kafka.sh`, port 19704), frozen with SIGSTOP: the project's
//! shared test broker cannot be.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::bin;

const PORT: &str = "19704";
const DATA_DIR: &str = "/tmp/aepiot-kafka-shutdown";
// Not 19699: the broker's controller listens on its port + 1.
const METRICS: &str = "127.0.0.1:19711";

fn kafka_sh(args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
        .args(args)
        .env("KAFKA_PORT", PORT)
        .env("KAFKA_DATA_DIR", DATA_DIR)
        .output()
        .expect("run scripts/kafka.sh");
    assert!(
        out.status.success(),
        "scripts/kafka.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn broker_pid() -> String {
    std::fs::read_to_string(PathBuf::from(DATA_DIR).join("kafka.pid"))
        .expect("broker pid file")
        .trim()
        .to_string()
}

fn signal(sig: &str, pid: &str) {
    assert!(Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success());
}

/// Thaws and stops the broker however the test ends.
struct Broker;

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &broker_pid()]).status();
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
            .arg("stop")
            .env("KAFKA_PORT", PORT)
            .env("KAFKA_DATA_DIR", DATA_DIR)
            .output();
    }
}

/// Events counted by the instance's `/metrics`; 0 while it is not serving yet.
fn processed() -> u64 {
    let Ok(mut c) = std::net::TcpStream::connect(METRICS) else {
        return 0;
    };
    let mut body = String::new();
    if c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
        || c.read_to_string(&mut body).is_err()
    {
        return 0;
    }
    body.lines()
        .filter(|l| l.starts_with("aepiot_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The tests of this file share the broker (its port is fixed): one at a time.
static BROKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An instance of `run` on the broker (started here), with 2,000 events processed and not yet
/// committed; its log file in `dir`.
fn processing_instance(dir: &Path, name: &str, drain_timeout_ms: u64) -> std::process::Child {
    kafka_sh(&["start"]);
    let bootstrap = String::from_utf8(kafka_sh(&["bootstrap"]).stdout).unwrap();
    let bootstrap = bootstrap.trim();
    // Fresh names: the broker's data dir outlives a run.
    let id = format!("{name}-{}", std::process::id());
    let (input, output, dlq) = (format!("{id}-in"), format!("{id}-out"), format!("{id}-dlq"));
    for (topic, partitions) in [(&input, "3"), (&output, "3"), (&dlq, "1")] {
        kafka_sh(&["create-topic", topic, partitions]);
    }
    let sim = Command::new(bin())
        .args(["simulate", "--brokers", bootstrap, "--topic", &input])
        .args([
            "--devices",
            "200",
            "--rate",
            "2000",
            "--count",
            "2000",
            "--seed",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );

    // Offsets are committed only at the stop (the auto-commit interval is ten minutes), so the
    // stop has a commit to make while the broker is frozen.
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{bootstrap}\"\ninput_topics = [\"{input}\"]\noutput_topic = \"{output}\"\n\
             dead_letter_topic = \"{dlq}\"\ngroup_id = \"{id}-group\"\nmetrics_addr = \"{METRICS}\"\n\
             drain_timeout_ms = {drain_timeout_ms}\n\n[kafka]\n\"auto.commit.interval.ms\" = \"600000\"\n"
        ),
    )
    .unwrap();
    let log = dir.join("run.log");
    let mut run = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed() < 2000 {
        if Instant::now() > deadline || run.try_wait().unwrap().is_some() {
            let _ = run.kill();
            panic!(
                "the input was not processed:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    run
}

/// Waits up to `bound` for `run` to exit; kills it and fails if it does not.
fn exits_within(run: &mut std::process::Child, bound: Duration, what: &str) {
    let since = Instant::now();
    while run.try_wait().unwrap().is_none() && since.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(100));
    }
    if run.try_wait().unwrap().is_none() {
        let _ = run.kill();
        panic!("run did not exit within {bound:?} of {what}");
    }
}

#[test]
fn sigterm_with_the_broker_frozen_exits_and_names_the_cause() {
    let _one = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let _broker = Broker;
    let dir = tempfile::tempdir().unwrap();
    let mut run = processing_instance(dir.path(), "sd", 1000);

    signal("-STOP", &broker_pid());
    signal("-TERM", &run.id().to_string());
    // The bound is 16 s here; a minute tells "exits" from "hangs" without timing anything.
    exits_within(
        &mut run,
        Duration::from_secs(60),
        "SIGTERM with the broker frozen",
    );
    let status = run.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(!status.success(), "exit 0 without a commit:\n{log}");
    assert!(
        log.contains("the shutdown did not finish within 16.0 s")
            && log.contains("group coordinator unavailable"),
        "the exit message does not name the cause:\n{log}"
    );
}

/// A second SIGTERM (or SIGINT) during the drain stops at once: the operator does not wait out
/// `drain_timeout_ms` + 15 s, and the exit message says what was given up.
#[test]
fn a_second_signal_during_the_drain_exits_at_once_and_says_so() {
    let _one = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let _broker = Broker;
    let dir = tempfile::tempdir().unwrap();
    // With the broker frozen, the first signal's shutdown would take 120 s + 15 s.
    let mut run = processing_instance(dir.path(), "sd2", 120_000);
    let log = dir.path().join("run.log");

    signal("-STOP", &broker_pid());
    signal("-TERM", &run.id().to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("shutting down: draining partitions")
    {
        assert!(
            Instant::now() < deadline && run.try_wait().unwrap().is_none(),
            "the first SIGTERM did not start the drain:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        run.try_wait().unwrap().is_none(),
        "exited before the second signal"
    );
    signal("-INT", &run.id().to_string());
    // Well inside the first signal's 135 s: this tells "at once" from "after the drain".
    exits_within(&mut run, Duration::from_secs(60), "the second signal");
    let status = run.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "exit 0 without a commit:\n{log}");
    assert!(
        log.contains("error: stopped: a second signal during the shutdown")
            && log.contains("will be processed again"),
        "the exit message does not name the cause:\n{log}"
    );
    assert!(
        !log.contains("the shutdown did not finish"),
        "the drain ran out instead:\n{log}"
    );
}
