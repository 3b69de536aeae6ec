//! Replay from a point in time.
//!
//! - `aepiot-stream run --start-from T`: a consumer group with no committed offsets starts each
//!   input partition at its first record whose timestamp is at or after `T` (Kafka's offsets for
//!   times). Done by committing those offsets for the group before it joins, so every instance
//!   of the group, started with the flag or not, starts there. A group that has committed
//!   offsets is refused: its position is its own, and moving it is `reset-offsets`' job.
//! - `aepiot-stream reset-offsets --group-id G --to-datetime T`: moves a stopped group's committed
//!   offsets to `T`, as `kafka-consumer-groups.sh --reset-offsets --to-datetime` does, and
//!   refuses while the group has active members (the broker would refuse the commit too).
//!
//! The state changelog is not touched: the replayed events are judged against each device's
//! current state (see [`state_note`]).
//!
//! `T` is RFC 3339 (`2026-11-30T00:00:00Z`) or relative to now (`-2h`, `-90m`, `-1d12h`, `-30s`).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::core::time::{format_rfc3339_ms, parse_rfc3339_ms};
use crate::kafka::client::admin_config;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A point in time to replay from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartFrom {
    /// Epoch milliseconds.
    pub ms: i64,
}

impl StartFrom {
    /// Parses RFC 3339 or `-<n><unit>…` (units `d`, `h`, `m`, `s`) before `now_ms`.
    pub fn parse(text: &str, now_ms: i64) -> Result<StartFrom, String> {
        let text = text.trim();
        let ms = match text.strip_prefix('-') {
            Some(rel) => now_ms - parse_duration_ms(rel).ok_or_else(|| bad(text))?,
            None => parse_rfc3339_ms(text).ok_or_else(|| bad(text))?,
        };
        if ms < 0 {
            return Err(format!("{text:?} is before 1970"));
        }
        Ok(StartFrom { ms })
    }

    /// The time as RFC 3339 (UTC, milliseconds).
    pub fn rfc3339(&self) -> String {
        format_rfc3339_ms(self.ms)
    }
}

fn bad(text: &str) -> String {
    format!(
        "{text:?} is not a time: use RFC 3339 (2026-11-30T00:00:00Z) or a time before now \
         (-2h, -90m, -1d12h, -30s)"
    )
}

/// `2h`, `90m`, `1d12h`, `30s` in milliseconds.
fn parse_duration_ms(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            's' => 1000,
            _ => return None,
        };
        let n: i64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
        any = true;
    }
    (any && number.is_empty()).then_some(total)
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset before, if any.
    pub from: Option<i64>,
    /// The first offset at or after the time (the end of the partition when there is none).
    pub to: i64,
}

/// What happens to the device state when offsets move: printed by `reset-offsets`, logged by
/// `run --start-from`.
pub fn state_note(config: &Config) -> String {
    let changelogs: Vec<String> = literal_topics(config)
        .iter()
        .map(|t| config.changelog_topic(t))
        .collect();
    if !config.state_changelog {
        return "State: state_changelog is off, so an instance starts with empty device state \
                (rate limits and dedupe)."
            .into();
    }
    format!(
        "State: the state changelog ({}) keeps every device's current state (rate-limit windows \
         and dedupe entries as of the last processed event); it is restored as usual and the \
         replayed events are judged against it. A device's clock never moves back, so events \
         older than it are judged at its clock, and many will be cached or rate_limited. To \
         replay from empty state, delete the changelog topic(s) while the group is stopped \
         (kafka-topics.sh --bootstrap-server {} --delete --topic <name>; the processor creates \
         them again), or replay into a new group (run --group-id NEW --start-from T).",
        changelogs.join(", "),
        config.brokers
    )
}

fn literal_topics(config: &Config) -> Vec<String> {
    config
        .input_topics
        .iter()
        .filter(|t| !t.trim().is_empty())
        .cloned()
        .collect()
}

fn named_topics(config: &Config) -> anyhow::Result<Vec<String>> {
    let topics = literal_topics(config);
    if let Some(p) = topics.iter().find(|t| t.starts_with('^')) {
        anyhow::bail!("replay needs named input topics, not a pattern ({p:?})");
    }
    anyhow::ensure!(!topics.is_empty(), "no input topic to replay");
    Ok(topics)
}

/// A client of `config.group_id` that never joins it (offsets are read and committed directly).
fn group_client(config: &Config) -> anyhow::Result<BaseConsumer> {
    let mut c = admin_config(config);
    c.set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c.create()
        .map_err(|e| anyhow::anyhow!("cannot create a Kafka client: {e}"))
}

/// Every partition of `topics`, with the group's committed offset (if any) and the first offset
/// at or after `ms`.
fn plan(consumer: &BaseConsumer, topics: &[String], ms: i64) -> anyhow::Result<Vec<Move>> {
    let mut all = TopicPartitionList::new();
    let mut at = TopicPartitionList::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| anyhow::anyhow!("cannot read the metadata of {topic:?}: {e}"))?;
        let t = md
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| anyhow::anyhow!("input topic {topic:?} does not exist"))?;
        for p in t.partitions() {
            all.add_partition(topic, p.id());
            at.add_partition_offset(topic, p.id(), Offset::Offset(ms))?;
        }
    }
    let committed = consumer
        .committed_offsets(all, TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot read the group's committed offsets: {e}"))?;
    let found = consumer
        .offsets_for_times(at, TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot look up offsets for the time: {e}"))?;
    let mut moves = Vec::new();
    for e in found.elements() {
        let to = match e.offset() {
            Offset::Offset(o) => o,
            // No record at or after the time: the end of the partition.
            _ => {
                consumer
                    .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
                    .map_err(|err| anyhow::anyhow!("cannot read the end offsets: {err}"))?
                    .1
            }
        };
        let from = committed
            .find_partition(e.topic(), e.partition())
            .and_then(|c| match c.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        moves.push(Move {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            from,
            to,
        });
    }
    moves.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(moves)
}

/// Active members of the group, as the broker describes it (0 when it has none or is unknown).
fn active_members(consumer: &BaseConsumer, group: &str) -> anyhow::Result<usize> {
    let groups = consumer
        .fetch_group_list(Some(group), TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot describe group {group:?}: {e}"))?;
    Ok(groups
        .groups()
        .iter()
        .filter(|g| g.name() == group && !matches!(g.state(), "Empty" | "Dead" | ""))
        .map(|g| g.members().len().max(1))
        .sum())
}

fn commit(consumer: &BaseConsumer, group: &str, moves: &[Move]) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for m in moves {
        tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.to))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| match e {
            KafkaError::ConsumerCommit(
                RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::StaleMemberEpoch,
            ) => anyhow::anyhow!(
                "the broker refused to move the offsets of group {group:?}: it has active members \
             (stop every instance of the group first)"
            ),
            e => anyhow::anyhow!("cannot commit the offsets of group {group:?}: {e}"),
        })
}

/// `run --start-from`: the group must have no committed offset; then each partition's start is
/// committed. Blocking work runs off the async workers.
pub async fn start_from(config: &Config, from: &StartFrom) -> anyhow::Result<()> {
    let config = config.clone();
    let from = *from;
    tokio::task::spawn_blocking(move || start_from_blocking(&config, &from)).await?
}

fn start_from_blocking(config: &Config, from: &StartFrom) -> anyhow::Result<()> {
    let topics = named_topics(config)?;
    let consumer = group_client(config)?;
    let moves = plan(&consumer, &topics, from.ms)?;
    let committed: Vec<String> = moves
        .iter()
        .filter_map(|m| {
            m.from
                .map(|o| format!("{}/{} at {o}", m.topic, m.partition))
        })
        .collect();
    if !committed.is_empty() {
        anyhow::bail!(
            "--start-from applies to a consumer group with no committed offsets, and group {:?} \
             has some ({}). To replay it from {}: stop its instances, run `aepiot-stream \
             reset-offsets --group-id {} --to-datetime {}` (same --brokers/--config), then start \
             them without --start-from",
            config.group_id,
            committed.join(", "),
            from.rfc3339(),
            config.group_id,
            from.rfc3339()
        );
    }
    commit(&consumer, &config.group_id, &moves)?;
    for m in &moves {
        tracing::info!(topic = %m.topic, partition = m.partition, offset = m.to, "start from");
    }
    tracing::info!(
        group = %config.group_id,
        from = %from.rfc3339(),
        partitions = moves.len(),
        "replay: each partition starts at its first record at or after the time"
    );
    tracing::info!("{}", state_note(config));
    Ok(())
}

/// What `reset-offsets` prints: the moves made (or, with `dry_run`, that would be), then what
/// happens to the device state.
pub fn describe_moves(config: &Config, to: &StartFrom, dry_run: bool, moves: &[Move]) -> String {
    let verb = if dry_run { "would move" } else { "moved" };
    let mut out = format!(
        "group {:?}: offsets {verb} to the first records at or after {}\n",
        config.group_id,
        to.rfc3339()
    );
    for m in moves {
        let from = m.from.map_or_else(|| "none".to_string(), |o| o.to_string());
        out += &format!("  {}/{}: {from} -> {}\n", m.topic, m.partition, m.to);
    }
    out + &state_note(config)
}

/// `reset-offsets`: moves the stopped group's committed offsets to the first records at or after
/// `ms` (or only computes the moves with `dry_run`). Blocking.
pub fn reset_offsets(
    config: &Config,
    from: &StartFrom,
    dry_run: bool,
) -> anyhow::Result<Vec<Move>> {
    let topics = named_topics(config)?;
    let consumer = group_client(config)?;
    let members = active_members(&consumer, &config.group_id)?;
    if members > 0 {
        anyhow::bail!(
            "group {:?} has {members} active member(s): stop every instance of the group before \
             moving its offsets (kafka-consumer-groups.sh --reset-offsets refuses too)",
            config.group_id
        );
    }
    let moves = plan(&consumer, &topics, from.ms)?;
    if !dry_run {
        commit(&consumer, &config.group_id, &moves)?;
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_relative_times() {
        let now = 1_795_680_000_000;
        assert_eq!(
            StartFrom::parse("2026-11-30T00:00:00Z", now).unwrap().ms,
            parse_rfc3339_ms("2026-11-30T00:00:00Z").unwrap()
        );
        assert_eq!(StartFrom::parse("-2h", now).unwrap().ms, now - 7_200_000);
        assert_eq!(
            StartFrom::parse("-1d12h", now).unwrap().ms,
            now - 129_600_000
        );
        assert_eq!(StartFrom::parse("-90m", now).unwrap().ms, now - 5_400_000);
        assert_eq!(StartFrom::parse("-30s", now).unwrap().ms, now - 30_000);
        for bad in [
            "",
            "-",
            "-2",
            "-h",
            "-2x",
            "yesterday",
            "2026-11-30",
            "-2h5",
        ] {
            assert!(StartFrom::parse(bad, now).is_err(), "{bad:?}");
        }
        assert_eq!(StartFrom { ms: 0 }.rfc3339(), "1970-01-01T00:00:00.000Z");
    }
}
