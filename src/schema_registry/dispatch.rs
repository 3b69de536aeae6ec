//! One record on a topic that may carry both encodings: by its first byte, JSON (the engine's own
//! path) or the wire format, decoded with its schema into the event the engine judges. Pure: the
//! schema is looked up by the caller, who fetches what is missing before calling.

use super::schema::{Resolved, Schema};
use super::wire;
use crate::core::{Engine, ErrorKind, Output, RecordError, RecordMeta};

/// What a record needs before it can be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: JSON, a record too broken to name a schema, or one whose schema is at hand.
    Nothing,
    /// The schema of this id.
    Schema(u32),
}

/// What `payload` needs, given the schemas at hand (`known`).
pub fn needs(payload: Option<&[u8]>, known: impl FnOnce(u32) -> bool) -> Needs {
    match payload.filter(|p| wire::is_framed(p)).map(wire::frame) {
        Some(Ok(framed)) if !known(framed.schema_id) => Needs::Schema(framed.schema_id),
        _ => Needs::Nothing,
    }
}

/// Processes one record: JSON through [`Engine::process`], a wire-format record through its
/// schema (`schema(id)`, which [`needs`] made sure of) and [`Engine::process_decoded`]. `buf`
/// holds the decoded event.
pub fn process<'e>(
    engine: &'e mut Engine,
    buf: &mut Vec<u8>,
    payload: Option<&[u8]>,
    schema: impl FnOnce(u32) -> Option<Resolved>,
    meta: &RecordMeta<'_>,
) -> Output<'e> {
    let Some(bytes) = payload.filter(|p| wire::is_framed(p)) else {
        return engine.process(payload, meta);
    };
    let len = bytes.len();
    let framed = match wire::frame(bytes) {
        Ok(f) => f,
        Err(why) => {
            let error = RecordError::new(
                ErrorKind::InvalidJson,
                format!("the payload starts with byte 0 but is not JSON: {why}"),
            );
            return engine.reject(error, payload, len, meta);
        }
    };
    let id = framed.schema_id;
    if len > engine.max_record_bytes() {
        let error = RecordError::new(
            ErrorKind::TooLarge,
            format!(
                "record is {len} bytes, over the limit of {} bytes",
                engine.max_record_bytes()
            ),
        )
        .with_schema_id(id);
        return engine.reject(error, payload, len, meta);
    }
    // `Ok(None)`: the event is in `buf`; `Ok(Some(json))`: the record's own JSON.
    let decoded = match schema(id) {
        None => Err(RecordError::new(
            ErrorKind::UnknownSchema,
            format!("schema id {id}: not fetched before the record was processed"),
        )),
        Some(Err(problem)) => Err(problem.error(id)),
        Some(Ok(schema)) => match &*schema {
            Schema::Avro(s) => s.decode(framed.body, buf).map(|()| None),
            Schema::Protobuf(s) => s.decode(framed.body, buf).map(|()| None),
            Schema::Json => Ok(Some(framed.body)),
        },
    };
    match decoded {
        Ok(event) => engine.process_decoded(event.unwrap_or(buf), bytes, id, meta),
        Err(error) => {
            let error = if error.schema_id.is_some() {
                error
            } else {
                error.with_schema_id(id)
            };
            engine.reject(error, payload, len, meta)
        }
    }
}

#[cfg(test)]
mod tests;
