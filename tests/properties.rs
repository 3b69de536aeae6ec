//! Properties of URL building that must hold for any input: percent-encoding is lossless and
//! closed over a safe alphabet, and no field value can add, drop, reorder or corrupt a URL's
//! parameters.

use aepiot_stream::core::event::parse_event;
use aepiot_stream::core::urls::{quote_into, UrlBuilder, UrlSet, UrlSettings};
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
        (text(), text(), text(), text(), text()),
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
