//! Black-box tests of the `aepiot-stream` binary: `process` over the golden vectors and a hostile
//! corpus, and `config check`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aepiot-stream"));
    // Hermetic: no configuration from the environment of whoever runs the tests.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AEPIOT_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs the binary with `stdin` fed from another thread (so neither side can block the other).
fn run(args: &[&str], stdin: Vec<u8>) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aepiot-stream");
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The child may exit early (e.g. on a bad flag): a broken pipe is then expected.
        let _ = pipe.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("wait for aepiot-stream");
    writer.join().unwrap();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}")))
        .collect()
}

fn data_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vectors-seed-")
        })
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "{dirs:?}");
    dirs
}

/// The wrapped vector lines of a file, and its events as JSON Lines input.
fn vectors(path: &Path) -> (Vec<Value>, Vec<u8>) {
    let lines = json_lines(&std::fs::read(path).unwrap());
    let mut input = Vec::new();
    for v in &lines {
        serde_json::to_writer(&mut input, &v["event"]).unwrap();
        input.push(b'\n');
    }
    (lines, input)
}

/// The `Batch processed: …` line of stderr, as (successful, events, rest of the line).
fn summary(stderr: &[u8]) -> (u64, u64, String) {
    let stderr = text(stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Batch processed: "))
        .unwrap_or_else(|| panic!("no summary in stderr: {stderr}"));
    let (counts, rest) = line.split_once(" successful").expect("`N/M successful`");
    let (ok, all) = counts.split_once('/').expect("N/M");
    (ok.parse().unwrap(), all.parse().unwrap(), rest.to_string())
}

fn count_of(rest: &str, name: &str) -> u64 {
    let start = rest
        .find(&format!("{name}: "))
        .unwrap_or_else(|| panic!("no {name} in {rest}"))
        + name.len()
        + 2;
    rest[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn temp_file(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Every URL of a record has exactly the three parameters title, description, link.
fn assert_three_params(record: &Value) {
    let mut urls: Vec<&str> = record["urls"]
        .as_array()
        .map(|a| a.iter().map(|u| u.as_str().unwrap()).collect())
        .unwrap_or_default();
    urls.extend(record["regional_url"].as_str());
    if record["status"] == "success" {
        assert_eq!(urls.len(), 5, "{record}");
    } else {
        assert!(urls.is_empty(), "{record}");
    }
    for u in urls {
        let parsed = url::Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"));
        assert_eq!(parsed.scheme(), "https", "{u}");
        assert_eq!(parsed.path(), "/backlink.html", "{u}");
        assert_eq!(parsed.fragment(), None, "{u}");
        let names: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        assert_eq!(names, ["title", "description", "link"], "{u}");
    }
}

// ---------------------------------------------------------------------------------------------
// (a) statuses, in order, and the summary.

#[test]
fn scenarios_reproduce_every_status_in_order() {
    for dir in data_dirs() {
        for file in ["stateful_scenario.jsonl", "burst_scenario.jsonl"] {
            let path = dir.join(file);
            let what = path.display().to_string();
            let (lines, input) = vectors(&path);
            let out = run(&["process", "--emit-suppressed"], input.clone());
            assert_success(&out, &what);
            let records = json_lines(&out.stdout);
            assert_eq!(records.len(), lines.len(), "{what}: one output per line");
            let mut want = BTreeMap::<&str, u64>::new();
            for (i, (record, v)) in records.iter().zip(&lines).enumerate() {
                assert_eq!(record["status"], v["status"], "{what}:{}", i + 1);
                assert_eq!(record["source"]["line"], i as u64 + 1, "{what}: order");
                assert_eq!(record["device_id"], v["event"]["device_id"]);
                assert_three_params(record);
                *want.entry(v["status"].as_str().unwrap()).or_default() += 1;
            }
            let (ok, all, rest) = summary(&out.stderr);
            assert_eq!(ok, want.get("success").copied().unwrap_or(0), "{what}");
            assert_eq!(all, lines.len() as u64, "{what}");
            assert_eq!(
                count_of(&rest, "cached"),
                want.get("cached").copied().unwrap_or(0)
            );
            assert_eq!(
                count_of(&rest, "rate_limited"),
                want.get("rate_limited").copied().unwrap_or(0)
            );
            assert_eq!(count_of(&rest, "invalid"), 0);
            assert_eq!(count_of(&rest, "urls"), ok * 4);

            // Without --emit-suppressed only the successes are written, still in order.
            if dir.ends_with("vectors-seed-1") {
                let out = run(&["process"], input);
                assert_success(&out, &what);
                let records = json_lines(&out.stdout);
                assert_eq!(records.len() as u64, ok);
                assert!(records.iter().all(|r| r["status"] == "success"));
                assert_eq!(summary(&out.stderr).0, ok);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) URLs byte for byte.

#[test]
fn urls_equal_the_golden_vectors() {
    let dir = tempfile::tempdir().unwrap();
    // No rate limit, no dedupe: every event generates its URLs.
    let config = temp_file(
        dir.path(),
        "unlimited.toml",
        b"[limits]\nmax_urls_per_device = 1000000\ncache_ttl_secs = 0\n",
    );
    let config = config.to_str().unwrap();
    for data in data_dirs() {
        let path = data.join("url_vectors.jsonl");
        let what = path.display().to_string();
        let (lines, input) = vectors(&path);

        let out = run(&["process", "--config", config], input.clone());
        assert_success(&out, &what);
        let records = json_lines(&out.stdout);
        assert_eq!(records.len(), lines.len(), "{what}");
        for (i, (record, v)) in records.iter().zip(&lines).enumerate() {
            assert_eq!(record["status"], "success", "{what}:{}", i + 1);
            assert_eq!(record["urls"], v["urls"], "{what}:{}", i + 1);
            let region = v["event"]["region"].as_str().unwrap_or("global");
            let candidates = v["regional_candidates"]
                .get(region)
                .unwrap_or(&v["regional_candidates"]["global"]);
            assert!(
                candidates
                    .as_array()
                    .unwrap()
                    .contains(&record["regional_url"]),
                "{what}:{}: {} not among {candidates}",
                i + 1,
                record["regional_url"]
            );
        }
        assert_eq!(summary(&out.stderr).0, lines.len() as u64);

        // With the seed's limits some events are suppressed; the successes still match.
        let out = run(&["process", "--emit-suppressed"], input);
        assert_success(&out, &what);
        let records = json_lines(&out.stdout);
        assert_eq!(records.len(), lines.len(), "{what}");
        for (record, v) in records.iter().zip(&lines) {
            if record["status"] == "success" {
                assert_eq!(record["urls"], v["urls"], "{what}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) hostile input.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Success,
    Dead(&'static str),
    Blank,
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every field of an event set to `text` (a JSON string literal's content, already escaped);
/// `dashboard_url`, which must be a link, holds it in its path.
fn every_field(device_id: &str, text: &str) -> Vec<u8> {
    format!(
        r#"{{"device_id":"{device_id}{text}","event_type":"{text}","severity":"{text}","location":"{text}","description":"{text}","dashboard_url":"https://dash.example/{text}/","region":"{text}","value":"{text}","timestamp":"2026-11-26T08:00:00Z","{text}":"{text}"}}"#
    )
    .into_bytes()
}

fn hostile_corpus() -> Vec<(Vec<u8>, Expect)> {
    use Expect::*;
    let b = |s: &str| s.as_bytes().to_vec();
    let ten_mb = format!(
        r#"{{"device_id":"big","pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    vec![
        (b("not json"), Dead("invalid_json")),
        (b("[]"), Dead("not_object")),
        (b(r#""str""#), Dead("not_object")),
        (b("42"), Dead("not_object")),
        (b("null"), Dead("not_object")),
        (b("true"), Dead("not_object")),
        (b(""), Blank),
        (b("{}"), Dead("missing_field")),
        (b(r#"{"event_type":"temp"}"#), Dead("missing_field")),
        (b(r#"{"device_id":null}"#), Dead("missing_field")),
        (b(r#"{"device_id":""}"#), Dead("invalid_field")),
        (
            format!(r#"{{"device_id":"{}"}}"#, "x".repeat(300)).into_bytes(),
            Dead("invalid_field"),
        ),
        (
            format!(r#"{{"device_id":"{}"}}"#, "y".repeat(256)).into_bytes(),
            Success,
        ),
        (b(r#"{"device_id":42}"#), Dead("invalid_field")),
        (b(r#"{"device_id":{"id":"a"}}"#), Dead("invalid_field")),
        (b(r#"{"device_id":["a"]}"#), Dead("invalid_field")),
        (
            b"{\"device_id\":\"\xff\xfe\x80\"}".to_vec(),
            Dead("not_utf8"),
        ),
        (b"\xc3\x28".to_vec(), Dead("not_utf8")),
        (
            b(r#"{"device_id":"nul\u0000escaped","value":"\u0000"}"#),
            Success,
        ),
        (
            b"{\"device_id\":\"nul\0raw\"}".to_vec(),
            Dead("invalid_json"),
        ),
        (
            b"{\"device_id\":\"raw\rcr\"}".to_vec(),
            Dead("invalid_json"),
        ),
        (b("   \t "), Blank),
        (ten_mb.into_bytes(), Dead("too_large")),
        (
            format!(
                r#"{{"device_id":"deep-value","value":{}}}"#,
                nested(100_000)
            )
            .into_bytes(),
            Dead("too_deep"),
        ),
        (
            format!(r#"{{"device_id":"deep-unknown","x":{}}}"#, nested(100_000)).into_bytes(),
            Success,
        ),
        (
            format!(
                r#"{{"device_id":"deep-unknown-obj","x":{}1{}}}"#,
                r#"{"a":"#.repeat(100_000),
                "}".repeat(100_000)
            )
            .into_bytes(),
            Success,
        ),
        (
            b(r#"{"device_id":"big-value","value":1e400}"#),
            Dead("invalid_field"),
        ),
        (
            b(r#"{"device_id":"big-ts","timestamp":1e400}"#),
            Dead("invalid_field"),
        ),
        (b(r#"{"device_id":"big-unknown","x":1e400}"#), Success),
        (
            b(r#"{"device_id":"dup","device_id":"dup2"}"#),
            Dead("duplicate_field"),
        ),
        (
            b(r#"{"device_id":"dup-v","value":1,"value":1}"#),
            Dead("duplicate_field"),
        ),
        (b(r#"{"device_id":"dup-unknown","x":1,"x":2}"#), Success),
        (every_field("crlf-", r"\r\n&=#?%+\t"), Success),
        (every_field("amp-", r"a&b=c#d?e&title=x&link=y#z"), Success),
        (
            every_field("bidi-", "\u{202E}evil\u{202C} 😀🚀 \u{2066}x\u{2069}"),
            Success,
        ),
        (every_field("esc-bidi-", r"\u202e\ud83d\ude00"), Success),
        (b(r#"{"device_id":"crlf-ending"}"#), Success), // written with a CRLF ending below
        (
            b(r#"{"device_id":"ts","timestamp":"yesterday"}"#),
            Dead("invalid_field"),
        ),
        (b(r#"{"device_id":"trailing"} x"#), Dead("invalid_json")),
        (b(r#"{"device_id":"\ud800"}"#), Dead("invalid_field")),
        (b(r#"{"device_id":"last-line-no-newline"}"#), Success),
    ]
}

/// Writes the corpus as a file (the CRLF case with `\r\n`, the last line with no line ending).
fn write_corpus(path: &Path, corpus: &[(Vec<u8>, Expect)]) {
    let mut bytes = Vec::new();
    for (i, (line, _)) in corpus.iter().enumerate() {
        bytes.extend_from_slice(line);
        if line.ends_with(br#""crlf-ending"}"#) {
            bytes.extend_from_slice(b"\r\n");
        } else if i + 1 < corpus.len() {
            bytes.push(b'\n');
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// Outputs by input line number.
type ByLine = BTreeMap<u64, Value>;

/// Runs `process` over a corpus file; returns the URL records and dead letters by input line, and
/// the summary.
fn process_corpus(
    corpus: &[(Vec<u8>, Expect)],
    extra: &[&str],
) -> (ByLine, ByLine, (u64, u64, String)) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hostile.jsonl");
    write_corpus(&input, corpus);
    let output = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let mut args = vec![
        "process",
        "--emit-suppressed",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--dead-letter",
        dead.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args, Vec::new());
    assert_success(&out, "hostile corpus");

    let by_line = |path: &Path| {
        let mut map = BTreeMap::new();
        for v in json_lines(&std::fs::read(path).unwrap()) {
            let line = v["source"]["line"].as_u64().expect("source.line");
            assert!(map.insert(line, v).is_none(), "line {line} output twice");
        }
        map
    };
    (by_line(&output), by_line(&dead), summary(&out.stderr))
}

fn check_corpus(corpus: &[(Vec<u8>, Expect)], extra: &[&str]) -> BTreeMap<u64, Value> {
    let (records, letters, (ok, all, rest)) = process_corpus(corpus, extra);
    let non_blank = corpus.iter().filter(|(_, e)| *e != Expect::Blank).count();
    assert_eq!(
        records.len() + letters.len(),
        non_blank,
        "every non-blank line yields exactly one output or dead letter"
    );
    for (i, (line, expect)) in corpus.iter().enumerate() {
        let n = i as u64 + 1;
        let what = format!("line {n}: {}", text(&line[..line.len().min(80)]));
        match expect {
            Expect::Blank => {
                assert!(
                    !records.contains_key(&n) && !letters.contains_key(&n),
                    "{what}"
                )
            }
            Expect::Success => {
                let r = records.get(&n).unwrap_or_else(|| {
                    panic!("{what}: no record; dead letter {:?}", letters.get(&n))
                });
                assert_eq!(r["status"], "success", "{what}");
            }
            Expect::Dead(kind) => {
                let d = letters.get(&n).unwrap_or_else(|| {
                    panic!("{what}: no dead letter; record {:?}", records.get(&n))
                });
                assert_eq!(d["error"]["kind"], *kind, "{what}: {d}");
            }
        }
    }
    for r in records.values() {
        assert_three_params(r);
    }
    for d in letters.values() {
        assert!(d["error"]["kind"].is_string(), "{d}");
        assert!(
            d["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{d}"
        );
        // Bounded whatever the input: no 10 MB dead letters.
        assert!(
            d["payload"].as_str().map_or(0, str::len) <= 100_000,
            "payload too big"
        );
    }
    let blank = corpus.len() - non_blank;
    assert_eq!(ok, records.len() as u64);
    assert_eq!(all, non_blank as u64);
    assert_eq!(count_of(&rest, "invalid"), letters.len() as u64);
    assert_eq!(count_of(&rest, "blank lines skipped"), blank as u64);
    letters
}

#[test]
fn hostile_lines_each_yield_one_output_or_dead_letter() {
    let corpus = hostile_corpus();
    let letters = check_corpus(&corpus, &[]);

    // The 10 MB line: a bounded dead letter that still says how big the original was.
    let (i, big) = corpus
        .iter()
        .enumerate()
        .find(|(_, (l, _))| l.len() > 10_000_000)
        .unwrap();
    let d = &letters[&(i as u64 + 1)];
    assert_eq!(d["payload_bytes"], big.0.len());
    assert_eq!(d["payload_truncated"], true);
    assert_eq!(d["payload_encoding"], "utf8");
    assert_eq!(d["payload"].as_str().unwrap().len(), 64 * 1024);
    assert!(d["error"]["message"]
        .as_str()
        .unwrap()
        .contains("over the limit"));

    // Invalid UTF-8 travels as base64.
    let d = letters
        .values()
        .find(|d| d["error"]["kind"] == "not_utf8")
        .unwrap();
    assert_eq!(d["payload_encoding"], "base64");
}

#[test]
fn records_over_a_configured_size_limit_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let config = temp_file(
        dir.path(),
        "small.toml",
        b"[input]\nmax_record_bytes = 1000\n",
    );
    let padded = |device: &str, len: usize, pad: &str| {
        let head = format!(r#"{{"device_id":"{device}","pad":""#);
        let fill = len - head.len() - 2;
        let mut s = head + &pad.repeat(fill / pad.len());
        s.push_str(&"x".repeat(fill % pad.len()));
        s.push_str("\"}");
        assert_eq!(s.len(), len);
        s.into_bytes()
    };
    let corpus = vec![
        (b"{\"device_id\":\"small\"}".to_vec(), Expect::Success),
        (padded("at-limit", 1000, "x"), Expect::Success),
        (padded("over-limit", 1001, "x"), Expect::Dead("too_large")),
        (padded("far-over", 5000, "x"), Expect::Dead("too_large")),
        // A 33-byte head puts every `é` at an odd offset: byte 1000 falls inside one.
        (padded("multibyte-", 2001, "é"), Expect::Dead("too_large")),
        (padded("not-utf8", 3000, "\u{0}"), Expect::Dead("too_large")),
        (b"{\"device_id\":\"after\"}".to_vec(), Expect::Success),
    ];
    // The last case: NUL padding replaced by invalid UTF-8 bytes.
    let mut corpus = corpus;
    for b in corpus[5].0.iter_mut() {
        if *b == 0 {
            *b = 0xff;
        }
    }
    let config = config.to_str().unwrap();
    let letters = check_corpus(&corpus, &["--config", config]);
    for (line, len) in [(3u64, 1001), (4, 5000), (5, 2001), (6, 3000)] {
        let d = &letters[&line];
        assert_eq!(d["payload_bytes"], len, "{d}");
        assert_eq!(d["payload_truncated"], true, "{d}");
    }
    // The kept prefix is the first 1000 bytes, cut back to a character boundary when needed:
    // the multibyte line keeps 999 bytes (the `é` across byte 1000 is dropped whole).
    assert_eq!(letters[&4]["payload"].as_str().unwrap().len(), 1000);
    assert_eq!(letters[&5]["payload_encoding"], "utf8");
    let kept = letters[&5]["payload"].as_str().unwrap();
    assert_eq!(kept.len(), 999, "{kept}");
    assert!(kept.ends_with('é') && kept.starts_with(r#"{"device_id":"multibyte-""#));
    assert_eq!(letters[&6]["payload_encoding"], "base64");
}

// ---------------------------------------------------------------------------------------------
// (d) and (e): errors and configuration.

#[test]
fn a_missing_input_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file.jsonl");
    let out = run(
        &["process", "--input", missing.to_str().unwrap()],
        Vec::new(),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot open input") && stderr.contains("no-such-file.jsonl"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn config_check_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = temp_file(
        dir.path(),
        "secret.toml",
        b"[kafka]\n\"sasl.password\" = \"s3cret\"\n\"sasl.username\" = \"alice\"\n",
    );
    let out = run(
        &["config", "check", "--config", config.to_str().unwrap()],
        Vec::new(),
    );
    assert_success(&out, "config check");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("[redacted]"), "{stdout}");
    assert!(stdout.contains("alice"), "non-secrets are shown: {stdout}");
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "{stdout}{stderr}"
    );
}

#[test]
fn config_check_shows_a_regional_cluster_with_its_secret_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = temp_file(
        dir.path(),
        "clusters.toml",
        b"[output_topics_by_region]\neurope = { topic = \"urls-eu\", cluster = \"eu\" }\n\
          [clusters.eu]\nbrokers = \"kafka.eu.example:9093\"\n\
          [clusters.eu.security]\nprotocol = \"sasl_ssl\"\nsasl_username = \"eu-user\"\n",
    );
    let path = config.to_str().unwrap();
    let out = bin()
        .args(["config", "check", "--config", path])
        .env("AEPIOT_CLUSTERS__EU__SECURITY__SASL_PASSWORD", "eu-s3cret")
        .output()
        .unwrap();
    assert_success(&out, "config check");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("kafka.eu.example:9093") && stdout.contains("eu-user"),
        "{stdout}"
    );
    assert!(stdout.contains("cluster = \"eu\""), "{stdout}");
    assert!(
        !stdout.contains("eu-s3cret") && !stderr.contains("eu-s3cret"),
        "{stdout}{stderr}"
    );
    // Without the password, and with an undefined cluster: errors that say what to fix.
    let out = run(&["config", "check", "--config", path], Vec::new());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("AEPIOT_CLUSTERS__EU__SECURITY__SASL_PASSWORD"),
        "{}",
        text(&out.stderr)
    );
    let typo = temp_file(
        dir.path(),
        "typo.toml",
        b"[output_topics_by_region]\neurope = { topic = \"urls-eu\", cluster = \"ue\" }\n",
    );
    let out = run(
        &["config", "check", "--config", typo.to_str().unwrap()],
        Vec::new(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cluster \"ue\" is not defined"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_check_names_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (name, toml, key) in [
        ("top.toml", "outptu_topic = \"x\"\n", "outptu_topic"),
        ("nested.toml", "[limits]\nwindw_secs = 5\n", "windw_secs"),
    ] {
        let config = temp_file(dir.path(), name, toml.as_bytes());
        let out = run(
            &["config", "check", "--config", config.to_str().unwrap()],
            Vec::new(),
        );
        assert!(!out.status.success(), "{name} accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(key), "{name}: {stderr}");
    }
}
