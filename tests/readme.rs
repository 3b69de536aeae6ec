//! README's configuration reference documents every configuration key the code accepts.

use aepiot_stream::config::Config;

fn keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            // Maps of user-chosen names (regions, raw librdkafka properties) are one entry.
            let is_map = matches!(key.as_str(), "urls.regions" | "kafka");
            if v.is_table() && !is_map {
                keys(&key, v, out);
            } else {
                out.push(key);
            }
        }
    }
}

#[test]
fn every_config_key_is_in_the_readme_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let value = toml::Value::try_from(Config::default()).unwrap();
    let mut all = Vec::new();
    keys("", &value, &mut all);
    // Optional keys (None) are absent from the serialized defaults: list them explicitly.
    all.extend(
        [
            "security.sasl_password_file",
            "security.ssl_ca_location",
            "security.ssl_certificate_location",
            "security.ssl_key_location",
            "security.ssl_key_password_file",
            // `[clusters.<name>]` tables: none by default.
            "clusters.<name>.brokers",
            "clusters.<name>.security",
            "clusters.<name>.kafka",
        ]
        .map(String::from),
    );
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's configuration table lacks: {missing:?}"
    );
    assert!(all.len() > 30);
}
