//! The processes of a scenario: `aepiot-stream run` instances and `aepiot-stream simulate`
//! producers, each killed when dropped.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Mode, Settings};
use crate::common::*;

pub struct Instance {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Instance {
    pub fn spawn(dir: &Path, name: &str, t: &Topics, mode: Mode, settings: Settings) -> Instance {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args(["run", "--brokers", brokers(), "--input-topics", &t.input])
            .args(["--output-topic", &t.output, "--dead-letter-topic", &t.dlq])
            .args(["--group-id", &t.group, "--metrics-addr", ""])
            .args(settings.emit_suppressed().then_some("--emit-suppressed"))
            .env("AEPIOT_PROCESSING_GUARANTEE", mode.as_str())
            .env("AEPIOT_LOG_FORMAT", "json")
            .env("AEPIOT_PROGRESS_INTERVAL_SECS", "5")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn aepiot-stream run");
        super::register_child(child.id());
        Instance {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// Every thread's stack of a running instance (gdb, where installed), written beside its log:
    /// what a stalled instance waits on. The path, or why there is none.
    pub fn dump_stacks(&self) -> String {
        let Some(child) = &self.child else {
            return "not running".into();
        };
        let out = self.log.with_extension("stacks.txt");
        let dumped = Command::new("gdb")
            .args(["-batch", "-p", &child.id().to_string()])
            .args(["-ex", "thread apply all bt"])
            .stdin(Stdio::null())
            .output();
        match dumped {
            Ok(o) => {
                let _ = std::fs::write(&out, [o.stdout, o.stderr].concat());
                out.display().to_string()
            }
            Err(e) => format!("no stacks (gdb: {e})"),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the processor's own warnings and errors (librdkafka's connection
    /// chatter left out) and any plain-text line (the exit message).
    pub fn log_digest(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) => {
                    matches!(v["level"].as_str(), Some("WARN" | "ERROR"))
                        && v["target"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("aepiot_stream"))
                }
                Err(_) => true,
            })
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The processor's first error (the cause; later ones are consequences), else its exit
    /// message.
    pub fn first_error(&self) -> String {
        let text = self.log_text();
        let logged = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["level"] == "ERROR"
                    && v["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("aepiot_stream"))
            })
            .map(|v| {
                format!(
                    "{}: {}",
                    v["fields"]["message"].as_str().unwrap_or(""),
                    v["fields"]["error"].as_str().unwrap_or("")
                )
            });
        logged
            .or_else(|| {
                text.lines()
                    .rev()
                    .find(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }

    /// Input partitions this instance has a worker for now, from its log.
    pub fn assigned(&self) -> BTreeSet<i32> {
        let mut owned = BTreeSet::new();
        for line in self.log_text().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let f = &v["fields"];
            let Some(p) = f["partition"].as_i64() else {
                continue;
            };
            match f["message"].as_str() {
                Some("partition worker started") => {
                    owned.insert(p as i32);
                }
                Some("partition worker stopped") => {
                    owned.remove(&(p as i32));
                }
                _ => {}
            }
        }
        owned
    }

    /// The exit status if the process exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    pub fn send(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {}", self.name);
    }

    /// Waits (at most `timeout`) for the exit after a SIGTERM.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "instance {} did not exit within {timeout:?} of SIGTERM (hang); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_digest(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sigkill(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM and wait for the exit (at most `timeout`).
    pub fn sigterm(&mut self, timeout: Duration) -> ExitStatus {
        self.send("-TERM");
        self.wait_exit(timeout)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `aepiot-stream simulate`'s JSON report.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimReport {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub invalid_sent: u64,
}

pub struct Simulator {
    pub child: Option<Child>,
    pub what: String,
}

impl Simulator {
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        dir: &Path,
        what: &str,
        topic: &str,
        profile: &str,
        devices: u64,
        count: u64,
        rate: u64,
        seed: u64,
    ) -> Simulator {
        let log = std::fs::File::create(dir.join(format!("simulate-{what}.log"))).unwrap();
        let child = Command::new(bin())
            .args(["simulate", "--brokers", brokers(), "--topic", topic])
            .args(["--profile", profile, "--devices", &devices.to_string()])
            .args(["--count", &count.to_string(), "--rate", &rate.to_string()])
            .args(["--seed", &seed.to_string(), "--invalid-ratio", "0.01"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn aepiot-stream simulate");
        super::register_child(child.id());
        Simulator {
            child: Some(child),
            what: what.to_string(),
        }
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn wait(&mut self, timeout: Duration) -> SimReport {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = c.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "simulate {} did not finish in {timeout:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(
            status.success(),
            "simulate {} failed: {status}\n{out}",
            self.what
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("simulate report");
        let n = |k: &str| v[k].as_u64().unwrap();
        SimReport {
            sent: n("sent"),
            acked: n("acked"),
            failed: n("failed"),
            invalid_sent: n("invalid_sent"),
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
