//! `config check`: the effective configuration, printed without secrets.

use super::Config;

impl Config {
    /// The effective configuration as TOML, secrets replaced by `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let cluster_kafka = shown.clusters.values_mut().map(|c| &mut c.kafka);
        for (k, v) in std::iter::once(&mut shown.kafka)
            .chain(cluster_kafka)
            .flat_map(|t| t.iter_mut())
        {
            if is_secret_key(k) {
                *v = toml::Value::String("[redacted]".into());
            }
        }
        for e in shown.webhooks.endpoints.iter_mut() {
            e.url = redact_url(&e.url);
        }
        toml::to_string_pretty(&shown).expect("config serializes to TOML")
    }
}

/// librdkafka properties whose values are never printed.
pub(super) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key.pem",
        "ssl.key",
        "keystore",
        "oauthbearer.config",
        "token",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A webhook URL as `config check` shows it: scheme, host and port. Its user info, path and
/// query are dropped (`/[redacted]`): Slack-style URLs carry their token in the path, others in
/// the query or as `user:pass@`.
fn redact_url(text: &str) -> String {
    let Ok(u) = url::Url::parse(text) else {
        return "[redacted: not a URL]".into();
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
        return "[redacted]".into();
    };
    let bare = u.path() == "/" && u.query().is_none() && u.fragment().is_none();
    let bare = bare && u.username().is_empty() && u.password().is_none();
    let rest = if bare { "/" } else { "/[redacted]" };
    format!("{}://{host}:{port}{rest}", u.scheme())
}
