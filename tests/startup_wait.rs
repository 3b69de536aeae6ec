//! Start-up says what it waits for: against a broker without its input topic (and against an
//! address where no broker answers), `run` logs at the first failed check what is missing and for
//! how long it will retry, then its progress every few seconds, then exits with the error.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs `run` with `args` and a start-up timeout of `timeout_ms`; returns its stderr lines, each
/// with when it arrived, and whether it exited 0.
fn run_until_exit(args: &[&str], timeout_ms: u64) -> (Vec<(Duration, String)>, bool) {
    let start = Instant::now();
    let mut child = Command::new(bin())
        .arg("run")
        .args(args)
        .args(["--metrics-addr", ""])
        .env("AEPIOT_STARTUP_TIMEOUT_MS", timeout_ms.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<(Duration, String)> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(|l| (start.elapsed(), l.unwrap()))
        .collect();
    let ok = child.wait().unwrap().success();
    (lines, ok)
}

fn first<'a>(lines: &'a [(Duration, String)], needle: &str) -> Option<&'a (Duration, String)> {
    lines.iter().find(|(_, l)| l.contains(needle))
}

fn dump(lines: &[(Duration, String)]) -> String {
    lines
        .iter()
        .map(|(t, l)| format!("{:>6.2}s {l}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_missing_input_topic_is_named_at_once_then_progress_follows() {
    let topic = unique("no-such-input");
    let (lines, ok) = run_until_exit(
        &[
            "--brokers",
            brokers(),
            "--input-topics",
            &topic,
            "--output-topic",
            &unique("out"),
            "--dead-letter-topic",
            &unique("dlq"),
            "--group-id",
            &unique("g"),
        ],
        8000,
    );
    let all = dump(&lines);
    assert!(!ok, "must exit non-zero:\n{all}");
    let (at, line) = first(
        &lines,
        &format!("waiting for input topic \"{topic}\" to exist; retrying for "),
    )
    .unwrap_or_else(|| panic!("no waiting line:\n{all}"));
    assert!(
        *at < Duration::from_secs(4),
        "the first line came late:\n{all}"
    );
    assert!(
        line.contains("retrying for 8 s") || line.contains("retrying for 7 s"),
        "{line}"
    );
    let (progress_at, _) = first(
        &lines,
        &format!("still waiting for input topic \"{topic}\""),
    )
    .unwrap_or_else(|| panic!("no progress line:\n{all}"));
    assert!(progress_at > at, "{all}");
    let (end_at, _) =
        first(&lines, "does not exist").unwrap_or_else(|| panic!("no final error:\n{all}"));
    assert!(*end_at >= Duration::from_secs(7), "{all}");
}

#[test]
fn an_unreachable_broker_is_named_at_once_then_progress_follows() {
    // A port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let (lines, ok) = run_until_exit(&["--brokers", &brokers, "--group-id", &unique("g")], 8000);
    let all = dump(&lines);
    assert!(!ok, "must exit non-zero:\n{all}");
    let (at, _) = first(
        &lines,
        &format!("waiting for the Kafka brokers at {brokers} to answer; retrying for "),
    )
    .unwrap_or_else(|| panic!("no waiting line:\n{all}"));
    assert!(*at < Duration::from_secs(7), "{all}");
    first(
        &lines,
        &format!("still waiting for the Kafka brokers at {brokers}"),
    )
    .unwrap_or_else(|| panic!("no progress line:\n{all}"));
    first(&lines, "cannot reach the Kafka brokers")
        .unwrap_or_else(|| panic!("no final error:\n{all}"));
}
