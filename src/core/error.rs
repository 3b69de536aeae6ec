//! Per-record errors. They are data, not panics: each becomes a dead-letter record and a counter.

use serde::Serialize;

/// What was wrong with a record; a bounded set, so it is also the `kind` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The Kafka record had no value (a tombstone).
    NullPayload,
    /// Over the configured record size limit.
    TooLarge,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// Not parseable as JSON.
    InvalidJson,
    /// JSON, but not an object.
    NotObject,
    /// Nested deeper than the parser allows.
    TooDeep,
    /// A known field given twice.
    DuplicateField,
    /// A required field is missing or null.
    MissingField,
    /// A field of the wrong type or value.
    InvalidField,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::NullPayload,
        ErrorKind::TooLarge,
        ErrorKind::NotUtf8,
        ErrorKind::InvalidJson,
        ErrorKind::NotObject,
        ErrorKind::TooDeep,
        ErrorKind::DuplicateField,
        ErrorKind::MissingField,
        ErrorKind::InvalidField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NullPayload => "null_payload",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NotUtf8 => "not_utf8",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::NotObject => "not_object",
            ErrorKind::TooDeep => "too_deep",
            ErrorKind::DuplicateField => "duplicate_field",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidField => "invalid_field",
        }
    }
}

/// Why one record could not be processed, with the field at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl RecordError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RecordError {
            kind,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(kind: ErrorKind, field: &'static str, message: impl Into<String>) -> Self {
        RecordError {
            kind,
            message: message.into(),
            field: Some(field),
        }
    }
}
