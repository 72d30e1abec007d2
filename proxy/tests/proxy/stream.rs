//! Layer 4 through real sockets: TLS passthrough (the backend's own
//! certificate reaches the client), TLS terminated to TCP, TCP and UDP,
//! and L4 connections that outlive reloads.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use boring::ssl::{SslAcceptor, SslFiletype, SslMethod};
use proxy_config::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A TCP server that prefixes every echo with its name.
async fn tcp_echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    let mut answer = format!("{name}:").into_bytes();
                    answer.extend_from_slice(&buffer[..read]);
                    if stream.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

/// A TLS server with its own certificate, echoing what it decrypts.
async fn tls_echo(ca: &TestCa, name: &str, dir: &std::path::Path) -> SocketAddr {
    let certificate = ca.issue(&[name], KeyKind::Ecdsa);
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &certificate.chain_pem).expect("cert");
    std::fs::write(&key, &certificate.private_key_pem).expect("key");
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    acceptor.set_certificate_chain_file(&cert).expect("chain");
    acceptor
        .set_private_key_file(&key, SslFiletype::PEM)
        .expect("key");
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = tokio_boring::accept(&acceptor, stream).await else {
                    return;
                };
                let mut buffer = [0u8; 1024];
                while let Ok(read) = tls.read(&mut buffer).await {
                    if read == 0 || tls.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

fn backend_at(
    name: &str,
    address: SocketAddr,
    protocol: BackendProtocol,
) -> (String, proxy_config::Backend) {
    (
        name.into(),
        proxy_config::Backend {
            source: ObjectRef {
                kind: "Service".into(),
                namespace: "test".into(),
                name: name.into(),
            },
            protocol,
            endpoints: vec![Endpoint {
                address: address.ip(),
                port: address.port(),
            }],
            load_balancing: LoadBalancing::RoundRobin,
            tls: None,
            retry_budget: None,
        },
    )
}

fn route_ref(kind: &str, name: &str) -> RouteRef {
    RouteRef {
        kind: kind.into(),
        namespace: "test".into(),
        name: name.into(),
        rule: 0,
    }
}

fn stream_listener(
    name: &str,
    port: u16,
    protocol: Protocol,
    route: Option<StreamRoute>,
) -> Listener {
    Listener {
        name: name.into(),
        port,
        protocol,
        sources: vec![],
        tls: None,
        virtual_hosts: vec![],
        tls_routes: vec![],
        stream_route: route,
    }
}

async fn exchange(
    stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    message: &str,
) -> String {
    stream.write_all(message.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

#[tokio::test]
async fn tls_passthrough_routes_by_sni_and_the_backend_terminates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let db = tls_echo(&ca, "db.example.com", dir.path()).await;
    let cache = tls_echo(&ca, "cache.example.net", dir.path()).await;
    let port = free_port();
    let mut listener = stream_listener("tls", port, Protocol::Tls, None);
    listener.tls = Some(ListenerTls {
        certificates: vec![],
        mode: TlsMode::Passthrough,
        client_validation: None,
    });
    listener.tls_routes = vec![
        TlsRoute {
            route: route_ref("TLSRoute", "db"),
            hostnames: vec!["db.example.com".into()],
            backends: vec![to("db", 1)],
            mode: None,
        },
        TlsRoute {
            route: route_ref("TLSRoute", "cache"),
            hostnames: vec!["*.example.net".into()],
            backends: vec![to("cache", 1)],
            mode: None,
        },
    ];
    let _proxy = InProcessProxy::start(gateway(
        vec![listener],
        vec![
            backend_at("db", db, BackendProtocol::Tcp),
            backend_at("cache", cache, BackendProtocol::Tcp),
        ],
    ))
    .await;
    let address = SocketAddr::from(([127, 0, 0, 1], port));

    let mut to_db = tls_connect(address, &ca, Some("db.example.com"), &[], None)
        .await
        .expect("handshake through the proxy");
    assert_eq!(
        to_db.subject_cn, "db.example.com",
        "the backend's own certificate"
    );
    assert_eq!(exchange(&mut to_db.stream, "select 1").await, "select 1");
    let to_cache = tls_connect(address, &ca, Some("cache.example.net"), &[], None)
        .await
        .expect("wildcard route");
    assert_eq!(to_cache.subject_cn, "cache.example.net");
    assert!(
        tls_connect(address, &ca, Some("other.org"), &[], None)
            .await
            .is_err(),
        "no route: closed"
    );
    assert!(
        tls_connect(address, &ca, None, &[], None).await.is_err(),
        "no SNI: closed"
    );

    // The same seen by openssl s_client.
    let ca_file = ca.write_pem(dir.path());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "db.example.com",
            ])
            .arg("-CAfile")
            .arg(&ca_file)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("subject=CN = db.example.com"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");

    // Garbage instead of a ClientHello is closed without reaching a backend.
    let mut raw = TcpStream::connect(address).await.expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), raw.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "closed: {closed:?}");
}

#[tokio::test]
async fn tls_terminated_to_tcp_and_plain_tcp_with_weights() {
    let ca = TestCa::new();
    let left = tcp_echo("left").await;
    let right = tcp_echo("right").await;
    let (tls_port, tcp_port) = (free_port(), free_port());
    let mut tls = stream_listener("tls", tls_port, Protocol::Tls, None);
    tls.tls = Some(ListenerTls {
        certificates: vec![ServerCertificate {
            certificate: "tcp".into(),
            server_names: vec![],
        }],
        mode: TlsMode::Terminate,
        client_validation: None,
    });
    tls.tls_routes = vec![TlsRoute {
        route: route_ref("TLSRoute", "terminated"),
        hostnames: vec!["tcp.example.com".into()],
        backends: vec![to("left", 1)],
        mode: None,
    }];
    let tcp = stream_listener(
        "tcp",
        tcp_port,
        Protocol::Tcp,
        Some(StreamRoute {
            route: route_ref("TCPRoute", "split"),
            backends: vec![to("left", 3), to("right", 1)],
        }),
    );
    let mut config = gateway(
        vec![tls, tcp],
        vec![
            backend_at("left", left, BackendProtocol::Tcp),
            backend_at("right", right, BackendProtocol::Tcp),
        ],
    );
    config
        .certificates
        .insert("tcp".into(), ca.issue(&["tcp.example.com"], KeyKind::Rsa));
    let proxy = InProcessProxy::start(config).await;

    let mut terminated = tls_connect(
        SocketAddr::from(([127, 0, 0, 1], tls_port)),
        &ca,
        Some("tcp.example.com"),
        &[],
        None,
    )
    .await
    .expect("handshake with the proxy");
    assert_eq!(terminated.subject_cn, "tcp.example.com");
    assert_eq!(exchange(&mut terminated.stream, "ping").await, "left:ping");

    let mut counts = std::collections::HashMap::new();
    for _ in 0..400 {
        let mut stream = TcpStream::connect(("127.0.0.1", tcp_port))
            .await
            .expect("connect");
        let answer = exchange(&mut stream, "x").await;
        *counts.entry(answer).or_insert(0u32) += 1;
    }
    let left_share = f64::from(counts["left:x"]) / 400.0;
    assert!((left_share - 0.75).abs() < 0.1, "{counts:?}");
    assert!(
        proxy
            .shared
            .metrics
            .render()
            .contains("portcullis_stream_connections_total 401")
    );
}

#[tokio::test]
async fn udp_datagrams_are_echoed_through_sessions() {
    let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let echo_address = echo.local_addr().expect("address");
    tokio::spawn(async move {
        let mut buffer = [0u8; 2048];
        while let Ok((read, from)) = echo.recv_from(&mut buffer).await {
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&buffer[..read]);
            let _ = echo.send_to(&answer, from).await;
        }
    });
    let port = free_port();
    let _proxy = InProcessProxy::start(gateway(
        vec![stream_listener(
            "udp",
            port,
            Protocol::Udp,
            Some(StreamRoute {
                route: route_ref("UDPRoute", "dns"),
                backends: vec![to("echo", 1)],
            }),
        )],
        vec![backend_at("echo", echo_address, BackendProtocol::Udp)],
    ))
    .await;
    for client in 0..3 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        for datagram in 0..3 {
            let message = format!("client {client} datagram {datagram}");
            socket
                .send_to(message.as_bytes(), ("127.0.0.1", port))
                .await
                .expect("send");
            let mut buffer = [0u8; 2048];
            let (read, _) =
                tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buffer))
                    .await
                    .expect("echo in time")
                    .expect("recv");
            assert_eq!(
                String::from_utf8_lossy(&buffer[..read]),
                format!("echo:{message}")
            );
        }
    }
}

#[tokio::test]
async fn open_tcp_connections_survive_reloads() {
    let left = tcp_echo("left").await;
    let right = tcp_echo("right").await;
    let port = free_port();
    let config = |weight_right: u32| {
        gateway(
            vec![stream_listener(
                "tcp",
                port,
                Protocol::Tcp,
                Some(StreamRoute {
                    route: route_ref("TCPRoute", "db"),
                    backends: vec![to("left", 100 - weight_right), to("right", weight_right)],
                }),
            )],
            vec![
                backend_at("left", left, BackendProtocol::Tcp),
                backend_at("right", right, BackendProtocol::Tcp),
            ],
        )
    };
    let mut proxy = InProcessProxy::start(config(0)).await;
    let mut open = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    assert_eq!(exchange(&mut open, "a").await, "left:a");
    for generation in 2..52u64 {
        proxy.reload(generation, config(100)).await;
    }
    assert_eq!(
        exchange(&mut open, "b").await,
        "left:b",
        "the open connection keeps its backend"
    );
    let mut new = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    assert_eq!(
        exchange(&mut new, "c").await,
        "right:c",
        "new connections follow the new config"
    );
}

#[tokio::test]
async fn one_port_passes_some_names_through_and_terminates_https_for_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let db = tls_echo(&ca, "db.example.com", dir.path()).await;
    let web = EchoServer::start("web").await;
    let port = free_port();
    let mut listener = http_listener(
        "https",
        port,
        vec![vhost(
            "https",
            &["www.example.com"],
            vec![(prefix("/"), rule("web", vec![to("web", 1)], vec![]))],
        )],
    );
    listener.protocol = Protocol::Https;
    listener.tls = Some(ListenerTls {
        certificates: vec![ServerCertificate {
            certificate: "www".into(),
            server_names: vec!["www.example.com".into()],
        }],
        mode: TlsMode::Terminate,
        client_validation: None,
    });
    listener.tls_routes = vec![TlsRoute {
        route: route_ref("TLSRoute", "db"),
        hostnames: vec!["db.example.com".into()],
        backends: vec![to("db", 1)],
        mode: Some(TlsMode::Passthrough),
    }];
    let mut config = gateway(
        vec![listener],
        vec![
            service("web", &web),
            backend_at("db", db, BackendProtocol::Tcp),
        ],
    );
    config
        .certificates
        .insert("www".into(), ca.issue(&["www.example.com"], KeyKind::Ecdsa));
    let _proxy = InProcessProxy::start(config).await;
    let address = SocketAddr::from(([127, 0, 0, 1], port));

    let mut passed = tls_connect(address, &ca, Some("db.example.com"), &[], None)
        .await
        .expect("passthrough");
    assert_eq!(
        passed.subject_cn, "db.example.com",
        "the backend terminated"
    );
    assert_eq!(exchange(&mut passed.stream, "hello db").await, "hello db");

    let terminated = tls_connect(address, &ca, Some("www.example.com"), &["h2"], None)
        .await
        .expect("terminated here");
    assert_eq!(
        terminated.subject_cn, "www.example.com",
        "the proxy terminated"
    );
    let request = http::Request::get("https://www.example.com/")
        .body(http_body_util::Empty::new())
        .expect("request");
    let echo = request_over(terminated.stream, true, request).await;
    assert_eq!(echo.status, http::StatusCode::OK);
    assert_eq!(echo.backend(), "web");
}
