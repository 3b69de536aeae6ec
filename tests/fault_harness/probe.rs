//! The group's committed offsets and the input's end offsets: once ([`offsets_now`]), and sampled
//! by a thread of its own for the recovery figures ([`Probe`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The input's end offsets and the group's committed offsets, or `None` while the broker does not
/// answer (the common helpers give up after 30 s, shorter than a broker's recovery on a loaded
/// machine).
pub fn offsets_now(
    group: &str,
    topic: &str,
    partitions: i32,
) -> Option<(HashMap<i32, i64>, HashMap<i32, i64>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        // The last committed offsets, not waiting for offsets pending in an open transaction.
        .set("isolation.level", "read_uncommitted")
        .set("log_level", "0")
        .create()
        .ok()?;
    let t = Duration::from_secs(5);
    let mut end = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        end.insert(p, c.fetch_watermarks(topic, p, t).ok()?.1);
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, t)
        .ok()?
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), o),
            _ => (e.partition(), -1),
        })
        .collect();
    Some((end, committed))
}

// ------------------------------------------------------------------------------------ the probe

/// The group's committed offsets and the input's end offsets, sampled every 250 ms by a thread of
/// its own (errors while the broker is down are skipped).
pub struct Sample {
    pub at: Instant,
    pub committed: HashMap<i32, i64>,
    pub end: HashMap<i32, i64>,
}

pub struct Probe {
    pub stop: Arc<AtomicBool>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    /// Samples that failed (the broker down, a connection being re-established), the last error.
    pub failures: Arc<Mutex<(usize, String)>>,
    pub thread: Option<std::thread::JoinHandle<()>>,
    pub partitions: i32,
}

impl Probe {
    pub fn start(group: &str, topic: &str, partitions: i32) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new((0, String::new())));
        let (s, v, f) = (stop.clone(), samples.clone(), failures.clone());
        let (group, topic) = (group.to_string(), topic.to_string());
        let client = move || -> BaseConsumer {
            ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("group.id", &group)
                .set("reconnect.backoff.max.ms", "500")
                // The last committed offsets, without waiting for offsets pending in open
                // transactions (read_committed would wait, and fail the sample, until a killed
                // instance's transaction times out).
                .set("isolation.level", "read_uncommitted")
                .set("log_level", "0")
                .create()
                .unwrap()
        };
        let mut c = client();
        let thread = std::thread::spawn(move || {
            let mut failed_in_a_row = 0;
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let t = Duration::from_secs(2);
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                let sample = (|| {
                    let got = c
                        .committed_offsets(tpl.clone(), t)
                        .map_err(|e| format!("committed offsets: {e}"))?;
                    // Only partitions with a committed offset: under exactly-once a partition
                    // whose offsets are still in an open transaction answers
                    // UNSTABLE_OFFSET_COMMIT (no offset) until it is committed or aborted.
                    let committed = got
                        .elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) if e.error().is_ok() => Some((e.partition(), o)),
                            _ => None,
                        })
                        .collect();
                    let mut end = HashMap::new();
                    for p in 0..partitions {
                        let w = c
                            .fetch_watermarks(&topic, p, t)
                            .map_err(|e| format!("watermarks: {e}"))?;
                        end.insert(p, w.1);
                    }
                    Ok::<_, String>(Sample { at, committed, end })
                })();
                match sample {
                    Ok(sample) => {
                        failed_in_a_row = 0;
                        v.lock().unwrap().push(sample);
                    }
                    Err(e) => {
                        let mut f = f.lock().unwrap();
                        f.0 += 1;
                        f.1 = e;
                        // After a broker restart a client that is never polled can keep a stale
                        // view ("unknown partition"): start afresh.
                        failed_in_a_row += 1;
                        if failed_in_a_row % 5 == 0 {
                            c = client();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250).saturating_sub(at.elapsed()));
            }
        });
        Probe {
            stop,
            samples,
            failures,
            thread: Some(thread),
            partitions,
        }
    }

    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Time from `t0` until every partition has committed past where it stood when the fault
    /// hit (the first sample taken after `t0`: a killed instance commits nothing more, a stopped
    /// one has committed its drain) or has caught up: how long the fault stopped (part of) the
    /// group. `None` if that never happened while sampling.
    pub fn recovery_after(&self, t0: Instant) -> Option<Duration> {
        let samples = self.samples.lock().unwrap();
        let mut after = samples.iter().filter(|s| s.at >= t0);
        let base = after.next()?;
        let mut progressed = HashSet::new();
        for s in std::iter::once(base).chain(after) {
            for p in 0..self.partitions {
                let end = s.end.get(&p).copied().unwrap_or(0);
                if let Some(c) = s.committed.get(&p) {
                    if *c > base.committed.get(&p).copied().unwrap_or(-1) || *c >= end {
                        progressed.insert(p);
                    }
                }
            }
            if progressed.len() == self.partitions as usize {
                return Some(s.at - t0);
            }
        }
        None
    }

    /// Time from `t0` until the group's lag was under `lag` of input: the first sample at which
    /// every partition has committed at least what its end offset was `lag` earlier (or was then
    /// caught up). `None` if that never happened while sampling.
    pub fn lag_under(&self, t0: Instant, lag: Duration) -> Option<Duration> {
        let samples = self.samples.lock().unwrap();
        samples
            .iter()
            .filter(|s| s.at >= t0)
            .find(|s| {
                // The end offsets `lag` before this sample (the latest sample taken by then).
                let Some(earlier) = samples.iter().rev().find(|e| e.at + lag <= s.at) else {
                    return false;
                };
                (0..self.partitions).all(|p| {
                    let end_then = earlier.end.get(&p).copied().unwrap_or(0);
                    let end_now = s.end.get(&p).copied().unwrap_or(0);
                    s.committed
                        .get(&p)
                        .is_some_and(|c| *c >= end_then.min(end_now))
                })
            })
            .map(|s| s.at - t0)
    }

    /// The longest time any partition went without committed progress while it had input
    /// waiting: the longest gap between two samples that saw it progress (or caught up).
    pub fn max_stall(&self) -> (Duration, i32) {
        let samples = self.samples.lock().unwrap();
        // Per partition: since when it has been waiting (or last seen progressing), at which
        // offset, and whether input was waiting.
        let mut last: HashMap<i32, (Instant, i64, bool)> = HashMap::new();
        let mut worst = (Duration::ZERO, -1);
        for s in samples.iter() {
            for p in 0..self.partitions {
                let Some(&c) = s.committed.get(&p) else {
                    continue;
                };
                let e = s.end.get(&p).copied().unwrap_or(0);
                match last.get(&p).copied() {
                    None => {
                        last.insert(p, (s.at, c, c < e));
                    }
                    Some((at, prev, waiting)) => {
                        if waiting && s.at - at > worst.0 {
                            worst = (s.at - at, p);
                        }
                        if c != prev || c >= e {
                            last.insert(p, (s.at, c, c < e));
                        } else if !waiting {
                            // Input arrived after it had caught up: the wait starts now.
                            last.insert(p, (s.at, prev, true));
                        }
                    }
                }
            }
        }
        worst
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.finish();
    }
}
