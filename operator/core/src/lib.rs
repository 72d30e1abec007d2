//! What the Portcullis operator decides, apart from doing it.
//!
//! Everything here is pure: no Kubernetes client, no async runtime, no
//! clock, no logging. The operator crate builds a [`Snapshot`] of the
//! cluster and a [`Live`] view of what it already wrote, and carries out
//! the [`Writes`] this crate returns.
//!
//! - [`snapshot`]: one consistent view of the objects translation reads;
//! - [`translate`]: snapshot → per-Gateway plans: the proxy's compiled
//!   config and every status the spec defines;
//! - [`provision`]: plan → the objects a Gateway owns (GEP-1762);
//! - [`writes`]: plans and what is live → the objects to apply, the ones
//!   to delete and the status patches to send;
//! - [`conditions`], [`names`], [`keys`]: the vocabulary they share.

pub mod conditions;
pub mod convert;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod keys;
pub mod names;
pub mod provision;
pub mod snapshot;
pub mod translate;
pub mod writes;

pub use error::Error;
pub use keys::{ObjectKey, RouteKey, RouteKind, StatusKind, StatusTarget};
pub use snapshot::Snapshot;
pub use translate::{Translation, translate};
pub use writes::{Live, Writes, decide};
