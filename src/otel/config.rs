//! The tracing settings (`[tracing]`), beside the exporter they configure.

use serde::{Deserialize, Serialize};

/// Distributed traces: W3C trace context carried from each input record to its URL record, dead
/// letter and webhook requests, with spans exported over OTLP (see README, "Traces").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// OTLP/HTTP (protobuf) traces endpoint of a collector, e.g.
    /// `http://otel-collector:4318/v1/traces`. Empty (the default): tracing is off, no header is
    /// read or written and no span is made.
    pub otlp_endpoint: String,
    /// Share of records without a sampled `traceparent` that start a new trace (0 to 1). A record
    /// whose `traceparent` is sampled is always followed (parent-based sampling); one whose
    /// `traceparent` is not sampled is never recorded, but its outputs carry the trace on.
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// `service.instance.id` of the spans; empty: `<hostname>-<pid>`.
    pub instance_id: String,
    /// Finished spans waiting for export at most; past it (a collector that is down or slow) spans
    /// are dropped and counted in `aepiot_trace_spans_dropped_total`: processing never waits.
    pub max_queue_spans: usize,
    /// Time one export (a batch of up to 512 spans) may take, retries included, in milliseconds;
    /// its spans are dropped (and counted) after it.
    pub export_timeout_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: String::new(),
            sample_ratio: 0.01,
            service_name: "aepiot-stream".into(),
            instance_id: String::new(),
            max_queue_spans: 4096,
            export_timeout_ms: 5_000,
        }
    }
}

impl TracingConfig {
    /// Whether spans are made and exported.
    pub fn enabled(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }

    /// Rejects impossible settings with what to change.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(format!(
                "tracing.sample_ratio must be between 0 and 1, not {}",
                self.sample_ratio
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        let url = url::Url::parse(self.otlp_endpoint.trim())
            .map_err(|e| format!("tracing.otlp_endpoint is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(
                "tracing.otlp_endpoint must be an http(s) URL (OTLP/HTTP, e.g. http://collector:4318/v1/traces)"
                    .into(),
            );
        }
        if self.service_name.trim().is_empty() {
            return Err("tracing.service_name must not be empty".into());
        }
        if self.max_queue_spans == 0 || self.export_timeout_ms == 0 {
            return Err(
                "tracing.max_queue_spans and tracing.export_timeout_ms must be at least 1".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        let c = TracingConfig::default();
        assert!(!c.enabled());
        assert_eq!(c.validate(), Ok(()));
        let on = |endpoint: &str, ratio: f64| TracingConfig {
            otlp_endpoint: endpoint.into(),
            sample_ratio: ratio,
            ..TracingConfig::default()
        };
        assert_eq!(
            on("http://127.0.0.1:4318/v1/traces", 1.0).validate(),
            Ok(())
        );
        assert!(on("127.0.0.1:4318", 0.5).validate().is_err());
        assert!(on("grpc://collector:4317", 0.5).validate().is_err());
        assert!(on("", 1.5).validate().unwrap_err().contains("sample_ratio"));
        assert!(on("http://c:4318/v1/traces", -0.1).validate().is_err());
    }
}
