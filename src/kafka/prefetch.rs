//! The input consumer's prefetch: one budget for the whole instance
//! (`input.prefetch_budget_bytes`), shared by the partitions it may own.
//!
//! librdkafka bounds prefetched records per queue (`queued.max.messages.kbytes`, and a fetch may
//! overshoot it by `fetch.message.max.bytes`), and the pipeline gives every partition a queue of
//! its own ([`super::split`]), so the bounds apply per partition: a constant per partition grows
//! with the partitions an instance owns (4 MB each was 4.8 GB at 1,200 partitions). librdkafka
//! reads both once, when the client is created, and has no call that changes them afterwards, so
//! the shares cannot follow each assignment. Instead every partition gets an equal share of the
//! budget over the partitions of the input topics at start: the most one instance can own (it is
//! alone in the group), so the prefetch of any assignment stays within the budget. With several
//! instances each uses a part of its budget; per partition it has the same room as alone.
//!
//! Two things the shares cannot cover, both said where they happen: a fetch returns whole record
//! batches, so a partition may hold one producer batch more than its share (the producer's
//! `batch.size`, decompressed); and partitions that appear after start (a topic given more
//! partitions, a new topic matching a pattern) get the same share, so an instance that owns more
//! than the partitions counted at start may go over the budget (warned at that assignment; a
//! restart recomputes the shares).

use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;

/// Most bytes one fetch asks of a partition (librdkafka's default `fetch.message.max.bytes`):
/// a larger share goes to the queue.
const MAX_FETCH_BYTES: usize = 1 << 20;

/// Least bytes per partition: librdkafka's smallest queue bound (1 kbyte) and a fetch of 1 KiB
/// (it grows by itself for a larger record). A budget too small for the partitions is stretched
/// to this, and said so at start.
pub const MIN_SHARE_BYTES: usize = 2 << 10;

/// One partition's part of the budget, as librdkafka's two settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// `queued.max.messages.kbytes` (librdkafka's kbytes are 1,000 bytes).
    pub queued_kbytes: usize,
    /// `fetch.message.max.bytes`: how much a fetch asks for, the queue's possible overshoot.
    pub fetch_bytes: usize,
}

impl Share {
    /// `budget` shared by `partitions`: per partition, the queue bound plus one fetch fit the
    /// share (or [`MIN_SHARE_BYTES`] when the budget is too small for that many).
    pub fn of(budget: usize, partitions: usize) -> Share {
        let share = (budget / partitions.max(1)).max(MIN_SHARE_BYTES);
        let fetch_bytes = (share / 2).min(MAX_FETCH_BYTES);
        Share {
            queued_kbytes: ((share - fetch_bytes) / 1000).max(1),
            fetch_bytes,
        }
    }

    /// The most one partition's queue holds by these settings (one producer batch aside).
    pub fn bytes(&self) -> usize {
        self.queued_kbytes * 1000 + self.fetch_bytes
    }

    /// Sets the share on a consumer's settings.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("queued.max.messages.kbytes", self.queued_kbytes.to_string())
            .set("fetch.message.max.bytes", self.fetch_bytes.to_string());
    }
}

/// Partitions of the input topics in `metadata`: those named, and every topic a `^` pattern
/// matches (Kafka's internal topics aside). A pattern that does not compile counts nothing here;
/// the consumer's subscription reports it.
pub fn input_partitions(metadata: &Metadata, input_topics: &[String]) -> usize {
    let patterns: Vec<regex::Regex> = input_topics
        .iter()
        .filter(|t| t.starts_with('^'))
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect();
    metadata
        .topics()
        .iter()
        .filter(|t| {
            input_topics.iter().any(|n| n == t.name())
                || (!t.name().starts_with("__") && patterns.iter().any(|p| p.is_match(t.name())))
        })
        .map(|t| t.partitions().len())
        .sum()
}

/// The partitions of the input topics, asked of the brokers with the admin client's settings
/// (blocking). At least 1, so that a share is defined even before a pattern matches anything.
pub fn count_input_partitions(
    admin: &ClientConfig,
    input_topics: &[String],
) -> anyhow::Result<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = admin.create().map_err(|e| {
        anyhow::anyhow!("cannot create a client to count the input partitions: {e}")
    })?;
    let timeout = std::time::Duration::from_secs(30);
    let named: Vec<&String> = input_topics.iter().filter(|t| !t.is_empty()).collect();
    let metadata = if named.len() == 1 && !named[0].starts_with('^') {
        client.fetch_metadata(Some(named[0]), timeout)
    } else {
        client.fetch_metadata(None, timeout)
    }
    .map_err(|e| anyhow::anyhow!("cannot read the input topics' partitions: {e}"))?;
    Ok(input_partitions(&metadata, input_topics).max(1))
}

/// [`count_input_partitions`] for the input consumer of `config` (asked with the `admin` client
/// settings), off the async threads; logs the share each partition gets.
pub async fn input_share(
    config: &crate::config::Config,
    admin: ClientConfig,
) -> anyhow::Result<(usize, Share)> {
    let topics = config.input_topics.clone();
    let partitions =
        tokio::task::spawn_blocking(move || count_input_partitions(&admin, &topics)).await??;
    let budget = config.input.prefetch_budget_bytes;
    let share = Share::of(budget, partitions);
    if share.bytes() * partitions > budget {
        tracing::warn!(budget, partitions, share = share.bytes(), "input.prefetch_budget_bytes is too small for the input's partitions: each gets the least share, and the prefetch may reach partitions x share");
    } else {
        tracing::info!(
            budget,
            partitions,
            share = share.bytes(),
            "input prefetch: the budget shared by the input's partitions"
        );
    }
    Ok((partitions, share))
}

/// Bytes prefetched and not yet read, over every partition queue in librdkafka's `statistics`.
pub fn queued_bytes(statistics: &rdkafka::Statistics) -> i64 {
    statistics
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .map(|p| p.fetchq_size as i64)
        .sum()
}

/// The partitions the budget was shared by, for the consumer's assignments to be checked against.
#[derive(Debug)]
pub struct PrefetchShared {
    partitions: usize,
    said: std::sync::atomic::AtomicBool,
}

impl PrefetchShared {
    pub fn new(partitions: usize) -> Self {
        PrefetchShared {
            partitions,
            said: Default::default(),
        }
    }

    /// The instance now owns `assigned` partitions: more than were shared by may exceed the
    /// budget, which is said once.
    pub fn assigned(&self, assigned: usize) {
        if assigned > self.partitions && !self.said.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                assigned,
                counted_at_start = self.partitions,
                "more input partitions assigned than the input topics had at start: the prefetch may exceed input.prefetch_budget_bytes until a restart shares it again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_gets_an_equal_share_that_the_queue_and_one_fetch_fit() {
        let budget = 64 << 20;
        for partitions in [1, 12, 120, 1_200] {
            let s = Share::of(budget, partitions);
            assert!(s.bytes() * partitions <= budget, "{partitions}: {s:?}");
            // Most of the share is used: not a bound far below the budget.
            assert!(
                s.bytes() * partitions >= budget * 9 / 10,
                "{partitions}: {s:?}"
            );
            assert!(s.fetch_bytes <= MAX_FETCH_BYTES);
        }
        // 12 partitions: about what each had before the budget (4 MB queue, 1 MiB fetches).
        assert_eq!(
            Share::of(budget, 12),
            Share {
                queued_kbytes: 4543,
                fetch_bytes: 1 << 20
            }
        );
    }

    #[test]
    fn a_budget_too_small_for_the_partitions_stops_at_the_least_share() {
        let s = Share::of(1 << 20, 10_000);
        assert_eq!(s.queued_kbytes, 1);
        assert_eq!(s.fetch_bytes, MIN_SHARE_BYTES / 2);
    }
}
