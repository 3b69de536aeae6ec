//! The registry's HTTP API, the few calls of the Confluent-compatible one that reading records
//! needs: a schema by id (`GET /schemas/ids/{id}`: its text, `schemaType`, `references`), and each
//! schema it references (`GET /subjects/{subject}/versions/{version}`). Every failure is sorted:
//! the registry does not know the id (the record's problem), or the registry cannot answer now
//! (the registry's: [`FetchError::Unavailable`], waited out by the caller).

use serde::Deserialize;

use super::config::SchemaRegistryConfig;
use super::schema::Fetched;
use crate::secret::Secret;

/// Largest answer read from the registry: schemas are kilobytes; a larger answer is not one.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Most schemas one schema may reference, all levels together.
const MAX_REFERENCES: usize = 64;

/// Well-known Protobuf files are built in (`protox`), so their references are not fetched.
const BUILT_IN_PREFIX: &str = "google/protobuf/";

/// Why a schema could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The registry says it does not know the schema (404), or a schema it references: every
    /// record written with it is a dead letter (`unknown_schema`).
    NotFound(String),
    /// The registry could not answer (unreachable, timed out, 5xx, refused our credentials, an
    /// answer that is not a schema): not the record's fault, asked again later. `reason` is a
    /// metric label: `unreachable`, `timeout`, `http_5xx`, `http_4xx` or `invalid_response`.
    Unavailable {
        reason: &'static str,
        message: String,
    },
}

/// The registry's HTTP client.
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    auth: Option<(String, Secret)>,
}

#[derive(Deserialize)]
struct SchemaJson {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

impl Client {
    pub fn new(config: &SchemaRegistryConfig) -> Result<Client, String> {
        let mut base =
            url::Url::parse(&config.url).map_err(|e| format!("schema_registry.url: {e}"))?;
        // `…/v7/` and `…/v7` name the same API.
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let http = config.http_client()?;
        let auth = (!config.username.is_empty())
            .then(|| (config.username.clone(), config.password.clone()));
        Ok(Client { http, base, auth })
    }

    /// The schema of `id`, with every schema it references (depth first, each once).
    pub async fn schema(&self, id: u32) -> Result<Fetched, FetchError> {
        let id = id.to_string();
        let top = self.get(&["schemas", "ids", id.as_str()]).await?;
        let mut references = Vec::new();
        let mut pending: Vec<Reference> = top.references;
        while let Some(r) = pending.pop() {
            if r.name.starts_with(BUILT_IN_PREFIX) || references.iter().any(|(n, _)| *n == r.name) {
                continue;
            }
            if references.len() >= MAX_REFERENCES {
                return Err(FetchError::NotFound(format!(
                    "the schema references more than {MAX_REFERENCES} schemas"
                )));
            }
            let version = r.version.to_string();
            let got = self
                .get(&["subjects", r.subject.as_str(), "versions", version.as_str()])
                .await
                .map_err(|e| match e {
                    FetchError::NotFound(_) => FetchError::NotFound(format!(
                        "the registry does not know {:?} version {} (referenced as {:?})",
                        r.subject, r.version, r.name
                    )),
                    other => other,
                })?;
            pending.extend(got.references);
            references.push((r.name, got.schema));
        }
        Ok(Fetched {
            schema_type: top.schema_type,
            text: top.schema,
            references,
        })
    }

    async fn get(&self, path: &[&str]) -> Result<SchemaJson, FetchError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .extend(path);
        let shown = url.path().to_owned();
        let mut request = self.http.get(url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let mut response = request.send().await.map_err(|e| unreachable(&shown, &e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(&shown, &e))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(FetchError::Unavailable {
                    reason: "invalid_response",
                    message: format!("GET {shown}: the answer is over {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let excerpt = || {
            let text = String::from_utf8_lossy(&body);
            text.chars().take(200).collect::<String>()
        };
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound(format!(
                "the registry does not know it (GET {shown}: 404 {})",
                excerpt()
            )));
        }
        if !status.is_success() {
            let reason = if status.is_server_error() {
                "http_5xx"
            } else {
                "http_4xx"
            };
            return Err(FetchError::Unavailable {
                reason,
                message: format!("GET {shown}: {status} {}", excerpt()),
            });
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Unavailable {
            reason: "invalid_response",
            message: format!(
                "GET {shown}: the answer is not a schema ({e}): {}",
                excerpt()
            ),
        })
    }
}

fn unreachable(path: &str, e: &reqwest::Error) -> FetchError {
    let reason = if e.is_timeout() {
        "timeout"
    } else {
        "unreachable"
    };
    // reqwest's Display omits the cause (connection refused, DNS): its source chain says it.
    let mut message = format!("GET {path}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    FetchError::Unavailable { reason, message }
}
