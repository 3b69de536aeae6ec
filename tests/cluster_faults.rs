//! Delivery guarantees on a real cluster (issue 26): three combined controller+broker KRaft nodes
//! (`scripts/kafka.sh cluster`, replication factor 3, `min.insync.replicas=2`, offsets and
//! transaction state at RF 3), and the faults production clusters have, each under at_least_once
//! and exactly_once:
//!
//! 1. a rolling restart of the three brokers, one at a time, controlled shutdown;
//! 2. SIGKILL of the broker that leads the most input partitions, restarted after 20 s;
//! 3. SIGKILL of the group coordinator's broker (restarted after 20 s), and under exactly-once
//!    then of an instance's transaction coordinator's broker;
//! 4. one broker black-holed for 30 s: packets to and from its ports dropped on loopback
//!    (nftables), always removed afterwards;
//! 5. two of three brokers down for 30 s, so writes fail `NOT_ENOUGH_REPLICAS`: the processor
//!    waits, neither exits nor dead-letters anything;
//! 6. the leader of changelog partitions killed while a joining instance restores from them.
//!
//! Each runs three `aepiot-stream run` instances on a 12-partition input while ~300k events flow
//! (`tests/fault_harness`): no instance may exit, and the accounting of `tests/faults.rs` holds
//! (0 lost successes against the offline engine, dead letters exactly the invalid inputs, no
//! duplicate under exactly-once, committed offsets = end offsets, the rate limit exact). The time
//! from the cluster being whole again (every node up, every partition's replicas in sync) to the
//! group's lag being under 1 s is printed per scenario (`lag_under_1s_after_whole_s` in the
//! `FAULTS-RESULT` line); it is a figure, never asserted.
//!
//! Also here, on the same cluster: the topics the processor creates get the cluster's replication
//! factor (or `topics.replication_factor`), the changelog `min.insync.replicas = 2`, and a
//! single-replica output topic is warned about at start.
//!
//! The cluster starts once per test process (`CLUSTER_FAULTS_BASE_PORT`, 20100: nodes on
//! 20101-20103, controllers on 20111-20113; data in /tmp/aepiot-kafka-cluster-faults, fresh per
//! run) and is stopped, and any packet filter removed, when the process exits, however it exits
//! (a watchdog; `FAULTS_KEEP_BROKER=1` keeps the cluster). Scenarios run one at a time. CI
//! (`cargo test`) runs scenarios 1 and 3 under exactly-once and the replication test; the others
//! are `#[ignore]`d: `scripts/faults.sh --cluster` runs them all.

mod common;
mod fault_harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use fault_harness::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

const PARTITIONS: i32 = 12;
const NODES: u32 = 3;
/// How long a killed broker stays down, and a black hole or the two-broker outage lasts.
const DOWN: Duration = Duration::from_secs(20);
const OUTAGE: Duration = Duration::from_secs(30);

/// About 300k events over 150 s: long enough that every fault lands mid-stream.
const LOAD: Load = Load {
    fleet_events: 270_000,
    fleet_devices: 5_000,
    hot_events: 30_000,
    hot_devices: 12,
    seconds: 150.0,
    rounds: 1,
};

// ------------------------------------------------------------------------------------ the cluster

struct Site {
    base_port: u16,
    dir: String,
}

static SITE: OnceLock<Site> = OnceLock::new();
static SUITE: Mutex<()> = Mutex::new(());

fn site() -> &'static Site {
    SITE.get().expect("suite() first")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

/// Broker settings for a test run: timed-out transactions aborted every second. Broker sessions
/// keep Kafka's 9 s, and consumer groups Kafka's defaults (45 s sessions, 5 s heartbeats), as
/// users run them: no instance dies here, so no member's session needs to expire quickly. With
/// 1 s heartbeats (the setting of the first runs) librdkafka times each heartbeat request out
/// after one interval, and a coordinator that stalled a second (a broker killed, a loaded
/// machine) left members that never reconciled again: `changelog_leader_in_restore_at_least_once`
/// saw its joining instance get no partition for 2 minutes (README, "Known problem").
const BROKER_PROPS: &str = "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000";

/// `scripts/kafka.sh cluster ARGS...` on the suite's cluster: its stdout.
fn cluster(args: &[&str]) -> String {
    let s = site();
    let out = Command::new("bash")
        .arg(script())
        .arg("cluster")
        .args(["--nodes", &NODES.to_string()])
        .args(args)
        .env("KAFKA_CLUSTER_BASE_PORT", s.base_port.to_string())
        .env("KAFKA_CLUSTER_DIR", &s.dir)
        .env("KAFKA_EXTRA_PROPS", BROKER_PROPS)
        .env_remove("KAFKA_PORT")
        .env_remove("KAFKA_DATA_DIR")
        .output()
        .expect("run scripts/kafka.sh cluster");
    assert!(
        out.status.success(),
        "scripts/kafka.sh cluster {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The nftables table of the black hole (scenario 4), per site.
fn nft_table() -> String {
    format!("aepiot_faults_{}", site().base_port)
}

/// Scenarios run one at a time. The first one claims the site, starts a fresh cluster and points
/// the common helpers (`common::brokers()`) at it.
fn suite() -> MutexGuard<'static, ()> {
    let guard = SUITE.lock().unwrap_or_else(|e| e.into_inner());
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        let base_port = std::env::var("CLUSTER_FAULTS_BASE_PORT")
            .map(|p| {
                p.parse::<u16>()
                    .expect("CLUSTER_FAULTS_BASE_PORT is a port")
            })
            .unwrap_or(20100);
        let dir = format!("/tmp/aepiot-kafka-cluster-faults-{base_port}");
        let _ = SITE.set(Site {
            base_port,
            dir: dir.clone(),
        });
        std::fs::create_dir_all(&dir).unwrap();
        let keep = std::env::var("FAULTS_KEEP_BROKER").unwrap_or_default();
        fault_harness::site::claim(
            &format!(
                "the cluster on ports {base_port}+ (CLUSTER_FAULTS_BASE_PORT gives a run another)"
            ),
            &format!("/tmp/aepiot-cluster-faults-{base_port}.lock"),
            &Path::new(&dir).join("test-children.pids"),
            r#"nft delete table inet "$NFT_TABLE" 2>/dev/null
               [ -n "$FAULTS_KEEP_BROKER" ] || bash "$KAFKA_SH" cluster stop"#,
            &[
                ("KAFKA_CLUSTER_BASE_PORT", base_port.to_string()),
                ("KAFKA_CLUSTER_DIR", dir.clone()),
                ("KAFKA_SH", script().display().to_string()),
                ("NFT_TABLE", nft_table()),
                ("FAULTS_KEEP_BROKER", keep),
            ],
        );
        // A black hole left by a run that died before its watchdog could act.
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &nft_table()])
            .output();
        let t = Instant::now();
        cluster(&["start", "--fresh"]);
        let addr = cluster(&["bootstrap"]);
        eprintln!(
            "cluster-faults: cluster {addr} (data {dir}) started in {:.1?}",
            t.elapsed()
        );
        // This runs first, under the suite lock.
        use_brokers(&addr);
        addr
    });
    guard
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("log_level", "0")
        .create()
        .unwrap()
}

/// Waits until every node is up and every partition of every topic has a leader and all its
/// replicas in sync: the cluster is whole again. Returns when that was first seen.
fn wait_whole(h: &mut Harness, timeout: Duration) -> Instant {
    let t = Instant::now();
    let admin = admin();
    loop {
        h.supervise();
        if let Ok(md) = admin.inner().fetch_metadata(None, Duration::from_secs(5)) {
            let lagging = md
                .topics()
                .iter()
                .flat_map(|t| t.partitions())
                .filter(|p| p.leader() < 0 || p.isr().len() < p.replicas().len())
                .count();
            if md.brokers().len() == NODES as usize && lagging == 0 {
                return Instant::now();
            }
        }
        assert!(
            t.elapsed() < timeout,
            "[{}] the cluster was not whole again within {timeout:?}",
            h.name
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Node ids (= node numbers) leading partitions of `topic`, with how many each leads.
fn leaders(topic: &str) -> HashMap<i32, usize> {
    let md = admin()
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut n = HashMap::new();
    for p in md.topics()[0].partitions() {
        *n.entry(p.leader()).or_default() += 1;
    }
    n
}

/// The node leading the most partitions of `topic`.
fn busiest_leader(topic: &str) -> u32 {
    let (node, _) = leaders(topic)
        .into_iter()
        .filter(|(id, _)| *id > 0)
        .max_by_key(|(id, n)| (*n, -id))
        .expect("a leader");
    node as u32
}

/// Node id of a group's or a transactional id's coordinator.
fn coordinator(kind: &str, id: &str) -> u32 {
    cluster(&["coordinator", kind, id])
        .parse()
        .expect("a node id")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Drops every packet to and from node `node`'s ports on loopback while it lives; the rules are
/// removed when it is dropped (and by the site's watchdog should the test process die first).
struct BlackHole {
    table: String,
}

impl BlackHole {
    fn new(node: u32) -> BlackHole {
        let s = site();
        let ports = [s.base_port as u32 + node, s.base_port as u32 + 10 + node];
        let table = nft_table();
        let hole = BlackHole {
            table: table.clone(),
        };
        let nft = |args: &str| {
            let out = Command::new("nft")
                .args(args.split(' '))
                .output()
                .expect("run nft (the nftables package)");
            assert!(
                out.status.success(),
                "nft {args}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        nft(&format!("add table inet {table}"));
        nft(&format!(
            "add chain inet {table} out {{ type filter hook output priority 0 ; policy accept ; }}"
        ));
        for p in ports {
            nft(&format!("add rule inet {table} out tcp dport {p} drop"));
            nft(&format!("add rule inet {table} out tcp sport {p} drop"));
        }
        hole
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        let out = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("cluster-faults: could not delete nft table {}", self.table);
        }
    }
}

// ------------------------------------------------------------------------------------ scenarios

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    RollingBrokers,
    KillLeader,
    KillCoordinators,
    BlackHole,
    TwoDown,
    ChangelogLeaderInRestore,
}

impl Fault {
    fn as_str(self) -> &'static str {
        match self {
            Fault::RollingBrokers => "cluster_rolling_restart",
            Fault::KillLeader => "cluster_kill_leader",
            Fault::KillCoordinators => "cluster_kill_coordinators",
            Fault::BlackHole => "cluster_black_hole",
            Fault::TwoDown => "cluster_two_down",
            Fault::ChangelogLeaderInRestore => "cluster_changelog_leader_in_restore",
        }
    }
}

/// Kills node `node`, keeps it down for `down`, starts it again; the fault's time goes to
/// `record.faults`, the restart's to `record.restarts`.
fn kill_and_restart(h: &mut Harness, record: &mut Record, node: u32, down: Duration, why: &str) {
    let t0 = Instant::now();
    cluster(&["kill", &node.to_string()]);
    h.log(format!("SIGKILL node {node} ({why})"));
    record.faults.push(t0);
    wait_watching(h, down);
    cluster(&["start-node", &node.to_string()]);
    h.log(format!("node {node} restarted, down {:.1?}", t0.elapsed()));
    record.restarts.push(Instant::now());
}

/// Sleeps `d` while watching the instances (none may exit).
fn wait_watching(h: &mut Harness, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        h.supervise();
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_scenario(mode: Mode, fault: Fault) {
    let _suite = suite();
    let name = format!(
        "{}-{}",
        fault.as_str(),
        match mode {
            Mode::AtLeastOnce => "alo",
            Mode::ExactlyOnce => "eos",
        }
    );
    let mut h = Harness::new(&name, mode, Settings::Default, PARTITIONS);
    let total = LOAD.fleet_events + LOAD.hot_events;
    let running = h.begin(LOAD);
    let mut record = Record::default();
    h.wait_input(total / 5, Duration::from_secs(120));
    let node_arg = |n: u32| n.to_string();
    match fault {
        Fault::RollingBrokers => {
            for node in 1..=NODES {
                let t0 = Instant::now();
                cluster(&["stop-node", &node_arg(node)]);
                h.log(format!(
                    "node {node} stopped (controlled shutdown) in {:.1?}",
                    t0.elapsed()
                ));
                record.faults.push(t0);
                cluster(&["start-node", &node_arg(node)]);
                record.restarts.push(Instant::now());
                // The next node goes only once this one has caught up, as an operator does.
                wait_whole(&mut h, Duration::from_secs(180));
                h.log(format!(
                    "node {node} back and in sync {:.1?} after its stop",
                    t0.elapsed()
                ));
            }
        }
        Fault::KillLeader => {
            let node = busiest_leader(&h.t.input);
            kill_and_restart(
                &mut h,
                &mut record,
                node,
                DOWN,
                "leads the most input partitions",
            );
        }
        Fault::KillCoordinators => {
            let node = coordinator("group", &h.t.group);
            kill_and_restart(&mut h, &mut record, node, DOWN, "the group coordinator");
            if mode == Mode::ExactlyOnce {
                wait_whole(&mut h, Duration::from_secs(180));
                let pid = h.instances[0].child.as_ref().expect("running").id();
                let txn = format!("{}-{}-{pid}", h.t.group, hostname());
                let node = coordinator("transaction", &txn);
                kill_and_restart(
                    &mut h,
                    &mut record,
                    node,
                    DOWN,
                    &format!("the transaction coordinator of {txn}"),
                );
            }
        }
        Fault::BlackHole => {
            let node = busiest_leader(&h.t.input);
            let t0 = Instant::now();
            let hole = BlackHole::new(node);
            h.log(format!(
                "node {node} black-holed (packets to and from its ports dropped)"
            ));
            record.faults.push(t0);
            wait_watching(&mut h, OUTAGE);
            drop(hole);
            h.log(format!(
                "node {node} reachable again after {:.1?}",
                t0.elapsed()
            ));
            record.restarts.push(Instant::now());
        }
        Fault::TwoDown => {
            let t0 = Instant::now();
            cluster(&["kill", "2"]);
            cluster(&["kill", "3"]);
            h.log("SIGKILL nodes 2 and 3: writes fail NOT_ENOUGH_REPLICAS");
            record.faults.push(t0);
            wait_watching(&mut h, OUTAGE);
            cluster(&["start-node", "2"]);
            cluster(&["start-node", "3"]);
            h.log(format!(
                "nodes 2 and 3 restarted, down {:.1?}",
                t0.elapsed()
            ));
            record.restarts.push(Instant::now());
        }
        Fault::ChangelogLeaderInRestore => {
            let changelog = format!("{}-{}-changelog", h.t.group, h.t.input);
            let node = busiest_leader(&changelog);
            let t0 = Instant::now();
            cluster(&["kill", &node_arg(node)]);
            record.faults.push(t0);
            // A fourth instance joins now: the partitions it gets are restored from a changelog
            // whose leaders are dead and not yet replaced (the broker session is 9 s).
            let joined = h.spawn_instance();
            h.log(format!(
                "SIGKILL node {node} (leads the most changelog partitions); {} joins and restores",
                h.instances[joined].name
            ));
            wait_watching(&mut h, DOWN);
            cluster(&["start-node", &node_arg(node)]);
            record.restarts.push(Instant::now());
            let took = h.wait_balanced(
                "four instances sharing the partitions",
                Duration::from_secs(120),
            );
            h.log(format!(
                "node {node} restarted; {} owns {:?} ({took:.1?})",
                h.instances[joined].name,
                h.instances[joined].assigned()
            ));
            let restored = h.instances[joined].log_text().contains("state restored");
            assert!(restored, "[{name}] the joining instance restored nothing");
        }
    }
    let whole = wait_whole(&mut h, Duration::from_secs(180));
    h.log(format!(
        "the cluster is whole again ({:.1?} after the fault)",
        whole - record.faults[0]
    ));
    record.whole_again.push(whole);
    h.finish(
        running,
        record,
        Expect {
            fault: fault.as_str(),
            exact_at_least_once: false,
        },
    );
}

/// One test per (fault, guarantee): `ci` ones run in `cargo test`, `opt` ones are `#[ignore]`d.
macro_rules! scenario {
    (ci $name:ident: $mode:ident, $fault:ident) => {
        #[test]
        fn $name() {
            run_scenario(Mode::$mode, Fault::$fault);
        }
    };
    (opt $name:ident: $mode:ident, $fault:ident) => {
        #[test]
        #[ignore = "cluster fault injection: scripts/faults.sh --cluster"]
        fn $name() {
            run_scenario(Mode::$mode, Fault::$fault);
        }
    };
}

// Issue 26 asks CI to run the rolling restart and the coordinators' SIGKILL under exactly-once.
// Both were out of CI on 2026-12-07 while an exactly-once commit stall was open: an instance's
// commit thread waited for ever in librdkafka's send_offsets_to_transaction for a group
// coordinator that had left the metadata (librdkafka #5456, #5511; found from the stacks this
// harness dumps, `processor::hung_call`). The call is bounded since; both run in CI again.
scenario!(ci rolling_brokers_exactly_once: ExactlyOnce, RollingBrokers);
scenario!(opt rolling_brokers_at_least_once: AtLeastOnce, RollingBrokers);
scenario!(opt kill_leader_at_least_once: AtLeastOnce, KillLeader);
scenario!(opt kill_leader_exactly_once: ExactlyOnce, KillLeader);
scenario!(opt kill_coordinators_at_least_once: AtLeastOnce, KillCoordinators);
scenario!(ci kill_coordinators_exactly_once: ExactlyOnce, KillCoordinators);
scenario!(opt black_hole_at_least_once: AtLeastOnce, BlackHole);
scenario!(opt black_hole_exactly_once: ExactlyOnce, BlackHole);
scenario!(opt two_down_at_least_once: AtLeastOnce, TwoDown);
scenario!(opt two_down_exactly_once: ExactlyOnce, TwoDown);
scenario!(opt changelog_leader_in_restore_at_least_once: AtLeastOnce, ChangelogLeaderInRestore);
scenario!(opt changelog_leader_in_restore_exactly_once: ExactlyOnce, ChangelogLeaderInRestore);

// ------------------------------------------------------------------------------------ replication

/// A topic's replication factor (the fewest replicas of any partition).
fn replicas(topic: &str) -> usize {
    let md = admin()
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .min()
        .unwrap_or(0)
}

/// A topic's own `min.insync.replicas` (set on the topic), if any.
fn topic_min_isr(topic: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(admin().describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
    let resource = r.into_iter().next().unwrap().unwrap();
    let entry = resource.get("min.insync.replicas")?;
    (entry.source == rdkafka::admin::ConfigSource::DynamicTopic)
        .then(|| entry.value.clone().unwrap_or_default())
}

/// Runs `aepiot-stream run --create-topics` on `t` with `env` until its changelog exists, then
/// stops it; returns its log.
fn run_until_created(t: &Topics, env: &[(&str, &str)]) -> String {
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.log", t.group));
    let mut child = Command::new(bin())
        .args(["run", "--brokers", brokers(), "--input-topics", &t.input])
        .args(["--output-topic", &t.output, "--dead-letter-topic", &t.dlq])
        .args([
            "--group-id",
            &t.group,
            "--metrics-addr",
            "",
            "--create-topics",
        ])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn aepiot-stream run");
    fault_harness::register_child(child.id());
    let changelog = format!("{}-{}-changelog", t.group, t.input);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let md = consumer
            .fetch_metadata(Some(&changelog), Duration::from_secs(5))
            .ok();
        if md.is_some_and(|m| {
            m.topics()
                .first()
                .is_some_and(|t| !t.partitions().is_empty())
        }) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the instance exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "no changelog {changelog} after 90 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "the instance exited {status}:\n{text}");
    text
}

/// Fresh names for `name` with only the input topic created (3 partitions, RF 3).
fn input_only(name: &str) -> Topics {
    let t = Topics {
        input: unique(&format!("{name}-in")),
        output: unique(&format!("{name}-out")),
        dlq: unique(&format!("{name}-dlq")),
        group: unique(&format!("{name}-group")),
    };
    create_topics(&[(&t.input, 3)]);
    t
}

#[test]
fn created_topics_get_the_clusters_replication_and_the_changelog_two_in_sync() {
    let _suite = suite();
    let t = input_only("rf-default");
    run_until_created(&t, &[]);
    let changelog = format!("{}-{}-changelog", t.group, t.input);
    for topic in [&t.output, &t.dlq, &changelog] {
        assert_eq!(
            replicas(topic),
            3,
            "{topic}: the cluster's default.replication.factor"
        );
    }
    assert_eq!(topic_min_isr(&changelog).as_deref(), Some("2"));

    // topics.replication_factor overrides the cluster's default; a changelog of 2 replicas gets no
    // min.insync.replicas of its own (2 of 2 would stop it at the first broker lost).
    let t = input_only("rf-two");
    run_until_created(&t, &[("AEPIOT_TOPICS__REPLICATION_FACTOR", "2")]);
    let changelog = format!("{}-{}-changelog", t.group, t.input);
    for topic in [&t.output, &t.dlq, &changelog] {
        assert_eq!(replicas(topic), 2, "{topic}: topics.replication_factor = 2");
    }
    assert_eq!(topic_min_isr(&changelog), None);
}

#[test]
fn a_single_replica_output_topic_on_a_cluster_is_warned_about_at_start() {
    let _suite = suite();
    let t = input_only("rf-one");
    // The output topic exists with one replica; the dead-letter topic and changelog are created.
    let admin = admin();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(admin.create_topics(
        [&rdkafka::admin::NewTopic::new(
            &t.output,
            3,
            rdkafka::admin::TopicReplication::Fixed(1),
        )],
        &AdminOptions::new(),
    ))
    .unwrap()
    .into_iter()
    .for_each(|r| {
        r.unwrap();
    });
    // The instance judges the topics it finds in its first metadata: a node that has not heard
    // of the new topic yet would have it created (already there, so quietly) and not warned about.
    for node in brokers().split(',') {
        wait_until(
            "every node knows the output topic",
            Duration::from_secs(30),
            || topic_exists_on(node, &t.output),
        );
    }
    let log = run_until_created(&t, &[]);
    let warned = |topic: &str| {
        log.lines()
            .any(|l| l.contains("single replica") && l.contains(topic))
    };
    assert!(warned(&t.output), "no warning about {}:\n{log}", t.output);
    assert!(
        !warned(&t.dlq),
        "a warning about the replicated {}:\n{log}",
        t.dlq
    );
}
