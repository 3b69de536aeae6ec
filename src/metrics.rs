//! Prometheus metrics. Names follow Prometheus conventions (`_total` counters, `_seconds`
//! histograms, base units); labels stay bounded (outcome, kind, topic, partition — never a device
//! id, URL or free text). Workers pre-resolve their label children once, so counting on the
//! per-event path is an atomic add, not a lock and a hash lookup.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::core::{Decision, ErrorKind};

/// Every metric of the processor.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub events: IntCounterVec,
    pub urls_generated: IntCounter,
    pub dead_letters: IntCounterVec,
    pub misrouted: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub processing_latency: Histogram,
    pub event_age: Histogram,
    pub state_devices: IntGaugeVec,
    pub state_cache_entries: IntGaugeVec,
    pub assigned_partitions: IntGauge,
    pub rebalances: IntCounterVec,
    pub commit_failures: IntCounter,
    pub producer_queue_messages: IntGauge,
    pub delivery_failures: IntCounter,
    pub state_restore_seconds: Histogram,
    pub state_restored_records: IntCounter,
    pub state_evictions: IntCounter,
    pub records_written: IntCounterVec,
    pub producer_errors: IntCounterVec,
    pub cluster_outputs_waiting: IntGaugeVec,
    pub cluster_ack_wait: GaugeVec,
    pub webhook_requests: IntCounterVec,
    pub webhook_latency: HistogramVec,
    pub webhook_retries: IntCounter,
    pub webhook_dead_letters: IntCounter,
    pub webhook_in_flight: IntGauge,
    pub webhook_lag: IntGauge,
}

/// Outcome label values of `aepiot_events_total`.
pub const OUTCOMES: [&str; 4] = ["success", "cached", "rate_limited", "invalid"];

/// Result label values of `aepiot_webhook_requests_total` (pre-created, so the series exist at 0
/// even with webhooks off and dashboards show a zero rather than "no data").
pub const WEBHOOK_RESULTS: [&str; 4] = ["delivered", "retried", "failed", "dead_lettered"];

fn buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ]
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new("aepiot_events_total", "Input records processed, by outcome"),
            &["outcome"],
        )
        .unwrap();
        let urls_generated =
            IntCounter::new("aepiot_urls_generated_total", "Backlink URLs generated").unwrap();
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "aepiot_dead_letters_total",
                "Invalid input records written to the dead-letter topic, by error kind",
            ),
            &["kind"],
        )
        .unwrap();
        let misrouted = IntCounter::new(
            "aepiot_misrouted_total",
            "Records whose Kafka key is not their device_id (their device's state may be split across partitions)",
        )
        .unwrap();
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "aepiot_consumer_lag",
                "Messages behind the high watermark, per assigned partition",
            ),
            &["topic", "partition"],
        )
        .unwrap();
        let processing_latency = Histogram::with_opts(
            HistogramOpts::new(
                "aepiot_processing_latency_seconds",
                "Time from consuming a record to its output or dead letter being acknowledged",
            )
            .buckets(buckets()),
        )
        .unwrap();
        let event_age = Histogram::with_opts(
            HistogramOpts::new(
                "aepiot_event_age_seconds",
                "Time from the input record's Kafka timestamp to its output being acknowledged",
            )
            .buckets(buckets()),
        )
        .unwrap();
        let state_devices = IntGaugeVec::new(
            Opts::new(
                "aepiot_state_devices",
                "Devices with rate-limit or dedupe state, per assigned partition",
            ),
            &["topic", "partition"],
        )
        .unwrap();
        let state_cache_entries = IntGaugeVec::new(
            Opts::new(
                "aepiot_state_cache_entries",
                "Dedupe cache entries, per assigned partition",
            ),
            &["topic", "partition"],
        )
        .unwrap();
        let assigned_partitions = IntGauge::new(
            "aepiot_assigned_partitions",
            "Input partitions assigned to this instance",
        )
        .unwrap();
        let rebalances = IntCounterVec::new(
            Opts::new(
                "aepiot_rebalances_total",
                "Rebalance events, by kind (assign, revoke, error)",
            ),
            &["kind"],
        )
        .unwrap();
        let commit_failures =
            IntCounter::new("aepiot_commit_failures_total", "Offset commits that failed").unwrap();
        let producer_queue_messages = IntGauge::new(
            "aepiot_producer_queue_messages",
            "Messages in the producer's queue, waiting to be sent or acknowledged",
        )
        .unwrap();
        let state_restore_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "aepiot_state_restore_seconds",
                "Time to restore a partition's device state from its changelog",
            )
            .buckets(buckets()),
        )
        .unwrap();
        let state_restored_records = IntCounter::new(
            "aepiot_state_restored_records_total",
            "State-changelog records read while restoring partitions",
        )
        .unwrap();
        let records_written = IntCounterVec::new(
            Opts::new(
                "aepiot_records_written_total",
                "URL records produced, by output topic (bounded by configuration: output_topic and output_topics_by_region)",
            ),
            &["topic"],
        )
        .unwrap();
        let producer_errors = IntCounterVec::new(
            Opts::new(
                "aepiot_producer_errors_total",
                "Producer errors, by cluster (`main`, or a name of [clusters]): client errors such as an unreachable broker or refused authentication, and deliveries the cluster refused",
            ),
            &["cluster"],
        )
        .unwrap();
        let cluster_outputs_waiting = IntGaugeVec::new(
            Opts::new(
                "aepiot_cluster_outputs_waiting",
                "Outputs produced to a cluster and not yet acknowledged by it (queued or in flight), by cluster; from librdkafka's statistics, every 5 s",
            ),
            &["cluster"],
        )
        .unwrap();
        let cluster_ack_wait = GaugeVec::new(
            Opts::new(
                "aepiot_cluster_ack_wait_seconds",
                "How long a cluster has had outputs waiting without acknowledging any, by cluster (0 while it acknowledges); meanwhile the offsets of the input partitions whose records wait for it are not committed past them",
            ),
            &["cluster"],
        )
        .unwrap();
        let state_evictions = IntCounter::new(
            "aepiot_state_evictions_total",
            "Devices whose state was dropped to keep the instance within limits.max_devices",
        )
        .unwrap();
        let delivery_failures = IntCounter::new(
            "aepiot_delivery_failures_total",
            "Outputs the cluster did not take for a reason that is not the record's own (authorization, topic gone, retries exhausted); the instance stops",
        )
        .unwrap();
        let webhook_requests = IntCounterVec::new(
            Opts::new(
                "aepiot_webhook_requests_total",
                "Webhook HTTP requests, by result: delivered (2xx), retried (failed, another attempt follows), dead_lettered (failed, the record went to the webhook dead-letter topic), failed (failed, abandoned at a revoke or shutdown; sent again by the partition's next owner)",
            ),
            &["result"],
        )
        .unwrap();
        let webhook_latency = HistogramVec::new(
            HistogramOpts::new("aepiot_webhook_latency_seconds", "Webhook request latency")
                .buckets(buckets()),
            &["result"],
        )
        .unwrap();
        let webhook_retries = IntCounter::new(
            "aepiot_webhook_retries_total",
            "Webhook requests that failed and were scheduled again (after a backoff or Retry-After)",
        )
        .unwrap();
        let webhook_dead_letters = IntCounter::new(
            "aepiot_webhook_dead_letters_total",
            "Records (per endpoint) written to the webhook dead-letter topic: refused, or still failing after the last attempt",
        )
        .unwrap();
        let webhook_in_flight = IntGauge::new(
            "aepiot_webhook_in_flight_requests",
            "Webhook HTTP requests in flight",
        )
        .unwrap();
        let webhook_lag = IntGauge::new(
            "aepiot_webhook_lag",
            "Output-topic records not yet delivered or dead-lettered by the webhook consumer group, over its assigned partitions",
        )
        .unwrap();
        let m = Metrics {
            registry,
            events,
            urls_generated,
            dead_letters,
            misrouted,
            consumer_lag,
            processing_latency,
            event_age,
            state_devices,
            state_cache_entries,
            assigned_partitions,
            rebalances,
            commit_failures,
            producer_queue_messages,
            delivery_failures,
            state_evictions,
            records_written,
            producer_errors,
            cluster_outputs_waiting,
            cluster_ack_wait,
            state_restore_seconds,
            state_restored_records,
            webhook_requests,
            webhook_latency,
            webhook_retries,
            webhook_dead_letters,
            webhook_in_flight,
            webhook_lag,
        };
        m.register();
        // Pre-create label values so every series exists from the start (dashboards and rate()
        // need a zero before the first event).
        for o in OUTCOMES {
            m.events.with_label_values(&[o]);
        }
        for k in ErrorKind::ALL {
            m.dead_letters.with_label_values(&[k.as_str()]);
        }
        for k in ["assign", "revoke", "error"] {
            m.rebalances.with_label_values(&[k]);
        }
        for r in WEBHOOK_RESULTS {
            m.webhook_requests.with_label_values(&[r]);
        }
        m
    }

    fn register(&self) {
        let r = &self.registry;
        r.register(Box::new(self.events.clone())).unwrap();
        r.register(Box::new(self.urls_generated.clone())).unwrap();
        r.register(Box::new(self.dead_letters.clone())).unwrap();
        r.register(Box::new(self.misrouted.clone())).unwrap();
        r.register(Box::new(self.consumer_lag.clone())).unwrap();
        r.register(Box::new(self.processing_latency.clone()))
            .unwrap();
        r.register(Box::new(self.event_age.clone())).unwrap();
        r.register(Box::new(self.state_devices.clone())).unwrap();
        r.register(Box::new(self.state_cache_entries.clone()))
            .unwrap();
        r.register(Box::new(self.assigned_partitions.clone()))
            .unwrap();
        r.register(Box::new(self.rebalances.clone())).unwrap();
        r.register(Box::new(self.commit_failures.clone())).unwrap();
        r.register(Box::new(self.producer_queue_messages.clone()))
            .unwrap();
        r.register(Box::new(self.delivery_failures.clone()))
            .unwrap();
        r.register(Box::new(self.state_evictions.clone())).unwrap();
        r.register(Box::new(self.records_written.clone())).unwrap();
        r.register(Box::new(self.producer_errors.clone())).unwrap();
        r.register(Box::new(self.cluster_outputs_waiting.clone()))
            .unwrap();
        r.register(Box::new(self.cluster_ack_wait.clone())).unwrap();
        r.register(Box::new(self.state_restore_seconds.clone()))
            .unwrap();
        r.register(Box::new(self.state_restored_records.clone()))
            .unwrap();
        r.register(Box::new(self.webhook_requests.clone())).unwrap();
        r.register(Box::new(self.webhook_latency.clone())).unwrap();
        r.register(Box::new(self.webhook_retries.clone())).unwrap();
        r.register(Box::new(self.webhook_dead_letters.clone()))
            .unwrap();
        r.register(Box::new(self.webhook_in_flight.clone()))
            .unwrap();
        r.register(Box::new(self.webhook_lag.clone())).unwrap();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .unwrap();
    }

    /// Counter children for one outcome kind, resolved once.
    pub fn outcome_counters(&self) -> OutcomeCounters {
        OutcomeCounters {
            success: self.events.with_label_values(&["success"]),
            cached: self.events.with_label_values(&["cached"]),
            rate_limited: self.events.with_label_values(&["rate_limited"]),
            invalid: self.events.with_label_values(&["invalid"]),
            urls: self.urls_generated.clone(),
            dead_letters: ErrorKind::ALL
                .map(|k| self.dead_letters.with_label_values(&[k.as_str()])),
            misrouted: self.misrouted.clone(),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    /// The current value of `aepiot_events_total{outcome}`.
    pub fn events_of(&self, outcome: &str) -> u64 {
        self.events.with_label_values(&[outcome]).get()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Pre-resolved counters of the per-event path.
#[derive(Clone)]
pub struct OutcomeCounters {
    success: IntCounter,
    cached: IntCounter,
    rate_limited: IntCounter,
    invalid: IntCounter,
    urls: IntCounter,
    dead_letters: [IntCounter; ErrorKind::ALL.len()],
    pub misrouted: IntCounter,
}

impl OutcomeCounters {
    pub fn decision(&self, d: Decision, urls: usize) {
        match d {
            Decision::Success => self.success.inc(),
            Decision::Cached => self.cached.inc(),
            Decision::RateLimited => self.rate_limited.inc(),
        }
        if urls > 0 {
            self.urls.inc_by(urls as u64);
        }
    }

    pub fn invalid(&self, kind: ErrorKind) {
        self.invalid.inc();
        let i = ErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.dead_letters[i].inc();
    }
}
