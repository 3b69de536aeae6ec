//! The consumer's main queue, once every assigned partition has a queue of its own: what is left on
//! it are rebalance callbacks and errors. Serving it keeps the group membership alive however long
//! the partition tasks take, so it runs on a thread of its own.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

/// Polls `consumer`'s main queue until `stop` is cancelled. A record arriving there means a
/// partition was not split to its task; processing it out of band could break partition order,
/// so `on_stray` is called to stop the instance instead (a restart resumes from the committed
/// offsets). `role` names the consumer in the log.
pub fn serve<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    stop: &CancellationToken,
    role: &str,
    on_stray: impl Fn(),
) {
    while !stop.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(msg)) => {
                tracing::error!(
                    role,
                    topic = msg.topic(),
                    partition = msg.partition(),
                    "record on the consumer's main queue; stopping"
                );
                on_stray();
            }
            Some(Err(e)) => tracing::warn!(role, error = %e, "consumer error"),
        }
    }
}
