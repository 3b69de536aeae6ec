//! A schema as the registry serves it, parsed once per id: Avro, Protobuf or JSON Schema, or the
//! reason no record of it can be read (a [`Problem`], the dead letter of each of its records).

use std::sync::Arc;

use super::avro::AvroSchema;
pub use super::problem::Problem;
use super::protobuf::ProtoSchema;
use crate::core::ErrorKind;

/// `schemaType` as the registry names it (absent means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    /// From the registry's `schemaType`; `None` for a type this program does not read.
    pub fn named(name: Option<&str>) -> Option<SchemaType> {
        match name {
            None | Some("AVRO") => Some(SchemaType::Avro),
            Some("PROTOBUF") => Some(SchemaType::Protobuf),
            Some("JSON") => Some(SchemaType::Json),
            Some(_) => None,
        }
    }

    /// The type of a fetched schema. Absent means Avro in Confluent's API, but Apicurio's
    /// Confluent-compatible API leaves it out for JSON Schema and Protobuf too. Avro and JSON
    /// Schema are JSON, a Protobuf schema never is (`.proto` text or a base64 descriptor), so a
    /// schema without a type that does not even open like JSON is Protobuf, and one that reads as a JSON Schema (an
    /// object with `$schema`, or `properties` and no Avro `fields`) is one.
    pub fn of(fetched: &Fetched) -> Option<SchemaType> {
        if fetched.schema_type.is_none() {
            match serde_json::from_str::<serde_json::Value>(&fetched.text) {
                Ok(serde_json::Value::Object(o)) => {
                    let json_schema = o.contains_key("$schema")
                        || (o.contains_key("properties") && !o.contains_key("fields"));
                    if json_schema {
                        return Some(SchemaType::Json);
                    }
                }
                Ok(_) => {}
                // Not JSON and not even shaped like it (a broken Avro schema still opens
                // with `{`, `[` or `"`): `.proto` text or a base64 descriptor.
                Err(_) if !fetched.text.trim_start().starts_with(['{', '[', '"']) => {
                    return Some(SchemaType::Protobuf)
                }
                Err(_) => {}
            }
        }
        SchemaType::named(fetched.schema_type.as_deref())
    }
}

/// A schema fetched from the registry, with the schemas it references (import name, text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub schema_type: Option<String>,
    pub text: String,
    pub references: Vec<(String, String)>,
}

/// A parsed schema, ready to decode records.
#[derive(Debug)]
pub enum Schema {
    Avro(AvroSchema),
    Protobuf(ProtoSchema),
    /// JSON Schema: the record's JSON is the event; the schema itself is only checked.
    Json,
}

/// What a schema id resolves to: a schema, or the problem of every record written with it.
pub type Resolved = Result<Arc<Schema>, Arc<Problem>>;

impl Schema {
    /// Parses a fetched schema and checks it can carry events.
    pub fn parse(fetched: &Fetched) -> Result<Schema, Problem> {
        let texts = || -> Vec<String> {
            fetched
                .references
                .iter()
                .map(|(_, text)| text.clone())
                .collect()
        };
        match SchemaType::of(fetched) {
            Some(SchemaType::Avro) => AvroSchema::parse(&fetched.text, &texts()).map(Schema::Avro),
            Some(SchemaType::Protobuf) => {
                ProtoSchema::parse(&fetched.text, &fetched.references).map(Schema::Protobuf)
            }
            Some(SchemaType::Json) => check_json_schema(&fetched.text).map(|()| Schema::Json),
            None => Err(Problem::new(
                ErrorKind::SchemaMismatch,
                format!(
                    "the schema's type {:?} is none of AVRO, PROTOBUF, JSON",
                    fetched.schema_type.as_deref().unwrap_or_default()
                ),
            )),
        }
    }
}

/// A JSON Schema must be JSON; one that lists the top-level `properties` must list `device_id`.
fn check_json_schema(text: &str) -> Result<(), Problem> {
    let schema: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Problem::new(
            ErrorKind::InvalidJson,
            format!("the JSON Schema is not JSON: {e}"),
        )
    })?;
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        if !props.contains_key("device_id") {
            return Err(Problem::field(
                ErrorKind::SchemaMismatch,
                "device_id",
                "the JSON Schema's properties have no `device_id`",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(t: Option<&str>, text: &str) -> Fetched {
        Fetched {
            schema_type: t.map(String::from),
            text: text.into(),
            references: Vec::new(),
        }
    }

    #[test]
    fn json_schemas_must_name_device_id_when_they_list_properties() {
        let ok = r#"{"type":"object","properties":{"device_id":{"type":"string"}}}"#;
        assert!(matches!(
            Schema::parse(&fetched(Some("JSON"), ok)),
            Ok(Schema::Json)
        ));
        assert!(Schema::parse(&fetched(Some("JSON"), r#"{"type":"object"}"#)).is_ok());
        let p = Schema::parse(&fetched(
            Some("JSON"),
            r#"{"properties":{"sensor_id":{"type":"string"}}}"#,
        ))
        .unwrap_err();
        assert_eq!(
            (p.kind, p.field),
            (ErrorKind::SchemaMismatch, Some("device_id"))
        );
        let e = p.error(7);
        assert_eq!(e.schema_id, Some(7));
        assert!(e.message.starts_with("schema id 7: "), "{}", e.message);
        let p = Schema::parse(&fetched(Some("JSON"), "{nope")).unwrap_err();
        assert_eq!(p.kind, ErrorKind::InvalidJson);
    }

    #[test]
    fn a_json_schema_without_its_type_is_told_from_avro() {
        let json = r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}"#;
        assert!(matches!(
            Schema::parse(&fetched(None, json)),
            Ok(Schema::Json)
        ));
        let props = r#"{"type":"object","properties":{"device_id":{}}}"#;
        assert!(matches!(
            Schema::parse(&fetched(None, props)),
            Ok(Schema::Json)
        ));
        let avro =
            r#"{"type":"record","name":"E","fields":[{"name":"device_id","type":"string"}]}"#;
        assert!(matches!(
            Schema::parse(&fetched(None, avro)),
            Ok(Schema::Avro(_))
        ));
        // A declared type wins.
        assert!(Schema::parse(&fetched(Some("AVRO"), json)).is_err());
    }

    #[test]
    fn a_protobuf_schema_without_its_type_is_told_from_avro() {
        // As Apicurio serves what confluent-kafka's ProtobufSerializer registered: no schemaType.
        let proto = "syntax = \"proto3\";\nmessage E { string device_id = 1; }\n";
        assert_eq!(
            SchemaType::of(&fetched(None, proto)),
            Some(SchemaType::Protobuf)
        );
        assert!(matches!(
            Schema::parse(&fetched(None, proto)),
            Ok(Schema::Protobuf(_))
        ));
        // A base64 descriptor (what Apicurio hands back) is not JSON either.
        assert_eq!(
            SchemaType::of(&fetched(None, "Cg9pb3RfZXZlbnQucHJvdG8=")),
            Some(SchemaType::Protobuf)
        );
        // A broken Avro schema stays Avro (and its records `invalid_avro`).
        assert_eq!(
            SchemaType::of(&fetched(None, "{not avro")),
            Some(SchemaType::Avro)
        );
        // An Avro schema may be a bare JSON string: still Avro.
        assert_eq!(
            SchemaType::of(&fetched(None, "\"string\"")),
            Some(SchemaType::Avro)
        );
    }

    #[test]
    fn an_unknown_schema_type_is_a_mismatch() {
        let p = Schema::parse(&fetched(Some("XML"), "<x/>")).unwrap_err();
        assert_eq!(p.kind, ErrorKind::SchemaMismatch);
        assert!(p.message.contains("XML"), "{}", p.message);
        assert_eq!(SchemaType::named(None), Some(SchemaType::Avro));
    }
}
