//! Prometheus metrics. Names follow Prometheus conventions (`_total` counters, `_seconds`
//! histograms, base units); labels stay bounded (outcome, kind, topic, partition, cluster — never a
//! device id, URL or free text). Workers pre-resolve their label children once and count the
//! per-event path locally, adding to the shared counters once per batch: no lock, hash lookup or
//! shared atomic per event.
//!
//! Each metric is declared once, in the `declare!` tables below: its field, type, name, help and
//! labels; the macro builds and registers it. The processor's metrics are [`Metrics`]' own fields,
//! the webhook service's are grouped in [`WebhookMetrics`] (`metrics.webhook`).

use prometheus::local::LocalIntCounter;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::core::{Decision, ErrorKind};

/// Declares a metrics struct, `pub struct Name(registry) { … }`: plain fields first
/// (`[field: Type = init, …]`, with the named registry in scope), then one entry per metric
/// (`field: Type = ("name", "help", ["label", …]),`), each built with [`Make`] and registered in
/// the registry by the generated `declare(registry)`.
macro_rules! declare {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($registry:ident) {
            $([$($pf:ident: $pty:ty = $pinit:expr),* $(,)?])?
            $($f:ident: $ty:ty = ($metric:literal, $help:literal $(, [$($label:literal),*])?),)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name {
            $($(pub $pf: $pty,)*)?
            $(pub $f: $ty,)*
        }

        impl $name {
            fn declare($registry: &Registry) -> Self {
                $name {
                    $($($pf: $pinit,)*)?
                    $($f: registered($registry, <$ty as Make>::make($metric, $help, &[$($($label),*)?])),)*
                }
            }
        }
    };
}

/// Builds a metric of one type from its name, help and labels.
trait Make: prometheus::core::Collector + Clone + Sized + 'static {
    fn make(name: &str, help: &str, labels: &[&str]) -> Self;
}

macro_rules! make_plain {
    ($($ty:ty),*) => {$(
        impl Make for $ty {
            fn make(name: &str, help: &str, labels: &[&str]) -> Self {
                assert!(labels.is_empty(), "{name}: a plain metric has no labels");
                <$ty>::new(name, help).expect(name)
            }
        }
    )*};
}
make_plain!(IntCounter, IntGauge);

macro_rules! make_vec {
    ($($ty:ty),*) => {$(
        impl Make for $ty {
            fn make(name: &str, help: &str, labels: &[&str]) -> Self {
                <$ty>::new(Opts::new(name, help), labels).expect(name)
            }
        }
    )*};
}
make_vec!(IntCounterVec, IntGaugeVec, GaugeVec);

impl Make for Histogram {
    fn make(name: &str, help: &str, labels: &[&str]) -> Self {
        assert!(labels.is_empty(), "{name}: use HistogramVec for labels");
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets())).expect(name)
    }
}

impl Make for HistogramVec {
    fn make(name: &str, help: &str, labels: &[&str]) -> Self {
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets()), labels).expect(name)
    }
}

fn registered<M: Make>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is declared once");
    metric
}

declare! {
    /// Every metric of a process: the processor's, and the webhook service's in `webhook`.
    pub struct Metrics(registry) {
        [
            registry: Registry = registry.clone(),
            webhook: WebhookMetrics = WebhookMetrics::declare(registry),
        ]
        events: IntCounterVec = ("aepiot_events_total",
            "Input records processed, by outcome", ["outcome"]),
        urls_generated: IntCounter = ("aepiot_urls_generated_total",
            "Backlink URLs generated"),
        dead_letters: IntCounterVec = ("aepiot_dead_letters_total",
            "Invalid input records written to the dead-letter topic, by error kind", ["kind"]),
        misrouted: IntCounter = ("aepiot_misrouted_total",
            "Records whose Kafka key is not their device_id (their device's state may be split across partitions)"),
        consumer_lag: IntGaugeVec = ("aepiot_consumer_lag",
            "Messages behind the high watermark, per assigned partition", ["topic", "partition"]),
        processing_latency: Histogram = ("aepiot_processing_latency_seconds",
            "Time from consuming a record to its output or dead letter being acknowledged"),
        event_age: Histogram = ("aepiot_event_age_seconds",
            "Time from the input record's Kafka timestamp to its output being acknowledged"),
        state_devices: IntGaugeVec = ("aepiot_state_devices",
            "Devices with rate-limit or dedupe state, per assigned partition", ["topic", "partition"]),
        state_cache_entries: IntGaugeVec = ("aepiot_state_cache_entries",
            "Dedupe cache entries, per assigned partition", ["topic", "partition"]),
        consumer_prefetch_bytes: IntGauge = ("aepiot_consumer_prefetch_bytes",
            "Input bytes fetched and not yet read by the partition workers, over all partitions (librdkafka's statistics, every 5 s); bounded by input.prefetch_budget_bytes"),
        assigned_partitions: IntGauge = ("aepiot_assigned_partitions",
            "Input partitions assigned to this instance"),
        rebalances: IntCounterVec = ("aepiot_rebalances_total",
            "Rebalance events, by kind (assign, revoke, error)", ["kind"]),
        commit_failures: IntCounter = ("aepiot_commit_failures_total",
            "Offset commits that failed"),
        transaction_commit: Histogram = ("aepiot_transaction_commit_seconds",
            "Exactly-once: time each transaction commit takes (send the offsets, flush the outputs, commit, begin the next)"),
        transaction_deferred: IntCounter = ("aepiot_transaction_deferred_records_total",
            "Exactly-once: records produced while a transaction committed, kept and produced into the next one"),
        producer_queue_messages: IntGauge = ("aepiot_producer_queue_messages",
            "Messages in the producer's queue, waiting to be sent or acknowledged"),
        state_restore_seconds: Histogram = ("aepiot_state_restore_seconds",
            "Time to restore a partition's device state from its changelog"),
        state_restored_records: IntCounter = ("aepiot_state_restored_records_total",
            "State-changelog records read while restoring partitions"),
        records_written: IntCounterVec = ("aepiot_records_written_total",
            "URL records produced, by output topic (bounded by configuration: output_topic and output_topics_by_region)", ["topic"]),
        producer_errors: IntCounterVec = ("aepiot_producer_errors_total",
            "Producer errors, by cluster (`main`, or a name of [clusters]): client errors such as an unreachable broker or refused authentication, and deliveries the cluster refused", ["cluster"]),
        cluster_outputs_waiting: IntGaugeVec = ("aepiot_cluster_outputs_waiting",
            "Outputs produced to a cluster and not yet acknowledged by it (queued or in flight), by cluster; from librdkafka's statistics, every 5 s", ["cluster"]),
        cluster_ack_wait: GaugeVec = ("aepiot_cluster_ack_wait_seconds",
            "How long a cluster has had outputs waiting without acknowledging any, by cluster (0 while it acknowledges); meanwhile the offsets of the input partitions whose records wait for it are not committed past them", ["cluster"]),
        state_evictions: IntCounter = ("aepiot_state_evictions_total",
            "Devices whose state was dropped to keep the instance within limits.max_devices"),
        delivery_failures: IntCounter = ("aepiot_delivery_failures_total",
            "Outputs the cluster did not take for a reason that is not the record's own (authorization, topic gone, retries exhausted); the instance stops"),
        schema_registry_errors: IntCounterVec = ("aepiot_schema_registry_errors_total",
            "Schema Registry requests that got no answer to use, by reason (unreachable, timeout, http_5xx, http_4xx, invalid_response); the partition that needed the schema waits and asks again", ["reason"]),
        schema_registry_waiting: IntGauge = ("aepiot_schema_registry_waiting_partitions",
            "Partitions holding a record whose schema the Schema Registry has not answered for yet"),
        schema_registry_schemas: IntGauge = ("aepiot_schema_registry_schemas",
            "Schema ids kept in memory (parsed schemas, unknown ids, fetches under way), at most schema_registry.max_cached_schemas"),
        trace_spans_exported: IntCounter = ("aepiot_trace_spans_exported_total",
            "Spans the OTLP collector accepted ([tracing])"),
        trace_spans_dropped: IntCounter = ("aepiot_trace_spans_dropped_total",
            "Spans dropped instead of exported: the export queue was full (collector slow) or the export failed or timed out (collector down or refusing); processing never waits for the collector"),
    }
}

/// Reason label values of `aepiot_schema_registry_errors_total`.
pub const REGISTRY_ERROR_REASONS: [&str; 5] = [
    "unreachable",
    "timeout",
    "http_5xx",
    "http_4xx",
    "invalid_response",
];

declare! {
    /// The webhook service's metrics (`aepiot-stream webhooks`, `run --webhooks`).
    pub struct WebhookMetrics(registry) {
        requests: IntCounterVec = ("aepiot_webhook_requests_total",
            "Webhook HTTP requests, by result: delivered (2xx), retried (failed, another attempt follows), dead_lettered (failed, the record went to the webhook dead-letter topic), failed (failed, abandoned at a revoke or shutdown; sent again by the partition's next owner)", ["result"]),
        latency: HistogramVec = ("aepiot_webhook_latency_seconds",
            "Webhook request latency", ["result"]),
        retries: IntCounter = ("aepiot_webhook_retries_total",
            "Webhook requests that failed and were scheduled again (after a backoff or Retry-After)"),
        dead_letters: IntCounter = ("aepiot_webhook_dead_letters_total",
            "Records (per endpoint) written to the webhook dead-letter topic: refused, or still failing after the last attempt"),
        in_flight: IntGauge = ("aepiot_webhook_in_flight_requests",
            "Webhook HTTP requests in flight"),
        lag: IntGaugeVec = ("aepiot_webhook_lag",
            "Output-topic records an endpoint's consumer group has not yet delivered or dead-lettered, over its assigned partitions, by endpoint (name); grows while the endpoint is down", ["endpoint"]),
        endpoint_up: IntGaugeVec = ("aepiot_webhook_endpoint_up",
            "1 while a webhook endpoint is up, 0 while it is down (after webhooks.down_after_failures consecutive failures, until a probe succeeds), by endpoint (name)", ["endpoint"]),
        endpoint_down_seconds: GaugeVec = ("aepiot_webhook_endpoint_down_seconds",
            "How long a webhook endpoint has been down (0 while up), by endpoint (name); its records are dead-lettered once this passes webhooks.outage_max_secs", ["endpoint"]),
        endpoint_outages: IntCounterVec = ("aepiot_webhook_endpoint_outages_total",
            "Times a webhook endpoint went down, by endpoint (name)", ["endpoint"]),
    }
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
        let m = Metrics::declare(&registry);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .unwrap();
        #[cfg(feature = "jemalloc")]
        registry
            .register(Box::new(
                crate::allocator_metrics::AllocatorCollector::default(),
            ))
            .unwrap();
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
            m.webhook.requests.with_label_values(&[r]);
        }
        for r in REGISTRY_ERROR_REASONS {
            m.schema_registry_errors.with_label_values(&[r]);
        }
        m
    }

    /// Counter children for one outcome kind, resolved once.
    pub fn outcome_counters(&self) -> OutcomeCounters {
        OutcomeCounters {
            success: self.events.with_label_values(&["success"]).local(),
            cached: self.events.with_label_values(&["cached"]).local(),
            rate_limited: self.events.with_label_values(&["rate_limited"]).local(),
            invalid: self.events.with_label_values(&["invalid"]).local(),
            urls: self.urls_generated.local(),
            dead_letters: ErrorKind::ALL
                .map(|k| self.dead_letters.with_label_values(&[k.as_str()]).local()),
            misrouted: self.misrouted.local(),
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

/// Pre-resolved counters of the per-event path, counted locally (one worker's) until
/// [`OutcomeCounters::flush`] adds them to the shared ones.
#[derive(Clone)]
pub struct OutcomeCounters {
    success: LocalIntCounter,
    cached: LocalIntCounter,
    rate_limited: LocalIntCounter,
    invalid: LocalIntCounter,
    urls: LocalIntCounter,
    dead_letters: [LocalIntCounter; ErrorKind::ALL.len()],
    pub misrouted: LocalIntCounter,
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

    /// Adds the counts so far to the shared counters.
    pub fn flush(&self) {
        for c in [
            &self.success,
            &self.cached,
            &self.rate_limited,
            &self.invalid,
            &self.urls,
            &self.misrouted,
        ]
        .into_iter()
        .chain(&self.dead_letters)
        {
            c.flush();
        }
    }
}
