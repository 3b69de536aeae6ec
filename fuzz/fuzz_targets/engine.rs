//! Arbitrary bytes → the engine, as a partition's records: the oracle is `check::engine`
//! (fuzz/fuzz_targets/check.rs), which tests/fuzz_regressions.rs also runs on every committed
//! fuzz input.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::engine(data);
});
