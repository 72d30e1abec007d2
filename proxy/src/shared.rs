//! State every connection shares: the live config, metrics, and what
//! outlives one config generation (endpoint health, TLS client pools).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use proxy_config::{ConfigDocument, GatewayConfig};

use crate::metrics::Metrics;
use crate::runtime::{EndpointRegistry, Snapshot};
use crate::upstream::TlsClients;

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub registry: EndpointRegistry,
    /// TLS clients to backends, kept across reloads.
    pub tls_clients: TlsClients,
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
            tls_clients: TlsClients::default(),
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
