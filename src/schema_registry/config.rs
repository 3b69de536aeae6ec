//! `[schema_registry]`: where the Confluent-compatible Schema Registry is, how to authenticate to
//! it, and how long to wait for it. The password is a [`Secret`] (never printed), from the file,
//! `AEPIOT_SCHEMA_REGISTRY__PASSWORD`, or `password_file` (a mounted Kubernetes Secret).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// Base URL of a Confluent-compatible Schema Registry (Confluent's, or Apicurio's
    /// `…/apis/ccompat/v7`). Set, a record whose first byte is 0 is read in the registry's wire
    /// format (Avro, Protobuf or JSON Schema, by its schema id); any other record is JSON as
    /// before. Empty (the default): every record is JSON.
    pub url: String,
    /// User for HTTP basic authentication; empty sends no credentials.
    pub username: String,
    /// Password for basic authentication. Prefer `AEPIOT_SCHEMA_REGISTRY__PASSWORD` or
    /// `password_file` to writing it here.
    pub password: Secret,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) an `https` registry's certificate must chain to, in addition to
    /// the built-in roots.
    pub ssl_ca_location: Option<PathBuf>,
    /// How long one request to the registry may take, connecting included, in milliseconds.
    pub request_timeout_ms: u64,
    /// First wait before asking an unreachable registry again, in milliseconds; doubled at each
    /// failure up to `retry_backoff_max_ms`. Meanwhile the partition waiting for the schema holds
    /// its place (nothing skipped, nothing dead-lettered); other partitions go on.
    pub retry_backoff_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub retry_backoff_max_ms: u64,
    /// Most schemas kept parsed in memory (by schema id); past it the oldest is dropped and
    /// fetched again when a record needs it.
    pub max_cached_schemas: usize,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        SchemaRegistryConfig {
            url: String::new(),
            username: String::new(),
            password: Secret::default(),
            password_file: None,
            ssl_ca_location: None,
            request_timeout_ms: 5_000,
            retry_backoff_ms: 250,
            retry_backoff_max_ms: 10_000,
            max_cached_schemas: 1_000,
        }
    }
}

impl SchemaRegistryConfig {
    /// Whether a registry is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The HTTP client every registry request goes through (reading schemas, registering the
    /// output's): this section's timeout and CA bundle.
    pub fn http_client(&self) -> Result<reqwest::Client, String> {
        let timeout = self.request_timeout();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("aepiot-stream/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.ssl_ca_location {
            let pem = std::fs::read(path).map_err(|e| {
                format!(
                    "schema_registry.ssl_ca_location: cannot read {}: {e}",
                    path.display()
                )
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("schema_registry.ssl_ca_location {}: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the Schema Registry HTTP client: {e}"))
    }

    /// Reads `password_file` and checks the settings; returns what to fix.
    pub fn resolve(&mut self) -> Result<(), String> {
        crate::security::read_secret_file(
            &mut self.password,
            &self.password_file,
            "schema_registry.password_file",
        )?;
        if !self.enabled() {
            return Ok(());
        }
        let url = url::Url::parse(&self.url)
            .map_err(|e| format!("schema_registry.url {:?} is not a URL: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "schema_registry.url {:?} must be an http:// or https:// URL with a host",
                self.url
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "schema_registry.url must not carry credentials: use schema_registry.username \
                 and schema_registry.password (or password_file)"
                    .into(),
            );
        }
        if !self.password.is_empty() && self.username.is_empty() {
            return Err("schema_registry.password needs schema_registry.username".into());
        }
        if let Some(p) = &self.ssl_ca_location {
            if !p.is_file() {
                return Err(format!(
                    "schema_registry.ssl_ca_location: {} is not a readable file",
                    p.display()
                ));
            }
        }
        if self.request_timeout_ms == 0 || self.retry_backoff_ms == 0 {
            return Err(
                "schema_registry.request_timeout_ms and retry_backoff_ms must be at least 1".into(),
            );
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms {
            return Err(
                "schema_registry.retry_backoff_max_ms must be at least retry_backoff_ms".into(),
            );
        }
        if self.max_cached_schemas == 0 {
            return Err("schema_registry.max_cached_schemas must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        let mut c = SchemaRegistryConfig::default();
        assert!(!c.enabled());
        c.resolve().unwrap();
        for (url, why) in [
            ("registry:8081", "http"),
            ("ftp://registry", "http"),
            ("http://u:p@registry:8081", "credentials"),
        ] {
            let mut c = SchemaRegistryConfig {
                url: url.into(),
                ..Default::default()
            };
            let e = c.resolve().unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        let mut c = SchemaRegistryConfig {
            url: "https://registry.example:8081/apis/ccompat/v7".into(),
            password: Secret::new("hunter2"),
            ..Default::default()
        };
        assert!(c.resolve().unwrap_err().contains("username"));
        c.username = "svc".into();
        c.resolve().unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!toml::to_string(&c).unwrap().contains("hunter2"));
    }

    #[test]
    fn password_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let mut c = SchemaRegistryConfig {
            url: "http://registry:8081".into(),
            username: "svc".into(),
            password_file: Some(f),
            ..Default::default()
        };
        c.resolve().unwrap();
        assert_eq!(c.password.expose(), "from-file");
    }
}
