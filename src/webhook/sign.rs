//! Request signatures, [Standard Webhooks] v1: every request carries
//!
//! - `webhook-id`: the record's id, the same on every attempt (the receiver's idempotency key);
//! - `webhook-timestamp`: this attempt's time, Unix seconds (receivers refuse old ones: a captured
//!   request cannot be replayed later);
//! - `webhook-signature`: `v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`, one per key,
//!   space-separated.
//!
//! Keys are the spec's `whsec_<base64 of 24 to 64 random bytes>`. An endpoint's `secret_env` or
//! `secret_file` holds one key per line: during a rotation, the new key and the old one, so
//! receivers that know either verify (the spec's zero-downtime rotation). Receivers verify with
//! any Standard Webhooks library (`standardwebhooks` for Python, JS, Go, Rust, Java; `svix`).
//!
//! A key never appears in logs, errors, `Debug` output or `config check`: errors name the variable
//! or file it was to come from and the line, never its content.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// The record id header.
pub const ID_HEADER: &str = "webhook-id";
/// The attempt time header (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The spec's prefix of a symmetric key.
pub const KEY_PREFIX: &str = "whsec_";
/// Key sizes the spec allows, in bytes.
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Most keys per endpoint (a rotation needs two).
pub const MAX_KEYS: usize = 8;

/// Standard base64, with or without padding (keys are written both ways).
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An endpoint's signing keys, in the order given, each a [`SecretSlice`] (wiped when dropped).
/// Its `Debug` is redacted.
#[derive(Clone)]
pub struct Secret(Vec<SecretSlice<u8>>);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        let keys = |s: &Self| {
            s.0.iter()
                .map(|k| k.expose_secret().to_vec())
                .collect::<Vec<_>>()
        };
        keys(self) == keys(other)
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret([{} key(s) redacted])", self.0.len())
    }
}

impl Secret {
    /// Parses keys, one per line (blank lines and surrounding whitespace ignored). The error says
    /// which line is wrong and how, never what it holds.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let key = line
                .strip_prefix(KEY_PREFIX)
                .and_then(|b64| KEY_BASE64.decode(b64).ok())
                .ok_or_else(|| {
                    format!(
                        "line {} is not a Standard Webhooks secret (`whsec_` and the base64 of {} to {} random bytes, one per line)",
                        i + 1,
                        KEY_BYTES.start(),
                        KEY_BYTES.end()
                    )
                })?;
            if !KEY_BYTES.contains(&key.len()) {
                return Err(format!(
                    "line {}: the secret is {} bytes; Standard Webhooks secrets are {} to {} bytes",
                    i + 1,
                    key.len(),
                    KEY_BYTES.start(),
                    KEY_BYTES.end()
                ));
            }
            keys.push(SecretSlice::from(key));
        }
        if keys.is_empty() {
            return Err("holds no secret".into());
        }
        if keys.len() > MAX_KEYS {
            return Err(format!(
                "holds {} secrets; at most {MAX_KEYS} (a rotation needs two)",
                keys.len()
            ));
        }
        Ok(Secret(keys))
    }

    /// Loads the keys named by an endpoint's `secret_env` or `secret_file` (neither: `None`).
    /// `getenv` is normally `std::env::var`.
    pub fn load(
        secret_env: Option<&str>,
        secret_file: Option<&str>,
        getenv: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, String> {
        if let Some(var) = secret_env {
            let value = getenv(var)
                .ok_or_else(|| format!("environment variable {var} (secret_env) is not set"))?;
            return Secret::parse(&value)
                .map(Some)
                .map_err(|e| format!("environment variable {var} (secret_env): {e}"));
        }
        if let Some(path) = secret_file {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read secret_file {path}: {}", e.kind()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("secret_file {path} is not UTF-8 text"))?;
            return Secret::parse(&text)
                .map(Some)
                .map_err(|e| format!("secret_file {path}: {e}"));
        }
        Ok(None)
    }

    /// The `webhook-signature` value for one attempt: `v1,<base64>` per key, space-separated.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let stamp = timestamp.to_string();
        let mut out = String::with_capacity(self.0.len() * 48);
        for key in &self.0 {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret())
                .expect("HMAC takes any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(stamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            base64::engine::general_purpose::STANDARD
                .encode_string(mac.finalize().into_bytes(), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published Standard Webhooks test vector (the spec's reference libraries' tests).
    const SPEC_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: u64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_spec_test_vector() {
        let s = Secret::parse(SPEC_KEY).unwrap();
        assert_eq!(
            s.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
        // Id, timestamp and body are all signed.
        for (id, ts, body) in [
            ("msg_other", SPEC_TIMESTAMP, SPEC_BODY),
            (SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY),
            (SPEC_ID, SPEC_TIMESTAMP, r#"{"test": 2432232315}"#),
        ] {
            assert_ne!(s.sign(id, ts, body.as_bytes()), SPEC_SIGNATURE);
        }
    }

    #[test]
    fn rotation_signs_with_every_key_in_order() {
        let other = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let both = Secret::parse(&format!("\n  {other}  \r\n{SPEC_KEY}\n\n")).unwrap();
        let sig = both.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes());
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2, "{sig}");
        assert!(parts[0].starts_with("v1,") && parts[0] != SPEC_SIGNATURE);
        assert_eq!(parts[1], SPEC_SIGNATURE);
        // Unpadded base64 is the same key.
        let unpadded = Secret::parse(other.trim_end_matches('=')).unwrap();
        assert_eq!(unpadded, Secret::parse(&other).unwrap());
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_them() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![0x5a; n]);
        for (text, says) in [
            ("hunter2-not-a-key".to_string(), "line 1"),
            (format!("{SPEC_KEY}\nwhsec_hunter2!!"), "line 2"),
            (b64(32), "line 1"),
            (format!("whsec_{}", b64(16)), "16 bytes"),
            (format!("whsec_{}", b64(65)), "65 bytes"),
            (format!("{SPEC_KEY} {SPEC_KEY}"), "line 1"),
            ("\n \n".to_string(), "no secret"),
            (format!("{SPEC_KEY}\n").repeat(9), "at most"),
        ] {
            let e = Secret::parse(&text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(!e.contains("hunter2") && !e.contains("MfKQ9r8"), "{e}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::parse(SPEC_KEY).unwrap();
        assert_eq!(format!("{s:?}"), "Secret([1 key(s) redacted])");
        assert!(!format!("{:?}", Some(s)).contains("MfKQ"));
    }

    #[test]
    fn loads_from_env_or_file_without_echoing_it() {
        let env = |k: &str| match k {
            "SET" => Some(SPEC_KEY.to_string()),
            "BAD" => Some("hunter2".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            Secret::load(Some("SET"), None, env).unwrap(),
            Some(Secret::parse(SPEC_KEY).unwrap())
        );
        let e = Secret::load(Some("UNSET"), None, env).unwrap_err();
        assert!(e.contains("UNSET") && e.contains("not set"), "{e}");
        let e = Secret::load(Some("BAD"), None, env).unwrap_err();
        assert!(
            e.contains("BAD") && e.contains("whsec_") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(Secret::load(Some("EMPTY"), None, env).is_err());
        assert_eq!(Secret::load(None, None, env).unwrap(), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{SPEC_KEY}\r\n")).unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(
            Secret::load(None, Some(p), env).unwrap(),
            Some(Secret::parse(SPEC_KEY).unwrap())
        );
        std::fs::write(&path, "hunter2\n").unwrap();
        let e = Secret::load(None, Some(p), env).unwrap_err();
        assert!(e.contains(p) && !e.contains("hunter2"), "{e}");
        let e = Secret::load(None, Some("/no/such/file"), env).unwrap_err();
        assert!(e.contains("/no/such/file"), "{e}");
    }
}
