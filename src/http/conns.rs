//! The server's connection table: at most [`MAX_CONNECTIONS`](super::MAX_CONNECTIONS) at once,
//! and a newcomer is never turned away for an idle connection.
//!
//! Probes come first: a Kubelet probe opens a connection and sends its request at once, while the
//! connections that starve a server hold a slot and send nothing (or trickle, or idle between
//! keep-alive requests). So when the table is full, a new connection takes the slot of the
//! connection that has been idle longest (no request being answered), which is closed. Only when
//! every connection is busy answering a request is the newcomer closed. Held-open idle
//! connections, however many, then cost a probe nothing: each newcomer evicts the oldest of them,
//! and a probe's own connection, the newest, would only be evicted after a full table's worth of
//! later arrivals before its request head is read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// The table of open connections.
pub(super) struct Table {
    slots: Mutex<Vec<Arc<Slot>>>,
    capacity: usize,
    epoch: Instant,
    next_id: AtomicU64,
}

/// One open connection.
pub(super) struct Slot {
    id: u64,
    /// Requests being answered (0 or 1 on HTTP/1.1).
    busy: AtomicUsize,
    /// When it last became idle (accepted, or answered a request), in µs since the table's epoch.
    idle_since: AtomicU64,
    /// Cancelled when a newcomer takes this slot.
    evicted: CancellationToken,
}

/// A connection's place in the table; leaving it (drop) frees the slot.
pub(super) struct Admitted {
    table: Arc<Table>,
    slot: Arc<Slot>,
}

impl Table {
    pub(super) fn new(capacity: usize) -> Arc<Table> {
        Arc::new(Table {
            slots: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A slot for a new connection: a free one, else the longest-idle connection's (which is told
    /// to close); `None` when every connection is answering a request.
    pub(super) fn admit(self: &Arc<Table>) -> Option<Admitted> {
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now()),
            evicted: CancellationToken::new(),
        });
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= self.capacity {
            let victim = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, s)| s.idle_since.load(Ordering::Relaxed))
                .map(|(i, _)| i)?;
            slots.swap_remove(victim).evicted.cancel();
        }
        slots.push(slot.clone());
        Some(Admitted {
            table: self.clone(),
            slot,
        })
    }

    /// Connections in the table.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

impl Admitted {
    /// Resolves when a newcomer took this connection's slot.
    pub(super) async fn evicted(&self) {
        self.slot.evicted.cancelled().await
    }

    /// Whether a request is being answered.
    pub(super) fn is_busy(&self) -> bool {
        self.slot.busy.load(Ordering::Acquire) > 0
    }

    /// Marks a request as being answered until the returned guard is dropped.
    pub(super) fn request(&self) -> Busy {
        self.slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy {
            table: self.table.clone(),
            slot: self.slot.clone(),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut slots = self.table.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = slots.iter().position(|s| s.id == self.slot.id) {
            slots.swap_remove(i);
        }
    }
}

/// A request being answered; the connection is idle again (and evictable) once it is dropped.
pub(super) struct Busy {
    table: Arc<Table>,
    slot: Arc<Slot>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slot
            .idle_since
            .store(self.table.now(), Ordering::Relaxed);
        self.slot.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_longest_idle_connection_never_a_busy_one() {
        let t = Table::new(3);
        let a = t.admit().unwrap();
        let b = t.admit().unwrap();
        let c = t.admit().unwrap();
        assert_eq!(t.len(), 3);
        // `a` answers a request; `b` has been idle longest of the others.
        let busy_a = a.request();
        let d = t.admit().unwrap();
        assert!(b.slot.evicted.is_cancelled());
        assert!(!a.slot.evicted.is_cancelled() && !c.slot.evicted.is_cancelled());
        assert_eq!(t.len(), 3);
        // `c` answered a request after `d` arrived: `d` is now the longest idle.
        drop(c.request());
        let e = t.admit().unwrap();
        assert!(d.slot.evicted.is_cancelled() && !c.slot.evicted.is_cancelled());
        // Everyone busy: the newcomer is refused.
        let _busy = (c.request(), e.request());
        assert!(t.admit().is_none());
        drop(busy_a);
        assert!(t.admit().is_some());
        assert!(a.slot.evicted.is_cancelled());
        // Leaving frees the slot (an evicted connection has left already).
        assert_eq!(t.len(), 2);
        drop((b, d));
        assert_eq!(t.len(), 2);
        drop(e);
        assert_eq!(t.len(), 1);
    }
}
