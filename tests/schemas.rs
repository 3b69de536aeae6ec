//! The JSON Schemas in `schemas/` describe what the code really accepts and produces: every output
//! the engine makes (from the golden vectors and from hostile input) validates, valid events
//! validate, invalid ones do not, and the schemas themselves are valid JSON Schema 2020-12.

use std::path::{Path, PathBuf};

use aepiot_stream::core::event::parse_event;
use aepiot_stream::core::{
    Engine, EngineSettings, ErrorKind, Output, RecordError, RecordMeta, Shared, Source,
};
use jsonschema::Validator;
use serde_json::{json, Value};

const SCHEMAS: [&str; 3] = [
    "iot-event.schema.json",
    "url-record.schema.json",
    "dead-letter.schema.json",
];

/// 2026-11-26T08:00:00Z: the wall clock of these tests.
const NOW_MS: i64 = 1_795_680_000_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load_schema(name: &str) -> Value {
    let path = root().join("schemas").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A 2020-12 validator that also asserts `format` (date-time, uri), which is only an annotation by
/// default.
fn validator(name: &str) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&load_schema(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

struct Validators {
    event: Validator,
    record: Validator,
    dead: Validator,
}

fn validators() -> Validators {
    Validators {
        event: validator("iot-event.schema.json"),
        record: validator("url-record.schema.json"),
        dead: validator("dead-letter.schema.json"),
    }
}

/// Panics with every validation error when `instance` does not validate.
fn assert_valid(v: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance}\ndoes not validate:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The schemas themselves.

#[test]
fn schemas_are_valid_2020_12_and_documented() {
    for name in SCHEMAS {
        let schema = load_schema(name);
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!(
                "{name} is not a valid 2020-12 schema: {e} at {}",
                e.instance_path
            );
        }
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert_eq!(
            schema["$id"],
            format!("https://aepiot-stream.dev/schemas/{name}"),
            "{name}"
        );
        for key in ["title", "description"] {
            assert!(
                schema[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {key}"
            );
        }
        let mut missing = Vec::new();
        check_descriptions(&schema, "#", &mut missing);
        assert!(
            missing.is_empty(),
            "{name}: properties without a description: {missing:?}"
        );
    }
}

/// Every property declared under `properties` (outside conditional subschemas, whose
/// `properties` only restate constraints) has a non-empty description.
fn check_descriptions(schema: &Value, at: &str, missing: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{at}/{k}");
                match k.as_str() {
                    "if" | "then" | "else" | "allOf" | "not" | "const" | "enum" => {}
                    "properties" => {
                        for (prop, s) in v.as_object().expect("properties is an object") {
                            let ok = s["description"].as_str().is_some_and(|d| !d.is_empty());
                            if !ok {
                                missing.push(format!("{here}/{prop}"));
                            }
                            check_descriptions(s, &format!("{here}/{prop}"), missing);
                        }
                    }
                    _ => check_descriptions(v, &here, missing),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_descriptions(v, &format!("{at}/{i}"), missing);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The Avro schema of URL records (output.format = "avro") is derived from the JSON Schema.

/// Avro names the JSON Schema has no word for: the record, and the records of `source`'s kinds.
const AVRO_NAMES: [(&str, &str); 4] = [
    ("#", "UrlRecord"),
    ("status", "Status"),
    ("source/0", "KafkaSource"),
    ("source/1", "LineSource"),
];

fn avro_name(at: &str) -> &'static str {
    AVRO_NAMES
        .iter()
        .find(|(k, _)| *k == at)
        .unwrap_or_else(|| panic!("no Avro name for {at}: add one to AVRO_NAMES"))
        .1
}

/// `#/$defs/x` of `root`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("local $defs refs only");
            &root["$defs"][name]
        }
        None => schema,
    }
}

/// The Avro type of a JSON Schema property: strings, nullable strings, string enums, arrays,
/// integers (`int` when bounded by i32, else `long`), objects as records and `oneOf` as a union.
fn avro_type(root: &Value, schema: &Value, at: &str) -> Value {
    let schema = resolve(root, schema);
    if let Some(symbols) = schema["enum"].as_array() {
        return json!({"type": "enum", "name": avro_name(at), "symbols": symbols});
    }
    if let Some(branches) = schema["oneOf"].as_array() {
        return Value::Array(
            branches
                .iter()
                .enumerate()
                .map(|(i, b)| avro_type(root, b, &format!("{at}/{i}")))
                .collect(),
        );
    }
    match &schema["type"] {
        Value::String(t) if t == "string" => json!("string"),
        Value::Array(ts) if ts == &[json!("string"), json!("null")] => json!(["null", "string"]),
        Value::String(t) if t == "integer" => {
            if schema["maximum"]
                .as_i64()
                .is_some_and(|m| m <= i32::MAX as i64)
            {
                json!("int")
            } else {
                json!("long")
            }
        }
        Value::String(t) if t == "array" => {
            json!({"type": "array", "items": avro_type(root, &schema["items"], at)})
        }
        Value::String(t) if t == "object" => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let fields: Vec<Value> = schema["properties"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, p)| {
                    let at = if at == "#" {
                        name.clone()
                    } else {
                        format!("{at}/{name}")
                    };
                    let t = avro_type(root, p, &at);
                    if required.contains(&name.as_str()) {
                        json!({"name": name, "type": t})
                    } else {
                        let mut union = vec![json!("null")];
                        match t {
                            Value::Array(ts) => union.extend(ts),
                            t => union.push(t),
                        }
                        json!({"name": name, "type": union, "default": null})
                    }
                })
                .collect();
            json!({"type": "record", "name": avro_name(at), "fields": fields})
        }
        other => panic!("{at}: no Avro type for JSON Schema type {other}"),
    }
}

#[test]
fn the_avro_url_record_schema_is_the_json_schema_s() {
    let json_schema = load_schema("url-record.schema.json");
    let mut derived = avro_type(&json_schema, &json_schema, "#");
    derived["namespace"] = json!("dev.aepiot_stream");
    let path = root().join("schemas").join("url-record.avsc");
    let mut avsc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(avsc["doc"].as_str().is_some_and(|d| !d.is_empty()));
    avsc.as_object_mut().unwrap().remove("doc");
    assert_eq!(
        avsc,
        derived,
        "schemas/url-record.avsc no longer matches url-record.schema.json; derived:\n{}",
        serde_json::to_string_pretty(&derived).unwrap()
    );
    // The code writes the file it embeds.
    assert_eq!(
        aepiot_stream::core::avro_record::URL_RECORD_AVSC,
        std::fs::read_to_string(&path).unwrap()
    );
}

#[test]
fn every_error_kind_is_in_the_dead_letter_schema() {
    let schema = load_schema("dead-letter.schema.json");
    let kinds: Vec<&str> = schema["properties"]["error"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let code: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, code);
    // `as_str` and the serialized form agree, so the enum above is what is written.
    for k in ErrorKind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
}

/// The conditional parts of the output schemas are not vacuous: wrong records fail.
#[test]
fn output_schemas_reject_wrong_records() {
    let v = validators();
    let url = "https://aepiot.com/backlink.html?title=t&description=d&link=l";
    let good = json!({
        "device_id": "d", "event_type": null, "severity": null, "region": "global",
        "status": "success", "urls": [url], "regional_url": url,
        "event_time": "2026-11-26T08:00:00.000Z", "processed_at": "2026-11-26T08:00:00.000Z",
        "source": {"line": 1}
    });
    assert_valid(&v.record, &good, "good record");
    let wrong = |f: &dyn Fn(&mut Value)| {
        let mut r = good.clone();
        f(&mut r);
        r
    };
    let bad = [
        wrong(&|r| r["status"] = json!("cached")),
        wrong(&|r| {
            r.as_object_mut().unwrap().remove("urls");
        }),
        wrong(&|r| {
            r.as_object_mut().unwrap().remove("regional_url");
        }),
        wrong(&|r| r["status"] = json!("ok")),
        wrong(&|r| r["urls"] = json!([format!("{url}&x=1")])),
        wrong(&|r| r["urls"] = json!([url.replace("https", "http")])),
        wrong(&|r| r["urls"] = json!([url.replace("title=t", "title=a%2")])),
        wrong(&|r| r["urls"] = json!([url.replace("title=t", "title=a b")])),
        wrong(&|r| r["urls"] = json!([])),
        wrong(&|r| r["regional_url"] = json!(format!("{url}#frag"))),
        wrong(&|r| r["event_time"] = json!("2026-11-26T08:00:00Z")),
        wrong(&|r| r["processed_at"] = json!("2026-11-26T09:00:00.000+01:00")),
        wrong(&|r| r["source"] = json!({"line": 0})),
        wrong(&|r| r["source"] = json!({"line": 1, "topic": "t"})),
        wrong(&|r| r["source"] = json!({"topic": "t", "partition": -1, "offset": 0})),
        wrong(&|r| r["extra"] = json!(1)),
        wrong(&|r| r["device_id"] = json!("")),
        wrong(&|r| r["event_type"] = json!(5)),
    ];
    for r in &bad {
        assert!(!v.record.is_valid(r), "accepted: {r}");
    }
    let mut cached = good.clone();
    let m = cached.as_object_mut().unwrap();
    m.remove("urls");
    m.remove("regional_url");
    m.insert("status".into(), json!("rate_limited"));
    m.insert(
        "source".into(),
        json!({"topic": "iot-events", "partition": 3, "offset": 12}),
    );
    assert_valid(&v.record, &cached, "suppressed record");

    let letter = json!({
        "error": {"kind": "invalid_field", "message": "m", "field": "timestamp"},
        "payload": "{}", "payload_encoding": "utf8", "payload_bytes": 2,
        "payload_truncated": false, "processed_at": "2026-11-26T08:00:00.000Z"
    });
    assert_valid(&v.dead, &letter, "good dead letter");
    let wrong = |f: &dyn Fn(&mut Value)| {
        let mut r = letter.clone();
        f(&mut r);
        r
    };
    let bad = [
        wrong(&|r| r["error"]["kind"] = json!("boom")),
        wrong(&|r| r["error"]["message"] = json!("")),
        wrong(&|r| {
            r["error"].as_object_mut().unwrap().remove("field");
        }),
        wrong(&|r| r["error"]["field"] = json!("nope")),
        wrong(&|r| r["error"]["kind"] = json!("not_object")),
        wrong(&|r| r["error"] = json!({"kind": "missing_field", "message": "m", "field": "value"})),
        wrong(&|r| r["payload_encoding"] = json!("none")),
        wrong(&|r| r["payload_encoding"] = json!("base64")),
        wrong(&|r| r["payload"] = Value::Null),
        wrong(&|r| r["payload_bytes"] = json!(-1)),
        wrong(&|r| r["extra"] = json!(1)),
        wrong(&|r| {
            r["error"] = json!({"kind": "null_payload", "message": "m"});
            r["payload"] = Value::Null;
            r["payload_encoding"] = json!("none");
            r["payload_bytes"] = json!(3);
        }),
    ];
    for r in &bad {
        assert!(!v.dead.is_valid(r), "accepted: {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// Real outputs.

fn vector_files() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vectors-seed-")
        })
        .collect();
    let shared = root().join("../shared/vectors");
    if shared.is_dir() {
        dirs.push(shared);
    }
    dirs.sort();
    assert!(dirs.len() >= 5, "vector sets missing: {dirs:?}");
    let mut files = Vec::new();
    for dir in dirs {
        let mut jsonl: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        jsonl.sort();
        files.extend(jsonl);
    }
    files
}

/// Cycles through every kind of source, including none.
fn source(i: usize) -> Option<Source<'static>> {
    match i % 3 {
        0 => Some(Source::Kafka {
            topic: "iot-events",
            partition: (i % 12) as i32,
            offset: i as i64,
        }),
        1 => Some(Source::Line { line: i as u64 + 1 }),
        _ => None,
    }
}

/// What one engine output was, after checking it against its schema.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Record(String),
    Dead(ErrorKind),
}

fn check_output(v: &Validators, out: Output<'_>, what: &str) -> Seen {
    match out {
        Output::Record { json, status, .. } => {
            let record: Value = serde_json::from_slice(json).unwrap();
            assert_valid(&v.record, &record, what);
            assert_eq!(record["status"], status.as_str());
            Seen::Record(status.as_str().to_string())
        }
        Output::DeadLetter { json, error } => {
            let letter: Value = serde_json::from_slice(json).unwrap();
            assert_valid(&v.dead, &letter, what);
            assert_eq!(letter["error"]["kind"], error.kind.as_str());
            Seen::Dead(error.kind)
        }
        Output::Suppressed { .. } => panic!("{what}: suppressed despite emit_suppressed"),
    }
}

fn emitting_engine(settings: EngineSettings) -> Engine {
    Engine::new(Shared::new(EngineSettings {
        emit_suppressed: true,
        ..settings
    }))
}

#[test]
fn vector_events_and_their_records_validate() {
    let v = validators();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut n = 0;
    for path in vector_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut engine = emitting_engine(EngineSettings::default());
        for (i, line) in text.lines().enumerate() {
            let what = format!("{}:{}", path.display(), i + 1);
            let wrapper: Value = serde_json::from_str(line).unwrap();
            let event = &wrapper["event"];
            assert_valid(&v.event, event, &what);
            let payload = serde_json::to_vec(event).unwrap();
            let meta = RecordMeta {
                record_time_ms: None,
                now_ms: NOW_MS + i as i64,
                source: source(n),
            };
            match check_output(&v, engine.process(Some(&payload), &meta), &what) {
                Seen::Record(status) => *statuses.entry(status).or_default() += 1,
                Seen::Dead(kind) => panic!("{what}: golden event rejected: {kind:?}"),
            }
            n += 1;
        }
    }
    assert!(n >= 3800, "only {n} events");
    // Every status was produced, so every branch of the url-record schema was exercised.
    assert_eq!(statuses.len(), 3, "{statuses:?}");
}

/// A hostile or tricky payload: what the code must make of it, and whether the event schema can
/// tell (some rules are beyond JSON Schema; the schema documents them in prose).
struct Case {
    name: &'static str,
    payload: Option<Vec<u8>>,
    /// `None`: a valid event.
    expect: Option<ErrorKind>,
    /// False where JSON Schema cannot express the rule (the schema's description says so).
    schema_agrees: bool,
}

fn case(name: &'static str, payload: impl Into<Vec<u8>>, expect: Option<ErrorKind>) -> Case {
    Case {
        name,
        payload: Some(payload.into()),
        expect,
        schema_agrees: true,
    }
}

fn gap(name: &'static str, payload: impl Into<Vec<u8>>, expect: Option<ErrorKind>) -> Case {
    Case {
        schema_agrees: false,
        ..case(name, payload, expect)
    }
}

fn hostile_cases() -> Vec<Case> {
    use ErrorKind::*;
    let ev = |v: Value| serde_json::to_vec(&v).unwrap();
    let nasty = "a&b=c#d?e%f+g\r\nh\u{202E}i😀j\u{0}k\t/~\"\\";
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    vec![
        Case {
            name: "tombstone",
            payload: None,
            expect: Some(NullPayload),
            schema_agrees: true,
        },
        case("empty payload", "", Some(InvalidJson)),
        case("not json", "not json", Some(InvalidJson)),
        case("truncated object", r#"{"device_id":"a""#, Some(InvalidJson)),
        case("trailing data", r#"{"device_id":"a"} x"#, Some(InvalidJson)),
        case(
            "raw NUL in a string",
            b"{\"device_id\":\"a\0b\"}".to_vec(),
            Some(InvalidJson),
        ),
        case(
            "raw CR in a string",
            b"{\"device_id\":\"a\rb\"}".to_vec(),
            Some(InvalidJson),
        ),
        case(
            "invalid UTF-8",
            b"{\"device_id\":\"\xff\xfe\"}".to_vec(),
            Some(NotUtf8),
        ),
        case(
            "lone surrogate bytes",
            b"{\"device_id\":\"\xed\xa0\x80\"}".to_vec(),
            Some(NotUtf8),
        ),
        case(
            "truncated UTF-8",
            b"{\"device_id\":\"\xc3".to_vec(),
            Some(NotUtf8),
        ),
        case("array", "[]", Some(NotObject)),
        case("string", r#""str""#, Some(NotObject)),
        case("number", "42", Some(NotObject)),
        case("null", "null", Some(NotObject)),
        case("boolean", "true", Some(NotObject)),
        case("empty object", "{}", Some(MissingField)),
        case(
            "null device_id",
            r#"{"device_id":null}"#,
            Some(MissingField),
        ),
        case("empty device_id", r#"{"device_id":""}"#, Some(InvalidField)),
        case(
            "numeric device_id",
            r#"{"device_id":7}"#,
            Some(InvalidField),
        ),
        case(
            "object device_id",
            r#"{"device_id":{"a":1}}"#,
            Some(InvalidField),
        ),
        case(
            "array device_id",
            r#"{"device_id":["a"]}"#,
            Some(InvalidField),
        ),
        case(
            "bool device_id",
            r#"{"device_id":false}"#,
            Some(InvalidField),
        ),
        case(
            "300-byte device_id",
            ev(json!({"device_id": "x".repeat(300)})),
            Some(InvalidField),
        ),
        case(
            "256-byte device_id",
            ev(json!({"device_id": "x".repeat(256)})),
            None,
        ),
        gap(
            "256 two-byte characters in device_id",
            ev(json!({"device_id": "é".repeat(256)})),
            Some(InvalidField),
        ),
        case(
            "128 two-byte characters",
            ev(json!({"device_id": "é".repeat(128)})),
            None,
        ),
        case(
            "escaped NUL in device_id",
            r#"{"device_id":"a\u0000b"}"#,
            None,
        ),
        case(
            "escaped NUL in every field",
            ev(json!({
                "device_id": "\u{0}", "event_type": "\u{0}", "severity": "\u{0}", "location": "\u{0}",
                "description": "\u{0}", "dashboard_url": "https://d.example/\u{0}/", "region": "\u{0}", "value": "\u{0}"
            })),
            None,
        ),
        case(
            "escaped surrogate pair",
            r#"{"device_id":"\ud83d\ude00"}"#,
            None,
        ),
        // The parser does not check `\u` escapes of raw values: unpaired surrogates used to
        // decode silently to "" (see render.rs). serde_json cannot parse them into a `Value`, so
        // the schema comparison skips them.
        case(
            "lone escaped surrogate in device_id",
            r#"{"device_id":"\ud800"}"#,
            Some(InvalidField),
        ),
        case(
            "lone escaped surrogate in value",
            r#"{"device_id":"d","value":"a\udc00"}"#,
            Some(InvalidField),
        ),
        case(
            "lone escaped surrogate in timestamp",
            r#"{"device_id":"d","timestamp":"\ud83d2026-11-26T08:00:00Z"}"#,
            Some(InvalidField),
        ),
        case(
            "lone escaped surrogate in an unknown field",
            r#"{"device_id":"d","x":"\ud800"}"#,
            None,
        ),
        case(
            "hostile text in every field",
            ev(json!({
                "device_id": nasty, "event_type": nasty, "severity": nasty, "location": nasty,
                "description": nasty, "dashboard_url": format!("https://d.example/{nasty}/"), "region": nasty, "value": nasty,
                "timestamp": "2026-11-26T08:00:00Z", nasty: nasty
            })),
            None,
        ),
        case(
            "non-string text fields",
            ev(json!({
                "device_id": "d", "event_type": 5, "severity": true, "location": [1, "a", {"b": null}],
                "description": {"x": [1.5e300, -0.0]}, "region": 1e-7,
                "value": 123456789012345678901234567890u128 as f64
            })),
            None,
        ),
        // dashboard_url is a link on a public page: only absolute http(s) URLs with a host.
        case(
            "dashboard_url: https with query, fragment, tab and non-ASCII inside",
            ev(
                json!({"device_id": "d", "dashboard_url": "HTTPS://Grafana.example/d/x?var=1&b=é\tc#top"}),
            ),
            None,
        ),
        case(
            "dashboard_url: http with port",
            ev(json!({"device_id": "d", "dashboard_url": "http://10.0.0.7:3000/d"})),
            None,
        ),
        case(
            "dashboard_url: javascript:",
            ev(json!({"device_id": "d1", "dashboard_url": "javascript:alert(document.cookie)"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: JaVaScRiPt:",
            ev(json!({"device_id": "d", "dashboard_url": "JaVaScRiPt:alert(1)"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: leading space",
            ev(json!({"device_id": "d", "dashboard_url": " https://d.example/"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: trailing newline",
            ev(json!({"device_id": "d", "dashboard_url": "https://d.example/\n"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: leading control character",
            ev(json!({"device_id": "d", "dashboard_url": "\u{1}https://d.example/"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: data:",
            ev(
                json!({"device_id": "d", "dashboard_url": "data:text/html,<script>alert(1)</script>"}),
            ),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: vbscript:",
            ev(json!({"device_id": "d", "dashboard_url": "vbscript:msgbox(1)"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: scheme-relative",
            ev(json!({"device_id": "d", "dashboard_url": "//evil.example/phish"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: relative path",
            ev(json!({"device_id": "d", "dashboard_url": "devices/d1"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: no host",
            ev(json!({"device_id": "d", "dashboard_url": "https:///evil.example"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: ftp",
            ev(json!({"device_id": "d", "dashboard_url": "ftp://files.example/"})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: a number",
            ev(json!({"device_id": "d", "dashboard_url": 42})),
            Some(InvalidField),
        ),
        case(
            "dashboard_url: a boolean",
            ev(json!({"device_id": "d", "dashboard_url": false})),
            Some(InvalidField),
        ),
        gap(
            "dashboard_url: a host no URL parser takes",
            ev(json!({"device_id": "d", "dashboard_url": "https://exa mple.com/"})),
            Some(InvalidField),
        ),
        case(
            "huge integer value",
            r#"{"device_id":"d","value":123456789012345678901234567890}"#,
            None,
        ),
        case(
            "null optional fields",
            ev(json!({
                "device_id": "d", "event_type": null, "severity": null, "location": null,
                "description": null, "dashboard_url": null, "region": null, "value": null,
                "timestamp": null
            })),
            None,
        ),
        case(
            "unknown region",
            ev(json!({"device_id": "d", "region": "mars"})),
            None,
        ),
        case(
            "known region",
            ev(json!({"device_id": "d", "region": "europe"})),
            None,
        ),
        case(
            "value 1e400",
            r#"{"device_id":"d","value":1e400}"#,
            Some(InvalidField),
        ),
        case(
            "value -1e400",
            r#"{"device_id":"d","value":-1e400}"#,
            Some(InvalidField),
        ),
        case(
            "device_id 1e400",
            r#"{"device_id":1e400}"#,
            Some(InvalidField),
        ),
        case(
            "timestamp 1e400",
            r#"{"device_id":"d","timestamp":1e400}"#,
            Some(InvalidField),
        ),
        case(
            "unknown field 1e400",
            r#"{"device_id":"d","x":1e400}"#,
            None,
        ),
        // A parsed `Value` keeps one of the two: the schema never sees the duplicate.
        gap(
            "duplicate device_id",
            r#"{"device_id":"a","device_id":"b"}"#,
            Some(DuplicateField),
        ),
        gap(
            "duplicate device_id, same value",
            r#"{"device_id":"a","device_id":"a"}"#,
            Some(DuplicateField),
        ),
        gap(
            "duplicate value, first null",
            r#"{"device_id":"a","value":null,"value":1}"#,
            Some(DuplicateField),
        ),
        case(
            "duplicate unknown field",
            r#"{"device_id":"a","x":1,"x":2}"#,
            None,
        ),
        case(
            "value nested 100k deep",
            format!(r#"{{"device_id":"a","value":{}}}"#, deep(100_000)),
            Some(TooDeep),
        ),
        case(
            "unknown field nested 100k deep",
            format!(r#"{{"device_id":"a","x":{}}}"#, deep(100_000)),
            None,
        ),
        gap(
            "value nested 33 deep",
            format!(r#"{{"device_id":"a","value":{}}}"#, deep(33)),
            Some(TooDeep),
        ),
        case(
            "value nested 32 deep",
            format!(r#"{{"device_id":"a","value":{}}}"#, deep(32)),
            None,
        ),
        case(
            "timestamp RFC 3339 with offset and fraction",
            ev(json!({"device_id": "d", "timestamp": "2026-11-26T09:00:00.123456+01:00"})),
            None,
        ),
        case(
            "timestamp lower-case t and z",
            ev(json!({"device_id": "d", "timestamp": "2026-11-26t08:00:00z"})),
            None,
        ),
        case(
            "timestamp epoch ms",
            ev(json!({"device_id": "d", "timestamp": 1_795_680_000_000i64})),
            None,
        ),
        case(
            "timestamp 0",
            ev(json!({"device_id": "d", "timestamp": 0})),
            None,
        ),
        case(
            "timestamp max",
            ev(json!({"device_id": "d", "timestamp": 253_402_300_799_999i64})),
            None,
        ),
        case(
            "timestamp past max",
            ev(json!({"device_id": "d", "timestamp": 253_402_300_800_000i64})),
            Some(InvalidField),
        ),
        case(
            "timestamp negative",
            ev(json!({"device_id": "d", "timestamp": -5})),
            Some(InvalidField),
        ),
        case(
            "timestamp fraction",
            ev(json!({"device_id": "d", "timestamp": 1.5})),
            Some(InvalidField),
        ),
        gap(
            "timestamp integral float",
            r#"{"device_id":"d","timestamp":1795680000000.0}"#,
            Some(InvalidField),
        ),
        case(
            "timestamp text",
            ev(json!({"device_id": "d", "timestamp": "yesterday"})),
            Some(InvalidField),
        ),
        case(
            "timestamp date only",
            ev(json!({"device_id": "d", "timestamp": "2026-11-26"})),
            Some(InvalidField),
        ),
        case(
            "timestamp without zone",
            ev(json!({"device_id": "d", "timestamp": "2026-11-26T08:00:00"})),
            Some(InvalidField),
        ),
        case(
            "timestamp before 1970",
            ev(json!({"device_id": "d", "timestamp": "1969-12-31T23:59:59Z"})),
            Some(InvalidField),
        ),
        gap(
            "timestamp offset before 1970",
            ev(json!({"device_id": "d", "timestamp": "1970-01-01T00:30:00+01:00"})),
            Some(InvalidField),
        ),
        gap(
            "timestamp with a space separator",
            ev(json!({"device_id": "d", "timestamp": "2026-11-26 08:00:00Z"})),
            None,
        ),
        case(
            "timestamp February 30",
            ev(json!({"device_id": "d", "timestamp": "2026-02-30T08:00:00Z"})),
            Some(InvalidField),
        ),
        case(
            "timestamp boolean",
            ev(json!({"device_id": "d", "timestamp": true})),
            Some(InvalidField),
        ),
        case(
            "timestamp object",
            ev(json!({"device_id": "d", "timestamp": {}})),
            Some(InvalidField),
        ),
        case(
            "timestamp long garbage",
            ev(json!({"device_id": "d", "timestamp": "x".repeat(10_000)})),
            Some(InvalidField),
        ),
        case(
            "bidi and emoji",
            ev(json!({
                "device_id": "\u{202E}dev😀", "event_type": "\u{202E}t", "location": "🏭\u{202D}",
                "description": "\u{2066}x\u{2069}", "value": "🔥"
            })),
            None,
        ),
        case("whitespace around", " \t{ \"device_id\" : \"d\" } \t", None),
        case("BOM", "\u{feff}{\"device_id\":\"d\"}", Some(InvalidJson)),
    ]
}

/// Wire-format records (schema id 7, then the body; one not UTF-8) with the schema each resolves
/// to, one for each dead-letter kind of Schema Registry input.
fn registry_dead_letters() -> Vec<(Vec<u8>, aepiot_stream::schema_registry::schema::Resolved)> {
    use aepiot_stream::schema_registry::avro::AvroSchema;
    use aepiot_stream::schema_registry::protobuf::ProtoSchema;
    use aepiot_stream::schema_registry::schema::{Problem, Schema};
    use std::sync::Arc;
    let framed = |body: &[u8]| [&[0, 0, 0, 0, 7][..], body].concat();
    let avro = AvroSchema::parse(
        r#"{"type":"record","name":"E","fields":[{"name":"device_id","type":"string"}]}"#,
        &[],
    )
    .unwrap();
    let proto = ProtoSchema::parse(
        "syntax = \"proto3\";\nmessage E { string device_id = 1; }\n",
        &[],
    )
    .unwrap();
    vec![
        (
            framed(b"\x01"),
            Err(Arc::new(Problem::new(
                ErrorKind::UnknownSchema,
                "not known",
            ))),
        ),
        (
            framed(&[0xff, 0xfe]),
            Err(Arc::new(Problem::field(
                ErrorKind::SchemaMismatch,
                "device_id",
                "no device_id",
            ))),
        ),
        (framed(&[0x08, b'a']), Ok(Arc::new(Schema::Avro(avro)))),
        (
            framed(&[0, 0x0a, 0x05]),
            Ok(Arc::new(Schema::Protobuf(proto))),
        ),
    ]
}

#[test]
fn hostile_inputs_give_schema_valid_outputs_and_the_event_schema_agrees() {
    let v = validators();
    let cases = hostile_cases();
    let mut kinds = std::collections::BTreeSet::new();
    for (settings_name, settings) in [
        ("default", EngineSettings::default()),
        (
            "small limits",
            EngineSettings {
                max_record_bytes: 1000,
                max_dead_letter_payload_bytes: 50,
                ..Default::default()
            },
        ),
        (
            // A sink that takes 1500 bytes: larger URL records are `output_too_large`.
            "small output limit",
            EngineSettings {
                max_output_bytes: 1500,
                ..Default::default()
            },
        ),
    ] {
        let limit = settings.max_record_bytes;
        let mut engine = emitting_engine(settings);
        for (i, c) in cases.iter().enumerate() {
            let what = format!("{settings_name}: {}", c.name);
            let meta = RecordMeta {
                record_time_ms: Some(NOW_MS - 1000),
                now_ms: NOW_MS,
                source: source(i),
            };
            let seen = check_output(&v, engine.process(c.payload.as_deref(), &meta), &what);
            let too_large = c.payload.as_ref().is_some_and(|p| p.len() > limit);
            let want = match (too_large, c.expect) {
                (true, _) => Seen::Dead(ErrorKind::TooLarge),
                (false, Some(kind)) => Seen::Dead(kind),
                (false, None) => Seen::Record("success".into()),
            };
            // A valid event may be cached or rate limited by an earlier one of the same device,
            // and its URL record may be over a small output limit.
            let same = match (&seen, &want) {
                (Seen::Record(_), Seen::Record(_)) => true,
                (Seen::Dead(ErrorKind::OutputTooLarge), Seen::Record(_)) => {
                    settings_name == "small output limit"
                }
                _ => seen == want,
            };
            assert!(same, "{what}: got {seen:?}, want {want:?}");
            if let Seen::Dead(kind) = seen {
                kinds.insert(kind.as_str());
            }
        }
    }
    // `output_rejected` is the broker's verdict on a written record, so the engine only encodes it.
    let mut engine = emitting_engine(EngineSettings::default());
    let meta = RecordMeta {
        record_time_ms: None,
        now_ms: NOW_MS,
        source: source(0),
    };
    let error = aepiot_stream::core::RecordError::new(ErrorKind::OutputRejected, "INVALID_RECORD");
    let seen = check_output(
        &v,
        engine.reject(error, Some(b"{\"device_id\":\"d\"}"), 16, &meta),
        "output_rejected",
    );
    if let Seen::Dead(kind) = seen {
        kinds.insert(kind.as_str());
    }
    // The Schema Registry's kinds, through its dispatch (from real clients: tests/schema_registry.rs).
    for (payload, schema) in registry_dead_letters() {
        let mut buf = Vec::new();
        let out = aepiot_stream::schema_registry::dispatch::process(
            &mut engine,
            &mut buf,
            Some(&payload),
            |_| Some(schema),
            &meta,
        );
        if let Seen::Dead(kind) = check_output(&v, out, "schema registry") {
            kinds.insert(kind.as_str());
        }
    }
    // Every kind of dead letter was produced and validated.
    assert_eq!(kinds.len(), ErrorKind::ALL.len(), "{kinds:?}");

    // The event schema accepts what the code accepts and rejects what it rejects, except for the
    // rules its descriptions say it cannot express.
    for c in &cases {
        let Some(payload) = &c.payload else { continue };
        let Ok(instance) = serde_json::from_slice::<Value>(payload) else {
            // Not representable as a JSON value (not JSON, not UTF-8, out of range, too deep to
            // parse into a tree): nothing for a schema to judge.
            continue;
        };
        let code_accepts = parse_event(Some(payload), 1 << 20).is_ok();
        assert_eq!(code_accepts, c.expect.is_none(), "{}", c.name);
        let schema_accepts = v.event.is_valid(&instance);
        if c.schema_agrees {
            assert_eq!(
                schema_accepts, code_accepts,
                "{}: schema and code disagree on {instance}",
                c.name
            );
        } else {
            assert_ne!(
                schema_accepts, code_accepts,
                "{}: documented schema gap closed? update the case",
                c.name
            );
        }
    }
}

#[test]
fn invalid_events_do_not_validate() {
    let v = validators();
    for bad in [
        json!({}),
        json!({"event_type": "temp"}),
        json!([]),
        json!([{"device_id": "d"}]),
        json!("device_id"),
        json!(42),
        Value::Null,
        json!({"device_id": null}),
        json!({"device_id": ""}),
        json!({"device_id": 7}),
        json!({"device_id": "x".repeat(257)}),
        json!({"device_id": "d", "timestamp": "yesterday"}),
        json!({"device_id": "d", "timestamp": -5}),
        json!({"device_id": "d", "timestamp": 1.5}),
        json!({"device_id": "d", "timestamp": [1]}),
    ] {
        assert!(!v.event.is_valid(&bad), "accepted: {bad}");
    }
}

/// Dead letters of over-long lines, which `process` makes from a bounded prefix (possibly cut
/// inside a character, possibly not UTF-8), validate too.
#[test]
fn dead_letters_of_prefixes_validate() {
    let v = validators();
    let mut engine = emitting_engine(EngineSettings {
        max_dead_letter_payload_bytes: 7,
        ..Default::default()
    });
    let meta = RecordMeta {
        record_time_ms: None,
        now_ms: NOW_MS,
        source: Some(Source::Line { line: 9 }),
    };
    let prefixes: [&[u8]; 5] = [
        b"{\"a\":\"\xc3\xa9\xc3\xa9",
        b"\xc3",
        b"{\"\xff\"",
        b"",
        b"abcdefghijk",
    ];
    for prefix in prefixes {
        let error = RecordError::new(ErrorKind::TooLarge, "record is too large");
        let out = engine.reject(error, Some(prefix), 10_000_000, &meta);
        let Output::DeadLetter { json, .. } = out else {
            panic!("not a dead letter")
        };
        let letter: Value = serde_json::from_slice(json).unwrap();
        assert_valid(&v.dead, &letter, &format!("{prefix:?}"));
        assert_eq!(letter["payload_truncated"], true);
        assert_eq!(letter["payload_bytes"], 10_000_000);
    }
}
