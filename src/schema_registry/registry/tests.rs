//! The registry client and cache against a fake registry served on a local port.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;

use super::*;
use crate::schema_registry::config::SchemaRegistryConfig;
use crate::secret::Secret;

#[derive(Default)]
struct Fake {
    /// Requests by path.
    hits: HashMap<String, usize>,
    /// Answer every request with this status instead.
    fail: Option<StatusCode>,
    /// Answer after this long.
    delay: Duration,
    /// Basic auth the registry asks for (`Authorization` header value).
    auth: Option<String>,
}

type Shared = Arc<Mutex<Fake>>;

const AVRO: &str =
    r#"{"type":"record","name":"E","fields":[{"name":"device_id","type":"string"}]}"#;
const PROTO: &str = "syntax = \"proto3\";\nimport \"other.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage E { string device_id = 1; O o = 2; google.protobuf.Timestamp t = 3; }\n";
const OTHER: &str = "syntax = \"proto3\";\nmessage O { string x = 1; }\n";

async fn answer(s: &Shared, headers: &HeaderMap, path: String) -> Result<String, StatusCode> {
    let (delay, fail, auth) = {
        let mut f = s.lock().unwrap();
        *f.hits.entry(path).or_default() += 1;
        (f.delay, f.fail, f.auth.clone())
    };
    tokio::time::sleep(delay).await;
    if let Some(status) = fail {
        return Err(status);
    }
    if let Some(auth) = auth {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
        if given != Some(auth.as_str()) {
            return Err(StatusCode::UNAUTHORIZED);
        }
    }
    Ok(String::new())
}

async fn by_id(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<u32>,
) -> Result<String, StatusCode> {
    answer(&s, &headers, format!("ids/{id}")).await?;
    let body = match id {
        1 | 10 | 11 | 12 => serde_json::json!({ "schema": AVRO }),
        2 => serde_json::json!({
            "schema": PROTO,
            "schemaType": "PROTOBUF",
            "references": [
                {"name": "other.proto", "subject": "other value", "version": 3},
                {"name": "google/protobuf/timestamp.proto", "subject": "ts", "version": 1},
            ],
        }),
        3 => serde_json::json!({ "schema": "{not avro" }),
        _ => return Err(StatusCode::NOT_FOUND),
    };
    Ok(body.to_string())
}

async fn by_subject(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((subject, version)): Path<(String, u32)>,
) -> Result<String, StatusCode> {
    answer(&s, &headers, format!("subjects/{subject}/{version}")).await?;
    if (subject.as_str(), version) != ("other value", 3) {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(serde_json::json!({ "schema": OTHER, "schemaType": "PROTOBUF" }).to_string())
}

/// A fake registry under `/apis/ccompat/v7`, and its base URL.
async fn fake() -> (Shared, String) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/apis/ccompat/v7/schemas/ids/{id}", get(by_id))
        .route(
            "/apis/ccompat/v7/subjects/{subject}/versions/{version}",
            get(by_subject),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, format!("http://{addr}/apis/ccompat/v7/"))
}

fn registry(url: &str, max: usize, timeout_ms: u64) -> Arc<Registry> {
    let config = SchemaRegistryConfig {
        url: url.into(),
        request_timeout_ms: timeout_ms,
        ..Default::default()
    };
    Arc::new(Registry::new(Client::new(&config).unwrap(), max))
}

fn hits(s: &Shared, path: &str) -> usize {
    s.lock().unwrap().hits.get(path).copied().unwrap_or(0)
}

#[tokio::test]
async fn concurrent_askers_share_one_fetch_and_the_schema_is_kept() {
    let (fake, url) = fake().await;
    fake.lock().unwrap().delay = Duration::from_millis(300);
    let r = registry(&url, 10, 5000);
    let askers: Vec<_> = (0..20)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.resolve(1).await })
        })
        .collect();
    for a in askers {
        let resolved = a.await.unwrap().unwrap();
        assert!(matches!(resolved.as_deref(), Ok(Schema::Avro(_))));
    }
    assert_eq!(hits(&fake, "ids/1"), 1);
    assert!(r.cached(1).is_some());
    r.resolve(1).await.unwrap().unwrap();
    assert_eq!(hits(&fake, "ids/1"), 1);
}

#[tokio::test]
async fn references_are_fetched_and_well_known_imports_are_built_in() {
    let (fake, url) = fake().await;
    let r = registry(&url, 10, 5000);
    let resolved = r.resolve(2).await.unwrap();
    assert!(
        matches!(resolved.as_deref(), Ok(Schema::Protobuf(_))),
        "{resolved:?}"
    );
    assert_eq!(hits(&fake, "subjects/other value/3"), 1);
    assert_eq!(hits(&fake, "subjects/ts/1"), 0);
}

#[tokio::test]
async fn unknown_ids_and_bad_schemas_are_the_records_problem_and_are_kept() {
    let (fake, url) = fake().await;
    let r = registry(&url, 10, 5000);
    let p = r.resolve(404).await.unwrap().unwrap_err();
    assert_eq!(p.kind, ErrorKind::UnknownSchema);
    assert!(p.message.contains("404"), "{}", p.message);
    let p = r.resolve(3).await.unwrap().unwrap_err();
    assert_eq!(p.kind, ErrorKind::InvalidAvro);
    r.resolve(404).await.unwrap().unwrap_err();
    r.resolve(3).await.unwrap().unwrap_err();
    assert_eq!((hits(&fake, "ids/404"), hits(&fake, "ids/3")), (1, 1));
}

#[tokio::test]
async fn a_registry_that_cannot_answer_is_asked_again_and_nothing_is_kept() {
    let (fake, url) = fake().await;
    let r = registry(&url, 10, 300);
    fake.lock().unwrap().fail = Some(StatusCode::SERVICE_UNAVAILABLE);
    let (reason, message) = r.resolve(1).await.unwrap_err();
    assert_eq!(reason, "http_5xx");
    assert!(message.contains("503"), "{message}");
    assert!(r.cached(1).is_none());
    fake.lock().unwrap().fail = None;
    fake.lock().unwrap().delay = Duration::from_millis(1000);
    assert_eq!(r.resolve(1).await.unwrap_err().0, "timeout");
    fake.lock().unwrap().delay = Duration::ZERO;
    r.resolve(1).await.unwrap().unwrap();
    assert_eq!(hits(&fake, "ids/1"), 3);
    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = registry(&format!("http://{closed}"), 10, 300);
    assert_eq!(gone.resolve(1).await.unwrap_err().0, "unreachable");
}

#[tokio::test]
async fn credentials_are_sent_and_a_refusal_is_waited_out() {
    let (fake, url) = fake().await;
    // "svc:hunter2" in base64.
    fake.lock().unwrap().auth = Some("Basic c3ZjOmh1bnRlcjI=".into());
    let r = registry(&url, 10, 5000);
    assert_eq!(r.resolve(1).await.unwrap_err().0, "http_4xx");
    let config = SchemaRegistryConfig {
        url,
        username: "svc".into(),
        password: Secret::new("hunter2"),
        ..Default::default()
    };
    let r = Arc::new(Registry::new(Client::new(&config).unwrap(), 10));
    r.resolve(1).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let (fake, url) = fake().await;
    let r = registry(&url, 2, 5000);
    for id in [10, 11, 12] {
        r.resolve(id).await.unwrap().unwrap();
    }
    assert_eq!(r.len(), 2);
    assert!(r.cached(10).is_none());
    r.resolve(10).await.unwrap().unwrap();
    assert_eq!(hits(&fake, "ids/10"), 2);
}
