//! The state changelog: a compacted topic per input topic, co-partitioned with it, holding each
//! device's latest state (key = device_id, value = [`crate::core::snapshot`], tombstone when the
//! device expired). A worker restores its partition from it before processing its first record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::core::state::DeviceStates;
use crate::events::state::RestoreStarted;
use crate::kafka::batch::{BatchConsumer, Record};
use crate::kafka::client::end_reader;
use crate::kafka::replication;

/// What a restore read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Restored {
    pub records: u64,
    pub devices: usize,
    pub seconds: f64,
}

/// Creates the changelog topic of `input_topic` if missing, with as many partitions as the input
/// (co-partitioning is what makes a partition's state travel with it) and the cluster's default
/// replication factor. Blocking. See [`ensure_replicated_topic`].
pub fn ensure_topic(
    admin_config: &ClientConfig,
    input_topic: &str,
    changelog_topic: &str,
) -> Result<(), String> {
    ensure_replicated_topic(admin_config, input_topic, changelog_topic, 0)
}

/// [`ensure_topic`] with `replication_factor` replicas (`topics.replication_factor`; 0: the
/// cluster's default), and `min.insync.replicas = 2` where that is 3 or more, so that a state
/// change acknowledged under `acks=all` is on two brokers. Warns when the changelog (found or
/// made) has a single replica on a cluster of several brokers.
pub fn ensure_replicated_topic(
    admin_config: &ClientConfig,
    input_topic: &str,
    changelog_topic: &str,
    replication_factor: i16,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        admin_config.create().map_err(|e| e.to_string())?;
    let metadata_of = |topic: &str| {
        admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| e.to_string())
    };
    let partitions = |md: &Metadata| {
        md.topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len())
    };
    let wanted = partitions(&metadata_of(input_topic)?);
    if wanted == 0 {
        return Err(format!("input topic {input_topic:?} has no partitions"));
    }
    let existing = metadata_of(changelog_topic)?;
    match partitions(&existing) {
        0 => {}
        n if n == wanted => {
            replication::warn_if_single_replica(&existing, "changelog", changelog_topic);
            return Ok(());
        }
        n => {
            return Err(format!(
                "changelog topic {changelog_topic:?} has {n} partitions but input topic {input_topic:?} has {wanted}: \
                 they must match (delete the changelog to rebuild it, or set state_changelog = false)"
            ))
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let rf = rt.block_on(replication::replication_factor(
        &admin,
        &existing,
        replication_factor,
    ));
    let mut topic = NewTopic::new(changelog_topic, wanted as i32, TopicReplication::Fixed(rf))
        .set("cleanup.policy", "compact")
        .set("min.compaction.lag.ms", "0");
    if let Some(min_isr) = replication::changelog_min_isr(rf) {
        topic = topic.set("min.insync.replicas", min_isr);
    }
    let results = rt
        .block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("cannot create changelog topic {t:?}: {code}")),
        }
    }
    tracing::info!(
        topic = changelog_topic,
        partitions = wanted,
        replication_factor = rf,
        "created state changelog topic"
    );
    if let Ok(made) = metadata_of(changelog_topic) {
        replication::warn_if_single_replica(&made, "changelog", changelog_topic);
    }
    Ok(())
}

/// Reads one changelog partition from the beginning to its end into `states`. Blocking.
/// `client` is a consumer configuration (brokers, security); committed data only.
///
/// Transient errors (a changelog created a moment ago, by several instances starting at once; a
/// broker restarting or briefly unavailable) are retried, reading the partition again from the
/// beginning (replaying it is idempotent: the latest record of each device wins), for up to
/// [`RESTORE_RETRY`], instead of stopping the instance.
///
/// `cancel` (the partition revoked, or a shutdown) ends it within about a second with
/// `KafkaError::Canceled`: a long restore must not hold a shutdown past its drain deadline.
pub fn restore(
    client: &ClientConfig,
    ends: &Ends,
    changelog_topic: &str,
    partition: i32,
    states: &mut DeviceStates,
    cancel: &CancellationToken,
) -> Result<Restored, KafkaError> {
    let start = Instant::now();
    let deadline = start + RESTORE_RETRY;
    loop {
        if cancel.is_cancelled() {
            return Err(KafkaError::Canceled);
        }
        match restore_once(client, ends, changelog_topic, partition, states, cancel) {
            Ok(mut restored) => {
                restored.seconds = start.elapsed().as_secs_f64();
                return Ok(restored);
            }
            Err(e) if is_transient(&e) && Instant::now() < deadline => {
                tracing::warn!(topic = changelog_topic, partition, error = %e, "changelog not readable yet; retrying");
                for _ in 0..10 {
                    if cancel.is_cancelled() {
                        return Err(KafkaError::Canceled);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long [`restore`] retries transient errors: about as long as an output is retried
/// (librdkafka's default `message.timeout.ms`).
pub const RESTORE_RETRY: Duration = Duration::from_secs(300);

fn restore_once(
    client: &ClientConfig,
    ends: &Ends,
    changelog_topic: &str,
    partition: i32,
    states: &mut DeviceStates,
    cancel: &CancellationToken,
) -> Result<Restored, KafkaError> {
    let end = ends.of(changelog_topic, partition)?;
    read_to(client, changelog_topic, partition, end, states, cancel)
}

/// The one client every restore of a process asks for its changelog partition's ends
/// ([`restore_end`]'s question), made at the first restore. A client of its own per restore
/// (threads, a connection, the changelog's whole metadata) cost an instance assigned 1,200
/// partitions most of its first 20 s, and its broker as much (BENCHMARKS.md, issue 30: "start
/// to all restored").
pub struct Ends {
    client: ClientConfig,
    consumer: Mutex<Option<Arc<BaseConsumer>>>,
}

impl Ends {
    /// `client`: a consumer configuration (brokers, security).
    pub fn new(client: ClientConfig) -> Self {
        Ends {
            client,
            consumer: Mutex::default(),
        }
    }

    /// The partition's first offset and high watermark now (see [`restore_end`]). Blocking.
    pub fn of(&self, changelog_topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        let consumer = {
            let mut slot = self.consumer.lock().expect("ends lock");
            match &*slot {
                Some(c) => c.clone(),
                None => slot
                    .insert(Arc::new(watermark_reader(&self.client)?))
                    .clone(),
            }
        };
        let ends = consumer.fetch_watermarks(changelog_topic, partition, ENDS_TIMEOUT);
        let destroyed = matches!(&ends, Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::DestroyBroker));
        if destroyed {
            // A long-lived client outlives brokers: one that left the metadata is destroyed in it
            // while a restore may still be asking it. The retry (see [`restore`]) asks a new
            // client, as every restore did when each made its own. Other errors are the cluster's
            // state (a topic not yet known, a leader moving), which this client's next metadata
            // sees as a new one's would; replacing it on those left two alive at once while other
            // restores still held the first.
            self.consumer.lock().expect("ends lock").take();
        }
        ends
    }
}

/// How long a question for a partition's ends is waited for.
const ENDS_TIMEOUT: Duration = Duration::from_secs(30);

/// A client that asks for ends without isolation (see [`restore_end`]).
fn watermark_reader(client: &ClientConfig) -> Result<BaseConsumer, KafkaError> {
    client
        .clone()
        .set("isolation.level", "read_uncommitted")
        .create()
}

/// Where a restore of a changelog partition starts and ends: its first offset, and its high
/// watermark now, records of transactions still open (or committed, their markers not yet
/// written) included.
///
/// Not the end a read_committed consumer is told: librdkafka asks the broker for the end under
/// the client's isolation level, and under read_committed that is the last stable offset, which
/// stops before the first record of any transaction not yet completed. Just after a hand-over, a
/// rewind or a coordinator's failover, the previous owner's last committed transaction is one
/// of those until the coordinator has written its markers; a restore that ended there would miss
/// its state records while the offsets committed with them hold, and replayed events would be
/// judged without those successes (URLs over the rate limit). So the end is asked for without
/// isolation, and the read (committed records only) goes on until it is past it.
pub fn restore_end(
    client: &ClientConfig,
    changelog_topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    watermark_reader(client)?.fetch_watermarks(changelog_topic, partition, ENDS_TIMEOUT)
}

/// Reads the committed records of a changelog partition from its beginning into `states`, until
/// a record, or the end of the partition librdkafka reports, is at or past `high`
/// ([`restore_end`]). Blocking.
pub fn read_to(
    client: &ClientConfig,
    changelog_topic: &str,
    partition: i32,
    (low, high): (i64, i64),
    states: &mut DeviceStates,
    cancel: &CancellationToken,
) -> Result<Restored, KafkaError> {
    let mut restored = Restored::default();
    // An empty partition (every partition of a new group) needs no client at all.
    if high <= low {
        return Ok(restored);
    }
    // Prefetch bounded as the input's is (several restores run at once), refilled after 20 ms
    // rather than librdkafka's 1 s: a restore reads its queue faster than that.
    let mut config = end_reader(client.clone(), "aepiot-stream-restore");
    config
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.queue.backoff.ms", "20");
    let mut reader = BatchConsumer::create(config, RESTORE_BATCH)?;
    RestoreStarted {
        changelog_topic,
        partition,
        records: high - low,
    }
    .emit();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(changelog_topic, partition, Offset::Beginning)?;
    reader.consumer().assign(&tpl)?;
    let mut idle = Duration::ZERO;
    let step = Duration::from_millis(500);
    loop {
        if cancel.is_cancelled() {
            return Err(KafkaError::Canceled);
        }
        let batch = reader.next(step);
        if batch.is_empty() {
            // Nothing for 30 s although the partition has records: the broker is away.
            if idle >= Duration::from_secs(30) {
                return Err(KafkaError::NoMessageReceived);
            }
            idle += step;
            continue;
        }
        idle = Duration::ZERO;
        let (mut at_end, mut error) = (false, None);
        let records = batch.records().filter_map(|record| match record {
            // Records past `high` were written after this restore began: not its business.
            Record::Message { offset, .. } if at_end || offset >= high => {
                at_end = true;
                None
            }
            Record::Message {
                offset,
                key,
                payload,
            } => {
                restored.records += 1;
                at_end = offset + 1 >= high;
                let key = std::str::from_utf8(key?).ok()?;
                Some((key, payload))
            }
            // The end of the committed data: under read_committed the last stable offset, which
            // an open transaction holds back (see [`restore_end`]). Only an end at or past `high`
            // is the end of what was written before this restore; an earlier one is waited past:
            // the transaction completes (its records are read, or skipped if aborted) within
            // `transaction.timeout.ms`, and the end moves past its marker.
            Record::Eof { offset } => {
                at_end |= offset >= high;
                None
            }
            Record::Error(e) => {
                error.get_or_insert(e);
                None
            }
        });
        states.restore_encoded(records, |device, e| {
            tracing::warn!(topic = changelog_topic, partition, device, error = %e, "unreadable state record skipped")
        });
        if let Some(e) = error {
            return Err(e);
        }
        if at_end {
            break;
        }
    }
    restored.devices = states.device_count();
    Ok(restored)
}

/// Most records a restore takes from its queue at once: one lock and one placement for each
/// batch, not for each record.
const RESTORE_BATCH: usize = 1_000;

/// Errors a partition's leader election, a new topic's propagation or a broker restart cause.
fn is_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    if matches!(e, KafkaError::NoMessageReceived) {
        // Nothing read for 30 s although the partition has records: the broker is away.
        return true;
    }
    matches!(
        e.rdkafka_error_code(),
        Some(
            NotLeaderForPartition
                | LeaderNotAvailable
                | UnknownTopicOrPartition
                | UnknownPartition
                | UnknownTopic
                | BrokerTransportFailure
                | AllBrokersDown
                | RequestTimedOut
                | OperationTimedOut
                // A new leader asked for its end before its high watermark caught up (KIP-207).
                | OffsetNotAvailable
                | FencedLeaderEpoch
                // A broker that left the cluster's metadata (restarted, replaced) while asked.
                | DestroyBroker
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_that_left_while_asked_is_waited_out_and_a_missing_topic_too() {
        // Seen in a rolling restart: the shared ends client had decommissioned the restarted
        // broker, and the restore stopped the instance.
        let left = KafkaError::MetadataFetch(RDKafkaErrorCode::DestroyBroker);
        assert!(is_transient(&left));
        let unknown = KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(is_transient(&unknown));
        let denied = KafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert!(
            !is_transient(&denied),
            "a configuration's failure stops the instance"
        );
    }
}
