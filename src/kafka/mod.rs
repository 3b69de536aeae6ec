//! The Kafka toolkit both services are built on (the processor, [`crate::processor`], and the
//! webhook service, [`crate::webhook`]): client settings, start-up and topic checks, the consumer's
//! main-queue loop and partition queues, the registry of assigned partitions and their tasks,
//! offsets and commits, batch reads, producing without dropping, the bounded shutdown, header names, the clock,
//! warming producers up, the input's prefetch budget, the replication of created topics, and the offset tracker that says which offset may be committed. Nothing
//! here knows either service.

pub mod assignments;
pub mod batch;
pub mod client;
pub mod clock;
pub mod commit;
pub mod headers;
pub mod main_queue;
pub mod offset_tracker;
pub mod offsets;
pub mod prefetch;
pub mod replication;
pub mod send;
pub mod shutdown;
pub mod split;
pub mod startup;
pub mod warm;
