//! Errors of the operator's I/O.

/// What a pass or the operator's start can fail on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("discovery: {0}")]
    Discovery(String),
    /// A write the core decided against (a config the proxy would refuse).
    #[error(transparent)]
    Core(#[from] operator_core::Error),
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}
