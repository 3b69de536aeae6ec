//! The operator's window on a running processor, served by the metrics server (`run`, `demo`):
//!
//! - `/`: a live status page ([`page.html`](page.html), compiled in): events/s by outcome over the
//!   last minutes, URLs generated, dead letters by kind, per-partition lag and state size, and
//!   the last URL records by region, and with `run --webhooks` each webhook endpoint's state and
//!   lag ([`endpoints`]). It polls `/api/status` every second; it loads nothing from
//!   anywhere else (its Content-Security-Policy allows only its own inline script and style, and
//!   requests to its own origin), and writes every value with `textContent`.
//! - `/api/status`: the page's data, JSON.
//! - `/api/devices/{device_id}`: one device's state, answered by the partition worker that holds
//!   it (see [`link`]); 404 when no partition of this instance holds it.
//!
//! The page's figures come from the metrics registry ([`crate::metrics`]): what it shows is what
//! `/metrics` says.

pub mod device;
pub mod endpoints;
pub mod history;
pub mod link;
pub mod recent;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::core::ErrorKind;
use crate::http::Health;
use crate::metrics::{Metrics, OUTCOMES};
use history::History;
use link::DeviceQuery;
use recent::Recent;

/// The page, compiled into the binary.
pub const PAGE: &str = include_str!("page.html");

/// How long a device lookup waits for the workers' answers.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest device id looked up (a valid event's `device_id` has at most 256 bytes).
const MAX_DEVICE_ID_BYTES: usize = 256;

type Tp = (String, i32);

/// What the page and the device lookup read: shared by the HTTP handlers and the workers.
pub struct StatusHub {
    metrics: Metrics,
    health: Arc<Health>,
    info: Value,
    started: Instant,
    pub(crate) recent: Recent,
    history: History,
    /// The query channel of each running partition worker, with its registration id.
    workers: Mutex<BTreeMap<Tp, (u64, mpsc::Sender<DeviceQuery>)>>,
    next_id: AtomicU64,
}

impl StatusHub {
    pub fn new(config: &Config, metrics: Metrics, health: Arc<Health>) -> Arc<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let info = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "host": host,
            "group_id": config.group_id,
            "input_topics": config.input_topics,
            "output_topic": config.output_topic,
            "dead_letter_topic": config.dead_letter_topic,
            "processing_guarantee": config.processing_guarantee,
            "limits": {
                "max_urls_per_device": config.limits.max_urls_per_device,
                "window_secs": config.limits.window_secs,
                "cache_ttl_secs": config.limits.cache_ttl_secs,
            },
        });
        Arc::new(StatusHub {
            metrics,
            health,
            info,
            started: Instant::now(),
            recent: Recent::new(config.urls.regions.keys().cloned().collect()),
            history: History::default(),
            workers: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Starts the per-second history until `stop`.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) {
        let hub = self.clone();
        tokio::spawn(async move { hub.history.run(hub.metrics.clone(), stop).await });
    }

    /// `/`, `/api/status` and `/api/devices/{device_id}`, for [`crate::http::serve_on`].
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/api/status", get(status))
            .route("/api/devices/{*device_id}", get(device))
            .with_state(self.clone())
    }

    fn register(&self, topic: &str, partition: i32, tx: mpsc::Sender<DeviceQuery>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((topic.to_owned(), partition), (id, tx));
        id
    }

    /// Forgets a worker, unless another has registered for its partition since.
    fn unregister(&self, topic: &str, partition: i32, id: u64) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let key = (topic.to_owned(), partition);
        if workers.get(&key).is_some_and(|(i, _)| *i == id) {
            workers.remove(&key);
        }
    }

    /// The page's data.
    pub fn status_json(&self) -> Value {
        let m = &self.metrics;
        let events: serde_json::Map<String, Value> = OUTCOMES
            .iter()
            .map(|o| (o.to_string(), m.events_of(o).into()))
            .collect();
        let processed: u64 = OUTCOMES.iter().map(|o| m.events_of(o)).sum();
        let dead_letters: serde_json::Map<String, Value> = ErrorKind::ALL
            .iter()
            .map(|k| {
                let n = m.dead_letters.with_label_values(&[k.as_str()]).get();
                (k.as_str().to_string(), n.into())
            })
            .collect();
        json!({
            "info": self.info,
            "now": now_ms(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "ready": self.health.is_ready(),
            "schema_registry_waits": self.health.registry_waits.list(),
            "processed": processed,
            "events": events,
            "urls_generated": m.urls_generated.get(),
            "dead_letters": dead_letters,
            "misrouted": m.misrouted.get(),
            "assigned_partitions": m.assigned_partitions.get(),
            "producer_queue_messages": m.producer_queue_messages.get(),
            "partitions": self.partitions(),
            "webhook_endpoints": endpoints::endpoints(&self.metrics),
            "history": self.history.json(),
            "recent": {
                "regions": self.recent.regions(),
                "records": self.recent.records(),
            },
        })
    }

    /// Lag, devices and cache entries of each assigned partition, from the metrics.
    fn partitions(&self) -> Vec<Value> {
        const GAUGES: [(&str, &str); 3] = [
            ("aepiot_consumer_lag", "lag"),
            ("aepiot_state_devices", "devices"),
            ("aepiot_state_cache_entries", "cache_entries"),
        ];
        let mut rows: BTreeMap<Tp, serde_json::Map<String, Value>> = BTreeMap::new();
        for family in self.metrics.registry.gather() {
            let Some((_, field)) = GAUGES.iter().find(|(n, _)| *n == family.name()) else {
                continue;
            };
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                };
                let (Some(topic), Some(Ok(partition))) =
                    (label("topic"), label("partition").map(|p| p.parse::<i32>()))
                else {
                    continue;
                };
                rows.entry((topic, partition)).or_default().insert(
                    field.to_string(),
                    (metric.get_gauge().value() as i64).into(),
                );
            }
        }
        rows.into_iter()
            .map(|((topic, partition), mut row)| {
                row.insert("topic".into(), topic.into());
                row.insert("partition".into(), partition.into());
                Value::Object(row)
            })
            .collect()
    }

    /// Asks every worker of this instance for `device_id`'s state.
    pub async fn lookup(&self, device_id: &str) -> Lookup {
        let device: Arc<str> = Arc::from(device_id);
        let workers: Vec<(Tp, mpsc::Sender<DeviceQuery>)> = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(tp, (_, tx))| (tp.clone(), tx.clone()))
            .collect();
        let mut asked = Vec::new();
        let mut silent = Vec::new();
        for (tp, tx) in workers {
            let (reply, rx) = oneshot::channel();
            let q = DeviceQuery {
                device_id: device.clone(),
                reply,
            };
            match tx.try_send(q) {
                Ok(()) => asked.push((tp, rx)),
                Err(_) => silent.push(tp),
            }
        }
        let partitions: Vec<Tp> = asked
            .iter()
            .map(|(tp, _)| tp.clone())
            .chain(silent.iter().cloned())
            .collect();
        let deadline = tokio::time::Instant::now() + LOOKUP_TIMEOUT;
        let mut found: Vec<Value> = Vec::new();
        for (tp, rx) in asked {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Some(v))) => found.push(v),
                Ok(Ok(None)) => {}
                // Stopped (revoked) or still restoring its state.
                Ok(Err(_)) | Err(_) => silent.push(tp),
            }
        }
        // A device whose events arrive on several partitions (keyed by something else than its
        // id) has a state on each: the one with the latest clock first, the others named.
        found.sort_by(|a, b| b["device_clock"].as_str().cmp(&a["device_clock"].as_str()));
        let mut found = found.into_iter();
        if let Some(mut first) = found.next() {
            let others: Vec<Value> = found
                .map(|v| json!({"topic": v["topic"], "partition": v["partition"]}))
                .collect();
            if !others.is_empty() {
                first["also_on_partitions"] = others.into();
            }
            return Lookup::Found(first);
        }
        Lookup::NotHere {
            partitions,
            silent,
            group: self.info["group_id"].as_str().unwrap_or("").to_string(),
        }
    }
}

/// The outcome of a device lookup.
pub enum Lookup {
    Found(Value),
    /// No partition of this instance holds the device (`silent`: partitions that did not answer).
    NotHere {
        partitions: Vec<Tp>,
        silent: Vec<Tp>,
        group: String,
    },
}

/// Wall clock, epoch ms.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn tp_list(tps: &[Tp]) -> String {
    if tps.is_empty() {
        return "none".into();
    }
    tps.iter()
        .map(|(t, p)| format!("{t}/{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Content-Security-Policy of the page: its own inline script and style (by hash), requests
/// to its own origin only; nothing else.
fn page_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest;
        let hash = |tag: &str| {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            let start = PAGE.find(&open).expect("page has the element") + open.len();
            let end = start + PAGE[start..].find(&close).expect("element is closed");
            let digest = sha2::Sha256::digest(&PAGE.as_bytes()[start..end]);
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash("script"),
            hash("style")
        )
    })
}

async fn page() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page_csp()),
    );
    // A click on a URL record's link does not tell the aéPiot host where the page lives.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// A JSON response.
fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).expect("JSON values serialize");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn status(State(hub): State<Arc<StatusHub>>) -> Response {
    json_response(StatusCode::OK, &hub.status_json())
}

async fn device(State(hub): State<Arc<StatusHub>>, Path(device_id): Path<String>) -> Response {
    if device_id.len() > MAX_DEVICE_ID_BYTES {
        let error = format!("not a device id: longer than {MAX_DEVICE_ID_BYTES} bytes");
        return json_response(StatusCode::BAD_REQUEST, &json!({ "error": error }));
    }
    match hub.lookup(&device_id).await {
        Lookup::Found(v) => json_response(StatusCode::OK, &v),
        Lookup::NotHere {
            partitions,
            silent,
            group,
        } if !silent.is_empty() => {
            let error = format!(
                "no answer yet for device {device_id:?}: partition(s) {} of this instance did not \
                 answer within {} s (restoring their state, or being handed over); try again",
                tp_list(&silent),
                LOOKUP_TIMEOUT.as_secs()
            );
            let body = json!({
                "error": error,
                "device_id": device_id,
                "group_id": group,
                "partitions": partitions.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            });
            json_response(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
        Lookup::NotHere {
            partitions, group, ..
        } => {
            let error = format!(
                "device {device_id:?} is not held by this instance: none of its partitions ({}) \
                 has state for it. Its partition is owned by another instance of group {group:?} \
                 (ask that one, or read the state changelog with `aepiot-stream inspect device`), \
                 or it has had no event within its window and the state grace period",
                tp_list(&partitions)
            );
            let body = json!({
                "error": error,
                "device_id": device_id,
                "group_id": group,
                "partitions": partitions.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            });
            json_response(StatusCode::NOT_FOUND, &body)
        }
    }
}
