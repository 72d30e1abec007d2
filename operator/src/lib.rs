//! The Portcullis operator's I/O: everything that talks to the API server.
//! What to write is decided by [`operator_core`], which is pure; this crate
//! watches, assembles the views the core reads, and carries out its writes.
//!
//! - `discovery`: which Gateway API kinds are served;
//! - `stores`: the watch caches, and the snapshot and live view built
//!   from them for each pass;
//! - `controller`: the reconcile loop, woken by the `bell`;
//! - `executor`: server-side apply, deletion and status patches; `backoff`:
//!   a refused write waits alone, per object;
//! - `leader`: leader election; `admin`: health and metrics;
//! - [`rbac`]: every call the operator makes, and the rules that allow it.

mod admin;
mod backoff;
mod bell;
mod controller;
mod discovery;
mod error;
mod executor;
mod leader;
pub mod rbac;
mod stores;

pub use admin::{Metrics, serve as serve_admin};
pub use controller::run;
pub use error::Error;
pub use leader::{Leadership, run as hold_lease};
