//! The operator's admin server: `/healthz`, `/readyz` (caches synced) and
//! `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use crate::error::Error;

/// Counters and gauges the operator exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ready: AtomicBool,
    pub leader: Arc<crate::leader::Leadership>,
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub reconcile_micros: AtomicU64,
    pub writes: AtomicU64,
    /// Passes that took the endpoint fast path.
    pub endpoint_passes: AtomicU64,
    pub gateways: AtomicU64,
}

impl Metrics {
    pub fn observe_reconcile(&self, took: Duration, ok: bool) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.reconcile_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn render(&self) -> String {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let micros = get(&self.reconcile_micros);
        format!(
            "# HELP portcullis_operator_reconciles_total Reconcile passes.\n\
             # TYPE portcullis_operator_reconciles_total counter\n\
             portcullis_operator_reconciles_total {}\n\
             # HELP portcullis_operator_reconcile_errors_total Reconcile passes that failed a write.\n\
             # TYPE portcullis_operator_reconcile_errors_total counter\n\
             portcullis_operator_reconcile_errors_total {}\n\
             # HELP portcullis_operator_reconcile_seconds_total Time spent reconciling.\n\
             # TYPE portcullis_operator_reconcile_seconds_total counter\n\
             portcullis_operator_reconcile_seconds_total {}.{:06}\n\
             # HELP portcullis_operator_writes_total Objects applied, deleted or status-patched.\n\
             # TYPE portcullis_operator_writes_total counter\n\
             portcullis_operator_writes_total {}\n\
             # HELP portcullis_operator_endpoint_passes_total Passes that only re-translated Gateways whose backends' endpoints changed.\n\
             # TYPE portcullis_operator_endpoint_passes_total counter\n\
             portcullis_operator_endpoint_passes_total {}\n\
             # HELP portcullis_operator_gateways Gateways of this operator's classes.\n\
             # TYPE portcullis_operator_gateways gauge\n\
             portcullis_operator_gateways {}\n\
             # HELP portcullis_operator_leader Whether this replica holds the leader lease.\n\
             # TYPE portcullis_operator_leader gauge\n\
             portcullis_operator_leader {}\n",
            get(&self.reconciles),
            get(&self.reconcile_errors),
            micros / 1_000_000,
            micros % 1_000_000,
            get(&self.writes),
            get(&self.endpoint_passes),
            get(&self.gateways),
            u8::from(self.leader.is_held()),
        )
    }
}

/// Binds and serves in the background; returns the bound address.
pub async fn serve(metrics: Arc<Metrics>, address: SocketAddr) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(address).await.map_err(Error::Admin)?;
    let bound = listener.local_addr().map_err(Error::Admin)?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(answer(
                                &metrics,
                                request.uri().path(),
                            ))
                        }
                    });
                if let Err(err) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %err, "admin connection");
                }
            });
        }
    });
    Ok(bound)
}

fn answer(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "ready\n".to_owned())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced\n".to_owned(),
        ),
        "/metrics" => (StatusCode::OK, metrics.render()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
