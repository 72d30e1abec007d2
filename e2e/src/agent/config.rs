//! What the agent needs to know: its node, where the API server is for Pods,
//! which local binary stands for which image, and how to serve as a kubelet.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::AgentError;

/// One image → binary mapping. `image` matches the reference up to its tag
/// or digest (`registry.k8s.io/gateway-api/echo-basic` matches every tag).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageMapping {
    pub image: String,
    /// Path of the binary, relative to the images file's directory unless absolute.
    pub binary: PathBuf,
    /// Arguments put before the container's own (for wrappers).
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ImagesFile {
    images: Vec<ImageMapping>,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub images: Vec<ImageMapping>,
    /// Where pod sandboxes keep logs, tokens and volumes.
    pub state_dir: PathBuf,
    /// Host bridge the pod veths attach to; it holds `gateway`.
    pub bridge: String,
    pub gateway: Ipv4Addr,
    /// Pods get addresses from `gateway`'s /16, above `.1.0`.
    pub prefix_len: u8,
    /// First address handed to LoadBalancer Services.
    pub load_balancer_pool: Ipv4Addr,
    pub load_balancer_pool_size: u32,
    /// How Pods reach the API server.
    pub api_server_host: String,
    pub api_server_port: u16,
    /// CA bundle of the API server, given to Pods.
    pub api_ca_file: PathBuf,
    /// The kubelet endpoint (container logs) on `gateway`, the node's
    /// InternalIP, published in the Node's `status.daemonEndpoints`.
    pub kubelet_port: u16,
    /// Serving certificate and key of the kubelet endpoint, PEM.
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    /// CA that client certificates must chain to for `/containerLogs`.
    pub client_ca_file: PathBuf,
}

impl AgentConfig {
    /// Reads the image mappings; relative binary paths resolve against the
    /// file's directory so that the file can sit in the repository.
    pub fn load_images(path: &Path) -> Result<Vec<ImageMapping>, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?;
        let file: ImagesFile = serde_yaml::from_str(&text)
            .map_err(|err| AgentError::Config(format!("{}: {err}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(file
            .images
            .into_iter()
            .map(|mut mapping| {
                if mapping.binary.is_relative() {
                    mapping.binary = base.join(&mapping.binary);
                }
                mapping
            })
            .collect())
    }

    /// The mapping for an image reference, if any.
    pub fn image(&self, reference: &str) -> Option<&ImageMapping> {
        let name = strip_tag(reference);
        self.images.iter().find(|m| strip_tag(&m.image) == name)
    }
}

/// `repo/name:tag` or `repo/name@sha256:..` → `repo/name` (a registry port
/// such as `host:5000/name` is kept).
fn strip_tag(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => without_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_digests_are_ignored() {
        assert_eq!(
            strip_tag("registry.k8s.io/gateway-api/echo-basic:v1.5.1"),
            "registry.k8s.io/gateway-api/echo-basic"
        );
        assert_eq!(strip_tag("ghcr.io/x/proxy@sha256:abc"), "ghcr.io/x/proxy");
        assert_eq!(strip_tag("localhost:5000/proxy"), "localhost:5000/proxy");
        assert_eq!(
            strip_tag("localhost:5000/proxy:dev"),
            "localhost:5000/proxy"
        );
        assert_eq!(strip_tag("busybox"), "busybox");
    }
}
