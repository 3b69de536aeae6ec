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

/// Whether a failure of the cluster is one it recovers from: it was unreachable or not ready for a
/// while (time-outs, too few in-sync replicas, a leader moving, a transport error, the
/// transaction's own abortable state). Under exactly-once such a failure aborts the transaction
/// and rewinds, and the instance goes on once the cluster is back; authorization, a topic gone
/// or a fatal error stop it.
pub fn cluster_away(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    if let KafkaError::Transaction(t) = error {
        return !t.is_fatal();
    }
    matches!(
        error.rdkafka_error_code(),
        Some(
            MessageTimedOut
                | OperationTimedOut
                | RequestTimedOut
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | LeaderNotAvailable
                | NotLeaderForPartition
                | NetworkException
                | BrokerNotAvailable
                | AllBrokersDown
                | BrokerTransportFailure
                | PurgeQueue
                | PurgeInflight
                | State
                | KafkaStorageError
                | CoordinatorLoadInProgress
                | CoordinatorNotAvailable
                | NotCoordinator
                | ConcurrentTransactions
        )
    )
}

/// Whether an output failed because the transactional producer is unusable (fenced, in
/// librdkafka's fatal state, or its sequence lost by a partition leader that moved). Under
/// exactly-once the transaction's commit or abort then meets the same error and decides: renew the
/// producer when the coordinator fenced it or the sequence was lost, or stop
/// (`txn_calls::producer_class`); a worker does not stop the instance for it first. (A rolling
/// restart in CI: a dead letter's delivery report said `OutOfOrderSequenceNumber` and the worker
/// stopped the instance a moment before the commit would have renewed the producer.)
pub fn producer_unusable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Fatal
                | Fenced
                | ProducerFenced
                | InvalidProducerEpoch
                | InvalidTransactionalState
                | OutOfOrderSequenceNumber
                | UnknownProducerId
        )
    )
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

    #[test]
    fn a_cluster_that_was_away_is_told_from_one_that_refuses() {
        let e = |c| KafkaError::MessageProduction(c);
        // `_MSG_TIMED_OUT` of a transactional producer's records while a broker is black-holed.
        assert!(cluster_away(&e(RDKafkaErrorCode::MessageTimedOut)));
        assert!(cluster_away(&e(RDKafkaErrorCode::NotEnoughReplicas)));
        assert!(cluster_away(&e(RDKafkaErrorCode::State)));
        assert!(!cluster_away(&e(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!cluster_away(&e(RDKafkaErrorCode::UnknownTopicOrPartition)));
        assert!(!cluster_away(&e(RDKafkaErrorCode::ProducerFenced)));
        assert!(producer_unusable(&e(RDKafkaErrorCode::ProducerFenced)));
        assert!(producer_unusable(&e(RDKafkaErrorCode::Fatal)));
        // A leader that moved in a rolling restart lost the producer's sequence: renewed at the
        // commit (`txn_calls::producer_class`), not a stop.
        assert!(producer_unusable(&e(
            RDKafkaErrorCode::OutOfOrderSequenceNumber
        )));
        assert!(producer_unusable(&e(RDKafkaErrorCode::UnknownProducerId)));
        assert!(!producer_unusable(&e(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
    }
}
