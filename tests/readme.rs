//! README says what the code does: its configuration reference documents every configuration key
//! the code accepts, and its quick start states the demo's defaults.

use aepiot_stream::config::Config;
use aepiot_stream::demo::defaults;

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
    let readme = readme();
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
            "schema_registry.password_file",
            "schema_registry.ssl_ca_location",
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

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// `n` as README writes numbers: 2,000.
fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_quick_start_states_the_demos_defaults() {
    let readme = readme();
    let start = readme
        .find("## Quick start")
        .expect("a quick start section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    // README wraps lines: compare with single spaces.
    let section = section.split_whitespace().collect::<Vec<_>>().join(" ");
    let profile = format!("{:?}", defaults::PROFILE).to_lowercase();
    for claim in [
        format!(
            "a simulated {profile} of {} machines",
            with_commas(defaults::DEVICES)
        ),
        format!("sending {} events/s", with_commas(defaults::RATE)),
        format!("({} s;", defaults::DURATION_SECS),
        format!("(`http://{}/`", defaults::METRICS_ADDR),
    ] {
        assert!(
            section.contains(&claim),
            "README's quick start does not say {claim:?} (the demo's defaults, src/demo.rs):\n{section}"
        );
    }
    assert_eq!(with_commas(500), "500");
    assert_eq!(with_commas(1_234_567), "1,234,567");
}
