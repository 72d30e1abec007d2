//! Re-encrypt (BackendTLSPolicy): TLS from the proxy to the backend with the
//! policy's name as SNI, verified against its CA bundle and names.

use std::net::SocketAddr;

use crate::support::*;
use boring::ssl::{NameType, SslAcceptor, SslFiletype, SslMethod};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy_config::*;
use tokio::net::TcpListener;

/// An HTTPS backend answering with the server name its client sent.
async fn https_backend(ca: &TestCa, name: &str, dir: &std::path::Path) -> SocketAddr {
    https_backend_requiring(ca, name, dir, None).await
}

/// [`https_backend`], requiring a client certificate from `clients` when given.
async fn https_backend_requiring(
    ca: &TestCa,
    name: &str,
    dir: &std::path::Path,
    clients: Option<&TestCa>,
) -> SocketAddr {
    let certificate = ca.issue(&[name], KeyKind::Ecdsa);
    let (cert, key) = (dir.join("backend.crt"), dir.join("backend.key"));
    std::fs::write(&cert, &certificate.chain_pem).expect("cert");
    std::fs::write(&key, &certificate.private_key_pem).expect("key");
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    acceptor.set_certificate_chain_file(&cert).expect("chain");
    acceptor
        .set_private_key_file(&key, SslFiletype::PEM)
        .expect("key");
    if let Some(clients) = clients {
        let mut store = boring::x509::store::X509StoreBuilder::new().expect("store");
        store
            .add_cert(clients.certificate.clone())
            .expect("client CA");
        acceptor
            .set_verify_cert_store(store.build())
            .expect("verify store");
        acceptor.set_verify(
            boring::ssl::SslVerifyMode::PEER | boring::ssl::SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        );
    }
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
                let Ok(tls) = tokio_boring::accept(&acceptor, stream).await else {
                    return;
                };
                let sni = tls
                    .ssl()
                    .servername(NameType::HOST_NAME)
                    .unwrap_or("")
                    .to_owned();
                let service = service_fn(move |_request| {
                    let body = serde_json::json!({"backend": "tls", "sni": sni}).to_string();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    address
}

fn config(port: u16, backend: SocketAddr, ca_pem: String, tls: BackendTls) -> GatewayConfig {
    let mut config = gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &[],
                vec![(prefix("/"), rule("secure", vec![to("secure", 1)], vec![]))],
            )],
        )],
        vec![(
            "secure".into(),
            proxy_config::Backend {
                source: ObjectRef {
                    kind: "Service".into(),
                    namespace: "test".into(),
                    name: "secure".into(),
                },
                protocol: BackendProtocol::Http1,
                endpoints: vec![Endpoint {
                    address: backend.ip(),
                    port: backend.port(),
                }],
                load_balancing: LoadBalancing::RoundRobin,
                tls: Some(tls),
                retry_budget: None,
            },
        )],
    );
    config.ca_bundles.insert("backend-ca".into(), ca_pem);
    config
}

fn policy(server_name: &str, names: &[&str]) -> BackendTls {
    BackendTls {
        server_name: server_name.into(),
        ca_bundles: vec!["backend-ca".into()],
        subject_alt_names: names.iter().map(|n| n.to_string()).collect(),
        client_certificate: None,
    }
}

#[tokio::test]
async fn backends_see_tls_with_the_policy_name_and_wrong_trust_gets_no_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let backend = https_backend(&ca, "backend.internal", dir.path()).await;
    let client = client();
    let cases: Vec<(&str, BackendTls, String, bool)> = vec![
        (
            "trusted CA, policy hostname",
            policy("backend.internal", &[]),
            ca.pem(),
            true,
        ),
        (
            "listed subject alt name",
            policy("backend.internal", &["other.name", "backend.internal"]),
            ca.pem(),
            true,
        ),
        (
            "wrong CA",
            policy("backend.internal", &[]),
            stranger.pem(),
            false,
        ),
        (
            "hostname not in the certificate",
            policy("wrong.internal", &[]),
            ca.pem(),
            false,
        ),
        (
            "no listed name in the certificate",
            policy("backend.internal", &["spiffe://cluster/other"]),
            ca.pem(),
            false,
        ),
    ];
    for (case, tls, ca_pem, ok) in cases {
        let port = free_port();
        let proxy = InProcessProxy::start(config(port, backend, ca_pem, tls)).await;
        let echo = get(&client, &format!("http://127.0.0.1:{port}/"), &[]).await;
        if ok {
            assert_eq!(echo.status, StatusCode::OK, "{case}");
            assert_eq!(echo.json["sni"], "backend.internal", "{case}");
        } else {
            assert!(
                echo.status.is_server_error() && echo.json.is_null(),
                "{case}: {:?}",
                echo.status
            );
            let metrics = proxy.shared.metrics.render();
            assert!(
                metrics.contains("portcullis_upstream_connect_failures_total 1"),
                "{case}: failure counted"
            );
        }
    }
}

#[tokio::test]
async fn the_gateway_presents_its_backend_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let clients = TestCa::new();
    let backend =
        https_backend_requiring(&ca, "backend.internal", dir.path(), Some(&clients)).await;
    let client = client();
    for present in [true, false] {
        let port = free_port();
        let mut tls = policy("backend.internal", &[]);
        if present {
            tls.client_certificate = Some("gateway-client".into());
        }
        let mut gateway_config = config(port, backend, ca.pem(), tls);
        gateway_config.certificates.insert(
            "gateway-client".into(),
            clients.issue(&["gateway.example.com"], KeyKind::Ecdsa),
        );
        let _proxy = InProcessProxy::start(gateway_config).await;
        let echo = get(&client, &format!("http://127.0.0.1:{port}/"), &[]).await;
        if present {
            assert_eq!(
                echo.status,
                StatusCode::OK,
                "the backend accepted the gateway's certificate"
            );
        } else {
            assert!(
                echo.status.is_server_error(),
                "without it the backend refuses: {:?}",
                echo.status
            );
        }
    }
}
