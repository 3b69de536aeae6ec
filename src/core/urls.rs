//! aéPiot backlink URLs, byte-exact with the seed's `generate_distributed_urls` and
//! `generate_regional_url`.
//!
//! `https://<host>/backlink.html?title=<t>&description=<d>&link=<l>` where each parameter is
//! encoded like Python's `urllib.parse.quote` with its defaults: RFC 3986 unreserved characters and
//! `/` stay as they are, every other byte of the UTF-8 text becomes `%XX` (upper-case hex). Because
//! `&`, `=`, `#`, `?`, `%`, CR and LF are always encoded, no field can add or break a parameter.

use std::ops::Range;

use indexmap::IndexMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::event::Event;
// Re-exported: the link rules are configured with the URL settings.
pub use super::links::{check_link, LinkHosts};
use super::record::needs_escape;

/// Python's `quote(s)` (safe = "/"): everything but `A-Z a-z 0-9 - . _ ~ /` is encoded.
pub const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Appends `text` to `out`, encoded as Python's `quote` would.
///
/// The same bytes as `utf8_percent_encode(text, QUOTE)` (the tests compare them), written through
/// a table instead: that iterator hands out each `%XX` as a string of its own, so appending its
/// output costs a `memcpy` call per encoded byte, and descriptions are full of spaces, colons and
/// bars (see BENCHMARKS.md, "What changed, each with its profile and an A/B").
pub fn quote_into(out: &mut String, text: &str) {
    let start = out.len();
    let room = text.len() * 3;
    out.reserve(room);
    // SAFETY: only ASCII bytes are appended (`ENCODED` holds nothing else), so `out` stays UTF-8;
    // `written` counts the initialised bytes past `start`, at most `room`, which is reserved.
    // Each byte writes all three of its table bytes (only `len` of them count), so the loop has
    // no branch; before byte i, `written` <= 3 * i, so the three writes stay within `room`.
    unsafe {
        let bytes = out.as_mut_vec();
        let dst = bytes.as_mut_ptr().add(start);
        let mut written = 0;
        for &b in text.as_bytes() {
            let (code, len) = &ENCODED[b as usize];
            std::ptr::copy_nonoverlapping(code.as_ptr(), dst.add(written), 3);
            written += len;
        }
        bytes.set_len(start + written);
    }
}

/// Each byte's encoding under [`QUOTE`]: the byte itself (length 1) or `%XX` (length 3).
const ENCODED: [([u8; 3], usize); 256] = {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut table = [([0u8; 3], 0usize); 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        let kept = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/');
        table[b] = if kept {
            ([byte, 0, 0], 1)
        } else {
            ([b'%', HEX[b >> 4], HEX[b & 15]], 3)
        };
        b += 1;
    }
    table
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::utf8_percent_encode;

    #[test]
    fn quote_into_matches_the_percent_encoding_crate_on_every_character() {
        let mut all: Vec<char> = (0u8..128).map(char::from).collect();
        all.extend(['é', '€', '😀', '\u{80}', '\u{10FFFF}']);
        for c in all {
            let text = format!("a{c}b{c}{c}");
            let mut ours = String::from("x");
            quote_into(&mut ours, &text);
            let theirs: String = utf8_percent_encode(&text, QUOTE).collect();
            assert_eq!(ours, format!("x{theirs}"), "{c:?}");
        }
        let mut empty = String::new();
        quote_into(&mut empty, "");
        assert_eq!(empty, "");
    }
}
