//! The first pass over an event's JSON: the top-level object into its known fields, each kept as
//! raw JSON borrowed from the payload (typed afterwards by [`super::event`]), unknown fields
//! skipped, a repeated known field and a payload that is not an object told apart from invalid
//! JSON.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::error::{ErrorKind, RecordError};

/// Raw fields as found in the object, before typing: each the text of one valid JSON value.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) struct RawFields<'a> {
    pub(super) device_id: Option<&'a str>,
    pub(super) event_type: Option<&'a str>,
    pub(super) severity: Option<&'a str>,
    pub(super) location: Option<&'a str>,
    pub(super) description: Option<&'a str>,
    pub(super) dashboard_url: Option<&'a str>,
    pub(super) region: Option<&'a str>,
    pub(super) value: Option<&'a str>,
    pub(super) timestamp: Option<&'a str>,
}

impl<'a> RawFields<'a> {
    /// A known field's name and slot.
    pub(super) fn slot(&mut self, field: Field) -> (&'static str, &mut Option<&'a str>) {
        match field {
            Field::DeviceId => ("device_id", &mut self.device_id),
            Field::EventType => ("event_type", &mut self.event_type),
            Field::Severity => ("severity", &mut self.severity),
            Field::Location => ("location", &mut self.location),
            Field::Description => ("description", &mut self.description),
            Field::DashboardUrl => ("dashboard_url", &mut self.dashboard_url),
            Field::Region => ("region", &mut self.region),
            Field::Value => ("value", &mut self.value),
            Field::Timestamp => ("timestamp", &mut self.timestamp),
        }
    }
}

/// The first pass by serde_json, for any input (the common event takes
/// [`super::flat_json::parse_flat`] first), wording the errors.
pub(super) fn parse_raw(text: &str) -> Result<RawFields<'_>, RecordError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut duplicate = None;
    let result = de
        .deserialize_map(FieldsVisitor {
            duplicate: &mut duplicate,
        })
        .and_then(|fields| de.end().map(|()| fields));
    match result {
        Ok(fields) => Ok(fields),
        Err(_) if duplicate.is_some() => {
            let field = duplicate.unwrap_or_default();
            Err(RecordError::field(
                ErrorKind::DuplicateField,
                field,
                format!("field `{field}` appears more than once"),
            ))
        }
        Err(e) => Err(classify_json_error(text, e)),
    }
}

/// Turns a serde_json error into a record error of the right kind.
fn classify_json_error(text: &str, e: serde_json::Error) -> RecordError {
    let message = e.to_string();
    if message.starts_with("recursion limit exceeded") {
        return RecordError::new(
            ErrorKind::TooDeep,
            format!("JSON nested too deeply ({message})"),
        );
    }
    if e.is_data() || (e.is_syntax() && !text.trim_start().starts_with('{')) {
        // Valid JSON of the wrong shape (array, string, number, …) or not JSON at all.
        if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            return RecordError::new(
                ErrorKind::NotObject,
                format!("payload is {}, expected a JSON object", json_kind(text)),
            );
        }
    }
    RecordError::new(
        ErrorKind::InvalidJson,
        format!("payload is not valid JSON: {message}"),
    )
}

pub(super) fn json_kind(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// Visits the top-level object, keeping known fields raw and skipping unknown ones.
struct FieldsVisitor<'s> {
    duplicate: &'s mut Option<&'static str>,
}

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = RawFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = RawFields::default();
        while let Some(FieldName(key)) = map.next_key()? {
            let Some(field) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let (name, slot) = fields.slot(field);
            // A known field seen before, even as null, is a duplicate.
            let value: &'de RawValue = map.next_value()?;
            if slot.is_some() {
                *self.duplicate = Some(name);
                return Err(de::Error::custom("duplicate field"));
            }
            *slot = Some(value.get());
        }
        Ok(fields)
    }
}

/// The known fields.
#[derive(Clone, Copy)]
pub(super) enum Field {
    DeviceId,
    EventType,
    Severity,
    Location,
    Description,
    DashboardUrl,
    Region,
    Value,
    Timestamp,
}

/// A key of the top-level object: a known field, or `None` for any other key. Matched without
/// allocating (a key with escapes is decoded by serde_json into its scratch buffer first).
struct FieldName(Option<Field>);

impl<'de> de::Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldNameVisitor)
    }
}

struct FieldNameVisitor;

impl<'de> Visitor<'de> for FieldNameVisitor {
    type Value = FieldName;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<FieldName, E> {
        Ok(FieldName(Field::named(key)))
    }
}

impl Field {
    /// The known field a (decoded) key names, if any.
    pub(super) fn named(key: &str) -> Option<Field> {
        Some(match key {
            "device_id" => Field::DeviceId,
            "event_type" => Field::EventType,
            "severity" => Field::Severity,
            "location" => Field::Location,
            "description" => Field::Description,
            "dashboard_url" => Field::DashboardUrl,
            "region" => Field::Region,
            "value" => Field::Value,
            "timestamp" => Field::Timestamp,
            _ => return None,
        })
    }
}
