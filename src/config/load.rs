//! Loading: defaults, then the TOML file, then `AEPIOT_*` environment variables, then flags.

use std::path::Path;

use super::is_secret_key;
use super::{Config, ConfigError};

/// Environment variable prefix: `AEPIOT_OUTPUT_TOPIC`, `AEPIOT_LIMITS__CACHE_TTL_SECS`,
/// `AEPIOT_KAFKA__SASL_PASSWORD` (→ `kafka."sasl.password"`).
pub const ENV_PREFIX: &str = "AEPIOT_";

impl Config {
    /// Loads the configuration: defaults, then the file (if any), then `env` (pairs of name and
    /// value, normally `std::env::vars()`), then `overrides` (from flags, as TOML key paths).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: toml::Table,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let p = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            table = toml::from_str(&text).map_err(|e: toml::de::Error| {
                let at = e.span().map_or(0, |s| s.start).min(text.len());
                let before = text.get(..at).unwrap_or_default();
                ConfigError::Toml {
                    path: p,
                    message: e.message().trim_end().replace('\n', "; "),
                    line: before.matches('\n').count() + 1,
                    column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                }
            })?;
        }
        // Variables whose first part names no configuration key are not ours: Kubernetes, for
        // one, injects `<SERVICE>_PORT`-style variables for every Service in the namespace, and a
        // Service named `aepiot-…` makes `AEPIOT_…` ones. They are ignored; a typo inside a known
        // section (`AEPIOT_LIMITS__TYPO`) still fails as an unknown key.
        let known = toml::Value::try_from(Config::default()).expect("defaults serialize");
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                let path = env_path(rest);
                let ours = path
                    .first()
                    .is_some_and(|first| known.get(first.as_str()).is_some());
                if ours {
                    set_path(&mut table, &path, env_value(&path, &value));
                } else if !path.is_empty() {
                    tracing::debug!(variable = %name, "environment variable ignored: no such configuration key");
                }
            }
        }
        merge(&mut table, overrides);
        if let Some(key) = non_string_secret(&table, "") {
            return Err(ConfigError::Invalid(format!(
                "{key} must be a string (quote it in TOML; the value is not shown)"
            )));
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.security.resolve().map_err(ConfigError::Invalid)?;
        config
            .schema_registry
            .resolve()
            .map_err(ConfigError::Invalid)?;
        for (name, c) in config.clusters.iter_mut() {
            c.security
                .resolve_at(&format!("clusters.{name}.security"))
                .map_err(ConfigError::Invalid)?;
        }
        config.validate()?;
        Ok(config)
    }
}

/// `LIMITS__CACHE_TTL_SECS` → ["limits", "cache_ttl_secs"]; `KAFKA__SASL_PASSWORD` →
/// ["kafka", "sasl.password"] (librdkafka property names use dots).
fn env_path(rest: &str) -> Vec<String> {
    let mut parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
    if parts.len() == 2 && parts[0] == "kafka" {
        parts[1] = parts[1].replace('_', ".");
    }
    // `CLUSTERS__EU__KAFKA__SASL_PASSWORD` → clusters.eu.kafka."sasl.password"
    if parts.len() == 4 && parts[0] == "clusters" && parts[2] == "kafka" {
        parts[3] = parts[3].replace('_', ".");
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// Typed values from environment text: lists are comma-separated; numbers and booleans parse,
/// except in librdkafka properties and secret-bearing keys (`*password*`, `*secret*`, …), which
/// stay strings: `AEPIOT_SECURITY__SASL_PASSWORD=123456` is the password "123456", and a type
/// error could not be raised without naming the value.
fn env_value(path: &[String], value: &str) -> toml::Value {
    let key = path.last().map(String::as_str).unwrap_or("");
    let cluster_kafka = path[0] == "clusters" && path.get(2).is_some_and(|p| p == "kafka");
    if path[0] == "kafka"
        || path[0] == "output_topics_by_region"
        || cluster_kafka
        || is_secret_key(key)
    {
        return toml::Value::String(value.to_string());
    }
    if matches!(key, "input_topics" | "hosts" | "allowed_link_hosts") {
        return toml::Value::Array(
            value
                .split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        );
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    // Decimals (`AEPIOT_TRACING__SAMPLE_RATIO=0.01`); only digits and one point, so that names such
    // as `inf` or `1e3` stay strings.
    let decimal = |c: char| c.is_ascii_digit() || c == '.' || c == '-';
    if value.contains('.') && value.chars().all(decimal) {
        if let Ok(f) = value.parse::<f64>() {
            return toml::Value::Float(f);
        }
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_string()),
    }
}

/// The first secret-bearing key (`*password*`, `*secret*`, …) whose value is not a string, so
/// the error can name the key before serde's type error would print the value. `[kafka]` values
/// are all passed on as strings.
fn non_string_secret(table: &toml::Table, prefix: &str) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if key == "kafka" {
            return None;
        }
        if is_secret_key(k) && !v.is_str() {
            return Some(key);
        }
        v.as_table().and_then(|t| non_string_secret(t, &key))
    })
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.clone(), value);
}

/// Deep-merges `over` into `base`.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
