//! Partition queues split off the consumer's main queue *before* an assignment takes effect,
//! shared by the processor and the webhook service.
//!
//! Once librdkafka fetches a partition, its records go to the main queue until the partition's
//! queue is split off, and a record there stops the instance (see [`super::main_queue`]). On a busy
//! machine the polling thread can be descheduled between the assignment and a split done after it
//! for long enough for a first fetch to land there, so queues are split in `pre_rebalance` and
//! taken by the partition tasks started in `post_rebalance`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::TopicPartitionList;

/// A topic and partition.
pub type Tp = (String, i32);

pub struct SplitQueues<C: ConsumerContext + 'static> {
    queues: Mutex<HashMap<Tp, PartitionQueue<C>>>,
}

impl<C: ConsumerContext + 'static> Default for SplitQueues<C> {
    fn default() -> Self {
        SplitQueues {
            queues: Mutex::new(HashMap::new()),
        }
    }
}

impl<C: ConsumerContext + 'static> SplitQueues<C> {
    /// Splits the queues of the partitions about to be assigned (call from `pre_rebalance`).
    pub fn split_ahead(&self, consumer: &Arc<BaseConsumer<C>>, tpl: &TopicPartitionList) {
        let mut queues = self.queues.lock().expect("split lock");
        for e in tpl.elements() {
            if let Entry::Vacant(slot) = queues.entry((e.topic().to_owned(), e.partition())) {
                if let Some(queue) = consumer.split_partition_queue(e.topic(), e.partition()) {
                    slot.insert(queue);
                }
            }
        }
    }

    /// The queue of `tp`: split ahead, or split now (a rewind re-creates a task).
    pub fn take(&self, consumer: &Arc<BaseConsumer<C>>, tp: &Tp) -> Option<PartitionQueue<C>> {
        let ahead = self.queues.lock().expect("split lock").remove(tp);
        ahead.or_else(|| consumer.split_partition_queue(&tp.0, tp.1))
    }

    /// Drops queues no task took: a queue holds the consumer, so none may stay behind.
    pub fn clear(&self) {
        self.queues.lock().expect("split lock").clear();
    }
}
