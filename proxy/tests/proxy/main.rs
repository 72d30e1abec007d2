//! The proxy through real sockets and real TLS handshakes: one test binary
//! (one link on 2 cores), one module per concern.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

mod edge;
mod http_routing;
mod reencrypt;
mod reload;
mod stream;
mod tls;
