//! Which dead letters a command takes (`--kind`, `--endpoint`, `--since`, `--until`), and the
//! name of the consumer group that records how far a replay with that selection got. Pure.
//!
//! Progress is per selection: the group's committed offset on a partition means "every dead
//! letter before it that this selection takes has been replayed (or found not replayable)". A
//! replay with another selection has not looked at those letters, so it must not start from
//! there: the group's name is derived from the dead-letter topic and everything that selects or
//! directs (`--kind`, `--endpoint`, `--since`, `--until` as written, `--to`). Running the same
//! command again resumes where it stopped and replays nothing twice; a different command starts
//! from the beginning of the topic with a group of its own. A relative time (`--since -1h`) keeps
//! its group across runs while its meaning moves with the clock: the group still holds back what
//! was already replayed.

use crate::core::ErrorKind;
use crate::webhook::dead_letter::origin;

use super::letter::{Letter, What, WEBHOOK_KIND};

/// A selection of dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this kind (an error kind, or `webhook`).
    pub kind: Option<String>,
    /// Only webhook dead letters of this endpoint origin (`scheme://host[:port]`).
    pub endpoint: Option<String>,
    /// Only dead letters written at or after this time (epoch ms).
    pub since_ms: Option<i64>,
    /// Only dead letters written before this time (epoch ms).
    pub until_ms: Option<i64>,
}

impl Filter {
    /// Checks `kind` against the kinds there are and reduces `endpoint` (a URL) to its origin, as
    /// dead letters name endpoints (a path or user info may hold credentials and is not kept).
    pub fn new(
        kind: Option<&str>,
        endpoint: Option<&str>,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Filter, String> {
        if let Some(k) = kind {
            let known = ErrorKind::ALL.iter().any(|e| e.as_str() == k) || k == WEBHOOK_KIND;
            if !known {
                let all: Vec<&str> = ErrorKind::ALL.iter().map(|e| e.as_str()).collect();
                return Err(format!(
                    "--kind {k:?} is not a dead-letter kind: one of {}, {WEBHOOK_KIND}",
                    all.join(", ")
                ));
            }
        }
        let endpoint = endpoint
            .map(|e| {
                url::Url::parse(e)
                    .ok()
                    .filter(|u| u.host().is_some())
                    .map(|u| origin(&u))
                    .ok_or_else(|| format!("--endpoint {e:?} is not an http(s) URL"))
            })
            .transpose()?;
        if let (Some(s), Some(u)) = (since_ms, until_ms) {
            if s >= u {
                return Err("--since must be before --until".into());
            }
        }
        Ok(Filter {
            kind: kind.map(str::to_owned),
            endpoint,
            since_ms,
            until_ms,
        })
    }

    /// Whether the selection takes `letter`, written at `timestamp_ms`.
    pub fn matches(&self, letter: &Letter, timestamp_ms: Option<i64>) -> bool {
        if self.kind.as_ref().is_some_and(|k| *k != letter.kind) {
            return false;
        }
        if let Some(want) = &self.endpoint {
            match &letter.what {
                What::Webhook { origin, .. } if origin == want => {}
                _ => return false,
            }
        }
        let at = |ok: fn(i64, i64) -> bool, bound: Option<i64>| match bound {
            None => true,
            Some(b) => timestamp_ms.is_some_and(|t| ok(t, b)),
        };
        at(|t, s| t >= s, self.since_ms) && at(|t, u| t < u, self.until_ms)
    }
}

/// What a replay command was given, as written: what its progress group is named after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection<'a> {
    pub topic: &'a str,
    pub kind: Option<&'a str>,
    /// The endpoint's origin (as [`Filter::endpoint`]).
    pub endpoint: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub to: Option<&'a str>,
}

/// Prefix of every replay progress group.
pub const GROUP_PREFIX: &str = "aepiot-dead-letters-replay";

impl Selection<'_> {
    /// `aepiot-dead-letters-replay-<topic>-<16 hex digits>`: the hash of everything else, each
    /// part tagged, so no two selections share a name by accident.
    pub fn group_id(&self) -> String {
        let parts = [
            ("kind", self.kind),
            ("endpoint", self.endpoint),
            ("since", self.since.map(str::trim)),
            ("until", self.until.map(str::trim)),
            ("to", self.to),
        ];
        let mut text = String::from(self.topic);
        for (name, value) in parts {
            if let Some(v) = value {
                text.push('\0');
                text.push_str(name);
                text.push('=');
                text.push_str(v);
            }
        }
        let hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        format!("{GROUP_PREFIX}-{}-{hash:016x}", self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(kind: &str, origin: Option<&str>) -> Letter {
        let what = match origin {
            Some(o) => What::Webhook {
                endpoint: 0,
                origin: o.into(),
                webhook_id: "out-0-1".into(),
                attempts: 1,
                body: Ok(Vec::new()),
            },
            None => What::Unknown(String::new()),
        };
        Letter {
            kind: kind.into(),
            what,
        }
    }

    #[test]
    fn kind_endpoint_and_time_each_narrow() {
        let all = Filter::default();
        let l = letter("invalid_field", None);
        assert!(all.matches(&l, None));
        let f = Filter::new(Some("invalid_field"), None, None, None).unwrap();
        assert!(f.matches(&l, None));
        assert!(!f.matches(&letter("too_large", None), None));

        let f = Filter::new(
            None,
            Some("https://user:pw@h.example:8443/secret?x"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(f.endpoint.as_deref(), Some("https://h.example:8443"));
        assert!(f.matches(&letter("webhook", Some("https://h.example:8443")), None));
        assert!(!f.matches(&letter("webhook", Some("https://other")), None));
        assert!(
            !f.matches(&l, None),
            "--endpoint takes webhook dead letters only"
        );

        let f = Filter::new(None, None, Some(100), Some(200)).unwrap();
        assert!(f.matches(&l, Some(100)), "--since is inclusive");
        assert!(f.matches(&l, Some(199)));
        assert!(!f.matches(&l, Some(200)), "--until is exclusive");
        assert!(!f.matches(&l, Some(99)));
        assert!(!f.matches(&l, None), "a time bound needs a timestamp");
    }

    #[test]
    fn mistakes_are_refused_with_what_is_allowed() {
        let e = Filter::new(Some("invalid-field"), None, None, None).unwrap_err();
        assert!(e.contains("invalid_field") && e.contains("webhook"), "{e}");
        assert!(Filter::new(None, Some("not a url"), None, None).is_err());
        assert!(Filter::new(None, None, Some(5), Some(5)).is_err());
        assert!(Filter::new(Some("webhook"), None, None, None).is_ok());
    }

    #[test]
    fn each_selection_has_a_group_of_its_own_and_the_same_one_every_run() {
        let base = Selection {
            topic: "dlq",
            ..Selection::default()
        };
        let g = base.group_id();
        assert!(g.starts_with("aepiot-dead-letters-replay-dlq-"), "{g}");
        assert_eq!(g, base.clone().group_id());
        let variants = [
            Selection {
                kind: Some("invalid_field"),
                ..base.clone()
            },
            Selection {
                endpoint: Some("https://h"),
                ..base.clone()
            },
            Selection {
                since: Some("-1h"),
                ..base.clone()
            },
            Selection {
                until: Some("-1h"),
                ..base.clone()
            },
            Selection {
                to: Some("other"),
                ..base.clone()
            },
            Selection {
                topic: "dlq2",
                ..base.clone()
            },
        ];
        let mut names: Vec<String> = variants.iter().map(Selection::group_id).collect();
        names.push(g);
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "{names:?}");
    }
}
