//! The consumer's context: turns rebalance callbacks into worker starts and drains, and reports
//! lag from librdkafka's statistics.
//!
//! Callbacks run on the thread that polls the consumer's main queue, which is a dedicated thread
//! (never an async worker), so a revoke may block there while the partition's worker drains its
//! in-flight outputs: the partition is only handed over once its offsets are committed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use super::worker::{self, WorkerEnv, WorkerHandle};
use crate::http::Health;
use crate::metrics::Metrics;

type Tp = (String, i32);

pub struct ConsumerCtx {
    /// Set right after the consumer is created: splitting a partition queue needs the `Arc`.
    consumer: OnceLock<Weak<BaseConsumer<ConsumerCtx>>>,
    env: OnceLock<Arc<WorkerEnv>>,
    workers: Mutex<HashMap<Tp, WorkerHandle>>,
    rt: tokio::runtime::Handle,
    metrics: Metrics,
    health: Arc<Health>,
}

impl ConsumerCtx {
    pub fn new(rt: tokio::runtime::Handle, metrics: Metrics, health: Arc<Health>) -> Self {
        ConsumerCtx {
            consumer: OnceLock::new(),
            env: OnceLock::new(),
            workers: Mutex::new(HashMap::new()),
            rt,
            metrics,
            health,
        }
    }

    /// Completes the context once the consumer and the worker environment exist.
    pub fn attach(&self, consumer: Weak<BaseConsumer<ConsumerCtx>>, env: Arc<WorkerEnv>) {
        let _ = self.consumer.set(consumer);
        let _ = self.env.set(env);
    }

    pub fn env(&self) -> Option<&Arc<WorkerEnv>> {
        self.env.get()
    }

    fn start(&self, tpl: &TopicPartitionList) {
        let (Some(consumer), Some(env)) =
            (self.consumer.get().and_then(Weak::upgrade), self.env.get())
        else {
            tracing::error!("assignment before the consumer was attached");
            return;
        };
        let mut workers = self.workers.lock().expect("workers lock");
        for e in tpl.elements() {
            let tp = (e.topic().to_owned(), e.partition());
            if workers.contains_key(&tp) {
                continue;
            }
            match consumer.split_partition_queue(&tp.0, tp.1) {
                Some(queue) => {
                    let handle = worker::spawn(env.clone(), &self.rt, &tp.0, tp.1, queue);
                    workers.insert(tp, handle);
                }
                None => {
                    tracing::error!(topic = %tp.0, partition = tp.1, "cannot split the partition queue");
                    env.fatal.cancel();
                }
            }
        }
        self.metrics.assigned_partitions.set(workers.len() as i64);
    }

    /// Stops the workers of `partitions` (all of them for `None`), waits for their drains within
    /// the drain deadline, then commits the stored offsets synchronously.
    pub fn stop(
        &self,
        consumer: &BaseConsumer<ConsumerCtx>,
        partitions: Option<&TopicPartitionList>,
    ) {
        let stopping: Vec<(Tp, WorkerHandle)> = {
            let mut workers = self.workers.lock().expect("workers lock");
            let keys: Vec<Tp> = match partitions {
                Some(tpl) => tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect(),
                None => workers.keys().cloned().collect(),
            };
            let taken = keys
                .into_iter()
                .filter_map(|k| workers.remove(&k).map(|h| (k, h)))
                .collect();
            self.metrics.assigned_partitions.set(workers.len() as i64);
            taken
        };
        if stopping.is_empty() {
            return;
        }
        for (_, h) in &stopping {
            h.stop.cancel();
        }
        let deadline = self
            .env
            .get()
            .map(|e| e.drain_timeout)
            .unwrap_or(Duration::from_secs(10))
            + Duration::from_secs(1);
        let dones = stopping.into_iter().map(|((topic, partition), h)| {
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[&topic, &partition.to_string()]);
            h.done
        });
        // On the consumer's own thread, never an async worker: blocking here is what makes the
        // hand-over wait for the drain.
        let drained = self.rt.block_on(async {
            tokio::time::timeout(deadline, futures::future::join_all(dones)).await
        });
        if drained.is_err() {
            tracing::warn!("workers did not finish draining in time");
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.metrics.commit_failures.inc();
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }
}

impl ClientContext for ConsumerCtx {
    fn stats(&self, statistics: Statistics) {
        // Lag only for partitions this instance owns now: a revoked partition's series is removed
        // when it is revoked, and never set again.
        let workers = self.workers.lock().expect("workers lock");
        for ((topic, partition), handle) in workers.iter() {
            let Some(p) = statistics
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
            else {
                continue;
            };
            let position = handle.position.load(Ordering::Relaxed);
            let lag = if position >= 0 && p.hi_offset >= 0 {
                (p.hi_offset - position).max(0)
            } else {
                p.consumer_lag.max(0)
            };
            self.metrics
                .consumer_lag
                .with_label_values(&[topic, &partition.to_string()])
                .set(lag);
        }
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.metrics.rebalances.with_label_values(&["revoke"]).inc();
            tracing::info!(partitions = tpl.count(), "partitions revoked");
            self.stop(consumer, Some(tpl));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                self.start(tpl);
                self.health.set_ready(true);
            }
            Rebalance::Error(e) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "rebalance error");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.metrics.commit_failures.inc();
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }
}
