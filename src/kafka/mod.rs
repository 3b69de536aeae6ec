//! The Kafka adapter around the core: consumer, partition workers, producer.
//!
//! Data flows one way: consumer → partition worker (engine) → producer. Only acknowledgements
//! flow back (producer → worker), and offsets (worker → consumer's offset store → commit).

pub mod ack_wait;
pub mod acks;
pub mod changelog;
pub mod client;
pub mod clock;
pub mod failure;
pub mod fatal;
pub mod headers;
pub mod inflight;
pub mod main_queue;
pub mod offset_tracker;
pub mod offsets;
pub mod output_limit;
pub mod pipeline;
pub mod progress;
pub mod rebalance;
pub mod shutdown;
pub mod split;
pub mod startup;
pub mod state_writes;
pub mod transactions;
pub mod worker;
pub mod worker_env;

pub use pipeline::{run, RunHooks, RunReport};
