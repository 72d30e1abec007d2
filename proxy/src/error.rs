//! Errors of the proxy's own making; request failures become status codes
//! (`handler::error`).

/// Errors of the proxy's own making; request failures become status codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("certificate {name:?}: {reason}")]
    Certificate { name: String, reason: String },
    #[error(transparent)]
    Load(#[from] proxy_config::LoadError),
    /// A document that decodes but fails validation; its generation is known.
    #[error("{source}")]
    Invalid {
        generation: u64,
        #[source]
        source: proxy_config::ValidationErrors,
    },
    /// A listener's TLS settings (certificates, keys, client CAs) that
    /// BoringSSL refuses.
    #[error("listener {listener}: {source}")]
    ListenerTls {
        listener: String,
        #[source]
        source: Box<Error>,
    },
    /// No config to read: the Secret or its key is missing, or was deleted.
    #[error("{0}")]
    ConfigMissing(String),
    /// The API server could not be watched; the watch retries by itself.
    #[error("{0}")]
    Watch(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The generation of the document the error is about, when known.
    pub fn generation(&self) -> Option<u64> {
        match self {
            Error::Invalid { generation, .. } => Some(*generation),
            _ => None,
        }
    }
}
