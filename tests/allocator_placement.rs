//! Each partition's device state in a jemalloc arena of its own (src/allocator.rs): its
//! allocations land there and nowhere else, and dropping the state (a revoked partition) empties
//! the arena, so its pages can go back to the OS instead of staying pinned by other partitions'
//! devices. Every partition gets one, however many the instance owns.
#![cfg(feature = "jemalloc")]

use std::collections::HashMap;
use std::sync::Mutex;

use aepiot_stream::allocator::{self, Allocator};
use aepiot_stream::core::limiter::cache_key;
use aepiot_stream::core::placement::Placement;
use aepiot_stream::core::state::DeviceStates;
use aepiot_stream::core::Limits;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// The arena pool is the process's: tests that lease and return arenas take turns.
static POOL: Mutex<()> = Mutex::new(());

/// Bytes in live allocations of `arena`, small and large, from jemalloc's statistics.
fn arena_allocated(arena: u32) -> usize {
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    let read = |what: &str| {
        let name = format!("stats.arenas.{arena}.{what}.allocated\0");
        // SAFETY: both statistics are size_t.
        unsafe { tikv_jemalloc_ctl::raw::read::<usize>(name.as_bytes()) }.unwrap()
    };
    read("small") + read("large")
}

/// Feeds `devices` devices a few events each, with different keys, so that their hit lists and
/// caches outgrow their inline room and allocate.
fn fill(states: &mut DeviceStates, devices: usize) {
    for round in 0..6i64 {
        for d in 0..devices {
            let key = cache_key(Some(&format!("type-{round}")), None);
            states.decide(&format!("device-{d}"), round * 60_000, key, 0);
        }
    }
}

#[test]
fn a_partitions_state_lives_in_its_own_arena_and_leaves_it_empty() {
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    allocator::enable_placement();
    let lease = allocator::ArenaLease::try_new().expect("an arena");
    let arena = lease.arena();
    assert!(arena > 0);
    let before = arena_allocated(arena);

    let mut states = DeviceStates::new(Limits::default(), 3_600_000);
    states.set_placement(Box::new(lease));
    // Memory allocated outside the state, at the same time, must not land in its arena.
    let mut elsewhere: Vec<Vec<u8>> = Vec::new();
    for i in 0..20_000 {
        elsewhere.push(vec![i as u8; 48]);
    }
    fill(&mut states, 20_000);
    let held = arena_allocated(arena) - before;
    // 20k devices: the map and, per device, spilled hits (6 × u32) and cache entries (6 × 16 B).
    assert!(
        held > 20_000 * 100,
        "the state's memory is in its arena: {held} bytes"
    );
    let elsewhere_bytes: usize = elsewhere.iter().map(|v| v.capacity()).sum();
    assert!(
        held < 20_000 * 400,
        "{held} bytes in the arena: more than the state could hold, so other allocations \
         ({elsewhere_bytes} bytes) went there too"
    );
    assert_eq!(states.device_count(), 20_000);

    // The partition is revoked: its state is dropped, and nothing is left in its arena.
    drop(states);
    assert_eq!(arena_allocated(arena), before, "arena {arena} emptied");
    drop(elsewhere);

    // The arena goes back to the pool, for the next partition.
    let again = allocator::ArenaLease::try_new().expect("an arena");
    assert_eq!(again.arena(), arena, "a freed arena is reused");
    let mut called = false;
    again.place(&mut || called = true);
    assert!(called);
}

/// jemalloc's metadata and resident bytes (arenas' own structures among them).
fn metadata() -> (usize, usize) {
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    (
        tikv_jemalloc_ctl::stats::metadata::read().unwrap(),
        tikv_jemalloc_ctl::stats::resident::read().unwrap(),
    )
}

/// Past `MAX_ARENAS` partitions, every partition's state is still in an arena of ours, shared
/// evenly (src/allocator.rs says why not one each: an arena's metadata, printed here).
#[test]
fn every_partition_gets_an_arena_past_the_cap_shared_evenly() {
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    allocator::enable_placement();
    const PARTITIONS: usize = 200;
    const DEVICES: usize = 300;
    let before = metadata();
    let mut states: Vec<(u32, DeviceStates)> = (0..PARTITIONS)
        .map(|p| {
            let lease = allocator::ArenaLease::try_new()
                .unwrap_or_else(|| panic!("no arena for partition {p}"));
            let arena = lease.arena();
            let mut s = DeviceStates::new(Limits::default(), 3_600_000);
            s.set_placement(Box::new(lease));
            (arena, s)
        })
        .collect();
    let after = metadata();
    let mut holders: HashMap<u32, usize> = HashMap::new();
    for (arena, _) in &states {
        *holders.entry(*arena).or_default() += 1;
    }
    assert_eq!(
        holders.len(),
        allocator::MAX_ARENAS,
        "every arena of ours used"
    );
    let most = PARTITIONS.div_ceil(allocator::MAX_ARENAS);
    assert!(
        holders.values().all(|&n| n <= most),
        "shared evenly, at most {most} partitions an arena: {holders:?}"
    );
    println!(
        "{} arenas: {} bytes of allocator metadata each, {} resident",
        allocator::MAX_ARENAS,
        after.0.saturating_sub(before.0) / allocator::MAX_ARENAS,
        after.1.saturating_sub(before.1) / allocator::MAX_ARENAS
    );
    let empty: HashMap<u32, usize> = holders.keys().map(|&a| (a, arena_allocated(a))).collect();
    for (arena, s) in &mut states {
        let start = arena_allocated(*arena);
        fill(s, DEVICES);
        assert!(
            arena_allocated(*arena) - start > DEVICES * 100,
            "the partition's state is in arena {arena}"
        );
    }
    drop(states);
    for (arena, bytes) in empty {
        assert_eq!(arena_allocated(arena), bytes, "arena {arena} emptied");
    }
}
