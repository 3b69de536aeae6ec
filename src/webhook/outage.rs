//! One endpoint's [`Health`] as its lanes share it: the pure state machine behind a mutex, a
//! [`Notify`] that wakes the lanes waiting out an outage when it ends (or the probe is released),
//! and the endpoint's gauges (`aepiot_webhook_endpoint_up`, `…_down_seconds`, `…_outages_total`),
//! labelled by the endpoint's name (never its URL, which may carry credentials).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{Gauge, IntCounter, IntGauge};
use tokio::sync::Notify;

use super::health::{Gate, Health, HealthPolicy, Transition};
use crate::events::webhook::{Endpoint, EndpointDown, EndpointUp};
use crate::metrics::Metrics;

pub struct EndpointHealth {
    name: String,
    origin: String,
    health: Mutex<Health>,
    changed: Notify,
    up: IntGauge,
    down_seconds: Gauge,
    outages: IntCounter,
}

impl EndpointHealth {
    pub fn new(name: &str, origin: &str, policy: HealthPolicy, metrics: &Metrics) -> Self {
        let w = &metrics.webhook;
        let up = w.endpoint_up.with_label_values(&[name]);
        up.set(1);
        let down_seconds = w.endpoint_down_seconds.with_label_values(&[name]);
        down_seconds.set(0.0);
        // The lag series exists from the start, at 0, so a dashboard shows the endpoint at once.
        w.lag.with_label_values(&[name]);
        EndpointHealth {
            name: name.into(),
            origin: origin.into(),
            health: Mutex::new(Health::new(policy)),
            changed: Notify::new(),
            up,
            down_seconds,
            outages: w.endpoint_outages.with_label_values(&[name]),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_up(&self) -> bool {
        self.lock().is_up()
    }

    pub fn down_for(&self) -> Duration {
        self.lock().down_for(Instant::now())
    }

    /// What `lane` may do with its head record now. On [`Gate::Wait`], wait with
    /// [`wait`](Self::wait), created before this call so no wake-up is missed.
    pub fn gate(&self, lane: usize) -> Gate {
        self.lock().gate(lane, Instant::now())
    }

    /// A future that completes at the next change (up again, or the probe released).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub fn release(&self, lane: usize) {
        self.lock().release(lane);
        self.changed.notify_waiters();
    }

    pub fn on_answer(&self) {
        let t = self.lock().on_answer(Instant::now());
        self.apply(t);
    }

    pub fn on_failure(&self) {
        let t = self.lock().on_failure(Instant::now());
        self.apply(t);
    }

    /// Sets the time-down gauge (called with librdkafka's statistics, every few seconds).
    pub fn refresh(&self) {
        self.down_seconds.set(self.down_for().as_secs_f64());
    }

    fn apply(&self, t: Option<Transition>) {
        let endpoint = Endpoint {
            name: &self.name,
            origin: &self.origin,
        };
        match t {
            None => {}
            Some(Transition::Down) => EndpointDown { endpoint }.emit(&self.up, &self.outages),
            Some(Transition::Up(down_for)) => {
                EndpointUp { endpoint, down_for }.emit(&self.up, &self.down_seconds);
                self.changed.notify_waiters();
            }
        }
    }
}
