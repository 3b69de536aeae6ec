//! A partition's records between being read and being finished (delivered to every endpoint or
//! dead-lettered), in offset order. Pure: it only says which offset may be committed — the one
//! after the longest finished prefix — so a record is never committed before an earlier one.

use std::collections::VecDeque;

/// In-flight records of one partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Records in offset order: (offset, finished). The front's sequence number is `base_seq`.
    pending: VecDeque<(i64, bool)>,
    base_seq: u64,
    unfinished: usize,
}

impl OffsetTracker {
    /// Adds the next record of the partition; returns its sequence number, the handle that
    /// [`OffsetTracker::finish`] takes. `finished` is true for records with nothing to deliver.
    pub fn push(&mut self, offset: i64, finished: bool) -> u64 {
        let seq = self.base_seq + self.pending.len() as u64;
        self.pending.push_back((offset, finished));
        if !finished {
            self.unfinished += 1;
        }
        seq
    }

    /// Marks a record finished. Unknown or repeated sequence numbers are ignored.
    pub fn finish(&mut self, seq: u64) {
        let Some(idx) = seq.checked_sub(self.base_seq) else {
            return;
        };
        if let Some(slot) = self.pending.get_mut(idx as usize) {
            if !slot.1 {
                slot.1 = true;
                self.unfinished -= 1;
            }
        }
    }

    /// Drops the finished prefix and returns its last offset: everything up to and including it
    /// is done (commit offset + 1). `None` when the front is unfinished or nothing is pending.
    pub fn take_committable(&mut self) -> Option<i64> {
        let mut last = None;
        while let Some(&(offset, true)) = self.pending.front() {
            self.pending.pop_front();
            self.base_seq += 1;
            last = Some(offset);
        }
        last
    }

    /// Records read and not yet taken by [`OffsetTracker::take_committable`].
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records read and not yet finished.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_finished_prefix() {
        let mut t = OffsetTracker::default();
        let a = t.push(10, false);
        let b = t.push(11, true);
        let c = t.push(12, false);
        assert_eq!((t.len(), t.unfinished()), (3, 2));
        assert_eq!(t.take_committable(), None);
        t.finish(c);
        assert_eq!(t.take_committable(), None, "10 is still in flight");
        t.finish(a);
        assert_eq!(t.take_committable(), Some(12));
        assert!(t.is_empty());
        assert_eq!(t.unfinished(), 0);
        // Old and repeated handles are harmless.
        t.finish(b);
        t.finish(a);
        let d = t.push(13, false);
        assert_eq!(d, 3);
        t.finish(d);
        t.finish(d);
        assert_eq!(t.unfinished(), 0);
        assert_eq!(t.take_committable(), Some(13));
    }

    #[test]
    fn any_finishing_order_commits_everything_in_the_end() {
        let mut t = OffsetTracker::default();
        let seqs: Vec<u64> = (0..50).map(|o| t.push(o, o % 7 == 0)).collect();
        let mut committed = -1;
        for s in seqs.iter().rev().step_by(2).chain(seqs.iter().step_by(2)) {
            t.finish(*s);
            if let Some(o) = t.take_committable() {
                assert!(o > committed);
                committed = o;
            }
        }
        assert_eq!(committed, 49);
        assert_eq!(t.unfinished(), 0);
    }
}
