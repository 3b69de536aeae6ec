//! The webhook service's settings (`[webhooks]`), beside the service.

use serde::{Deserialize, Serialize};

/// Webhook delivery (`aepiot-stream webhooks`, or `run --webhooks`): every `success` URL record
/// of `output_topic` is POSTed to each endpoint, from a consumer group of its own, so a slow or
/// dead receiver only adds lag to that group and never slows URL generation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Endpoints every `success` record is POSTed to (`[[webhooks.endpoints]]` tables).
    pub endpoints: Vec<WebhookEndpointConfig>,
    /// Consumer group of the webhook service on `output_topic`; empty means `<group_id>-webhooks`.
    /// Must differ from `group_id`.
    pub group_id: String,
    /// Topic for records that could not be delivered to an endpoint: refused (a 4xx other than 408
    /// and 429, or a redirect) or still failing after `max_attempts`. Each carries the endpoint, the
    /// last error, the attempt count and the original URL record.
    pub dead_letter_topic: String,
    /// Timeout of one request (connecting, sending, and reading the response), in milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight per endpoint. Records are sharded by `device_id` into this many lanes, each
    /// sending one request at a time, so a device's records reach an endpoint in order.
    pub concurrency: usize,
    /// Attempts per record and endpoint, the first included, before the record is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles with each retry (with jitter: a
    /// random value between half and all of it).
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub backoff_max_ms: u64,
    /// Longest `Retry-After` (of a 429 or 503) that is honoured, in seconds; longer ones are capped.
    pub retry_after_max_secs: u64,
    /// Records per output partition read but not yet delivered or dead-lettered: bounds memory.
    /// When a receiver stalls, the service stops reading there and the group's lag grows.
    pub max_pending_per_partition: usize,
    /// Consecutive failed attempts at an endpoint (timeouts, connection errors, 5xx, 408, 429)
    /// after which it is down: its records are then neither tried one by one nor dead-lettered,
    /// one probe record is retried with backoff, and its reading pauses until the probe succeeds.
    /// At most `max_attempts`, so an outage stops delivery before any record runs out of attempts.
    pub down_after_failures: u32,
    /// How long an endpoint may stay down before its records are dead-lettered (each then gets
    /// one attempt), in seconds.
    pub outage_max_secs: u64,
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    /// The endpoint's name: its metrics label, and its consumer group `<webhooks group>-<name>`
    /// (each endpoint reads at its own position). Letters, digits, `-` and `_`, at most 64.
    /// Without it the name is `ep-` and a short hash of the URL: reordering endpoints keeps their
    /// positions, changing an unnamed endpoint's URL starts a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `http` or `https` URL records are POSTed to. Redirects are not followed.
    pub url: String,
    /// Only records of these regions (the record's `region`, after fallback); empty means all.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Environment variable holding the signing secret: requests are then signed to the Standard
    /// Webhooks spec (`webhook-signature: v1,<base64 HMAC-SHA256>`). A secret is the spec's
    /// `whsec_<base64 of 24 to 64 bytes>`; several, one per line, during a rotation (each adds a
    /// signature). A malformed one stops the service at start. It is never logged or printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// File holding the signing secret(s), as `secret_env` (e.g. a mounted Kubernetes Secret);
    /// instead of `secret_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            endpoints: Vec::new(),
            group_id: String::new(),
            dead_letter_topic: "aepiot-webhook-dead-letters".into(),
            timeout_ms: 5_000,
            concurrency: 16,
            max_attempts: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            retry_after_max_secs: 60,
            max_pending_per_partition: 1_000,
            down_after_failures: 3,
            outage_max_secs: 24 * 3600,
        }
    }
}

impl WebhookEndpointConfig {
    /// The endpoint's name: `name`, or `ep-` and the first 8 hex digits of the URL's SHA-256 (a
    /// URL may carry credentials: it is never a label or a group name itself).
    pub fn name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(self.url.as_bytes());
                format!("ep-{}", hex::encode(&digest[..4]))
            }
        }
    }
}

impl WebhooksConfig {
    /// Rejects impossible webhook settings; `regions` are the configured region names.
    pub(crate) fn validate<'a>(
        &self,
        regions: impl Iterator<Item = &'a String> + Clone,
    ) -> Result<(), String> {
        if self.timeout_ms == 0 {
            return Err("webhooks.timeout_ms must be at least 1".into());
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err("webhooks.concurrency must be between 1 and 1024".into());
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err("webhooks.max_attempts must be between 1 and 100".into());
        }
        if self.backoff_base_ms == 0 || self.backoff_base_ms > self.backoff_max_ms {
            return Err(
                "webhooks.backoff_base_ms must be at least 1 and at most webhooks.backoff_max_ms"
                    .into(),
            );
        }
        if self.max_pending_per_partition == 0 {
            return Err("webhooks.max_pending_per_partition must be at least 1".into());
        }
        if !(1..=self.max_attempts).contains(&self.down_after_failures) {
            return Err(
                "webhooks.down_after_failures must be at least 1 and at most webhooks.max_attempts"
                    .into(),
            );
        }
        if self.outage_max_secs == 0 {
            return Err("webhooks.outage_max_secs must be at least 1".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            if let Some(n) = &e.name {
                let ok = !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(format!(
                        "webhooks.endpoints[{i}].name must be 1 to 64 letters, digits, '-' or '_'"
                    ));
                }
            }
            if !names.insert(e.name()) {
                return Err(format!(
                    "webhooks.endpoints[{i}]: name {:?} is used by an earlier endpoint (with the same URL, give each a name)",
                    e.name()
                ));
            }
            let ok = url::Url::parse(&e.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                // The URL itself may carry credentials: name the endpoint by its position.
                return Err(format!("webhooks.endpoints[{i}].url is not an http(s) URL"));
            }
            if let Some(r) = e.regions.iter().find(|r| !regions.clone().any(|k| k == *r)) {
                return Err(format!(
                    "webhooks.endpoints[{i}].regions: {r:?} is not a region of urls.regions"
                ));
            }
            if e.secret_env.is_some() && e.secret_file.is_some() {
                return Err(format!(
                    "webhooks.endpoints[{i}]: set secret_env or secret_file, not both"
                ));
            }
            if e.secret_env.as_deref() == Some("") || e.secret_file.as_deref() == Some("") {
                return Err(format!(
                    "webhooks.endpoints[{i}]: secret_env and secret_file must not be empty"
                ));
            }
        }
        Ok(())
    }
}
