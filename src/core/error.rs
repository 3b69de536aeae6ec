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
    /// A valid event whose URL record is larger than the output topic or the producer accepts
    /// (checked before producing, or refused by the broker as too large).
    OutputTooLarge,
    /// A valid event whose URL record the broker refused for a reason of its own (e.g.
    /// `INVALID_RECORD`): a failure of this record alone, not of the cluster.
    OutputRejected,
    /// A Schema Registry record whose schema id the registry does not know.
    UnknownSchema,
    /// A Schema Registry record whose bytes do not decode as Avro with their schema.
    InvalidAvro,
    /// A Schema Registry record whose bytes do not decode as Protobuf with their schema.
    InvalidProtobuf,
    /// A Schema Registry record whose schema cannot carry an event (no `device_id`, or one that is
    /// not text).
    SchemaMismatch,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::NullPayload,
        ErrorKind::TooLarge,
        ErrorKind::NotUtf8,
        ErrorKind::InvalidJson,
        ErrorKind::NotObject,
        ErrorKind::TooDeep,
        ErrorKind::DuplicateField,
        ErrorKind::MissingField,
        ErrorKind::InvalidField,
        ErrorKind::OutputTooLarge,
        ErrorKind::OutputRejected,
        ErrorKind::UnknownSchema,
        ErrorKind::InvalidAvro,
        ErrorKind::InvalidProtobuf,
        ErrorKind::SchemaMismatch,
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
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::OutputRejected => "output_rejected",
            ErrorKind::UnknownSchema => "unknown_schema",
            ErrorKind::InvalidAvro => "invalid_avro",
            ErrorKind::InvalidProtobuf => "invalid_protobuf",
            ErrorKind::SchemaMismatch => "schema_mismatch",
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
    /// The Schema Registry id of the record's schema, for a record in the registry's wire format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u32>,
}

/// Longest error message kept: messages quote input (a bad field's value), and a dead letter must
/// stay far below the output size limit whatever the input was.
pub const MAX_MESSAGE_BYTES: usize = 1024;

impl RecordError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RecordError {
            kind,
            message: bounded(message.into()),
            field: None,
            schema_id: None,
        }
    }

    pub fn field(kind: ErrorKind, field: &'static str, message: impl Into<String>) -> Self {
        RecordError {
            kind,
            message: bounded(message.into()),
            field: Some(field),
            schema_id: None,
        }
    }

    /// This error, naming the schema the record was written with.
    pub fn with_schema_id(mut self, id: u32) -> Self {
        self.schema_id = Some(id);
        self
    }
}

/// Cuts `message` to [`MAX_MESSAGE_BYTES`] at a character boundary, marking the cut.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_at_a_character_boundary() {
        let e = RecordError::new(ErrorKind::InvalidField, "é".repeat(5000));
        assert!(e.message.len() <= MAX_MESSAGE_BYTES);
        assert!(e.message.ends_with("..."));
        let short = RecordError::field(ErrorKind::InvalidField, "x", "short");
        assert_eq!(short.message, "short");
    }
}
