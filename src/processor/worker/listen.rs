//! How a worker learns that its partition's queue has records.

use std::sync::Arc;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::ConsumerContext;
use tokio::sync::Notify;

/// Wakes the worker when its queue goes from empty to non-empty. Call only once the partition's
/// previous worker has ended: every split of a partition is a handle on the same librdkafka
/// queue, and a handle dropped clears that queue's wake-up (rdkafka's `PartitionQueue` drop). A
/// wake-up registered when the worker was spawned was cleared when a lingering predecessor
/// ended, and the worker, once it had read what was there, slept for good on a filling queue
/// (issue 26, the changelog leader's SIGKILL under exactly-once: one partition left uncommitted
/// at 15,392 of 27,457).
pub fn listen<C: ConsumerContext>(queue: &mut PartitionQueue<C>, notify: &Arc<Notify>) {
    let n = notify.clone();
    queue.set_nonempty_callback(move || n.notify_one());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;

    /// Whether `notify` fires within 5 s (the consumer polled meanwhile, as its thread does).
    fn woken(consumer: &BaseConsumer, notify: &Notify) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for _ in 0..50 {
            let _ = consumer.poll(Duration::from_millis(100));
            let waited = rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(1), notify.notified()).await
            });
            if waited.is_ok() {
                return true;
            }
        }
        false
    }

    #[test]
    fn a_worker_that_listens_after_its_predecessor_ended_is_woken() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("in", 1, 1).unwrap();
        let servers = cluster.bootstrap_servers();
        let consumer: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("group.id", "g")
                .create()
                .unwrap(),
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("in", 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .unwrap();
        let produce = |payload: &str| {
            producer
                .send(BaseRecord::<str, str>::to("in").payload(payload))
                .unwrap();
            producer.flush(Duration::from_secs(5)).unwrap();
        };

        // The predecessor's handle, listening; the successor's split while it still lingers.
        let mut old = consumer.split_partition_queue("in", 0).unwrap();
        listen(&mut old, &Arc::new(Notify::new()));
        let mut new = consumer.split_partition_queue("in", 0).unwrap();
        let early = Arc::new(Notify::new());
        listen(&mut new, &early);
        drop(old);
        produce("a");
        assert!(
            !woken(&consumer, &early),
            "librdkafka kept a wake-up registered before the predecessor's handle was dropped: \
             registering it at spawn would do"
        );
        while new.poll(Duration::from_millis(100)).is_some() {}

        // Registered after the predecessor ended, as `run` does.
        let late = Arc::new(Notify::new());
        listen(&mut new, &late);
        produce("b");
        assert!(woken(&consumer, &late), "the successor is woken");
    }
}
