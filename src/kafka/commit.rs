//! Offset commits' outcome, counted the same way by the processor and the webhook service
//! (`aepiot_commit_failures_total`).

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

use crate::metrics::Metrics;

/// Counts and logs a failed offset commit; "nothing to commit" is not a failure.
pub fn count_commit(metrics: &Metrics, result: KafkaResult<()>, what: &str) {
    match result {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            metrics.commit_failures.inc();
            tracing::warn!(error = %e, "{what}");
        }
    }
}
