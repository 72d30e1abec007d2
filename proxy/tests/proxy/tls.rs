//! TLS termination with real handshakes: BoringSSL clients, curl and
//! openssl s_client against the proxy.

use std::process::Command;

use crate::support::*;
use boring::ssl::SslVersion;
use http::StatusCode;
use http_body_util::Empty;
use proxy_config::Certificate;
use proxy_config::*;

struct TlsSetup {
    ca: TestCa,
    port: u16,
    _proxy: InProcessProxy,
    _backend: EchoServer,
}

/// An HTTPS listener with an RSA certificate for a.example.com and an ECDSA
/// one for *.b.example.com, each name its own source listener.
async fn setup() -> TlsSetup {
    let backend = EchoServer::start("web").await;
    let ca = TestCa::new();
    let port = free_port();
    let mut config = gateway(
        vec![Listener {
            name: "https".into(),
            port,
            protocol: Protocol::Https,
            sources: vec!["a".into(), "b".into()],
            tls: Some(ListenerTls {
                certificates: vec![
                    ServerCertificate {
                        certificate: "a".into(),
                        server_names: vec!["a.example.com".into()],
                    },
                    ServerCertificate {
                        certificate: "b".into(),
                        server_names: vec!["*.b.example.com".into()],
                    },
                ],
                mode: TlsMode::Terminate,
                client_validation: None,
            }),
            virtual_hosts: vec![
                vhost(
                    "a",
                    &["a.example.com"],
                    vec![(prefix("/"), rule("a", vec![to("web", 1)], vec![]))],
                ),
                vhost(
                    "b",
                    &["*.b.example.com"],
                    vec![(prefix("/"), rule("b", vec![to("web", 1)], vec![]))],
                ),
            ],
            tls_routes: vec![],
            stream_route: None,
        }],
        vec![service("web", &backend)],
    );
    config
        .certificates
        .insert("a".into(), ca.issue(&["a.example.com"], KeyKind::Rsa));
    config
        .certificates
        .insert("b".into(), ca.issue(&["*.b.example.com"], KeyKind::Ecdsa));
    let proxy = InProcessProxy::start(config).await;
    TlsSetup {
        ca,
        port,
        _proxy: proxy,
        _backend: backend,
    }
}

fn address(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

fn get_request(host: &str) -> http::Request<Empty<bytes::Bytes>> {
    http::Request::get(format!("https://{host}/hello"))
        .header("host", host)
        .body(Empty::new())
        .expect("request")
}

#[tokio::test]
async fn certificates_are_chosen_by_sni() {
    let setup = setup().await;
    let a = tls_connect(
        address(setup.port),
        &setup.ca,
        Some("a.example.com"),
        &[],
        None,
    )
    .await
    .expect("handshake a");
    assert_eq!(a.subject_cn, "a.example.com");
    let b = tls_connect(
        address(setup.port),
        &setup.ca,
        Some("x.b.example.com"),
        &[],
        None,
    )
    .await
    .expect("handshake b");
    assert_eq!(b.subject_cn, "*.b.example.com");
    let unnamed = tls_connect(address(setup.port), &setup.ca, None, &[], None)
        .await
        .expect("handshake without SNI");
    assert_eq!(
        unnamed.subject_cn, "a.example.com",
        "no SNI: the first certificate"
    );
    let unknown = tls_connect(address(setup.port), &setup.ca, Some("other.org"), &[], None).await;
    assert!(
        unknown.is_err(),
        "the default certificate does not verify for other.org"
    );
}

#[tokio::test]
async fn alpn_negotiates_h2_and_http1() {
    let setup = setup().await;
    let h2 = tls_connect(
        address(setup.port),
        &setup.ca,
        Some("a.example.com"),
        &["h2", "http/1.1"],
        None,
    )
    .await
    .expect("handshake");
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    let echo = request_over(h2.stream, true, get_request("a.example.com")).await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));

    let h1 = tls_connect(
        address(setup.port),
        &setup.ca,
        Some("a.example.com"),
        &["http/1.1"],
        None,
    )
    .await
    .expect("handshake");
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let echo = request_over(h1.stream, false, get_request("a.example.com")).await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.json["path"], "/hello");
}

#[tokio::test]
async fn only_tls_12_and_13_are_spoken() {
    let setup = setup().await;
    for version in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
        let handshake = tls_connect(
            address(setup.port),
            &setup.ca,
            Some("a.example.com"),
            &[],
            Some(version),
        )
        .await;
        assert!(handshake.is_ok(), "{version:?}: {:?}", handshake.err());
    }
    for version in [SslVersion::TLS1, SslVersion::TLS1_1] {
        let handshake = tls_connect(
            address(setup.port),
            &setup.ca,
            Some("a.example.com"),
            &[],
            Some(version),
        )
        .await;
        assert!(handshake.is_err(), "{version:?} must be refused");
    }
}

#[tokio::test]
async fn a_host_of_another_listener_than_the_sni_is_misdirected() {
    let setup = setup().await;
    let handshake = tls_connect(
        address(setup.port),
        &setup.ca,
        Some("a.example.com"),
        &["h2"],
        None,
    )
    .await
    .expect("handshake");
    let echo = request_over(handshake.stream, true, get_request("x.b.example.com")).await;
    assert_eq!(echo.status, StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test]
async fn curl_and_openssl_clients_work_and_sessions_resume() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = setup.ca.write_pem(dir.path());
    let port = setup.port;
    let curl = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg("--cacert")
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("a.example.com:{port}:127.0.0.1"))
            .arg(format!("https://a.example.com:{port}/"))
            .output()
    })
    .await
    .expect("join")
    .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "200 2",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // Two s_client runs: the second offers the first one's session.
    let session = dir
        .path()
        .join("session.pem")
        .to_string_lossy()
        .into_owned();
    let out = session.clone();
    let first = tokio::task::spawn_blocking(move || s_client(port, &["-sess_out", &out]))
        .await
        .expect("join");
    assert!(String::from_utf8_lossy(&first.stdout).contains("New, TLSv1.2"));
    let second = tokio::task::spawn_blocking(move || s_client(port, &["-sess_in", &session]))
        .await
        .expect("join");
    let output = String::from_utf8_lossy(&second.stdout);
    assert!(
        output.contains("Reused, TLSv1.2"),
        "session resumption: {output}"
    );
}

fn s_client(port: u16, extra: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "a.example.com", "-tls1_2"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs")
}

/// One HTTP/1.1 request over a TLS connection that may be refused at any
/// point (TLS 1.3 clients learn of a refused certificate after their
/// handshake, on the first read).
async fn try_request(
    address: std::net::SocketAddr,
    ca: &TestCa,
    client: Option<&Certificate>,
) -> Result<StatusCode, String> {
    let handshake = tls_connect_as(
        address,
        ca,
        Some("a.example.com"),
        &["http/1.1"],
        None,
        client,
    )
    .await?;
    let io = hyper_util::rt::TokioIo::new(handshake.stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(get_request("a.example.com"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status())
}

#[tokio::test]
async fn client_certificates_are_required_unless_the_insecure_fallback_is_on() {
    let backend = EchoServer::start("web").await;
    let server_ca = TestCa::new();
    let client_ca = TestCa::new();
    let stranger_ca = TestCa::new();
    let good = client_ca.issue(&["client.example.com"], KeyKind::Ecdsa);
    let wrong = stranger_ca.issue(&["client.example.com"], KeyKind::Ecdsa);
    for allow_missing in [false, true] {
        let port = free_port();
        let mut config = gateway(
            vec![Listener {
                name: "https".into(),
                port,
                protocol: Protocol::Https,
                sources: vec![],
                tls: Some(ListenerTls {
                    certificates: vec![ServerCertificate {
                        certificate: "server".into(),
                        server_names: vec![],
                    }],
                    mode: TlsMode::Terminate,
                    client_validation: Some(ClientValidation {
                        ca_bundles: vec!["clients".into()],
                        allow_missing,
                    }),
                }),
                virtual_hosts: vec![vhost(
                    "a",
                    &[],
                    vec![(prefix("/"), rule("a", vec![to("web", 1)], vec![]))],
                )],
                tls_routes: vec![],
                stream_route: None,
            }],
            vec![service("web", &backend)],
        );
        config.certificates.insert(
            "server".into(),
            server_ca.issue(&["a.example.com"], KeyKind::Ecdsa),
        );
        config.ca_bundles.insert("clients".into(), client_ca.pem());
        let _proxy = InProcessProxy::start(config).await;
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));

        assert_eq!(
            try_request(address, &server_ca, Some(&good)).await,
            Ok(StatusCode::OK),
            "allow_missing={allow_missing}"
        );
        let stranger = try_request(address, &server_ca, Some(&wrong)).await;
        if allow_missing {
            assert_eq!(
                stranger,
                Ok(StatusCode::OK),
                "the fallback lets a client whose certificate fails validation in"
            );
        } else {
            assert!(stranger.is_err(), "a wrong CA is refused");
        }
        let without = try_request(address, &server_ca, None).await;
        if allow_missing {
            assert_eq!(
                without,
                Ok(StatusCode::OK),
                "the fallback lets clients without a certificate in"
            );
        } else {
            assert!(without.is_err(), "no certificate, no entry");
        }
    }
}
