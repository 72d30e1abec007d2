//! The Portcullis data plane.
//!
//! `main.rs` wires these together: a [`source`] yields config documents, the
//! [`server::Server`] compiles each ([`runtime`]) and swaps it in, and every
//! request is routed ([`router`]) and forwarded ([`handler`]) on the snapshot
//! current when it arrived. [`admin`] serves health, metrics and the live
//! config on its own port; [`status`] reports what is live on the proxy's
//! own Pod.

pub mod admin;
pub mod body;
pub mod handler;
pub mod metrics;
pub mod router;
pub mod runtime;
pub mod server;
pub mod sni;
pub mod source;
pub mod status;
pub mod stream;
pub mod tls;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use proxy_config::{ConfigDocument, GatewayConfig};

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
    /// A document that decodes but fails validation; its generation is known.
    #[error("{source}")]
    Invalid {
        generation: u64,
        #[source]
        source: proxy_config::ValidationErrors,
    },
    /// A listener's TLS settings (certificates, keys, client CAs) that
    /// BoringSSL refuses.
    #[error("listener {listener}: {source}")]
    ListenerTls {
        listener: String,
        #[source]
        source: Box<Error>,
    },
    /// No config to read: the Secret or its key is missing, or was deleted.
    #[error("{0}")]
    ConfigMissing(String),
    /// The API server could not be watched; the watch retries by itself.
    #[error("{0}")]
    Watch(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The generation of the document the error is about, when known.
    pub fn generation(&self) -> Option<u64> {
        match self {
            Error::Invalid { generation, .. } => Some(*generation),
            _ => None,
        }
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub registry: EndpointRegistry,
    /// TLS clients to backends, kept across reloads.
    pub tls_clients: upstream::TlsClients,
    /// A config has been applied.
    pub configured: AtomicBool,
    /// SIGTERM received: readiness fails so load balancers move away.
    pub draining: AtomicBool,
    epoch: Instant,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        let empty = ConfigDocument::new(0, GatewayConfig::default());
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(Snapshot {
                document: Arc::new(empty),
                listeners: Default::default(),
                udp_listeners: Default::default(),
            }),
            metrics: Metrics::default(),
            registry: EndpointRegistry::default(),
            tls_clients: upstream::TlsClients::default(),
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
