//! Hot reload and shutdown: configs swapped under load lose nothing, bad
//! configs are refused while the old one serves, SIGTERM drains.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::*;
use http::StatusCode;
use proxy_config::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn split_config(
    port: u16,
    extra_port: Option<u16>,
    v1: &EchoServer,
    v2: &EchoServer,
    weight_v2: u32,
) -> GatewayConfig {
    let mut listeners = vec![http_listener(
        "http",
        port,
        vec![vhost(
            "http",
            &[],
            vec![(
                prefix("/"),
                rule(
                    "split",
                    vec![to("v1", 100 - weight_v2), to("v2", weight_v2)],
                    vec![],
                ),
            )],
        )],
    )];
    if let Some(extra) = extra_port {
        listeners.push(http_listener(
            "extra",
            extra,
            vec![vhost(
                "extra",
                &[],
                vec![(prefix("/"), rule("extra", vec![to("v2", 1)], vec![]))],
            )],
        ));
    }
    gateway(listeners, vec![service("v1", v1), service("v2", v2)])
}

/// Opens an upgraded (WebSocket-style) tunnel through the proxy.
async fn open_tunnel(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

async fn echo_through(stream: &mut TcpStream, message: &str) {
    stream.write_all(message.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; message.len()];
    stream.read_exact(&mut buffer).await.expect("echo");
    assert_eq!(String::from_utf8_lossy(&buffer), message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_swaps_under_load_fail_no_request() {
    let v1 = EchoServer::start("v1").await;
    let v2 = EchoServer::start("v2").await;
    let port = free_port();
    let extra = free_port();
    let mut proxy = InProcessProxy::start(split_config(port, None, &v1, &v2, 50)).await;
    let mut tunnel = open_tunnel(port).await;
    echo_through(&mut tunnel, "before").await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let url = format!("http://127.0.0.1:{port}/");
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(&url)
                    .body(http_body_util::Empty::new())
                    .expect("request");
                match client.request(request).await {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("failed request: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // An HTTP/2 connection kept open across all swaps.
    let h2 = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let (mut sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .expect("h2");
            tokio::spawn(connection);
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(format!("http://h2.example.com:{port}/"))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request");
                match sender.send_request(request).await {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("failed h2 request: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    for generation in 2..202u64 {
        let weight = (generation % 11) as u32 * 10;
        let extra_port = (generation % 20 >= 10).then_some(extra);
        proxy
            .reload(generation, split_config(port, extra_port, &v1, &v2, weight))
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    h2.await.expect("h2 task");

    echo_through(&mut tunnel, "after 200 swaps").await;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 500, "the load ran: {ok} requests");
    assert_eq!(proxy.shared.snapshot.load().generation(), 201);
    let mut ports = proxy.server.ports();
    ports.sort_unstable();
    assert_eq!(ports, vec![port], "the extra listener was removed last");
}

#[tokio::test]
async fn the_binary_refuses_bad_configs_keeps_serving_and_drains_on_sigterm() {
    let v1 = EchoServer::start("v1").await;
    let v2 = EchoServer::start("v2").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    let (port, admin) = (free_port(), free_port());
    write_config(
        &path,
        &ConfigDocument::new(1, split_config(port, None, &v1, &v2, 0)),
    );
    let mut child = spawn_proxy(&path, admin);

    let ready = eventually(Duration::from_secs(10), || async {
        admin_get(admin, "/readyz")
            .await
            .is_some_and(|(status, _)| status == StatusCode::OK)
    })
    .await;
    assert!(ready, "proxy became ready");
    let client = client();
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(get(&client, &url, &[]).await.backend(), "v1");

    // A config with a broken reference: refused, v1 keeps serving.
    let mut broken = split_config(port, None, &v1, &v2, 100);
    broken.listeners[0].virtual_hosts[0].rules[0].backends[0].target =
        BackendTarget::Backend("nope".into());
    write_config(&path, &ConfigDocument::new(2, broken));
    let refused = eventually(Duration::from_secs(5), || async {
        admin_get(admin, "/metrics")
            .await
            .is_some_and(|(_, text)| text.contains("portcullis_config_reload_failures_total 1"))
    })
    .await;
    assert!(refused, "the bad config was counted as refused");
    assert_eq!(
        get(&client, &url, &[]).await.backend(),
        "v1",
        "previous config still serves"
    );
    let (_, live) = admin_get(admin, "/config").await.expect("config endpoint");
    assert!(live.contains("\"generation\": 1"), "{live}");

    // A good config: v2 now.
    write_config(
        &path,
        &ConfigDocument::new(3, split_config(port, None, &v1, &v2, 100)),
    );
    let switched = eventually(Duration::from_secs(5), || async {
        get(&client, &url, &[]).await.backend() == "v2"
    })
    .await;
    assert!(switched, "the new config was applied");

    // SIGTERM while a slow request is in flight: it completes, then the
    // process exits on its own.
    let slow = tokio::spawn({
        let url = format!("http://127.0.0.1:{port}/delay/800");
        async move { get(&client, &url, &[]).await.status }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let readiness = admin_get(admin, "/readyz").await.map(|(status, _)| status);
    assert_eq!(
        readiness,
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "not ready while draining"
    );
    assert_eq!(slow.await.expect("slow request"), StatusCode::OK);
    let exited = eventually(Duration::from_secs(5), || {
        let status = child.0.try_wait().ok().flatten();
        async move { status.is_some_and(|s| s.success()) }
    })
    .await;
    assert!(exited, "the proxy exited cleanly after draining");
}
