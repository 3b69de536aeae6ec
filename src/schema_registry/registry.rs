//! Schemas by id, fetched once and kept parsed: a bounded cache in front of the [`Client`], where
//! every id is fetched at most once at a time however many partitions ask for it at the same
//! moment (they all wait for the one request), and parsed once (records never re-parse it).
//!
//! What is kept: a schema, or the [`Problem`] of an id the registry does not know or a schema no
//! record can be read with (each record of it becomes that dead letter without asking again). An
//! unknown id is asked again after [`NOT_FOUND_TTL`], in case it was registered since. A registry
//! that could not answer is not kept: the next ask tries again (the caller waits in between).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use indexmap::IndexMap;

use super::client::{Client, FetchError};
use super::problem::Problem;
use super::schema::{Resolved, Schema};
use crate::core::ErrorKind;

/// How long an id the registry did not know stays unknown before it is asked again.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(30);

/// One attempt at an id, shared by everyone who asks while it runs. `Err`: the registry could
/// not answer (`reason` label, message).
type Attempt = Shared<BoxFuture<'static, Result<Resolved, (&'static str, String)>>>;

enum Slot {
    Ready {
        resolved: Resolved,
        until: Option<Instant>,
    },
    Fetching(Attempt),
}

/// The schemas of a process, shared by its partition workers.
pub struct Registry {
    client: Arc<Client>,
    slots: Mutex<IndexMap<u32, Slot>>,
    max_entries: usize,
}

impl Registry {
    pub fn new(client: Client, max_entries: usize) -> Registry {
        Registry {
            client: Arc::new(client),
            slots: Mutex::new(IndexMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// What `id` resolves to, if that is known without asking the registry.
    pub fn cached(&self, id: u32) -> Option<Resolved> {
        match self.slots.lock().expect("registry lock").get(&id) {
            Some(Slot::Ready { resolved, until }) if until.is_none_or(|t| Instant::now() < t) => {
                Some(resolved.clone())
            }
            _ => None,
        }
    }

    /// Resolves `id`: from the cache, or by joining the attempt under way, or by starting one.
    /// `Err((reason, message))`: the registry could not answer this time.
    pub async fn resolve(self: &Arc<Self>, id: u32) -> Result<Resolved, (&'static str, String)> {
        let attempt = {
            let mut slots = self.slots.lock().expect("registry lock");
            match slots.get(&id) {
                Some(Slot::Ready { resolved, until })
                    if until.is_none_or(|t| Instant::now() < t) =>
                {
                    return Ok(resolved.clone())
                }
                Some(Slot::Fetching(a)) => a.clone(),
                _ => {
                    let client = self.client.clone();
                    let a = async move { fetch(&client, id).await }.boxed().shared();
                    slots.insert(id, Slot::Fetching(a.clone()));
                    a
                }
            }
        };
        let result = attempt.clone().await;
        let mut slots = self.slots.lock().expect("registry lock");
        // Only the attempt that is still in the slot is settled (a later one may have replaced it).
        let current = matches!(slots.get(&id), Some(Slot::Fetching(a)) if a.ptr_eq(&attempt));
        if current {
            match &result {
                Ok(resolved) => {
                    let until = matches!(resolved, Err(p) if p.kind == ErrorKind::UnknownSchema)
                        .then(|| Instant::now() + NOT_FOUND_TTL);
                    slots.shift_remove(&id);
                    slots.insert(
                        id,
                        Slot::Ready {
                            resolved: resolved.clone(),
                            until,
                        },
                    );
                    self.evict(&mut slots);
                }
                Err(_) => {
                    slots.shift_remove(&id);
                }
            }
        }
        result
    }

    /// Drops the oldest kept entries past the bound (never an attempt under way).
    fn evict(&self, slots: &mut IndexMap<u32, Slot>) {
        while slots.len() > self.max_entries {
            let oldest = slots
                .iter()
                .position(|(_, s)| matches!(s, Slot::Ready { .. }));
            match oldest {
                Some(i) => {
                    slots.shift_remove_index(i);
                }
                None => break,
            }
        }
    }

    /// Schemas kept (and attempts under way), for the metric.
    pub fn len(&self) -> usize {
        self.slots.lock().expect("registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fetches and parses `id`. Parsing runs off the runtime's threads: compiling a large `.proto`
/// with its imports takes milliseconds.
async fn fetch(client: &Client, id: u32) -> Result<Resolved, (&'static str, String)> {
    match client.schema(id).await {
        Ok(fetched) => {
            let parsed = tokio::task::spawn_blocking(move || Schema::parse(&fetched))
                .await
                .map_err(|e| ("invalid_response", format!("parsing schema {id}: {e}")))?;
            Ok(parsed.map(Arc::new).map_err(Arc::new))
        }
        Err(FetchError::NotFound(why)) => {
            Ok(Err(Arc::new(Problem::new(ErrorKind::UnknownSchema, why))))
        }
        Err(FetchError::Unavailable { reason, message }) => Err((reason, message)),
    }
}

#[cfg(test)]
mod tests;
