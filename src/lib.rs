//! aepiot-stream: IoT device events in, aéPiot backlink URL records out.
//!
//! # Layout
//! - [`core`]: the pure engine. [`core::event`] decodes and validates an event,
//!   [`core::limiter`] and [`core::state`] hold each device's rate limit and dedupe cache,
//!   [`core::urls`] builds the URLs, [`core::record`] encodes URL records and dead letters (and
//!   [`core::avro_record`] URL records in Avro, `output.format = "avro"`), and
//!   [`core::engine`] runs them in that order for one partition.
//! - [`config`]: the configuration (TOML, `AEPIOT_*` environment, flags) and its validation;
//!   [`residency`] where each region's records go (a topic, optionally on another cluster);
//!   [`security`] how clients connect (TLS, SASL), with passwords and keys held as
//!   [`secret::Secret`]s, which never print.
//! - [`schema_registry`]: records in a Schema Registry's wire format (Avro, Protobuf, JSON
//!   Schema) beside JSON ones: schemas fetched by id and cached, each record decoded to the
//!   event's fields for the same engine.
//! - [`process`]: the offline adapter, JSON Lines in and out.
//! - [`processor`]: the `run` command on Kafka: [`processor::pipeline`] (in phases: serve, start-up
//!   checks, restore, consume, drain) wires a consumer whose
//!   partitions each get a [`processor::worker`] (one engine per partition), a producer per
//!   cluster whose acks flow back through [`processor::acks`] into each worker's
//!   [`processor::inflight`] (what may be committed; a regional cluster's wait measured by
//!   [`processor::ack_wait`]), state changes written to the changelog in cuts by
//!   [`processor::state_writes`], produce failures sorted by [`processor::failure`] (one record's:
//!   a dead letter; the cluster's: a [`processor::fatal`] stop), and rebalance handling in
//!   [`processor::rebalance`].
//! - [`kafka`]: the toolkit the processor and the webhook service share: client settings, start-up
//!   checks, the main-queue loop, partition queues, the assigned partitions
//!   ([`kafka::assignments`]), offsets and commits, the shutdown, header names, the clock, and
//!   [`kafka::offset_tracker`] (which offset may be committed).
//! - [`otel`]: distributed traces, the W3C trace context of each record carried to its outputs and
//!   webhook requests, with spans exported over OTLP (`[tracing]`, off by default).
//! - [`metrics`] and [`http`]: Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` server;
//!   [`events`]: each operational event (a producer error, a failed commit, a rebalance, an
//!   eviction, a restore, a webhook retry or dead letter) as one type that counts and logs it.
//! - [`webhook`]: webhook delivery of URL records, a consumer group of its own on the output topic
//!   (`aepiot-stream webhooks`, `run --webhooks`), with retries, dead letters and signatures.
//! - [`status`]: the operator's window on `run`: the live status page at `/` of the metrics server,
//!   its JSON, and a device's state on request, answered by the worker that owns it;
//!   [`inspect`] reads a device's state from the changelog without a running instance, and
//!   [`replay`] starts a group from a point in time (`run --start-from`, `reset-offsets`);
//!   [`dead_letters`] counts a dead-letter topic and sends its records through again
//!   (`dead-letters stats|replay`).
//! - [`allocator`]: jemalloc, with each partition's device state in an arena of its own, so a
//!   partition that moves away gives its memory back.
//! - [`signals`]: SIGTERM/SIGINT for the long-running commands (a second one stops at once), and
//!   [`combined`]: `run --webhooks`, the pipeline and the webhook service in one process. The
//!   binary (`src/main.rs`) only parses flags, sets up logging and calls into these.
//! - [`passthrough`]: the benchmarks' reference, a no-op consume → produce with `run`'s client
//!   settings (hidden `aepiot-stream passthrough`, used by `benches/e2e.sh`).
pub mod allocator;
#[cfg(feature = "jemalloc")]
pub mod allocator_metrics;
pub mod combined;
pub mod config;
pub mod core;
pub mod dead_letters;
pub mod demo;
pub mod events;
pub mod generate;
pub mod http;
pub mod inspect;
pub mod kafka;
pub mod metrics;
pub mod otel;
pub mod passthrough;
pub mod process;
pub mod processor;
pub mod replay;
pub mod residency;
pub mod schema_registry;
pub mod secret;
pub mod security;
pub mod signals;
pub mod simulate;
pub mod status;
pub mod webhook;
