//! What the generator writes, and what it can fail on.

/// What generating the manifests can fail on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("serializing {what} as YAML: {source}")]
    Yaml {
        what: String,
        source: serde_yaml::Error,
    },
    #[error("serializing {what} as JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One generated file: its path relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: &'static str,
    pub contents: String,
}
