//! Kafka security on a real broker that this test starts (`scripts/kafka.sh` with
//! `KAFKA_EXTRA_PROPS`), with one listener of each kind:
//!
//! | listener       | port     | for                                                     |
//! |----------------|----------|---------------------------------------------------------|
//! | PLAINTEXT      | base     | set-up (topics, SCRAM users, input, checks), inter-broker |
//! | CONTROLLER     | base + 1 | KRaft                                                   |
//! | SASL_PLAINTEXT | base + 2 | SCRAM-SHA-256 and SCRAM-SHA-512                         |
//! | SSL            | base + 3 | TLS, server certificate made here with the openssl CLI  |
//! | SASL_SSL       | base + 4 | SCRAM-SHA-512 over TLS                                  |
//!
//! `base` is `SECURITY_TEST_KAFKA_PORT` (19492); the broker's data dir is
//! `SECURITY_TEST_KAFKA_DATA_DIR` (`/tmp/aepiot-kafka-sec-<base>`), wiped at start, and the broker
//! is stopped when the test ends (`SECURITY_TEST_KEEP_BROKER=1` keeps it for a look). It never
//! touches the shared broker on 9092. Needs `openssl`, `curl` and Java (as `scripts/kafka.sh`).
//!
//! Each case runs the real binary (`aepiot-stream run --config … --metrics-addr …`) as a
//! subprocess: the right credentials and the right CA process events end to end (committed offsets
//! reach the end); a wrong password and an untrusted certificate fail with a clear error, `/readyz`
//! stays 503 while the process runs, and it exits non-zero within 60 s. In every case all of
//! stdout, stderr, the `/metrics` text and the probes' bodies are searched for the passwords, and
//! so is `config check`.
//!
//! Without a broker (issue 13): links safe to render (`dashboard_url` through the real binary),
//! secrets that no error message or `config check` shows (every secret key as a number, a boolean
//! and inside broken TOML), and webhooks signed to the Standard Webhooks spec, verified with the
//! `standardwebhooks` package from PyPI (not this project's code), with the spec's status handling.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use common::standard_webhooks;
use common::{bin, generated, unique};

const USER: &str = "aepiot-svc";

// ---------------------------------------------------------------------------------------------
// The broker.

struct SecBroker {
    base: u16,
    data_dir: PathBuf,
    tls: PathBuf,
    /// The password of `USER` (both SCRAM mechanisms).
    password: String,
    extra_props: String,
}

impl SecBroker {
    fn plain(&self) -> String {
        format!("127.0.0.1:{}", self.base)
    }
    fn sasl(&self) -> String {
        format!("127.0.0.1:{}", self.base + 2)
    }
    fn ssl(&self) -> String {
        format!("127.0.0.1:{}", self.base + 3)
    }
    fn sasl_ssl(&self) -> String {
        format!("127.0.0.1:{}", self.base + 4)
    }

    fn kafka_sh(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
            .args(args)
            .env("KAFKA_PORT", self.base.to_string())
            .env("KAFKA_DATA_DIR", &self.data_dir)
            .env("KAFKA_EXTRA_PROPS", &self.extra_props)
            .env(
                "KAFKA_HEAP_OPTS",
                std::env::var("SECURITY_TEST_KAFKA_HEAP").unwrap_or("-Xms128m -Xmx512m".into()),
            )
            .output()
            .expect("run scripts/kafka.sh")
    }

    fn start() -> SecBroker {
        let base: u16 = std::env::var("SECURITY_TEST_KAFKA_PORT")
            .ok()
            .map(|p| p.parse().expect("SECURITY_TEST_KAFKA_PORT is a port"))
            .unwrap_or(19492);
        let data_dir = std::env::var("SECURITY_TEST_KAFKA_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(format!("/tmp/aepiot-kafka-sec-{base}")));
        let tls = data_dir.join("tls");
        let listeners = [
            ("PLAINTEXT", base),
            ("SASL_PLAINTEXT", base + 2),
            ("SSL", base + 3),
            ("SASL_SSL", base + 4),
        ];
        let advertised: Vec<String> = listeners
            .iter()
            .map(|(n, p)| format!("{n}://127.0.0.1:{p}"))
            .collect();
        let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
        let mut props = vec![
            format!(
                "listeners={},CONTROLLER://127.0.0.1:{}",
                advertised.join(","),
                base + 1
            ),
            format!("advertised.listeners={}", advertised.join(",")),
            "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512".into(),
        ];
        for l in ["sasl_plaintext", "sasl_ssl"] {
            for m in ["scram-sha-256", "scram-sha-512"] {
                props.push(format!("listener.name.{l}.{m}.sasl.jaas.config={jaas}"));
            }
        }
        // A PEM keystore: the unencrypted PKCS#8 key and the certificate chain in one file; no
        // ssl.key.password since the key is not encrypted. No client certificates.
        props.extend([
            "ssl.keystore.type=PEM".to_string(),
            format!(
                "ssl.keystore.location={}",
                tls.join("keystore.pem").display()
            ),
            "ssl.client.auth=none".into(),
        ]);
        let broker = SecBroker {
            base,
            data_dir,
            tls,
            password: format!("Pw{:x}x{}Zq", std::process::id(), now_ms()),
            extra_props: props.join("\n"),
        };
        // A broker left from an earlier, interrupted run of this test: stop it, start afresh.
        let _ = broker.kafka_sh(&["stop"]);
        let _ = std::fs::remove_dir_all(&broker.data_dir);
        std::fs::create_dir_all(&broker.tls).unwrap();
        make_certificates(&broker.tls);
        let out = broker.kafka_sh(&["start"]);
        assert!(
            out.status.success(),
            "security broker did not start:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // SCRAM credentials, through the PLAINTEXT listener. One mechanism per call: Kafka 4.4's
        // ConfigCommand turns `SCRAM-SHA-256=[…],SCRAM-SHA-512=[…]` into one request that the
        // broker refuses ("A user credential cannot be altered twice in the same request").
        for m in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let spec = format!("{m}=[iterations=4096,password={}]", broker.password);
            let out = broker.kafka_sh(&[
                "tool",
                "org.apache.kafka.tools.ConfigCommand",
                "--bootstrap-server",
                &broker.plain(),
                "--alter",
                "--add-config",
                &spec,
                "--entity-type",
                "users",
                "--entity-name",
                USER,
            ]);
            assert!(
                out.status.success(),
                "creating the {m} user failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The credentials reach the broker's authenticator asynchronously: wait until they work.
        for m in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let c: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", broker.sasl())
                    .set("security.protocol", "sasl_plaintext")
                    .set("sasl.mechanisms", m)
                    .set("sasl.username", USER)
                    .set("sasl.password", &broker.password)
                    .create()
                    .unwrap();
                if c.fetch_metadata(None, Duration::from_secs(3)).is_ok() {
                    break;
                }
                assert!(Instant::now() < deadline, "{m} login never succeeded");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        broker
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.join("kafka.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for SecBroker {
    fn drop(&mut self) {
        if std::env::var_os("SECURITY_TEST_KEEP_BROKER").is_none() {
            let _ = self.kafka_sh(&["stop"]);
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI (Debian package `openssl`)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, a server certificate for 127.0.0.1 and localhost signed by it, the broker's PEM
/// keystore, and a second CA that signed nothing (the "untrusted" one).
fn make_certificates(dir: &Path) {
    for (name, cn) in [
        ("ca", "aepiot-stream test CA"),
        ("other-ca", "some other CA"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let key = std::fs::read_to_string(dir.join("server.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    let chain = std::fs::read_to_string(dir.join("server.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    std::fs::write(dir.join("keystore.pem"), key + &chain).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Plaintext helpers (set-up and checks go through the PLAINTEXT listener).

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
    for (t, p) in topics {
        wait_for("topic metadata", Duration::from_secs(30), || {
            admin
                .inner()
                .fetch_metadata(Some(t), Duration::from_secs(5))
                .is_ok_and(|m| m.topics()[0].partitions().len() == *p as usize)
        });
    }
}

fn produce(bootstrap: &str, topic: &str, records: &[(Option<Vec<u8>>, Option<Vec<u8>>)]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = client(bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (k, v) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = k {
            r = r.key(k.as_slice());
        }
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn end_offsets(bootstrap: &str, topic: &str) -> HashMap<i32, i64> {
    let c: BaseConsumer = client(bootstrap).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (_, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            (p.id(), high)
        })
        .collect()
}

fn all_committed(bootstrap: &str, group: &str, topic: &str) -> bool {
    let end = end_offsets(bootstrap, topic);
    let c: BaseConsumer = client(bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in end.keys() {
        tpl.add_partition(topic, *p);
    }
    let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(10)) else {
        return false;
    };
    got.elements().iter().all(|e| {
        let end = end[&e.partition()];
        end == 0 || e.offset() == Offset::Offset(end)
    })
}

fn consume_all(bootstrap: &str, topic: &str) -> Vec<OwnedMessage> {
    let end = end_offsets(bootstrap, topic);
    let total: i64 = end.values().sum();
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", unique("sec-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in end.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < total && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// The binary under test.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl` a URL: (status, body); status 0 when nothing answered.
fn curl(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "3", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A running `aepiot-stream run`, its stdout and stderr collected as they come.
struct Run {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The threads reading stdout and stderr: joined once the process has exited, so that the
    /// output read afterwards is all of it.
    readers: Vec<std::thread::JoinHandle<()>>,
    base_url: String,
    started: Instant,
    /// Everything the HTTP server answered (bodies), to be searched for secrets too.
    http_seen: String,
}

fn spawn_run(config: &Path, env: &[(&str, &str)]) -> Run {
    spawn_command("run", config, env)
}

/// `aepiot-stream SUBCOMMAND --config CONFIG` with only `env` of the `AEPIOT_*` variables, its
/// output collected.
fn spawn_command(subcommand: &str, config: &Path, env: &[(&str, &str)]) -> Run {
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.args([subcommand, "--config", config.to_str().unwrap()])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    // Only this case's settings: none inherited from the environment of the test.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AEPIOT_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn aepiot-stream");
    let mut readers = Vec::new();
    let mut collect = |mut r: Box<dyn Read + Send>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        readers.push(std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        }));
        buf
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    Run {
        child,
        stdout,
        stderr,
        readers,
        base_url: format!("http://127.0.0.1:{port}"),
        started: Instant::now(),
        http_seen: String::new(),
    }
}

impl Run {
    fn get(&mut self, path: &str) -> (u16, String) {
        let (code, body) = curl(&format!("{}{path}", self.base_url));
        self.http_seen.push_str(&body);
        (code, body)
    }

    /// stdout and stderr so far; all of them once the process has exited (the reader threads
    /// are joined: they end at the pipes' end of file).
    fn output(&mut self) -> String {
        if self.child.try_wait().unwrap().is_some() {
            for r in self.readers.drain(..) {
                r.join().expect("output reader thread");
            }
        }
        let mut s = String::from_utf8_lossy(&self.stdout.lock().unwrap()).to_string();
        s.push_str(&String::from_utf8_lossy(&self.stderr.lock().unwrap()));
        s
    }

    /// Waits for the exit, at most `limit` after the start; kills it and fails past that.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {limit:?}; output:\n{}",
                    tail(&self.output())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sigterm(&self) {
        common::sigterm(&self.child);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The value of a sample in Prometheus text (`name{labels}` as printed).
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in:\n{text}"))
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "{what}: the secret {s:?} appears in:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

struct Case {
    name: &'static str,
    /// `[security]` table (TOML lines).
    security: String,
    brokers: String,
    env: Vec<(&'static str, String)>,
    /// Lines the output must have (e.g. proof that debug logging was on).
    expect_in_output: Vec<&'static str>,
}

fn config_file(dir: &Path, case: &Case, group: &str, t: &(String, String, String)) -> PathBuf {
    let path = dir.join(format!("{}.toml", case.name));
    std::fs::write(
        &path,
        format!(
            "brokers = \"{}\"\ninput_topics = [\"{}\"]\noutput_topic = \"{}\"\n\
             dead_letter_topic = \"{}\"\ngroup_id = \"{group}\"\nemit_suppressed = true\n\
             progress_interval_secs = 1\nstartup_timeout_ms = 30000\n\n[security]\n{}\n",
            case.brokers, t.0, t.1, t.2, case.security
        ),
    )
    .unwrap();
    path
}

fn topics_for(b: &SecBroker, name: &str) -> (String, String, String) {
    let t = (
        unique(&format!("sec-{name}-in")),
        unique(&format!("sec-{name}-out")),
        unique(&format!("sec-{name}-dlq")),
    );
    create_topics(&b.plain(), &[(&t.0, 3), (&t.1, 3), (&t.2, 1)]);
    t
}

/// The right credentials: events in → one URL record per event out, offsets committed to the
/// end, `/readyz` 200, a clean exit on SIGTERM.
fn end_to_end(b: &SecBroker, dir: &Path, case: &Case, secrets: &[&str]) {
    let t = topics_for(b, case.name);
    let group = unique(&format!("sec-{}-group", case.name));
    let n = 200;
    let mut input = generated(n, 40, 7);
    input.push((Some(b"bad".to_vec()), Some(b"not json".to_vec())));
    produce(&b.plain(), &t.0, &input);
    let config = config_file(dir, case, &group, &t);
    let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut run = spawn_run(&config, &env);

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ready = false;
    while !(ready && all_committed(&b.plain(), &group, &t.0)) {
        if let Some(status) = run.child.try_wait().unwrap() {
            panic!(
                "{}: exited early ({status}):\n{}\n--- broker log ---\n{}",
                case.name,
                tail(&run.output()),
                b.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{}: offsets not committed to the end within 90 s:\n{}",
            case.name,
            tail(&run.output())
        );
        ready = ready || run.get("/readyz").0 == 200;
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, metrics) = run.get("/metrics");
    assert_eq!(code, 200);
    run.sigterm();
    let status = run.wait_exit(Duration::from_secs(150));
    let output = run.output();
    assert!(
        status.success(),
        "{}: exit {status}:\n{}",
        case.name,
        tail(&output)
    );
    for e in &case.expect_in_output {
        assert!(output.contains(e), "{}: no {e:?} in the output", case.name);
    }

    // Every input offset is exactly one URL record or dead letter (the generator makes ~1 %
    // invalid events, and one "not json" was added).
    let outputs = consume_all(&b.plain(), &t.1);
    let letters = consume_all(&b.plain(), &t.2);
    assert_eq!(outputs.len() + letters.len(), input.len(), "{}", case.name);
    assert!(
        !letters.is_empty() && outputs.len() >= n * 9 / 10,
        "{}",
        case.name
    );
    let invalid = metric(&metrics, "aepiot_events_total{outcome=\"invalid\"}");
    assert_eq!(invalid, letters.len() as f64, "{}: {metrics}", case.name);
    let mut sources = HashSet::new();
    for m in outputs.iter().chain(&letters) {
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if v["status"] == "success" {
            assert_eq!(v["urls"].as_array().unwrap().len(), 4, "{v}");
            assert!(v["regional_url"].as_str().unwrap().starts_with("https://"));
        }
        sources.insert((
            v["source"]["partition"].as_i64().unwrap(),
            v["source"]["offset"].as_i64().unwrap(),
        ));
    }
    assert_eq!(
        sources.len(),
        input.len(),
        "{}: one output per input",
        case.name
    );

    assert_no_secret(case.name, &output, secrets);
    assert_no_secret(&format!("{} /metrics", case.name), &run.http_seen, secrets);
}

/// A refused connection: a clear error naming `expect` (any of), `/readyz` 503 (never 200) while
/// the process runs, a non-zero exit within 60 s.
fn refused(b: &SecBroker, dir: &Path, case: &Case, expect: &[&str], secrets: &[&str]) {
    let t = topics_for(b, case.name);
    let group = unique(&format!("sec-{}-group", case.name));
    let config = config_file(dir, case, &group, &t);
    let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut run = spawn_run(&config, &env);
    let mut codes = Vec::new();
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            run.started.elapsed() < Duration::from_secs(60),
            "{}: still running after 60 s:\n{}",
            case.name,
            tail(&run.output())
        );
        let (code, _) = run.get("/readyz");
        if code != 0 {
            codes.push(code);
        }
        if codes.len() == 1 {
            let (code, metrics) = run.get("/metrics");
            assert!(
                code == 0 || metrics.contains("aepiot_events_total"),
                "{metrics}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = run.started.elapsed();
    let output = run.output();
    assert!(
        !status.success(),
        "{}: exit 0:\n{}",
        case.name,
        tail(&output)
    );
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == 503),
        "{}: /readyz answered {codes:?}",
        case.name
    );
    let last = refused_error_line(case, &output, expect);
    eprintln!(
        "{}: exit {status} after {:.1} s, /readyz {} x 503; {last}",
        case.name,
        elapsed.as_secs_f64(),
        codes.len()
    );
    assert_no_secret(case.name, &output, secrets);
    assert_no_secret(&format!("{} http", case.name), &run.http_seen, secrets);
}

/// The process's last `error:` line, which must say the connection was refused and name one of
/// `expect` (the reason).
fn refused_error_line<'a>(case: &Case, output: &'a str, expect: &[&str]) -> &'a str {
    let last = output
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{}: no error line:\n{}", case.name, tail(output)));
    assert!(
        expect.iter().any(|e| last.contains(e)) && last.contains("refused"),
        "{}: unclear error: {last}",
        case.name
    );
    last
}

/// The webhook service with credentials the broker refuses: it stops on its own, saying the
/// connection was refused and why (it used to retry a refused password until its start-up timeout
/// and then report only "cannot reach the Kafka brokers"), and prints no secret.
fn webhooks_refused(b: &SecBroker, dir: &Path, case: &Case, expect: &[&str], secrets: &[&str]) {
    let t = topics_for(b, case.name);
    let group = unique(&format!("sec-{}-group", case.name));
    let config = config_file(dir, case, &group, &t);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:9/hook\"\n");
    std::fs::write(&config, text).unwrap();
    let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut service = spawn_command("webhooks", &config, &env);
    let status = service.wait_exit(Duration::from_secs(60));
    let output = service.output();
    assert!(
        !status.success(),
        "{}: exit 0:\n{}",
        case.name,
        tail(&output)
    );
    let last = refused_error_line(case, &output, expect);
    eprintln!("{} (webhooks): exit {status}; {last}", case.name);
    assert_no_secret(case.name, &output, secrets);
}

fn config_check(dir: &Path, name: &str, toml: &str, env: &[(&str, &str)], secrets: &[&str]) {
    let path = dir.join(format!("check-{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["config", "check", "--config", path.to_str().unwrap()]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AEPIOT_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "config check {name}: {text}");
    assert!(
        text.contains("sasl_password = \"[redacted]\""),
        "{name}: {text}"
    );
    assert_no_secret(&format!("config check {name}"), &text, secrets);
}

#[test]
fn scram_and_tls_on_a_real_broker() {
    let b = SecBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = b.password.clone();
    let wrong = format!("Wrong{}Pw", now_ms());
    let secrets = [pw.as_str(), wrong.as_str()];
    let pw_file = dir.path().join("sasl-password");
    std::fs::write(&pw_file, format!("{pw}\n")).unwrap();
    let ca = b.tls.join("ca.pem");
    let other_ca = b.tls.join("other-ca.pem");

    // `config check` never prints the password, wherever it comes from.
    let sasl = format!(
        "[security]\nprotocol = \"sasl_ssl\"\nsasl_username = \"{USER}\"\nssl_ca_location = \"{}\"\n",
        ca.display()
    );
    config_check(
        dir.path(),
        "inline",
        &format!("{sasl}sasl_password = \"{pw}\"\n"),
        &[],
        &secrets,
    );
    config_check(
        dir.path(),
        "env",
        &sasl,
        &[("AEPIOT_SECURITY__SASL_PASSWORD", pw.as_str())],
        &secrets,
    );
    config_check(
        dir.path(),
        "file",
        &format!("{sasl}sasl_password_file = \"{}\"\n", pw_file.display()),
        &[],
        &secrets,
    );

    let sasl_case = |name, mechanism: &str, brokers: String, protocol: &str, extra: String| {
        Case {
        name,
        security: format!(
            "protocol = \"{protocol}\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"{USER}\"\n{extra}"
        ),
        brokers,
        env: vec![],
        expect_in_output: vec![],
    }
    };
    let mut scram256 = sasl_case(
        "scram256",
        "SCRAM-SHA-256",
        b.sasl(),
        "sasl_plaintext",
        String::new(),
    );
    scram256
        .env
        .push(("AEPIOT_SECURITY__SASL_PASSWORD", pw.clone()));
    let mut scram512 = sasl_case(
        "scram512",
        "SCRAM-SHA-512",
        b.sasl(),
        "sasl_plaintext",
        format!("sasl_password_file = \"{}\"", pw_file.display()),
    );
    // Debug logging everywhere, librdkafka's own configuration and security debug included:
    // the password must not show even there.
    scram512.env.push(("RUST_LOG", "debug".into()));
    scram512
        .env
        .push(("AEPIOT_KAFKA__DEBUG", "conf,security".into()));
    scram512.expect_in_output = vec!["sasl.password = [redacted]", "SCRAM-SHA-512"];
    let tls = Case {
        name: "tls",
        security: format!(
            "protocol = \"ssl\"\nssl_ca_location = \"{}\"\nssl_verify_hostname = true",
            ca.display()
        ),
        brokers: b.ssl(),
        env: vec![],
        expect_in_output: vec![],
    };
    let sasl_ssl = sasl_case(
        "sasl_ssl",
        "SCRAM-SHA-512",
        b.sasl_ssl(),
        "sasl_ssl",
        format!(
            "sasl_password = \"{pw}\"\nssl_ca_location = \"{}\"\nssl_verify_hostname = true",
            ca.display()
        ),
    );
    let mut wrong_pw = sasl_case(
        "wrong_password",
        "SCRAM-SHA-256",
        b.sasl(),
        "sasl_plaintext",
        String::new(),
    );
    wrong_pw
        .env
        .push(("AEPIOT_SECURITY__SASL_PASSWORD", wrong.clone()));
    let mut wrong_pw_512 = sasl_case(
        "wrong_password_512_tls",
        "SCRAM-SHA-512",
        b.sasl_ssl(),
        "sasl_ssl",
        format!(
            "ssl_ca_location = \"{}\"\nssl_verify_hostname = true",
            ca.display()
        ),
    );
    wrong_pw_512
        .env
        .push(("AEPIOT_SECURITY__SASL_PASSWORD", wrong.clone()));
    let mut webhooks_wrong_pw = sasl_case(
        "webhooks_wrong_password",
        "SCRAM-SHA-256",
        b.sasl(),
        "sasl_plaintext",
        String::new(),
    );
    webhooks_wrong_pw
        .env
        .push(("AEPIOT_SECURITY__SASL_PASSWORD", wrong.clone()));
    let other_ca_case = Case {
        name: "untrusted_other_ca",
        security: format!(
            "protocol = \"ssl\"\nssl_ca_location = \"{}\"\nssl_verify_hostname = true",
            other_ca.display()
        ),
        brokers: b.ssl(),
        env: vec![],
        expect_in_output: vec![],
    };
    let no_ca_case = Case {
        name: "untrusted_no_ca",
        security: "protocol = \"ssl\"\nssl_verify_hostname = true".into(),
        brokers: b.ssl(),
        env: vec![],
        expect_in_output: vec![],
    };
    // A correct password over TLS that the client does not trust: refused before any SASL.
    let mut untrusted_sasl = sasl_case(
        "untrusted_sasl_ssl",
        "SCRAM-SHA-512",
        b.sasl_ssl(),
        "sasl_ssl",
        format!("ssl_ca_location = \"{}\"", other_ca.display()),
    );
    untrusted_sasl
        .env
        .push(("AEPIOT_SECURITY__SASL_PASSWORD", pw.clone()));

    let auth = ["uthentication"];
    let cert = ["certificate verify failed"];
    // The cases run side by side (each has its own topics and group); failures are collected.
    let results: Vec<(&str, std::thread::Result<()>)> = std::thread::scope(|s| {
        let d = dir.path();
        let secrets = &secrets;
        let b = &b;
        let handles = vec![
            ("scram256", s.spawn(|| end_to_end(b, d, &scram256, secrets))),
            ("scram512", s.spawn(|| end_to_end(b, d, &scram512, secrets))),
            ("tls", s.spawn(|| end_to_end(b, d, &tls, secrets))),
            ("sasl_ssl", s.spawn(|| end_to_end(b, d, &sasl_ssl, secrets))),
            (
                "wrong_password",
                s.spawn(|| refused(b, d, &wrong_pw, &auth, secrets)),
            ),
            (
                "wrong_password_512_tls",
                s.spawn(|| refused(b, d, &wrong_pw_512, &auth, secrets)),
            ),
            (
                "untrusted_other_ca",
                s.spawn(|| refused(b, d, &other_ca_case, &cert, secrets)),
            ),
            (
                "untrusted_no_ca",
                s.spawn(|| refused(b, d, &no_ca_case, &cert, secrets)),
            ),
            (
                "untrusted_sasl_ssl",
                s.spawn(|| refused(b, d, &untrusted_sasl, &cert, secrets)),
            ),
            (
                "webhooks_wrong_password",
                s.spawn(|| webhooks_refused(b, d, &webhooks_wrong_pw, &auth, secrets)),
            ),
        ];
        handles.into_iter().map(|(n, h)| (n, h.join())).collect()
    });
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    assert!(
        failed.is_empty(),
        "failed cases: {failed:?} (see the panics above)\n--- broker log ---\n{}",
        b.log_tail()
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 13: safe links, secrets never printed, Standard Webhooks signatures. No broker needed.

/// Runs `aepiot-stream process` on `lines` (with `config`, if any); returns the URL records and
/// the dead letters.
fn process(
    lines: &[String],
    config: Option<&str>,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, dead) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("dead"),
    );
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "process",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ])
    .args(["--dead-letter", dead.to_str().unwrap()]);
    if let Some(text) = config {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        cmd.args(["--config", path.to_str().unwrap()]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    (read(&output), read(&dead))
}

/// The `link` parameter of a URL, decoded.
fn link_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "link")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

#[test]
fn backlinks_only_ever_link_to_http_hosts() {
    let event = |i: usize, link: &serde_json::Value| {
        serde_json::json!({"device_id": format!("d{i}"), "dashboard_url": link}).to_string()
    };
    let hostile: Vec<serde_json::Value> = [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(document.cookie)",
        " javascript:alert(1)",
        " https://dash.example.com/",
        "https://dash.example.com/ ",
        "\u{1}https://dash.example.com/",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/phish",
        "/devices/d1",
        "devices/d1",
        "https:evil.example",
        "https:///evil.example",
        "ftp://files.example/",
        "",
    ]
    .iter()
    .map(|s| serde_json::json!(s))
    .chain([
        serde_json::json!(42),
        serde_json::json!(true),
        serde_json::json!({"href": "https://x.example"}),
    ])
    .collect();
    let valid = [
        "https://grafana.plant3.example/d/abc?var-device=28&from=now-1h",
        "HTTP://Dash.Example.org/devices/vibration anomalytab\tsep/door/open",
        "https://dash.example.org/devices/温度警报#frag",
    ];
    let mut lines: Vec<String> = hostile
        .iter()
        .enumerate()
        .map(|(i, l)| event(i, l))
        .collect();
    lines.extend(
        valid
            .iter()
            .enumerate()
            .map(|(i, l)| event(100 + i, &serde_json::json!(l))),
    );
    let (records, dead) = process(&lines, None);

    assert_eq!(dead.len(), hostile.len(), "{dead:?}");
    for d in &dead {
        let e = &d["error"];
        assert_eq!(
            (e["kind"].as_str(), e["field"].as_str()),
            (Some("invalid_field"), Some("dashboard_url")),
            "{d}"
        );
    }
    assert_eq!(records.len(), valid.len());
    for (r, want) in records.iter().zip(valid) {
        // Kept byte for byte in all four distributed URLs and the regional one.
        let urls = r["urls"].as_array().unwrap();
        assert_eq!(urls.len(), 4);
        for u in urls.iter().chain([&r["regional_url"]]) {
            assert_eq!(link_of(u.as_str().unwrap()), want);
        }
    }

    // With urls.allowed_link_hosts, only those hosts (and the default link) pass.
    let config = "[urls]\nallowed_link_hosts = [\"*.plant3.example\", \"dashboard.example.com\"]\n";
    let lines: Vec<String> = [
        "https://grafana.plant3.example/d/abc",
        "https://plant3.example/",
        "https://evil.example/",
        "https://grafana.plant3.example.evil.example/",
        "https://grafana.plant3.example@evil.example/",
    ]
    .iter()
    .enumerate()
    .map(|(i, l)| event(i, &serde_json::json!(l)))
    .chain([r#"{"device_id":"no-link"}"#.to_string()])
    .collect();
    let (records, dead) = process(&lines, Some(config));
    let devices: Vec<&str> = records
        .iter()
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["d0", "no-link"]);
    assert_eq!(dead.len(), 4);
    assert!(dead.iter().all(|d| d["error"]["field"] == "dashboard_url"
        && d["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_link_hosts")));

    // A bad base URL or pattern stops the program at start.
    for config in [
        "[urls]\ndashboard_base_url = \"javascript:alert(1)\"\n",
        "[urls]\ndashboard_base_url = \" https://dashboard.example.com\"\n",
        "[urls]\nallowed_link_hosts = [\"grafana.example.com\"]\n",
        "[urls]\nallowed_link_hosts = [\"https://grafana.example.com/\"]\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(bin())
            .args(["config", "check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("urls."),
            "{config}: {err}"
        );
    }
}

/// Every secret-bearing key, as the environment names it and as TOML writes it.
const SECRET_KEYS: [(&str, &str); 6] = [
    (
        "AEPIOT_SECURITY__SASL_PASSWORD",
        "[security]\nsasl_password",
    ),
    (
        "AEPIOT_SECURITY__SSL_KEY_PASSWORD",
        "[security]\nssl_key_password",
    ),
    ("AEPIOT_KAFKA__SASL_PASSWORD", "[kafka]\n\"sasl.password\""),
    (
        "AEPIOT_KAFKA__SSL_KEY_PASSWORD",
        "[kafka]\n\"ssl.key.password\"",
    ),
    (
        "AEPIOT_KAFKA__SSL_KEYSTORE_PASSWORD",
        "[kafka]\n\"ssl.keystore.password\"",
    ),
    (
        "AEPIOT_KAFKA__SASL_OAUTHBEARER_CLIENT_SECRET",
        "[kafka]\n\"sasl.oauthbearer.client.secret\"",
    ),
];

/// `aepiot-stream config check` with `toml` and `env`: (success, stdout + stderr).
fn check_config(toml: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(bin())
        .args(["config", "check", "--config", path.to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn no_message_ever_shows_a_secret() {
    for (var, toml_key) in SECRET_KEYS {
        // What `config check` prints for the key: `sasl_password = "[redacted]"`.
        let redacted = format!("{} = \"[redacted]\"", toml_key.split('\n').nth(1).unwrap());
        // From the environment: a string whatever it looks like, redacted by `config check`
        // (booleans: `true` and `false` appear elsewhere in the output, so the line is checked).
        for value in ["123456", "918273645", "true", "false", "4.5e1"] {
            let (ok, text) = check_config("", &[(var, value)]);
            assert!(ok, "{var}={value}: {text}");
            assert!(text.contains(&redacted), "{var}={value}: {text}");
            if value.starts_with(char::is_numeric) {
                assert!(!text.contains(value), "{var}={value}: {text}");
            }
        }
        // In the file: a number or a boolean is refused without being shown, or (`[kafka]`
        // properties are all strings to librdkafka) taken and redacted.
        for value in ["918273645", "true", "false", "-918273645.5"] {
            let (ok, text) = check_config(&format!("{toml_key} = {value}\n"), &[]);
            assert!(!text.contains("918273645"), "{toml_key} = {value}: {text}");
            if ok {
                assert!(
                    toml_key.starts_with("[kafka]") && text.contains(&redacted),
                    "{text}"
                );
            } else {
                assert!(
                    text.contains("the value is not shown"),
                    "{toml_key} = {value}: {text}"
                );
            }
        }
        for broken in [
            format!("{toml_key} = \"Hunter2pw\n"),
            format!("{toml_key} = Hunter2pw\n"),
            format!("{toml_key} = 'Hunter2pw\n"),
            format!("{toml_key} = \"Hunter2pw\" trailing\n"),
            format!("{toml_key} = \"Hunter2pw\"\n{toml_key} = \"Hunter2pw\"\n"),
            format!("{toml_key} = \"\"\"Hunter2pw\n"),
            format!("{toml_key} = [\"Hunter2pw\",\n"),
            format!("{toml_key} = 918273645x\n"),
        ] {
            let (ok, text) = check_config(&broken, &[]);
            assert!(!ok, "{broken:?} loaded");
            assert!(
                text.contains("not valid TOML") && text.contains("line "),
                "{broken:?}: {text}"
            );
            for secret in ["Hunter2pw", "Hunter2", "918273645"] {
                assert!(!text.contains(secret), "{broken:?}: {text}");
            }
        }
    }

    // Webhook URLs: scheme, host and port; never the path, query or credentials.
    let (ok, text) = check_config(
        "[[webhooks.endpoints]]\nurl = \"https://hooks.slack.com/services/T0AAAA/B0BBBB/XyzSlackToken\"\n\
         [[webhooks.endpoints]]\nurl = \"https://bot:BasicPw@hooks.example:8443/hook?token=QueryToken\"\n",
        &[],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("url = \"https://hooks.slack.com:443/[redacted]\""),
        "{text}"
    );
    assert!(
        text.contains("url = \"https://hooks.example:8443/[redacted]\""),
        "{text}"
    );
    for secret in [
        "T0AAAA",
        "XyzSlackToken",
        "BasicPw",
        "QueryToken",
        "services",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Captured {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A receiver answering by path: `/ok` 204, `/moved` 302 (to `/elsewhere`), `/gone` 410,
/// `/status/<code>/<retry-after>` that status with that `Retry-After`.
async fn spec_receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<Captured>>>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                let path = uri.path().to_string();
                log.lock().unwrap().push(Captured {
                    path: path.clone(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                        .collect(),
                    body: body.to_vec(),
                });
                let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                match parts.as_slice() {
                    ["ok"] => StatusCode::NO_CONTENT.into_response(),
                    ["moved"] => (StatusCode::FOUND, [("location", "/elsewhere")]).into_response(),
                    ["gone"] => StatusCode::GONE.into_response(),
                    ["status", code, after] => (
                        StatusCode::from_u16(code.parse().unwrap()).unwrap(),
                        [("retry-after", after.to_string())],
                        "later",
                    )
                        .into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn received(c: &Captured) -> standard_webhooks::Received {
    standard_webhooks::Received {
        headers: c.headers.clone(),
        body: c.body.clone(),
    }
}

fn header<'a>(c: &'a Captured, name: &str) -> Option<&'a str> {
    c.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_to_the_standard_webhooks_spec() {
    use aepiot_stream::webhook::policy::{Attempt, RetryPolicy, Verdict};
    use aepiot_stream::webhook::request::{self, Request};
    use aepiot_stream::webhook::sign::Secret;

    let (addr, seen) = spec_receiver().await;
    let client = request::client(Duration::from_secs(5), 4).unwrap();
    let (current, previous) = (standard_webhooks::secret(11), standard_webhooks::secret(12));
    // A secret source during a rotation: both keys, one a line.
    let secret = Secret::parse(&format!("{current}\n{previous}\n")).unwrap();
    let body = br#"{"aepiot_url":"https://aepiot.com/backlink.html?title=a","device_id":"d1"}"#;
    let url = |path: &str| reqwest::Url::parse(&format!("http://{addr}{path}")).unwrap();
    let ok = url("/ok");
    let send = |u: &reqwest::Url, attempt: u32| {
        let client = client.clone();
        let (u, secret) = (u.clone(), secret.clone());
        async move {
            request::post(
                &client,
                &Request {
                    url: &u,
                    body,
                    webhook_id: "aepiot-urls-3-1042",
                    secret: Some(&secret),
                    attempt,
                    traceparent: None,
                    tracestate: None,
                },
            )
            .await
        }
    };

    // Two attempts of one record, a second apart: the same id, each its own timestamp.
    let first = send(&ok, 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = send(&ok, 2).await;
    for sent in [&first, &second] {
        assert_eq!(
            sent.attempt,
            Attempt::Response {
                status: 204,
                retry_after: None
            }
        );
    }
    let got: Vec<Captured> = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for c in &got {
        assert_eq!(header(c, "webhook-id"), Some("aepiot-urls-3-1042"));
        let ts: u64 = header(c, "webhook-timestamp").unwrap().parse().unwrap();
        assert!(ts <= now && now - ts < 30, "{ts} vs {now}");
        let sig = header(c, "webhook-signature").unwrap();
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2, "one signature per key: {sig}");
        assert!(parts.iter().all(|p| p.starts_with("v1,")), "{sig}");
        // The old scheme is gone, and nothing unsigned claims to identify the record.
        for old in ["x-aepiot-signature", "idempotency-key"] {
            assert_eq!(header(c, old), None, "{old}");
        }
        assert_eq!(c.body, body);
    }
    assert_ne!(
        header(&got[0], "webhook-timestamp"),
        header(&got[1], "webhook-timestamp")
    );

    // The reference library verifies every request with either key of the rotation.
    let requests: Vec<_> = got.iter().map(received).collect();
    for key in [&current, &previous] {
        for verdict in standard_webhooks::verify(key, &requests) {
            assert_eq!(verdict, Ok(()));
        }
    }
    // And refuses what was not signed so: another key, a changed body, id or timestamp.
    let tamper = |f: &dyn Fn(&mut standard_webhooks::Received)| {
        let mut r = received(&got[0]);
        f(&mut r);
        r
    };
    let set = |name: &'static str, value: String| {
        move |r: &mut standard_webhooks::Received| {
            for (k, v) in r.headers.iter_mut() {
                if k == name {
                    *v = value.clone();
                }
            }
        }
    };
    let ts0: u64 = header(&got[0], "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let forged = [
        tamper(&|r| r.body.extend_from_slice(b" ")),
        tamper(&set("webhook-id", "aepiot-urls-3-1043".into())),
        tamper(&set("webhook-timestamp", (ts0 + 1).to_string())),
        // A replay long after: refused for its age, whatever the signature.
        tamper(&set("webhook-timestamp", (ts0 - 600).to_string())),
    ];
    for (i, verdict) in standard_webhooks::verify(&current, &forged)
        .into_iter()
        .enumerate()
    {
        assert!(verdict.is_err(), "forgery {i} verified");
    }
    assert!(standard_webhooks::verify(&standard_webhooks::secret(13), &requests[..1])[0].is_err());

    // Responses, as the spec suggests: 2xx delivered; 3xx a failure, not followed; 410 not
    // retried; 429, 502, 503, 504 retried after their Retry-After.
    let policy = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
        retry_after_max: Duration::from_secs(60),
    };
    let cases: [(&str, Verdict); 7] = [
        ("/ok", Verdict::Delivered),
        ("/moved", Verdict::GiveUp { retryable: false }),
        ("/gone", Verdict::GiveUp { retryable: false }),
        ("/status/429/7", Verdict::Retry(Duration::from_secs(7))),
        ("/status/502/3", Verdict::Retry(Duration::from_secs(3))),
        ("/status/503/2", Verdict::Retry(Duration::from_secs(2))),
        ("/status/504/4", Verdict::Retry(Duration::from_secs(4))),
    ];
    for (path, want) in cases {
        let sent = send(&url(path), 1).await;
        assert_eq!(
            policy.decide(1, &sent.attempt, 0.5),
            want,
            "{path}: {}",
            sent.error
        );
    }
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.path.clone())
        .collect();
    assert!(
        !paths.iter().any(|p| p == "/elsewhere"),
        "a redirect was followed: {paths:?}"
    );
}

#[test]
fn a_malformed_webhook_secret_stops_the_service_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let secret_file = dir.path().join("secret");
    std::fs::write(
        &config,
        format!(
            "brokers = \"127.0.0.1:1\"\nmetrics_addr = \"\"\n\
             [[webhooks.endpoints]]\nurl = \"http://127.0.0.1:1/hook\"\nsecret_env = \"H13_SECRET\"\n\
             [[webhooks.endpoints]]\nurl = \"http://127.0.0.1:1/other\"\nsecret_file = \"{}\"\n",
            secret_file.display()
        ),
    )
    .unwrap();
    let good = standard_webhooks::secret(21);
    let short = format!("whsec_{}", &good[6..22]);
    let not_base64 = format!("whsec_{}", "Hunter2!".repeat(6));
    let no_prefix = "Hunter2plain".repeat(4);
    let run = |env_value: &str, file_text: &str| {
        std::fs::write(&secret_file, file_text).unwrap();
        let t = Instant::now();
        let out = Command::new(bin())
            .args(["webhooks", "--config", config.to_str().unwrap()])
            .env("H13_SECRET", env_value)
            .output()
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(20), "not at start");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (env_value, file_text, names) in [
        ("Hunter2plain", good.as_str(), "H13_SECRET"),
        (no_prefix.as_str(), good.as_str(), "H13_SECRET"),
        (not_base64.as_str(), good.as_str(), "H13_SECRET"),
        (&good[6..], good.as_str(), "H13_SECRET"),
        (short.as_str(), good.as_str(), "H13_SECRET"),
        ("whsec_!!Hunter2!!", good.as_str(), "H13_SECRET"),
        (good.as_str(), "Hunter2plain\n", "secret_file"),
        (
            good.as_str(),
            &format!("{good}\nwhsec_Hunter2=\n"),
            "line 2",
        ),
        (good.as_str(), "\n\n", "secret_file"),
    ] {
        let (ok, err) = run(env_value, file_text);
        assert!(!ok, "started with {env_value:?} / {file_text:?}");
        assert!(
            err.contains(names) && err.contains("webhooks.endpoints["),
            "{err}"
        );
        for secret in ["Hunter2", &good[6..], &short[6..]] {
            assert!(!err.contains(secret), "{err}");
        }
    }
}

/// README's Python receiver, run as it is written: it takes a signed request and refuses a
/// request signed with another key or not signed at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_receiver_verifies_real_requests() {
    use aepiot_stream::webhook::policy::Attempt;
    use aepiot_stream::webhook::request::{self, Request};
    use aepiot_stream::webhook::sign::Secret;

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let security = &readme[readme
        .find("\n## Security")
        .expect("README has a Security section")..];
    let start = security.find("```python\n").expect("a Python receiver") + "```python\n".len();
    let code = &security[start..start + security[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("receiver.py");
    std::fs::write(&script, code).unwrap();

    let key = standard_webhooks::secret(31);
    let port = free_port();
    let receiver = Command::new("python3")
        .arg(&script)
        .env("AEPIOT_HOOK_SECRET", &key)
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(receiver.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the README receiver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = request::client(Duration::from_secs(5), 2).unwrap();
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
    let body = br#"{"aepiot_url":"https://aepiot.com/backlink.html?title=t","device_id":"press-7","event_type":"door","timestamp":"2026-11-26T08:05:01.000Z","regional_url":"https://aepiot.ro/backlink.html?title=r","urls":[]}"#;
    let signed = Secret::parse(&key).unwrap();
    let stranger = Secret::parse(&standard_webhooks::secret(32)).unwrap();
    let status = |sent: request::Sent| match sent.attempt {
        Attempt::Response { status, .. } => status,
        other => panic!("no answer: {other:?} {}", sent.error),
    };
    for (secret, id, want) in [
        (Some(&signed), "out-0-1", 204),
        (Some(&stranger), "out-0-2", 401),
        (None, "out-0-3", 401),
    ] {
        let r = Request {
            url: &url,
            body,
            webhook_id: id,
            secret,
            attempt: 1,
            traceparent: None,
            tracestate: None,
        };
        assert_eq!(status(request::post(&client, &r).await), want, "{id}");
    }
    drop(_kill);
    let out = receiver.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["out-0-1 press-7 https://aepiot.com/backlink.html?title=t"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends SIGTERM to a child process when dropped (also when a test fails).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}
