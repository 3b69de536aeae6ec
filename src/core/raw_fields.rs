//! The first pass over an event's JSON: the top-level object into its known fields, each kept as
//! raw JSON borrowed from the payload (typed afterwards by [`super::event`]), unknown fields
//! skipped, a repeated known field and a payload that is not an object told apart from invalid
//! JSON.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::error::{ErrorKind, RecordError};

/// Raw fields as found in the object, before typing.
#[derive(Default)]
pub(super) struct RawFields<'a> {
    pub(super) device_id: Option<&'a RawValue>,
    pub(super) event_type: Option<&'a RawValue>,
    pub(super) severity: Option<&'a RawValue>,
    pub(super) location: Option<&'a RawValue>,
    pub(super) description: Option<&'a RawValue>,
    pub(super) dashboard_url: Option<&'a RawValue>,
    pub(super) region: Option<&'a RawValue>,
    pub(super) value: Option<&'a RawValue>,
    pub(super) timestamp: Option<&'a RawValue>,
}

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
            let (name, slot) = match key {
                Some(Field::DeviceId) => ("device_id", &mut fields.device_id),
                Some(Field::EventType) => ("event_type", &mut fields.event_type),
                Some(Field::Severity) => ("severity", &mut fields.severity),
                Some(Field::Location) => ("location", &mut fields.location),
                Some(Field::Description) => ("description", &mut fields.description),
                Some(Field::DashboardUrl) => ("dashboard_url", &mut fields.dashboard_url),
                Some(Field::Region) => ("region", &mut fields.region),
                Some(Field::Value) => ("value", &mut fields.value),
                Some(Field::Timestamp) => ("timestamp", &mut fields.timestamp),
                None => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // A known field seen before, even as null, is a duplicate.
            let value: &'de RawValue = map.next_value()?;
            if slot.is_some() {
                *self.duplicate = Some(name);
                return Err(de::Error::custom("duplicate field"));
            }
            *slot = Some(value);
        }
        Ok(fields)
    }
}

/// The known fields.
#[derive(Clone, Copy)]
enum Field {
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
        Ok(FieldName(match key {
            "device_id" => Some(Field::DeviceId),
            "event_type" => Some(Field::EventType),
            "severity" => Some(Field::Severity),
            "location" => Some(Field::Location),
            "description" => Some(Field::Description),
            "dashboard_url" => Some(Field::DashboardUrl),
            "region" => Some(Field::Region),
            "value" => Some(Field::Value),
            "timestamp" => Some(Field::Timestamp),
            _ => None,
        }))
    }
}
