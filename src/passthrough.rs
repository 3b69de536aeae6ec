//! `aepiot-stream passthrough` (hidden): the end-to-end benchmark's reference point. It consumes
//! the input topic and produces every record's bytes (key, payload, headers) unchanged to the
//! output topic, with the processor's own client settings ([`consumer_config`],
//! [`producer_config`] on the same [`Config`], so `[kafka]` properties and `AEPIOT_*` variables
//! apply to it exactly as to `run`), and commits offsets the way `run` does:
//!
//! - at-least-once: an input offset is stored for the consumer's auto-commit (every second) only
//!   once the output of that record and of every earlier record of its partition is acknowledged
//!   by the broker; a final synchronous commit at shutdown;
//! - exactly-once: one transaction every `commit_interval_ms` with the consumed positions sent by
//!   `send_offsets_to_transaction` and the consumer group metadata.
//!
//! It does no parsing and keeps no state, so its throughput is what this broker and client
//! configuration allow on this machine: `benches/e2e.sh` runs it beside `run` on the same input.
//!
//! One consumer (its main queue polled on one thread) and one producer; the producer's delivery
//! callback sends each ack (partition, sequence number in an opaque, like the pipeline's
//! [`crate::kafka::acks`]) back over a channel. It serves the same `/metrics` as `run` for what it
//! does: `aepiot_events_total{outcome="success"}` counts records consumed and produced, and
//! `aepiot_processing_latency_seconds` observes consumed → acknowledged, so the harness waits for
//! both the same way.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Guarantee};
use crate::http::{self, Health};
use crate::kafka::client::{consumer_config, producer_config};
use crate::metrics::Metrics;

/// One delivery report: the input partition and the record's sequence number within it.
struct Ack {
    partition: i32,
    seq: u32,
    error: Option<KafkaError>,
}

struct ProducerCtx {
    acks: Sender<Ack>,
}

impl ClientContext for ProducerCtx {}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let ack = Ack {
            partition: (opaque >> 32) as i32,
            seq: opaque as u32,
            error: result.as_ref().err().map(|(e, _)| e.clone()),
        };
        let _ = self.acks.send(ack);
    }
}

struct ConsumerCtx {
    health: Arc<Health>,
    metrics: Metrics,
}

impl ClientContext for ConsumerCtx {}

impl ConsumerContext for ConsumerCtx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "assigned");
                self.metrics.assigned_partitions.add(tpl.count() as i64);
                self.health.set_ready(true);
            }
            Rebalance::Revoke(tpl) => {
                self.metrics.assigned_partitions.sub(tpl.count() as i64);
            }
            Rebalance::Error(_) => {}
        }
    }
}

/// One input partition's in-flight records, in offset order.
#[derive(Default)]
struct Partition {
    /// (offset, consumed at, acknowledged)
    pending: VecDeque<(i64, Instant, bool)>,
    /// Sequence number of `pending`'s front.
    base_seq: u64,
    /// Next offset to read (exactly-once commits it).
    position: i64,
}

struct Tracker {
    topic: String,
    partitions: HashMap<i32, Partition>,
    acks: Receiver<Ack>,
    metrics: Metrics,
    store_offsets: bool,
    failed: Option<String>,
}

impl Tracker {
    fn take_acks(&mut self, consumer: &BaseConsumer<ConsumerCtx>) {
        let mut touched = false;
        while let Ok(ack) = self.acks.try_recv() {
            self.on_ack(ack);
            touched = true;
        }
        if touched {
            self.store_progress(consumer);
        }
    }

    fn on_ack(&mut self, ack: Ack) {
        if let Some(e) = ack.error {
            if self.failed.is_none() {
                tracing::error!(partition = ack.partition, error = %e, "an output could not be delivered");
                self.metrics.delivery_failures.inc();
                self.failed = Some(e.to_string());
            }
            return;
        }
        let Some(p) = self.partitions.get_mut(&ack.partition) else {
            return;
        };
        let idx = ack.seq.wrapping_sub(p.base_seq as u32) as usize;
        if let Some(entry) = p.pending.get_mut(idx) {
            if !entry.2 {
                entry.2 = true;
                self.metrics
                    .processing_latency
                    .observe(entry.1.elapsed().as_secs_f64());
            }
        }
    }

    /// Drops each partition's acknowledged prefix and (at-least-once) stores the offset after it.
    fn store_progress(&mut self, consumer: &BaseConsumer<ConsumerCtx>) {
        if self.failed.is_some() {
            return;
        }
        for (&partition, p) in self.partitions.iter_mut() {
            let mut last = None;
            while p.pending.front().is_some_and(|e| e.2) {
                last = p.pending.pop_front().map(|e| e.0);
                p.base_seq += 1;
            }
            if let (true, Some(offset)) = (self.store_offsets, last) {
                if let Err(e) = consumer.store_offset(&self.topic, partition, offset) {
                    tracing::warn!(partition, error = %e, "could not store offset");
                }
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

/// Runs until `shutdown` (SIGTERM/SIGINT) or a delivery failure (error).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.input_topics.len() == 1 && !config.input_topics[0].starts_with('^'),
        "passthrough reads exactly one input topic (no pattern)"
    );
    anyhow::ensure!(
        config.input_topics[0] != config.output_topic,
        "the output topic must differ from the input topic"
    );
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let server_stop = CancellationToken::new();
    if !config.metrics_addr.is_empty() {
        let addr = http::serve(
            &config.metrics_addr,
            metrics.clone(),
            health.clone(),
            server_stop.clone(),
        )
        .await?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    let _server_guard = server_stop.drop_guard();
    let stop = CancellationToken::new();
    let worker = {
        let (config, metrics, health, stop) = (config, metrics, health, stop.clone());
        std::thread::Builder::new()
            .name("aepiot-passthrough".into())
            .spawn(move || pump(&config, metrics, health, stop))?
    };
    let done = tokio::task::spawn_blocking(move || worker.join());
    tokio::pin!(done);
    tokio::select! {
        r = &mut done => return r?.map_err(|_| anyhow::anyhow!("passthrough thread panicked"))?,
        _ = shutdown.cancelled() => tracing::info!("shutting down"),
    }
    stop.cancel();
    done.await?
        .map_err(|_| anyhow::anyhow!("passthrough thread panicked"))?
}

/// The consume → produce loop, on its own thread.
fn pump(
    config: &Config,
    metrics: Metrics,
    health: Arc<Health>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let topic = config.input_topics[0].clone();
    let exactly_once = config.processing_guarantee == Guarantee::ExactlyOnce;
    let (ack_tx, ack_rx) = channel();
    let producer: ThreadedProducer<ProducerCtx> = producer_config(config)
        .create_with_context(ProducerCtx { acks: ack_tx })
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
    let txn_timeout = Duration::from_secs(30);
    if exactly_once {
        producer
            .init_transactions(txn_timeout)
            .map_err(|e| anyhow::anyhow!("cannot initialise Kafka transactions: {e}"))?;
        producer.begin_transaction()?;
    }
    let consumer: BaseConsumer<ConsumerCtx> = consumer_config(config)
        .create_with_context(ConsumerCtx {
            health: health.clone(),
            metrics: metrics.clone(),
        })
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
    consumer.subscribe(&[&topic])?;
    tracing::info!(input = %topic, output = %config.output_topic, group = %config.group_id, exactly_once, "passing through");

    let consumed = metrics.events.with_label_values(&["success"]);
    let mut t = Tracker {
        topic: topic.clone(),
        partitions: HashMap::new(),
        acks: ack_rx,
        metrics: metrics.clone(),
        store_offsets: !exactly_once,
        failed: None,
    };
    let commit_every = Duration::from_millis(config.commit_interval_ms.max(1));
    let mut last_commit = Instant::now();
    let mut since_acks = 0u32;
    while !stop.is_cancelled() && t.failed.is_none() {
        match consumer.poll(Duration::from_millis(100)) {
            None => t.take_acks(&consumer),
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            Some(Ok(msg)) => {
                produce(&producer, &consumer, &config.output_topic, &msg, &mut t);
                consumed.inc();
                since_acks += 1;
                if since_acks >= 256 {
                    since_acks = 0;
                    t.take_acks(&consumer);
                }
            }
        }
        if exactly_once && last_commit.elapsed() >= commit_every {
            commit_transaction(&producer, &consumer, &t, txn_timeout)?;
            last_commit = Instant::now();
        }
    }
    health.set_ready(false);
    // Drain: every produced record acknowledged (or the deadline), then the final commit.
    let deadline = Instant::now() + Duration::from_millis(config.drain_timeout_ms);
    if exactly_once && t.failed.is_none() {
        commit_transaction(&producer, &consumer, &t, txn_timeout)?;
    }
    let _ = producer.flush(Duration::from_millis(config.drain_timeout_ms));
    while t.failed.is_none() && t.in_flight() > 0 && Instant::now() < deadline {
        match t.acks.recv_timeout(Duration::from_millis(50)) {
            Ok(ack) => t.on_ack(ack),
            Err(_) => {}
        }
        t.store_progress(&consumer);
    }
    t.take_acks(&consumer);
    if !exactly_once && t.failed.is_none() {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored yet (e.g. no records) is not an error worth failing for.
            if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
                tracing::warn!(error = %e, "final offset commit failed");
            }
        }
    }
    drop(consumer);
    if let Some(e) = t.failed {
        anyhow::bail!("stopped: an output could not be delivered to Kafka: {e}");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

fn produce(
    producer: &ThreadedProducer<ProducerCtx>,
    consumer: &BaseConsumer<ConsumerCtx>,
    output_topic: &str,
    msg: &BorrowedMessage<'_>,
    t: &mut Tracker,
) {
    let partition = msg.partition();
    let p = t.partitions.entry(partition).or_default();
    let seq = p.base_seq + p.pending.len() as u64;
    p.pending.push_back((msg.offset(), Instant::now(), false));
    p.position = msg.offset() + 1;
    let opaque = ((partition as u32 as usize) << 32) | (seq as u32 as usize);
    let mut record: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(output_topic, opaque);
    if let Some(k) = msg.key() {
        record = record.key(k);
    }
    if let Some(v) = msg.payload() {
        record = record.payload(v);
    }
    if let Some(h) = msg.headers() {
        if h.count() > 0 {
            record = record.headers(h.detach());
        }
    }
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                t.take_acks(consumer);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => {
                tracing::error!(error = %e, "cannot produce");
                t.metrics.delivery_failures.inc();
                t.failed = Some(e.to_string());
                return;
            }
        }
    }
}

/// Exactly-once: commits the open transaction with every partition's position, then begins the
/// next one.
fn commit_transaction(
    producer: &ThreadedProducer<ProducerCtx>,
    consumer: &BaseConsumer<ConsumerCtx>,
    t: &Tracker,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (&partition, p) in &t.partitions {
        if p.position > 0 {
            tpl.add_partition_offset(&t.topic, partition, Offset::Offset(p.position))?;
        }
    }
    if tpl.count() > 0 {
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| anyhow::anyhow!("no consumer group metadata"))?;
        producer.send_offsets_to_transaction(&tpl, &metadata, timeout)?;
    }
    producer.commit_transaction(timeout)?;
    producer.begin_transaction()?;
    Ok(())
}
