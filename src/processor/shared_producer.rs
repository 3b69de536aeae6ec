//! A cluster's producer as the workers, the commits and the shutdown share it. Under exactly-once
//! the main cluster's producer is replaced when the transaction coordinator has fenced its epoch
//! (rule 10 of `docs/delivery.md`): whoever sends takes the current one at each send.

use std::sync::{Arc, RwLock};

use rdkafka::producer::ThreadedProducer;

use super::acks::ProducerCtx;

/// One cluster's producer.
pub type Producer = Arc<ThreadedProducer<ProducerCtx>>;

/// The current producer of one cluster; replaced only while no worker runs (a rewind).
pub struct SharedProducer(RwLock<Producer>);

impl SharedProducer {
    pub fn new(producer: Producer) -> Arc<Self> {
        Arc::new(SharedProducer(RwLock::new(producer)))
    }

    /// The producer now.
    pub fn get(&self) -> Producer {
        self.0.read().expect("producer lock").clone()
    }

    /// Puts `producer` in place of the current one, which it returns.
    pub fn replace(&self, producer: Producer) -> Producer {
        std::mem::replace(&mut *self.0.write().expect("producer lock"), producer)
    }
}
