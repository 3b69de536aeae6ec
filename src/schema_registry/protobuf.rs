//! Protobuf messages (`prost-reflect`), with descriptors compiled from the registry's schema and
//! the schemas it references (`protox`); well-known imports such as
//! `google/protobuf/timestamp.proto` are built in. The message of a record is the one its message
//! indexes name ([`super::wire::message_indexes`]); its set fields that an event has are written
//! as the event's JSON (see [`super::event_json`]). A `google.protobuf.Timestamp` is an instant, a
//! wrapper (`google.protobuf.DoubleValue`…) its value, an enum its value's name.
//!
//! Proto3 fields without presence (no `optional`) are absent when they hold their default, as in
//! protobuf's own JSON mapping: such a `device_id` left empty is a `missing_field`.
//!
//! A schema may come as `.proto` text or, as some serializers register it, as a base64-encoded
//! `FileDescriptorProto`; both are read. Nesting in a record is bounded by `prost`'s recursion
//! limit (100), lengths by the bytes that are there.

use std::collections::HashMap;

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FileDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::event_json::{self as out, ObjectWriter};
use super::problem::Problem;
use super::wire;
use crate::core::{ErrorKind, RecordError};

/// The name the schema's own file is compiled under (its references keep their import names).
const MAIN_FILE: &str = "aepiot-registry-schema.proto";

/// A Protobuf schema from the registry: the compiled file.
#[derive(Debug)]
pub struct ProtoSchema {
    file: FileDescriptor,
}

impl ProtoSchema {
    /// Compiles `text` with `references`, (import name, schema text) pairs.
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<ProtoSchema, Problem> {
        let invalid = |why: String| {
            Problem::new(
                ErrorKind::InvalidProtobuf,
                format!("the schema does not compile as Protobuf: {why}"),
            )
        };
        let mut files = HashMap::new();
        let main = source(MAIN_FILE, text).map_err(invalid)?;
        let main_name = main.name().to_owned();
        files.insert(main_name.clone(), main);
        for (name, text) in references {
            files.insert(name.clone(), source(name, text).map_err(invalid)?);
        }
        // Built-in well-known files first: a registry's copy of them changes nothing.
        let mut resolver = ChainFileResolver::new();
        resolver.add(GoogleFileResolver::new());
        resolver.add(Files(files));
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler
            .open_file(&main_name)
            .map_err(|e| invalid(e.to_string()))?;
        let pool: DescriptorPool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(&main_name)
            .ok_or_else(|| invalid("the compiled file is missing".into()))?;
        if file.messages().len() == 0 {
            return Err(Problem::new(
                ErrorKind::SchemaMismatch,
                "the schema defines no message, so it carries no event",
            ));
        }
        Ok(ProtoSchema { file })
    }

    /// The message a record's indexes name.
    fn message(&self, indexes: &[usize]) -> Option<MessageDescriptor> {
        let (first, nested) = indexes.split_first()?;
        let mut m = self.file.messages().nth(*first)?;
        for i in nested {
            let child = m.child_messages().nth(*i)?;
            m = child;
        }
        Some(m)
    }

    /// Decodes one record's body (message indexes, then the message) into the event's JSON in
    /// `buf`.
    pub fn decode(&self, body: &[u8], buf: &mut Vec<u8>) -> Result<(), RecordError> {
        let invalid = |why: String| RecordError::new(ErrorKind::InvalidProtobuf, why);
        let (indexes, bytes) = wire::message_indexes(body).map_err(invalid)?;
        let desc = self.message(&indexes).ok_or_else(|| {
            invalid(format!(
                "the message indexes {:?} name no message of the schema",
                indexes.as_slice()
            ))
        })?;
        if desc.get_field_by_name("device_id").is_none() {
            return Err(RecordError::field(
                ErrorKind::SchemaMismatch,
                "device_id",
                format!(
                    "the schema's message {} has no field `device_id`",
                    desc.full_name()
                ),
            ));
        }
        let msg = DynamicMessage::decode(desc, bytes)
            .map_err(|e| invalid(format!("the record does not decode: {e}")))?;
        let mut object = ObjectWriter::new(buf);
        for (field, value) in msg.fields() {
            let Some(name) = out::event_field(field.name()) else {
                continue;
            };
            write(object.key(name), value, &field.kind()).map_err(|why| {
                RecordError::field(
                    ErrorKind::InvalidField,
                    name,
                    format!("field `{name}` {why}"),
                )
            })?;
        }
        object.finish();
        Ok(())
    }
}

/// A file of the schema: `.proto` text, or a base64 `FileDescriptorProto`.
fn source(name: &str, text: &str) -> Result<File, String> {
    let looks_encoded = !text.is_empty() && !text.contains(|c: char| c.is_ascii_whitespace());
    if looks_encoded {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text.trim()) {
            if let Ok(mut proto) = prost_types::FileDescriptorProto::decode(bytes.as_slice()) {
                // Compiled under the name it is imported by (the main file: its own, if any).
                if name != MAIN_FILE || proto.name().is_empty() {
                    proto.name = Some(name.to_owned());
                }
                return Ok(File::from_file_descriptor_proto(proto));
            }
        }
    }
    File::from_source(name, text).map_err(|e| e.to_string())
}

/// The schema's files, by import name.
struct Files(HashMap<String, File>);

impl FileResolver for Files {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(f) => Ok(File::from_file_descriptor_proto(
                f.file_descriptor_proto().clone(),
            )),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// One field value as JSON text; `kind` is the field's type (an enum's names, a list's items).
fn write(o: &mut Vec<u8>, value: &Value, kind: &Kind) -> Result<(), String> {
    match value {
        Value::Bool(b) => out::write_int(o, b),
        Value::I32(i) => out::write_int(o, i),
        Value::I64(i) => out::write_int(o, i),
        Value::U32(i) => out::write_int(o, i),
        Value::U64(i) => out::write_int(o, i),
        Value::F32(f) => out::write_f32(o, *f)?,
        Value::F64(f) => out::write_f64(o, *f)?,
        Value::String(s) => out::write_str(o, s),
        Value::Bytes(b) => out::write_bytes(o, b)?,
        Value::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(v) => out::write_str(o, v.name()),
            None => out::write_int(o, n),
        },
        Value::Message(m) => write_message(o, m)?,
        Value::List(items) => {
            o.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                write(o, item, kind)?;
            }
            o.push(b']');
        }
        Value::Map(map) => {
            let value_kind = match kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other.clone(),
            };
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut object = ObjectWriter::nested(o);
            for (k, v) in entries {
                let key = match k {
                    prost_reflect::MapKey::String(s) => s.clone(),
                    prost_reflect::MapKey::Bool(b) => b.to_string(),
                    prost_reflect::MapKey::I32(i) => i.to_string(),
                    prost_reflect::MapKey::I64(i) => i.to_string(),
                    prost_reflect::MapKey::U32(i) => i.to_string(),
                    prost_reflect::MapKey::U64(i) => i.to_string(),
                };
                write(object.key(&key), v, &value_kind)?;
            }
            object.finish();
        }
    }
    Ok(())
}

/// The well-known wrappers of one value.
const WRAPPERS: [&str; 9] = [
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

/// A message: a timestamp as an instant, a wrapper as its value, any other as an object.
fn write_message(o: &mut Vec<u8>, m: &DynamicMessage) -> Result<(), String> {
    let desc = m.descriptor();
    match desc.full_name() {
        "google.protobuf.Timestamp" => {
            let get = |n: &str| m.get_field_by_name(n).map(|v| v.into_owned());
            let secs = get("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
            let nanos = get("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
            let nanos = u32::try_from(nanos)
                .ok()
                .filter(|n| *n < 1_000_000_000)
                .ok_or_else(|| format!("is a timestamp with {nanos} nanoseconds"))?;
            out::write_instant(o, secs, nanos);
        }
        name if WRAPPERS.contains(&name) => {
            let field = desc
                .get_field_by_name("value")
                .ok_or_else(|| format!("is a {name} without a value"))?;
            write(o, &m.get_field(&field), &field.kind())?;
        }
        _ => {
            let mut object = ObjectWriter::nested(o);
            for (field, value) in m.fields() {
                write(object.key(field.name()), value, &field.kind())?;
            }
            object.finish();
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
