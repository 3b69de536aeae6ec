//! Avro records (`apache-avro`), read with the writer's schema (the one the record names): the
//! record's fields that an event has are written as the event's JSON (see [`super::event_json`]).
//!
//! A schema is checked once, when it is parsed: it must be a record with a `device_id` of type
//! `string` (or a union of it with `null`), else every record of it is a `schema_mismatch`. Two
//! kinds of schema are refused because a device could make their records cost any amount of
//! memory or stack: a recursive one (a record that contains itself, nested as deep as the bytes
//! say) and one with an array of items that take no bytes (`null`, an empty record), whose count
//! alone would be allocated. Every length in a record is bounded by `apache_avro`'s allocation
//! limit, which [`limit_allocations`] sets to the largest record accepted.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use apache_avro::schema::{Name, RecordSchema, Schema};
use apache_avro::types::Value;

use super::event_json::{self as out, ObjectWriter};
use super::problem::Problem;
use crate::core::{ErrorKind, RecordError};

mod stream;

/// An Avro schema from the registry, checked, with the schemas it references.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    references: Vec<Schema>,
    /// The walk that reads records straight into JSON, for every schema it can read.
    fast: Option<stream::Fast>,
}

/// Bounds every length `apache_avro` allocates for while decoding (a string, bytes, an array's
/// count) by `max_record_bytes`: no value of a record is longer than the record. Process-wide,
/// and only the first call counts (`apache_avro` keeps it once set).
pub fn limit_allocations(max_record_bytes: usize) {
    apache_avro::util::max_allocation_bytes(max_record_bytes);
}

impl AvroSchema {
    /// Parses `text` with the texts of the schemas it references, and checks it can carry events.
    pub fn parse(text: &str, references: &[String]) -> Result<AvroSchema, Problem> {
        let invalid = |e: apache_avro::Error| {
            Problem::new(
                ErrorKind::InvalidAvro,
                format!("the schema does not parse as Avro: {e}"),
            )
        };
        let (schema, references) = if references.is_empty() {
            (Schema::parse_str(text).map_err(invalid)?, Vec::new())
        } else {
            Schema::parse_str_with_list(text, references).map_err(invalid)?
        };
        check(&schema, &references)?;
        let fast = stream::Fast::new(&schema, &references);
        Ok(AvroSchema {
            schema,
            references,
            fast,
        })
    }

    /// Decodes one record's body into the event's JSON in `buf`.
    pub fn decode(&self, body: &[u8], buf: &mut Vec<u8>) -> Result<(), RecordError> {
        match &self.fast {
            Some(fast) => fast.decode(body, buf),
            None => self.decode_values(body, buf),
        }
    }

    /// [`AvroSchema::decode`] through `apache_avro`'s `Value`s: for the schemas the fast walk
    /// does not read, and the answer it is tested against.
    fn decode_values(&self, body: &[u8], buf: &mut Vec<u8>) -> Result<(), RecordError> {
        let invalid = |why: String| RecordError::new(ErrorKind::InvalidAvro, why);
        let mut reader = Strict {
            rest: body,
            short: false,
        };
        let decoded = if self.references.is_empty() {
            apache_avro::from_avro_datum(&self.schema, &mut reader, None)
        } else {
            let refs = self.references.iter().collect();
            apache_avro::from_avro_datum_schemata(&self.schema, refs, &mut reader, None)
        };
        // `apache_avro` reads a string or union cut short by the end of the bytes as null: the
        // reader notices instead.
        if reader.short {
            return Err(invalid(format!(
                "the record is cut short: its {} bytes end inside a value",
                body.len()
            )));
        }
        let value = decoded.map_err(|e| invalid(format!("the record does not decode: {e}")))?;
        if !reader.rest.is_empty() {
            return Err(invalid(format!(
                "{} bytes are left after the record",
                reader.rest.len()
            )));
        }
        let Value::Record(fields) = value else {
            return Err(invalid("the schema's value is not a record".into()));
        };
        let mut object = ObjectWriter::new(buf);
        for (name, value) in &fields {
            let Some(field) = out::event_field(name) else {
                continue;
            };
            write(object.key(field), value).map_err(|why| {
                RecordError::field(
                    ErrorKind::InvalidField,
                    field,
                    format!("field `{field}` {why}"),
                )
            })?;
        }
        object.finish();
        Ok(())
    }
}

/// A reader over the body that remembers being asked for more than there is.
struct Strict<'a> {
    rest: &'a [u8],
    short: bool,
}

impl Read for Strict<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.short = true;
        }
        let n = buf.len().min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// One decoded value as JSON text.
fn write(o: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    match value {
        Value::Null => o.extend_from_slice(b"null"),
        Value::Boolean(b) => out::write_int(o, b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => out::write_int(o, i),
        Value::Long(i) | Value::TimeMicros(i) => out::write_int(o, i),
        Value::LocalTimestampMillis(i) => out::write_int(o, i),
        Value::LocalTimestampMicros(i) => out::write_int(o, i.div_euclid(1000)),
        Value::LocalTimestampNanos(i) => out::write_int(o, i.div_euclid(1_000_000)),
        Value::TimestampMillis(t) => out::write_epoch(o, *t, 1000),
        Value::TimestampMicros(t) => out::write_epoch(o, *t, 1_000_000),
        Value::TimestampNanos(t) => out::write_epoch(o, *t, 1_000_000_000),
        Value::Float(f) => out::write_f32(o, *f)?,
        Value::Double(f) => out::write_f64(o, *f)?,
        Value::Bytes(b) | Value::Fixed(_, b) => out::write_bytes(o, b)?,
        Value::String(s) | Value::Enum(_, s) => out::write_str(o, s),
        Value::Uuid(u) => out::write_str(o, &u.to_string()),
        Value::Union(_, v) => write(o, v)?,
        Value::Array(items) => {
            o.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                write(o, item)?;
            }
            o.push(b']');
        }
        Value::Map(map) => {
            // Sorted: a hash order would make the text differ from run to run.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut object = ObjectWriter::nested(o);
            for (k, v) in entries {
                write(object.key(k), v)?;
            }
            object.finish();
        }
        Value::Record(fields) => {
            let mut object = ObjectWriter::nested(o);
            for (k, v) in fields {
                write(object.key(k), v)?;
            }
            object.finish();
        }
        Value::Decimal(_) | Value::BigDecimal(_) | Value::Duration(_) => {
            return Err("is an Avro decimal or duration, which events do not carry".into())
        }
    }
    Ok(())
}

/// The checks of a schema described in the module's header.
fn check(schema: &Schema, references: &[Schema]) -> Result<(), Problem> {
    let mismatch = |why: String| Problem::field(ErrorKind::SchemaMismatch, "device_id", why);
    let Schema::Record(RecordSchema { name, fields, .. }) = schema else {
        return Err(Problem::new(
            ErrorKind::SchemaMismatch,
            "the schema is not an Avro record, so it carries no event fields",
        ));
    };
    let Some(id) = fields.iter().find(|f| f.name == "device_id") else {
        return Err(mismatch(format!(
            "the schema's record {} has no field `device_id`",
            name.fullname(None)
        )));
    };
    let text = |s: &Schema| matches!(s, Schema::String | Schema::Uuid);
    let ok = match &id.schema {
        Schema::Union(u) => u
            .variants()
            .iter()
            .all(|v| text(v) || matches!(v, Schema::Null)),
        s => text(s),
    };
    if !ok {
        return Err(mismatch(format!(
            "the schema's field `device_id` is {:?}, not a string",
            id.schema
        )));
    }
    let mut names = HashMap::new();
    for s in std::iter::once(schema).chain(references) {
        collect_names(s, &mut names);
    }
    let mut walk = Walk {
        names: &names,
        path: Vec::new(),
        seen: HashSet::new(),
    };
    walk.schema(schema).map_err(|why| {
        Problem::new(
            ErrorKind::SchemaMismatch,
            format!("the schema cannot be read safely: {why}"),
        )
    })
}

fn fullname(n: &Name) -> String {
    n.fullname(None)
}

fn collect_names<'s>(s: &'s Schema, names: &mut HashMap<String, &'s Schema>) {
    match s {
        Schema::Record(r) if names.insert(fullname(&r.name), s).is_none() => {
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(fullname(&e.name), s);
        }
        Schema::Fixed(f) => {
            names.insert(fullname(&f.name), s);
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

/// Walks a schema for recursion and arrays of items that take no bytes.
struct Walk<'s, 'n> {
    names: &'n HashMap<String, &'s Schema>,
    /// The records enclosing the current point.
    path: Vec<String>,
    /// Records already walked whole.
    seen: HashSet<String>,
}

impl<'s> Walk<'s, '_> {
    fn schema(&mut self, s: &'s Schema) -> Result<(), String> {
        match s {
            Schema::Record(r) => {
                let name = fullname(&r.name);
                if self.path.contains(&name) {
                    return Err(format!("record {name} contains itself"));
                }
                if !self.seen.insert(name.clone()) {
                    return Ok(());
                }
                self.path.push(name);
                for f in &r.fields {
                    self.schema(&f.schema)?;
                }
                self.path.pop();
            }
            Schema::Ref { name } => {
                let full = fullname(name);
                if self.path.contains(&full) {
                    return Err(format!("record {full} contains itself"));
                }
                if let Some(named) = self.names.get(&full).copied() {
                    self.schema(named)?;
                }
            }
            Schema::Array(a) => {
                if self.takes_no_bytes(&a.items, 0) {
                    return Err(
                        "an array's items take no bytes, so only its count would bound it".into(),
                    );
                }
                self.schema(&a.items)?;
            }
            Schema::Map(m) => self.schema(&m.types)?,
            Schema::Union(u) => {
                for v in u.variants() {
                    self.schema(v)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether a value of `s` can be encoded in no bytes.
    fn takes_no_bytes(&self, s: &Schema, depth: usize) -> bool {
        if depth > 64 {
            return false;
        }
        match s {
            Schema::Null => true,
            Schema::Fixed(f) => f.size == 0,
            Schema::Record(r) => r
                .fields
                .iter()
                .all(|f| self.takes_no_bytes(&f.schema, depth + 1)),
            Schema::Ref { name } => self
                .names
                .get(&fullname(name))
                .is_some_and(|named| self.takes_no_bytes(named, depth + 1)),
            _ => false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
