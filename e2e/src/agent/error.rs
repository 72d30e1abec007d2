//! What the agent can fail on.

use std::path::PathBuf;

use kube::runtime::watcher;

/// Errors of the agent; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("config: {0}")]
    Config(String),
    #[error("watch: {0}")]
    Watch(#[from] watcher::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot read PEM from {}: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("client CA: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}
