//! The kubelet endpoint: HTTPS on the node's InternalIP and the port the
//! Node publishes in `status.daemonEndpoints.kubeletEndpoint`, where the API
//! server sends `kubectl logs` as
//! `GET /containerLogs/{namespace}/{pod}/{container}?follow=…&tailLines=…`.
//!
//! Clients may present a certificate; `/containerLogs` needs one that chains
//! to the client CA (the API server's `--kubelet-client-certificate`),
//! `/healthz` needs none.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::config::AgentConfig;
use super::error::AgentError;
use super::logs::{FollowWhile, LogOptions};
use super::state::Agent;
use super::{logs, pod};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the certificates and binds the endpoint; the agent does not start
/// without it, as a node whose logs cannot be read would fail tests late.
pub async fn bind(config: &AgentConfig) -> Result<(TcpListener, TlsAcceptor), AgentError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(config)?));
    let address = (config.gateway, config.kubelet_port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| AgentError::Io {
            context: format!(
                "cannot listen on {}:{} for the kubelet endpoint",
                config.gateway, config.kubelet_port
            ),
            source,
        })?;
    info!(address = %format!("{}:{}", config.gateway, config.kubelet_port), "kubelet endpoint listening");
    Ok((listener, acceptor))
}

fn pem_error(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> AgentError + '_ {
    move |source| AgentError::Pem {
        path: path.to_path_buf(),
        source,
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    CertificateDer::pem_file_iter(path)
        .map_err(pem_error(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(path))
}

/// TLS with the serving certificate; client certificates are verified
/// against the client CA when presented. HTTP/1.1 only.
fn tls_config(config: &AgentConfig) -> Result<rustls::ServerConfig, AgentError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&config.tls_cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_private_key_file)
        .map_err(pem_error(&config.tls_private_key_file))?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(&config.client_ca_file)? {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

/// Accepts connections until the agent stops.
pub async fn serve(agent: Arc<Agent>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "kubelet endpoint cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let agent = agent.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(%peer, error = %err, "kubelet endpoint: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "kubelet endpoint: TLS handshake timed out");
                    return;
                }
            };
            let authenticated = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|chain| !chain.is_empty());
            let service = service_fn(move |request| {
                let agent = agent.clone();
                async move { Ok::<_, Infallible>(handle(&agent, &request, authenticated).await) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, error = %err, "kubelet endpoint connection ended");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(
    agent: &Arc<Agent>,
    request: &Request<Incoming>,
    authenticated: bool,
) -> Response<Body> {
    let path = request.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let Some(rest) = path.strip_prefix("/containerLogs/") else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    if !authenticated {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    }
    let [namespace, name, container] = rest.split('/').collect::<Vec<_>>()[..] else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    if namespace.is_empty() || name.is_empty() || container.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "namespace, pod and container must not be empty\n",
        );
    }
    let options = match LogOptions::from_query(request.uri().query().unwrap_or_default()) {
        Ok(options) => options,
        Err(err) => return text(StatusCode::BAD_REQUEST, format!("{err}\n")),
    };
    debug!(%namespace, pod = %name, %container, ?options, "container logs requested");
    container_logs(agent, namespace, name, container, options).await
}

fn has_container(pod: &Pod, container: &str) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == container)
    })
}

/// The most recently changed sandbox directory of `namespace/name`, for a
/// Pod the agent no longer supervises (it finished before a restart).
async fn last_sandbox(state_dir: &Path, namespace: &str, name: &str) -> Option<PathBuf> {
    let prefix = format!("{namespace}_{name}_");
    let mut entries = tokio::fs::read_dir(state_dir.join("pods")).await.ok()?;
    let mut latest: Option<(SystemTime, PathBuf)> = None;
    while let Ok(Some(entry)) = entries.next_entry().await {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let modified = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if latest.as_ref().is_none_or(|(time, _)| modified > *time) {
            latest = Some((modified, entry.path()));
        }
    }
    latest.map(|(_, path)| path)
}

async fn container_logs(
    agent: &Arc<Agent>,
    namespace: &str,
    name: &str,
    container: &str,
    options: LogOptions,
) -> Response<Body> {
    let (dir, supervised) = match agent.pod_named(namespace, name).await {
        Some((uid, pod)) => {
            if !has_container(&pod, container) {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("container {container:?} not found in pod {name:?}\n"),
                );
            }
            let dir = pod::sandbox_dir(&agent.config.state_dir, namespace, name, &uid);
            (dir, Some(uid))
        }
        None => match last_sandbox(&agent.config.state_dir, namespace, name).await {
            Some(dir) => (dir, None),
            None => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("pod {name:?} does not exist\n"),
                );
            }
        },
    };
    let path = pod::log_path(&dir, container);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return if supervised.is_some() {
                text(
                    StatusCode::BAD_REQUEST,
                    format!("container {container:?} in pod {name:?} is waiting to start\n"),
                )
            } else {
                text(
                    StatusCode::NOT_FOUND,
                    format!("container {container:?} not found in pod {name:?}\n"),
                )
            };
        }
        Err(err) => {
            warn!(path = %path.display(), error = %err, "cannot open a container log");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot open the log: {err}\n"),
            );
        }
    };
    // A followed log goes on while the container runs (has not finished for
    // good) in a Pod the agent supervises.
    let follow_while: FollowWhile = match supervised {
        Some(uid) => {
            let agent = agent.clone();
            let container = container.to_owned();
            Box::new(move || {
                let agent = agent.clone();
                let uid = uid.clone();
                let container = container.clone();
                Box::pin(async move { agent.container_running(&uid, &container).await })
            })
        }
        None => Box::new(|| Box::pin(async { false })),
    };
    match logs::read(file, options, follow_while).await {
        Ok(stream) => {
            let body = StreamBody::new(stream.map(|chunk| chunk.map(Frame::data))).boxed_unsync();
            let mut response = Response::new(body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        Err(err) => {
            warn!(path = %path.display(), error = %err, "cannot read a container log");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the log: {err}\n"),
            )
        }
    }
}
