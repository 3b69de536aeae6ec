//! Replay of webhook dead letters: the URL record's body is POSTed again to the endpoint it
//! failed at, with the `webhook-id` of the original delivery and signed with the endpoint's
//! current secret, exactly as the webhook service sends ([`crate::webhook::request`]).
//!
//! A dead letter names its endpoint by position in `webhooks.endpoints` and origin; the
//! configuration given to the replay must still have an endpoint of that origin at that position
//! (the URL's path and secret come from there), or the replay stops and says so.

use std::time::Duration;

use crate::config::Config;
use crate::webhook::dead_letter::origin;
use crate::webhook::policy::Attempt;
use crate::webhook::request::{self, Request};
use crate::webhook::sign::Secret;

/// One configured endpoint.
struct Endpoint {
    url: reqwest::Url,
    origin: String,
    /// Loaded when the endpoint is first needed: a replay of other dead letters does not need
    /// its secret to be set.
    secret: Result<Option<Secret>, String>,
}

/// The configured endpoints and the HTTP client.
pub struct Endpoints {
    client: reqwest::Client,
    list: Vec<Result<Endpoint, String>>,
}

impl Endpoints {
    pub fn new(config: &Config) -> anyhow::Result<Endpoints> {
        let w = &config.webhooks;
        let client = request::client(Duration::from_millis(w.timeout_ms.max(1)), 1)?;
        let list = w
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let url = reqwest::Url::parse(&e.url)
                    .map_err(|_| format!("webhooks.endpoints[{i}].url is not a URL"))?;
                let secret = Secret::load(e.secret_env.as_deref(), e.secret_file.as_deref(), |k| {
                    std::env::var(k).ok()
                })
                .map_err(|m| format!("webhooks.endpoints[{i}]: {m}"));
                Ok(Endpoint {
                    origin: origin(&url),
                    url,
                    secret,
                })
            })
            .collect();
        Ok(Endpoints { client, list })
    }

    /// Sends `body` once to endpoint `index`, which must have `want_origin`. `Err`: why it was
    /// not delivered (the configuration, or the endpoint's answer).
    pub async fn deliver(
        &self,
        index: usize,
        want_origin: &str,
        webhook_id: &str,
        body: &[u8],
        attempt: u32,
    ) -> Result<(), String> {
        let ep = self
            .list
            .get(index)
            .ok_or_else(|| {
                format!(
                    "the configuration has no webhooks.endpoints[{index}] (the dead letter's endpoint, {want_origin})"
                )
            })?
            .as_ref()
            .map_err(Clone::clone)?;
        if ep.origin != want_origin {
            return Err(format!(
                "webhooks.endpoints[{index}] is now {}, the dead letter's endpoint was {want_origin}: give the configuration the dead letters were written with",
                ep.origin
            ));
        }
        let secret = ep.secret.as_ref().map_err(Clone::clone)?;
        let sent = request::post(
            &self.client,
            &Request {
                url: &ep.url,
                body,
                webhook_id,
                secret: secret.as_ref(),
                attempt,
                traceparent: None,
                tracestate: None,
            },
        )
        .await;
        match sent.attempt {
            Attempt::Response { status, .. } if (200..300).contains(&status) => Ok(()),
            _ => Err(format!(
                "endpoint {index} ({want_origin}) did not accept it: {}",
                sent.error
            )),
        }
    }
}
