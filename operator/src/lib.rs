//! The Portcullis operator: Gateway API objects in, provisioned and
//! programmed proxies out.
//!
//! The work is split so that everything that decides is pure:
//! - [`snapshot`]: one consistent view of the cluster objects that matter,
//!   built from the watch caches;
//! - [`translate`]: snapshot → per-Gateway plan (the proxy's compiled config
//!   and every status the spec defines), deterministic and cluster-free;
//! - [`provision`]: plan → the Kubernetes objects a Gateway owns;
//! - [`controller`]: the I/O around them: discovery, watches, coalescing,
//!   server-side apply and status writes, leader election, the admin server.

pub mod admin;
pub mod conditions;
pub mod controller;
pub mod discovery;
pub mod leader;
pub mod names;
pub mod provision;
pub mod rbac;
pub mod snapshot;
pub mod translate;

/// The `GatewayClass.spec.controllerName` this operator serves. Classes with
/// any other controller name are never touched.
pub const CONTROLLER_NAME: &str = "portcullis.io/gateway-controller";

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "portcullis-operator";

/// Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Label on every object the operator provisions, so that it can list them
/// and remove the ones no Gateway wants any more.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "portcullis-operator";
/// GEP-1762 labels on provisioned objects.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// Hash of what the operator last applied to an object; equal hash, no write.
pub const SPEC_HASH_ANNOTATION: &str = "gateway.portcullis.io/spec-hash";
/// On the config Secret: the generation and content hash of its document, so
/// that they are read without decoding it.
pub const GENERATION_ANNOTATION: &str = "gateway.portcullis.io/config-generation";
pub const CONFIG_HASH_ANNOTATION: &str = "gateway.portcullis.io/config-hash";
/// The Pod condition a proxy sets once it serves a config generation.
pub const CONFIG_APPLIED_CONDITION: &str = "gateway.portcullis.io/ConfigApplied";
/// The Secret key that holds the encoded config document.
pub const CONFIG_SECRET_KEY: &str = "config";

/// Errors of the operator's I/O layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("encoding the config of {gateway}: {source}")]
    Encode {
        gateway: String,
        source: proxy_config::CodecError,
    },
    #[error("the compiled config of {gateway} is invalid, so it was not written: {errors}")]
    InvalidConfig { gateway: String, errors: String },
    #[error("serializing {what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}
