//! The context of one endpoint's consumer (each endpoint reads in a group of its own): rebalance
//! callbacks start and stop partition readers, and librdkafka's statistics feed the endpoint's
//! lag gauge and time-down gauge. Same shape as the main pipeline's
//! (`processor::rebalance`): callbacks run on the dedicated thread that polls the consumer's main
//! queue, so a revoke may block there while readers drain, and the stored offsets are committed
//! before a partition is handed over.

use std::sync::{Arc, OnceLock, Weak};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use super::partition::{self, PartitionEnv};
use crate::http::Health;
use crate::kafka::assignments::{self, Assignments};
use crate::kafka::commit::count_commit;
use crate::kafka::split::SplitQueues;
use crate::metrics::Metrics;

pub struct WebhookConsumerCtx {
    consumer: OnceLock<Weak<BaseConsumer<WebhookConsumerCtx>>>,
    env: OnceLock<Arc<PartitionEnv>>,
    readers: Assignments,
    /// Queues split before the assignment takes effect (see [`SplitQueues`]).
    split: SplitQueues<WebhookConsumerCtx>,
    rt: tokio::runtime::Handle,
    metrics: Metrics,
    health: Arc<Health>,
}

impl WebhookConsumerCtx {
    pub fn new(rt: tokio::runtime::Handle, metrics: Metrics, health: Arc<Health>) -> Self {
        WebhookConsumerCtx {
            consumer: OnceLock::new(),
            env: OnceLock::new(),
            readers: Assignments::default(),
            split: SplitQueues::default(),
            rt,
            metrics,
            health,
        }
    }

    /// Completes the context once the consumer and the readers' environment exist.
    pub fn attach(&self, consumer: Weak<BaseConsumer<WebhookConsumerCtx>>, env: Arc<PartitionEnv>) {
        let _ = self.consumer.set(consumer);
        let _ = self.env.set(env);
    }

    pub fn env(&self) -> Option<&Arc<PartitionEnv>> {
        self.env.get()
    }

    fn start(&self, tpl: &TopicPartitionList) {
        let (Some(consumer), Some(env)) =
            (self.consumer.get().and_then(Weak::upgrade), self.env.get())
        else {
            tracing::error!("assignment before the webhook consumer was attached");
            return;
        };
        let mut readers = self.readers.lock();
        for e in tpl.elements() {
            let tp = (e.topic().to_owned(), e.partition());
            if readers.contains_key(&tp) {
                continue;
            }
            match self.split.take(&consumer, &tp) {
                Some(queue) => {
                    let handle = partition::spawn(env.clone(), &self.rt, &tp.0, tp.1, queue);
                    readers.insert(tp, handle);
                }
                None => {
                    tracing::error!(topic = %tp.0, partition = tp.1, "cannot split the partition queue");
                    env.fatal.cancel();
                }
            }
        }
        self.split.clear();
    }

    /// Stops the readers of `partitions` (all for `None`), waits for their drains, then commits
    /// the stored offsets synchronously.
    pub fn stop(
        &self,
        consumer: &BaseConsumer<WebhookConsumerCtx>,
        partitions: Option<&TopicPartitionList>,
    ) {
        let stopping = self.readers.take(partitions, |_| {});
        if stopping.is_empty() {
            return;
        }
        // On the consumer's own thread, never an async worker.
        assignments::stop_all(
            stopping,
            &self.rt,
            self.env.get().map(|e| e.drain_timeout),
            "webhook partition readers did not finish draining in time",
        );
        count_commit(
            &self.metrics,
            consumer.commit_consumer_state(CommitMode::Sync),
            "webhook offset commit failed",
        );
    }
}

impl ClientContext for WebhookConsumerCtx {
    fn stats(&self, statistics: Statistics) {
        let mut lag = 0;
        self.readers.for_each_lag(&statistics, |_, l| lag += l);
        if let Some(env) = self.env.get() {
            for ep in &env.endpoints {
                self.metrics
                    .webhook
                    .lag
                    .with_label_values(&[ep.health.name()])
                    .set(lag);
                ep.health.refresh();
            }
        }
    }
}

impl ConsumerContext for WebhookConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "webhook partitions revoked");
                self.stop(consumer, Some(tpl));
            }
            Rebalance::Assign(tpl) => {
                if let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) {
                    self.split.split_ahead(&consumer, tpl);
                }
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "webhook partitions assigned");
                self.start(tpl);
                self.health.set_ready(true);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "webhook rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        count_commit(&self.metrics, result, "webhook offset commit failed");
    }
}
