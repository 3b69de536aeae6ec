//! Events per second by outcome over the last minutes, for the status page's chart: a task
//! samples the counters every second and keeps the differences.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, OUTCOMES};

/// Seconds of history kept (5 minutes).
pub const KEPT_SECS: usize = 300;

#[derive(Clone, Copy)]
struct Point {
    /// Wall clock, epoch ms.
    at_ms: i64,
    /// Events per outcome (in [`OUTCOMES`] order) and URLs generated during the second.
    events: [u64; 4],
    urls: u64,
}

#[derive(Default)]
pub struct History {
    points: Mutex<VecDeque<Point>>,
}

fn totals(m: &Metrics) -> ([u64; 4], u64) {
    (OUTCOMES.map(|o| m.events_of(o)), m.urls_generated.get())
}

impl History {
    /// Samples `metrics` every second until `stop`.
    pub async fn run(&self, metrics: Metrics, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last, mut last_urls) = totals(&metrics);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (now, urls) = totals(&metrics);
            self.push(Point {
                at_ms: super::now_ms(),
                events: std::array::from_fn(|i| now[i].saturating_sub(last[i])),
                urls: urls.saturating_sub(last_urls),
            });
            (last, last_urls) = (now, urls);
        }
    }

    fn push(&self, p: Point) {
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if points.len() == KEPT_SECS {
            points.pop_front();
        }
        points.push_back(p);
    }

    /// `{outcomes, points: [{at, events: [per outcome], urls}]}`, oldest first, one per second.
    pub fn json(&self) -> Value {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "interval_secs": 1,
            "outcomes": OUTCOMES,
            "points": points.iter().map(|p| json!({
                "at": p.at_ms,
                "events": p.events,
                "urls": p.urls,
            })).collect::<Vec<_>>(),
        })
    }
}
