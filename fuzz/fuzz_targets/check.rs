//! Oracles shared by the fuzz targets.
#![allow(dead_code)]

use aepiot_stream::core::event::Event;
use aepiot_stream::core::urls::{UrlSettings, FALLBACK_REGION};

/// Every URL is `https://<configured host>/backlink.html?title=…&description=…&link=…` with
/// exactly those three parameters, no fragment, no raw control, space or non-ASCII byte.
/// Returns the decoded (title, description, link).
pub fn three_params(u: &str, settings: &UrlSettings) -> (String, String, String) {
    assert!(
        !u.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80),
        "raw control, space or non-ASCII byte in {u:?}"
    );
    let parsed = url::Url::parse(u).unwrap_or_else(|e| panic!("{u:?}: {e}"));
    assert_eq!(parsed.scheme(), "https", "{u}");
    assert_eq!(parsed.path(), "/backlink.html", "{u}");
    assert_eq!(parsed.fragment(), None, "{u}");
    let host = parsed.host_str().expect("host");
    assert!(
        settings
            .hosts
            .iter()
            .chain(settings.regions.values().flatten())
            .any(|h| h == host),
        "unknown host {host} in {u}"
    );
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["title", "description", "link"], "{u}");
    let mut it = pairs.into_iter().map(|(_, v)| v);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

/// The URLs decode back to exactly the event's texts: nothing added, nothing lost.
pub fn urls_match_event<'a>(
    event: &Event<'_>,
    urls: impl Iterator<Item = &'a str>,
    regional: &str,
    settings: &UrlSettings,
) -> usize {
    let device = event.device_id.as_ref();
    let base = settings.dashboard_base_url.as_str();
    let mut n = 0;
    for u in urls {
        let (title, _description, link) = three_params(u, settings);
        let event_type = event.event_type.as_deref().unwrap_or("Event");
        assert_eq!(title, format!("{event_type} - {device}"), "{u}");
        match &event.dashboard_url {
            Some(d) => assert_eq!(&link, d, "{u}"),
            None => assert_eq!(link, format!("{base}/devices/{device}"), "{u}"),
        }
        n += 1;
    }
    assert_eq!(n, settings.hosts.len());
    let (title, description, link) = three_params(regional, settings);
    assert_eq!(title, format!("IoT Event - {device}"));
    assert_eq!(
        description,
        format!(
            "Region: {} | {}",
            event.region.as_deref().unwrap_or(FALLBACK_REGION),
            event.description.as_deref().unwrap_or("Event data")
        )
    );
    assert_eq!(link, event.dashboard_url.as_deref().unwrap_or(base));
    n + 1
}

/// The same guarantee as [`three_params`] by counting: the parameter values are percent-encoded,
/// so `?`, `&`, `=` and `#` appear only where the URL builder put them.
pub fn three_params_cheap(u: &str) {
    let count = |c: u8| u.bytes().filter(|b| *b == c).count();
    assert!(
        u.starts_with("https://") && u.contains("/backlink.html?title="),
        "{u:?}"
    );
    assert_eq!(
        (count(b'?'), count(b'&'), count(b'='), count(b'#')),
        (1, 2, 3, 0),
        "{u:?}"
    );
    assert!(u.contains("&description=") && u.contains("&link="), "{u:?}");
    assert!(
        !u.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80),
        "raw control, space or non-ASCII byte in {u:?}"
    );
}
