//! Properties of URL building that must hold for any input: percent-encoding is lossless and
//! closed over a safe alphabet, no field value can add, drop, reorder or corrupt a URL's
//! parameters, and a `dashboard_url` is either a safe link kept byte for byte or a dead letter.

use aepiot_stream::core::event::parse_event;
use aepiot_stream::core::urls::{quote_into, UrlBuilder, UrlSet, UrlSettings};
use aepiot_stream::core::ErrorKind;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Characters that have broken URL builders before, mixed with arbitrary Unicode.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        4 => prop::sample::select(vec![
            '&', '=', '#', '?', '%', '+', ';', ' ', '\r', '\n', '\t', '\0', '\u{7f}', '\u{85}',
            '\u{2028}', '\u{202E}', '\u{202D}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\u{FFFF}',
            '😀', '🚀', '👩', '\u{200D}', 'é', '"', '\\', '/', '~', '-', '.', '_', '\'', '<', '>',
        ]),
        2 => prop::char::range('a', 'z'),
    ]
}

fn hostile_string(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), len).prop_map(|cs| cs.into_iter().collect())
}

/// Python's `urllib.parse.quote(s)` (safe = "/"), written out byte by byte as the oracle.
fn python_quote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn quote_round_trips_over_a_safe_alphabet(s in hostile_string(0..64), prefix in "[a-z&=]{0,4}") {
        let mut out = prefix.clone();
        quote_into(&mut out, &s);
        // Appends, never touching what was there.
        prop_assert!(out.starts_with(&prefix));
        let encoded = &out[prefix.len()..];
        prop_assert!(
            encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b)),
            "unsafe byte in {:?}", encoded
        );
        let decoded: Vec<u8> = percent_decode_str(encoded).collect();
        prop_assert_eq!(decoded, s.as_bytes());
        // Byte-exact with the seed's encoder (upper-case hex, nothing over- or under-encoded).
        prop_assert_eq!(encoded, python_quote(&s));
    }
}

/// A valid RFC 3339 date-time in the range the processor accepts, in varied spellings.
fn rfc3339() -> impl Strategy<Value = String> {
    (
        1971..=9998i32,
        1..=12u32,
        1..=28u32,
        (0..24u32, 0..60u32, 0..60u32),
        prop::option::of("[0-9]{1,9}"),
        prop::sample::select(vec!['T', 't']),
        prop_oneof![
            Just("Z".to_string()),
            Just("z".to_string()),
            (prop::sample::select(vec!['+', '-']), 0..24u32, 0..60u32)
                .prop_map(|(sign, h, m)| format!("{sign}{h:02}:{m:02}")),
        ],
    )
        .prop_map(|(y, mo, d, (h, mi, s), frac, sep, zone)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{zone}")
        })
}

#[derive(Debug, Clone)]
struct Fields {
    device_id: String,
    event_type: Option<String>,
    severity: Option<String>,
    location: Option<String>,
    description: Option<String>,
    dashboard_url: Option<String>,
    region: Option<String>,
    value: Option<String>,
    timestamp: Option<String>,
}

/// A valid link: an absolute http(s) URL with a host, then anything (hostile characters, `?`,
/// `#`, tabs, line breaks) up to a last character that is neither whitespace nor a control.
fn valid_link() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["https", "http", "HTTPS", "hTTp"]),
        prop::sample::select(vec![
            "grafana.plant3.example",
            "dash.example.org",
            "10.0.0.7:3000",
            "[::1]",
            "xn--bcher-kva.example",
        ]),
        hostile_string(0..30),
        prop::sample::select(vec!['x', '/', '~', '😀', '#', '?']),
    )
        .prop_map(|(scheme, host, path, last)| format!("{scheme}://{host}/{path}{last}"))
}

fn fields() -> impl Strategy<Value = Fields> {
    let text = || prop::option::of(hostile_string(0..40));
    let region = prop::option::of(prop_oneof![
        hostile_string(0..20),
        prop::sample::select(vec![
            "north_america",
            "europe",
            "asia_pacific",
            "global",
            "mars"
        ])
        .prop_map(String::from),
    ]);
    (
        // Non-empty, and at most 48 characters of at most 4 bytes: within the 256-byte limit.
        hostile_string(1..48),
        (
            text(),
            text(),
            text(),
            text(),
            prop::option::of(valid_link()),
        ),
        region,
        text(),
        prop::option::of(rfc3339()),
    )
        .prop_map(
            |(
                device_id,
                (event_type, severity, location, description, dashboard_url),
                region,
                value,
                timestamp,
            )| {
                Fields {
                    device_id,
                    event_type,
                    severity,
                    location,
                    description,
                    dashboard_url,
                    region,
                    value,
                    timestamp,
                }
            },
        )
}

impl Fields {
    fn to_json(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("device_id".into(), Value::String(self.device_id.clone()));
        let optional = [
            ("event_type", &self.event_type),
            ("severity", &self.severity),
            ("location", &self.location),
            ("description", &self.description),
            ("dashboard_url", &self.dashboard_url),
            ("region", &self.region),
            ("value", &self.value),
            ("timestamp", &self.timestamp),
        ];
        for (name, v) in optional {
            if let Some(v) = v {
                m.insert(name.into(), Value::String(v.clone()));
            }
        }
        serde_json::to_vec(&Value::Object(m)).unwrap()
    }

    /// The seed's `format_description`.
    fn description_text(&self) -> String {
        let parts: Vec<String> = [
            ("Location", &self.location),
            ("Value", &self.value),
            ("Time", &self.timestamp),
        ]
        .iter()
        .filter_map(|(label, v)| v.as_ref().map(|v| format!("{label}: {v}")))
        .collect();
        if parts.is_empty() {
            "IoT event notification".to_string()
        } else {
            parts.join(" | ")
        }
    }
}

/// Parses one URL and returns its host and decoded (title, description, link).
fn check_url(url: &str) -> Result<(String, [String; 3]), TestCaseError> {
    let parsed = url::Url::parse(url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
    prop_assert_eq!(parsed.scheme(), "https");
    prop_assert_eq!(parsed.path(), "/backlink.html");
    prop_assert_eq!(parsed.fragment(), None);
    // The URL is already in canonical form: a parser changes nothing.
    prop_assert_eq!(parsed.as_str(), url);
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    prop_assert_eq!(names, ["title", "description", "link"], "{}", url);
    let host = parsed.host_str().unwrap_or_default().to_string();
    let [t, d, l] = <[(String, String); 3]>::try_from(pairs).expect("three pairs");
    Ok((host, [t.1, d.1, l.1]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_field_values_give_three_parameter_urls(f in fields()) {
        let settings = UrlSettings::default();
        let builder = UrlBuilder::new(settings.clone());
        let json = f.to_json();
        let event = parse_event(Some(&json), 1 << 20)
            .map_err(|e| TestCaseError::fail(format!("rejected {}: {e:?}", String::from_utf8_lossy(&json))))?;
        let mut set = UrlSet::default();
        builder.build(&event, &mut set);

        let title = format!("{} - {}", f.event_type.as_deref().unwrap_or("Event"), f.device_id);
        let description = f.description_text();
        let link = f.dashboard_url.clone().unwrap_or_else(|| {
            format!("{}/devices/{}", settings.dashboard_base_url, f.device_id)
        });
        let urls: Vec<&str> = set.urls().collect();
        prop_assert_eq!(urls.len(), settings.hosts.len());
        for (url, host) in urls.iter().zip(&settings.hosts) {
            let (got_host, [t, d, l]) = check_url(url)?;
            prop_assert_eq!(&got_host, host);
            prop_assert_eq!(&t, &title);
            prop_assert_eq!(&d, &description);
            prop_assert_eq!(&l, &link);
        }

        let regional = set.regional();
        let (host, [t, d, l]) = check_url(regional)?;
        let region = f.region.as_deref().unwrap_or("global");
        let candidates = settings
            .regions
            .get(region)
            .unwrap_or(&settings.regions["global"]);
        prop_assert!(candidates.contains(&host), "{} not in {:?}", host, candidates);
        prop_assert_eq!(t, format!("IoT Event - {}", f.device_id));
        prop_assert_eq!(
            d,
            format!("Region: {region} | {}", f.description.as_deref().unwrap_or("Event data"))
        );
        prop_assert_eq!(
            l,
            f.dashboard_url.clone().unwrap_or_else(|| settings.dashboard_base_url.clone())
        );
    }
}

/// What a browser would be sent to: the link parsed as the backlink page's visitor's browser
/// would (WHATWG), if it is an absolute http(s) URL with a host.
fn followed(link: &str) -> Option<url::Url> {
    url::Url::parse(link).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text as `dashboard_url`: a dead letter (`invalid_field`, field `dashboard_url`) unless
    /// it is a link to an http(s) host with nothing a parser would silently trim; accepted links
    /// appear byte for byte in every URL.
    #[test]
    fn any_dashboard_url_is_a_safe_link_or_a_dead_letter(
        prefix in prop::sample::select(vec![
            "", "https://", "http://", "HtTpS://", "javascript:", "JaVaScRiPt:", " https://", "\thttps://",
            "\u{0}https://", "data:text/html,", "vbscript:", "//", "/", "https:", "https:/", "https:///",
            "https:\\\\", "ftp://", "\u{feff}https://", "java\tscript:", "https://d.example/",
        ]),
        rest in hostile_string(0..24),
    ) {
        let link = format!("{prefix}{rest}");
        let json = serde_json::to_vec(&serde_json::json!({"device_id": "d", "dashboard_url": link})).unwrap();
        match parse_event(Some(&json), 1 << 20) {
            Err(e) => {
                prop_assert_eq!((e.kind, e.field), (ErrorKind::InvalidField, Some("dashboard_url")), "{:?}", link);
            }
            Ok(event) => {
                prop_assert_eq!(event.dashboard_url.as_deref(), Some(link.as_str()));
                prop_assert!(followed(&link).is_some(), "accepted {:?}", link);
                let lower = link.to_ascii_lowercase();
                prop_assert!(lower.starts_with("http://") || lower.starts_with("https://"), "{:?}", link);
                let edge = |c: Option<char>| c.is_some_and(|c| c.is_whitespace() || c.is_control());
                prop_assert!(!edge(link.chars().next()) && !edge(link.chars().next_back()), "{:?}", link);
                let builder = UrlBuilder::new(UrlSettings::default());
                let mut set = UrlSet::default();
                builder.build(&event, &mut set);
                for url in set.urls().chain([set.regional()]) {
                    let (_, [_, _, l]) = check_url(url)?;
                    prop_assert_eq!(&l, &link);
                }
            }
        }
        // Never a script, a data URL or a host-less link, whatever follows these.
        let never = ["javascript:", "JaVaScRiPt:", "data:text/html,", "vbscript:", "//", "/", "", " https://", "\thttps://", "\u{0}https://", "https:///", "ftp://"];
        if never.contains(&prefix) {
            prop_assert!(parse_event(Some(&json), 1 << 20).is_err(), "{:?}", link);
        }
    }
}
