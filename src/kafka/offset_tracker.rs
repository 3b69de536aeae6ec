//! A partition's records between being read and being finished, in offset order: which offset may
//! be committed. Pure (no I/O, no clock), shared by the processor's in-flight outputs
//! (`processor::inflight`) and the webhook service's partition readers, so both commit by the same
//! rule: the offset after the longest finished prefix, so a record is never committed before an
//! earlier one (rules 1 and 22 of `docs/delivery.md`).
//!
//! Each record gets a sequence number (its handle) and a slot holding its offset, the count of
//! its outputs still outstanding (acks, deliveries), and metadata `M` of the caller's (the
//! processor keeps when a record was read, for its latency histograms; the webhook service
//! nothing). A record is finished when its count is 0.

use std::collections::VecDeque;

/// One record in flight.
#[derive(Debug)]
struct Slot<M> {
    offset: i64,
    outstanding: u32,
    meta: M,
}

/// In-flight records of one partition.
#[derive(Debug)]
pub struct OffsetTracker<M = ()> {
    /// Records in offset order; the front's sequence number is `base_seq`.
    slots: VecDeque<Slot<M>>,
    base_seq: u64,
    /// Every record before this one was seen finished (moves forward only): a cache for
    /// [`OffsetTracker::finished_before`], whose callers ask again and again with a growing bound.
    finished_through: u64,
    /// Slots with outputs outstanding.
    unfinished: usize,
}

impl<M> Default for OffsetTracker<M> {
    fn default() -> Self {
        OffsetTracker {
            slots: VecDeque::new(),
            base_seq: 0,
            finished_through: 0,
            unfinished: 0,
        }
    }
}

impl<M> OffsetTracker<M> {
    /// Adds the next record of the partition with `outstanding` outputs to wait for (0: finished
    /// already); returns its sequence number.
    pub fn push(&mut self, offset: i64, outstanding: u32, meta: M) -> u64 {
        let seq = self.next_seq();
        self.slots.push_back(Slot {
            offset,
            outstanding,
            meta,
        });
        if outstanding > 0 {
            self.unfinished += 1;
        }
        seq
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.base_seq + self.slots.len() as u64
    }

    /// The sequence number of the oldest record not yet taken by
    /// [`OffsetTracker::take_committable`].
    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    /// Adds `n` outputs to wait for to record `seq`. Unknown sequence numbers are ignored.
    pub fn add(&mut self, seq: u64, n: u32) {
        if let Some(slot) = self.slot(seq) {
            let was_finished = slot.outstanding == 0;
            slot.outstanding += n;
            if was_finished && n > 0 {
                self.unfinished += 1;
            }
        }
    }

    /// One output of record `seq` is done. Returns the record's metadata when that was its last
    /// one. Unknown sequence numbers and records already finished are ignored.
    pub fn complete(&mut self, seq: u64) -> Option<&M> {
        let idx = seq.checked_sub(self.base_seq)?;
        let slot = self.slots.get_mut(idx as usize)?;
        if slot.outstanding == 0 {
            return None;
        }
        slot.outstanding -= 1;
        if slot.outstanding > 0 {
            return None;
        }
        self.unfinished -= 1;
        Some(&slot.meta)
    }

    /// The offset of record `seq`, while it is tracked.
    pub fn offset_of(&self, seq: u64) -> Option<i64> {
        let idx = seq.checked_sub(self.base_seq)?;
        self.slots.get(idx as usize).map(|s| s.offset)
    }

    /// Whether every record before `seq` has been seen finished. Outputs added later to such a
    /// record do not make this false again (the processor adds a state cut's records to the
    /// cut's last input only once this said true).
    pub fn finished_before(&mut self, seq: u64) -> bool {
        self.finished_through = self.finished_through.max(self.base_seq);
        while self.finished_through < seq {
            match self
                .slots
                .get((self.finished_through - self.base_seq) as usize)
            {
                Some(s) if s.outstanding == 0 => self.finished_through += 1,
                Some(_) => return false,
                None => break,
            }
        }
        self.finished_through >= seq
    }

    /// Drops the finished prefix, stopping before sequence number `limit` (`u64::MAX`: no
    /// limit), and returns its last offset: everything up to and including it is done (commit
    /// offset + 1). `None` when nothing was dropped.
    pub fn take_committable(&mut self, limit: u64) -> Option<i64> {
        let mut last = None;
        while self.base_seq < limit && self.slots.front().is_some_and(|s| s.outstanding == 0) {
            last = self.slots.pop_front().map(|s| s.offset);
            self.base_seq += 1;
        }
        last
    }

    /// Records tracked and not yet taken by [`OffsetTracker::take_committable`].
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records with outputs outstanding.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    fn slot(&mut self, seq: u64) -> Option<&mut Slot<M>> {
        let idx = seq.checked_sub(self.base_seq)?;
        self.slots.get_mut(idx as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with one output (`finished`: none).
    fn push(t: &mut OffsetTracker, offset: i64, finished: bool) -> u64 {
        t.push(offset, u32::from(!finished), ())
    }

    #[test]
    fn commits_only_the_finished_prefix() {
        let mut t = OffsetTracker::default();
        let a = push(&mut t, 10, false);
        let b = push(&mut t, 11, true);
        let c = push(&mut t, 12, false);
        assert_eq!((t.len(), t.unfinished()), (3, 2));
        assert_eq!(t.take_committable(u64::MAX), None);
        t.complete(c);
        assert_eq!(t.take_committable(u64::MAX), None, "10 is still in flight");
        t.complete(a);
        assert_eq!(t.take_committable(u64::MAX), Some(12));
        assert!(t.is_empty());
        assert_eq!(t.unfinished(), 0);
        // Old and repeated handles are harmless.
        t.complete(b);
        t.complete(a);
        let d = push(&mut t, 13, false);
        assert_eq!(d, 3);
        t.complete(d);
        t.complete(d);
        assert_eq!(t.unfinished(), 0);
        assert_eq!(t.take_committable(u64::MAX), Some(13));
    }

    #[test]
    fn any_finishing_order_commits_everything_in_the_end() {
        let mut t = OffsetTracker::default();
        let seqs: Vec<u64> = (0..50).map(|o| push(&mut t, o, o % 7 == 0)).collect();
        let mut committed = -1;
        for s in seqs.iter().rev().step_by(2).chain(seqs.iter().step_by(2)) {
            t.complete(*s);
            if let Some(o) = t.take_committable(u64::MAX) {
                assert!(o > committed);
                committed = o;
            }
        }
        assert_eq!(committed, 49);
        assert_eq!(t.unfinished(), 0);
    }

    #[test]
    fn the_last_output_returns_the_metadata_once() {
        let mut t = OffsetTracker::default();
        let a = t.push(5, 0, "a");
        assert_eq!(t.unfinished(), 0);
        t.add(a, 2);
        t.add(a, 0);
        assert_eq!(t.unfinished(), 1);
        assert_eq!(t.complete(a), None, "one output still outstanding");
        assert_eq!(t.complete(a), Some(&"a"));
        assert_eq!(t.complete(a), None, "already finished");
        assert_eq!(t.unfinished(), 0);
        t.add(99, 1);
        assert_eq!(t.complete(99), None, "unknown sequence numbers are ignored");
        assert_eq!((t.offset_of(a), t.offset_of(1)), (Some(5), None));
    }

    #[test]
    fn the_limit_holds_back_finished_records() {
        let mut t = OffsetTracker::default();
        for o in 0..4 {
            push(&mut t, 100 + o, true);
        }
        assert_eq!(t.take_committable(0), None);
        assert_eq!(t.take_committable(2), Some(101));
        assert_eq!((t.base_seq(), t.next_seq()), (2, 4));
        assert_eq!(t.take_committable(u64::MAX), Some(103));
        assert_eq!(t.offset_of(1), None, "taken records are forgotten");
    }

    #[test]
    fn finished_before_looks_at_the_prefix_only_and_never_goes_back() {
        let mut t = OffsetTracker::default();
        let a = push(&mut t, 0, false);
        let b = push(&mut t, 1, true);
        let c = push(&mut t, 2, false);
        assert!(t.finished_before(0));
        assert!(!t.finished_before(1));
        t.complete(a);
        assert!(t.finished_before(2) && !t.finished_before(3));
        // Outputs added to a record already seen finished (a state cut's) do not undo it.
        t.add(b, 1);
        assert!(t.finished_before(2));
        t.complete(c);
        assert!(t.finished_before(3));
        assert!(!t.finished_before(4), "past the records tracked");
        assert_eq!(
            t.take_committable(u64::MAX),
            Some(0),
            "b waits for its new output"
        );
        t.complete(b);
        assert_eq!(t.take_committable(u64::MAX), Some(2));
        assert!(t.finished_before(3));
    }
}
