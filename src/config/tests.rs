use super::*;

fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml_text).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load(Some(&path), env, toml::Table::new())
}

#[test]
fn region_topics_from_file_and_environment() {
    let c = load(
        "[output_topics_by_region]\neurope = \"urls-eu\"\n",
        &[("AEPIOT_OUTPUT_TOPICS_BY_REGION__ASIA_PACIFIC", "123")],
    )
    .unwrap();
    let mut topics = c.output_topics();
    assert_eq!(topics.remove(0), "aepiot-urls", "output_topic first");
    topics.sort();
    assert_eq!(
        topics,
        ["123", "urls-eu"],
        "a topic name of digits stays a string"
    );
    let by_region: Vec<_> = c.urls.regions.keys().zip(c.region_topics()).collect();
    assert!(by_region.contains(&(&"europe".to_string(), "urls-eu".to_string())));
    assert!(by_region.contains(&(&"global".to_string(), "aepiot-urls".to_string())));
    let bad = load("[output_topics_by_region]\nmars = \"x\"\n", &[]);
    assert!(bad.unwrap_err().to_string().contains("mars"));
    let strict = load("unknown_region = \"dead_letter\"\n", &[]).unwrap();
    assert!(strict.engine_settings().unknown_region_dead_letter);
}

#[test]
fn a_region_on_another_cluster_with_its_own_security() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("eu-pw");
    std::fs::write(&pw, "eu-file-secret\n").unwrap();
    let text = format!(
        "[output_topics_by_region]\neurope = {{ topic = \"urls-eu\", cluster = \"eu\" }}\n\
         asia_pacific = \"urls-ap\"\n\
         [clusters.eu]\nbrokers = \"eu-1:9093\"\n\
         [clusters.eu.security]\nprotocol = \"sasl_ssl\"\nsasl_username = \"eu-user\"\n\
         sasl_password_file = {pw:?}\n\
         [clusters.eu.kafka]\n\"linger.ms\" = 10\n"
    );
    let c = load(
        &text,
        &[
            (
                "AEPIOT_CLUSTERS__EU__KAFKA__SSL_KEY_PASSWORD",
                "eu-key-secret",
            ),
            ("AEPIOT_OUTPUT_TOPICS_BY_REGION__NORTH_AMERICA", "urls-na"),
        ],
    )
    .unwrap();
    let eu = &c.clusters["eu"];
    assert_eq!(eu.security.sasl_password.expose(), "eu-file-secret");
    assert_eq!(
        eu.kafka.get("ssl.key.password").as_deref(),
        Some("eu-key-secret")
    );
    let routes = c.routes();
    assert_eq!(routes.clusters, ["main", "eu"]);
    assert_eq!(routes.topics_of(1, &c.output_topic), ["urls-eu"]);
    assert!(
        !c.output_topics().contains(&"urls-eu".to_string()),
        "main cluster's only"
    );
    assert!(
        c.output_topics().contains(&"urls-na".to_string()),
        "env: a plain topic"
    );
    let access = c.cluster_access(&routes, 1);
    assert_eq!((access.name.as_str(), access.brokers), ("eu", "eu-1:9093"));
    // config check: shown, secrets redacted, and what it shows loads again.
    let shown = c.to_redacted_toml();
    assert!(
        shown.contains("eu-1:9093") && shown.contains("eu-user"),
        "{shown}"
    );
    assert!(
        !shown.contains("eu-file-secret") && !shown.contains("eu-key-secret"),
        "{shown}"
    );
    let again = load(&shown.replace("[redacted]", "x"), &[]).unwrap();
    assert_eq!(again.output_topics_by_region, c.output_topics_by_region);
    assert_eq!(again.clusters["eu"].brokers, "eu-1:9093");
    assert_eq!(
        again.clusters["eu"].security, eu.security,
        "the password from its file"
    );

    let unknown = "[output_topics_by_region]\neurope = { topic = \"t\", cluster = \"us\" }\n";
    let e = load(unknown, &[]).unwrap_err().to_string();
    assert!(e.contains("cluster \"us\" is not defined"), "{e}");
    let bad_entry = "[output_topics_by_region]\neurope = { topic = \"t\", clutser = \"eu\" }\n";
    let e = load(bad_entry, &[]).unwrap_err().to_string();
    assert!(e.contains("a topic name, or a table"), "{e}");
    let eos = format!("processing_guarantee = \"exactly_once\"\n{text}");
    let e = load(&eos, &[]).unwrap_err().to_string();
    assert!(
        e.contains("a Kafka transaction cannot span clusters"),
        "{e}"
    );
    let no_password = "[clusters.eu]\nbrokers = \"b:1\"\n[clusters.eu.security]\nprotocol = \"sasl_plaintext\"\nsasl_username = \"u\"\n";
    let e = load(no_password, &[]).unwrap_err().to_string();
    assert!(
        e.contains("AEPIOT_CLUSTERS__EU__SECURITY__SASL_PASSWORD"),
        "{e}"
    );
}

#[test]
fn defaults_are_the_seed() {
    let c = load("", &[]).unwrap();
    let e = c.engine_settings();
    assert_eq!(e.limits, Limits::default());
    assert_eq!(e.urls.hosts.len(), 4);
    assert_eq!(e.urls.regions.len(), 4);
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "output_topic = \"from-file\"\ngroup_id = \"g-file\"\n[limits]\ncache_ttl_secs = 60\n",
    )
    .unwrap();
    let env = vec![
        ("AEPIOT_GROUP_ID".to_string(), "g-env".to_string()),
        (
            "AEPIOT_LIMITS__MAX_URLS_PER_DEVICE".to_string(),
            "3".to_string(),
        ),
        ("AEPIOT_INPUT_TOPICS".to_string(), "a, b".to_string()),
        (
            "AEPIOT_KAFKA__SASL_PASSWORD".to_string(),
            "hunter2".to_string(),
        ),
        ("OTHER".to_string(), "x".to_string()),
    ];
    let mut flags = toml::Table::new();
    flags.insert("group_id".into(), "g-flag".into());
    let c = Config::load(Some(&path), env, flags).unwrap();
    assert_eq!(c.output_topic, "from-file");
    assert_eq!(c.group_id, "g-flag");
    assert_eq!(c.limits.cache_ttl_secs, 60);
    assert_eq!(c.limits.max_urls_per_device, 3);
    assert_eq!(c.input_topics, vec!["a", "b"]);
    let shown = c.to_redacted_toml();
    assert!(shown.contains("[redacted]"));
    assert!(!shown.contains("hunter2"));
}

#[test]
fn foreign_environment_variables_are_ignored() {
    let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    // What Kubernetes injects for a Service named `aepiot-stream`.
    assert!(load(
        "",
        &[
            ("AEPIOT_STREAM_SERVICE_HOST", "10.0.0.1"),
            ("AEPIOT_STREAM_PORT", "tcp://x")
        ]
    )
    .is_ok());
    assert!(Config::load(None, env("AEPIOT_LIMITS__TYPO", "1"), toml::Table::new()).is_err());
    let c = Config::load(None, env("AEPIOT_OUTPUT_TOPIC", "o"), toml::Table::new()).unwrap();
    assert_eq!(c.output_topic, "o");
}

#[test]
fn rejects_unknown_keys_and_impossible_values() {
    assert!(
        matches!(load("outptu_topic = \"x\"", &[]), Err(ConfigError::Invalid(m)) if m.contains("outptu_topic"))
    );
    assert!(load("[urls]\nhosts = []", &[]).is_err());
    assert!(load("[urls.regions]\neurope = [\"eu.aepiot.com\"]", &[]).is_err());
    assert!(load("[urls]\nhosts = [\"a.example:8443\"]", &[]).is_ok());
    assert!(load("[urls]\nhosts = [\"evil.com/x?y=\"]", &[]).is_err());
    assert!(load("[urls]\ndashboard_base_url = \"not a url\"", &[]).is_err());
    assert!(load("[limits]\nwindow_secs = 0", &[]).is_err());
    assert!(matches!(load("x = ", &[]), Err(ConfigError::Toml { .. })));
}

/// Every secret-bearing key: the `[security]` passwords and librdkafka's secret properties.
const SECRET_KEYS: [(&str, &str); 6] = [
    ("security", "sasl_password"),
    ("security", "ssl_key_password"),
    ("kafka", "sasl.password"),
    ("kafka", "ssl.key.password"),
    ("kafka", "ssl.keystore.password"),
    ("kafka", "sasl.oauthbearer.client.secret"),
];

fn env_name(section: &str, key: &str) -> String {
    format!("AEPIOT_{}__{}", section, key.replace('.', "_")).to_ascii_uppercase()
}

fn shown(r: &Result<Config, ConfigError>) -> String {
    match r {
        Ok(c) => c.to_redacted_toml(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn secret_values_from_the_environment_are_strings_and_never_shown() {
    for (section, key) in SECRET_KEYS {
        for value in ["123456", "true", "false", "-7", "1.5", "hunter2"] {
            let c = load("", &[(&env_name(section, key), value)]).unwrap_or_else(|e| {
                panic!("{section}.{key} = {value}: {e}");
            });
            let got = match section {
                "security" if key == "sasl_password" => {
                    c.security.sasl_password.expose().to_string()
                }
                "security" => c.security.ssl_key_password.expose().to_string(),
                _ => c.kafka.get(key).unwrap(),
            };
            assert_eq!(got, value, "{section}.{key}");
            let text = c.to_redacted_toml();
            assert!(
                !text.contains(&format!("\"{value}\"")),
                "{section}.{key}: {text}"
            );
        }
    }
}

#[test]
fn secret_values_in_a_file_never_appear_in_errors() {
    for (section, key) in SECRET_KEYS {
        let key_toml = if section == "kafka" {
            format!("\"{key}\"")
        } else {
            key.to_string()
        };
        for value in [
            "123456",
            "987654.25",
            "true",
            "[\"hunter2\"]",
            "{ x = \"hunter2\" }",
            "1979-05-27T07:32:00Z",
        ] {
            let r = load(&format!("[{section}]\n{key_toml} = {value}\n"), &[]);
            let text = shown(&r);
            for secret in ["123456", "987654", "hunter2", "1979"] {
                assert!(!text.contains(secret), "{section}.{key} = {value}: {text}");
            }
            // (An unquoted TOML date arrives as its text, a string: nothing to refuse.)
            if section == "security" && !value.starts_with("1979") {
                assert!(
                    matches!(&r, Err(ConfigError::Invalid(m))
                        if m.contains("the value is not shown") && m.contains(key)),
                    "{section}.{key} = {value}: {text}"
                );
            }
        }
        // Broken TOML around the secret: the parser's message and position only.
        for broken in [
            format!("[{section}]\n{key_toml} = \"hunter2\n"),
            format!("[{section}]\n{key_toml} = hunter2\n"),
            format!("[{section}]\n{key_toml} = 'hunter2\n"),
            format!("[{section}]\n{key_toml} = \"hunter2\" \"hunter2\"\n"),
            format!("[{section}]\n{key_toml} = \"\"\"hunter2\n"),
            format!("[{section}]\n{key_toml} = \"hunter2\"\n{key_toml} = \"hunter2\"\n"),
            format!("[{section}\n{key_toml} = \"hunter2\"\n"),
            format!("[{section}]\n{key_toml} = \"hunter2\\q\"\n"),
            format!("[{section}]\n{key_toml} = hunter2\"\n"),
            format!("[{section}]\n{key_toml} = [\"hunter2\",\n"),
            format!("[{section}]\n{key_toml} = 0xhunter2\n"),
        ] {
            let r = load(&broken, &[]);
            let text = shown(&r);
            assert!(
                matches!(r, Err(ConfigError::Toml { .. })),
                "{broken:?}: {text}"
            );
            assert!(
                !text.contains("hunter2") && !text.contains("hunt"),
                "{broken:?}: {text}"
            );
            assert!(text.contains("line "), "{text}");
        }
    }
    // The position is right.
    let e = load("a = 1\nbrokers = \"x\n", &[]).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn config_check_shows_webhook_urls_without_path_query_or_credentials() {
    for (url, want) in [
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXXtoken",
            "https://hooks.slack.com:443/[redacted]",
        ),
        (
            "https://h.example:8443/hook?token=s3cr3t",
            "https://h.example:8443/[redacted]",
        ),
        (
            "https://u:pw@h.example/",
            "https://h.example:443/[redacted]",
        ),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ("http://h.example#frag", "http://h.example:80/[redacted]"),
    ] {
        let c = load(&format!("[[webhooks.endpoints]]\nurl = {url:?}\n"), &[]).unwrap();
        let text = c.to_redacted_toml();
        assert!(text.contains(&format!("url = {want:?}")), "{url}: {text}");
        for secret in ["services", "T000", "token", "s3cr3t", "pw", "frag"] {
            assert!(!text.contains(secret), "{url}: {text}");
        }
        // What it shows loads again.
        load(&text, &[]).unwrap();
    }
}

#[test]
fn link_hosts_and_the_dashboard_base_url_are_checked_at_start() {
    let c = load(
        "[urls]\nallowed_link_hosts = [\"*.example.com\", \"grafana.plant.example\"]\ndashboard_base_url = \"https://dash.example.com\"",
        &[],
    )
    .unwrap();
    let hosts = c.engine_settings().urls.link_hosts;
    assert!(hosts.allows("a.example.com") && hosts.allows("grafana.plant.example"));
    assert!(!hosts.allows("example.com") && !hosts.allows("evil.example"));
    let env = load(
        "",
        &[
            ("AEPIOT_URLS__ALLOWED_LINK_HOSTS", "a.example, *.b.example"),
            ("AEPIOT_URLS__DASHBOARD_BASE_URL", "https://x.b.example"),
        ],
    )
    .unwrap();
    assert_eq!(
        env.urls.allowed_link_hosts,
        vec!["a.example", "*.b.example"]
    );
    for (toml_text, says) in [
        (
            "[urls]\ndashboard_base_url = \"javascript:alert(1)\"",
            "http",
        ),
        (
            "[urls]\ndashboard_base_url = \" https://dash.example.com\"",
            "whitespace",
        ),
        (
            "[urls]\ndashboard_base_url = \"//dash.example.com\"",
            "http",
        ),
        (
            "[urls]\ndashboard_base_url = \"https://\"",
            "dashboard_base_url",
        ),
        (
            "[urls]\nallowed_link_hosts = [\"https://x.example/\"]",
            "allowed_link_hosts",
        ),
        (
            "[urls]\nallowed_link_hosts = [\"x.example\"]",
            "allowed_link_hosts does not allow",
        ),
    ] {
        let e = load(toml_text, &[]).unwrap_err().to_string();
        assert!(e.contains(says), "{toml_text}: {e}");
    }
}

#[test]
fn webhooks_section() {
    let c = load(
        "[webhooks]\ntimeout_ms = 250\n[[webhooks.endpoints]]\nurl = \"https://u:hunter2@hooks.example/x\"\nregions = [\"europe\"]\nsecret_env = \"HOOK_SECRET\"\n[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:8080/\"\n",
        &[("AEPIOT_WEBHOOKS__MAX_ATTEMPTS", "3")],
    )
    .unwrap();
    let w = &c.webhooks;
    assert_eq!((w.timeout_ms, w.max_attempts, w.concurrency), (250, 3, 16));
    assert_eq!(w.endpoints.len(), 2);
    assert_eq!(w.endpoints[0].regions, vec!["europe"]);
    assert_eq!(w.endpoints[1].secret_env, None);
    assert_eq!(c.webhooks_group_id(), "aepiot-stream-webhooks");
    c.validate_for_webhooks().unwrap();
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("secret_env = \"HOOK_SECRET\""));
    // The redacted TOML loads again.
    load(&shown, &[]).unwrap();

    let ep = "[[webhooks.endpoints]]\nurl = \"https://h.example/\"\n";
    assert!(load(&format!("{ep}regions = [\"mars\"]"), &[]).is_err());
    assert!(load(
        &format!("{ep}secret_env = \"A\"\nsecret_file = \"/b\""),
        &[]
    )
    .is_err());
    assert!(load(&format!("{ep}colour = 1"), &[]).is_err());
    assert!(load("[[webhooks.endpoints]]\nurl = \"ftp://h.example/\"", &[]).is_err());
    assert!(load("[[webhooks.endpoints]]\nregions = []", &[]).is_err());
    assert!(load("[webhooks]\nconcurrency = 0", &[]).is_err());
    assert!(load("[webhooks]\nmax_attempts = 0", &[]).is_err());
    assert!(load("[webhooks]\nbackoff_base_ms = 10\nbackoff_max_ms = 5", &[]).is_err());
    // `run` alone never needs endpoints; the webhook service does.
    assert!(load("", &[]).unwrap().validate_for_webhooks().is_err());
    let same_group = load(
        &format!("[webhooks]\ngroup_id = \"aepiot-stream\"\n{ep}"),
        &[],
    )
    .unwrap();
    assert!(same_group.validate_for_webhooks().is_err());
}

#[test]
fn webhook_endpoints_have_names_and_groups_of_their_own() {
    let c = load(
        "[webhooks]\ndown_after_failures = 2\noutage_max_secs = 600\n[[webhooks.endpoints]]\nurl = \"https://h.example/a?token=s3cret\"\n[[webhooks.endpoints]]\nname = \"crm\"\nurl = \"https://h.example/b\"\n",
        &[],
    )
    .unwrap();
    let w = &c.webhooks;
    assert_eq!((w.down_after_failures, w.outage_max_secs), (2, 600));
    assert_eq!(
        c.webhook_endpoint_group(&w.endpoints[1]),
        "aepiot-stream-webhooks-crm"
    );
    // Unnamed: a short hash of the URL, never the URL (it may carry a secret), and the same
    // wherever the endpoint stands in the list.
    let unnamed = w.endpoints[0].name();
    assert!(
        unnamed.starts_with("ep-") && unnamed.len() == 11,
        "{unnamed}"
    );
    assert!(!unnamed.contains("s3cret"));
    let moved = load(
        "[[webhooks.endpoints]]\nurl = \"https://h.example/b\"\nname = \"crm\"\n[[webhooks.endpoints]]\nurl = \"https://h.example/a?token=s3cret\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(moved.webhooks.endpoints[1].name(), unnamed);
    assert_eq!(WebhooksConfig::default().down_after_failures, 3);
    assert_eq!(WebhooksConfig::default().outage_max_secs, 86_400);

    let ep = "[[webhooks.endpoints]]\nurl = \"https://h.example/\"\n";
    for bad in ["name = \"\"", "name = \"a b\"", "name = \"a/b\""] {
        assert!(load(&format!("{ep}{bad}"), &[]).is_err(), "{bad}");
    }
    // Two endpoints of one name (or one URL, unnamed) would share a position.
    assert!(load(&format!("{ep}{ep}"), &[]).is_err());
    assert!(load(&format!("{ep}name = \"x\"\n{ep}name = \"x\"\n"), &[]).is_err());
    assert!(load(&format!("{ep}name = \"x\"\n{ep}name = \"y\"\n"), &[]).is_ok());
    assert!(load("[webhooks]\ndown_after_failures = 0", &[]).is_err());
    assert!(load("[webhooks]\nmax_attempts = 3\ndown_after_failures = 4", &[]).is_err());
    assert!(load("[webhooks]\noutage_max_secs = 0", &[]).is_err());
}

#[test]
fn the_schema_registry_from_file_environment_and_flags_with_its_password_redacted() {
    let c = load(
        "[schema_registry]\nurl = \"http://registry:8081\"\nusername = \"svc\"\n",
        &[
            ("AEPIOT_SCHEMA_REGISTRY__PASSWORD", "123456"),
            ("AEPIOT_SCHEMA_REGISTRY__RETRY_BACKOFF_MAX_MS", "2000"),
        ],
    )
    .unwrap();
    assert_eq!(c.schema_registry.password.expose(), "123456");
    assert_eq!(c.schema_registry.retry_backoff_max_ms, 2000);
    let shown = c.to_redacted_toml();
    assert!(shown.contains("[schema_registry]"), "{shown}");
    assert!(!shown.contains("123456"), "{shown}");
    let mut flags = toml::Table::new();
    let mut registry = toml::Table::new();
    registry.insert("url".into(), "https://flag:8081".into());
    flags.insert("schema_registry".into(), registry.into());
    let c = Config::load(None, Vec::new(), flags).unwrap();
    assert_eq!(c.schema_registry.url, "https://flag:8081");
    let e = load("[schema_registry]\nurl = \"registry\"\n", &[]).unwrap_err();
    assert!(e.to_string().contains("schema_registry.url"), "{e}");
}
