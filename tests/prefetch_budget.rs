//! The input consumer's prefetch stays within one instance-wide budget
//! (`input.prefetch_budget_bytes`, src/kafka/prefetch.rs), however many partitions it owns: on
//! the real broker, a consumer with `run`'s settings and a queue split off per partition (as the
//! pipeline does) is given a few hundred partitions, each holding far more than its share, and
//! its workers read nothing. librdkafka's own statistics must then show every partition with
//! records queued, each stopped at its share (or at its end), and all of them together within
//! the budget. With a constant per partition (the 4 MB each of before) they hold all of it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aepiot_stream::config::Config;
use aepiot_stream::kafka::client::consumer_config;
use aepiot_stream::kafka::prefetch::Share;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, Statistics, TopicPartitionList};

const PARTITIONS: i32 = 240;
const RECORDS_PER_PARTITION: usize = 32;
const RECORD_BYTES: usize = 2_000;
const BUDGET: usize = 1 << 20;

/// Keeps librdkafka's latest statistics.
#[derive(Default)]
struct Stats(Mutex<Option<Statistics>>);
impl ClientContext for Stats {
    fn stats(&self, statistics: Statistics) {
        *self.0.lock().unwrap() = Some(statistics);
    }
}
impl ConsumerContext for Stats {}

/// `RECORDS_PER_PARTITION` records of `RECORD_BYTES` in every partition. One record per batch: a
/// fetch returns whole batches, so a partition may hold one batch beyond its share (README,
/// "State"); single-record batches keep that overshoot to a record.
fn fill(topic: &str) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", common::brokers())
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let payload = vec![b'x'; RECORD_BYTES];
    for partition in 0..PARTITIONS {
        for _ in 0..RECORDS_PER_PARTITION {
            let r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .partition(partition)
                .payload(payload.as_slice());
            common::send_waiting(&p, r);
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(p.in_flight_count(), 0);
}

#[test]
fn a_few_hundred_partitions_prefetch_within_one_budget() {
    let topic = common::unique("prefetch-budget");
    common::create_topics(&[(&topic, PARTITIONS)]);
    fill(&topic);
    let data = PARTITIONS as usize * RECORDS_PER_PARTITION * RECORD_BYTES;
    assert!(
        data > 10 * BUDGET,
        "the input is far larger than the budget"
    );

    let mut config = Config {
        brokers: common::brokers().to_string(),
        group_id: common::unique("prefetch-budget-group"),
        input_topics: vec![topic.clone()],
        ..Config::default()
    };
    config.input.prefetch_budget_bytes = BUDGET;
    let mut client = consumer_config(&config, PARTITIONS as usize);
    client.set("statistics.interval.ms", "200");
    let consumer: Arc<BaseConsumer<Stats>> =
        Arc::new(client.create_with_context(Stats::default()).unwrap());

    // Queues split off before the assignment, as the pipeline does, and never read.
    let queues: Vec<_> = (0..PARTITIONS)
        .map(|p| consumer.split_partition_queue(&topic, p).expect("a queue"))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();

    // Until every partition has stopped fetching: its queue at its share, or all of it fetched.
    let share = Share::of(BUDGET, PARTITIONS as usize);
    let stopped_at = share.queued_kbytes as u64 * 1000;
    let deadline = Instant::now() + Duration::from_secs(90);
    let (queued, per_partition) = loop {
        assert!(
            consumer.poll(Duration::from_millis(100)).is_none(),
            "a record on the main queue: its partition has no queue of its own"
        );
        let stats = consumer.context().0.lock().unwrap().clone();
        let partitions: Vec<(u64, i64, i64)> = stats
            .as_ref()
            .and_then(|s| s.topics.get(&topic))
            .map(|t| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0)
                    .map(|p| (p.fetchq_size, p.next_offset, p.hi_offset))
                    .collect()
            })
            .unwrap_or_default();
        let all_stopped = partitions.len() == PARTITIONS as usize
            && partitions
                .iter()
                .all(|&(size, next, hi)| size >= stopped_at || (hi > 0 && next >= hi));
        if all_stopped {
            let sizes: Vec<u64> = partitions.iter().map(|p| p.0).collect();
            break (sizes.iter().sum::<u64>(), sizes);
        }
        assert!(
            Instant::now() < deadline,
            "the partitions did not all stop fetching within 90 s: {} reported",
            partitions.len()
        );
    };
    assert!(
        per_partition.iter().all(|&b| b >= RECORD_BYTES as u64),
        "every partition prefetched: {per_partition:?}"
    );
    assert!(
        queued <= BUDGET as u64,
        "{queued} bytes prefetched over {PARTITIONS} partitions, over the budget of {BUDGET} \
         (share {share:?}; input {data} bytes)"
    );
    drop(queues);
}
