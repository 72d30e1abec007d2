//! The Portcullis data plane.
//!
//! `main.rs` wires these together: a [`source`] yields config documents, the
//! [`server::Server`] compiles each ([`runtime`]) and swaps it into the
//! [`Shared`] state, and every request is routed ([`router`]) and served
//! ([`handler`]) on the snapshot current when it arrived; TCP, TLS and UDP
//! connections go through [`stream`]. [`admin`] serves health, metrics and
//! the live config on its own port; [`status`] reports what is live on the
//! proxy's own Pod.

pub mod admin;
pub mod body;
pub mod budget;
pub mod error;
pub mod handler;
pub mod metrics;
pub mod router;
pub mod runtime;
pub mod server;
pub mod session;
pub mod shared;
pub mod sni;
pub mod source;
pub mod status;
pub mod stream;
pub mod tls;
pub mod upstream;

pub use error::Error;
pub use shared::Shared;
