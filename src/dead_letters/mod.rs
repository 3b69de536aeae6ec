//! Dead letters after the cause is fixed: `aepiot-stream dead-letters stats` counts what a
//! dead-letter topic holds, `aepiot-stream dead-letters replay` sends the selected ones through
//! again. No instance needs to run; both read the topic up to its end at the start, then stop.
//!
//! - [`letter`] (pure): a dead-letter record read back — its kind, and what replaying it sends
//!   (the event's payload, key and headers; or the webhook body, endpoint and `webhook-id`), or
//!   why it cannot be replayed faithfully.
//! - [`filter`] (pure): the selection (`--kind`, `--endpoint`, `--since`, `--until`) and the
//!   name of the consumer group that records a selection's progress.
//! - [`stats`] (pure): the counts `stats` prints.
//! - [`read`]: the bounded read of the topic, and the progress commit.
//! - [`source`]: the event read again at its source offset, for a dead letter that kept only part
//!   of it.
//! - [`produce`] and [`webhook`]: the two ways of sending again.
//! - [`replay`]: the replay loop — in order, stop at the first failure, commit what was done.

pub mod filter;
pub mod letter;
pub mod produce;
pub mod read;
pub mod replay;
pub mod source;
pub mod stats;
pub mod webhook;

pub use replay::{replay, ReplayOptions, Report};
pub use stats::Stats;

use crate::config::Config;

/// Counts the dead letters of `topic` written at or after `since` (RFC 3339 or before `now_ms`,
/// as `-2h`), from its beginning to its end at the start.
pub async fn stats(
    config: &Config,
    topic: &str,
    since: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<Stats> {
    let filter = filter::Filter::new(
        None,
        None,
        replay::parse_time("--since", since, now_ms)?,
        None,
    )
    .map_err(anyhow::Error::msg)?;
    let (c, t) = (config.clone(), topic.to_owned());
    let mut reader =
        tokio::task::spawn_blocking(move || read::Reader::open(&c, &t, None)).await??;
    let mut stats = Stats::default();
    while let Some(raw) = reader.next().await? {
        let l = letter::read(&raw);
        if filter.matches(&l, raw.timestamp_ms) {
            stats.add(&l, raw.timestamp_ms);
        }
    }
    Ok(stats)
}
