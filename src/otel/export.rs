//! Where finished spans go: a bounded queue (the SDK's span processor, [`Queue`]), and one task
//! on the runtime that exports them in batches, as OTLP/HTTP protobuf, through the webhook
//! service's HTTP client stack (reqwest).
//!
//! Never in the way: a span that finds the queue full is dropped, and so are the spans of an
//! export that failed or timed out (collector down, slow, refusing); both are counted in
//! `aepiot_trace_spans_dropped_total`. The queue holds at most `tracing.max_queue_spans` spans of
//! bounded size (a handful of attributes: topic names, offsets, a status, an error kind; at most
//! 16 events), so its memory is bounded too.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::TracingConfig;
use crate::metrics::Metrics;

/// Spans per export request at most.
const BATCH: usize = 512;
/// How long a batch that is not full waits for more spans before it is sent.
const LINGER: Duration = Duration::from_millis(200);
/// Response bytes read at most (a collector answers with a few bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The span processor: hands each finished, sampled span to the export task, or drops it.
#[derive(Debug)]
pub(super) struct Queue {
    tx: mpsc::Sender<SpanData>,
    dropped: IntCounter,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task, stopped by [`Exporting::finish`].
pub(super) struct Exporting {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Exporting {
    /// Exports what is queued, then ends the task; gives up after the export timeout (and a
    /// second for the request in flight).
    pub(super) async fn finish(self) {
        self.stop.cancel();
        let mut task = self.task;
        let wait = self.timeout + Duration::from_secs(1);
        if tokio::time::timeout(wait, &mut task).await.is_err() {
            task.abort();
            tracing::warn!("trace export did not finish in time; the spans left are dropped");
        }
    }
}

/// The OTLP exporter for `config`, its queue and its task (on the current runtime).
pub(super) fn start(
    config: &TracingConfig,
    resource: &Resource,
    metrics: &Metrics,
) -> anyhow::Result<(Queue, Exporting)> {
    let timeout = Duration::from_millis(config.export_timeout_ms);
    let client = reqwest::Client::builder()
        .user_agent(crate::webhook::request::USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot create the OTLP HTTP client: {e}"))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Reqwest(client))
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.otlp_endpoint.trim())
        .with_timeout(timeout)
        .build()
        .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint: {e}"))?;
    exporter.set_resource(resource);
    let (tx, rx) = mpsc::channel(config.max_queue_spans);
    let dropped = metrics.trace_spans_dropped.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(export_loop(
        rx,
        exporter,
        timeout,
        stop.clone(),
        (metrics.trace_spans_exported.clone(), dropped.clone()),
    ));
    Ok((
        Queue { tx, dropped },
        Exporting {
            stop,
            task,
            timeout,
        },
    ))
}

/// Sends the queued spans in batches of up to [`BATCH`] (a batch that is not full waits up to
/// [`LINGER`] for more) until stopped, then what is left.
async fn export_loop(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: impl SpanExporter,
    timeout: Duration,
    stop: CancellationToken,
    (exported, dropped): (IntCounter, IntCounter),
) {
    let mut batch = Vec::with_capacity(BATCH);
    let counters = (&exported, &dropped);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            n = rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
        }
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            let more = rx.recv_many(&mut batch, room);
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                n = tokio::time::timeout_at(until, more) => if !matches!(n, Ok(n) if n > 0) { break },
            }
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        export_batch(&exporter, full, timeout, counters).await;
    }
    // Stopping: what is queued now goes out, in batches.
    rx.close();
    while let Some(span) = rx.recv().await {
        batch.push(span);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            export_batch(&exporter, full, timeout, counters).await;
        }
    }
    if !batch.is_empty() {
        export_batch(&exporter, batch, timeout, counters).await;
    }
}

/// Exports one batch within `timeout`, counting its spans exported or dropped.
async fn export_batch(
    exporter: &impl SpanExporter,
    batch: Vec<SpanData>,
    timeout: Duration,
    (exported, dropped): (&IntCounter, &IntCounter),
) {
    let n = batch.len() as u64;
    match tokio::time::timeout(timeout, exporter.export(batch)).await {
        Ok(Ok(())) => exported.inc_by(n),
        Ok(Err(e)) => {
            dropped.inc_by(n);
            tracing::debug!(error = %e, spans = n, "trace export failed; spans dropped");
        }
        Err(_) => {
            dropped.inc_by(n);
            tracing::debug!(spans = n, "trace export timed out; spans dropped");
        }
    }
}

/// OTLP's HTTP client interface on reqwest (the client the webhook service already builds), so
/// the exporter needs no HTTP stack of its own.
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Reqwest {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut resp = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let mut out = http::Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = std::mem::take(resp.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err("the collector's response is over 64 KiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(out.body(Bytes::from(body))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// A queue that is full (the export task behind) drops the span at once and counts it: the
    /// record's processing never waits for the collector.
    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = IntCounter::new("dropped", "dropped").unwrap();
        let queue = Queue {
            tx,
            dropped: dropped.clone(),
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .build();
        let tracer = provider.tracer("test");
        for _ in 0..5 {
            tracer.start("span").end();
        }
        assert_eq!(dropped.get(), 3);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }
}
