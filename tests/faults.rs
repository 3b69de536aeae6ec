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
//! ignored: `cargo test` runs them) and the SIGKILL of an instance under exactly-once
//! (`kill_instance_exactly_once`); the other scenarios, which kill instances or the broker, and
//! the long and emit-suppressed versions, are `#[ignore]`d: `scripts/faults.sh` runs them. The
//! machinery is shared with the cluster scenarios (`tests/cluster_faults.rs`): `tests/fault_harness/`.
//!
//! The suite runs on a broker of its own (`scripts/kafka.sh` with `KAFKA_PORT=19192`,
//! `KAFKA_DATA_DIR=/tmp/aepiot-kafka-faults`, a fresh cluster per run; `FAULTS_KAFKA_PORT` and
//! `FAULTS_KAFKA_DATA_DIR` change them), never the shared one: scenario (b) kills it. Broker
//! settings that make recovery fast enough for a test run (see `broker_props`): consumer-group
//! (KIP-848) heartbeat 1 s, and where an instance or the broker is killed, session timeout 6 s
//! (the defaults, 45 s and 5 s, would make the takeover after a SIGKILL take ~45 s) and KRaft
//! broker session 3 s; timed-out transactions aborted every second. Each scenario gets the
//! settings of its fault (the broker restarts when they change; CI's rolling restarts keep the
//! default sessions). The scenarios
//! run one at a time (they share the broker and kill it), and a second run of the suite on the
//! machine (another `cargo test`) waits for the first (a lock, `/tmp/aepiot-faults-<port>.lock`).
//! A watchdog kills the processes a run started and stops its broker when the test process exits,
//! however it exits (`FAULTS_KEEP_BROKER=1` keeps the broker).
//!
//! Figures are printed with eprintln (run with `--nocapture`), one `FAULTS-RESULT {json}` line per
//! scenario; `scripts/faults.sh` runs the long versions and tabulates them. Instance logs are kept
//! under `target/tmp/faults/`.

mod common;
mod fault_harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use fault_harness::*;

const PARTITIONS: i32 = 6;

// ------------------------------------------------------------------------------------ the broker

/// The suite's broker: its port, data directory and settings, chosen once per test process.
struct Site {
    port: u16,
    data_dir: String,
    /// The broker's settings now (see [`broker_props`]).
    props: Mutex<String>,
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
    let props = site.props.lock().unwrap().clone();
    kafka_env_for(&mut c, site.port, &site.data_dir, &props);
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
            props: Mutex::new(broker_props(fault)),
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
        // This runs first, under the suite lock: every common helper then uses this broker,
        // whatever the caller's environment says.
        use_brokers(&addr);
        addr
    });
    // A scenario that needs other broker settings than the running broker's (CI runs rolling
    // restarts and an instance SIGKILL in one process) restarts it with them; topics are unique
    // per scenario, so the data stays.
    let wanted = broker_props(fault);
    let site = SITE.get().expect("site");
    if *site.props.lock().unwrap() != wanted {
        kafka_sh("stop");
        *site.props.lock().unwrap() = wanted;
        let took = kafka_sh("start");
        eprintln!("faults: broker restarted with the settings of {fault:?} in {took:.1?}");
    }
    guard
}

/// Takes the broker site `port`/`dir` for this test process, and leaves a fresh, stopped
/// cluster there. A watchdog holds the site's lock (`flock`) while this process lives, then kills
/// the processes it started and stops the broker (unless FAULTS_KEEP_BROKER is set). Another run
/// of this suite on the machine (another engineer's `cargo test`) holds the lock while it runs:
/// this one waits for it (two runs at once would overload a small machine and make both flaky;
/// FAULTS_KAFKA_PORT gives a run a site of its own).
fn claim(port: u16, dir: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let keep = std::env::var("FAULTS_KEEP_BROKER").unwrap_or_default();
    fault_harness::site::claim(
        &format!("the broker on port {port} (FAULTS_KAFKA_PORT gives a run another)"),
        &format!("/tmp/aepiot-faults-{port}.lock"),
        &children_file(dir),
        r#"[ -n "$FAULTS_KEEP_BROKER" ] || bash "$KAFKA_SH" stop"#,
        &[
            ("KAFKA_PORT", port.to_string()),
            ("KAFKA_DATA_DIR", dir.to_string()),
            ("KAFKA_SH", script().display().to_string()),
            ("FAULTS_KEEP_BROKER", keep),
        ],
    );
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

/// The loads: what the simulators produce, over `seconds`.
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
    let mut h = Harness::new(&name, mode, settings, PARTITIONS);
    // While the broker is down, an exactly-once instance exits non-zero once its outputs time out
    // (librdkafka caps message.timeout.ms at transaction.timeout.ms, 10 s) or its producer is
    // fenced by the transaction timeout: the README's "the instance stops with a non-zero exit
    // without committing past that record, so that a restart retries it". The harness restarts it,
    // as Kubernetes would, and the accounting must hold across those crashes. FAULTS_STRICT=1
    // fails on any crash instead.
    h.restart_crashed = fault == Fault::KillBroker && std::env::var("FAULTS_STRICT").is_err();
    let total = load.fleet_events + load.hot_events;
    let running = h.begin(load);

    // The fault, `rounds` times, spread over the stream.
    let mut record = Record::default();
    let mut broker_down = Vec::new();
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
                record.faults.push(t0);
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
                record.faults.push(t0);
                record.restarts.push(Instant::now());
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
                    record.faults.push(t0 + drained);
                }
            }
        }
    }

    if !takeovers.is_empty() {
        record.figures.insert(
            "takeover_s".into(),
            serde_json::to_value(&takeovers).unwrap(),
        );
    }
    if !broker_down.is_empty() {
        record.figures.insert(
            "broker_down_s".into(),
            serde_json::to_value(&broker_down).unwrap(),
        );
    }
    if !steps.is_empty() {
        record.figures.insert("steps".into(), steps.into());
    }
    h.finish(
        running,
        record,
        Expect {
            fault: fault.as_str(),
            exact_at_least_once: fault == Fault::RollingRestart,
        },
    );
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
// In CI (issue 26). Out of it for a day (2026-12-07): it failed once waiting for the survivors
// to take the killed instance's partitions, two instances reporting partitions 3 and 5 at once.
// The cause: a worker stopped while it waited for its turn to restore ended without its
// "partition worker stopped" line (which the harness reads owners from) and kept its gauges
// (which the status page reads); tests/restore_revoke.rs holds the fix.
scenario!(ci kill_instance_exactly_once: ExactlyOnce, KillInstance, SHORT, Default);
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
