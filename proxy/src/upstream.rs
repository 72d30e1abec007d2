//! Connection pools to backends, one set per worker thread: a worker reuses
//! the connections it opened, without locks shared with other workers or
//! cross-thread wake-ups. A [`Connector`] is how one backend is reached, and
//! [`Connector::send`] is the one way a request leaves the proxy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boring::pkey::PKey;
use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};
use boring::x509::store::X509StoreBuilder;
use boring::x509::{X509, X509StoreContextRef};
use http::uri::Scheme;
use hyper_boring::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use proxy_config::BackendProtocol;

use crate::body::Body;

pub type UpstreamClient = Client<HttpConnector, Body>;

/// A pool of TLS connections to one backend (BackendTLSPolicy).
pub type TlsClient = Client<HttpsConnector<HttpConnector>, Body>;

struct Clients {
    http1: UpstreamClient,
    h2c: UpstreamClient,
}

fn build() -> Clients {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let http1 = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build(connector.clone());
    let h2c = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(true)
        .build(connector);
    Clients { http1, h2c }
}

thread_local! {
    static CLIENTS: Clients = build();
}

/// This worker's pool of HTTP/1.1 backend connections.
fn http1() -> UpstreamClient {
    CLIENTS.with(|clients| clients.http1.clone())
}

/// This worker's pool of h2c backend connections.
fn h2c() -> UpstreamClient {
    CLIENTS.with(|clients| clients.h2c.clone())
}

/// How requests reach one backend.
#[derive(Clone)]
pub enum Connector {
    /// Cleartext HTTP/1.1, through this worker's pool.
    Http1,
    /// Cleartext HTTP/2 (gRPC), through this worker's pool.
    H2c,
    /// Re-encrypted (BackendTLSPolicy), through the policy's own pool.
    Tls(Box<TlsClient>),
    /// TLS settings BoringSSL refused: such a backend answers 502 rather
    /// than sending cleartext.
    InvalidTls(String),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connector::Http1 => f.write_str("Http1"),
            Connector::H2c => f.write_str("H2c"),
            Connector::Tls(_) => f.write_str("Tls"),
            Connector::InvalidTls(reason) => write!(f, "InvalidTls({reason:?})"),
        }
    }
}

impl Connector {
    /// The connector of a backend speaking `protocol`, with the TLS client
    /// its policy asks for, if any.
    pub fn new(protocol: BackendProtocol, tls: Option<Result<TlsClient, String>>) -> Self {
        match tls {
            Some(Ok(client)) => Connector::Tls(Box::new(client)),
            Some(Err(reason)) => Connector::InvalidTls(reason),
            None if protocol == BackendProtocol::H2c => Connector::H2c,
            None => Connector::Http1,
        }
    }

    /// The scheme of requests' URIs: the pools pick TLS by it.
    pub fn scheme(&self) -> Scheme {
        match self {
            Connector::Tls(_) | Connector::InvalidTls(_) => Scheme::HTTPS,
            Connector::Http1 | Connector::H2c => Scheme::HTTP,
        }
    }

    /// Sends `request` (its URI naming the endpoint); an error names TLS
    /// settings that cannot be used.
    pub fn send(&self, request: http::Request<Body>) -> Result<ResponseFuture, &str> {
        match self {
            Connector::Http1 => Ok(http1().request(request)),
            Connector::H2c => Ok(h2c().request(request)),
            Connector::Tls(client) => Ok(client.request(request)),
            Connector::InvalidTls(reason) => Err(reason),
        }
    }
}

/// TLS clients by their settings, so that a reload that keeps a backend's
/// TLS settings keeps its pool of connections.
#[derive(Default)]
pub struct TlsClients {
    /// By settings: the client, and whether the config being compiled uses
    /// it.
    clients: Mutex<HashMap<String, (TlsClient, bool)>>,
}

impl std::fmt::Debug for TlsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClients").finish_non_exhaustive()
    }
}

impl TlsClients {
    /// The client for `tls` (reused when its settings are unchanged); an
    /// error names what BoringSSL refused.
    pub fn get(
        &self,
        config: &proxy_config::GatewayConfig,
        tls: &proxy_config::BackendTls,
        h2: bool,
    ) -> Result<TlsClient, String> {
        let cas: Vec<Option<&String>> = tls
            .ca_bundles
            .iter()
            .map(|n| config.ca_bundles.get(n))
            .collect();
        let client_certificate = tls
            .client_certificate
            .as_ref()
            .and_then(|n| config.certificates.get(n));
        let key = serde_json::json!([tls, cas, client_certificate, h2]).to_string();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((client, used)) = clients.get_mut(&key) {
            *used = true;
            return Ok(client.clone());
        }
        let client = build_tls_client(config, tls, h2)?;
        clients.insert(key, (client.clone(), true));
        Ok(client)
    }

    /// Forgets the clients no [`TlsClients::get`] asked for since the last
    /// call: a compiled config is live, and they serve no backend of it.
    pub fn forget_unused(&self) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|_, (_, used)| std::mem::take(used));
    }
}

fn build_tls_client(
    config: &proxy_config::GatewayConfig,
    tls: &proxy_config::BackendTls,
    h2: bool,
) -> Result<TlsClient, String> {
    let mut ssl = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    if tls.ca_bundles.is_empty() {
        ssl.set_default_verify_paths()
            .map_err(|e| format!("system trust store: {e}"))?;
    } else {
        let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        for name in &tls.ca_bundles {
            let pem = config
                .ca_bundles
                .get(name)
                .ok_or_else(|| format!("no CA bundle named {name:?}"))?;
            for ca in X509::stack_from_pem(pem.as_bytes())
                .map_err(|e| format!("CA bundle {name:?}: {e}"))?
            {
                store
                    .add_cert(ca)
                    .map_err(|e| format!("CA bundle {name:?}: {e}"))?;
            }
        }
        ssl.set_cert_store(store.build());
    }
    if let Some(name) = &tls.client_certificate {
        let certificate = config
            .certificates
            .get(name)
            .ok_or_else(|| format!("no certificate named {name:?}"))?;
        let chain = X509::stack_from_pem(certificate.chain_pem.as_bytes())
            .map_err(|e| format!("client certificate: {e}"))?;
        let mut chain = chain.into_iter();
        let leaf = chain.next().ok_or("client certificate chain is empty")?;
        ssl.set_certificate(&leaf)
            .map_err(|e| format!("client certificate: {e}"))?;
        for intermediate in chain {
            ssl.add_extra_chain_cert(intermediate)
                .map_err(|e| format!("client certificate: {e}"))?;
        }
        let key = PKey::private_key_from_pem(certificate.private_key_pem.as_bytes())
            .map_err(|e| format!("client key: {e}"))?;
        ssl.set_private_key(&key)
            .map_err(|e| format!("client key: {e}"))?;
    }
    ssl.set_verify(SslVerifyMode::PEER);
    let alpn: &[u8] = if h2 { b"\x02h2" } else { b"\x08http/1.1" };
    ssl.set_alpn_protos(alpn).map_err(|e| e.to_string())?;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let mut connector = HttpsConnector::with_connector(http, ssl).map_err(|e| e.to_string())?;
    // URIs name endpoints by address: send the policy's name as SNI and
    // verify against it (or against the listed names) instead.
    connector.set_callback(|config, _| {
        config.set_use_server_name_indication(false);
        config.set_verify_hostname(false);
        Ok(())
    });
    let server_name = tls.server_name.clone();
    let names = Arc::new(tls.subject_alt_names.clone());
    connector.set_ssl_callback(move |ssl, _| {
        ssl.set_hostname(&server_name)?;
        if names.is_empty() {
            ssl.param_mut().set_host(&server_name)?;
        } else {
            let names = names.clone();
            ssl.set_verify_callback(SslVerifyMode::PEER, move |preverified, context| {
                preverified && (context.error_depth() != 0 || leaf_has_a_name(context, &names))
            });
        }
        Ok(())
    });
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .http2_only(h2)
        .build(connector))
}

/// Whether the certificate being verified carries one of `names` as a DNS
/// or URI subject alternative name (`*.` wildcards in the certificate
/// cover one label).
fn leaf_has_a_name(context: &X509StoreContextRef, names: &[String]) -> bool {
    let Some(certificate) = context.current_cert() else {
        return false;
    };
    let Some(alternatives) = certificate.subject_alt_names() else {
        return false;
    };
    alternatives.iter().any(|alternative| {
        if let Some(dns) = alternative.dnsname() {
            names.iter().any(|name| dns_matches(dns, name))
        } else if let Some(uri) = alternative.uri() {
            names.iter().any(|name| name == uri)
        } else {
            false
        }
    })
}

fn dns_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::dns_matches;

    #[test]
    fn certificate_wildcards_cover_one_label() {
        assert!(dns_matches("backend.internal", "Backend.Internal"));
        assert!(dns_matches("*.internal", "db.internal"));
        assert!(!dns_matches("*.internal", "a.db.internal"));
        assert!(!dns_matches("*.internal", "internal"));
        assert!(!dns_matches("db.internal", "other.internal"));
    }
}
