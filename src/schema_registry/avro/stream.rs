//! Avro records read straight into the event's JSON, walking the writer's schema over the bytes:
//! the fast path of [`super::AvroSchema::decode`].
//!
//! Why by hand: `apache_avro` decodes a record into a tree of `Value`s, resolving the schema's
//! names again and copying every field's name for each record. With the event's JSON written from
//! that tree and parsed again by the engine, an Avro event cost about 1.3× a JSON one end to end
//! (BENCHMARKS.md, ninth session); the issue asks for at most 1/0.9. `apache_avro` still parses and
//! checks the schema (once per id); this module only walks the binary encoding, which the Avro
//! specification fixes (zig-zag varints, length-prefixed bytes, blocks for arrays and maps,
//! unions by index), and writes exactly what the `Value` path writes, byte for byte, error for
//! error kind: `tests.rs` holds both to the same answers on valid, cut and corrupted records.
//!
//! Schemas with a type this walk does not read (uuid, decimal, big-decimal, duration), or whose
//! named references would unfold into more than [`MAX_NODES`] nodes, keep the `Value` path.

use std::collections::HashMap;

use apache_avro::schema::{Name, Namespace, RecordSchema, ResolvedSchema, Schema};

use super::out::{self, ObjectWriter};
use crate::core::{ErrorKind, RecordError};

/// Most nodes a schema may unfold into (named types referenced more than once are copied).
const MAX_NODES: usize = 4096;

/// A schema as this walk reads it: named references replaced by what they name.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    /// `int`, `date`, `time-millis`: a 32-bit zig-zag varint.
    Int,
    /// `long`, `time-micros`, and a `local-timestamp-*` divided down to milliseconds by `.0`.
    Long(i64),
    /// `timestamp-millis`/`-micros`/`-nanos`: a long count of `1/.0` seconds, written as an instant.
    Instant(i64),
    Float,
    Double,
    Bytes,
    String,
    Enum(Vec<String>),
    Fixed(usize),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Record(Vec<(String, Node)>),
}

/// A checked record schema, ready to be walked: its fields, each with the event field it is.
#[derive(Debug)]
pub struct Fast {
    fields: Vec<(Option<&'static str>, Node)>,
}

/// Why the walk stopped.
enum Fail {
    /// A value runs past the end of the bytes.
    Short,
    /// The bytes are not an encoding of the schema.
    Bad(String),
}

impl Fast {
    /// The walk of `schema` (a record; its references among `references`), or `None` when the
    /// `Value` path must read it (see the module's header).
    pub fn new(schema: &Schema, references: &[Schema]) -> Option<Fast> {
        let Schema::Record(RecordSchema { name, fields, .. }) = schema else {
            return None;
        };
        // Referenced schemas first: a name is resolved only once it is defined.
        let all: Vec<&Schema> = references.iter().chain(std::iter::once(schema)).collect();
        let resolved = ResolvedSchema::try_from(all).ok()?;
        let mut unfold = Unfold {
            names: resolved.get_names(),
            budget: MAX_NODES,
        };
        let namespace = name.fully_qualified_name(&None).namespace;
        let fields = fields
            .iter()
            .map(|f| {
                let node = unfold.node(&f.schema, &namespace)?;
                Some((out::event_field(&f.name), node))
            })
            .collect::<Option<_>>()?;
        Some(Fast { fields })
    }

    /// Decodes one record's body into the event's JSON in `buf` (as [`super::AvroSchema::decode`]).
    pub fn decode(&self, body: &[u8], buf: &mut Vec<u8>) -> Result<(), RecordError> {
        let mut r = Reader { rest: body };
        let mut object = ObjectWriter::new(buf);
        // The first value no URL can carry, by field: reported after the whole record decoded,
        // as the `Value` path does (a record that does not decode is that first).
        let mut unfit: Option<(&'static str, String)> = None;
        for (field, node) in &self.fields {
            let walked = match field {
                Some(field) => {
                    let mut why = None;
                    let walked = walk(node, &mut r, Some(object.key(field)), &mut why);
                    if let (Some(why), None) = (why, &unfit) {
                        unfit = Some((field, why));
                    }
                    walked
                }
                None => walk(node, &mut r, None, &mut None),
            };
            if let Err(fail) = walked {
                let message = match fail {
                    Fail::Short => format!(
                        "the record is cut short: its {} bytes end inside a value",
                        body.len()
                    ),
                    Fail::Bad(why) => format!("the record does not decode: {why}"),
                };
                return Err(RecordError::new(ErrorKind::InvalidAvro, message));
            }
        }
        if !r.rest.is_empty() {
            return Err(RecordError::new(
                ErrorKind::InvalidAvro,
                format!("{} bytes are left after the record", r.rest.len()),
            ));
        }
        if let Some((field, why)) = unfit {
            return Err(RecordError::field(
                ErrorKind::InvalidField,
                field,
                format!("field `{field}` {why}"),
            ));
        }
        object.finish();
        Ok(())
    }
}

/// Replaces references by what they name, within a budget of nodes.
struct Unfold<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    budget: usize,
}

impl Unfold<'_> {
    fn node(&mut self, s: &Schema, namespace: &Namespace) -> Option<Node> {
        self.budget = self.budget.checked_sub(1)?;
        Some(match s {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Node::Int,
            Schema::Long | Schema::TimeMicros | Schema::LocalTimestampMillis => Node::Long(1),
            Schema::LocalTimestampMicros => Node::Long(1000),
            Schema::LocalTimestampNanos => Node::Long(1_000_000),
            Schema::TimestampMillis => Node::Instant(1000),
            Schema::TimestampMicros => Node::Instant(1_000_000),
            Schema::TimestampNanos => Node::Instant(1_000_000_000),
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Enum(e) => Node::Enum(e.symbols.clone()),
            Schema::Fixed(f) => Node::Fixed(f.size),
            Schema::Array(a) => Node::Array(Box::new(self.node(&a.items, namespace)?)),
            Schema::Map(m) => Node::Map(Box::new(self.node(&m.types, namespace)?)),
            Schema::Union(u) => Node::Union(
                u.variants()
                    .iter()
                    .map(|v| self.node(v, namespace))
                    .collect::<Option<_>>()?,
            ),
            Schema::Record(r) => {
                let inner = r.name.fully_qualified_name(namespace).namespace;
                Node::Record(
                    r.fields
                        .iter()
                        .map(|f| Some((f.name.clone(), self.node(&f.schema, &inner)?)))
                        .collect::<Option<_>>()?,
                )
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(namespace);
                let named = *self.names.get(&full)?;
                // A named type's own names are relative to its namespace.
                self.node(named, &full.namespace)?
            }
            Schema::Uuid | Schema::Decimal(_) | Schema::BigDecimal | Schema::Duration => {
                return None
            }
        })
    }
}

/// The bytes left to read.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        if n > self.rest.len() {
            return Err(Fail::Short);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// A zig-zag varint of at most 10 bytes.
    fn long(&mut self) -> Result<i64, Fail> {
        let mut z = 0u64;
        for j in 0..10 {
            let b = self.take(1)?[0];
            z |= u64::from(b & 0x7f) << (j * 7);
            if b & 0x80 == 0 {
                return Ok(if z & 1 == 0 {
                    (z >> 1) as i64
                } else {
                    !(z >> 1) as i64
                });
            }
        }
        Err(Fail::Bad("an integer is longer than 10 bytes".into()))
    }

    fn int(&mut self) -> Result<i32, Fail> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| Fail::Bad(format!("{v} does not fit an int")))
    }

    /// A length or index: not negative.
    fn len(&mut self) -> Result<usize, Fail> {
        let v = self.long()?;
        usize::try_from(v).map_err(|_| Fail::Bad(format!("a length or index of {v}")))
    }

    /// An array's or map's next block: its count of items, 0 at the end. A negative count is
    /// followed by the block's size in bytes, which is not needed.
    fn block(&mut self) -> Result<usize, Fail> {
        let raw = self.long()?;
        if raw >= 0 {
            return Ok(raw as usize);
        }
        self.long()?;
        raw.checked_neg()
            .map(|n| n as usize)
            .ok_or_else(|| Fail::Bad("a block count overflows".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Fail> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, Fail> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|e| Fail::Bad(format!("a string is not UTF-8: {e}")))
    }
}

/// Reads one value of `node`, writing it to `o` unless `None` (a field no event has: read past).
/// A value no URL can carry sets `unfit` (the first one) and the walk goes on.
fn walk(
    node: &Node,
    r: &mut Reader<'_>,
    o: Option<&mut Vec<u8>>,
    unfit: &mut Option<String>,
) -> Result<(), Fail> {
    let mut fits = |result: Result<(), String>| {
        if let (Err(why), None) = (result, &unfit) {
            *unfit = Some(why);
        }
    };
    match node {
        Node::Null => {
            if let Some(o) = o {
                o.extend_from_slice(b"null");
            }
        }
        Node::Boolean => {
            let b = match r.take(1)?[0] {
                0 => false,
                1 => true,
                other => return Err(Fail::Bad(format!("a boolean of {other}"))),
            };
            if let Some(o) = o {
                out::write_int(o, b);
            }
        }
        Node::Int => {
            let v = r.int()?;
            if let Some(o) = o {
                out::write_int(o, v);
            }
        }
        Node::Long(div) => {
            let v = r.long()?;
            if let Some(o) = o {
                out::write_int(o, v.div_euclid(*div));
            }
        }
        Node::Instant(per_second) => {
            let v = r.long()?;
            if let Some(o) = o {
                out::write_epoch(o, v, *per_second);
            }
        }
        Node::Float => {
            let v = f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
            if let Some(o) = o {
                fits(out::write_f32(o, v));
            }
        }
        Node::Double => {
            let v = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            if let Some(o) = o {
                fits(out::write_f64(o, v));
            }
        }
        Node::Bytes => {
            let b = r.bytes()?;
            if let Some(o) = o {
                fits(out::write_bytes(o, b));
            }
        }
        Node::Fixed(size) => {
            let b = r.take(*size)?;
            if let Some(o) = o {
                fits(out::write_bytes(o, b));
            }
        }
        Node::String => {
            let s = r.str()?;
            if let Some(o) = o {
                out::write_str(o, s);
            }
        }
        Node::Enum(symbols) => {
            let i = r.int()?;
            let symbol = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or_else(|| Fail::Bad(format!("enum index {i} of {}", symbols.len())))?;
            if let Some(o) = o {
                out::write_str(o, symbol);
            }
        }
        Node::Union(variants) => {
            let i = r.len()?;
            let variant = variants
                .get(i)
                .ok_or_else(|| Fail::Bad(format!("union index {i} of {}", variants.len())))?;
            walk(variant, r, o, unfit)?;
        }
        Node::Array(items) => array(items, r, o, unfit)?,
        Node::Map(values) => map(values, r, o, unfit)?,
        Node::Record(fields) => {
            let mut object = o.map(ObjectWriter::nested);
            for (name, field) in fields {
                walk(field, r, object.as_mut().map(|w| w.key(name)), unfit)?;
            }
            if let Some(object) = object {
                object.finish();
            }
        }
    }
    Ok(())
}

/// An array: its blocks of items, written as one JSON array.
fn array(
    items: &Node,
    r: &mut Reader<'_>,
    mut o: Option<&mut Vec<u8>>,
    unfit: &mut Option<String>,
) -> Result<(), Fail> {
    if let Some(o) = o.as_deref_mut() {
        o.push(b'[');
    }
    let mut first = true;
    loop {
        let n = r.block()?;
        if n == 0 {
            break;
        }
        for _ in 0..n {
            if let Some(o) = o.as_deref_mut() {
                if !first {
                    o.push(b',');
                }
            }
            first = false;
            walk(items, r, o.as_deref_mut(), unfit)?;
        }
    }
    if let Some(o) = o {
        o.push(b']');
    }
    Ok(())
}

/// A map, written as the `Value` path (a hash map) writes it: keys sorted, the last value of a
/// repeated key, and of its values the first (in key order) that no URL can carry reported.
fn map(
    values: &Node,
    r: &mut Reader<'_>,
    o: Option<&mut Vec<u8>>,
    unfit: &mut Option<String>,
) -> Result<(), Fail> {
    let mut entries: Vec<(&str, Vec<u8>, Option<String>)> = Vec::new();
    let writing = o.is_some();
    loop {
        let n = r.block()?;
        if n == 0 {
            break;
        }
        for _ in 0..n {
            let key = r.str()?;
            let (mut value, mut why) = (Vec::new(), None);
            walk(values, r, writing.then_some(&mut value), &mut why)?;
            if writing {
                entries.push((key, value, why));
            }
        }
    }
    let Some(o) = o else { return Ok(()) };
    // Stable: of equal keys, the last read stays last, and is the one kept.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut object = ObjectWriter::nested(o);
    for (i, (key, value, why)) in entries.iter().enumerate() {
        if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
            continue;
        }
        if let (Some(why), None) = (why, &unfit) {
            *unfit = Some(why.clone());
        }
        object.key(key).extend_from_slice(value);
    }
    object.finish();
    Ok(())
}
