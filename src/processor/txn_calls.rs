//! Exactly-once: the client calls the commit and the rewind make, behind two traits, and the class
//! of each error as librdkafka documents it.
//!
//! The commit and rewind logic ([`super::transactions`]) sees only [`TxnCalls`] (the transactional
//! producer) and [`OffsetCalls`] (the consumer's committed offsets and seek), so unit tests script
//! retriable, abortable, fatal and fenced answers against it; [`Live`] and [`LiveOffsets`] are the
//! real clients. librdkafka's classes (`rd_kafka_error_is_retriable`, `_txn_requires_abort`,
//! `_is_fatal`) come only with transactional calls; other client errors (a seek, a committed
//! offsets request) are treated as retriable: the cluster is away, and waiting for it is the
//! only way on.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::split::Tp;

/// What the caller may do after a failed call (librdkafka's classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Call again (a time-out while the coordinator moves, `CONCURRENT_TRANSACTIONS`).
    Retriable,
    /// The transaction cannot commit: abort it and rewind to the committed offsets.
    Abortable,
    /// The producer is unusable: stop the instance. `fenced` when another producer with the same
    /// `transactional.id`, or a newer group generation, took over.
    Fatal { fenced: bool },
}

/// A failed client call, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnError {
    pub class: Class,
    pub message: String,
}

impl TxnError {
    /// Classifies a client error: a transactional one by librdkafka's own flags, any other
    /// (`_TIMED_OUT` of a plain request, a transport error) as retriable.
    pub fn of(e: &KafkaError) -> Self {
        let class = match e {
            KafkaError::Transaction(t) if t.is_fatal() => Class::Fatal {
                fenced: is_fenced(t.code()),
            },
            KafkaError::Transaction(t) if t.txn_requires_abort() => Class::Abortable,
            KafkaError::Transaction(t) if t.is_retriable() => Class::Retriable,
            // librdkafka documents no fourth class for these calls; an error outside the three
            // (a state error) leaves the transaction unusable as it is: abort it.
            KafkaError::Transaction(_) => Class::Abortable,
            _ if e.rdkafka_error_code().is_some_and(is_fenced) => Class::Fatal { fenced: true },
            _ => Class::Retriable,
        };
        TxnError {
            class,
            message: e.to_string(),
        }
    }
}

fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced
    )
}

/// The transactional producer's calls.
pub trait TxnCalls {
    /// Adds the consumer positions to the open transaction (with the group metadata, KIP-447).
    fn send_offsets(&self, offsets: &TopicPartitionList, timeout: Duration)
        -> Result<(), TxnError>;
    fn commit(&self, timeout: Duration) -> Result<(), TxnError>;
    fn abort(&self, timeout: Duration) -> Result<(), TxnError>;
    fn begin(&self) -> Result<(), TxnError>;
}

/// The consumer's calls a rewind makes.
pub trait OffsetCalls {
    /// The group's committed offsets of `partitions` (`None`: none committed).
    fn committed(
        &self,
        partitions: &[Tp],
        timeout: Duration,
    ) -> Result<Vec<(Tp, Option<i64>)>, TxnError>;
    /// Where the partition is read from next.
    fn seek(&self, tp: &Tp, offset: Offset, timeout: Duration) -> Result<(), TxnError>;
}

/// The real transactional producer, with the consumer's group metadata.
pub struct Live<'a, C: ProducerContext + 'static> {
    pub producer: &'a ThreadedProducer<C>,
    pub group: Option<ConsumerGroupMetadata>,
}

impl<C: ProducerContext + 'static> TxnCalls for Live<'_, C> {
    fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        timeout: Duration,
    ) -> Result<(), TxnError> {
        let Some(group) = &self.group else {
            // No group metadata: the consumer is not in the group (yet). The transaction cannot
            // carry these positions; the rewind takes them from the group again.
            return Err(TxnError {
                class: Class::Abortable,
                message: "the consumer has no group metadata".into(),
            });
        };
        self.producer
            .send_offsets_to_transaction(offsets, group, timeout)
            .map_err(|e| TxnError::of(&e))
    }

    fn commit(&self, timeout: Duration) -> Result<(), TxnError> {
        self.producer
            .commit_transaction(timeout)
            .map_err(|e| TxnError::of(&e))
    }

    fn abort(&self, timeout: Duration) -> Result<(), TxnError> {
        self.producer
            .abort_transaction(timeout)
            .map_err(|e| TxnError::of(&e))
    }

    fn begin(&self) -> Result<(), TxnError> {
        self.producer
            .begin_transaction()
            .map_err(|e| TxnError::of(&e))
    }
}

/// The real consumer.
pub struct LiveOffsets<'a, C: ConsumerContext + 'static>(pub &'a BaseConsumer<C>);

impl<C: ConsumerContext + 'static> OffsetCalls for LiveOffsets<'_, C> {
    fn committed(
        &self,
        partitions: &[Tp],
        timeout: Duration,
    ) -> Result<Vec<(Tp, Option<i64>)>, TxnError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = self
            .0
            .committed_offsets(tpl, timeout)
            .map_err(|e| TxnError::of(&e))?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                ((e.topic().to_owned(), e.partition()), offset)
            })
            .collect())
    }

    fn seek(&self, tp: &Tp, offset: Offset, timeout: Duration) -> Result<(), TxnError> {
        self.0
            .seek(&tp.0, tp.1, offset, timeout)
            .map_err(|e| TxnError::of(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_client_errors_are_retriable_and_fencing_is_fatal() {
        let timed_out = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(TxnError::of(&timed_out).class, Class::Retriable);
        let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced);
        assert_eq!(TxnError::of(&fenced).class, Class::Fatal { fenced: true });
    }
}
