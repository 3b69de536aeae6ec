//! Kafka security settings (`[security]`): TLS, SASL PLAIN and SCRAM, as first-class
//! configuration rather than raw librdkafka properties, and secrets that never print.
//!
//! Secrets (the SASL password, the private key's password) come from the config file, from the
//! environment (`AEPIOT_SECURITY__SASL_PASSWORD`), or from a file (`sasl_password_file`, e.g. a
//! mounted Kubernetes Secret). They are held in [`Secret`], whose `Debug` and `Serialize` show
//! `[redacted]`, so `config check`, logs and panics cannot reveal them.

use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

pub use crate::secret::Secret;

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    fn librdkafka(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }
}

/// SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum Mechanism {
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "PLAIN")]
    Plain,
}

impl Mechanism {
    fn librdkafka(self) -> &'static str {
        match self {
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// How every Kafka client of the processor connects.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: Protocol,
    /// With SASL: `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`.
    pub sasl_mechanism: Mechanism,
    pub sasl_username: String,
    /// Prefer `AEPIOT_SECURITY__SASL_PASSWORD` or `sasl_password_file` to writing it here.
    pub sasl_password: Secret,
    /// A file holding the SASL password (trailing newline ignored).
    pub sasl_password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) that the brokers' certificates must chain to; empty uses the
    /// system's trust store.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of the client private key.
    pub ssl_key_password: Secret,
    /// A file holding the private key's password.
    pub ssl_key_password_file: Option<PathBuf>,
    /// Check that the broker's certificate names the host connected to (`true`, recommended).
    pub ssl_verify_hostname: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            protocol: Protocol::Plaintext,
            sasl_mechanism: Mechanism::ScramSha512,
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            sasl_password_file: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: Secret::default(),
            ssl_key_password_file: None,
            ssl_verify_hostname: true,
        }
    }
}

impl SecurityConfig {
    /// Reads `*_file` secrets and checks the combination; returns what to fix.
    pub fn resolve(&mut self) -> Result<(), String> {
        self.resolve_at("security")
    }

    /// As [`SecurityConfig::resolve`], for the settings at key path `at` (`security`, or
    /// `clusters.<name>.security`), which the messages name.
    pub fn resolve_at(&mut self, at: &str) -> Result<(), String> {
        read_secret_file(
            &mut self.sasl_password,
            &self.sasl_password_file,
            &format!("{at}.sasl_password_file"),
        )?;
        read_secret_file(
            &mut self.ssl_key_password,
            &self.ssl_key_password_file,
            &format!("{at}.ssl_key_password_file"),
        )?;
        if self.protocol.uses_sasl()
            && (self.sasl_username.is_empty() || self.sasl_password.is_empty())
        {
            let env =
                format!("AEPIOT_{}__SASL_PASSWORD", at.replace('.', "__")).to_ascii_uppercase();
            return Err(format!(
                "{at}.protocol = {:?} needs {at}.sasl_username and a password \
                 ({at}.sasl_password, {env} or {at}.sasl_password_file)",
                self.protocol.librdkafka()
            ));
        }
        for (name, path) in [
            ("ssl_ca_location", &self.ssl_ca_location),
            ("ssl_certificate_location", &self.ssl_certificate_location),
            ("ssl_key_location", &self.ssl_key_location),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    return Err(format!(
                        "{at}.{name}: {} is not a readable file",
                        p.display()
                    ));
                }
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(format!(
                "{at}.ssl_certificate_location and {at}.ssl_key_location go together"
            ));
        }
        Ok(())
    }

    /// Sets the librdkafka properties of these settings on a client.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", self.protocol.librdkafka());
        if self.protocol.uses_sasl() {
            c.set("sasl.mechanisms", self.sasl_mechanism.librdkafka())
                .set("sasl.username", &self.sasl_username)
                .set("sasl.password", self.sasl_password.expose());
        }
        if self.protocol.uses_tls() {
            if let Some(p) = &self.ssl_ca_location {
                c.set("ssl.ca.location", p.display().to_string());
            }
            if let Some(p) = &self.ssl_certificate_location {
                c.set("ssl.certificate.location", p.display().to_string());
            }
            if let Some(p) = &self.ssl_key_location {
                c.set("ssl.key.location", p.display().to_string());
            }
            if !self.ssl_key_password.is_empty() {
                c.set("ssl.key.password", self.ssl_key_password.expose());
            }
            c.set(
                "ssl.endpoint.identification.algorithm",
                if self.ssl_verify_hostname {
                    "https"
                } else {
                    "none"
                },
            );
        }
    }
}

/// Reads `file`, if set, into `secret` (trailing newline ignored); `name` is its key, for the
/// message.
pub(crate) fn read_secret_file(
    secret: &mut Secret,
    file: &Option<PathBuf>,
    name: &str,
) -> Result<(), String> {
    let Some(path) = file else { return Ok(()) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{name}: cannot read {}: {e}", path.display()))?;
    *secret = Secret::new(text.trim_end_matches(['\n', '\r']));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = SecurityConfig {
            protocol: Protocol::SaslSsl,
            sasl_username: "alice".into(),
            sasl_password: Secret::new("hunter2"),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!toml::to_string(&s).unwrap().contains("hunter2"));
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(
            c.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
    }

    #[test]
    fn password_from_file_and_missing_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let mut s = SecurityConfig {
            protocol: Protocol::SaslPlaintext,
            sasl_username: "alice".into(),
            sasl_password_file: Some(f),
            ..Default::default()
        };
        s.resolve().unwrap();
        assert_eq!(s.sasl_password.expose(), "from-file");
        let mut none = SecurityConfig {
            protocol: Protocol::SaslPlaintext,
            ..Default::default()
        };
        assert!(none.resolve().unwrap_err().contains("sasl_username"));
    }
}
