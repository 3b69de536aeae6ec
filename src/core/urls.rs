//! aéPiot backlink URLs, byte-exact with the seed's `generate_distributed_urls` and
//! `generate_regional_url`.
//!
//! `https://<host>/backlink.html?title=<t>&description=<d>&link=<l>` where each parameter is
//! encoded like Python's `urllib.parse.quote` with its defaults: RFC 3986 unreserved characters and
//! `/` stay as they are, every other byte of the UTF-8 text becomes `%XX` (upper-case hex). Because
//! `&`, `=`, `#`, `?`, `%`, CR and LF are always encoded, no field can add or break a parameter.

use std::ops::Range;

use indexmap::IndexMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::event::Event;
use super::record::needs_escape;

/// Python's `quote(s)` (safe = "/"): everything but `A-Z a-z 0-9 - . _ ~ /` is encoded.
pub const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Appends `text` to `out`, encoded as Python's `quote` would.
pub fn quote_into(out: &mut String, text: &str) {
    utf8_percent_encode(text, QUOTE).for_each(|chunk| out.push_str(chunk));
}

/// How the regional URL's host is picked among its region's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostChoice {
    /// A stable hash of `device_id`: the same device always gets the same host, so output is
    /// reproducible and replays produce identical records.
    #[default]
    Hash,
    /// Uniformly random, as the seed's `random.choice`.
    Random,
}

/// What URLs are built from; validated by the configuration layer.
#[derive(Debug, Clone)]
pub struct UrlSettings {
    /// Hosts of the distributed URLs, in output order.
    pub hosts: Vec<String>,
    /// Region name → candidate hosts of its regional URL; must contain `global`, the fallback.
    pub regions: IndexMap<String, Vec<String>>,
    /// Default `link` target: `<base>/devices/<device_id>` for the distributed URLs, `<base>` for
    /// the regional one (as in the seed).
    pub dashboard_base_url: String,
    pub host_choice: HostChoice,
    /// Hosts an event's `dashboard_url` may name (see [`check_link`]).
    pub link_hosts: LinkHosts,
}

/// The region every unknown region falls back to.
pub const FALLBACK_REGION: &str = "global";

impl Default for UrlSettings {
    fn default() -> Self {
        let hosts = |hs: &[&str]| hs.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        UrlSettings {
            hosts: hosts(&[
                "aepiot.com",
                "aepiot.ro",
                "iot.aepiot.com",
                "604070-5f.aepiot.com",
            ]),
            regions: IndexMap::from([
                (
                    "north_america".to_string(),
                    hosts(&["aepiot.com", "na.aepiot.com"]),
                ),
                ("europe".to_string(), hosts(&["aepiot.ro", "eu.aepiot.com"])),
                ("asia_pacific".to_string(), hosts(&["asia.aepiot.com"])),
                (
                    FALLBACK_REGION.to_string(),
                    hosts(&["aepiot.com", "aepiot.ro"]),
                ),
            ]),
            dashboard_base_url: "https://dashboard.example.com".to_string(),
            host_choice: HostChoice::Hash,
            link_hosts: LinkHosts::default(),
        }
    }
}

/// The URLs of one event, in one reusable buffer (no allocation per URL once warmed up).
#[derive(Debug, Default, Clone)]
pub struct UrlSet {
    buf: String,
    /// Whether the URLs are known to need no JSON escaping (see [`UrlBuilder::new`]).
    json_safe: bool,
    urls: Vec<Range<usize>>,
    regional: Range<usize>,
    /// The encoded query shared by every distributed URL.
    params: String,
    scratch: String,
}

impl UrlSet {
    /// The distributed URLs, one per configured host, in host order.
    pub fn urls(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        self.urls.iter().map(|r| &self.buf[r.clone()])
    }

    /// True when no URL of the set contains a byte JSON would escape, so an encoder can copy
    /// them as they are.
    pub fn json_safe(&self) -> bool {
        self.json_safe
    }

    pub fn regional(&self) -> &str {
        &self.buf[self.regional.clone()]
    }
}

/// Builds URL sets from events.
#[derive(Debug, Clone)]
pub struct UrlBuilder {
    settings: UrlSettings,
    fallback: usize,
    json_safe: bool,
}

impl UrlBuilder {
    pub fn new(settings: UrlSettings) -> Self {
        let fallback = settings.regions.get_index_of(FALLBACK_REGION).unwrap_or(0);
        // Everything else in a URL is a fixed ASCII text or percent-encoded, so the hosts decide
        // whether a URL can ever need JSON escaping (configured hosts are validated names, so
        // they never do; settings built in code are checked here).
        let json_safe = settings
            .hosts
            .iter()
            .chain(settings.regions.values().flatten())
            .all(|h| !needs_escape(h.as_bytes()));
        UrlBuilder {
            settings,
            fallback,
            json_safe,
        }
    }

    pub fn settings(&self) -> &UrlSettings {
        &self.settings
    }

    /// Region name after fallback (the output record's `region`, and its Kafka key).
    pub fn region_name(&self, index: usize) -> &str {
        self.settings
            .regions
            .get_index(index)
            .map(|(k, _)| k.as_str())
            .unwrap_or(FALLBACK_REGION)
    }

    /// Whether the event names a configured region (absent or unknown ones fall back to `global`).
    pub fn region_known(&self, event: &Event<'_>) -> bool {
        event
            .region
            .as_deref()
            .is_some_and(|name| self.settings.regions.contains_key(name))
    }

    /// Resolves the event's region (absent → `global`, unknown → `global`'s hosts) to its index.
    pub fn region_index(&self, event: &Event<'_>) -> usize {
        let name = event.region.as_deref().unwrap_or(FALLBACK_REGION);
        self.settings
            .regions
            .get_index_of(name)
            .unwrap_or(self.fallback)
    }

    /// Fills `set` with the event's distributed and regional URLs.
    pub fn build(&self, event: &Event<'_>, set: &mut UrlSet) {
        let s = &self.settings;
        set.buf.clear();
        set.urls.clear();
        set.json_safe = self.json_safe;
        let device = event.device_id.as_ref();

        // Parameters of the distributed URLs, encoded once and shared by every host.
        let params = &mut set.params;
        params.clear();
        params.push_str("?title=");
        quote_concat(params, &[text(&event.event_type, "Event"), " - ", device]);
        params.push_str("&description=");
        set.scratch.clear();
        describe(&mut set.scratch, event);
        quote_into(params, &set.scratch);
        params.push_str("&link=");
        match &event.dashboard_url {
            Some(url) => quote_into(params, url),
            None => quote_concat(params, &[&s.dashboard_base_url, "/devices/", device]),
        }
        for host in &s.hosts {
            let start = set.buf.len();
            push_prefix(&mut set.buf, host);
            set.buf.push_str(&set.params);
            set.urls.push(start..set.buf.len());
        }

        // The regional URL: its own title, description and link defaults, as in the seed.
        let candidates = &s.regions[self.region_index(event)];
        let host = match (candidates.len(), s.host_choice) {
            (0, _) => "",
            (1, _) => &candidates[0],
            (n, HostChoice::Hash) => &candidates[(stable_hash(device) % n as u64) as usize],
            (n, HostChoice::Random) => &candidates[rand::rng().random_range(0..n)],
        };
        let start = set.buf.len();
        push_prefix(&mut set.buf, host);
        set.buf.push_str("?title=");
        quote_concat(&mut set.buf, &["IoT Event - ", device]);
        set.buf.push_str("&description=");
        quote_concat(
            &mut set.buf,
            &[
                "Region: ",
                text(&event.region, FALLBACK_REGION),
                " | ",
                text(&event.description, "Event data"),
            ],
        );
        set.buf.push_str("&link=");
        quote_into(
            &mut set.buf,
            text(&event.dashboard_url, &s.dashboard_base_url),
        );
        set.regional = start..set.buf.len();
    }
}

/// A stable 64-bit hash of a device id (XXH3), the same across processes, machines and versions.
pub fn stable_hash(device_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(device_id.as_bytes())
}

fn text<'a>(field: &'a Option<std::borrow::Cow<'_, str>>, default: &'a str) -> &'a str {
    field.as_deref().unwrap_or(default)
}

fn push_prefix(out: &mut String, host: &str) {
    out.push_str("https://");
    out.push_str(host);
    out.push_str("/backlink.html");
}

/// Appends the concatenation of `parts`, encoded. `quote` works byte by byte (every byte of a
/// multi-byte character is encoded alike), so encoding each part in turn gives the same text.
fn quote_concat(out: &mut String, parts: &[&str]) {
    parts.iter().for_each(|p| quote_into(out, p));
}

/// The seed's `format_description`: `Location: … | Value: … | Time: …`, or a fixed text.
fn describe(out: &mut String, event: &Event<'_>) {
    let parts = [
        ("Location: ", &event.location),
        ("Value: ", &event.value),
        ("Time: ", &event.timestamp_text),
    ];
    for (label, value) in parts {
        if let Some(v) = value {
            if !out.is_empty() {
                out.push_str(" | ");
            }
            out.push_str(label);
            out.push_str(v);
        }
    }
    if out.is_empty() {
        out.push_str("IoT event notification");
    }
}

/// Hosts a link may name (`urls.allowed_link_hosts`): exact hosts, and `*.example.com` patterns
/// that take any subdomain of `example.com` at any depth (not `example.com` itself: list it too).
/// Empty allows any host. Hosts compare in the URL parser's normal form (lower case, IDNA
/// punycode), so `Grafana.Example.COM` and a homoglyph of it are told apart as a browser would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkHosts {
    exact: Vec<String>,
    /// `.example.com` for `*.example.com`.
    suffixes: Vec<String>,
}

impl LinkHosts {
    /// Compiles the configured patterns; the error says which one is wrong and why.
    pub fn new(patterns: &[String]) -> Result<LinkHosts, String> {
        let mut hosts = LinkHosts::default();
        for p in patterns {
            let (wildcard, name) = match p.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            let normal = url::Host::parse(name)
                .ok()
                .filter(|_| !name.is_empty() && !name.contains('*'))
                .map(|h| h.to_string())
                .ok_or_else(|| {
                    format!(
                        "{p:?} is neither a host name nor a `*.` pattern (e.g. `grafana.example.com`, `*.example.com`; no scheme, port or path)"
                    )
                })?;
            if wildcard {
                hosts.suffixes.push(format!(".{normal}"));
            } else {
                hosts.exact.push(normal);
            }
        }
        Ok(hosts)
    }

    /// True when no host is configured: any host is allowed.
    pub fn is_any(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Whether `host` (as the URL parser normalized it) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        self.is_any()
            || self.exact.iter().any(|h| h == host)
            || self
                .suffixes
                .iter()
                .any(|s| host.len() > s.len() && host.ends_with(s.as_str()))
    }
}

/// Checks that `link` is safe to render as a link: an absolute `http://` or `https://` URL (the
/// scheme in any case) that the URL parser (WHATWG, as browsers) accepts, with a host that
/// `hosts` allows, and neither starting nor ending with whitespace or a control character (which
/// a parser silently strips: ` javascript:…` would otherwise be judged by its trimmed self).
/// Inside the URL, tabs and line breaks are dropped by every WHATWG parser alike, and other bytes
/// are percent-encoded, so they cannot change the scheme or host checked here. The link is never
/// rewritten: what passes is used byte for byte. The error completes "… `dashboard_url` …".
pub fn check_link(link: &str, hosts: &LinkHosts) -> Result<(), String> {
    let bad_edge = |c: Option<char>| c.is_some_and(|c| c.is_whitespace() || c.is_control());
    if link.is_empty() {
        return Err("is empty; expected an absolute http:// or https:// URL".into());
    }
    if bad_edge(link.chars().next()) || bad_edge(link.chars().next_back()) {
        return Err("starts or ends with whitespace or a control character".into());
    }
    let prefix = |p: &str| {
        link.get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    let authority = if prefix("https://") {
        &link[8..]
    } else if prefix("http://") {
        &link[7..]
    } else {
        return Err("is not an absolute URL starting with http:// or https://".into());
    };
    // `https:///host` and `https://\\host` name a host only to a lenient parser.
    if authority.starts_with(['/', '\\']) {
        return Err("has no host after `//`".into());
    }
    let url = url::Url::parse(link).map_err(|e| format!("is not a valid URL ({e})"))?;
    let host = match url.host_str() {
        Some(h) if !h.is_empty() && matches!(url.scheme(), "http" | "https") => h,
        _ => return Err("has no host".into()),
    };
    if !hosts.allows(host) {
        let shown: String = host.chars().take(253).collect();
        return Err(format!(
            "names host `{shown}`, which urls.allowed_link_hosts does not allow"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(p: &[&str]) -> LinkHosts {
        LinkHosts::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_absolute_http_links_with_a_host_pass() {
        let any = LinkHosts::default();
        for ok in [
            "https://grafana.plant3.example/d/abc?var-device=28&from=now-1h",
            "http://10.0.0.7:3000/d",
            "HTTPS://Dash.Example.org",
            "https://[::1]:8443/x",
            "https://dash.example.org/devices/tab\tsep/new\nline/\u{0}/\u{202e}",
            "https://dash.example.org/devices/50% load#frag",
        ] {
            assert_eq!(check_link(ok, &any), Ok(()), "{ok:?}");
        }
        for bad in [
            "javascript:alert(document.cookie)",
            "JaVaScRiPt:alert(1)",
            " https://dash.example.org/",
            "https://dash.example.org/ ",
            "\u{1}https://dash.example.org/",
            "https://dash.example.org/\n",
            "\u{a0}https://x.example/",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "//evil.example/phish",
            "/relative/path",
            "relative",
            "",
            "https:evil.example",
            "https:\\\\evil.example",
            "https:///evil.example",
            "https://\\evil.example",
            "ftp://files.example/",
            "https://",
            "https://exa mple.com/",
            "java\tscript:alert(1)",
            "ht\ttps://evil.example/",
        ] {
            assert!(check_link(bad, &any).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn allowed_hosts_are_exact_or_subdomain_patterns() {
        let h = hosts(&["grafana.example.com", "*.dash.example.org", "10.0.0.7"]);
        for ok in [
            "https://grafana.example.com/d",
            "https://GRAFANA.example.com:8443/d",
            "https://a.dash.example.org/",
            "https://a.b.dash.example.org/",
            "http://10.0.0.7:3000/",
        ] {
            assert_eq!(check_link(ok, &h), Ok(()), "{ok:?}");
        }
        for bad in [
            "https://dash.example.org/",
            "https://evil.example/",
            "https://grafana.example.com.evil.example/",
            "https://xdash.example.org/",
            "https://grafana.example.com@evil.example/",
            "https://evil.example\\@grafana.example.com/",
            "https://grafana.example.com./",
            "https://gr\u{430}fana.example.com/",
        ] {
            let e = check_link(bad, &h).unwrap_err();
            assert!(e.contains("allowed_link_hosts"), "{bad:?}: {e}");
        }
        for wrong in [
            "",
            "*",
            "*.",
            "https://x.example",
            "x.example:80",
            "x.example/p",
            "a.*.b",
        ] {
            assert!(
                LinkHosts::new(&[wrong.to_string()]).is_err(),
                "{wrong:?} accepted"
            );
        }
        assert!(hosts(&[]).is_any());
        assert!(hosts(&["Grafana.EXAMPLE.com"]).allows("grafana.example.com"));
    }
}
