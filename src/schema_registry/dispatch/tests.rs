use std::sync::Arc;

use apache_avro::types::Value as Avro;
use prost::Message as _;

use super::*;
use crate::core::{EngineSettings, Shared};
use crate::schema_registry::avro::AvroSchema;
use crate::schema_registry::protobuf::ProtoSchema;
use crate::schema_registry::schema::Problem;

const JSON_EVENT: &str = r#"{"device_id":"press-7","event_type":"temperature_alert","value":20.5,"timestamp":"2026-11-26T08:05:01.000Z"}"#;
const TS_MS: i64 = 1_795_680_301_000;

fn meta() -> RecordMeta<'static> {
    RecordMeta {
        record_time_ms: None,
        now_ms: TS_MS + 1000,
        source: None,
    }
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The output of one record: (kind of output, its JSON).
fn run(payload: &[u8], schema: Option<Resolved>) -> (String, String) {
    let mut engine = Engine::new(Shared::new(EngineSettings::default()));
    let mut buf = Vec::new();
    let out = process(&mut engine, &mut buf, Some(payload), |_| schema, &meta());
    match out {
        Output::Record { json, .. } => ("record".into(), String::from_utf8(json.to_vec()).unwrap()),
        Output::DeadLetter { error, json } => (
            error.kind.as_str().into(),
            String::from_utf8(json.to_vec()).unwrap(),
        ),
        Output::Suppressed { .. } => ("suppressed".into(), String::new()),
    }
}

fn avro_event() -> (Resolved, Vec<u8>) {
    let text = crate::schema_registry::avro::tests::EVENT;
    let schema = apache_avro::Schema::parse_str(text).unwrap();
    let record = Avro::Record(vec![
        ("device_id".into(), Avro::String("press-7".into())),
        (
            "event_type".into(),
            Avro::Union(1, Box::new(Avro::String("temperature_alert".into()))),
        ),
        ("value".into(), Avro::Union(1, Box::new(Avro::Double(20.5)))),
        (
            "timestamp".into(),
            Avro::Union(1, Box::new(Avro::TimestampMillis(TS_MS))),
        ),
        ("region".into(), Avro::Union(0, Box::new(Avro::Null))),
        ("firmware".into(), Avro::Union(0, Box::new(Avro::Null))),
    ]);
    let body = apache_avro::to_avro_datum(&schema, record).unwrap();
    let parsed = AvroSchema::parse(text, &[]).unwrap();
    (Ok(Arc::new(Schema::Avro(parsed))), body)
}

fn protobuf_event() -> (Resolved, Vec<u8>) {
    let parsed = ProtoSchema::parse(crate::schema_registry::protobuf::tests::EVENT, &[]).unwrap();
    let mut body = vec![2, 2];
    let m = crate::schema_registry::protobuf::tests::event_message(&parsed);
    body.extend_from_slice(&m.encode_to_vec());
    (Ok(Arc::new(Schema::Protobuf(parsed))), body)
}

#[test]
fn the_same_event_in_every_encoding_gives_the_same_url_record() {
    let (json_kind, from_json) = run(JSON_EVENT.as_bytes(), None);
    assert_eq!(json_kind, "record", "{from_json}");
    let (avro, avro_body) = avro_event();
    let (protobuf, protobuf_body) = protobuf_event();
    let json_schema: Resolved = Ok(Arc::new(Schema::Json));
    for (name, schema, body) in [
        ("avro", avro, avro_body),
        ("protobuf", protobuf, protobuf_body),
        ("json schema", json_schema, JSON_EVENT.as_bytes().to_vec()),
    ] {
        let (kind, record) = run(&framed(3, &body), Some(schema));
        assert_eq!(
            (kind.as_str(), record.as_str()),
            ("record", from_json.as_str()),
            "{name}"
        );
    }
}

#[test]
fn what_a_record_needs_before_it_is_processed() {
    assert_eq!(
        needs(Some(JSON_EVENT.as_bytes()), |_| false),
        Needs::Nothing
    );
    assert_eq!(needs(None, |_| false), Needs::Nothing);
    assert_eq!(needs(Some(&framed(9, b"x")), |_| false), Needs::Schema(9));
    assert_eq!(needs(Some(&framed(9, b"x")), |id| id == 9), Needs::Nothing);
    // Too short to name a schema: nothing to fetch, a dead letter.
    assert_eq!(needs(Some(&[0, 0, 1]), |_| false), Needs::Nothing);
    assert_eq!(run(&[0, 0, 1], None).0, "invalid_json");
}

#[test]
fn failures_are_dead_letters_naming_the_schema_id_and_carrying_the_record() {
    let unknown: Resolved = Err(Arc::new(Problem::new(
        ErrorKind::UnknownSchema,
        "the registry does not know it",
    )));
    let payload = framed(42, b"\x01\x02");
    let (kind, letter) = run(&payload, Some(unknown));
    assert_eq!(kind, "unknown_schema");
    let letter: serde_json::Value = serde_json::from_str(&letter).unwrap();
    assert_eq!(letter["error"]["schema_id"], 42);
    assert!(letter["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("schema id 42: "));
    // The record as it came, not a decoded form: a replay sends it again as it was.
    assert_eq!(letter["payload_bytes"], payload.len());

    let (avro, body) = avro_event();
    let (kind, letter) = run(&framed(5, &body[..body.len() - 3]), Some(avro.clone()));
    assert_eq!(kind, "invalid_avro", "{letter}");
    let (protobuf, _) = protobuf_event();
    let (kind, _) = run(&framed(5, &[2, 2, 0x0a, 0x7f]), Some(protobuf));
    assert_eq!(kind, "invalid_protobuf");
    let json: Resolved = Ok(Arc::new(Schema::Json));
    assert_eq!(
        run(&framed(5, b"{nope"), Some(json.clone())).0,
        "invalid_json"
    );
    // The engine's own rules hold for decoded events: a missing device_id, an unsafe link.
    let (kind, letter) = run(&framed(5, br#"{"event_type":"x"}"#), Some(json.clone()));
    assert_eq!(kind, "missing_field");
    assert!(letter.contains(r#""schema_id":5"#), "{letter}");
    let link = br#"{"device_id":"d","dashboard_url":"javascript:alert(1)"}"#;
    assert_eq!(run(&framed(5, link), Some(json)).0, "invalid_field");
}
