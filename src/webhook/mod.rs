//! Webhook delivery: every `success` URL record of the output topic is POSTed to each configured
//! endpoint, reliably, without ever slowing URL generation.
//!
//! # Design
//!
//! - **Decoupled from URL generation, and each endpoint from the others.** Each endpoint reads
//!   `output_topic` in a consumer group of its own (`<webhooks.group_id>-<name>`, the prefix
//!   defaulting to `<group_id>-webhooks`; [`upgrade`] seeds a new one from the single group of
//!   earlier versions), read_committed. It runs as `aepiot-stream webhooks` or inside `run`
//!   (`run --webhooks`). A slow or dead receiver only grows its own group's lag
//!   (`aepiot_webhook_lag{endpoint}`); the pipeline and the other endpoints never wait for it.
//! - **Outages** ([`health`], pure; [`outage`]): after `down_after_failures` consecutive failures
//!   an endpoint is down: one record probes it with backoff, the others wait (its reading pauses),
//!   nothing is dead-lettered until `outage_max_secs`; rule 26 of `docs/delivery.md`.
//! - **Per partition, in order** ([`partition`]): each assigned output partition has a reader that
//!   reads in offset order, skips records that are not `success` (their offsets are committed
//!   with the rest), and hands each `success` record to the endpoints whose `regions` filter
//!   takes it. At most `max_pending_per_partition` records are read ahead of the commit.
//! - **Bounded concurrency, per-device order** ([`lane`]): each endpoint has `concurrency` lanes;
//!   a record goes to lane `hash(device_id) % concurrency`, and a lane sends one request at a time.
//!   (The output topic is keyed by region, so a partition holds many devices: the lanes are what
//!   make delivery concurrent.)
//! - **Retries** ([`policy`], pure): timeouts, connection errors, 5xx, 408 and 429 are retried with
//!   exponential backoff and jitter, or after `Retry-After` (429, 502, 503, 504); 3xx (redirects
//!   are not followed), 410 Gone and the other 4xx are not. A
//!   record that is refused or still failing after `max_attempts` goes to
//!   `webhooks.dead_letter_topic` ([`dead_letter`]) with the endpoint, the last error, the attempt
//!   count and the original record.
//! - **At-least-once, one effect** ([`crate::kafka::offset_tracker`], pure, shared with the
//!   processor): the commit rule and the revoke are rules 22-23 of `docs/delivery.md`. A crash or
//!   rebalance can send a record again; every request carries
//!   `webhook-id: <topic>-<partition>-<offset>`, the same across
//!   retries, redeliveries and instances, so a receiver that dedupes on it sees each record once.
//! - **Receiver-friendly** ([`request`], [`sign`]): [Standard Webhooks] v1 headers
//!   (`webhook-id`, `webhook-timestamp` of the attempt, and with a secret — `secret_env` or
//!   `secret_file`, `whsec_` keys, never logged — `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "{id}.{timestamp}.{body}">`, one per key during a rotation), so any Standard Webhooks library
//!   verifies them and refuses replays; `User-Agent: aepiot-stream/<version>` and
//!   `X-Aepiot-Attempt`. The body ([`payload`], pure) is the same bytes on every attempt.
//! - **Observable**: `aepiot_webhook_requests_total{result}` (delivered, retried, dead_lettered,
//!   failed), `aepiot_webhook_latency_seconds{result}`, `aepiot_webhook_retries_total`,
//!   `aepiot_webhook_dead_letters_total`, `aepiot_webhook_in_flight_requests`,
//!   `aepiot_webhook_lag`.
//!
//! Pure logic ([`payload`], [`policy`], [`sign`], [`dead_letter`]) is apart from I/O
//! ([`request`]: HTTP; [`lane`], [`partition`], [`consumer`], [`startup`], [`service`]: tasks and
//! Kafka).
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com

pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod health;
pub mod lane;
pub mod outage;
pub mod partition;
pub mod payload;
pub mod policy;
pub mod request;
pub mod service;
pub mod sign;
pub mod startup;
pub mod trace;
pub mod upgrade;

pub use service::{run, WebhookHooks};
