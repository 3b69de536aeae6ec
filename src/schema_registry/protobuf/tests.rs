use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Value};

use super::*;

/// As tests/fixtures/sr_clients.py builds it: a first message, then the event (indexes [1]).
pub(crate) const EVENT: &str = r#"syntax = "proto3";
package dev.aepiot.test;
import "google/protobuf/timestamp.proto";
message DeviceInfo {
  string model = 1;
  message Nested { string device_id = 1; optional string region = 2; }
}
message IotEvent {
  string device_id = 1;
  optional string event_type = 2;
  optional double value = 5;
  google.protobuf.Timestamp timestamp = 6;
  optional string region = 7;
  optional string firmware = 10;
  Level severity = 11;
  repeated int32 location = 12;
}
enum Level { LOW = 0; HIGH = 1; }
"#;

fn message(schema: &ProtoSchema, indexes: &[usize], set: &[(&str, Value)]) -> Vec<u8> {
    let desc = schema.message(indexes).unwrap();
    let mut m = DynamicMessage::new(desc);
    for (name, v) in set {
        m.set_field_by_name(name, v.clone());
    }
    m.encode_to_vec()
}

fn timestamp(schema: &ProtoSchema, secs: i64, nanos: i32) -> Value {
    let desc = schema
        .file
        .parent_pool()
        .get_message_by_name("google.protobuf.Timestamp")
        .unwrap();
    let mut t = DynamicMessage::new(desc);
    t.set_field_by_name("seconds", Value::I64(secs));
    t.set_field_by_name("nanos", Value::I32(nanos));
    Value::Message(t)
}

/// The event of the dispatch tests, as an `IotEvent`.
pub(crate) fn event_message(schema: &ProtoSchema) -> DynamicMessage {
    let mut m = DynamicMessage::new(schema.message(&[1]).unwrap());
    m.set_field_by_name("device_id", Value::String("press-7".into()));
    m.set_field_by_name("event_type", Value::String("temperature_alert".into()));
    m.set_field_by_name("value", Value::F64(20.5));
    m.set_field_by_name("timestamp", timestamp(schema, 1_795_680_301, 0));
    m
}

fn decode(schema: &ProtoSchema, body: &[u8]) -> Result<String, RecordError> {
    let mut buf = Vec::new();
    schema.decode(body, &mut buf)?;
    Ok(String::from_utf8(buf).unwrap())
}

fn with_indexes(indexes: &[u8], message: &[u8]) -> Vec<u8> {
    [indexes, message].concat()
}

#[test]
fn the_message_the_indexes_name_becomes_the_events_json() {
    let schema = ProtoSchema::parse(EVENT, &[]).unwrap();
    let m = message(
        &schema,
        &[1],
        &[
            ("device_id", Value::String("press-7".into())),
            ("event_type", Value::String("temperature_alert".into())),
            ("value", Value::F64(20.5)),
            ("timestamp", timestamp(&schema, 1_795_680_301, 0)),
            ("firmware", Value::String("1.2".into())),
            ("severity", Value::EnumNumber(1)),
            ("location", Value::List(vec![Value::I32(3), Value::I32(4)])),
        ],
    );
    // Indexes [1]: count 1 (zigzag 2), index 1 (zigzag 2).
    assert_eq!(
        decode(&schema, &with_indexes(&[2, 2], &m)).unwrap(),
        r#"{"device_id":"press-7","event_type":"temperature_alert","value":20.5,"timestamp":"2026-11-26T08:05:01.000Z","severity":"HIGH","location":[3,4]}"#
    );
    // The 0 shortcut names the first message, which has no device_id; a nested one does.
    let e = decode(&schema, &with_indexes(&[0], &m)).unwrap_err();
    assert_eq!(
        (e.kind, e.field),
        (ErrorKind::SchemaMismatch, Some("device_id"))
    );
    assert!(
        e.message.contains("dev.aepiot.test.DeviceInfo"),
        "{}",
        e.message
    );
    let nested = message(
        &schema,
        &[0, 0],
        &[("device_id", Value::String("n".into()))],
    );
    assert_eq!(
        decode(&schema, &with_indexes(&[4, 0, 0], &nested)).unwrap(),
        r#"{"device_id":"n"}"#
    );
}

#[test]
fn hostile_bytes_are_invalid_protobuf_with_the_reason() {
    let schema = ProtoSchema::parse(EVENT, &[]).unwrap();
    let m = message(
        &schema,
        &[1],
        &[("device_id", Value::String("d".repeat(40)))],
    );
    let body = with_indexes(&[2, 2], &m);
    for cut in 3..body.len() {
        let e = decode(&schema, &body[..cut]).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::InvalidProtobuf,
            "cut at {cut}: {}",
            e.message
        );
    }
    for bad in [&[][..], &[2, 14], &[0xfe, 0xff, 0xff, 0xff, 0x0f]] {
        let e = decode(&schema, bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidProtobuf, "{bad:?}");
    }
    // A length far past the end.
    let e = decode(&schema, &[2, 2, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x07]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidProtobuf);
    // Nesting past prost's recursion limit: refused, not a stack overflow.
    let deep = "message D { string device_id = 1; D d = 2; }";
    let deep = ProtoSchema::parse(&format!("syntax = \"proto3\";\n{deep}"), &[]).unwrap();
    let mut bytes = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x12];
        prost::encoding::encode_varint(bytes.len() as u64, &mut outer);
        outer.extend_from_slice(&bytes);
        bytes = outer;
    }
    let e = decode(&deep, &with_indexes(&[0], &bytes)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidProtobuf);
}

#[test]
fn schemas_as_base64_descriptors_and_with_references() {
    let compiled = ProtoSchema::parse(EVENT, &[]).unwrap();
    let proto = compiled.file.file_descriptor_proto().clone();
    let encoded = base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec());
    let schema = ProtoSchema::parse(&encoded, &[]).unwrap();
    let m = message(&schema, &[1], &[("device_id", Value::String("b".into()))]);
    assert_eq!(
        decode(&schema, &with_indexes(&[2, 2], &m)).unwrap(),
        r#"{"device_id":"b"}"#
    );

    let common = "syntax = \"proto3\";\npackage common;\nmessage Where { string site = 1; }\n";
    let text = "syntax = \"proto3\";\nimport \"common/where.proto\";\n\
                message E { string device_id = 1; common.Where location = 4; }\n";
    let refs = [("common/where.proto".to_string(), common.to_string())];
    let schema = ProtoSchema::parse(text, &refs).unwrap();
    let desc = schema.message(&[0]).unwrap();
    let loc = desc.get_field_by_name("location").unwrap();
    let mut where_ = DynamicMessage::new(loc.kind().as_message().unwrap().clone());
    where_.set_field_by_name("site", Value::String("Plant 3".into()));
    let m = message(
        &schema,
        &[0],
        &[
            ("device_id", Value::String("r".into())),
            ("location", Value::Message(where_)),
        ],
    );
    assert_eq!(
        decode(&schema, &with_indexes(&[0], &m)).unwrap(),
        r#"{"device_id":"r","location":{"site":"Plant 3"}}"#
    );
    let p = ProtoSchema::parse(text, &[]).unwrap_err();
    assert_eq!(p.kind, ErrorKind::InvalidProtobuf);
    assert!(p.message.contains("common/where.proto"), "{}", p.message);
    let p = ProtoSchema::parse("syntax = \"proto3\";\n", &[]).unwrap_err();
    assert_eq!(p.kind, ErrorKind::SchemaMismatch);
}
