//! The last URL records per region, for the status page.
//!
//! Workers offer records from the hot path, so offering is cheap: each worker samples at most
//! [`SAMPLES_PER_TICK`] records per [`TICK_MS`] (a counter and a clock comparison for the rest),
//! copies the sampled record's JSON bytes as they are (parsed only when the page asks) into its
//! region's slot under a short lock (a `try_lock` that skipped a busy slot lost records whenever
//! two partitions kept one region's records at once). At low rates every record is kept; at 250k
//! events/s the page still changes every tick.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::core::avro_record;

/// Records kept per region.
pub const KEPT: usize = 20;
/// A worker's sampling budget: this many records per tick.
pub const SAMPLES_PER_TICK: u32 = 20;
pub const TICK_MS: i64 = 100;

struct Sample {
    /// Order of arrival over all regions.
    seq: u64,
    json: Box<[u8]>,
}

struct Slot {
    kept: VecDeque<Sample>,
}

/// The last [`KEPT`] URL records of each region.
pub struct Recent {
    regions: Vec<String>,
    slots: Vec<Mutex<Slot>>,
    seq: std::sync::atomic::AtomicU64,
}

impl Recent {
    /// `regions`: the configured region names (every record's region is one of them).
    pub fn new(regions: Vec<String>) -> Self {
        let slots = regions
            .iter()
            .map(|_| {
                Mutex::new(Slot {
                    kept: VecDeque::with_capacity(KEPT),
                })
            })
            .collect();
        Recent {
            regions,
            slots,
            seq: Default::default(),
        }
    }

    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    fn keep(&self, region: &str, json: &[u8]) {
        let Some(i) = self.regions.iter().position(|r| r == region) else {
            return;
        };
        // Waits for the lock rather than dropping the record: workers of several partitions keep
        // records of one region at the same moment (a skipped one would vanish from the page),
        // and the sampler already bounds how often this runs (20 per worker per 100 ms).
        let mut slot = self.slots[i].lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if slot.kept.len() == KEPT {
            slot.kept.pop_front();
        }
        slot.kept.push_back(Sample {
            seq,
            json: json.into(),
        });
    }

    /// Every kept record, newest first: `{region, device_id, status, event_type, url,
    /// processed_at, partition, offset}` (`url`: the first URL; absent for cached and
    /// rate_limited records).
    pub fn records(&self) -> Vec<Value> {
        let mut all: Vec<(u64, Value)> = Vec::new();
        for slot in &self.slots {
            let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            for s in &slot.kept {
                if let Some(v) = decode(&s.json) {
                    all.push((s.seq, view(&v)));
                }
            }
        }
        all.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        all.into_iter().map(|(_, v)| v).collect()
    }
}

/// A kept URL record, JSON or Avro (`output.format = "avro"`, by its first byte).
fn decode(record: &[u8]) -> Option<Value> {
    if record.first() == Some(&avro_record::MAGIC) {
        let mut json = Vec::new();
        avro_record::avro_to_json(record, &mut json).ok()?;
        return serde_json::from_slice(&json).ok();
    }
    serde_json::from_slice(record).ok()
}

/// The fields of a URL record the page shows.
fn view(r: &Value) -> Value {
    json!({
        "region": r["region"],
        "device_id": r["device_id"],
        "status": r["status"],
        "event_type": r["event_type"],
        "url": r["urls"][0],
        "processed_at": r["processed_at"],
        "partition": r["source"]["partition"],
        "offset": r["source"]["offset"],
    })
}

/// A worker's side: its sampling budget.
#[derive(Default)]
pub struct Sampler {
    budget: u32,
    refill_at: i64,
}

impl Sampler {
    /// Offers one encoded URL record of `region`, at wall-clock `now_ms`.
    #[inline]
    pub fn offer(&mut self, recent: &Recent, region: &str, json: &[u8], now_ms: i64) {
        if self.budget == 0 {
            if now_ms < self.refill_at {
                return;
            }
            self.budget = SAMPLES_PER_TICK;
            self.refill_at = now_ms + TICK_MS;
        }
        self.budget -= 1;
        recent.keep(region, json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(device: &str, region: &str) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"device_id": device, "region": region, "status": "success",
            "urls": ["https://a/1", "https://a/2"], "processed_at": "x",
            "source": {"topic": "t", "partition": 1, "offset": 7}}),
        )
        .unwrap()
    }

    #[test]
    fn keeps_the_last_per_region_newest_first_and_samples_under_load() {
        let recent = Recent::new(vec!["europe".into(), "global".into()]);
        let mut s = Sampler::default();
        for i in 0..30 {
            s.offer(&recent, "europe", &record(&format!("e{i}"), "europe"), 0);
        }
        // The budget of the tick is spent: nothing more until the next tick.
        s.offer(&recent, "global", &record("g0", "global"), 50);
        s.offer(&recent, "global", &record("g1", "global"), TICK_MS);
        s.offer(&recent, "nowhere", &record("x", "nowhere"), TICK_MS);
        let r = recent.records();
        assert_eq!(r.len(), SAMPLES_PER_TICK as usize + 1);
        assert_eq!(r[0]["device_id"], "g1");
        assert_eq!(r[1]["device_id"], "e19");
        assert_eq!(r[0]["url"], "https://a/1");
        assert_eq!(r[0]["partition"], 1);
    }

    #[test]
    fn avro_records_show_as_their_json_twins() {
        use crate::core::record::{Source, UrlRecord};
        use crate::core::Decision;
        let urls = ["https://a/1", "https://a/2"];
        let r = UrlRecord {
            device_id: "d1",
            event_type: None,
            severity: None,
            region: "europe",
            status: Decision::Success,
            urls: Some(urls.iter().copied()),
            regional_url: Some("https://a/3"),
            urls_json_safe: true,
            event_time: "x",
            processed_at: "x",
            source: Some(Source::Kafka {
                topic: "t",
                partition: 1,
                offset: 7,
            }),
        };
        let mut avro = Vec::new();
        r.encode_avro(3, &mut avro);
        let recent = Recent::new(vec!["europe".into()]);
        Sampler::default().offer(&recent, "europe", &avro, 0);
        let shown = recent.records();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0]["device_id"], "d1");
        assert_eq!(shown[0]["url"], "https://a/1");
        assert_eq!(shown[0]["offset"], 7);
    }
}
