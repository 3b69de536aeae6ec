use std::sync::Weak;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

use super::*;
use crate::core::{EngineSettings, Shared};
use crate::metrics::Metrics;
use crate::processor::acks::{AckRouter, ProducerCtx};
use crate::processor::fatal::Fatal;
use crate::processor::shared_producer::SharedProducer;
use crate::processor::worker_env::ChangelogEnv;

/// An environment whose producer never connects (nothing is produced in these tests).
fn inflight(changelog: bool) -> (Inflight, Arc<WorkerEnv>) {
    inflight_storing(changelog, Weak::<rdkafka::consumer::BaseConsumer>::new())
}

/// The same, storing offsets for commit in `store`.
fn inflight_storing(
    changelog: bool,
    store: Weak<dyn crate::kafka::offsets::OffsetStore>,
) -> (Inflight, Arc<WorkerEnv>) {
    let metrics = Metrics::new();
    let router = Arc::new(AckRouter::default());
    let producer: rdkafka::producer::ThreadedProducer<ProducerCtx> = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:1")
        .create_with_context(ProducerCtx::new(router.clone(), metrics.clone(), "main"))
        .unwrap();
    let producer = Arc::new(producer);
    let env = Arc::new(WorkerEnv {
        consumer: store,
        producers: vec![SharedProducer::new(producer)],
        region_clusters: vec![0],
        router: router.clone(),
        shared: Shared::new(EngineSettings::default()),
        metrics,
        output_topic: "out".into(),
        region_topics: vec!["out".into()],
        written: Vec::new(),
        dead_letter_topic: "dlq".into(),
        drain_timeout: Duration::from_secs(1),
        fatal: Arc::new(Fatal::default()),
        gate: None,
        deferred: None,
        poison: None,
        rewind: None,
        changelog: changelog.then(|| ChangelogEnv {
            restore_client: ClientConfig::new(),
            prefix: "g-".into(),
            ensured: Default::default(),
            interval: Duration::from_millis(100),
            replication_factor: 0,
            restores: tokio::sync::Semaphore::new(1),
            ends: Arc::new(crate::processor::changelog::Ends::new(ClientConfig::new())),
        }),
        step: crate::processor::worker_env::Step::Engine,
        status: None,
        schema_registry: None,
        otel: None,
    });
    let (id, acks) = router.register();
    let stop = CancellationToken::new();
    (Inflight::new(env.clone(), "in", 0, id, acks, stop), env)
}

fn ack(seq: u64, error: Option<(RDKafkaErrorCode, &str)>) -> Ack {
    Ack {
        seq: seq as u32,
        error: error.map(|(code, topic)| {
            Box::new(Failed::new(
                KafkaError::MessageProduction(code),
                topic,
                Some(b"{}"),
            ))
        }),
    }
}

fn track(t: &mut Inflight, n: u64) {
    let clock = Clock::now();
    for i in 0..n {
        t.track(100 + i as i64, None, &clock, 1);
    }
}

#[test]
fn only_the_acknowledged_prefix_is_committable() {
    let (mut t, _env) = inflight(false);
    track(&mut t, 3);
    let clock = Clock::now();
    t.on_ack(ack(0, None), &clock);
    t.on_ack(ack(2, None), &clock);
    assert!(t.outputs_acked_before(1) && !t.outputs_acked_before(3));
    t.store_progress();
    assert_eq!((t.tracker.base_seq(), t.in_flight()), (1, 1));
    t.on_ack(ack(1, None), &clock);
    assert!(t.outputs_acked_before(3));
    t.store_progress();
    assert_eq!(t.tracker.base_seq(), 3);
}

#[test]
fn with_a_changelog_nothing_commits_past_the_last_state_cut() {
    let (mut t, _env) = inflight(true);
    track(&mut t, 4);
    let clock = Clock::now();
    for seq in 0..4 {
        t.on_ack(ack(seq, None), &clock);
    }
    t.store_progress();
    assert_eq!(t.tracker.base_seq(), 0, "no cut yet");
    assert!(t.uncut());
    // A cut after record 1 whose state record (counted on the cut's oldest record, 0) is not yet
    // acknowledged: nothing of the cut commits.
    assert_eq!(t.oldest_before(2), Some(0));
    t.add_outputs(0, 1);
    t.allow_commit_before(2);
    t.store_progress();
    assert_eq!(
        t.tracker.base_seq(),
        0,
        "the cut's state is not durable yet"
    );
    t.on_ack(ack(0, None), &clock);
    t.store_progress();
    assert_eq!(
        t.tracker.base_seq(),
        2,
        "records after the cut wait for the next one"
    );
    assert_eq!(t.oldest_before(2), None);
}

/// Offsets stored for commit, as the consumer would keep them.
#[derive(Default)]
struct Stored(std::sync::Mutex<Vec<i64>>);

impl crate::kafka::offsets::OffsetStore for Stored {
    fn store(&self, _: &str, _: i32, offset: i64) -> rdkafka::error::KafkaResult<()> {
        self.0.lock().unwrap().push(offset);
        Ok(())
    }
    fn position_of(&self, _: &str, _: i32) -> Option<i64> {
        None
    }
}

/// At-least-once: a state cut's records must be acknowledged before any record of the cut is
/// committed. Counted on the cut's last record only, the records before it were committed while
/// their state changes were still unacknowledged; a broker that never acknowledged them (or a
/// crash) then left committed offsets ahead of the durable state, and the partition's next owner
/// judged the replayed events without their devices' earlier successes (URLs over the rate limit;
/// a soak whose broker stalled showed it).
#[tokio::test]
async fn a_state_cut_commits_nothing_until_its_state_records_are_acknowledged() {
    use crate::core::state::DeviceStates;
    use crate::processor::state_writes::StateWrites;
    let stored = Arc::new(Stored::default());
    let weak: Weak<dyn crate::kafka::offsets::OffsetStore> =
        Arc::downgrade(&stored) as Weak<dyn crate::kafka::offsets::OffsetStore>;
    let (mut t, _env) = inflight_storing(true, weak);
    let mut writes = StateWrites::new("g-in-changelog".into(), Duration::from_millis(100));
    let mut states = DeviceStates::new(Default::default(), 0);
    track(&mut t, 3); // offsets 100, 101, 102, each with one output
    writes.changed("dev-1");
    writes.changed("dev-2");
    writes.cut(&mut states, &mut t, None);
    let clock = Clock::now();
    for seq in 0..3 {
        t.on_ack(ack(seq, None), &clock);
    }
    // Every output is acknowledged: the cut's two state records are produced now.
    writes.write_when_acked(&mut t, false).await;
    assert!(!writes.staged());
    t.store_progress();
    assert_eq!(
        *stored.0.lock().unwrap(),
        Vec::<i64>::new(),
        "committed before the state was durable"
    );
    // The state records' acks (routed like the producer's delivery reports) let all three commit.
    let holder = 0;
    t.on_ack(ack(holder, None), &clock);
    t.store_progress();
    assert_eq!(
        *stored.0.lock().unwrap(),
        Vec::<i64>::new(),
        "one of two state records acknowledged"
    );
    t.on_ack(ack(holder, None), &clock);
    t.store_progress();
    assert_eq!(*stored.0.lock().unwrap(), vec![102]);
}

#[test]
fn a_refused_output_waits_for_its_dead_letter_and_a_cluster_failure_stops() {
    let (mut t, env) = inflight(false);
    track(&mut t, 2);
    let clock = Clock::now();
    t.on_ack(
        ack(0, Some((RDKafkaErrorCode::MessageSizeTooLarge, "out"))),
        &clock,
    );
    assert_eq!(t.to_dead_letter.len(), 1);
    assert_eq!(t.to_dead_letter[0].kind, ErrorKind::OutputTooLarge);
    assert_eq!(t.to_dead_letter[0].offset, 100);
    t.store_progress();
    assert_eq!(
        t.tracker.base_seq(),
        0,
        "the refused record's slot stays until its dead letter"
    );
    assert!(!t.failed && !env.fatal.is_raised());

    t.on_ack(
        ack(1, Some((RDKafkaErrorCode::TopicAuthorizationFailed, "out"))),
        &clock,
    );
    assert!(t.failed);
    assert!(matches!(
        env.fatal.cause(),
        Some(FatalCause::Delivery { topic, .. }) if topic == "out"
    ));
}

/// Issue 26, `write_when_acked`: a state cut is produced only once every output before it is
/// acknowledged. Produced earlier, a crash while the outputs are still unacknowledged (lost with
/// the producer's queue) leaves the changelog holding their successes: the partition's next owner
/// restores them, and the replayed events come out `cached` or `rate_limited`, their URLs lost.
#[tokio::test]
async fn a_state_cut_waits_for_every_output_before_it() {
    use crate::core::state::DeviceStates;
    use crate::processor::state_writes::StateWrites;
    let (mut t, _env) = inflight(true);
    let mut writes = StateWrites::new("g-in-changelog".into(), Duration::from_millis(100));
    let mut states = DeviceStates::new(Default::default(), 0);
    track(&mut t, 3);
    writes.changed("dev-1");
    writes.cut(&mut states, &mut t, None);
    let clock = Clock::now();
    t.on_ack(ack(0, None), &clock);
    t.on_ack(ack(2, None), &clock);
    writes.write_when_acked(&mut t, false).await;
    assert!(
        writes.staged(),
        "the cut went out while the output of offset 101 was unacknowledged"
    );
    assert!(t.uncut(), "the records of a cut not written may not commit");
    t.on_ack(ack(1, None), &clock);
    writes.write_when_acked(&mut t, false).await;
    assert!(
        !writes.staged(),
        "every output acknowledged: the cut is produced"
    );
}

/// Issue 26: under exactly-once a transactional producer's records time out after
/// `transaction.timeout.ms` while a broker is black-holed. That is the cluster away, not gone:
/// the transaction is marked for abort and rewind, and the instance goes on. A refusal that
/// waiting cannot cure (authorization) still stops it.
#[test]
fn under_exactly_once_a_timed_out_output_rewinds_instead_of_stopping() {
    let (t, env) = inflight(false);
    drop(t);
    let rewind = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let env = Arc::new(WorkerEnv {
        rewind: Some(rewind.clone()),
        gate: Some(Default::default()),
        ..clone_env(&env)
    });
    let (id, acks) = env.router.register();
    let mut t = Inflight::new(env.clone(), "in", 0, id, acks, CancellationToken::new());
    track(&mut t, 2);
    let clock = Clock::now();
    t.on_ack(
        ack(0, Some((RDKafkaErrorCode::MessageTimedOut, "out"))),
        &clock,
    );
    assert!(rewind.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        t.failed,
        "the worker processes no further until the rewind replaces it"
    );
    assert!(!env.fatal.is_raised(), "{:?}", env.fatal.cause());
    assert_eq!(env.metrics.delivery_failures.get(), 0);

    t.on_ack(
        ack(1, Some((RDKafkaErrorCode::TopicAuthorizationFailed, "out"))),
        &clock,
    );
    assert!(matches!(
        env.fatal.cause(),
        Some(FatalCause::Delivery { topic, .. }) if topic == "out"
    ));
}

/// A copy of `env`'s fields, for a test to change some.
fn clone_env(env: &WorkerEnv) -> WorkerEnv {
    WorkerEnv {
        consumer: env.consumer.clone(),
        producers: env.producers.clone(),
        region_clusters: env.region_clusters.clone(),
        router: env.router.clone(),
        shared: env.shared.clone(),
        metrics: env.metrics.clone(),
        output_topic: env.output_topic.clone(),
        region_topics: env.region_topics.clone(),
        written: env.written.clone(),
        dead_letter_topic: env.dead_letter_topic.clone(),
        drain_timeout: env.drain_timeout,
        fatal: env.fatal.clone(),
        gate: env.gate.clone(),
        deferred: env.deferred.clone(),
        poison: None,
        rewind: env.rewind.clone(),
        changelog: None,
        step: env.step,
        status: None,
        schema_registry: None,
        otel: None,
    }
}

/// Issue 12, item 9: a device that expires (here: is evicted) and comes back before the cut gets
/// its new state in the cut, never a tombstone after it (a restore would forget it); a device
/// gone for good gets its tombstone.
#[test]
fn a_device_that_expires_and_comes_back_before_a_cut_keeps_its_new_state() {
    use crate::core::limiter::cache_key;
    use crate::core::state::{DeviceBudget, DeviceStates};
    use crate::processor::state_writes::StateWrites;
    let (mut t, _env) = inflight(true);
    let mut writes = StateWrites::new("g-in-changelog".into(), Duration::from_millis(100));
    let mut states = DeviceStates::with_budget(Default::default(), 0, DeviceBudget::new(1));
    states.track_expired();
    let k = cache_key(None, None);
    track(&mut t, 3);
    states.decide("d", 0, k, 0);
    writes.changed("d");
    states.decide("e", 0, k, 1_000); // the instance is full: "d" is evicted
    writes.changed("e");
    states.decide("d", 1, k, 2_000); // "d" is back, "e" is evicted
    writes.changed("d");
    writes.cut(&mut states, &mut t, None);
    let mut staged = writes.staged_devices();
    staged.sort();
    assert_eq!(
        staged,
        vec![("d".to_string(), true), ("e".to_string(), false)],
        "d keeps its new state, e gets a tombstone"
    );
}
