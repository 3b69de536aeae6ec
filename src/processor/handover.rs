//! What a revoke does with the work of the partitions it takes: commit it, or, when the
//! assignment was lost (the group moved on without this instance), never commit it (rules 12 and
//! 14 of `docs/delivery.md`). The consumer's context ([`super::rebalance`]) acts on it.

/// What a revoke does with the work of the partitions it takes (rules 12 and 14 of
/// `docs/delivery.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Revoked: the partitions' outputs, then their offsets (under exactly-once the transaction
    /// holding both) are committed before the revoke returns.
    Commit,
    /// Lost, at-least-once: the partitions already have other owners; their workers stop and
    /// nothing of theirs is committed (the new owners process again what was not).
    Drop,
    /// Lost, exactly-once: the open transaction holds the lost partitions' outputs, so it is
    /// aborted, and the partitions still owned rewind to their committed offsets.
    AbortAndRewind,
}

pub fn handover(lost: bool, exactly_once: bool) -> Handover {
    match (lost, exactly_once) {
        (false, _) => Handover::Commit,
        (true, false) => Handover::Drop,
        (true, true) => Handover::AbortAndRewind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule 14 of docs/delivery.md: a lost assignment is never committed as if revoked.
    #[test]
    fn a_lost_assignment_is_dropped_or_aborted_never_committed() {
        assert_eq!(handover(false, false), Handover::Commit);
        assert_eq!(handover(false, true), Handover::Commit);
        assert_eq!(handover(true, false), Handover::Drop);
        assert_eq!(handover(true, true), Handover::AbortAndRewind);
    }
}
