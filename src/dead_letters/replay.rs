//! `dead-letters replay`: reads the selected dead letters of a topic, from where the selection's
//! group stopped to the topic's end at the start, and sends each again (processor dead letters
//! with [`super::produce`], webhook dead letters with [`super::webhook`]), one after the other in
//! each partition's order.
//!
//! A processor dead letter that kept only part of its event (or carries the refused URL record)
//! is replayed from the event itself, read again at its source offset ([`super::source`]) while
//! the input topic still holds it.
//!
//! What is committed and where a run stops is docs/delivery.md's rule 27: offsets move past a
//! dead letter once it is replayed, not selected or not replayable; the first failed send stops
//! the run there, and the same command resumes at it. `--dry-run` commits nothing.

use std::collections::BTreeMap;
use std::io::Write;

use crate::config::Config;
use crate::replay::StartFrom;

use super::filter::{Filter, Selection};
use super::letter::{self, What};
use super::produce::Producer;
use super::read::Reader;
use super::source::Sources;
use super::webhook::Endpoints;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub topic: String,
    pub kind: Option<String>,
    /// An endpoint URL: only webhook dead letters of its origin.
    pub endpoint: Option<String>,
    /// RFC 3339 or before now (`-2h`): dead letters written at or after it.
    pub since: Option<String>,
    /// As `since`: dead letters written before it.
    pub until: Option<String>,
    /// Processor dead letters go to this topic instead of their source topic.
    pub to: Option<String>,
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The group that records how far replays of this selection got.
    pub group: String,
    /// Replayed (or, with `--dry-run`, that would be).
    pub replayed: u64,
    pub not_replayable: u64,
    /// Read but not taken by the selection.
    pub not_selected: u64,
}

/// A time flag, parsed against `now_ms`.
pub fn parse_time(flag: &str, text: Option<&str>, now_ms: i64) -> anyhow::Result<Option<i64>> {
    text.map(|t| StartFrom::parse(t, now_ms).map(|s| s.ms))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// The ways of sending again, and of reading an event at its source.
struct Senders {
    producer: Producer,
    endpoints: Endpoints,
    sources: Sources,
}

/// What became of one selected dead letter.
enum Step {
    /// Sent (or, in a dry run, would be): where to.
    Done(String),
    /// Cannot be replayed faithfully: why.
    NotReplayable(String),
    /// Sending failed: the replay stops here.
    Failed(String),
}

/// The selection's filter and progress group.
fn selection(o: &ReplayOptions, now_ms: i64) -> anyhow::Result<(Filter, String)> {
    let filter = Filter::new(
        o.kind.as_deref(),
        o.endpoint.as_deref(),
        parse_time("--since", o.since.as_deref(), now_ms)?,
        parse_time("--until", o.until.as_deref(), now_ms)?,
    )
    .map_err(anyhow::Error::msg)?;
    let group = Selection {
        topic: &o.topic,
        kind: o.kind.as_deref(),
        endpoint: filter.endpoint.as_deref(),
        since: o.since.as_deref(),
        until: o.until.as_deref(),
        to: o.to.as_deref(),
    }
    .group_id();
    Ok((filter, group))
}

/// Runs a replay, printing a line per dead letter it looks at (not the unselected ones) and a
/// summary to `out`. A replay that stops at a failure is an error, after its progress is
/// committed.
pub async fn replay(
    config: &Config,
    o: &ReplayOptions,
    now_ms: i64,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    let (filter, group) = selection(o, now_ms)?;
    let mut report = Report {
        group: group.clone(),
        ..Report::default()
    };
    writeln!(out, "progress group: {group}")?;
    let senders = Senders {
        producer: Producer::new(config)?,
        endpoints: Endpoints::new(config)?,
        sources: Sources::new(config)?,
    };
    let (c, t, g) = (config.clone(), o.topic.clone(), group.clone());
    let mut reader = tokio::task::spawn_blocking(move || Reader::open(&c, &t, Some(&g))).await??;
    let verb = if o.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    let mut next = BTreeMap::new();
    let mut stopped = None;
    while let Some(raw) = reader.next().await? {
        let l = letter::read(&raw);
        if !filter.matches(&l, raw.timestamp_ms) {
            report.not_selected += 1;
        } else {
            let id = raw.id();
            match step(&senders, o, &id, l.what).await {
                Step::Done(to) => {
                    writeln!(out, "{verb} {id} ({}) {to}", l.kind)?;
                    report.replayed += 1;
                }
                Step::NotReplayable(why) => {
                    writeln!(out, "not replayable {id} ({}): {why}", l.kind)?;
                    report.not_replayable += 1;
                }
                Step::Failed(e) => {
                    stopped = Some(format!("{id} ({}): {e}", l.kind));
                    break;
                }
            }
        }
        next.insert(raw.partition, raw.offset + 1);
    }
    if !o.dry_run {
        reader.commit(&next).await?;
    }
    writeln!(
        out,
        "{verb}: {}, not replayable: {}, not selected: {}",
        report.replayed, report.not_replayable, report.not_selected
    )?;
    if let Some(at) = stopped {
        anyhow::bail!(
            "replay stopped at dead letter {at}. The {} dead letter(s) before it are done and \
             recorded in group {group:?}; run the same command again once the cause is fixed: it \
             resumes at this dead letter",
            report.replayed
        );
    }
    Ok(report)
}

/// Replays one selected dead letter (`id`), or says why not.
async fn step(s: &Senders, o: &ReplayOptions, id: &str, what: What) -> Step {
    match what {
        What::Input { source, original } => {
            let Some(topic) =
                o.to.as_deref()
                    .or(source.as_ref().map(|s| s.topic.as_str()))
            else {
                return Step::NotReplayable("it names no source topic (give --to)".into());
            };
            let (original, note) = match (original, &source) {
                (Ok(original), _) => (original, ""),
                // The dead letter alone is not the whole event: its source still may be.
                (Err(why), Some(at)) => match s.sources.fetch(at).await {
                    Ok(original) => (original, " (read from its source)"),
                    Err(gone) => return Step::NotReplayable(format!("{why}, and {gone}")),
                },
                (Err(why), None) => return Step::NotReplayable(why),
            };
            if o.dry_run {
                return Step::Done(format!("-> {topic}{note}"));
            }
            match s.producer.send(topic, &original, id).await {
                Ok((p, off)) => Step::Done(format!("-> {topic}-{p}-{off}{note}")),
                Err(e) => Step::Failed(e),
            }
        }
        What::Webhook {
            endpoint,
            origin,
            webhook_id,
            attempts,
            body,
        } => {
            let body = match body {
                Ok(body) => body,
                Err(why) => return Step::NotReplayable(why),
            };
            let to = format!("-> endpoint {endpoint} {origin} webhook-id {webhook_id}");
            if o.dry_run {
                return Step::Done(to);
            }
            match s
                .endpoints
                .deliver(endpoint, &origin, &webhook_id, &body, attempts + 1)
                .await
            {
                Ok(()) => Step::Done(to),
                Err(e) => Step::Failed(e),
            }
        }
        What::Unknown(why) => Step::NotReplayable(why),
    }
}
