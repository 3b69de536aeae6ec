//! Schema Registry: [`config`], the `[schema_registry]` section (where the registry is, how to
//! authenticate to it, how long to wait for it). `output.format = "avro"` registers the URL
//! record schema there (`crate::processor::output_schema`).

pub mod config;

pub use config::SchemaRegistryConfig;
