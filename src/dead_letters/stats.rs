//! `dead-letters stats`: what a dead-letter topic holds, counted. Pure; the command feeds it the
//! letters it reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::core::time::format_rfc3339_ms;

use super::letter::{Letter, What};

/// Counts of a dead-letter topic (or of the part `--since` selects).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Webhook dead letters by endpoint (position in `webhooks.endpoints`, origin).
    pub by_endpoint: BTreeMap<(usize, String), u64>,
    /// Dead letters that do not carry all a replay needs (see [`Letter::not_replayable`]): a
    /// replay reads their event at its source offset, if it is still there.
    pub not_replayable: u64,
    /// Timestamps of the oldest and newest, epoch milliseconds.
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

impl Stats {
    pub fn add(&mut self, letter: &Letter, timestamp_ms: Option<i64>) {
        self.total += 1;
        *self.by_kind.entry(letter.kind.clone()).or_default() += 1;
        if let What::Webhook {
            endpoint, origin, ..
        } = &letter.what
        {
            *self
                .by_endpoint
                .entry((*endpoint, origin.clone()))
                .or_default() += 1;
        }
        if letter.not_replayable().is_some() {
            self.not_replayable += 1;
        }
        if let Some(t) = timestamp_ms {
            self.oldest_ms = Some(self.oldest_ms.map_or(t, |o| o.min(t)));
            self.newest_ms = Some(self.newest_ms.map_or(t, |n| n.max(t)));
        }
    }

    /// The report `dead-letters stats` prints: one fact a line, `name: value`.
    pub fn render(&self, topic: &str) -> String {
        let mut out = String::new();
        let time = |t: Option<i64>| t.map_or_else(|| "-".into(), format_rfc3339_ms);
        let _ = writeln!(out, "topic: {topic}");
        let _ = writeln!(out, "dead letters: {}", self.total);
        let _ = writeln!(out, "oldest: {}", time(self.oldest_ms));
        let _ = writeln!(out, "newest: {}", time(self.newest_ms));
        for (kind, n) in &self.by_kind {
            let _ = writeln!(out, "kind {kind}: {n}");
        }
        for ((index, origin), n) in &self.by_endpoint {
            let _ = writeln!(out, "endpoint {index} {origin}: {n}");
        }
        let _ = writeln!(
            out,
            "not replayable from the dead letter alone: {}",
            self.not_replayable
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_endpoint_with_the_time_span() {
        let mut s = Stats::default();
        let input = Letter {
            kind: "invalid_field".into(),
            what: What::Unknown("x".into()),
        };
        let hook = |i: usize, o: &str| Letter {
            kind: "webhook".into(),
            what: What::Webhook {
                endpoint: i,
                origin: o.into(),
                webhook_id: "k".into(),
                attempts: 1,
                body: Ok(Vec::new()),
            },
        };
        s.add(&input, Some(2_000));
        s.add(&hook(0, "http://a"), Some(1_000));
        s.add(&hook(0, "http://a"), None);
        s.add(&hook(1, "http://b"), Some(3_000));
        let text = s.render("dlq");
        assert_eq!(
            text,
            "topic: dlq\ndead letters: 4\noldest: 1970-01-01T00:00:01.000Z\n\
             newest: 1970-01-01T00:00:03.000Z\nkind invalid_field: 1\nkind webhook: 3\n\
             endpoint 0 http://a: 2\nendpoint 1 http://b: 1\n\
             not replayable from the dead letter alone: 1\n"
        );
        assert!(Stats::default().render("t").contains("oldest: -"));
    }
}
