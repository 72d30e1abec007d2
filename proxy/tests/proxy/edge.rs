//! Edge hardening with raw sockets: smuggling, slowloris, header limits,
//! connection limits; and what the admin port and access log show.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use http::StatusCode;
use proxy_config::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_route(port: u16, backend: &EchoServer, limits: Limits) -> GatewayConfig {
    let mut config = gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &[],
                vec![(prefix("/"), rule("web", vec![to("web", 1)], vec![]))],
            )],
        )],
        vec![service("web", backend)],
    );
    config.settings.limits = limits;
    config
}

/// Sends raw bytes and returns whatever comes back until the server closes
/// or `wait` passes.
async fn raw_exchange(port: u16, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut received = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}

/// With both framings, Transfer-Encoding wins, Content-Length is dropped
/// and the connection closes after the answer (RFC 9112 6.1), so bytes
/// after the chunked body are never read as a second request.
#[tokio::test]
async fn conflicting_framing_cannot_smuggle_a_request() {
    let backend = EchoServer::start("web").await;
    let port = free_port();
    let _proxy = InProcessProxy::start(one_route(port, &backend, Limits::default())).await;
    let answer = raw_exchange(
        port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "exactly one answer: {answer}"
    );
    assert!(answer.contains("\"bodyLength\":0"), "{answer}");
    assert!(!answer.contains("smuggled"), "{answer}");
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let backend = EchoServer::start("web").await;
    let port = free_port();
    let limits = Limits {
        request_header_timeout_ms: Some(300),
        ..Limits::default()
    };
    let _proxy = InProcessProxy::start(one_route(port, &backend, limits)).await;
    let started = Instant::now();
    let answer = raw_exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ",
        Duration::from_secs(5),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "closed after {elapsed:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test]
async fn too_many_headers_are_refused() {
    let backend = EchoServer::start("web").await;
    let port = free_port();
    let limits = Limits {
        max_request_headers: Some(20),
        ..Limits::default()
    };
    let _proxy = InProcessProxy::start(one_route(port, &backend, limits)).await;
    let mut request = String::from("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n");
    for index in 0..40 {
        request.push_str(&format!("X-H{index}: v\r\n"));
    }
    request.push_str("\r\n");
    let answer = raw_exchange(port, request.as_bytes(), Duration::from_secs(2)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let fine = raw_exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let backend = EchoServer::start("web").await;
    let port = free_port();
    let limits = Limits {
        max_connections: Some(2),
        ..Limits::default()
    };
    let proxy = InProcessProxy::start(one_route(port, &backend, limits)).await;
    let _first = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _second = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let counted = eventually(Duration::from_secs(2), || async {
        proxy
            .shared
            .metrics
            .active_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            == 2
    })
    .await;
    assert!(counted);
    let third = raw_exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(
        third.is_empty(),
        "third connection closed without an answer: {third}"
    );
    assert!(
        proxy
            .shared
            .metrics
            .render()
            .contains("portcullis_connections_refused_total 1")
    );
}

#[tokio::test]
async fn admin_shows_metrics_and_redacted_config_and_access_log_is_json() {
    let backend = EchoServer::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    let (port, admin) = (free_port(), free_port());
    let mut config = one_route(port, &backend, Limits::default());
    config.settings.access_log = AccessLog::Json;
    let ca = TestCa::new();
    config.certificates.insert(
        "unused".into(),
        ca.issue(&["x.example.com"], KeyKind::Ecdsa),
    );
    write_config(&path, &ConfigDocument::new(4, config));
    let mut child = spawn_proxy_with(&path, admin, Stdio::piped());
    let ready = eventually(Duration::from_secs(10), || async {
        admin_get(admin, "/readyz")
            .await
            .is_some_and(|(status, _)| status == StatusCode::OK)
    })
    .await;
    assert!(ready);
    let client = client();
    let echo = get(&client, &format!("http://127.0.0.1:{port}/hello?x=1"), &[]).await;
    assert_eq!(echo.status, StatusCode::OK);
    let missing = get(&client, &format!("http://127.0.0.1:{port}/status/404"), &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let (_, metrics) = admin_get(admin, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains(
            "portcullis_requests_total{listener=\"http\",route=\"test/web/0\",status=\"2xx\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("status=\"4xx\"} 1"), "{metrics}");
    assert!(metrics.contains("portcullis_config_generation 4"));
    assert!(metrics.contains(
        "portcullis_request_duration_seconds_count{listener=\"http\",route=\"test/web/0\"} 2"
    ));

    let (_, live) = admin_get(admin, "/config").await.expect("config");
    assert!(live.contains("\"privateKeyPem\": \"REDACTED\""), "{live}");
    assert!(!live.contains("PRIVATE KEY-----"));

    let stdout = child.0.stdout.take().expect("stdout");
    let reader = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let first_line = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("an access log line within 5 s")
        .expect("join")
        .expect("access log line");
    let entry: serde_json::Value = serde_json::from_str(&first_line).expect("JSON access log");
    assert_eq!(entry["path"], "/hello");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["route"], "test/web/0");
    assert_eq!(entry["method"], "GET");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let backend = EchoServer::start("web").await;
    let port = free_port();
    let limits = Limits {
        request_header_timeout_ms: Some(400),
        ..Limits::default()
    };
    let _proxy = InProcessProxy::start(one_route(port, &backend, limits)).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = vec![0u8; 4096];
    let read = stream.read(&mut buffer).await.expect("response");
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    // Then idle: the proxy closes the connection on its own.
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connection still open after 3 s");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed too early: {:?}",
        started.elapsed()
    );
}

/// A client that announces a body and stops sending it gets 408 and a
/// closed connection once the body timeout passes; one that sends slowly
/// but steadily is not cut, however long the whole body takes.
#[tokio::test]
async fn a_stalled_request_body_gets_408_and_a_steady_one_passes() {
    let backend = EchoServer::start("web").await;
    let port = free_port();
    let limits = Limits {
        request_body_timeout_ms: Some(300),
        ..Limits::default()
    };
    let _proxy = InProcessProxy::start(one_route(port, &backend, limits)).await;

    let started = Instant::now();
    let answer = raw_exchange(
        port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789",
        Duration::from_secs(5),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        elapsed < Duration::from_secs(3),
        "answered and closed after {elapsed:?}"
    );

    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("head");
    for _ in 0..10 {
        // 1 s in all, never more than 100 ms without a chunk.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(b"0123456789").await.expect("chunk");
    }
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    let answer = String::from_utf8_lossy(&received);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"bodyLength\":100"), "{answer}");
}
