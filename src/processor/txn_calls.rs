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

use std::sync::Arc;
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
    /// The producer is unusable, but by the coordinator's doing, not another instance's: it
    /// aborted the transaction that outlived `transaction.timeout.ms` and bumped the producer's
    /// epoch (`_FENCED` on a transactional id of this process's own), answered
    /// `INVALID_TXN_STATE`, or a moved leader lost the producer's sequence
    /// (`OUT_OF_ORDER_SEQUENCE_NUMBER`). A new producer with the same id, initialised, and a
    /// rewind go on.
    Renew,
    /// An abort with no transaction open (librdkafka's `_STATE`: a new producer, or the commit
    /// went through before the call that failed): nothing to abort.
    NoTransaction,
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

/// Where the `transactional.id` comes from, which decides what a fence means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnId {
    /// `<group_id>-<hostname>-<pid>`: no other process has it, and zombies among the group's
    /// members are fenced by the group generation (KIP-447), so a fence is the coordinator's
    /// time-out abort.
    Derived,
    /// The user's `transactional_id`: another instance may have it, so a fence may be a zombie's.
    Configured,
}

/// The class of a transactional producer call's error, given the id's origin: a fatal fence on a
/// derived id and a fatal `INVALID_TXN_STATE` are renewed, not stopped for; `_STATE` is no
/// transaction (see [`Class`]).
pub fn producer_class(class: Class, code: Option<RDKafkaErrorCode>, id: TxnId) -> Class {
    match (class, code) {
        (Class::Fatal { .. }, Some(c)) if is_fenced(c) && id == TxnId::Derived => Class::Renew,
        // A partition leader that moved lost the producer's sequence: fatal for this producer,
        // but a new epoch starts clean, and its init aborts what the old one left open.
        (Class::Fatal { .. }, Some(RDKafkaErrorCode::OutOfOrderSequenceNumber))
            if id == TxnId::Derived =>
        {
            Class::Renew
        }
        (Class::Fatal { .. }, Some(RDKafkaErrorCode::InvalidTransactionalState)) => Class::Renew,
        (_, Some(RDKafkaErrorCode::State)) => Class::NoTransaction,
        (class, _) => class,
    }
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

    /// A transactional producer call's error ([`producer_class`]).
    pub fn of_producer(e: &KafkaError, id: TxnId) -> Self {
        let t = Self::of(e);
        TxnError {
            class: producer_class(t.class, e.rdkafka_error_code(), id),
            ..t
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
pub struct Live<C: ProducerContext + 'static> {
    pub producer: Arc<ThreadedProducer<C>>,
    pub group: Option<Arc<ConsumerGroupMetadata>>,
    pub id: TxnId,
}

/// How long past its own time-out a call that does not enforce it is waited for.
const HUNG_MARGIN: Duration = Duration::from_secs(5);

impl<C: ProducerContext + 'static> TxnCalls for Live<C> {
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
        // This call may never return (see `hung_call`): on a thread of its own.
        let (producer, offsets, group) = (self.producer.clone(), offsets.clone(), group.clone());
        let call = move || producer.send_offsets_to_transaction(&offsets, &group, timeout);
        match super::hung_call::within("aepiot-txn-offsets", timeout + HUNG_MARGIN, call) {
            Ok(Some(result)) => result.map_err(|e| TxnError::of_producer(&e, self.id)),
            Ok(None) => Err(hung(timeout)),
            Err(e) => Err(TxnError {
                class: Class::Retriable,
                message: format!("cannot start a thread for the call: {e}"),
            }),
        }
    }

    fn commit(&self, timeout: Duration) -> Result<(), TxnError> {
        self.producer
            .commit_transaction(timeout)
            .map_err(|e| TxnError::of_producer(&e, self.id))
    }

    fn abort(&self, timeout: Duration) -> Result<(), TxnError> {
        self.producer
            .abort_transaction(timeout)
            .map_err(|e| TxnError::of_producer(&e, self.id))
    }

    fn begin(&self) -> Result<(), TxnError> {
        self.producer
            .begin_transaction()
            .map_err(|e| TxnError::of_producer(&e, self.id))
    }
}

/// `send_offsets_to_transaction` did not return: the producer waits for a coordinator it will
/// never reach (librdkafka #5456, #5511), and every later transactional call of it would be
/// refused as conflicting. A new producer with the same id takes over (its init fences this one,
/// and the coordinator aborts the open transaction), as after a coordinator's fence.
fn hung(timeout: Duration) -> TxnError {
    TxnError {
        class: Class::Renew,
        message: format!(
            "sending the offsets to the transaction did not return within {:?} of its {timeout:?} \
             time-out (librdkafka waits for a group coordinator that left the cluster's metadata: \
             librdkafka issues #5456, #5511)",
            HUNG_MARGIN
        ),
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

    #[test]
    fn a_fence_renews_the_producer_only_on_an_id_of_its_own() {
        use RDKafkaErrorCode::*;
        let fatal = |fenced| Class::Fatal { fenced };
        // librdkafka reports PRODUCER_FENCED and INVALID_PRODUCER_EPOCH as `_FENCED`.
        for code in [Fenced, ProducerFenced, InvalidProducerEpoch] {
            let derived = producer_class(fatal(true), Some(code), TxnId::Derived);
            assert_eq!(derived, Class::Renew, "{code:?}");
            // Another instance may have a configured id: the fence may be a zombie's.
            let configured = producer_class(fatal(true), Some(code), TxnId::Configured);
            assert_eq!(configured, fatal(true), "{code:?}");
        }
        // The coordinator's INVALID_TXN_STATE (librdkafka's fatal state): never a zombie's.
        for id in [TxnId::Derived, TxnId::Configured] {
            let state = producer_class(fatal(false), Some(InvalidTransactionalState), id);
            assert_eq!(state, Class::Renew);
        }
        // A leader that lost the producer's sequence (seen when a coordinator's broker was killed).
        let seq = Some(OutOfOrderSequenceNumber);
        assert_eq!(
            producer_class(fatal(false), seq, TxnId::Derived),
            Class::Renew
        );
        assert_eq!(
            producer_class(fatal(false), seq, TxnId::Configured),
            fatal(false)
        );
        // Other fatal errors stop; `_STATE` is no transaction; the rest keep their class.
        let auth = Some(TransactionalIdAuthorizationFailed);
        let derived = TxnId::Derived;
        assert_eq!(producer_class(fatal(false), auth, derived), fatal(false));
        let no_txn = producer_class(Class::Abortable, Some(State), derived);
        assert_eq!(no_txn, Class::NoTransaction);
        let timed_out = Some(OperationTimedOut);
        assert_eq!(
            producer_class(Class::Retriable, timed_out, derived),
            Class::Retriable
        );
    }

    /// librdkafka's own mock cluster: a transaction whose group coordinator goes down before the
    /// offsets are sent. librdkafka 2.12 waits for that coordinator past the call's time-out
    /// (issue #5456); the call as this crate makes it gives up and asks for a new producer.
    #[test]
    fn offsets_for_a_coordinator_that_went_away_do_not_hold_the_commit_for_ever() {
        use rdkafka::mocking::{MockCluster, MockCoordinator};
        use rdkafka::producer::{BaseRecord, DefaultProducerContext};
        use rdkafka::ClientConfig;
        use std::time::Instant;

        let cluster = MockCluster::new(3).unwrap();
        cluster
            .coordinator(MockCoordinator::Transaction("txn".into()), 1)
            .unwrap();
        cluster
            .coordinator(MockCoordinator::Group("group".into()), 2)
            .unwrap();
        cluster.create_topic("out", 1, 3).unwrap();
        let servers = cluster.bootstrap_servers();
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("transactional.id", "txn")
            .create()
            .unwrap();
        producer.init_transactions(Duration::from_secs(10)).unwrap();
        producer.begin_transaction().unwrap();
        producer
            .send(BaseRecord::to("out").key("k").payload("v"))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", "group")
            .create()
            .unwrap();
        let group = Arc::new(consumer.group_metadata().unwrap());
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("in", 0, Offset::Offset(5))
            .unwrap();
        cluster.broker_down(2).unwrap();

        let live = Live {
            producer: Arc::new(producer),
            group: Some(group),
            id: TxnId::Derived,
        };
        let timeout = Duration::from_secs(2);
        let started = Instant::now();
        // Bounded here too, so that without the guard the test fails instead of hanging.
        let outer = timeout + HUNG_MARGIN + Duration::from_secs(20);
        let answer = super::super::hung_call::within("test", outer, move || {
            live.send_offsets(&offsets, timeout)
        })
        .unwrap();
        let took = started.elapsed();
        let e = answer.expect("send_offsets returned within its time-out and margin");
        assert!(
            took < timeout + HUNG_MARGIN + Duration::from_secs(3),
            "{took:?}"
        );
        // Renewed when librdkafka hung (2.12); any error librdkafka gives in time is fine too.
        println!("answered in {took:?}: {e:?}");
        assert!(e.is_err(), "the group coordinator is down");
    }
}
