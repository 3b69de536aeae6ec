//! Why no record of a schema can be read (unknown to the registry, unparseable, unable to carry
//! an event): what the dead letter of each of its records says.

use crate::core::{ErrorKind, RecordError};

/// Why no record of a schema can be read: what each of its records' dead letters says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ErrorKind,
    pub field: Option<&'static str>,
    pub message: String,
}

impl Problem {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            field: None,
            message: message.into(),
        }
    }

    pub fn field(kind: ErrorKind, field: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            field: Some(field),
            message: message.into(),
        }
    }

    /// The dead-letter error of a record written with schema `id`.
    pub fn error(&self, id: u32) -> RecordError {
        let message = format!("schema id {id}: {}", self.message);
        match self.field {
            Some(f) => RecordError::field(self.kind, f, message),
            None => RecordError::new(self.kind, message),
        }
        .with_schema_id(id)
    }
}
