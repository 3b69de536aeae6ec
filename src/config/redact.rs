//! `config check`: the effective configuration, printed without secrets. Passwords and raw
//! secret properties are [`crate::secret::Secret`]s, which serialize as `[redacted]`; what is
//! left to do here is the webhook URLs, which may carry a token.

use super::Config;

impl Config {
    /// The effective configuration as TOML, secrets replaced by `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for e in shown.webhooks.endpoints.iter_mut() {
            e.url = redact_url(&e.url);
        }
        toml::to_string_pretty(&shown).expect("config serializes to TOML")
    }
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
