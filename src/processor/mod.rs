//! The processor (`aepiot-stream run`): the engine of [`crate::core`] on Kafka, built on the
//! toolkit of [`crate::kafka`].
//!
//! Data flows one way: consumer → partition worker (engine) → producer. Only acknowledgements
//! flow back (producer → worker), and offsets (worker → consumer's offset store → commit).
//! The rules of what is committed when, and what a failure does: `docs/delivery.md`.

pub mod ack_wait;
pub mod acks;
pub mod changelog;
pub mod deferred;
pub mod failure;
pub mod fatal;
pub mod handover;
pub mod hung_call;
pub mod inflight;
pub mod output_limit;
pub mod output_schema;
pub mod pipeline;
pub mod progress;
pub mod rebalance;
pub mod shared_producer;
pub mod state_writes;
pub mod transactions;
pub mod txn_calls;
pub mod worker;
pub mod worker_env;

pub use pipeline::{run, RunHooks};
