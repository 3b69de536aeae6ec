//! Fault injection on a real broker (issue 7, item 3), for both processing guarantees:
//!
//! - (a) SIGKILL one of three instances mid-stream;
//! - (b) kill -9 the broker and restart it mid-stream;
//! - (c) a rolling restart of all three instances (SIGTERM one, start a replacement, wait until it
//!   owns partitions, next).
//!
//! Each scenario runs three `aepiot-stream run` processes (the real binary) in one consumer group
//! on a 6-partition input topic, while two `aepiot-stream simulate` processes produce to it,
//! rate-limited, so the fault lands mid-stream: a factory fleet (bursts) and a few hot city sensors
//! that send hundreds of events each (the rate limit bites hard and is checked across partition
//! moves). About 1% of the input is invalid (dead letters). After the fault the test waits until
//! the group has committed every input offset, stops the instances with SIGTERM, and checks,
//! reading outputs and dead letters with `isolation.level=read_committed`.
//!
//! The instances run with the default settings (state changelog on, `emit_suppressed` off: only
//! `success` records are written), and what a user would lose is counted: the input is judged
//! again by the offline engine (the `process` path, each partition in offset order, default
//! settings), and every input it judges `success` must have a `success` record after the faults
//! (**0 lost successes**). A replayed event that comes out `cached` or `rate_limited` because the
//! restored state already held it is a lost URL, though the broker holds a record for its offset.
//! The `*_emit_suppressed` variants (opt-in) run with `--emit-suppressed` instead, so that every
//! valid input yields one output record, and also check that every input offset is in outputs ∪
//! dead letters. In both:
//!
//! - 0 lost successes; invalid inputs are exactly the dead letters;
//! - no `success` where the offline engine judges otherwise (state carried over exactly), except
//!   after crashes under at-least-once, where it is counted and printed (the rate-limit checks
//!   below still hold);
//! - under exactly-once no offset appears twice; under at-least-once duplicates are counted and
//!   printed (and must be 0 after the clean stops of a rolling restart, as the README promises);
//! - the group's committed offsets equal the input end offsets;
//! - no device has more than 10 `success` records in any sliding hour of `event_time` (each input
//!   offset counted once, so at-least-once duplicates are one event), and every hot sensor has
//!   exactly 10.
//!
//! `scripts/test.sh` (CI) runs the rolling restart in both guarantees (`rolling_restart_*`, not
//! ignored: `cargo test` runs them); the other scenarios, which kill instances or the broker, and
//! the long and emit-suppressed versions, are `#[ignore]`d: `scripts/faults.sh` runs them.
//!
//! The suite runs on a broker of its own (`scripts/kafka.sh` with `KAFKA_PORT=19192`,
//! `KAFKA_DATA_DIR=/tmp/aepiot-kafka-faults`, a fresh cluster per run; `FAULTS_KAFKA_PORT` and
//! `FAULTS_KAFKA_DATA_DIR` change them), never the shared one: scenario (b) kills it. Broker
//! settings that make recovery fast enough for a test run (see `broker_props`): consumer-group
//! (KIP-848) heartbeat 1 s, and where an instance or the broker is killed, session timeout 6 s
//! (the defaults, 45 s and 5 s, would make the takeover after a SIGKILL take ~45 s) and KRaft
//! broker session 3 s; timed-out transactions aborted every second. The first scenario of a test
//! process chooses them (CI's rolling restarts keep the default sessions). The scenarios
//! run one at a time (they share the broker and kill it), and a second run of the suite on the
//! machine (another `cargo test`) waits for the first (a lock, `/tmp/aepiot-faults-<port>.lock`).
//! A watchdog kills the processes a run started and stops its broker when the test process exits,
//! however it exits (`FAULTS_KEEP_BROKER=1` keeps the broker).
//!
//! Figures are printed with eprintln (run with `--nocapture`), one `FAULTS-RESULT {json}` line per
//! scenario; `scripts/faults.sh` runs the long versions and tabulates them. Instance logs are kept
//! under `target/tmp/faults/`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use aepiot_stream::core::time::parse_rfc3339_ms;
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;
const INSTANCES: usize = 3;
/// `limits.max_urls_per_device` and `limits.window_secs` (the defaults).
const MAX_PER_HOUR: usize = 10;
const HOUR_MS: i64 = 3_600_000;

// ------------------------------------------------------------------------------------ the broker

/// The suite's broker: its port, data directory and settings, chosen once per test process.
struct Site {
    port: u16,
    data_dir: String,
    props: String,
}

static SITE: OnceLock<Site> = OnceLock::new();

fn port() -> String {
    SITE.get().expect("suite() first").port.to_string()
}

fn data_dir() -> String {
    SITE.get().expect("suite() first").data_dir.clone()
}

/// The broker's settings for the scenarios of this test process, chosen by the first one's fault
/// (see the module documentation):
/// - killing an instance or the broker: consumer-group sessions of 6 s with 1 s heartbeats, so
///   that the survivors take a SIGKILLed member's partitions within seconds (the default session
///   is 45 s);
/// - killing the broker: also a KRaft broker session of 3 s instead of 9 s, since a restarted
///   broker waits for its old registration to expire (DUPLICATE_BROKER_REGISTRATION);
/// - a rolling restart (what CI runs): the broker's default group settings (45 s sessions, 5 s
///   heartbeats), as users run it. With the short sessions, on a machine at load 10-16 the broker
///   missed its own heartbeats and fenced itself, and instances lost their group membership
///   (commits failing with UnknownMemberId, partitions replayed). With 1 s heartbeats, librdkafka
///   times a heartbeat request out after 1 s (its timeout is the heartbeat interval), and once, after
///   a 3 s stall of the broker's group coordinator, the members whose heartbeats had timed out
///   never reconciled again: the replacement got no partition in 120 s (README, "Known problem").
fn broker_props(fault: Fault) -> String {
    let mut props = vec!["transaction.abort.timed.out.transaction.cleanup.interval.ms=1000"];
    if fault == Fault::RollingRestart {
        // The single KRaft node is its own controller: on a loaded 2-core machine its controller
        // events took 3-13 s and the broker fenced itself after its 9 s default session (every
        // client then saw AllBrokersDown). A rolling restart is about the group, not that.
        props.push("broker.session.timeout.ms=30000");
    } else {
        props.extend([
            "group.consumer.min.heartbeat.interval.ms=500",
            "group.consumer.heartbeat.interval.ms=1000",
            "group.consumer.min.session.timeout.ms=3000",
            "group.consumer.session.timeout.ms=6000",
        ]);
    }
    if fault == Fault::KillBroker {
        props.extend([
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
        ]);
    }
    props.join("\n")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

/// `scripts/kafka.sh`'s settings for the broker on `port` with data in `dir`.
fn kafka_env_for<'a>(c: &'a mut Command, port: u16, dir: &str, props: &str) -> &'a mut Command {
    c.env("KAFKA_PORT", port.to_string())
        .env("KAFKA_DATA_DIR", dir)
        .env("KAFKA_EXTRA_PROPS", props)
        .env_remove("KAFKA_CONTROLLER_PORT")
        .env_remove("KAFKA_HOST")
}

fn kafka_sh_command(cmd: &str) -> Command {
    let site = SITE.get().expect("suite() first");
    let mut c = Command::new("bash");
    c.arg(script()).arg(cmd);
    kafka_env_for(&mut c, site.port, &site.data_dir, &site.props);
    c
}

/// Runs `scripts/kafka.sh CMD` on the suite's broker; returns how long it took.
fn kafka_sh(cmd: &str) -> Duration {
    let t = Instant::now();
    let out = kafka_sh_command(cmd)
        .output()
        .expect("run scripts/kafka.sh");
    assert!(
        out.status.success(),
        "scripts/kafka.sh {cmd} (port {}) failed:\n{}\n{}",
        port(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// Pids of the processes this test run started (instances, simulators), for the watchdog.
fn children_file(dir: &str) -> PathBuf {
    Path::new(dir).join("test-children.pids")
}

fn register_child(pid: u32) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(children_file(&data_dir()))
    {
        let _ = writeln!(f, "{pid}");
    }
}

fn port_in_use(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Scenarios run one at a time: they share the broker, and (b) kills it. The first one starts a
/// fresh broker (with the settings its `fault` needs) and points the common helpers
/// (`common::brokers()`) at it.
static SUITE: Mutex<()> = Mutex::new(());
static BROKER: OnceLock<String> = OnceLock::new();

fn suite(fault: Fault) -> MutexGuard<'static, ()> {
    let guard = SUITE.lock().unwrap_or_else(|e| e.into_inner());
    BROKER.get_or_init(|| {
        let port = std::env::var("FAULTS_KAFKA_PORT")
            .map(|p| p.parse::<u16>().expect("FAULTS_KAFKA_PORT is a port"))
            .unwrap_or(19192);
        let dir = std::env::var("FAULTS_KAFKA_DATA_DIR").unwrap_or_else(|_| {
            if port == 19192 {
                "/tmp/aepiot-kafka-faults".into()
            } else {
                format!("/tmp/aepiot-kafka-faults-{port}")
            }
        });
        claim(port, &dir);
        let _ = SITE.set(Site {
            port,
            data_dir: dir,
            props: broker_props(fault),
        });
        let took = kafka_sh("start");
        let addr = String::from_utf8(kafka_sh_command("bootstrap").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        eprintln!(
            "faults: own broker on {addr} (data {}) started in {took:.1?}",
            data_dir()
        );
        // Every common helper (topics, consume_all, end_offsets, committed_offsets) reads
        // KAFKA_BOOTSTRAP once; nothing in this process has read it yet (this runs first, under
        // the suite lock), so they all use this broker, whatever the caller's environment says.
        std::env::set_var("KAFKA_BOOTSTRAP", &addr);
        assert_eq!(
            brokers(),
            addr,
            "common::brokers() was initialised too early"
        );
        addr
    });
    guard
}

/// Takes the broker site `port`/`dir` for this test process, and leaves a fresh, stopped
/// cluster there. A watchdog holds the site's lock (`flock`) while this process lives, then kills
/// the processes it started and stops the broker (unless FAULTS_KEEP_BROKER is set). Another run
/// of this suite on the machine (another engineer's `cargo test`) holds the lock while it runs:
/// this one waits for it (two runs at once would overload a small machine and make both flaky;
/// FAULTS_KAFKA_PORT gives a run a site of its own).
fn claim(port: u16, dir: &str) {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir).unwrap();
    let watch = r#"
        echo locked
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        if [ -f "$2" ]; then
          while read -r pid; do
            if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q aepiot-stream; then
              kill -KILL "$pid" 2>/dev/null
            fi
          done <"$2"
          rm -f "$2"
        fi
        [ -n "$4" ] || bash "$3" stop
    "#;
    let lock = format!("/tmp/aepiot-faults-{port}.lock");
    let watchdog = |flock_args: &[&str]| {
        let mut c = Command::new("flock");
        kafka_env_for(&mut c, port, dir, "")
            .args(flock_args)
            .arg(&lock)
            .args(["bash", "-c", watch, "faults-watchdog"])
            .arg(std::process::id().to_string())
            .arg(children_file(dir))
            .arg(script())
            .arg(std::env::var("FAULTS_KEEP_BROKER").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C of the test run must not kill it.
            .process_group(0);
        let mut child = c
            .spawn()
            .expect("spawn flock (util-linux) for the broker watchdog");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        );
        if line.trim() == "locked" {
            // The watchdog outlives this process on purpose: never waited for.
            std::mem::forget(child);
            true
        } else {
            let _ = child.wait();
            false
        }
    };
    if !watchdog(&["-n"]) {
        eprintln!(
            "faults: another run of the fault suite holds the broker on port {port} ({lock}); \
             waiting for it to finish (at most 30 minutes)"
        );
        assert!(
            watchdog(&["-w", "1800"]),
            "the broker on port {port} stayed busy; set FAULTS_KAFKA_PORT to use another"
        );
    }
    let _ = std::fs::remove_file(children_file(dir));
    // A fresh cluster: no topics or groups of earlier runs to recover after a kill -9.
    let out = kafka_env_for(
        Command::new("bash").arg(script()).arg("stop"),
        port,
        dir,
        "",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "kafka.sh stop: {out:?}");
    assert!(
        !port_in_use(port) && !port_in_use(port + 1),
        "port {port} or {} is in use by something else than this suite's broker; \
         set FAULTS_KAFKA_PORT to use another",
        port + 1
    );
    let data = Path::new(dir).join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).expect("remove the old broker data");
    }
}

// ------------------------------------------------------------------------------------ modes, load

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::AtLeastOnce => "at_least_once",
            Mode::ExactlyOnce => "exactly_once",
        }
    }
}

/// The instances' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settings {
    /// The defaults: state changelog on, `emit_suppressed` off (only `success` is written).
    Default,
    /// `--emit-suppressed`: every valid input yields one output record.
    EmitSuppressed,
}

impl Settings {
    fn emit_suppressed(self) -> bool {
        self == Settings::EmitSuppressed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// (a) SIGKILL one instance; the other two take its partitions over.
    KillInstance,
    /// (b) kill -9 the broker, restart it.
    KillBroker,
    /// (c) SIGTERM each instance in turn, each replaced by a new one.
    RollingRestart,
}

impl Fault {
    fn as_str(self) -> &'static str {
        match self {
            Fault::KillInstance => "kill_instance",
            Fault::KillBroker => "kill_broker",
            Fault::RollingRestart => "rolling_restart",
        }
    }
}

/// What the simulators produce, over `seconds`.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Factory profile (bursts of 5–40 events from one machine).
    fleet_events: u64,
    fleet_devices: u64,
    /// City profile over a handful of sensors: hundreds of events each.
    hot_events: u64,
    hot_devices: u64,
    seconds: f64,
    /// How many times the fault is injected (long versions repeat it).
    rounds: usize,
}

const SHORT: Load = Load {
    fleet_events: 14_000,
    fleet_devices: 2_000,
    hot_events: 2_000,
    hot_devices: 6,
    seconds: 15.0,
    rounds: 1,
};

const LONG: Load = Load {
    fleet_events: 80_000,
    fleet_devices: 5_000,
    hot_events: 10_000,
    hot_devices: 12,
    seconds: 90.0,
    rounds: 2,
};

// ------------------------------------------------------------------------------------ processes

struct Instance {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Instance {
    fn spawn(dir: &Path, name: &str, t: &Topics, mode: Mode, settings: Settings) -> Instance {
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
        register_child(child.id());
        Instance {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the processor's own warnings and errors (librdkafka's connection
    /// chatter left out) and any plain-text line (the exit message).
    fn log_digest(&self, n: usize) -> String {
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
    fn first_error(&self) -> String {
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
    fn assigned(&self) -> BTreeSet<i32> {
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
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    fn send(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {}", self.name);
    }

    /// Waits (at most `timeout`) for the exit after a SIGTERM.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
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

    fn sigkill(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM and wait for the exit (at most `timeout`).
    fn sigterm(&mut self, timeout: Duration) -> ExitStatus {
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
struct SimReport {
    sent: u64,
    acked: u64,
    failed: u64,
    invalid_sent: u64,
}

struct Simulator {
    child: Option<Child>,
    what: String,
}

impl Simulator {
    #[allow(clippy::too_many_arguments)]
    fn spawn(
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
        register_child(child.id());
        Simulator {
            child: Some(child),
            what: what.to_string(),
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    fn wait(&mut self, timeout: Duration) -> SimReport {
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

// ------------------------------------------------------------------------------------ offsets

/// The input's end offsets and the group's committed offsets, or `None` while the broker does not
/// answer (the common helpers give up after 30 s, shorter than a broker's recovery on a loaded
/// machine).
fn offsets_now(group: &str, topic: &str) -> Option<(HashMap<i32, i64>, HashMap<i32, i64>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        // The last committed offsets, not waiting for offsets pending in an open transaction.
        .set("isolation.level", "read_uncommitted")
        .set("log_level", "0")
        .create()
        .ok()?;
    let t = Duration::from_secs(5);
    let mut end = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        end.insert(p, c.fetch_watermarks(topic, p, t).ok()?.1);
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, t)
        .ok()?
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), o),
            _ => (e.partition(), -1),
        })
        .collect();
    Some((end, committed))
}

// ------------------------------------------------------------------------------------ the probe

/// The group's committed offsets and the input's end offsets, sampled every 250 ms by a thread of
/// its own (errors while the broker is down are skipped).
struct Sample {
    at: Instant,
    committed: HashMap<i32, i64>,
    end: HashMap<i32, i64>,
}

struct Probe {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    /// Samples that failed (the broker down, a connection being re-established), the last error.
    failures: Arc<Mutex<(usize, String)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    fn start(group: &str, topic: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new((0, String::new())));
        let (s, v, f) = (stop.clone(), samples.clone(), failures.clone());
        let (group, topic) = (group.to_string(), topic.to_string());
        let client = move || -> BaseConsumer {
            ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("group.id", &group)
                .set("reconnect.backoff.max.ms", "500")
                // The last committed offsets, without waiting for offsets pending in open
                // transactions (read_committed would wait, and fail the sample, until a killed
                // instance's transaction times out).
                .set("isolation.level", "read_uncommitted")
                .set("log_level", "0")
                .create()
                .unwrap()
        };
        let mut c = client();
        let thread = std::thread::spawn(move || {
            let mut failed_in_a_row = 0;
            let mut tpl = TopicPartitionList::new();
            for p in 0..PARTITIONS {
                tpl.add_partition(&topic, p);
            }
            let t = Duration::from_secs(2);
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                let sample = (|| {
                    let got = c
                        .committed_offsets(tpl.clone(), t)
                        .map_err(|e| format!("committed offsets: {e}"))?;
                    // Only partitions with a committed offset: under exactly-once a partition
                    // whose offsets are still in an open transaction answers
                    // UNSTABLE_OFFSET_COMMIT (no offset) until it is committed or aborted.
                    let committed = got
                        .elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) if e.error().is_ok() => Some((e.partition(), o)),
                            _ => None,
                        })
                        .collect();
                    let mut end = HashMap::new();
                    for p in 0..PARTITIONS {
                        let w = c
                            .fetch_watermarks(&topic, p, t)
                            .map_err(|e| format!("watermarks: {e}"))?;
                        end.insert(p, w.1);
                    }
                    Ok::<_, String>(Sample { at, committed, end })
                })();
                match sample {
                    Ok(sample) => {
                        failed_in_a_row = 0;
                        v.lock().unwrap().push(sample);
                    }
                    Err(e) => {
                        let mut f = f.lock().unwrap();
                        f.0 += 1;
                        f.1 = e;
                        // After a broker restart a client that is never polled can keep a stale
                        // view ("unknown partition"): start afresh.
                        failed_in_a_row += 1;
                        if failed_in_a_row % 5 == 0 {
                            c = client();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250).saturating_sub(at.elapsed()));
            }
        });
        Probe {
            stop,
            samples,
            failures,
            thread: Some(thread),
        }
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Time from `t0` until every partition has committed past where it stood when the fault
    /// hit (the first sample taken after `t0`: a killed instance commits nothing more, a stopped
    /// one has committed its drain) or has caught up: how long the fault stopped (part of) the
    /// group. `None` if that never happened while sampling.
    fn recovery_after(&self, t0: Instant) -> Option<Duration> {
        let samples = self.samples.lock().unwrap();
        let mut after = samples.iter().filter(|s| s.at >= t0);
        let base = after.next()?;
        let mut progressed = HashSet::new();
        for s in std::iter::once(base).chain(after) {
            for p in 0..PARTITIONS {
                let end = s.end.get(&p).copied().unwrap_or(0);
                if let Some(c) = s.committed.get(&p) {
                    if *c > base.committed.get(&p).copied().unwrap_or(-1) || *c >= end {
                        progressed.insert(p);
                    }
                }
            }
            if progressed.len() == PARTITIONS as usize {
                return Some(s.at - t0);
            }
        }
        None
    }

    /// The longest time any partition went without committed progress while it had input
    /// waiting: the longest gap between two samples that saw it progress (or caught up).
    fn max_stall(&self) -> (Duration, i32) {
        let samples = self.samples.lock().unwrap();
        // Per partition: since when it has been waiting (or last seen progressing), at which
        // offset, and whether input was waiting.
        let mut last: HashMap<i32, (Instant, i64, bool)> = HashMap::new();
        let mut worst = (Duration::ZERO, -1);
        for s in samples.iter() {
            for p in 0..PARTITIONS {
                let Some(&c) = s.committed.get(&p) else {
                    continue;
                };
                let e = s.end.get(&p).copied().unwrap_or(0);
                match last.get(&p).copied() {
                    None => {
                        last.insert(p, (s.at, c, c < e));
                    }
                    Some((at, prev, waiting)) => {
                        if waiting && s.at - at > worst.0 {
                            worst = (s.at - at, p);
                        }
                        if c != prev || c >= e {
                            last.insert(p, (s.at, c, c < e));
                        } else if !waiting {
                            // Input arrived after it had caught up: the wait starts now.
                            last.insert(p, (s.at, prev, true));
                        }
                    }
                }
            }
        }
        worst
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.finish();
    }
}

// ------------------------------------------------------------------------------------ a scenario

struct Harness {
    name: String,
    mode: Mode,
    settings: Settings,
    t: Topics,
    dir: PathBuf,
    instances: Vec<Instance>,
    spawned: usize,
    began: Instant,
    /// Whether an instance that exits on its own is replaced (as Kubernetes would restart it)
    /// rather than failing the scenario.
    restart_crashed: bool,
    crashes: Vec<serde_json::Value>,
}

impl Harness {
    fn new(name: &str, mode: Mode, settings: Settings) -> Harness {
        let t = topics(name, PARTITIONS);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("faults")
            .join(&t.group);
        std::fs::create_dir_all(&dir).unwrap();
        eprintln!("[{name}] logs in {}", dir.display());
        Harness {
            name: name.to_string(),
            mode,
            settings,
            t,
            dir,
            instances: Vec::new(),
            spawned: 0,
            began: Instant::now(),
            restart_crashed: false,
            crashes: Vec::new(),
        }
    }

    fn log(&self, what: impl std::fmt::Display) {
        eprintln!(
            "[{} +{:5.1}s] {what}",
            self.name,
            self.began.elapsed().as_secs_f64()
        );
    }

    fn spawn_instance(&mut self) -> usize {
        self.spawned += 1;
        let name = format!("inst-{}", self.spawned);
        self.instances.push(Instance::spawn(
            &self.dir,
            &name,
            &self.t,
            self.mode,
            self.settings,
        ));
        self.instances.len() - 1
    }

    /// Looks for instances that exited on its own: a failure, unless the scenario restarts
    /// crashed instances, in which case a replacement starts and the crash is recorded.
    fn supervise(&mut self) {
        let mut crashed = Vec::new();
        for i in &mut self.instances {
            if let Some(status) = i.exited() {
                crashed.push((i.name.clone(), status, i.first_error(), i.log_digest(30)));
            }
        }
        for (name, status, error, digest) in crashed {
            assert!(
                self.restart_crashed,
                "[{}] instance {name} exited on its own ({status}):\n{digest}",
                self.name
            );
            assert!(
                self.crashes.len() < 20,
                "[{}] instances keep crashing; the last one, {name} ({status}):\n{digest}",
                self.name
            );
            let new = self.spawn_instance();
            self.log(format!(
                "{name} exited on its own ({status}): {error:?}; {} replaces it",
                self.instances[new].name
            ));
            self.crashes.push(serde_json::json!({
                "instance": name,
                "status": status.to_string(),
                "error": error,
                "at_s": self.began.elapsed().as_secs_f64(),
            }));
        }
    }

    /// Partitions owned by the live instances, each instance's set.
    fn ownership(&self) -> Vec<BTreeSet<i32>> {
        self.instances
            .iter()
            .filter(|i| i.child.is_some())
            .map(|i| i.assigned())
            .collect()
    }

    /// Waits until the live instances own all partitions between them, each at least one (and
    /// `extra` holds); returns how long that took.
    fn wait_balanced(&mut self, what: &str, timeout: Duration) -> Duration {
        let t = Instant::now();
        loop {
            self.supervise();
            let own = self.ownership();
            let all: BTreeSet<i32> = own.iter().flatten().copied().collect();
            let total: usize = own.iter().map(|s| s.len()).sum();
            if all.len() == PARTITIONS as usize
                && total == PARTITIONS as usize
                && own.iter().all(|s| !s.is_empty())
            {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < timeout,
                "[{}] timed out waiting for {what}: ownership {own:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the input's end offsets reach `n` records in all.
    fn wait_input(&mut self, n: u64, timeout: Duration) {
        let t = Instant::now();
        loop {
            self.supervise();
            let have: i64 =
                offsets_now(&self.t.group, &self.t.input).map_or(0, |(end, _)| end.values().sum());
            if have as u64 >= n {
                return;
            }
            assert!(
                t.elapsed() < timeout,
                "[{}] input stuck at {have} records (waiting for {n})",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERMs every live instance (all at once); each must exit 0 after a clean stop.
    fn stop_all(&mut self) {
        self.supervise();
        let name = self.name.clone();
        let live: Vec<&mut Instance> = self
            .instances
            .iter_mut()
            .filter(|i| i.child.is_some())
            .collect();
        for i in &live {
            i.send("-TERM");
        }
        for i in live {
            let status = i.wait_exit(Duration::from_secs(60));
            assert!(
                status.success() && i.log_text().contains("stopped cleanly"),
                "[{name}] {} exited {status} after SIGTERM, not cleanly:\n{}",
                i.name,
                i.log_digest(30)
            );
        }
    }
}

/// What the outputs and dead letters say about the input.
#[derive(Debug, Default)]
struct Accounting {
    input: usize,
    outputs: usize,
    dead_letters: usize,
    distinct_outputs: usize,
    distinct_dead_letters: usize,
    /// Input offsets that should have an output or a dead letter and have none: invalid inputs,
    /// offline `success`es, and under emit_suppressed every valid input.
    lost: usize,
    /// Inputs the offline engine judges `success` with no `success` record: URLs users lost.
    lost_successes: usize,
    /// A few of them, for the message.
    lost_success_examples: Vec<(i64, i64)>,
    /// Offsets with a `success` record that the offline engine judges `cached` or `rate_limited`.
    extra_successes: usize,
    /// Outputs of a status not written with these settings (not `success` without
    /// emit_suppressed).
    unexpected_outputs: usize,
    duplicates: usize,
    duplicated_offsets: usize,
    in_both: usize,
    /// Dead letters for valid inputs, and invalid inputs with an output record.
    misjudged: usize,
    /// Distinct offsets by status as written.
    success: usize,
    cached: usize,
    rate_limited: usize,
    /// The offline engine's judgement of the input.
    offline_success: usize,
    offline_cached: usize,
    offline_rate_limited: usize,
    devices: usize,
    max_success_per_device_hour: usize,
    worst_device: String,
    hot_device_success: BTreeMap<String, usize>,
    inconsistent: usize,
}

fn account(t: &Topics, hot_prefix: &str, settings: Settings) -> Accounting {
    use aepiot_stream::core::Decision;
    let outputs = consume_all(&t.output, Duration::from_secs(120));
    let letters = consume_all(&t.dlq, Duration::from_secs(60));
    let expected = expected_sources(&t.input);
    let offline = judged_offline(&t.input);
    assert_eq!(
        offline.len(),
        expected.len(),
        "the input read back for the offline judgement is incomplete"
    );
    let mut a = Accounting {
        input: expected.len(),
        outputs: outputs.len(),
        dead_letters: letters.len(),
        ..Default::default()
    };
    // Per input offset: its device, its statuses, and the event time of a success.
    struct Seen {
        device: String,
        copies: usize,
        statuses: BTreeSet<String>,
        success_at: Option<i64>,
    }
    let mut by_offset: HashMap<(i64, i64), Seen> = HashMap::new();
    for m in &outputs {
        let v = json(m);
        assert_eq!(v["source"]["topic"], t.input.as_str());
        let device = v["device_id"].as_str().unwrap().to_string();
        let status = v["status"].as_str().unwrap().to_string();
        let at = parse_rfc3339_ms(v["event_time"].as_str().unwrap()).expect("event_time");
        if status != "success" && !settings.emit_suppressed() {
            a.unexpected_outputs += 1;
        }
        let s = by_offset.entry(source_of(m)).or_insert(Seen {
            device: device.clone(),
            copies: 0,
            statuses: BTreeSet::new(),
            success_at: None,
        });
        s.copies += 1;
        if s.device != device {
            a.inconsistent += 1;
        }
        if status == "success" {
            s.success_at = Some(s.success_at.map_or(at, |x: i64| x.min(at)));
        }
        s.statuses.insert(status);
    }
    let mut letter_offsets: HashMap<(i64, i64), usize> = HashMap::new();
    for m in &letters {
        assert_eq!(json(m)["source"]["topic"], t.input.as_str());
        *letter_offsets.entry(source_of(m)).or_default() += 1;
    }
    a.distinct_outputs = by_offset.len();
    a.distinct_dead_letters = letter_offsets.len();
    a.in_both = letter_offsets
        .keys()
        .filter(|k| by_offset.contains_key(k))
        .count();
    let seen: HashSet<(i64, i64)> = by_offset
        .keys()
        .chain(letter_offsets.keys())
        .copied()
        .collect();
    assert!(
        seen.is_subset(&expected),
        "outputs name input offsets that do not exist"
    );
    a.duplicates = (a.outputs + a.dead_letters) - seen.len();
    a.duplicated_offsets = by_offset.values().filter(|s| s.copies > 1).count()
        + letter_offsets.values().filter(|n| **n > 1).count();

    // Against the offline judgement: what must have been written, and what was lost.
    let mut lost_successes: Vec<(i64, i64)> = Vec::new();
    for (offset, judged) in &offline {
        let out = by_offset.get(offset);
        match judged {
            None => {
                a.misjudged += usize::from(out.is_some());
                a.lost += usize::from(!letter_offsets.contains_key(offset));
            }
            Some(d) => {
                a.misjudged += usize::from(letter_offsets.contains_key(offset));
                match d {
                    Decision::Success => a.offline_success += 1,
                    Decision::Cached => a.offline_cached += 1,
                    Decision::RateLimited => a.offline_rate_limited += 1,
                }
                let success = out.is_some_and(|s| s.success_at.is_some());
                if *d == Decision::Success && !success {
                    lost_successes.push(*offset);
                }
                if *d != Decision::Success && success {
                    a.extra_successes += 1;
                }
                let must_write = *d == Decision::Success || settings.emit_suppressed();
                a.lost += usize::from(must_write && out.is_none());
            }
        }
    }
    lost_successes.sort_unstable();
    a.lost_successes = lost_successes.len();
    a.lost_success_examples = lost_successes.into_iter().take(10).collect();

    // Each offset once: a success if any copy of it is one (at-least-once may judge a repeated
    // record again, against state that already holds its first judgement).
    let mut successes: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut devices = HashSet::new();
    for s in by_offset.values() {
        devices.insert(s.device.as_str());
        match s.success_at {
            Some(at) => {
                a.success += 1;
                successes.entry(&s.device).or_default().push(at);
            }
            None if s.statuses.contains("cached") => a.cached += 1,
            None => a.rate_limited += 1,
        }
    }
    a.devices = devices.len();
    for (device, times) in &mut successes {
        times.sort_unstable();
        // Sliding hour: the most successes within any [t, t + 1 h).
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= HOUR_MS {
                lo += 1;
            }
            let n = hi - lo + 1;
            if n > a.max_success_per_device_hour {
                a.max_success_per_device_hour = n;
                a.worst_device = device.to_string();
            }
        }
        if device.starts_with(hot_prefix) {
            a.hot_device_success.insert(device.to_string(), times.len());
        }
    }
    a
}

fn run_scenario(mode: Mode, fault: Fault, load: Load, settings: Settings) {
    let _suite = suite(fault);
    let name = format!(
        "{}-{}{}{}",
        fault.as_str(),
        match mode {
            Mode::AtLeastOnce => "alo",
            Mode::ExactlyOnce => "eos",
        },
        if load.rounds > 1 { "-long" } else { "" },
        if settings.emit_suppressed() {
            "-emit-suppressed"
        } else {
            ""
        }
    );
    let mut h = Harness::new(&name, mode, settings);
    // While the broker is down, an exactly-once instance exits non-zero once its outputs time out
    // (librdkafka caps message.timeout.ms at transaction.timeout.ms, 10 s) or its producer is
    // fenced by the transaction timeout: the README's "the instance stops with a non-zero exit
    // without committing past that record, so that a restart retries it". The harness restarts it,
    // as Kubernetes would, and the accounting must hold across those crashes. FAULTS_STRICT=1
    // fails on any crash instead.
    h.restart_crashed = fault == Fault::KillBroker && std::env::var("FAULTS_STRICT").is_err();
    let total = load.fleet_events + load.hot_events;

    for _ in 0..INSTANCES {
        h.spawn_instance();
    }
    let took = h.wait_balanced(
        "three instances sharing the partitions",
        Duration::from_secs(90),
    );
    h.log(format!(
        "3 instances own {:?} after {took:.1?}",
        h.ownership()
    ));

    let mut probe = Probe::start(&h.t.group, &h.t.input);
    let rate = |n: u64| ((n as f64 / load.seconds).ceil() as u64).max(1);
    let mut sims = [
        Simulator::spawn(
            &h.dir,
            "fleet",
            &h.t.input,
            "factory",
            load.fleet_devices,
            load.fleet_events,
            rate(load.fleet_events),
            71,
        ),
        Simulator::spawn(
            &h.dir,
            "hot",
            &h.t.input,
            "city",
            load.hot_devices,
            load.hot_events,
            rate(load.hot_events),
            72,
        ),
    ];
    let load_began = Instant::now();
    h.log(format!(
        "producing {total} events over {:.0}s ({} fleet machines, {} hot sensors)",
        load.seconds, load.fleet_devices, load.hot_devices
    ));

    // The fault, `rounds` times, spread over the stream.
    let mut figures = serde_json::Map::new();
    let mut recoveries = Vec::new();
    let mut broker_down = Vec::new();
    let mut after_restart = Vec::new();
    let mut steps = Vec::new();
    let mut takeovers = Vec::new();
    for round in 0..load.rounds {
        let at = match fault {
            Fault::RollingRestart => 0.15 + 0.45 * round as f64,
            _ => 0.3 + 0.4 * round as f64,
        };
        h.wait_input((total as f64 * at) as u64, Duration::from_secs(120));
        match fault {
            Fault::KillInstance => {
                // After the first round a replacement joins first, so three instances share
                // the partitions again when the next one is killed.
                if round > 0 {
                    h.spawn_instance();
                    h.wait_balanced("a replacement owning partitions", Duration::from_secs(90));
                }
                let victim = h.instances.iter().position(|i| i.child.is_some()).unwrap();
                let owned = h.instances[victim].assigned();
                let t0 = Instant::now();
                h.instances[victim].sigkill();
                h.log(format!(
                    "SIGKILL {} (owned {owned:?})",
                    h.instances[victim].name
                ));
                let took = h.wait_balanced(
                    "the survivors taking the killed instance's partitions",
                    Duration::from_secs(120),
                );
                takeovers.push(took.as_secs_f64());
                h.log(format!(
                    "survivors own {:?} {took:.1?} after the kill",
                    h.ownership()
                ));
                recoveries.push(t0);
            }
            Fault::KillBroker => {
                let t0 = Instant::now();
                kafka_sh("kill9");
                h.log("broker killed (kill -9)");
                std::thread::sleep(Duration::from_secs(3));
                let start = kafka_sh("start");
                broker_down.push(t0.elapsed().as_secs_f64());
                h.log(format!(
                    "broker restarted ({start:.1?} to start; down {:.1?})",
                    t0.elapsed()
                ));
                recoveries.push(t0);
                after_restart.push(Instant::now());
            }
            Fault::RollingRestart => {
                for k in 0..INSTANCES {
                    let victim = h.instances.iter().position(|i| i.child.is_some()).unwrap();
                    let t0 = Instant::now();
                    let status = h.instances[victim].sigterm(Duration::from_secs(60));
                    let drained = t0.elapsed();
                    let inst = &h.instances[victim];
                    assert!(
                        status.success() && inst.log_text().contains("stopped cleanly"),
                        "[{name}] {} exited {status} after SIGTERM:\n{}",
                        inst.name,
                        inst.log_digest(30)
                    );
                    let old = inst.name.clone();
                    let new = h.spawn_instance();
                    let new_name = h.instances[new].name.clone();
                    let t1 = Instant::now();
                    let own = h.wait_balanced(
                        "the replacement owning partitions",
                        Duration::from_secs(120),
                    );
                    h.log(format!(
                        "round {round} step {k}: {old} stopped in {drained:.1?}, {new_name} owns {:?} {own:.1?} after start",
                        h.instances[new].assigned()
                    ));
                    steps.push(serde_json::json!({
                        "stop_s": drained.as_secs_f64(),
                        "replacement_assigned_s": (t1.elapsed()).as_secs_f64(),
                    }));
                    // From the moment its partitions were free.
                    recoveries.push(t0 + drained);
                }
            }
        }
    }

    // The instances are watched (and replaced, if the scenario allows) while the load runs out.
    let t = Instant::now();
    while sims.iter_mut().any(|s| s.running()) {
        h.supervise();
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "[{name}] the simulators did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut reports = Vec::new();
    for s in &mut sims {
        reports.push(s.wait(Duration::from_secs(600)));
    }
    let produce_s = load_began.elapsed().as_secs_f64();
    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    let acked: u64 = reports.iter().map(|r| r.acked).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    let invalid_sent: u64 = reports.iter().map(|r| r.invalid_sent).sum();
    h.log(format!(
        "load done in {produce_s:.1}s: sent {sent}, acked {acked}, failed {failed}, invalid {invalid_sent}"
    ));

    // Every input offset committed by the group (the instances stay up while they catch up).
    let t = Instant::now();
    loop {
        h.supervise();
        let now = offsets_now(&h.t.group, &h.t.input);
        if now
            .as_ref()
            .is_some_and(|(end, committed)| caught_up(end, committed))
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "[{name}] the group did not commit every input offset: (end, committed) {now:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let caught_up = load_began.elapsed().as_secs_f64();
    h.log(format!(
        "every input offset committed ({caught_up:.1}s after the load began)"
    ));
    probe.finish();
    h.stop_all();
    let committed = committed_offsets(&h.t.group, &h.t.input);
    let end = end_offsets(&h.t.input);

    let a = account(&h.t, "sensor-", settings);
    let recovery_secs = |faults: &[Instant]| -> Vec<f64> {
        faults
            .iter()
            .map(|t0| {
                probe
                    .recovery_after(*t0)
                    .map_or(f64::NAN, |d| d.as_secs_f64())
            })
            .collect()
    };
    let recovery = recovery_secs(&recoveries);
    let recovery_after_restart = recovery_secs(&after_restart);
    let (stall, stall_p) = probe.max_stall();
    figures.insert("scenario".into(), name.clone().into());
    figures.insert("mode".into(), mode.as_str().into());
    figures.insert("fault".into(), fault.as_str().into());
    figures.insert("emit_suppressed".into(), settings.emit_suppressed().into());
    figures.insert("rounds".into(), load.rounds.into());
    figures.insert("events".into(), a.input.into());
    figures.insert("outputs".into(), a.outputs.into());
    figures.insert("dead_letters".into(), a.dead_letters.into());
    figures.insert("lost".into(), a.lost.into());
    figures.insert("lost_successes".into(), a.lost_successes.into());
    figures.insert("extra_successes".into(), a.extra_successes.into());
    figures.insert("duplicates".into(), a.duplicates.into());
    figures.insert("duplicated_offsets".into(), a.duplicated_offsets.into());
    figures.insert("success".into(), a.success.into());
    figures.insert("cached".into(), a.cached.into());
    figures.insert("rate_limited".into(), a.rate_limited.into());
    figures.insert(
        "offline".into(),
        serde_json::json!({
            "success": a.offline_success,
            "cached": a.offline_cached,
            "rate_limited": a.offline_rate_limited,
        }),
    );
    figures.insert("devices".into(), a.devices.into());
    figures.insert(
        "max_success_per_device_hour".into(),
        a.max_success_per_device_hour.into(),
    );
    figures.insert(
        "hot_device_success".into(),
        serde_json::to_value(&a.hot_device_success).unwrap(),
    );
    figures.insert(
        "recovery_s".into(),
        serde_json::to_value(&recovery).unwrap(),
    );
    figures.insert("max_stall_s".into(), stall.as_secs_f64().into());
    {
        let (n, e) = probe.failures.lock().unwrap().clone();
        figures.insert(
            "probe_samples".into(),
            probe.samples.lock().unwrap().len().into(),
        );
        figures.insert("probe_failures".into(), n.into());
        figures.insert("probe_last_error".into(), e.into());
    }
    if !takeovers.is_empty() {
        figures.insert(
            "takeover_s".into(),
            serde_json::to_value(&takeovers).unwrap(),
        );
    }
    if !broker_down.is_empty() {
        figures.insert(
            "broker_down_s".into(),
            serde_json::to_value(&broker_down).unwrap(),
        );
        figures.insert(
            "recovery_after_restart_s".into(),
            serde_json::to_value(&recovery_after_restart).unwrap(),
        );
    }
    figures.insert("crashes".into(), h.crashes.len().into());
    if !h.crashes.is_empty() {
        figures.insert("crash_details".into(), h.crashes.clone().into());
    }
    if !steps.is_empty() {
        figures.insert("steps".into(), steps.into());
    }
    figures.insert("produce_s".into(), produce_s.into());
    figures.insert("caught_up_s".into(), caught_up.into());
    figures.insert("scenario_s".into(), h.began.elapsed().as_secs_f64().into());
    h.log(format!(
        "events {} (invalid {}), outputs {} + dead letters {}: lost {}, lost successes {} {:?}, \
         extra successes {}, duplicates {} ({} offsets), success {} / cached {} / rate_limited {} \
         written (offline: {} / {} / {}) over {} devices, max successes per device-hour {} ({}), \
         hot sensors' successes {:?}, recovery {:?} s, longest partition stall {:.1?} (p{stall_p}), \
         instances crashed and restarted: {}",
        a.input,
        a.distinct_dead_letters,
        a.outputs,
        a.dead_letters,
        a.lost,
        a.lost_successes,
        a.lost_success_examples,
        a.extra_successes,
        a.duplicates,
        a.duplicated_offsets,
        a.success,
        a.cached,
        a.rate_limited,
        a.offline_success,
        a.offline_cached,
        a.offline_rate_limited,
        a.devices,
        a.max_success_per_device_hour,
        a.worst_device,
        a.hot_device_success,
        recovery,
        stall,
        h.crashes.len(),
    ));
    eprintln!("FAULTS-RESULT {}", serde_json::Value::Object(figures));

    // The accounting.
    assert_eq!(failed, 0, "[{name}] the simulators lost input records");
    assert_eq!(
        a.input as u64, acked,
        "[{name}] the input topic does not hold exactly what the simulators had acknowledged"
    );
    // What users lose: inputs judged `success` (offline, the same per-partition order) with no
    // `success` record. A replay judged `cached` or `rate_limited` against a state that already
    // holds its own first judgement is a lost URL, though its offset has a record.
    assert_eq!(
        a.lost_successes, 0,
        "[{name}] {} inputs judged `success` offline have no `success` record (e.g. (partition, \
         offset) {:?})",
        a.lost_successes, a.lost_success_examples
    );
    assert_eq!(
        a.lost, 0,
        "[{name}] input offsets with no output or dead letter (all valid ones under \
         emit_suppressed, successes and dead letters without)"
    );
    assert_eq!(
        a.misjudged, 0,
        "[{name}] dead letters for valid inputs or records for invalid ones"
    );
    assert_eq!(
        a.unexpected_outputs, 0,
        "[{name}] records other than `success` without emit_suppressed"
    );
    assert_eq!(
        a.in_both, 0,
        "[{name}] offsets both in outputs and dead letters"
    );
    assert_eq!(
        a.inconsistent, 0,
        "[{name}] copies of one offset name different devices"
    );
    assert_eq!(
        a.distinct_dead_letters as u64, invalid_sent,
        "[{name}] dead letters are not exactly the invalid inputs"
    );
    assert_eq!(
        committed, end,
        "[{name}] committed offsets != input end offsets"
    );
    assert!(
        a.max_success_per_device_hour <= MAX_PER_HOUR,
        "[{name}] device {} has {} successes within an hour of event time",
        a.worst_device,
        a.max_success_per_device_hour
    );
    // Each hot sensor sends hundreds of events within the hour, of 16 (event_type, severity)
    // kinds: exactly 10 successes, whichever instances judged them.
    assert!(
        a.hot_device_success.len() == load.hot_devices as usize
            && a.hot_device_success.values().all(|n| *n == MAX_PER_HOUR),
        "[{name}] hot sensors' successes (each must have exactly {MAX_PER_HOUR}): {:?}",
        a.hot_device_success
    );
    // The state carried across partition moves is the state the outputs reflect: no `success`
    // where the offline engine says `cached` or `rate_limited`. After a crash under
    // at-least-once, the replay may meet an older state: counted and printed only (the limit
    // checks above hold).
    if mode == Mode::ExactlyOnce || fault == Fault::RollingRestart {
        assert_eq!(
            a.extra_successes, 0,
            "[{name}] `success` records for inputs the offline engine judges cached or rate limited"
        );
    }
    if mode == Mode::AtLeastOnce {
        // At-least-once rides out a broker restart: outputs are retried for message.timeout.ms
        // (5 minutes).
        assert!(
            h.crashes.is_empty(),
            "[{name}] instances crashed: {:?}",
            h.crashes
        );
    }
    match (mode, fault) {
        (Mode::ExactlyOnce, _) => {
            assert_eq!(a.duplicates, 0, "[{name}] duplicates under exactly-once")
        }
        // A rolling restart only stops instances cleanly: at-least-once repeats nothing then
        // (README, "Delivery guarantee").
        (Mode::AtLeastOnce, Fault::RollingRestart) => assert_eq!(
            a.duplicates, 0,
            "[{name}] duplicates after clean stops under at-least-once"
        ),
        (Mode::AtLeastOnce, _) => {}
    }
}

// ------------------------------------------------------------------------------------ the tests

/// One test per (fault, guarantee, load, settings). `ci` scenarios run in `cargo test` (and so in
/// CI, `scripts/test.sh`); the others are `#[ignore]`d with the reason given.
macro_rules! scenario {
    (ci $name:ident: $mode:ident, $fault:ident, $load:ident, $settings:ident) => {
        #[test]
        fn $name() {
            run_scenario(Mode::$mode, Fault::$fault, $load, Settings::$settings);
        }
    };
    ($why:literal $name:ident: $mode:ident, $fault:ident, $load:ident, $settings:ident) => {
        #[test]
        #[ignore = $why]
        fn $name() {
            run_scenario(Mode::$mode, Fault::$fault, $load, Settings::$settings);
        }
    };
}

// Default settings, lost successes counted. The rolling restart (clean stops, the broker stays
// up; under a minute each on an idle 2-core machine) runs in CI, in both guarantees.
scenario!(ci rolling_restart_at_least_once: AtLeastOnce, RollingRestart, SHORT, Default);
scenario!(ci rolling_restart_exactly_once: ExactlyOnce, RollingRestart, SHORT, Default);

// Issue 12 item 4: after a crash under at-least-once, a changelog record acknowledged before the
// output it reflects makes the replay judge that event `cached` or `rate_limited`: a lost success,
// which only the lost-successes check sees. 0 in the runs of these scenarios so far (the window is
// a few milliseconds per batch); see the FAULTS-RESULT lines.
scenario!("fault injection (SIGKILL of an instance): scripts/faults.sh --short"
    kill_instance_at_least_once: AtLeastOnce, KillInstance, SHORT, Default);
scenario!("fault injection (SIGKILL of an instance): scripts/faults.sh --short"
    kill_instance_exactly_once: ExactlyOnce, KillInstance, SHORT, Default);
scenario!("fault injection (kill -9 of the broker): scripts/faults.sh --short"
    kill_broker_at_least_once: AtLeastOnce, KillBroker, SHORT, Default);
scenario!("fault injection (kill -9 of the broker): scripts/faults.sh --short"
    kill_broker_exactly_once: ExactlyOnce, KillBroker, SHORT, Default);

// The long versions: ~90 k events over 90 s, each fault injected twice. Too long for the default
// suite (a few minutes each on a 2-core machine): run them with scripts/faults.sh.
scenario!("long: scripts/faults.sh"
    long_kill_instance_at_least_once: AtLeastOnce, KillInstance, LONG, Default);
scenario!("long: scripts/faults.sh"
    long_kill_instance_exactly_once: ExactlyOnce, KillInstance, LONG, Default);
scenario!("long: scripts/faults.sh"
    long_kill_broker_at_least_once: AtLeastOnce, KillBroker, LONG, Default);
scenario!("long: scripts/faults.sh"
    long_kill_broker_exactly_once: ExactlyOnce, KillBroker, LONG, Default);
scenario!("long: scripts/faults.sh"
    long_rolling_restart_at_least_once: AtLeastOnce, RollingRestart, LONG, Default);
scenario!("long: scripts/faults.sh"
    long_rolling_restart_exactly_once: ExactlyOnce, RollingRestart, LONG, Default);

// With --emit-suppressed: every valid input has an output record, so every input offset is
// accounted for (outputs ∪ dead letters); lost successes are counted too.
scenario!("emit_suppressed variant: scripts/faults.sh --short"
    kill_instance_at_least_once_emit_suppressed: AtLeastOnce, KillInstance, SHORT, EmitSuppressed);
scenario!("emit_suppressed variant: scripts/faults.sh --short"
    kill_instance_exactly_once_emit_suppressed: ExactlyOnce, KillInstance, SHORT, EmitSuppressed);
scenario!("emit_suppressed variant: scripts/faults.sh --short"
    kill_broker_at_least_once_emit_suppressed: AtLeastOnce, KillBroker, SHORT, EmitSuppressed);
scenario!("emit_suppressed variant: scripts/faults.sh --short"
    kill_broker_exactly_once_emit_suppressed: ExactlyOnce, KillBroker, SHORT, EmitSuppressed);
scenario!("emit_suppressed variant: scripts/faults.sh --short"
    rolling_restart_at_least_once_emit_suppressed: AtLeastOnce, RollingRestart, SHORT, EmitSuppressed);
scenario!("emit_suppressed variant: scripts/faults.sh --short"
    rolling_restart_exactly_once_emit_suppressed: ExactlyOnce, RollingRestart, SHORT, EmitSuppressed);
