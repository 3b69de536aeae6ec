//! Links taken from events (`dashboard_url`) and configuration: they end up in `href`s and on
//! public pages, so only absolute `http(s)://` URLs with a host pass, and, when
//! `urls.allowed_link_hosts` is set, only those hosts. A value that could run (`javascript:` and
//! the like) never passes through.

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
