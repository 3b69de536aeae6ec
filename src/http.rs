//! The HTTP server for `/metrics`, `/healthz` and `/readyz` (and `run`'s status page).
//!
//! It listens on `metrics_addr` (loopback by default) and is hardened for a hostile network:
//! - only `GET` and `HEAD` on the three known paths (and the status page's, see
//!   [`crate::status`]): other methods get 405 (with `Allow`), other paths 404;
//! - bounded requests: a request head (request line and headers) larger than
//!   [`MAX_REQUEST_HEAD_BYTES`] or with more than [`MAX_HEADERS`] headers is refused by hyper
//!   (431), and a request announcing a body larger than [`MAX_REQUEST_BODY_BYTES`] (or a chunked
//!   body, whose size is unknown) gets 413 without the body being read;
//! - bounded time: a connection must deliver each request head within [`HEADER_READ_TIMEOUT`]
//!   (also while idle between keep-alive requests), so a client that connects and sends nothing,
//!   or trickles its headers (slowloris), is disconnected; a request is answered within
//!   [`REQUEST_TIMEOUT`] (else 408 / 503); no connection lives longer than [`CONNECTION_LIFETIME`];
//! - bounded concurrency, probes first: at most [`MAX_CONNECTIONS`] connections at once; when
//!   all are taken, a new connection replaces the one idle longest ([`conns`]), so connections
//!   held open without a request never starve `/healthz` and `/readyz`; only when every
//!   connection is answering a request is a newcomer closed at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

mod conns;

/// Largest request head (request line and headers) accepted, in bytes.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Largest request body accepted, in bytes (no endpoint reads one).
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024;
/// How long a connection may take to deliver a request head, counted from the connection (or the
/// previous response on a kept-alive connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the answer to one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection: then it is closed after its current request.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    /// Connected to the brokers and joined the consumer group (an assignment was received).
    ready: AtomicBool,
    /// What the start waits for, while it waits (e.g. the Schema Registry), for `/readyz`.
    waiting: std::sync::Mutex<Option<String>>,
    /// Partitions waiting for the Schema Registry for a record's schema: not ready while any does.
    pub registry_waits: Arc<crate::schema_registry::Waits>,
}

impl Health {
    pub fn set_waiting(&self, waiting: Option<String>) {
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = waiting;
    }

    fn waiting(&self) -> Option<String> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
}

/// The routes, with the request limits (without the connection-level ones of [`serve`]).
/// `extra`: more routes (the status page, see [`crate::status`]), under the same limits.
fn app(metrics: Metrics, health: Arc<Health>, extra: Router) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health })
        .merge(extra)
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n")
        })
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn(limits))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
}

/// Refuses oversized or unsized bodies before anything else runs; bounds the answer's time.
async fn limits(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
    let too_large = match declared {
        Some(Some(n)) => n > MAX_REQUEST_BODY_BYTES as u64,
        Some(None) => true, // unparsable Content-Length
        None => req.headers().contains_key(header::TRANSFER_ENCODING),
    };
    if too_large {
        let mut r = (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
        // The body is not read: do not reuse the connection.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let head = req.method() == Method::HEAD;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(mut r) => {
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        Err(_) if head => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response(),
    }
}

/// Binds `metrics_addr` for the server (port 0 picks a free one); `None` when it is empty (no
/// server). The caller binds, so it knows the address before anything runs.
pub async fn bind(metrics_addr: &str) -> anyhow::Result<Option<TcpListener>> {
    if metrics_addr.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the metrics server to {metrics_addr}: {e}"))?;
    Ok(Some(listener))
}

/// Binds `addr` and serves until `shutdown`; returns the bound address (port 0 picks a free one).
pub async fn serve(
    addr: &str,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = bind(addr)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no metrics_addr to serve on"))?;
    serve_on(listener, metrics, health, Router::new(), shutdown)
}

/// Serves on `listener` until `shutdown`, with `extra` routes besides the probes and `/metrics`;
/// returns the address it listens on.
pub fn serve_on(
    listener: TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    extra: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let service = TowerToHyperService::new(app(metrics, health, extra));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let table = conns::Table::new(MAX_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "metrics server: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Some(slot) = table.admit() else {
                tracing::debug!(%peer, "metrics server: every connection is busy; closing");
                drop(stream);
                continue;
            };
            let slot = Arc::new(slot);
            let _ = stream.set_nodelay(true);
            let tracked = {
                let (service, slot) = (service.clone(), slot.clone());
                hyper::service::service_fn(move |req| {
                    let busy = slot.request();
                    let answer = hyper::service::Service::call(&service, req);
                    async move {
                        let r = answer.await;
                        drop(busy);
                        r
                    }
                })
            };
            let conn = http.serve_connection(TokioIo::new(stream), tracked);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                let end = tokio::select! {
                    r = conn.as_mut() => Some(r),
                    _ = tokio::time::sleep(CONNECTION_LIFETIME) => None,
                    _ = shutdown.cancelled() => None,
                    // Replaced by a newcomer while idle: close now, as nothing is in flight
                    // (a request that began meanwhile is finished first, as at shutdown).
                    _ = slot.evicted() => if slot.is_busy() { None } else { return },
                };
                if let Some(r) = end {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "metrics server connection closed");
                    }
                    return;
                }
                // Finish the request in flight (if any), then close; hard stop after a grace.
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
            });
        }
    });
    Ok(bound)
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        match s.health.registry_waits.describe() {
            None => (StatusCode::OK, "ready\n".to_string()),
            Some(wait) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {wait}\n"),
            ),
        }
    } else if let Some(waiting) = s.health.waiting() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {waiting}\n"),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not connected or not in the consumer group yet\n".to_string(),
        )
    }
}
