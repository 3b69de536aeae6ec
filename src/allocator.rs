//! The process's allocator: jemalloc (feature `jemalloc`, the default), with the device state of
//! each partition in an arena of its own, or past 64 partitions one shared by a few
//! ([`crate::core::placement`]).
//!
//! Why arenas: a partition's devices are long-lived small allocations. In jemalloc's shared
//! arenas they fill the same pages as every other partition's, so when a partition moves to
//! another instance its freed devices leave holes in pages that other partitions' devices keep
//! resident: live allocations stay flat across takeovers while resident pages grow after each
//! (see BENCHMARKS.md, "The diagnosis: 15 minutes, three takeovers"). With an arena per
//! partition, a revoked partition empties its own pages, and jemalloc's background thread gives
//! them back to the OS within its decay time.
//!
//! How: [`Allocator`] is jemalloc, except that while a thread runs inside [`ArenaLease::place`]
//! (a thread-local says which arena), allocations go to that arena with jemalloc's thread cache
//! bypassed (the cache would hand out memory of any arena). Only the state's own operations run
//! there: a few allocations per new or growing device, never the per-event records.
//!
//! Arenas are created on demand, up to [`MAX_ARENAS`], and reused: a revoked partition's arena
//! goes back to a pool for the next partition assigned. Past the cap, every partition still gets
//! an arena, shared: the one held by the fewest partitions. Why a cap: each arena costs ~130 KB
//! of resident allocator metadata (its bins and extent sets; measured by
//! `tests/allocator_placement.rs`), so an arena for each of 1,200 partitions would cost ~155 MB,
//! more than their devices' state at a million devices over that many partitions. Shared by a
//! few partitions, an arena still keeps their state apart from the per-event churn and from the
//! other arenas' partitions; a revoked partition then frees its pages only as far as it filled
//! them alone.

use crate::core::placement::Placement;

/// Arenas of our own at most: 64 × ~130 KB of metadata. An instance with more partitions shares
/// them (see the module's opening comment).
pub const MAX_ARENAS: usize = 64;

/// An arena for one partition's device state, or `None` when placement is off (another global
/// allocator, as in the tests and `process`).
pub fn placement() -> Option<Box<dyn Placement>> {
    #[cfg(feature = "jemalloc")]
    return imp::ArenaLease::try_new().map(|l| Box::new(l) as Box<dyn Placement>);
    #[cfg(not(feature = "jemalloc"))]
    None
}

/// Turns placement on: call once at start, only from a binary whose global allocator is
/// [`Allocator`] (placement through any other allocator would do nothing but create arenas).
pub fn enable_placement() {
    imp::enable();
}

#[cfg(feature = "jemalloc")]
pub use imp::{Allocator, ArenaLease};

#[cfg(feature = "jemalloc")]
mod imp {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use tikv_jemalloc_sys as ffi;
    use tikv_jemallocator::Jemalloc;

    use super::MAX_ARENAS;
    use crate::core::placement::Placement;

    thread_local! {
        /// The arena this thread allocates device state in now; 0 = none (arena 0 is one of
        /// jemalloc's automatic arenas, never one of ours).
        static ARENA: Cell<u32> = const { Cell::new(0) };
    }

    static ENABLED: AtomicBool = AtomicBool::new(false);

    /// Our arenas, each with the number of partitions holding it.
    static POOL: Mutex<Vec<(u32, usize)>> = Mutex::new(Vec::new());

    pub fn enable() {
        ENABLED.store(true, Ordering::Relaxed);
    }

    /// One arena, held by one partition's state (or, past [`MAX_ARENAS`], by a few); back to the
    /// pool when its last holder drops it.
    #[derive(Debug)]
    pub struct ArenaLease(u32);

    impl ArenaLease {
        /// A free arena from the pool, a new one below the cap, else the one held by the fewest
        /// partitions; `None` when placement is off or no arena can be made.
        pub fn try_new() -> Option<ArenaLease> {
            if !ENABLED.load(Ordering::Relaxed) {
                return None;
            }
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            let least = pool.iter_mut().min_by_key(|(_, holders)| *holders);
            if let Some((arena, holders)) = least.filter(|(_, h)| *h == 0) {
                *holders += 1;
                return Some(ArenaLease(*arena));
            }
            if pool.len() < MAX_ARENAS {
                // SAFETY: "arenas.create" takes no input and returns the new arena's index.
                match unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"arenas.create\0") } {
                    Ok(arena) => {
                        pool.push((arena, 1));
                        return Some(ArenaLease(arena));
                    }
                    Err(error) => {
                        tracing::warn!(%error, arenas = pool.len(), "cannot create another jemalloc arena: partitions share the arenas there are");
                    }
                }
            }
            let (arena, holders) = pool.iter_mut().min_by_key(|(_, holders)| *holders)?;
            *holders += 1;
            Some(ArenaLease(*arena))
        }

        /// The arena's index (jemalloc's `stats.arenas.<i>.*` statistics describe it).
        pub fn arena(&self) -> u32 {
            self.0
        }
    }

    impl Drop for ArenaLease {
        fn drop(&mut self) {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, holders)) = pool.iter_mut().find(|(a, _)| *a == self.0) {
                *holders -= 1;
            }
        }
    }

    impl Placement for ArenaLease {
        fn place(&self, f: &mut dyn FnMut()) {
            /// Puts the thread's previous arena back, even if `f` panics.
            struct Restore(u32);
            impl Drop for Restore {
                fn drop(&mut self) {
                    ARENA.with(|a| a.set(self.0));
                }
            }
            let _restore = Restore(ARENA.with(|a| a.replace(self.0)));
            f();
        }
    }

    /// jemalloc, placing allocations in the thread's current arena when it has one.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Allocator;

    /// Alignment flags as tikv-jemallocator computes them (16 = `_Alignof(max_align_t)`).
    fn align_flags(align: usize, size: usize) -> i32 {
        if align <= 16 && align <= size {
            0
        } else {
            ffi::MALLOCX_ALIGN(align)
        }
    }

    /// Flags that place an allocation in the current arena, bypassing the thread cache; `None`
    /// outside a placement.
    #[inline]
    fn placed_flags(align: usize, size: usize) -> Option<i32> {
        let arena = ARENA.with(Cell::get);
        (arena != 0).then(|| {
            ffi::MALLOCX_ARENA(arena as usize) | ffi::MALLOCX_TCACHE_NONE | align_flags(align, size)
        })
    }

    // SAFETY: every call either goes to tikv-jemallocator's own implementation or to the jemalloc
    // function it would call, with the same alignment flags plus an arena and "no thread cache"
    // (valid for any pointer jemalloc returned, whichever arena it came from).
    unsafe impl GlobalAlloc for Allocator {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            match placed_flags(layout.align(), layout.size()) {
                None => Jemalloc.alloc(layout),
                Some(flags) => ffi::mallocx(layout.size(), flags) as *mut u8,
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            match placed_flags(layout.align(), layout.size()) {
                None => Jemalloc.alloc_zeroed(layout),
                Some(flags) => ffi::mallocx(layout.size(), flags | ffi::MALLOCX_ZERO) as *mut u8,
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            match placed_flags(layout.align(), layout.size()) {
                None => Jemalloc.dealloc(ptr, layout),
                // Straight back to its arena: through the thread cache, it would be handed out
                // again for any allocation of this thread.
                Some(_) => ffi::sdallocx(
                    ptr as *mut c_void,
                    layout.size(),
                    ffi::MALLOCX_TCACHE_NONE | align_flags(layout.align(), layout.size()),
                ),
            }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            match placed_flags(layout.align(), new_size) {
                None => Jemalloc.realloc(ptr, layout, new_size),
                Some(flags) => ffi::rallocx(ptr as *mut c_void, new_size, flags) as *mut u8,
            }
        }
    }
}

#[cfg(not(feature = "jemalloc"))]
mod imp {
    pub fn enable() {}
}
