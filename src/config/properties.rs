//! Raw librdkafka properties (`[kafka]`, `[clusters.<name>.kafka]`), with the values of
//! secret-bearing keys (`sasl.password`, `ssl.key.password`, `*secret*`, …) held as [`Secret`]s
//! from the moment they are read: `Debug` and `config check` show `[redacted]` for them, and only
//! the client settings read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::Secret;

/// librdkafka properties whose values are secrets.
pub(crate) fn is_secret_key(key: &str) -> bool {
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

/// One property's value: as written (TOML numbers and booleans are passed on as written), or a
/// secret.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Plain(toml::Value),
    Secret(Secret),
}

/// A table of raw librdkafka properties, by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KafkaProperties(BTreeMap<String, Value>);

impl KafkaProperties {
    /// Sets `key` (a secret-bearing key's value becomes a [`Secret`]).
    pub fn insert(&mut self, key: String, value: toml::Value) {
        let value = if is_secret_key(&key) {
            Value::Secret(Secret::new(as_text(&value)))
        } else {
            Value::Plain(value)
        };
        self.0.insert(key, value);
    }

    /// The value of `key` as librdkafka takes it, secrets included.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).map(text)
    }

    /// Every property as librdkafka takes it: values as strings, secrets included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, String)> {
        self.0.iter().map(|(k, v)| (k.as_str(), text(v)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn as_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Plain(v) => as_text(v),
        Value::Secret(s) => s.expose().to_string(),
    }
}

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
        let mut out = KafkaProperties::default();
        for (k, v) in raw {
            out.insert(k, v);
        }
        Ok(out)
    }
}

/// As written, secrets as `[redacted]`: what `config check` prints.
impl Serialize for KafkaProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let redacted = toml::Value::String("[redacted]".into());
        s.collect_map(self.0.iter().map(|(k, v)| match v {
            Value::Plain(v) => (k, v),
            Value::Secret(_) => (k, &redacted),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_properties_never_print_but_reach_the_client() {
        let p: KafkaProperties =
            toml::from_str("\"sasl.password\" = \"hunter2\"\n\"linger.ms\" = 5\n").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        let shown = toml::to_string(&p).unwrap();
        assert!(
            shown.contains("\"sasl.password\" = \"[redacted]\""),
            "{shown}"
        );
        assert!(shown.contains("\"linger.ms\" = 5"), "{shown}");
        let all: Vec<(&str, String)> = p.iter().collect();
        assert_eq!(
            all,
            [
                ("linger.ms", "5".into()),
                ("sasl.password", "hunter2".into())
            ]
        );
    }
}
