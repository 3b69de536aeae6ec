//! The metrics/health server (`aepiot_stream::http::serve`) under hostile clients: only GET and
//! HEAD on the three known paths, bounded request size, bounded time, bounded connections, and
//! probes that idle connections cannot starve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aepiot_stream::http::{self, Health};
use aepiot_stream::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Server {
    addr: SocketAddr,
    health: Arc<Health>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn server() -> Server {
    let health = Arc::new(Health::default());
    let stop = CancellationToken::new();
    let metrics = Metrics::new();
    metrics.events.with_label_values(&["success"]).inc_by(7);
    let addr = http::serve("127.0.0.1:0", metrics, health.clone(), stop.clone())
        .await
        .unwrap();
    Server { addr, health, stop }
}

/// A response: status, head (lower-cased), body.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

/// Sends `raw` and reads until the server closes (or 10 s pass).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before all of a large request is written.
    let _ = s.write_all(raw).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    parse(&buf)
}

fn parse(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, method: &str, path: &str) -> Resp {
    exchange(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_and_head_on_known_paths() {
    let s = server().await;
    let r = get(s.addr, "GET", "/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.head.contains("content-type: text/plain; version=0.0.4"));
    assert!(r
        .body
        .contains("aepiot_events_total{outcome=\"success\"} 7"));
    assert!(r.head.contains("cache-control: no-store"), "{}", r.head);

    let r = get(s.addr, "GET", "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(get(s.addr, "GET", "/readyz").await.status, 503);
    s.health.set_ready(true);
    assert_eq!(get(s.addr, "GET", "/readyz").await.status, 200);

    // HEAD: the status and headers of GET, no body.
    let r = get(s.addr, "HEAD", "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "{r:?}");

    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"] {
        for path in ["/metrics", "/healthz", "/readyz"] {
            let r = get(s.addr, method, path).await;
            assert_eq!(r.status, 405, "{method} {path}: {r:?}");
            assert!(
                r.head.contains("allow: get,head"),
                "{method} {path}: {}",
                r.head
            );
        }
    }
    for path in [
        "/",
        "/metrics/",
        "/metrics?x=1/../admin",
        "/METRICS",
        "/healthz/x",
        "/%2e%2e/etc/passwd",
        "/readyz%00",
        "//metrics",
    ] {
        if path.contains('?') {
            // A query string on a known path is still that path.
            assert_eq!(get(s.addr, "GET", path).await.status, 200, "{path}");
            continue;
        }
        let r = get(s.addr, "GET", path).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    assert_eq!(get(s.addr, "POST", "/nope").await.status, 404);
    // Not HTTP at all: a 400 or a closed connection, and the server keeps serving.
    let r = exchange(
        s.addr,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(get(s.addr, "GET", "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    let s = server().await;
    // Headers over the head limit: 431, never served. (The server closes with part of the
    // request unread: it must still deliver the 431 before the connection goes.)
    let big = "a".repeat(http::MAX_REQUEST_HEAD_BYTES + 1024);
    let r = exchange(
        s.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 431, "{r:?}");
    // A long request line.
    let r = exchange(
        s.addr,
        format!("GET /metrics?{big} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 431, "{r:?}");
    // Too many headers.
    let many: String = (0..http::MAX_HEADERS + 10)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let r = exchange(
        s.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 431, "{r:?}");

    // A body announced over the body limit: 413 at once, without waiting for the body.
    let t = Instant::now();
    let r = exchange(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\npartial",
    )
    .await;
    assert_eq!(r.status, 413, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // And actually sending 1 MiB of it.
    let mut req = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'x', 1 << 20));
    // (The body stays unread: the 413 must still arrive before the connection goes.)
    let r = exchange(s.addr, &req).await;
    assert_eq!(r.status, 413, "{r:?}");
    // A chunked body (size unknown) is refused too; a bad Content-Length as well.
    let r = exchange(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n",
    )
    .await;
    assert_eq!(r.status, 413, "{r:?}");
    let r = exchange(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.status == 400 || r.status == 413, "{r:?}");
    // A small body on a GET is tolerated.
    let r = exchange(
        s.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // Still serving.
    assert_eq!(get(s.addr, "GET", "/metrics").await.status, 200);
}

/// Reads until the server closes; returns how long that took (None: still open at `limit`).
async fn time_to_close(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    read_until_close(s, limit).await.map(|(d, _)| d)
}

/// Reads until the server closes; returns how long that took and the bytes read (None: still
/// open at `limit`).
async fn read_until_close(s: &mut TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((t.elapsed(), got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_closed_in_bounded_time() {
    let s = server().await;
    let bound = http::HEADER_READ_TIMEOUT + Duration::from_secs(3);

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    // Slowloris: a header byte every 500 ms, never finishing the head.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let trickle = {
        let addr = s.addr;
        tokio::spawn(async move {
            let _ = addr;
            let head =
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in head.iter() {
                if slow.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            slow
        })
    };
    let closed = time_to_close(&mut silent, bound).await;
    assert!(
        closed.is_some_and(|d| d >= http::HEADER_READ_TIMEOUT - Duration::from_millis(500)),
        "a silent connection was not closed within {bound:?}: {closed:?}"
    );
    // The trickler's connection is closed too: its writes start failing, or the read sees EOF.
    let t = Instant::now();
    let mut slow = trickle.await.unwrap();
    let closed = time_to_close(&mut slow, Duration::from_secs(1)).await;
    assert!(
        closed.is_some() && t.elapsed() < bound,
        "slowloris connection still open"
    );

    // A kept-alive connection that goes idle after a request is closed the same way.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert_eq!(parse(&buf[..n]).status, 200);
    let closed = time_to_close(&mut idle, bound).await;
    assert!(closed.is_some(), "idle keep-alive connection not closed");
    // Meanwhile and afterwards, the server answers.
    assert_eq!(get(s.addr, "GET", "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_and_the_longest_idle_makes_room() {
    let s = server().await;
    let mut held = Vec::new();
    for _ in 0..http::MAX_CONNECTIONS {
        held.push(TcpStream::connect(s.addr).await.unwrap());
        // Accepted in this order: the first is the longest idle.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One more is served; the server closes the connection idle longest to make room.
    assert_eq!(get(s.addr, "GET", "/healthz").await.status, 200);
    let closed = time_to_close(&mut held[0], Duration::from_secs(2)).await;
    assert!(
        closed.is_some(),
        "the server holds more than MAX_CONNECTIONS"
    );
    // The newer ones are still open (then closed by the header-read timeout, not now).
    let last = held.last_mut().unwrap();
    assert!(time_to_close(last, Duration::from_millis(300))
        .await
        .is_none());
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(s.addr, "GET", "/healthz").await.status, 200);
}

/// Probes first (issue 13): Kubelet's `/healthz` and `/readyz` answer within 1 s while 500 idle
/// connections are held open to the server, and while more keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_within_a_second_while_500_idle_connections_are_held_open() {
    let s = server().await;
    s.health.set_ready(true);
    let mut held = Vec::with_capacity(500);
    for _ in 0..500 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = |path: &'static str| async move {
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(1), get(s.addr, "GET", path))
            .await
            .unwrap_or_else(|_| panic!("{path} not answered within 1 s"));
        (r, t.elapsed())
    };
    for path in ["/healthz", "/readyz", "/healthz", "/readyz"] {
        let (r, took) = probe(path).await;
        assert_eq!(r.status, 200, "{path} after {took:?}: {r:?}");
    }
    // Idle connections keep arriving (a few hundred a second) and are held open meanwhile.
    let stop = CancellationToken::new();
    let churn = {
        let (addr, stop) = (s.addr, stop.clone());
        tokio::spawn(async move {
            let mut more = Vec::new();
            while !stop.is_cancelled() && more.len() < 2_000 {
                if let Ok(c) = TcpStream::connect(addr).await {
                    more.push(c);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            more.len()
        })
    };
    for i in 0..20 {
        let path = if i % 2 == 0 { "/healthz" } else { "/readyz" };
        let (r, took) = probe(path).await;
        assert_eq!(r.status, 200, "{path} #{i} after {took:?}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    assert!(churn.await.unwrap() > 100);
    // Not ready is told as quickly.
    s.health.set_ready(false);
    assert_eq!(probe("/readyz").await.0.status, 503);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_several_requests_and_shutdown_stops_the_server() {
    let s = server().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..3 {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(parse(&buf[..n]).status, 200);
    }
    let addr = s.addr;
    drop(s);
    // The open connection is closed and the port stops accepting.
    assert!(time_to_close(&mut c, Duration::from_secs(5))
        .await
        .is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = match TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(mut c) => {
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
            time_to_close(&mut c, Duration::from_secs(2))
                .await
                .is_some()
        }
    };
    assert!(refused, "still serving after shutdown");
}
