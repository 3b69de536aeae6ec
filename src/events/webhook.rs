//! Events of the webhook service's deliveries: an attempt that failed and will be retried, and a
//! record an endpoint refused or kept failing, dead-lettered.

use std::fmt::Display;

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
            "webhook undeliverable; record dead-lettered"
        );
    }
}
