//! librdkafka client settings: the processor's defaults, then the user's `[kafka]` properties on
//! top (so any property can be tuned or overridden).

use rdkafka::ClientConfig;

use crate::config::{ClusterAccess, Config, GroupProtocol, Guarantee, OffsetReset};
use crate::residency::Routes;

/// Settings every client shares: brokers, a client id naming its role, statistics, security.
pub fn base(config: &Config, role: &str) -> ClientConfig {
    let main = config.cluster_access(&config.routes(), 0);
    base_on(&main, role)
}

/// [`base`] for any cluster: its brokers and security.
pub fn base_on(cluster: &ClusterAccess<'_>, role: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cluster.brokers)
        .set("client.id", format!("aepiot-stream-{role}"))
        // Lag per partition, and the producers' queues, come from librdkafka's statistics.
        .set("statistics.interval.ms", "5000");
    cluster.security.apply(&mut c);
    c
}

/// The user's `[kafka]` properties on top of the processor's own.
pub fn overlay(mut c: ClientConfig, config: &Config) -> ClientConfig {
    for (k, v) in config.kafka_properties() {
        c.set(k, v);
    }
    c
}

/// A consumer group member as both services run one: offsets stored by the application only once
/// a record is finished (`enable.auto.offset.store=false`) and committed from the store every
/// second and at every revoke and shutdown; the group protocol (and, under `classic`, the
/// assignment strategy) from the configuration.
pub fn group_consumer(config: &Config, role: &str, group_id: &str) -> ClientConfig {
    let mut c = base(config, role);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            match config.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        )
        .set("group.protocol", config.group_protocol.as_str());
    if config.group_protocol == GroupProtocol::Classic {
        c.set(
            "partition.assignment.strategy",
            config.partition_assignment_strategy.as_str(),
        )
        .set("session.timeout.ms", "45000");
    }
    c
}

/// The input consumer: a [`group_consumer`] whose prefetch is `input.prefetch_budget_bytes`
/// shared by `input_partitions` (the partitions of the input topics: see
/// [`super::prefetch`]), and under exactly-once no commits of its own.
pub fn consumer_config(config: &Config, input_partitions: usize) -> ClientConfig {
    let mut c = group_consumer(config, "consumer", &config.group_id);
    super::prefetch::Share::of(config.input.prefetch_budget_bytes, input_partitions).apply(&mut c);
    // librdkafka's defaults (100,000 messages and 64 MB per partition queue) would let a processor
    // behind its input hold its whole backlog in memory: the count bounds a queue of tiny records
    // too. Once a queue is below its bounds again, fetching resumes after 20 ms instead of
    // librdkafka's 1 s, which with small bounds would leave the partition idle between fetches
    // (see BENCHMARKS.md, "What changed since the interim figures" and "Memory with 1M devices").
    c.set("queued.min.messages", "10000")
        .set("fetch.queue.backoff.ms", "20");
    if config.processing_guarantee == Guarantee::ExactlyOnce {
        // Offsets are committed inside the transactions, never by the consumer; input written by
        // transactional producers is read only once committed.
        c.set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
    }
    if !config.group_instance_id.is_empty() {
        // Static membership: a crashed instance restarted with the same id takes its partitions
        // back at once, instead of after the session timeout (45 s) that expires a dead member.
        // Only on this consumer: the restore consumers and the webhook group must not share it.
        c.set("group.instance.id", &config.group_instance_id);
    }
    overlay(c, config)
}

/// What every producer of URL records shares, the main cluster's and each region's: see
/// [`producer_config`].
fn output_producer(c: &mut ClientConfig) {
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "131072");
}

/// The output producer: idempotent (no duplicates or reordering from librdkafka's own retries),
/// acknowledged by all in-sync replicas, batched with a short linger and compressed (the URLs of
/// one record repeat each other, so lz4 shrinks them several times).
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = base(config, "producer");
    output_producer(&mut c);
    if config.processing_guarantee == Guarantee::ExactlyOnce {
        // A crashed instance's open transaction holds back read_committed readers until it
        // times out: keep that short.
        c.set("transactional.id", transactional_id(config)).set(
            "transaction.timeout.ms",
            crate::config::TRANSACTION_TIMEOUT_MS.to_string(),
        );
    }
    overlay(c, config)
}

/// The configured `transactional_id`, or `<group_id>-<hostname>-<pid>`.
pub fn transactional_id(config: &Config) -> String {
    if !config.transactional_id.is_empty() {
        return config.transactional_id.clone();
    }
    format!("{}-{}-{}", config.group_id, hostname(), std::process::id())
}

/// The machine's host name (`host` when unreadable): with the pid, what tells this process from
/// the group's others.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Clients for start-up checks and topic creation.
pub fn admin_config(config: &Config) -> ClientConfig {
    overlay(base(config, "admin"), config)
}

/// `c` as a consumer that reads the committed records of partitions it assigns itself up to their
/// end (`enable.partition.eof`) and never commits by itself: the changelog restore, `inspect
/// device` and `dead-letters` read a topic this way. The caller says where reading starts.
pub fn end_reader(mut c: ClientConfig, group: &str) -> ClientConfig {
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    c
}

/// Admin clients of cluster `index` of `routes` (0: the main cluster, as [`admin_config`]).
pub fn admin_config_on(config: &Config, routes: &Routes, index: usize) -> ClientConfig {
    if index == 0 {
        return admin_config(config);
    }
    let cluster = config.cluster_access(routes, index);
    overlay_on(
        base_on(&cluster, &format!("admin-{}", cluster.name)),
        &cluster,
    )
}

/// The producer of a regional cluster (`[clusters.<name>]`): the main producer's settings, except
/// that it retries for ever (`message.timeout.ms = 0`, librdkafka's "infinite"). While that
/// cluster is away its records wait in this producer's queue, and the offsets of the partitions
/// that produced them are not committed past them; the other clusters' records go on. A timeout
/// would instead stop the whole instance, every region with it, for one region's outage.
/// Bounded by `queue.buffering.max.*`: once full, the partitions with records for this cluster
/// wait too. Its own `[clusters.<name>.kafka]` properties apply on top, never the main `[kafka]`.
pub fn regional_producer_config(config: &Config, routes: &Routes, index: usize) -> ClientConfig {
    let cluster = config.cluster_access(routes, index);
    let mut c = base_on(&cluster, &format!("producer-{}", cluster.name));
    output_producer(&mut c);
    c.set("message.timeout.ms", "0");
    overlay_on(c, &cluster)
}

/// A cluster's own librdkafka properties on top of the processor's.
fn overlay_on(mut c: ClientConfig, cluster: &ClusterAccess<'_>) -> ClientConfig {
    for (k, v) in cluster.kafka_properties() {
        c.set(k, v);
    }
    c
}
