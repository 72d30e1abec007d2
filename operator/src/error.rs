//! Errors of the operator's I/O.

/// What a pass or the operator's start can fail on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}
