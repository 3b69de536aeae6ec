//! Writes a partition's device state changes to its changelog, so that a restart or a rebalance
//! restores them.
//!
//! At-least-once: changes are gathered per device and written in *cuts* (rules 2-4 of
//! `docs/delivery.md`: what a cut is, why state never runs ahead of outputs nor offsets ahead of
//! state): every `commit_interval_ms` the worker cuts after its latest record, encodes the
//! current state of each device changed since the last cut, and produces them only once every
//! output before the cut is acknowledged; [`super::inflight`] holds the offsets back until the
//! cut is acknowledged.
//!
//! Exactly-once: state records go into the open transaction with the outputs they reflect, so each
//! batch is cut and written at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use rdkafka::producer::BaseRecord;

use super::inflight::Inflight;
use crate::core::snapshot;
use crate::core::state::DeviceStates;

/// A cut waiting for the outputs before it to be acknowledged.
struct Cut {
    /// Sequence number of the first record after the cut.
    end_seq: u64,
    /// Device id and its encoded state; `None` is a tombstone (the device expired or was evicted).
    records: Vec<(CompactString, Option<Vec<u8>>)>,
}

pub struct StateWrites {
    topic: String,
    /// Devices changed since the last cut (a hash per success: foldhash, as the state's map).
    dirty: HashSet<CompactString, foldhash::fast::RandomState>,
    staged: Option<Cut>,
    interval: Duration,
    next_cut: Instant,
}

impl StateWrites {
    pub fn new(changelog_topic: String, interval: Duration) -> Self {
        StateWrites {
            topic: changelog_topic,
            dirty: HashSet::default(),
            staged: None,
            interval,
            next_cut: Instant::now() + interval,
        }
    }

    /// A device's state changed (a success).
    pub fn changed(&mut self, device_id: &str) {
        if !self.dirty.contains(device_id) {
            self.dirty.insert(CompactString::from(device_id));
        }
    }

    /// When the next cut is due, if anything waits for one.
    pub fn due_at(&self, inflight: &Inflight) -> Option<Instant> {
        (self.staged.is_none() && (!self.dirty.is_empty() || inflight.uncut()))
            .then_some(self.next_cut)
    }

    /// Whether a cut waits for acks.
    pub fn staged(&self) -> bool {
        self.staged.is_some()
    }

    /// Cuts after the latest record if the interval has passed (or `now` is `None`: a forced cut,
    /// at a drain). Expired and evicted devices are taken from `states`.
    pub fn cut(
        &mut self,
        states: &mut DeviceStates,
        inflight: &mut Inflight,
        now: Option<Instant>,
    ) {
        if self.staged.is_some() || now.is_some_and(|t| t < self.next_cut) {
            return;
        }
        self.next_cut = now.unwrap_or_else(Instant::now) + self.interval;
        for device in states.take_expired() {
            self.dirty.insert(device);
        }
        let end_seq = inflight.next_seq();
        if self.dirty.is_empty() {
            inflight.allow_commit_before(end_seq);
            return;
        }
        let records = self
            .dirty
            .drain()
            .map(|device| {
                let state = states.get(&device).map(|s| {
                    let mut buf = Vec::with_capacity(64);
                    snapshot::encode(s, &mut buf);
                    buf
                });
                (device, state)
            })
            .collect();
        self.staged = Some(Cut { end_seq, records });
    }

    /// Produces the staged cut once every output before it is acknowledged (at once with
    /// `now = true`, under exactly-once). Its acks count on the oldest record not yet committed.
    pub async fn write_when_acked(&mut self, inflight: &mut Inflight, now: bool) {
        let Some(cut) = &self.staged else { return };
        if !now && !inflight.outputs_acked_before(cut.end_seq) {
            return;
        }
        let cut = self.staged.take().expect("staged");
        // The state records' acks count on the oldest record not yet committed, so that no record
        // of the cut commits before the state it changed is durable. (Counted on the cut's last
        // record, the records before it committed while their state records were in flight; a
        // crash or a broker that never acknowledged them left the committed offset ahead of the
        // durable state.) Nothing left to commit before the cut: tombstones only, nothing waits.
        let holder = inflight
            .oldest_before(cut.end_seq)
            .unwrap_or(cut.end_seq.saturating_sub(1));
        inflight.add_outputs(holder, cut.records.len() as u32);
        inflight.allow_commit_before(cut.end_seq);
        let opaque = inflight.opaque(holder);
        for (device, state) in &cut.records {
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&self.topic, opaque)
                    .partition(inflight.partition)
                    .key(device.as_bytes());
            if let Some(state) = state {
                record = record.payload(state.as_slice());
            }
            inflight.send_or_stop(record).await;
        }
    }
}

#[cfg(test)]
impl StateWrites {
    /// The staged cut's devices, each with whether it carries a state (else a tombstone).
    pub fn staged_devices(&self) -> Vec<(String, bool)> {
        self.staged.as_ref().map_or_else(Vec::new, |cut| {
            cut.records
                .iter()
                .map(|(device, state)| (device.to_string(), state.is_some()))
                .collect()
        })
    }
}
