//! Why an instance stops on its own: failures of the cluster or of the configuration, never of one
//! record (those are dead letters). The first cause raised wins; `run` returns it and the exit
//! message names it, so an operator reads "topic authorization failed", not "an error occurred".
//! (Rules 11 and 17 of `docs/delivery.md`.)

use std::sync::OnceLock;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// What stopped the instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalCause {
    /// The broker refused an output for a reason that is not the record's own (authorization, topic
    /// gone, retries exhausted while the cluster was away).
    #[error("an output to topic {topic:?} could not be delivered: {error}")]
    Delivery { topic: String, error: String },
    /// A dead letter was refused even without its payload: the dead-letter topic refuses records.
    #[error("the dead-letter topic {topic:?} refused a dead letter without payload: {error}")]
    DeadLetterRefused { topic: String, error: String },
    /// A partition's state could not be restored from its changelog.
    #[error("the state of {topic} partition {partition} could not be restored: {error}")]
    Restore {
        topic: String,
        partition: i32,
        error: String,
    },
    /// The state changelog topic of an input topic could not be found or created.
    #[error("the state changelog of input topic {topic:?} is not usable: {error}")]
    Changelog { topic: String, error: String },
    /// Exactly-once: the transaction failed fatally (librdkafka's `is_fatal`).
    #[error("the Kafka transaction failed fatally: {0}")]
    Transaction(String),
    /// Exactly-once: another producer with the same `transactional.id`, or a newer generation of
    /// the group, took over: this instance is a zombie and must not write again.
    #[error("the transactional producer was fenced (another instance took over): {0}")]
    Fenced(String),
    /// A partition worker panicked or ended while its partition was still assigned.
    #[error("the worker of {topic} partition {partition} failed: {error}")]
    Worker {
        topic: String,
        partition: i32,
        error: String,
    },
    /// The consumer could not give a partition its own queue, or a record reached the main queue.
    #[error("the consumer failed: {0}")]
    Consumer(String),
}

/// The stop signal and its first cause, shared by every task of an instance.
#[derive(Debug, Default)]
pub struct Fatal {
    token: CancellationToken,
    cause: OnceLock<FatalCause>,
}

impl Fatal {
    /// Records `cause` (if it is the first) and stops the instance.
    pub fn raise(&self, cause: FatalCause) {
        if self.cause.set(cause.clone()).is_ok() {
            tracing::error!(%cause, "stopping without committing past the failure");
        }
        self.token.cancel();
    }

    pub fn is_raised(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn cause(&self) -> Option<&FatalCause> {
        self.cause.get()
    }

    pub fn raised(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// A token cancelled with the instance (for tasks that only need to stop).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cause_wins() {
        let f = Fatal::default();
        assert!(!f.is_raised());
        f.raise(FatalCause::Transaction("fenced".into()));
        f.raise(FatalCause::Consumer("later".into()));
        assert!(f.is_raised());
        assert_eq!(f.cause(), Some(&FatalCause::Transaction("fenced".into())));
        assert_eq!(
            f.cause().unwrap().to_string(),
            "the Kafka transaction failed fatally: fenced"
        );
    }
}
