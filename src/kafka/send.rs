//! Producing from a blocking thread without dropping anything: a full producer queue is waited
//! out (the producer's own thread drains it as acks come in); any other error is returned.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

/// Sends `record`, retrying every millisecond while the producer's queue is full. `Ok(false)`:
/// `give_up()` turned true while waiting, and the record was not sent.
pub fn send_waiting<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
    give_up: impl Fn() -> bool,
) -> Result<bool, KafkaError>
where
    C: ProducerContext + 'static,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(true),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
                if give_up() {
                    return Ok(false);
                }
            }
            Err((e, _)) => return Err(e),
        }
    }
}
