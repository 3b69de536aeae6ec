//! `output.format = "avro"` at start-up: registers the URL record's Avro schema
//! ([`URL_RECORD_AVSC`]) under `<topic>-value` of every output topic and returns the id the
//! records carry. A registry that refuses the schema (a 4xx: incompatible, invalid, unauthorized)
//! is a configuration error and stops the start; one that cannot be reached, times out or answers
//! 5xx is retried with back-off until it answers (or the instance is stopped), and the log and
//! `/readyz` say what it waits for.

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, OutputFormat, SchemaRegistryConfig};
use crate::core::avro_record::{RecordEncoding, URL_RECORD_AVSC};
use crate::http::Health;

/// What one registration attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Registered(u32),
    /// The registry's trouble (unreachable, timed out, 5xx, 429): try again.
    Retry(String),
    /// The registry refused the schema or us: a configuration error.
    Refused(String),
}

/// How the URL records are encoded: JSON, or Avro with the registered schema's id. `None` when
/// `shutdown` came while it still waited for the registry.
pub async fn record_encoding(
    config: &Config,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RecordEncoding>> {
    if config.output.format == OutputFormat::Json {
        return Ok(Some(RecordEncoding::Json));
    }
    let registry = &config.schema_registry;
    let client = registry.http_client().map_err(anyhow::Error::msg)?;
    let mut id = None;
    for topic in output_topics(config) {
        let subject = format!("{topic}-value");
        let Some(got) = register_waiting(registry, &client, &subject, health, shutdown).await?
        else {
            return Ok(None);
        };
        match id {
            Some(first) if first != got => anyhow::bail!(
                "the Schema Registry gave the URL record schema id {first} under one output topic \
                 and {got} under {subject:?}: every output topic must carry the same schema id"
            ),
            _ => id = Some(got),
        }
    }
    let schema_id = id.expect("there is always an output topic");
    tracing::info!(schema_id, "URL records are written as Avro (output.format)");
    Ok(Some(RecordEncoding::Avro { schema_id }))
}

/// Every topic URL records go to, on any cluster, each once: `output_topic` first.
fn output_topics(config: &Config) -> Vec<String> {
    let mut topics = vec![config.output_topic.clone()];
    for t in config.routes().region_topics {
        if !topics.contains(&t) {
            topics.push(t);
        }
    }
    topics
}

async fn register_waiting(
    registry: &SchemaRegistryConfig,
    client: &reqwest::Client,
    subject: &str,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<u32>> {
    let mut backoff = Duration::from_millis(registry.retry_backoff_ms);
    let max_backoff = Duration::from_millis(registry.retry_backoff_max_ms);
    loop {
        match register(registry, client, subject).await {
            Attempt::Registered(id) => {
                health.set_waiting(None);
                return Ok(Some(id));
            }
            Attempt::Refused(why) => anyhow::bail!(
                "configuration: the Schema Registry at {} refused the URL record schema under \
                 subject {subject:?} (output.format = \"avro\"): {why}",
                registry.url
            ),
            Attempt::Retry(why) => {
                let waiting = format!(
                    "waiting for the Schema Registry at {} to register the URL record schema \
                     under {subject:?}: {why}",
                    registry.url
                );
                tracing::warn!(retry_in_ms = backoff.as_millis() as u64, "{waiting}");
                health.set_waiting(Some(waiting));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

/// `POST /subjects/<subject>/versions`: registers the schema, or finds it registered already;
/// either way the answer is its id.
async fn register(
    registry: &SchemaRegistryConfig,
    client: &reqwest::Client,
    subject: &str,
) -> Attempt {
    let body = serde_json::json!({ "schema": URL_RECORD_AVSC, "schemaType": "AVRO" });
    let path = format!("/subjects/{}/versions", percent_path(subject));
    let url = format!("{}{path}", registry.url.trim_end_matches('/'));
    let mut request = client.post(url);
    if !registry.username.is_empty() {
        request = request.basic_auth(&registry.username, Some(registry.password.expose()));
    }
    let sent = request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/vnd.schemaregistry.v1+json",
        )
        .json(&body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(error_chain(&e)),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    classify(status.as_u16(), &text)
}

/// A response's meaning: 2xx with an id is the answer; 5xx and 429 are the registry's passing
/// trouble; any other status is a refusal that retrying will not change.
fn classify(status: u16, body: &str) -> Attempt {
    let short: String = body.chars().take(300).collect();
    match status {
        200..=299 => match serde_json::from_str::<Registered>(body) {
            Ok(r) => Attempt::Registered(r.id),
            Err(e) => Attempt::Refused(format!("HTTP {status} without a schema id ({e}): {short}")),
        },
        429 | 500..=599 => Attempt::Retry(format!("HTTP {status}: {short}")),
        _ => Attempt::Refused(format!("HTTP {status}: {short}")),
    }
}

/// A subject as one path segment: topic names are `[A-Za-z0-9._-]`, but a subject is escaped
/// anyway so that no name can change the path.
fn percent_path(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its causes: reqwest's own text only says "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_an_id_a_retry_or_a_refusal() {
        assert_eq!(classify(200, r#"{"id":7}"#), Attempt::Registered(7));
        assert!(matches!(classify(200, "<html>"), Attempt::Refused(_)));
        for s in [500, 502, 503, 504, 429] {
            assert!(matches!(classify(s, "busy"), Attempt::Retry(_)), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(matches!(classify(s, "no"), Attempt::Refused(_)), "{s}");
        }
        let Attempt::Refused(why) = classify(409, &"x".repeat(1000)) else {
            panic!()
        };
        assert!(why.len() < 320, "a long body is cut: {why}");
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(
            percent_path("aepiot-urls.eu_1-value"),
            "aepiot-urls.eu_1-value"
        );
        assert_eq!(percent_path("a/b?c"), "a%2Fb%3Fc");
    }
}
