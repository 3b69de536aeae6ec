//! The periodic progress line: the seed's "Batch processed" print, grown up.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, OUTCOMES};

/// Logs events/s by outcome, total lag and state size every `interval_secs` until `stop`.
pub async fn log_progress(metrics: Metrics, interval_secs: u64, stop: CancellationToken) {
    if interval_secs == 0 {
        return;
    }
    let mut last = counts(&metrics);
    let mut at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(interval_secs));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = counts(&metrics);
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        let rate = |i: usize| ((now[i] - last[i]) as f64 / secs).round();
        tracing::info!(
            success_per_s = rate(0),
            cached_per_s = rate(1),
            rate_limited_per_s = rate(2),
            invalid_per_s = rate(3),
            total = now.iter().sum::<u64>(),
            lag = gauge_sum(&metrics, "aepiot_consumer_lag"),
            devices = gauge_sum(&metrics, "aepiot_state_devices"),
            partitions = metrics.assigned_partitions.get(),
            "progress"
        );
        last = now;
        at = Instant::now();
    }
}

fn counts(m: &Metrics) -> [u64; 4] {
    OUTCOMES.map(|o| m.events_of(o))
}

/// Sum of a gauge family over its label values.
pub fn gauge_sum(m: &Metrics, name: &str) -> i64 {
    m.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|x| x.get_gauge().value() as i64))
        .sum()
}
