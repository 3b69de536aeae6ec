//! The machinery the fault-injection suites share: `tests/faults.rs` (a broker of its own) and
//! `tests/cluster_faults.rs` (a 3-node cluster). A scenario runs three `aepiot-stream run`
//! processes (the real binary) in one consumer group while two `aepiot-stream simulate` processes
//! produce to the input, injects its fault, waits until the group has committed every input
//! offset, stops the instances and checks the accounting (see [`scenario::Harness::finish`] and
//! `tests/faults.rs`'s module documentation): no lost successes against the offline engine's
//! judgement, dead letters exactly the invalid inputs, no duplicate under exactly-once, committed
//! offsets equal to the end offsets, the rate limit exact across partition moves.
//!
//! - [`process`]: the instances and simulators;
//! - [`probe`]: the group's committed offsets and the input's end offsets, sampled;
//! - [`accounting`]: what the outputs and dead letters say about the input;
//! - [`scenario`]: a scenario's harness, from the instances' start to the checks;
//! - [`site`]: one run at a time per broker or cluster, cleaned up however the run ends.
#![allow(dead_code)]

pub mod accounting;
pub mod probe;
pub mod process;
pub mod scenario;
pub mod site;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use accounting::*;
pub use probe::*;
pub use process::*;
pub use scenario::*;

pub const INSTANCES: usize = 3;
/// `limits.max_urls_per_device` and `limits.window_secs` (the defaults).
pub const MAX_PER_HOUR: usize = 10;
pub const HOUR_MS: i64 = 3_600_000;

/// Where the pids of the processes a run starts are listed, for the watchdog of the suite's site
/// (it kills them when the test process exits, however it exits).
static CHILDREN: OnceLock<PathBuf> = OnceLock::new();

/// Sets the file [`register_child`] appends to (once per test process).
pub fn set_children_file(path: PathBuf) {
    let _ = CHILDREN.set(path);
}

pub fn register_child(pid: u32) {
    use std::io::Write;
    let Some(path) = CHILDREN.get() else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{pid}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::AtLeastOnce => "at_least_once",
            Mode::ExactlyOnce => "exactly_once",
        }
    }
}

/// The instances' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settings {
    /// The defaults: state changelog on, `emit_suppressed` off (only `success` is written).
    Default,
    /// `--emit-suppressed`: every valid input yields one output record.
    EmitSuppressed,
}

impl Settings {
    pub fn emit_suppressed(self) -> bool {
        self == Settings::EmitSuppressed
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Factory profile (bursts of 5–40 events from one machine).
    pub fleet_events: u64,
    pub fleet_devices: u64,
    /// City profile over a handful of sensors: hundreds of events each.
    pub hot_events: u64,
    pub hot_devices: u64,
    pub seconds: f64,
    /// How many times the fault is injected (long versions repeat it).
    pub rounds: usize,
}
