//! A partition worker's side of Schema Registry input: the schemas it has at hand (a small map
//! in front of the process's [`Registry`](crate::schema_registry::Registry), so the per-record
//! lookup takes no lock), and the wait for a schema that is not.
//!
//! A record whose schema is not at hand holds its partition, in order: the worker ends its batch
//! before it (nothing after it is read), leaves the transaction gate, and asks the registry. While
//! the registry cannot answer, the worker asks again with back-off (doubling from
//! `retry_backoff_ms` to `retry_backoff_max_ms`), counts each failure
//! (`aepiot_schema_registry_errors_total`) and says what it waits for (`/readyz`, the status
//! page); meanwhile it takes acks, so the records before the waiting one are committed, and other
//! partitions go on. Told to stop (a revoke, a shutdown, a rewind), it stops waiting at once: the
//! waiting record was not processed, its offset is not committed, and the partition's next owner
//! reads it again. A drain never waits for the registry.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::core::{Engine, Output, RecordMeta};
use crate::events::registry::{RegistryUnavailable, RegistryWaitEnded};
use crate::kafka::clock::Clock;
use crate::schema_registry::dispatch::{self, Needs};
use crate::schema_registry::schema::Resolved;
use crate::schema_registry::RegistryInput;

/// Most schemas a worker keeps at hand (the process's registry keeps more).
const LOCAL_SCHEMAS: usize = 64;

pub(super) struct Schemas {
    input: Arc<RegistryInput>,
    local: HashMap<u32, Resolved>,
    /// The decoded event of the record being processed.
    buf: Vec<u8>,
}

impl Schemas {
    pub(super) fn new(input: Arc<RegistryInput>) -> Schemas {
        Schemas {
            input,
            local: HashMap::new(),
            buf: Vec::with_capacity(1024),
        }
    }

    /// The schema id `payload` waits for, if any; a schema the process's registry has is taken
    /// at hand on the way.
    pub(super) fn needs(&mut self, payload: Option<&[u8]>) -> Option<u32> {
        let (local, registry) = (&mut self.local, &self.input.registry);
        let needs = dispatch::needs(payload, |id| {
            local.contains_key(&id)
                || registry.cached(id).is_some_and(|r| {
                    keep(local, id, r);
                    true
                })
        });
        match needs {
            Needs::Nothing => None,
            Needs::Schema(id) => Some(id),
        }
    }

    pub(super) fn process<'e>(
        &mut self,
        engine: &'e mut Engine,
        payload: Option<&[u8]>,
        meta: &RecordMeta<'_>,
    ) -> Output<'e> {
        let local = &self.local;
        dispatch::process(
            engine,
            &mut self.buf,
            payload,
            |id| local.get(&id).cloned(),
            meta,
        )
    }
}

fn keep(local: &mut HashMap<u32, Resolved>, id: u32, resolved: Resolved) {
    if local.len() >= LOCAL_SCHEMAS {
        local.clear();
    }
    local.insert(id, resolved);
}

impl Worker {
    /// Waits until schema `id` (if any) is resolved (a schema, or a problem its records are dead
    /// letters for), taking acks and status queries meanwhile. `false`: told to stop first.
    pub(super) async fn wait_for_schema(
        &mut self,
        id: Option<u32>,
        stop: &CancellationToken,
    ) -> bool {
        let (Some(id), Some(schemas)) = (id, &self.schemas) else {
            return true;
        };
        let input = schemas.input.clone();
        let env = self.inflight.env.clone();
        let (topic, partition) = (self.inflight.topic.clone(), self.inflight.partition);
        let mut backoff = input.retry_backoff;
        let mut waited = false;
        let resolved = loop {
            let attempt = input.registry.resolve(id);
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {
                        self.stop_waiting(&input, &topic, partition, waited);
                        return false;
                    }
                    r = &mut attempt => break r,
                    Some(ack) = self.inflight.recv_ack() => {
                        self.inflight.on_ack(ack, &Clock::now());
                        self.after_acks(None).await;
                    }
                    q = self.status_link.query() => self.status_link.answer(q, &self.engine),
                }
            };
            env.metrics
                .schema_registry_schemas
                .set(input.registry.len() as i64);
            match result {
                Ok(resolved) => break resolved,
                Err((reason, message)) => {
                    waited = true;
                    RegistryUnavailable {
                        topic: &topic,
                        partition,
                        schema_id: id,
                        reason,
                        message: &message,
                        retry_in_ms: backoff.as_millis() as u64,
                        waiting: input.waits.failed(&topic, partition, id, &message),
                        now_ms: crate::kafka::clock::now_ms(),
                    }
                    .emit(&env.metrics);
                }
            }
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {
                        self.stop_waiting(&input, &topic, partition, waited);
                        return false;
                    }
                    _ = &mut sleep => break,
                    Some(ack) = self.inflight.recv_ack() => {
                        self.inflight.on_ack(ack, &Clock::now());
                        self.after_acks(None).await;
                    }
                    q = self.status_link.query() => self.status_link.answer(q, &self.engine),
                }
            }
            backoff = (backoff * 2).min(input.retry_backoff_max);
        };
        self.stop_waiting(&input, &topic, partition, waited);
        if let Some(schemas) = &mut self.schemas {
            keep(&mut schemas.local, id, resolved);
        }
        true
    }

    fn stop_waiting(&self, input: &RegistryInput, topic: &str, partition: i32, waited: bool) {
        RegistryWaitEnded {
            topic,
            partition,
            waited,
            waiting: input.waits.done(topic, partition),
        }
        .emit(&self.inflight.env.metrics);
    }
}
