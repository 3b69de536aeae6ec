//! What the outputs and dead letters say about the input, against the offline engine's judgement
//! of it (the `process` path, each partition in offset order, default settings).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use aepiot_stream::core::time::parse_rfc3339_ms;

use super::{Settings, HOUR_MS};
use crate::common::*;

#[derive(Debug, Default)]
pub struct Accounting {
    pub input: usize,
    pub outputs: usize,
    pub dead_letters: usize,
    pub distinct_outputs: usize,
    pub distinct_dead_letters: usize,
    /// Input offsets that should have an output or a dead letter and have none: invalid inputs,
    /// offline `success`es, and under emit_suppressed every valid input.
    pub lost: usize,
    /// Inputs the offline engine judges `success` with no `success` record: URLs users lost.
    pub lost_successes: usize,
    /// A few of them, for the message.
    pub lost_success_examples: Vec<(i64, i64)>,
    /// Offsets with a `success` record that the offline engine judges `cached` or `rate_limited`.
    pub extra_successes: usize,
    /// Outputs of a status not written with these settings (not `success` without
    /// emit_suppressed).
    pub unexpected_outputs: usize,
    pub duplicates: usize,
    pub duplicated_offsets: usize,
    pub in_both: usize,
    /// Dead letters for valid inputs, and invalid inputs with an output record.
    pub misjudged: usize,
    /// Distinct offsets by status as written.
    pub success: usize,
    pub cached: usize,
    pub rate_limited: usize,
    /// The offline engine's judgement of the input.
    pub offline_success: usize,
    pub offline_cached: usize,
    pub offline_rate_limited: usize,
    pub devices: usize,
    pub max_success_per_device_hour: usize,
    pub worst_device: String,
    pub hot_device_success: BTreeMap<String, usize>,
    pub inconsistent: usize,
}

pub fn account(t: &Topics, hot_prefix: &str, settings: Settings) -> Accounting {
    use aepiot_stream::core::Decision;
    let outputs = consume_all(&t.output, Duration::from_secs(120));
    let letters = consume_all(&t.dlq, Duration::from_secs(60));
    let expected = expected_sources(&t.input);
    let offline = judged_offline(&t.input);
    assert_eq!(
        offline.len(),
        expected.len(),
        "the input read back for the offline judgement is incomplete"
    );
    let mut a = Accounting {
        input: expected.len(),
        outputs: outputs.len(),
        dead_letters: letters.len(),
        ..Default::default()
    };
    // Per input offset: its device, its statuses, and the event time of a success.
    struct Seen {
        device: String,
        copies: usize,
        statuses: BTreeSet<String>,
        success_at: Option<i64>,
    }
    let mut by_offset: HashMap<(i64, i64), Seen> = HashMap::new();
    for m in &outputs {
        let v = json(m);
        assert_eq!(v["source"]["topic"], t.input.as_str());
        let device = v["device_id"].as_str().unwrap().to_string();
        let status = v["status"].as_str().unwrap().to_string();
        let at = parse_rfc3339_ms(v["event_time"].as_str().unwrap()).expect("event_time");
        if status != "success" && !settings.emit_suppressed() {
            a.unexpected_outputs += 1;
        }
        let s = by_offset.entry(source_of(m)).or_insert(Seen {
            device: device.clone(),
            copies: 0,
            statuses: BTreeSet::new(),
            success_at: None,
        });
        s.copies += 1;
        if s.device != device {
            a.inconsistent += 1;
        }
        if status == "success" {
            s.success_at = Some(s.success_at.map_or(at, |x: i64| x.min(at)));
        }
        s.statuses.insert(status);
    }
    let mut letter_offsets: HashMap<(i64, i64), usize> = HashMap::new();
    for m in &letters {
        assert_eq!(json(m)["source"]["topic"], t.input.as_str());
        *letter_offsets.entry(source_of(m)).or_default() += 1;
    }
    a.distinct_outputs = by_offset.len();
    a.distinct_dead_letters = letter_offsets.len();
    a.in_both = letter_offsets
        .keys()
        .filter(|k| by_offset.contains_key(k))
        .count();
    let seen: HashSet<(i64, i64)> = by_offset
        .keys()
        .chain(letter_offsets.keys())
        .copied()
        .collect();
    assert!(
        seen.is_subset(&expected),
        "outputs name input offsets that do not exist"
    );
    a.duplicates = (a.outputs + a.dead_letters) - seen.len();
    a.duplicated_offsets = by_offset.values().filter(|s| s.copies > 1).count()
        + letter_offsets.values().filter(|n| **n > 1).count();

    // Against the offline judgement: what must have been written, and what was lost.
    let mut lost_successes: Vec<(i64, i64)> = Vec::new();
    for (offset, judged) in &offline {
        let out = by_offset.get(offset);
        match judged {
            None => {
                a.misjudged += usize::from(out.is_some());
                a.lost += usize::from(!letter_offsets.contains_key(offset));
            }
            Some(d) => {
                a.misjudged += usize::from(letter_offsets.contains_key(offset));
                match d {
                    Decision::Success => a.offline_success += 1,
                    Decision::Cached => a.offline_cached += 1,
                    Decision::RateLimited => a.offline_rate_limited += 1,
                }
                let success = out.is_some_and(|s| s.success_at.is_some());
                if *d == Decision::Success && !success {
                    lost_successes.push(*offset);
                }
                if *d != Decision::Success && success {
                    a.extra_successes += 1;
                }
                let must_write = *d == Decision::Success || settings.emit_suppressed();
                a.lost += usize::from(must_write && out.is_none());
            }
        }
    }
    lost_successes.sort_unstable();
    a.lost_successes = lost_successes.len();
    a.lost_success_examples = lost_successes.into_iter().take(10).collect();

    // Each offset once: a success if any copy of it is one (at-least-once may judge a repeated
    // record again, against state that already holds its first judgement).
    let mut successes: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut devices = HashSet::new();
    for s in by_offset.values() {
        devices.insert(s.device.as_str());
        match s.success_at {
            Some(at) => {
                a.success += 1;
                successes.entry(&s.device).or_default().push(at);
            }
            None if s.statuses.contains("cached") => a.cached += 1,
            None => a.rate_limited += 1,
        }
    }
    a.devices = devices.len();
    for (device, times) in &mut successes {
        times.sort_unstable();
        // Sliding hour: the most successes within any [t, t + 1 h).
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= HOUR_MS {
                lo += 1;
            }
            let n = hi - lo + 1;
            if n > a.max_success_per_device_hour {
                a.max_success_per_device_hour = n;
                a.worst_device = device.to_string();
            }
        }
        if device.starts_with(hot_prefix) {
            a.hot_device_success.insert(device.to_string(), times.len());
        }
    }
    a
}
