//! Reading a consumer's records a batch at a time (`rd_kafka_consume_batch_queue`), for the
//! changelog restores.
//!
//! rust-rdkafka's consumers hand out one record per poll: a queue lock, librdkafka's event and
//! the crate's own time-out arithmetic for every record. A restore reads every record of its
//! changelog partition as fast as it can, and that per-record cost was an eighth of its CPU
//! (BENCHMARKS.md, "Restore: a batch at a time"). librdkafka's batch call takes up to a batch's
//! records from the queue under one lock; the crate does not wrap it, so this file does, with
//! the little unsafe code that takes (everything else reads rust-rdkafka's own types).

use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// A consumer read in batches from its queue (the one its assigned partitions deliver to).
pub struct BatchConsumer {
    queue: *mut rdsys::rd_kafka_queue_t,
    slots: Vec<*mut rdsys::rd_kafka_message_t>,
    consumer: BaseConsumer,
}

// The queue handle is librdkafka's, thread-safe, and only used through `&mut self`.
unsafe impl Send for BatchConsumer {}

/// One record of a batch, or what librdkafka says instead of one.
#[derive(Debug)]
pub enum Record<'b> {
    Message {
        offset: i64,
        key: Option<&'b [u8]>,
        payload: Option<&'b [u8]>,
    },
    /// The end of the partition for now (`enable.partition.eof`): every record before `offset`
    /// was handed out before this, or skipped (an aborted transaction's, a transaction marker).
    /// Under read_committed the end is the last stable offset.
    Eof {
        offset: i64,
    },
    Error(KafkaError),
}

impl BatchConsumer {
    /// A consumer of `config` (which names a `group.id`: the queue is the group's) reading up to
    /// `size` records a call. It never commits: librdkafka hands the result of a commit made
    /// without a callback to the batch call as if it were a record, and aborts the process.
    pub fn create(mut config: ClientConfig, size: usize) -> KafkaResult<Self> {
        let consumer: BaseConsumer = config.set("enable.auto.commit", "false").create()?;
        // Safety: the client pointer is valid while `consumer` is, which outlives the queue
        // (released in `drop`, before the consumer's fields are).
        let queue = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        if queue.is_null() {
            return Err(KafkaError::ClientCreation(
                "a batch consumer needs a group.id: its queue is the group's".into(),
            ));
        }
        Ok(BatchConsumer {
            queue,
            slots: vec![std::ptr::null_mut(); size.max(1)],
            consumer,
        })
    }

    /// The consumer, to assign partitions and ask for positions. Its records are read by
    /// [`BatchConsumer::next`] only.
    pub fn consumer(&self) -> &BaseConsumer {
        &self.consumer
    }

    /// The records queued now, at most the reader's size; if there are none, the first to
    /// arrive within `timeout`; none once it passed with nothing.
    ///
    /// librdkafka's batch call waits for a whole batch (or its time-out) once the queue is
    /// empty, which after a partition's last records is the whole time-out: so it is only
    /// asked for what is there, and an empty queue is waited on for one record.
    pub fn next(&mut self, timeout: Duration) -> Batch<'_> {
        // Safety: `slots` has room for the count passed; librdkafka fills that many at most.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue,
                0,
                self.slots.as_mut_ptr(),
                self.slots.len(),
            )
        };
        // -1 only for an invalid queue, which `create` does not make.
        let mut n = usize::try_from(n).unwrap_or(0);
        if n == 0 {
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // Safety: as above; the message is this batch's, destroyed with it.
            let first = unsafe { rdsys::rd_kafka_consume_queue(self.queue, ms) };
            if !first.is_null() {
                self.slots[0] = first;
                n = 1;
            }
        }
        Batch {
            messages: &self.slots[..n],
        }
    }
}

impl Drop for BatchConsumer {
    fn drop(&mut self) {
        // Safety: the reference taken in `create`, released once, before the consumer closes.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue) };
    }
}

/// Records taken from the queue; freed when dropped.
pub struct Batch<'r> {
    messages: &'r [*mut rdsys::rd_kafka_message_t],
}

impl Batch<'_> {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.messages.iter().map(|&m| {
            // Safety: librdkafka's messages, alive until this batch is dropped.
            let m = unsafe { &*m };
            match m.err {
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Record::Message {
                    offset: m.offset,
                    key: unsafe { bytes(m.key as *const u8, m.key_len) },
                    payload: unsafe { bytes(m.payload as *const u8, m.len) },
                },
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                    Record::Eof { offset: m.offset }
                }
                err => Record::Error(KafkaError::MessageConsumption(RDKafkaErrorCode::from(err))),
            }
        })
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for &m in self.messages {
            // Safety: each message handed out by this batch, destroyed once.
            unsafe { rdsys::rd_kafka_message_destroy(m) };
        }
    }
}

/// A librdkafka buffer as a slice (`None` for a null one: no key, or a tombstone).
///
/// # Safety
/// `ptr` is null or valid for `len` bytes for the returned lifetime.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr, len) })
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;

    #[test]
    fn reads_every_record_in_order_in_batches_then_the_end() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("log", 1, 1).unwrap();
        let servers = cluster.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .unwrap();
        for i in 0..2_500 {
            let key = format!("device-{i}");
            let record = BaseRecord::<str, [u8]>::to("log").key(&key);
            // Every tenth a tombstone: no payload at all, not an empty one.
            let value = i.to_string();
            let record = if i % 10 == 0 {
                record
            } else {
                record.payload(value.as_bytes())
            };
            producer.send(record).unwrap();
        }
        producer.flush(Duration::from_secs(5)).unwrap();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &servers)
            .set("group.id", "restore")
            .set("enable.partition.eof", "true")
            // Were it to commit (librdkafka's default), a commit's result would reach the batch
            // call within the test, and librdkafka would abort the process.
            .set("auto.commit.interval.ms", "50");
        let mut reader = BatchConsumer::create(config, 1_000).unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("log", 0, Offset::Beginning)
            .unwrap();
        reader.consumer().assign(&tpl).unwrap();

        let (mut next, mut largest) = (0i64, 0usize);
        let read = std::time::Instant::now();
        loop {
            let batch = reader.next(Duration::from_secs(30));
            assert!(!batch.is_empty(), "records or the end within 30 s");
            largest = largest.max(batch.records().count());
            let mut end = false;
            for record in batch.records() {
                match record {
                    Record::Message {
                        offset,
                        key,
                        payload,
                    } => {
                        assert_eq!(offset, next);
                        assert_eq!(key, Some(format!("device-{next}").as_bytes()));
                        let value = next.to_string();
                        let expected = (next % 10 != 0).then_some(value.as_bytes());
                        assert_eq!(payload, expected, "offset {offset}");
                        next += 1;
                    }
                    Record::Eof { offset } => {
                        assert_eq!(offset, next, "the end is where the records stopped");
                        end = true
                    }
                    Record::Error(e) => panic!("{e}"),
                }
            }
            if end {
                break;
            }
        }
        assert_eq!(next, 2_500, "every record, then the end");
        assert!(largest > 1, "records came in batches, not one by one");
        assert!(largest <= 1_000, "never more than the reader's size");
        // A batch call waits for a whole batch once the queue is empty: the last records (fewer)
        // and the end would each have waited out the 30 s.
        assert!(
            read.elapsed() < Duration::from_secs(30),
            "no batch waited for its time-out"
        );
        let waited = std::time::Instant::now();
        assert!(
            reader.next(Duration::from_millis(500)).is_empty(),
            "nothing past the end"
        );
        assert!(
            waited.elapsed() >= Duration::from_millis(400),
            "an empty queue is waited on"
        );
    }
}
