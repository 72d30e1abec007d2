//! The Portcullis data plane.
//!
//! `main.rs` wires these together: a [`source`] yields config documents, the
//! [`server::Server`] compiles each ([`runtime`]) and swaps it in, and every
//! request is routed ([`router`]) and forwarded ([`handler`]) on the snapshot
//! current when it arrived. [`admin`] serves health, metrics and the live
//! config on its own port.

pub mod admin;
pub mod handler;
pub mod metrics;
pub mod router;
pub mod runtime;
pub mod server;
pub mod source;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use proxy_config::{ConfigDocument, GatewayConfig};

use crate::handler::Body;
use crate::metrics::Metrics;
use crate::runtime::{EndpointRegistry, Snapshot};

/// Errors of the proxy's own making; request failures become status codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("certificate {name:?}: {reason}")]
    Certificate { name: String, reason: String },
    #[error(transparent)]
    Load(#[from] proxy_config::LoadError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub registry: EndpointRegistry,
    /// HTTP/1.1 backends, pooled keep-alive connections.
    pub http1: Client<HttpConnector, Body>,
    /// h2c backends (gRPC, `appProtocol: kubernetes.io/h2c`).
    pub h2c: Client<HttpConnector, Body>,
    /// A config has been applied.
    pub configured: AtomicBool,
    /// SIGTERM received: readiness fails so load balancers move away.
    pub draining: AtomicBool,
    epoch: Instant,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        let empty = ConfigDocument::new(0, GatewayConfig::default());
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(Snapshot {
                document: Arc::new(empty),
                listeners: Default::default(),
            }),
            metrics: Metrics::default(),
            registry: EndpointRegistry::default(),
            http1,
            h2c,
            configured: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            epoch: Instant::now(),
        })
    }

    /// Milliseconds since start, for ejection bookkeeping.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn ready(&self) -> bool {
        self.configured.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}
