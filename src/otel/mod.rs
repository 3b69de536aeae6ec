//! Distributed traces (`[tracing]`): the W3C trace context of each input record carried to its URL
//! record, its dead letter and its webhook requests, with a span per hop exported over OTLP.
//!
//! - **Propagation** ([`propagate`]): an input record's `traceparent`/`tracestate` headers are the
//!   parent of its processing span; the URL record and the dead letter carry a `traceparent` of
//!   the same trace with the processing span as parent; the webhook service reads it back and the
//!   request carries one with the delivery span as parent. A record without a `traceparent` gets
//!   none, unless it is sampled as a new root (`sample_ratio`).
//! - **Sampling, parent-based**: a sampled parent is always followed; a parent that is not
//!   sampled gives a non-recording span whose context the outputs carry (the trace goes on, nothing
//!   is exported), as the SDK's `ParentBased` sampler does.
//! - **Export** ([`export`]): finished spans go to a bounded queue, and one task exports them in
//!   batches (OTLP/HTTP protobuf). A full queue or a failed export drops spans, counted in
//!   `aepiot_trace_spans_dropped_total`: processing never waits for the collector.
//!
//! Why spans are made here with the OpenTelemetry SDK's tracer directly, rather than as `tracing`
//! spans bridged by `tracing-opentelemetry`: a `tracing` span per record would exist for every
//! record (sampling is decided later, inside the layer, which also keeps its own context per
//! span), a cost paid at 100k+ records/s whether the record is sampled or not. Here the decision
//! comes first and costs a header lookup and, without a parent, one random number; only records
//! that have a parent or are sampled reach the SDK. With `otlp_endpoint` empty (the default) no
//! [`Otel`] exists, and the hot path tests one `Option`.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span};
use opentelemetry_sdk::Resource;
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};

use crate::metrics::Metrics;

pub mod config;
mod export;
pub mod propagate;

pub use config::TracingConfig;

/// The process's tracer: present only when `tracing.otlp_endpoint` is set.
pub struct Otel {
    tracer: SdkTracer,
    /// Kept so the provider (and its span queue) lives as long as the tracer's users.
    _provider: SdkTracerProvider,
    ratio: f64,
    /// The processor's consumer group, as its processing spans name it.
    group: String,
    propagator: TraceContextPropagator,
    export: Mutex<Option<export::Exporting>>,
}

impl Otel {
    /// The tracer for `config` (of the consumer group `group`), with its export task on the
    /// current runtime; `None` when tracing is off.
    pub fn start(
        config: &TracingConfig,
        group: &str,
        metrics: &Metrics,
    ) -> anyhow::Result<Option<Arc<Otel>>> {
        if !config.enabled() {
            return Ok(None);
        }
        config.validate().map_err(anyhow::Error::msg)?;
        let instance = if config.instance_id.is_empty() {
            format!(
                "{}-{}",
                crate::kafka::client::hostname(),
                std::process::id()
            )
        } else {
            config.instance_id.clone()
        };
        let resource = Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attributes([
                KeyValue::new("service.instance.id", instance),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let (queue, exporting) = export::start(config, &resource, metrics)?;
        // Roots are sampled before the SDK is called (see [`Otel::parent`]); the SDK's sampler
        // only applies the parent's decision.
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            // A webhook delivery's attempts are events: bounded like its spans' queue.
            .with_max_events_per_span(16)
            .with_resource(resource)
            .build();
        tracing::info!(endpoint = %config.otlp_endpoint, sample_ratio = config.sample_ratio, "exporting traces");
        Ok(Some(Arc::new(Otel {
            tracer: provider.tracer("aepiot-stream"),
            _provider: provider,
            ratio: config.sample_ratio,
            group: group.to_owned(),
            propagator: TraceContextPropagator::new(),
            export: Mutex::new(Some(exporting)),
        })))
    }

    /// The parent of a record's span: its `traceparent` (and `tracestate`) when valid, else a new
    /// root when sampled (`sample_ratio`), else `None`: the record is not traced.
    pub fn parent(&self, headers: Option<&BorrowedHeaders>) -> Option<Context> {
        if let Some(h) = headers.filter(|h| propagate::has_traceparent(h)) {
            let cx = propagate::extract(&self.propagator, h);
            if cx.has_active_span() {
                return Some(cx);
            }
        }
        let sampled = self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio);
        sampled.then(Context::new)
    }

    /// Starts a span of `kind` under `parent` (recording when the parent is sampled or a root).
    pub fn span(
        &self,
        parent: &Context,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Hop {
        let builder = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes);
        Hop {
            span: self.tracer.build_with_context(builder, parent),
        }
    }

    /// The span of one Kafka record being processed (`process <topic>`), with the messaging
    /// attributes of the record it consumed.
    pub fn consumed(&self, parent: &Context, topic: &str, partition: i32, offset: i64) -> Hop {
        self.span(
            parent,
            format!("process {topic}"),
            SpanKind::Consumer,
            vec![
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.destination.name", topic.to_owned()),
                KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                KeyValue::new("messaging.kafka.offset", offset),
                KeyValue::new("messaging.consumer.group.name", self.group.clone()),
            ],
        )
    }

    /// Exports what is queued (within `tracing.export_timeout_ms`) and ends the export task.
    pub async fn shutdown(&self) {
        let exporting = self.export.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = exporting {
            e.finish().await;
        }
    }
}

/// A record's span at one hop. Ended when dropped.
pub struct Hop {
    span: Span,
}

impl Hop {
    pub fn set(&mut self, attribute: KeyValue) {
        self.span.set_attribute(attribute);
    }

    /// An event on the span (e.g. one webhook attempt).
    pub fn event(&mut self, name: &'static str, attributes: Vec<KeyValue>) {
        self.span.add_event(name, attributes);
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        self.span.set_status(Status::error(description));
    }

    /// The trace id, for log lines about the record.
    pub fn trace_id(&self) -> TraceId {
        self.span.span_context().trace_id()
    }

    /// The `traceparent` an output of this hop carries: this trace, this span as parent.
    pub fn traceparent(&self) -> String {
        propagate::traceparent(self.span.span_context())
    }

    /// The `tracestate` an output carries on (absent when empty).
    pub fn tracestate(&self) -> Option<String> {
        let state = self.span.span_context().trace_state().header();
        (!state.is_empty()).then_some(state)
    }

    /// `headers` with this hop's `traceparent` (and `tracestate`) added.
    pub fn kafka_headers(&self, headers: OwnedHeaders) -> OwnedHeaders {
        propagate::insert(headers, &self.traceparent(), self.tracestate().as_deref())
    }

    /// This hop's context as an output carries it.
    pub fn carried(&self) -> propagate::Carried {
        propagate::Carried {
            traceparent: self.traceparent(),
            tracestate: self.tracestate(),
        }
    }

    pub fn end(mut self) {
        self.span.end();
    }
}

/// `result`, once the spans still queued are exported (within `tracing.export_timeout_ms`): how a
/// service ends with tracing on.
pub async fn finish<T>(otel: Option<Arc<Otel>>, result: T) -> T {
    if let Some(otel) = otel {
        otel.shutdown().await;
    }
    result
}

/// The trace id of a record's context, for its log lines (none when not traced).
pub fn trace_id_of(cx: Option<&Context>) -> Option<TraceId> {
    cx.map(|cx| cx.span().span_context().trace_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const NOT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    fn otel(ratio: f64) -> Arc<Otel> {
        let config = TracingConfig {
            // Nothing listens there: these spans are dropped, which is not what is tested here.
            otlp_endpoint: "http://127.0.0.1:9/v1/traces".into(),
            sample_ratio: ratio,
            ..TracingConfig::default()
        };
        Otel::start(&config, "g", &Metrics::new()).unwrap().unwrap()
    }

    fn headers(traceparent: &str) -> OwnedHeaders {
        propagate::insert(OwnedHeaders::new(), traceparent, Some("vendor=1"))
    }

    /// Parent-based sampling: a sampled parent is followed whatever the ratio, an unsampled one is
    /// carried on unrecorded, and a record without one is a root only when the ratio says so.
    #[tokio::test]
    async fn a_sampled_parent_is_followed_and_roots_follow_the_ratio() {
        let never = otel(0.0);
        assert!(never.parent(None).is_none());
        let other = OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "other",
            value: Some("x"),
        });
        assert!(never.parent(Some(other.as_borrowed())).is_none());

        let h = headers(SAMPLED);
        let cx = never
            .parent(Some(h.as_borrowed()))
            .expect("a sampled parent");
        let hop = never.consumed(&cx, "in", 3, 42);
        assert!(hop.span.is_recording());
        let tp = hop.traceparent();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(
            tp.ends_with("-01") && !tp.contains("00f067aa0ba902b7"),
            "{tp}"
        );
        assert_eq!(hop.tracestate().as_deref(), Some("vendor=1"));

        let h = headers(NOT_SAMPLED);
        let cx = never
            .parent(Some(h.as_borrowed()))
            .expect("an unsampled parent");
        let hop = never.consumed(&cx, "in", 3, 43);
        assert!(!hop.span.is_recording());
        let tp = hop.traceparent();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-00"));

        let always = otel(1.0);
        let root = always.parent(None).expect("a root");
        let hop = always.consumed(&root, "in", 0, 0);
        assert!(hop.span.is_recording() && hop.traceparent().ends_with("-01"));
        assert!(!hop
            .traceparent()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(hop.tracestate(), None);
        never.shutdown().await;
        always.shutdown().await;
    }
}
