//! A partition worker's link to the status page: it offers URL records to the recent ring and
//! answers device queries from its own select loop, so the engine it owns stays lock-free.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::device::{device_json, StateSource};
use super::recent::Sampler;
use super::StatusHub;
use crate::core::Engine;

/// "What is the state of this device?", asked of every worker of the instance.
pub struct DeviceQuery {
    pub device_id: Arc<str>,
    /// The worker's answer: the device's state, or `None` when its partition has none.
    pub reply: oneshot::Sender<Option<Value>>,
}

/// Queries a worker may have waiting; more are refused (the caller then reports it busy).
pub const QUERY_QUEUE: usize = 16;

pub struct WorkerLink {
    inner: Option<Inner>,
}

struct Inner {
    hub: Arc<StatusHub>,
    id: u64,
    topic: String,
    partition: i32,
    queries: mpsc::Receiver<DeviceQuery>,
    sampler: Sampler,
}

impl WorkerLink {
    /// Registers the worker of `topic`/`partition` with `hub` (an inert link without one).
    pub fn new(hub: Option<&Arc<StatusHub>>, topic: &str, partition: i32) -> Self {
        let inner = hub.map(|hub| {
            let (tx, queries) = mpsc::channel(QUERY_QUEUE);
            let id = hub.register(topic, partition, tx);
            Inner {
                hub: hub.clone(),
                id,
                topic: topic.to_owned(),
                partition,
                queries,
                sampler: Sampler::default(),
            }
        });
        WorkerLink { inner }
    }

    /// Offers an encoded URL record (of `region`) for the page's recent records; cheap.
    #[inline]
    pub fn offer(&mut self, region: &str, json: &[u8], now_ms: i64) {
        if let Some(i) = &mut self.inner {
            i.sampler.offer(&i.hub.recent, region, json, now_ms);
        }
    }

    /// The next query (never resolves for an inert link): an arm of the worker's select loop.
    pub async fn query(&mut self) -> DeviceQuery {
        match &mut self.inner {
            Some(i) => match i.queries.recv().await {
                Some(q) => q,
                // The hub holds a sender for as long as the link is registered.
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Answers `q` from `engine`'s state.
    pub fn answer(&self, q: DeviceQuery, engine: &Engine) {
        let Some(i) = &self.inner else { return };
        let states = engine.states();
        let answer = states.get(&q.device_id).map(|state| {
            device_json(
                &q.device_id,
                &i.topic,
                i.partition,
                state,
                states.limits(),
                StateSource::Instance,
            )
        });
        let _ = q.reply.send(answer);
    }

    /// Answers every waiting query (between batches, so a busy worker answers too).
    pub fn answer_waiting(&mut self, engine: &Engine) {
        while let Some(q) = self.inner.as_mut().and_then(|i| i.queries.try_recv().ok()) {
            self.answer(q, engine);
        }
    }
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        if let Some(i) = &self.inner {
            i.hub.unregister(&i.topic, i.partition, i.id);
        }
    }
}
