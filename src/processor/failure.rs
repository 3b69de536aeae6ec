//! The two classes of produce failure (as Kafka Streams' production exception handler draws them):
//! one record's own fault, which becomes that record's dead letter while the partition goes on, and
//! the cluster's or the configuration's, which stops the instance without committing past it
//! (rules 16-17 of `docs/delivery.md`).

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::core::ErrorKind;

/// What a failed produce means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// This record alone cannot be written: its dead letter says why.
    Record(ErrorKind),
    /// Nothing can be written (authorization, topic gone, retries exhausted): stop.
    Cluster,
}

/// Classifies a produce error, from `send` or from a delivery report.
pub fn classify(error: &KafkaError) -> Failure {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        // Over the producer's `message.max.bytes`, or the topic's or broker's limit.
        Some(MessageSizeTooLarge | InvalidMessageSize | MessageBatchTooLarge) => {
            Failure::Record(ErrorKind::OutputTooLarge)
        }
        // The broker's own validation of this record (a policy, a corrupt or odd record).
        Some(InvalidRecord | InvalidMessage | InvalidTimestamp | BadMessage) => {
            Failure::Record(ErrorKind::OutputRejected)
        }
        _ => Failure::Cluster,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_validation_errors_belong_to_the_record() {
        let e = |c| KafkaError::MessageProduction(c);
        assert_eq!(
            classify(&e(RDKafkaErrorCode::MessageSizeTooLarge)),
            Failure::Record(ErrorKind::OutputTooLarge)
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::InvalidRecord)),
            Failure::Record(ErrorKind::OutputRejected)
        );
        for cluster in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert_eq!(classify(&e(cluster)), Failure::Cluster, "{cluster:?}");
        }
    }
}
