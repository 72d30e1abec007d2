//! Real sockets for proxy tests: echo backends, a proxy in-process or as a
//! child process, certificates made with BoringSSL, and clients.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use boring::asn1::Asn1Time;
use boring::bn::{BigNum, MsbOption};
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::rsa::Rsa;
use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};
use boring::x509::extension::{BasicConstraints, SubjectAlternativeName};
use boring::x509::{X509, X509NameBuilder};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::Shared;
use proxy::server::Server;
use proxy_config::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP backend that answers with JSON describing what it received.
/// `/status/NNN` answers NNN; `/delay/MS` waits first; `/flaky?id=I&fail=N`
/// fails the first N tries of I (with `status`, 500 by default, after
/// `delay` ms), like the conformance suite's retry simulation; an `Upgrade`
/// request switches protocols and echoes raw bytes.
pub struct EchoServer {
    pub name: String,
    pub address: SocketAddr,
}

impl EchoServer {
    pub async fn start(name: &str) -> EchoServer {
        Self::start_with(name, false).await
    }

    /// An h2c-only backend (prior knowledge), like a gRPC server.
    pub async fn start_h2c(name: &str) -> EchoServer {
        Self::start_with(name, true).await
    }

    async fn start_with(name: &str, h2c: bool) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let address = listener.local_addr().expect("address");
        let backend_name = name.to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = backend_name.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| echo(name.clone(), request));
                    let io = TokioIo::new(stream);
                    if h2c {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .with_upgrades()
                            .await;
                    }
                });
            }
        });
        EchoServer {
            name: name.to_owned(),
            address,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.address.ip(),
            port: self.address.port(),
        }
    }
}

/// Tries of each `/flaky` id so far, across every echo server.
static FLAKY_TRIES: std::sync::Mutex<BTreeMap<String, u32>> =
    std::sync::Mutex::new(BTreeMap::new());

/// How many times the backends saw `/flaky?id=<id>`.
pub fn flaky_tries(id: &str) -> u32 {
    FLAKY_TRIES
        .lock()
        .map(|tries| tries.get(id).copied().unwrap_or(0))
        .unwrap_or(0)
}

/// The failing answer of a `/flaky` try, or None once it is to succeed.
async fn flaky(request: &Request<Incoming>) -> Option<StatusCode> {
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let number = |key: &str| query.get(key).and_then(|v| v.parse::<u64>().ok());
    let id = query.get("id")?.clone();
    let tries = {
        let mut all = FLAKY_TRIES.lock().ok()?;
        let tries = all.entry(id).or_insert(0);
        *tries += 1;
        *tries
    };
    if u64::from(tries) > number("fail").unwrap_or(0) {
        return None;
    }
    tokio::time::sleep(Duration::from_millis(number("delay").unwrap_or(0))).await;
    let status = u16::try_from(number("status").unwrap_or(500)).ok()?;
    StatusCode::from_u16(status).ok()
}

async fn echo(
    name: String,
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/flaky"
        && let Some(status) = flaky(&request).await
    {
        let mut response = Response::new(Full::new(Bytes::from_static(b"flaky")));
        *response.status_mut() = status;
        return Ok(response);
    }
    if request.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buffer = [0u8; 1024];
                while let Ok(n) = io.read(&mut buffer).await {
                    if n == 0 || io.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert(http::header::UPGRADE, "websocket".parse().expect("value"));
        response
            .headers_mut()
            .insert(http::header::CONNECTION, "upgrade".parse().expect("value"));
        return Ok(response);
    }
    if let Some(ms) = request
        .uri()
        .path()
        .strip_prefix("/delay/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = request
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = value.to_str().unwrap_or_default();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    let version = format!("{:?}", request.version());
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.to_string())
        .unwrap_or_default();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "backend": name,
        "method": method,
        "path": path,
        "version": version,
        "headers": headers,
        "bodyLength": body.len(),
    });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-backend", name.parse().expect("value"));
    Ok(response)
}

/// A proxy running in this test process.
pub struct InProcessProxy {
    pub shared: Arc<Shared>,
    pub server: Server,
}

impl InProcessProxy {
    pub async fn start(config: GatewayConfig) -> InProcessProxy {
        let shared = Shared::new();
        let mut server = Server::new(shared.clone(), "127.0.0.1".parse().expect("ip"));
        let report = server
            .apply(ConfigDocument::new(1, config))
            .await
            .expect("config applies");
        assert!(
            report.failed_listeners.is_empty(),
            "{:?}",
            report.failed_listeners
        );
        InProcessProxy { shared, server }
    }

    pub async fn reload(&mut self, generation: u64, config: GatewayConfig) {
        let document = ConfigDocument::new(generation, config);
        proxy_config::validate(&document).expect("valid config");
        self.server.apply(document).await.expect("config applies");
    }
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn service(name: &str, backend: &EchoServer) -> (String, proxy_config::Backend) {
    service_with(name, &[backend], BackendProtocol::Http1)
}

pub fn service_with(
    name: &str,
    backends: &[&EchoServer],
    protocol: BackendProtocol,
) -> (String, proxy_config::Backend) {
    (
        name.to_owned(),
        proxy_config::Backend {
            source: ObjectRef {
                kind: "Service".into(),
                namespace: "test".into(),
                name: name.into(),
            },
            protocol,
            endpoints: backends.iter().map(|b| b.endpoint()).collect(),
            load_balancing: LoadBalancing::RoundRobin,
            tls: None,
            retry_budget: None,
        },
    )
}

pub fn route(name: &str, rule: u32) -> RouteRef {
    RouteRef {
        kind: "HTTPRoute".into(),
        namespace: "test".into(),
        name: name.into(),
        rule,
    }
}

pub fn to(backend: &str, weight: u32) -> WeightedBackend {
    WeightedBackend {
        target: BackendTarget::Backend(backend.into()),
        weight,
        filters: vec![],
    }
}

pub fn rule(name: &str, backends: Vec<WeightedBackend>, filters: Vec<HttpFilter>) -> HttpRule {
    HttpRule {
        route: route(name, 0),
        filters,
        backends,
        timeouts: None,
        retry: None,
        session_persistence: None,
    }
}

pub fn prefix(path: &str) -> HttpMatch {
    HttpMatch {
        path: Some(PathMatch::PathPrefix(path.into())),
        ..HttpMatch::default()
    }
}

/// A virtual host whose rules each have one match, in the order given.
pub fn vhost(source: &str, hostnames: &[&str], rules: Vec<(HttpMatch, HttpRule)>) -> VirtualHost {
    let (matches, rules): (Vec<_>, Vec<_>) = rules
        .into_iter()
        .enumerate()
        .map(|(index, (matcher, rule))| {
            (
                OrderedMatch {
                    rule: index as u32,
                    matcher,
                },
                rule,
            )
        })
        .unzip();
    VirtualHost {
        source: source.into(),
        hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
        wildcard_depth: WildcardDepth::AnyLabels,
        rules,
        matches,
    }
}

pub fn http_listener(name: &str, port: u16, hosts: Vec<VirtualHost>) -> Listener {
    Listener {
        name: name.into(),
        port,
        protocol: Protocol::Http,
        sources: vec![],
        tls: None,
        virtual_hosts: hosts,
        tls_routes: vec![],
        stream_route: None,
    }
}

pub fn gateway(
    listeners: Vec<Listener>,
    backends: Vec<(String, proxy_config::Backend)>,
) -> GatewayConfig {
    GatewayConfig {
        gateway: ObjectRef {
            kind: "Gateway".into(),
            namespace: "test".into(),
            name: "gw".into(),
        },
        listeners,
        backends: backends.into_iter().collect(),
        certificates: BTreeMap::new(),
        ca_bundles: BTreeMap::new(),
        settings: ProxySettings::default(),
    }
}

/// A plain HTTP client with keep-alive.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// What the echo backend said.
#[derive(Debug)]
pub struct Echo {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub json: serde_json::Value,
}

impl Echo {
    pub fn backend(&self) -> &str {
        self.json["backend"].as_str().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.json["headers"][name].as_str()
    }
}

pub async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> Echo {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    into_echo(response).await
}

pub async fn into_echo(response: Response<Incoming>) -> Echo {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Echo {
        status,
        headers,
        json,
    }
}

/// A certificate authority for tests.
pub struct TestCa {
    pub certificate: X509,
    key: PKey<Private>,
}

pub enum KeyKind {
    Rsa,
    Ecdsa,
}

fn new_key(kind: KeyKind) -> PKey<Private> {
    match kind {
        KeyKind::Rsa => PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey"),
        KeyKind::Ecdsa => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
            PKey::from_ec_key(EcKey::generate(&group).expect("ec")).expect("pkey")
        }
    }
}

fn serial() -> boring::asn1::Asn1Integer {
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("rand");
    serial.to_asn1_integer().expect("serial")
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = new_key(KeyKind::Ecdsa);
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, "Portcullis Test CA")
            .expect("cn");
        let name = name.build();
        let mut builder = X509::builder().expect("builder");
        builder.set_version(2).expect("version");
        builder.set_serial_number(&serial()).expect("serial");
        builder.set_subject_name(&name).expect("subject");
        builder.set_issuer_name(&name).expect("issuer");
        builder.set_pubkey(&key).expect("pubkey");
        builder
            .set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("nb");
        builder
            .set_not_after(&Asn1Time::days_from_now(2).expect("time"))
            .expect("na");
        builder
            .append_extension(&BasicConstraints::new().critical().ca().build().expect("bc"))
            .expect("ext");
        builder.sign(&key, MessageDigest::sha256()).expect("sign");
        TestCa {
            certificate: builder.build(),
            key,
        }
    }

    /// A leaf certificate for `names` (the first is also the common name).
    pub fn issue(&self, names: &[&str], kind: KeyKind) -> Certificate {
        let key = new_key(kind);
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, names[0])
            .expect("cn");
        let name = name.build();
        let mut builder = X509::builder().expect("builder");
        builder.set_version(2).expect("version");
        builder.set_serial_number(&serial()).expect("serial");
        builder.set_subject_name(&name).expect("subject");
        builder
            .set_issuer_name(self.certificate.subject_name())
            .expect("issuer");
        builder.set_pubkey(&key).expect("pubkey");
        builder
            .set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("nb");
        builder
            .set_not_after(&Asn1Time::days_from_now(1).expect("time"))
            .expect("na");
        let mut san = SubjectAlternativeName::new();
        for dns in names {
            san.dns(dns);
        }
        let san = san
            .build(&builder.x509v3_context(Some(&self.certificate), None))
            .expect("san");
        builder.append_extension(&san).expect("ext");
        builder
            .sign(&self.key, MessageDigest::sha256())
            .expect("sign");
        let leaf = builder.build();
        Certificate {
            chain_pem: String::from_utf8(leaf.to_pem().expect("pem")).expect("utf8"),
            private_key_pem: String::from_utf8(key.private_key_to_pem_pkcs8().expect("pem"))
                .expect("utf8"),
        }
    }

    pub fn pem(&self) -> String {
        String::from_utf8(self.certificate.to_pem().expect("pem")).expect("utf8")
    }

    pub fn write_pem(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem()).expect("write ca");
        path
    }
}

/// Result of a TLS handshake made by a test client.
pub struct Handshake {
    pub stream: tokio_boring::SslStream<TcpStream>,
    pub subject_cn: String,
    pub alpn: Option<Vec<u8>>,
}

/// Connects with TLS, trusting `ca`, sending `sni`, offering `alpn`.
pub async fn tls_connect(
    address: SocketAddr,
    ca: &TestCa,
    sni: Option<&str>,
    alpn: &[&str],
    max_version: Option<boring::ssl::SslVersion>,
) -> Result<Handshake, String> {
    tls_connect_as(address, ca, sni, alpn, max_version, None).await
}

/// [`tls_connect`], presenting `client` as the client certificate.
pub async fn tls_connect_as(
    address: SocketAddr,
    ca: &TestCa,
    sni: Option<&str>,
    alpn: &[&str],
    max_version: Option<boring::ssl::SslVersion>,
    client: Option<&Certificate>,
) -> Result<Handshake, String> {
    let mut connector = SslConnector::builder(SslMethod::tls()).expect("connector");
    if let Some(client) = client {
        let chain = X509::stack_from_pem(client.chain_pem.as_bytes()).expect("client chain");
        connector
            .set_certificate(&chain[0])
            .expect("client certificate");
        let key =
            PKey::private_key_from_pem(client.private_key_pem.as_bytes()).expect("client key");
        connector.set_private_key(&key).expect("client key");
    }
    connector
        .cert_store_mut()
        .add_cert(ca.certificate.clone())
        .expect("ca");
    connector.set_verify(SslVerifyMode::PEER);
    if let Some(version) = max_version {
        connector
            .set_max_proto_version(Some(version))
            .expect("version");
        connector
            .set_min_proto_version(Some(version))
            .expect("version");
    }
    if !alpn.is_empty() {
        let mut wire = Vec::new();
        for protocol in alpn {
            wire.push(protocol.len() as u8);
            wire.extend_from_slice(protocol.as_bytes());
        }
        connector.set_alpn_protos(&wire).expect("alpn");
    }
    let connector = connector.build();
    let mut config = connector.configure().expect("configure");
    config.set_verify_hostname(sni.is_some());
    config.set_use_server_name_indication(sni.is_some());
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let stream = tokio_boring::connect(config, sni.unwrap_or("unnamed"), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let subject_cn = stream
        .ssl()
        .peer_certificate()
        .and_then(|c| {
            c.subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().as_utf8().ok().map(|s| s.to_string()))
        })
        .unwrap_or_default();
    let alpn = stream.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
    Ok(Handshake {
        stream,
        subject_cn,
        alpn,
    })
}

/// Sends one request over an established stream with HTTP/1.1 or HTTP/2.
pub async fn request_over<S>(stream: S, h2: bool, request: Request<Empty<Bytes>>) -> Echo
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    };
    into_echo(response).await
}

/// Waits until `check` passes or the time is up.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

pub fn write_config(path: &Path, document: &ConfigDocument) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, proxy_config::encode(document).expect("encode")).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

pub struct ChildProxy(pub Child);

impl Drop for ChildProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_proxy(config: &Path, admin: u16) -> ChildProxy {
    spawn_proxy_with(config, admin, Stdio::null())
}

pub fn spawn_proxy_with(config: &Path, admin: u16, stdout: Stdio) -> ChildProxy {
    ChildProxy(
        Command::new(env!("CARGO_BIN_EXE_portcullis-proxy"))
            .arg("--config")
            .arg(config)
            .args([
                "--bind",
                "127.0.0.1",
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--poll-ms",
                "50",
            ])
            .args(["--min-drain-ms", "300", "--worker-threads", "1"])
            .env("PORTCULLIS_LOG", "warn")
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("proxy starts"),
    )
}

pub async fn admin_get(admin: u16, path: &str) -> Option<(StatusCode, String)> {
    let client = client();
    let response = client
        .request(
            http::Request::get(format!("http://127.0.0.1:{admin}{path}"))
                .body(http_body_util::Empty::new())
                .ok()?,
        )
        .await
        .ok()?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .ok()?
        .to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}
