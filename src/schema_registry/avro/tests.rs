use apache_avro::types::Value;

use super::*;

/// The IoT event as the test producer (tests/fixtures/sr_clients.py) registers it.
pub(crate) const EVENT: &str = r#"{"type":"record","name":"IotEvent","namespace":"dev.aepiot.test","fields":[
  {"name":"device_id","type":"string"},
  {"name":"event_type","type":["null","string"],"default":null},
  {"name":"value","type":["null","double"],"default":null},
  {"name":"timestamp","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
  {"name":"region","type":["null","string"],"default":null},
  {"name":"firmware","type":["null","string"],"default":null}]}"#;

fn encode(schema: &str, fields: Vec<(&str, Value)>) -> Vec<u8> {
    let schema = Schema::parse_str(schema).unwrap();
    let record = Value::Record(fields.into_iter().map(|(k, v)| (k.into(), v)).collect());
    apache_avro::to_avro_datum(&schema, record).unwrap()
}

fn event(device: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("device_id", Value::String(device.into())),
        (
            "event_type",
            Value::Union(1, Box::new(Value::String("temperature_alert".into()))),
        ),
        ("value", Value::Union(1, Box::new(Value::Double(20.5)))),
        (
            "timestamp",
            Value::Union(1, Box::new(Value::TimestampMillis(1_795_680_301_000))),
        ),
        ("region", Value::Union(0, Box::new(Value::Null))),
        (
            "firmware",
            Value::Union(1, Box::new(Value::String("1.2".into()))),
        ),
    ]
}

fn decode(schema: &AvroSchema, body: &[u8]) -> Result<String, RecordError> {
    let mut buf = Vec::new();
    schema.decode(body, &mut buf)?;
    Ok(String::from_utf8(buf).unwrap())
}

#[test]
fn a_record_becomes_the_events_json_with_known_fields_only() {
    let schema = AvroSchema::parse(EVENT, &[]).unwrap();
    let json = decode(&schema, &encode(EVENT, event("press-7"))).unwrap();
    assert_eq!(
        json,
        r#"{"device_id":"press-7","event_type":"temperature_alert","value":20.5,"timestamp":"2026-11-26T08:05:01.000Z","region":null}"#
    );
}

#[test]
fn timestamp_micros_and_nested_values() {
    let text = r#"{"type":"record","name":"E","fields":[
      {"name":"device_id","type":"string"},
      {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"location","type":{"type":"map","values":"int"}},
      {"name":"value","type":"float"},
      {"name":"severity","type":{"type":"enum","name":"S","symbols":["low","high"]}}]}"#;
    let schema = AvroSchema::parse(text, &[]).unwrap();
    let mut map = std::collections::HashMap::new();
    map.insert("b".to_string(), Value::Int(2));
    map.insert("a".to_string(), Value::Int(1));
    let body = encode(
        text,
        vec![
            ("device_id", Value::String("d".into())),
            ("timestamp", Value::TimestampMicros(1_795_680_301_000_123)),
            ("location", Value::Map(map)),
            ("value", Value::Float(0.1)),
            ("severity", Value::Enum(1, "high".into())),
        ],
    );
    assert_eq!(
        decode(&schema, &body).unwrap(),
        r#"{"device_id":"d","timestamp":"2026-11-26T08:05:01.000123Z","location":{"a":1,"b":2},"value":0.1,"severity":"high"}"#
    );
}

#[test]
fn hostile_bytes_are_invalid_avro_with_the_reason() {
    let schema = AvroSchema::parse(EVENT, &[]).unwrap();
    let good = encode(EVENT, event("press-7"));
    // Every cut of a valid record is refused (apache_avro alone reads some as nulls).
    for cut in 0..good.len() {
        let e = decode(&schema, &good[..cut]).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::InvalidAvro,
            "cut at {cut}: {}",
            e.message
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    let e = decode(&schema, &longer).unwrap_err();
    assert!(e.message.contains("1 bytes are left"), "{}", e.message);
    // A string claiming a huge length: refused, not allocated.
    let e = decode(&schema, &[0xfe, 0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidAvro);
    // A union index out of range (event_type's, after the 2 bytes of device_id "d").
    let mut bad_union = encode(EVENT, event("d"));
    bad_union[2] = 0x08;
    assert_eq!(
        decode(&schema, &bad_union).unwrap_err().kind,
        ErrorKind::InvalidAvro
    );
}

#[test]
fn values_a_url_cannot_carry_are_invalid_fields() {
    let schema = AvroSchema::parse(EVENT, &[]).unwrap();
    let mut fields = event("d");
    fields[2] = ("value", Value::Union(1, Box::new(Value::Double(f64::NAN))));
    let e = decode(&schema, &encode(EVENT, fields)).unwrap_err();
    assert_eq!((e.kind, e.field), (ErrorKind::InvalidField, Some("value")));
}

#[test]
fn schemas_that_cannot_carry_events_are_mismatches() {
    let no_id = EVENT.replace("\"device_id\"", "\"sensor_id\"");
    let p = AvroSchema::parse(&no_id, &[]).unwrap_err();
    assert_eq!(
        (p.kind, p.field),
        (ErrorKind::SchemaMismatch, Some("device_id"))
    );
    assert!(
        p.message.contains("dev.aepiot.test.IotEvent"),
        "{}",
        p.message
    );
    let int_id = EVENT.replace(r#""type":"string"}"#, r#""type":"int"}"#);
    let p = AvroSchema::parse(&int_id, &[]).unwrap_err();
    assert_eq!(p.kind, ErrorKind::SchemaMismatch);
    assert!(AvroSchema::parse(r#""string""#, &[]).is_err());
    let p = AvroSchema::parse("{not json", &[]).unwrap_err();
    assert_eq!(p.kind, ErrorKind::InvalidAvro);
}

#[test]
fn recursive_schemas_and_arrays_of_nothing_are_refused() {
    let recursive = r#"{"type":"record","name":"Node","fields":[
      {"name":"device_id","type":"string"},
      {"name":"next","type":["null","Node"]}]}"#;
    let p = AvroSchema::parse(recursive, &[]).unwrap_err();
    assert!(p.message.contains("contains itself"), "{}", p.message);
    for items in [
        r#""null""#,
        r#"{"type":"record","name":"Empty","fields":[]}"#,
    ] {
        let text = format!(
            r#"{{"type":"record","name":"E","fields":[{{"name":"device_id","type":"string"}},
              {{"name":"x","type":{{"type":"array","items":{items}}}}}]}}"#
        );
        let p = AvroSchema::parse(&text, &[]).unwrap_err();
        assert!(p.message.contains("take no bytes"), "{}", p.message);
    }
    // A named type used twice is not recursion.
    let twice = r#"{"type":"record","name":"E","fields":[{"name":"device_id","type":"string"},
      {"name":"a","type":{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]}},
      {"name":"b","type":"P"}]}"#;
    AvroSchema::parse(twice, &[]).unwrap();
}

#[test]
fn references_resolve_named_types() {
    let point = r#"{"type":"record","name":"Point","namespace":"geo","fields":[{"name":"lat","type":"double"}]}"#;
    let text = r#"{"type":"record","name":"E","fields":[{"name":"device_id","type":"string"},
      {"name":"location","type":"geo.Point"}]}"#;
    let schema = AvroSchema::parse(text, &[point.to_string()]).unwrap();
    let (main, refs) = Schema::parse_str_with_list(text, [point]).unwrap();
    let record = Value::Record(vec![
        ("device_id".into(), Value::String("d".into())),
        (
            "location".into(),
            Value::Record(vec![("lat".into(), Value::Double(1.5))]),
        ),
    ]);
    let body = apache_avro::to_avro_datum_schemata(&main, refs.iter().collect(), record).unwrap();
    assert_eq!(
        decode(&schema, &body).unwrap(),
        r#"{"device_id":"d","location":{"lat":1.5}}"#
    );
}

/// Both readings of `body` (the fast walk and `apache_avro`'s `Value`s): the same JSON, or errors
/// of the same kind and field.
fn same_answer(schema: &AvroSchema, body: &[u8]) {
    assert!(schema.fast.is_some(), "the fast walk reads this schema");
    let (mut fast, mut values) = (Vec::new(), Vec::new());
    let a = schema.decode(body, &mut fast);
    let b = schema.decode_values(body, &mut values);
    match (&a, &b) {
        (Ok(()), Ok(())) => assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&values),
            "{body:?}"
        ),
        (Err(x), Err(y)) => assert_eq!(
            (x.kind, x.field),
            (y.kind, y.field),
            "{body:?}: {x:?} / {y:?}"
        ),
        _ => panic!("{body:?}: fast {a:?}, values {b:?}"),
    }
}

/// The fast walk answers what the `Value` path answers, on valid records of every type it reads,
/// on every cut of them, with a byte added, and with every byte replaced by others (the bytes a
/// device may send).
#[test]
fn the_fast_walk_answers_as_apache_avro_does() {
    let text = r#"{"type":"record","name":"E","namespace":"n","fields":[
      {"name":"device_id","type":"string"},
      {"name":"event_type","type":["null","string"]},
      {"name":"severity","type":{"type":"enum","name":"S","symbols":["low","high"]}},
      {"name":"value","type":["null","double","float","int","long","boolean"]},
      {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"location","type":{"type":"map","values":["float","string"]}},
      {"name":"region","type":{"type":"fixed","name":"F","size":3}},
      {"name":"description","type":{"type":"array","items":{"type":"record","name":"P",
         "fields":[{"name":"x","type":"int"},{"name":"t","type":{"type":"long","logicalType":"local-timestamp-micros"}},
                   {"name":"b","type":"bytes"}]}}},
      {"name":"dashboard_url","type":["null",{"type":"int","logicalType":"date"}]},
      {"name":"other","type":{"type":"array","items":"P"}},
      {"name":"ts2","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
    let schema = AvroSchema::parse(text, &[]).unwrap();
    let raw = Schema::parse_str(text).unwrap();
    let p = |x: i32, b: &[u8]| {
        Value::Record(vec![
            ("x".into(), Value::Int(x)),
            ("t".into(), Value::LocalTimestampMicros(-1_234_567)),
            ("b".into(), Value::Bytes(b.to_vec())),
        ])
    };
    let record = |value: Value, map: Vec<(&str, Value)>| {
        Value::Record(vec![
            ("device_id".into(), Value::String("dév-\"1\"".into())),
            (
                "event_type".into(),
                Value::Union(1, Box::new(Value::String("alarm".into()))),
            ),
            ("severity".into(), Value::Enum(1, "high".into())),
            ("value".into(), value),
            (
                "timestamp".into(),
                Value::TimestampMicros(1_795_680_301_000_123),
            ),
            (
                "location".into(),
                Value::Map(map.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            ),
            ("region".into(), Value::Fixed(3, b"eu1".to_vec())),
            (
                "description".into(),
                Value::Array(vec![p(1, b"ok"), p(-7, b"fine")]),
            ),
            (
                "dashboard_url".into(),
                Value::Union(1, Box::new(Value::Date(20_000))),
            ),
            ("other".into(), Value::Array(vec![p(3, &[0xff, 0xfe])])),
            ("ts2".into(), Value::TimestampMillis(-5)),
        ])
    };
    let values = [
        Value::Union(0, Box::new(Value::Null)),
        Value::Union(1, Box::new(Value::Double(20.5))),
        Value::Union(1, Box::new(Value::Double(f64::NAN))),
        Value::Union(2, Box::new(Value::Float(0.1))),
        Value::Union(2, Box::new(Value::Float(f32::INFINITY))),
        Value::Union(3, Box::new(Value::Int(-3))),
        Value::Union(4, Box::new(Value::Long(i64::MIN))),
        Value::Union(5, Box::new(Value::Boolean(true))),
    ];
    let maps = [
        vec![],
        vec![
            ("b", Value::Union(0, Box::new(Value::Float(2.5)))),
            ("a", Value::Union(1, Box::new(Value::String("x".into())))),
        ],
        vec![
            ("z", Value::Union(0, Box::new(Value::Float(f32::NAN)))),
            ("a", Value::Union(0, Box::new(Value::Float(1.0)))),
        ],
    ];
    let mut bodies = Vec::new();
    for value in &values {
        for map in &maps {
            bodies.push(
                apache_avro::to_avro_datum(&raw, record(value.clone(), map.clone())).unwrap(),
            );
        }
    }
    with_hand_written_maps(&mut bodies);
    for body in &bodies {
        variations_answer_the_same(&schema, body);
    }
}

/// Maps as a device may write them and `apache_avro` does not: a repeated key (the last one
/// counts, and a value no URL carries under the earlier one does not), and a block with a
/// negative count followed by its size in bytes. Made from `bodies[0]` (an empty map) and
/// `bodies[1]` (the same record with a map).
fn with_hand_written_maps(bodies: &mut Vec<Vec<u8>>) {
    let string = |s: &str| {
        let mut b = vec![(s.len() as u8) << 1];
        b.extend_from_slice(s.as_bytes());
        b
    };
    // bodies[0] and bodies[1] differ from the map on (empty, then two entries).
    let good = bodies[0].clone();
    let map_at = (0..good.len()).find(|&i| good[i] != bodies[1][i]).unwrap();
    assert_eq!(good[map_at], 0);
    for (first, second) in [(f32::NAN, 1.0f32), (1.0, f32::NAN), (1.0, 2.0)] {
        let mut b = good[..map_at].to_vec();
        b.push(4); // two entries
        for v in [first, second] {
            b.extend(string("k"));
            b.push(0); // union index: float
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(0);
        b.extend_from_slice(&good[map_at + 1..]);
        bodies.push(b);
    }
    // A block with a negative count (followed by its size in bytes), as encoders may write it.
    let mut b = good[..map_at].to_vec();
    b.push(1); // -1
    let entry = [string("k"), vec![0], 3.5f32.to_le_bytes().to_vec()].concat();
    b.push((entry.len() as u8) << 1);
    b.extend(entry);
    b.push(0);
    b.extend_from_slice(&good[map_at + 1..]);
    bodies.push(b);
}

/// `body`, every cut of it, it with a byte added, and it with each byte replaced by others:
/// the same answer from both paths.
fn variations_answer_the_same(schema: &AvroSchema, body: &[u8]) {
    same_answer(schema, body);
    for cut in 0..body.len() {
        same_answer(schema, &body[..cut]);
    }
    let mut longer = body.to_vec();
    longer.push(0);
    same_answer(schema, &longer);
    for i in 0..body.len() {
        for x in [
            0x00,
            0x01,
            0x02,
            0x7f,
            0x80,
            0xff,
            body[i] ^ 0x01,
            body[i] ^ 0x40,
        ] {
            let mut changed = body.to_vec();
            changed[i] = x;
            same_answer(schema, &changed);
        }
    }
}

#[test]
fn schemas_the_fast_walk_does_not_read_keep_the_value_path() {
    let text = r#"{"type":"record","name":"E","fields":[{"name":"device_id","type":"string"},
      {"name":"id","type":{"type":"string","logicalType":"uuid"}}]}"#;
    let schema = AvroSchema::parse(text, &[]).unwrap();
    assert!(schema.fast.is_none());
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let mut body = vec![2, b'd', (id.len() as u8) << 1];
    body.extend_from_slice(id.as_bytes());
    assert_eq!(decode(&schema, &body).unwrap(), r#"{"device_id":"d"}"#);
    // References read by the fast walk: the named type inlined.
    let point = r#"{"type":"record","name":"Point","namespace":"geo","fields":[{"name":"lat","type":"double"}]}"#;
    let text = r#"{"type":"record","name":"E","fields":[{"name":"device_id","type":"string"},
      {"name":"location","type":"geo.Point"}]}"#;
    assert!(AvroSchema::parse(text, &[point.to_string()])
        .unwrap()
        .fast
        .is_some());
}
