//! The pure core: no I/O, no clock, no Kafka. Everything here is a function of its inputs
//! (time included), so it is tested alone and replays deterministically.

pub mod avro_record;
pub mod engine;
pub mod error;
pub mod event;
mod flat_json;
pub mod limiter;
pub mod links;
pub mod placement;
mod raw_fields;
pub mod record;
pub mod render;
pub mod snapshot;
pub mod state;
pub mod time;
pub mod urls;

pub use engine::{Engine, EngineSettings, Output, RecordMeta, Shared};
pub use error::{ErrorKind, RecordError};
pub use limiter::{Decision, Limits};
pub use record::Source;
pub use urls::{HostChoice, UrlSettings};
