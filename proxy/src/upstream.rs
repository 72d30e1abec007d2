//! Connection pools to backends, one set per worker thread: a worker reuses
//! the connections it opened, without locks shared with other workers or
//! cross-thread wake-ups.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::handler::Body;

pub type UpstreamClient = Client<HttpConnector, Body>;

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
pub fn http1() -> UpstreamClient {
    CLIENTS.with(|clients| clients.http1.clone())
}

/// This worker's pool of h2c backend connections.
pub fn h2c() -> UpstreamClient {
    CLIENTS.with(|clients| clients.h2c.clone())
}
