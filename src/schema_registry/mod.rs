//! Schema Registry input: records in the Confluent wire format (byte 0, a 4-byte schema id, then
//! Avro, Protobuf or JSON), read beside JSON records on the same topic and judged by the same
//! rules.
//!
//! - [`wire`]: the framing (pure); [`avro`], [`protobuf`]: one decoder per format, each writing
//!   the event's fields as the JSON object the JSON path reads ([`event_json`]), so the engine
//!   (`crate::core`) applies every rule (sizes, typing, safe links, future skew) once for all
//!   formats; JSON Schema records carry that JSON already. [`schema`]: a schema parsed once per
//!   id, or the [`problem::Problem`] that every record of it is a dead letter for. [`dispatch`]:
//!   one record, given its schema: the engine's input or a dead letter. All pure, no I/O.
//! - [`client`]: the registry's HTTP API; [`registry`]: the bounded cache with one fetch at a time
//!   per id; [`waits`]: which partitions wait for the registry, for `/readyz` and the status
//!   page; [`config`]: `[schema_registry]` (which `output.format = "avro"` registers the URL
//!   record schema with too: `crate::processor::output_schema`).
//!
//! Where the fetch happens, and what waiting does to delivery: the partition worker looks up a
//! record's schema before processing it (`crate::processor::worker`); a record whose schema is not
//! at hand holds its partition, in order, while the worker waits outside any batch (acks,
//! commits of the records before it, and under exactly-once the transaction go on); see
//! docs/delivery.md, "Schema Registry".

pub mod avro;
pub mod client;
pub mod config;
pub mod dispatch;
pub mod event_json;
pub mod problem;
pub mod protobuf;
pub mod registry;
pub mod schema;
pub mod waits;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use config::SchemaRegistryConfig;
pub use registry::Registry;
pub use waits::Waits;

/// What the partition workers of a process share to read wire-format records.
pub struct RegistryInput {
    pub registry: Arc<Registry>,
    pub waits: Arc<Waits>,
    /// First and longest wait between two attempts of a registry that could not answer.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
}

impl RegistryInput {
    /// The registry of `config`, or `None` when none is configured. `max_record_bytes` bounds
    /// what a decoder allocates for one value.
    pub fn new(
        config: &SchemaRegistryConfig,
        max_record_bytes: usize,
        waits: Arc<Waits>,
    ) -> Result<Option<Arc<RegistryInput>>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        avro::limit_allocations(max_record_bytes);
        let client = client::Client::new(config)?;
        Ok(Some(Arc::new(RegistryInput {
            registry: Arc::new(Registry::new(client, config.max_cached_schemas)),
            waits,
            retry_backoff: Duration::from_millis(config.retry_backoff_ms),
            retry_backoff_max: Duration::from_millis(config.retry_backoff_max_ms),
        })))
    }
}
