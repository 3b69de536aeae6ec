//! Secrets by type: a password or key is held in a [`Secret`] (a [`secrecy::SecretString`],
//! wiped from memory when dropped), which no `Debug`, `Display` or `Serialize` can show: `config
//! check`, logs, panics and error messages print `[redacted]`. The program reads the value only
//! where it hands it on (to librdkafka, to an HMAC), through [`Secret::expose`].

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A secret string: usable by the program, never shown. `Debug` and `Serialize` show `[redacted]`
/// (or `""` when it is empty, so `config check` tells a missing secret from a set one); there is
/// no `Display`.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(SecretString::from(s.into()))
    }

    /// The value, for the one place that hands it on.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.is_empty() {
            ""
        } else {
            "[redacted]"
        }
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

/// A secret is a string. Any other value is refused with a message that does not show it
/// (serde's usual "invalid type: integer `123456`" would print the password).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: de::Error>(what: &str) -> E {
        E::custom(format!(
            "a secret must be a string, got {what} (quote it in TOML; the value is not shown)"
        ))
    }
}

impl<'de> de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (the value is not shown)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::refuse("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::refuse("bytes"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::refuse("an array"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::refuse("a table or date"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_debug_or_serialize_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        // (serde_json's message, which unlike toml's quotes no excerpt of the input.)
        let e = serde_json::from_str::<Secret>("123456")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("123456"), "{e}");
    }
}
