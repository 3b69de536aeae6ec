//! Offset commits' outcome, counted the same way by the processor and the webhook service
//! (`aepiot_commit_failures_total`).

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

use crate::events::kafka::CommitFailed;
use crate::metrics::Metrics;

/// Emits a failed offset commit; "nothing to commit" is not a failure.
pub fn count_commit(metrics: &Metrics, result: KafkaResult<()>, what: &str) {
    match result {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => CommitFailed { error: &e, what }.emit(metrics),
    }
}
