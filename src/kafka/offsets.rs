//! What a partition's reader (webhook service) or worker (processor) needs of its consumer:
//! storing the offset to commit next, and reading the consumer's position. A trait object, so
//! that partition code does not name the consumer's context type, which names the partition code
//! (the import cycle this breaks).

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::Offset;

pub trait OffsetStore: Send + Sync {
    /// Stores `offset` as processed: the next commit commits `offset + 1`.
    fn store(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()>;
    /// The consumer's position in the partition (the next offset it reads), if it has one.
    fn position_of(&self, topic: &str, partition: i32) -> Option<i64>;
}

impl<C: ConsumerContext> OffsetStore for BaseConsumer<C> {
    fn store(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        self.store_offset(topic, partition, offset)
    }

    fn position_of(&self, topic: &str, partition: i32) -> Option<i64> {
        match self
            .position()
            .ok()?
            .find_partition(topic, partition)?
            .offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }
}
