//! Request signatures: `X-Aepiot-Signature: sha256=<hex HMAC-SHA256 of the body>`, keyed by a
//! per-endpoint shared secret read from an environment variable or a file at start.
//!
//! The secret never appears in logs, errors, `Debug` output or `config check`: errors name the
//! variable or file it was to come from, never its content.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "X-Aepiot-Signature";

/// A signing secret. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    /// A secret of at least one byte.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, String> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Secret(bytes.into_boxed_slice()))
    }

    /// Loads the secret named by an endpoint's `secret_env` or `secret_file` (neither: `None`).
    /// `getenv` is normally `std::env::var`. A file's one trailing newline (`\n` or `\r\n`) is
    /// dropped, as editors and `echo` add one.
    pub fn load(
        secret_env: Option<&str>,
        secret_file: Option<&str>,
        getenv: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, String> {
        if let Some(var) = secret_env {
            let value = getenv(var)
                .ok_or_else(|| format!("environment variable {var} (secret_env) is not set"))?;
            return Secret::new(value)
                .map(Some)
                .map_err(|_| format!("environment variable {var} (secret_env) is empty"));
        }
        if let Some(path) = secret_file {
            let mut bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read secret_file {path}: {}", e.kind()))?;
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            return Secret::new(bytes)
                .map(Some)
                .map_err(|_| format!("secret_file {path} is empty"));
        }
        Ok(None)
    }

    /// The signature header's value for `body`: `sha256=` and the HMAC's lowercase hex.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_with_hmac_sha256() {
        // RFC 4231, test case 2.
        let s = Secret::new(b"Jefe".to_vec()).unwrap();
        assert_eq!(
            s.sign(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new(b"hunter2".to_vec()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(!format!("{:?}", Some(s)).contains("hunter2"));
    }

    #[test]
    fn loads_from_env_or_file_without_echoing_it() {
        let env = |k: &str| match k {
            "SET" => Some("hunter2".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            Secret::load(Some("SET"), None, env).unwrap(),
            Some(Secret::new(b"hunter2".to_vec()).unwrap())
        );
        let e = Secret::load(Some("UNSET"), None, env).unwrap_err();
        assert!(e.contains("UNSET") && e.contains("not set"), "{e}");
        assert!(Secret::load(Some("EMPTY"), None, env).is_err());
        assert_eq!(Secret::load(None, None, env).unwrap(), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "hunter2\r\n").unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(
            Secret::load(None, Some(p), env).unwrap(),
            Some(Secret::new(b"hunter2".to_vec()).unwrap())
        );
        std::fs::write(&path, "\n").unwrap();
        let e = Secret::load(None, Some(p), env).unwrap_err();
        assert!(e.contains("empty") && !e.contains("hunter2"), "{e}");
        let e = Secret::load(None, Some("/no/such/file"), env).unwrap_err();
        assert!(e.contains("/no/such/file"), "{e}");
    }
}
