//! Events of the webhook service's deliveries: an attempt that failed and will be retried, a
//! record an endpoint refused or kept failing, dead-lettered, and an endpoint going down or coming
//! back up.

use std::fmt::Display;
use std::time::Duration;

use prometheus::{Gauge, IntCounter, IntGauge};

use crate::metrics::Metrics;

/// Which endpoint and which record: the endpoint by its position in `webhooks.endpoints` and its
/// origin only (a URL's path or query may carry a token), the record by its idempotency key.
#[derive(Clone, Copy)]
pub struct Attempted<'a> {
    pub endpoint: usize,
    pub origin: &'a str,
    pub key: &'a str,
}

/// An attempt failed; another follows after `delay_ms`. Logged at debug: a receiver that is down
/// fails every attempt of every record.
pub struct WebhookRetry<'a> {
    pub at: Attempted<'a>,
    pub attempt: u32,
    pub error: &'a dyn Display,
    pub delay_ms: u64,
}

impl WebhookRetry<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.webhook.retries.inc();
        tracing::debug!(
            endpoint = self.at.endpoint,
            origin = %self.at.origin,
            key = %self.at.key,
            attempt = self.attempt,
            error = %self.error,
            delay_ms = self.delay_ms,
            "webhook attempt failed; retrying"
        );
    }
}

/// A record an endpoint refused or kept failing is on the webhook dead-letter topic.
pub struct WebhookDeadLettered<'a> {
    pub at: Attempted<'a>,
    pub attempts: u32,
    /// The last error, already cut to a bounded length.
    pub error: &'a dyn Display,
    /// The record's trace, when traced (`[tracing]`): in the log line, to find its spans.
    pub trace_id: Option<opentelemetry::trace::TraceId>,
}

impl WebhookDeadLettered<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.webhook.dead_letters.inc();
        tracing::warn!(
            endpoint = self.at.endpoint,
            origin = %self.at.origin,
            key = %self.at.key,
            attempts = self.attempts,
            error = %self.error,
            trace_id = self.trace_id.map(tracing::field::display),
            "webhook undeliverable; record dead-lettered"
        );
    }
}

/// An endpoint, by its name (the label of its series) and its origin (a URL's path or query may
/// carry a token, so neither is logged).
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    pub name: &'a str,
    pub origin: &'a str,
}

/// An endpoint failed `down_after_failures` times in a row: its delivery pauses and one record
/// probes it. The series are the endpoint's own (`aepiot_webhook_endpoint_up`,
/// `aepiot_webhook_endpoint_outages_total`), already labelled with its name.
pub struct EndpointDown<'a> {
    pub endpoint: Endpoint<'a>,
}

impl EndpointDown<'_> {
    pub fn emit(self, up: &IntGauge, outages: &IntCounter) {
        up.set(0);
        outages.inc();
        tracing::warn!(
            endpoint = %self.endpoint.name,
            origin = %self.endpoint.origin,
            "webhook endpoint down: its delivery pauses, one record probes it"
        );
    }
}

/// A down endpoint answered again: delivery resumes. Its time-down gauge goes back to 0.
pub struct EndpointUp<'a> {
    pub endpoint: Endpoint<'a>,
    pub down_for: Duration,
}

impl EndpointUp<'_> {
    pub fn emit(self, up: &IntGauge, down_seconds: &Gauge) {
        up.set(1);
        down_seconds.set(0.0);
        tracing::info!(
            endpoint = %self.endpoint.name,
            origin = %self.endpoint.origin,
            down_secs = self.down_for.as_secs(),
            "webhook endpoint up again: delivery resumes"
        );
    }
}
