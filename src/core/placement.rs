//! Where a partition's device state lives in memory.
//!
//! A partition's devices are long-lived small allocations. Mixed into the same pages as every
//! other partition's, they pin those pages when the partition moves to another instance: the
//! pages stay resident, partly empty, and the process grows a little with every rebalance. A
//! [`Placement`] runs the state's allocations somewhere of their own (a jemalloc arena per
//! partition, `crate::allocator`), so that a revoked partition's state leaves whole pages that go
//! back to the OS. The core only calls it; what it does is the adapter's business.

/// Runs the allocations of one partition's state in a place of their own.
pub trait Placement: Send + Sync + std::fmt::Debug {
    /// Calls `f`, with the allocations and frees it makes placed with this state's others.
    fn place(&self, f: &mut dyn FnMut());
}
