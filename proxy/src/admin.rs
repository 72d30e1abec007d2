//! The admin port: `/healthz`, `/readyz`, `/metrics`, `/config`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::error::Error;
use crate::shared::Shared;

/// Binds the admin port and serves it in the background.
pub async fn serve(shared: Arc<Shared>, address: SocketAddr) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot bind admin address {address}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Io {
        context: "admin socket".into(),
        source,
    })?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "admin accept failed");
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| respond(shared.clone(), request));
                if let Err(err) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %err, "admin connection ended");
                }
            });
        }
    });
    Ok(bound)
}

async fn respond(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if shared.ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            if shared.draining.load(std::sync::atomic::Ordering::Relaxed) {
                "draining\n".to_owned()
            } else {
                "no config applied yet\n".to_owned()
            },
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        "/config" => (StatusCode::OK, "application/json", redacted_config(&shared)),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// The live document with private keys replaced.
fn redacted_config(shared: &Shared) -> String {
    let mut document = (*shared.snapshot.load().document).clone();
    for certificate in document.config.certificates.values_mut() {
        if !certificate.private_key_pem.is_empty() {
            certificate.private_key_pem = "REDACTED".into();
        }
    }
    serde_json::to_string_pretty(&document).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}
