//! aepiot-stream: IoT device events in, aéPiot backlink URL records out.
//!
//! # Layout
//! - [`core`]: the pure engine. [`core::event`] decodes and validates an event,
//!   [`core::limiter`] and [`core::state`] hold each device's rate limit and dedupe cache,
//!   [`core::urls`] builds the URLs, [`core::record`] encodes URL records and dead letters, and
//!   [`core::engine`] runs them in that order for one partition.
//! - [`config`]: the configuration (TOML, `AEPIOT_*` environment, flags) and its validation.
//! - [`process`]: the offline adapter, JSON Lines in and out.
pub mod config;
pub mod core;
pub mod process;
