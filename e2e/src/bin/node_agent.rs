//! `portcullis-node-agent`: a test-only kubelet for the local cluster.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use e2e::agent::{Agent, AgentConfig};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing::error;

#[derive(Debug, Parser)]
#[command(about = "Runs Pods scheduled to its node as local processes in network namespaces")]
struct Args {
    #[arg(long, default_value = ".cache/kubeconfig")]
    kubeconfig: PathBuf,
    #[arg(long, default_value = "portcullis-node")]
    node_name: String,
    /// Image to binary mappings.
    #[arg(long, default_value = "e2e/images.yaml")]
    images: PathBuf,
    #[arg(long, default_value = ".cache/cluster/node")]
    state_dir: PathBuf,
    #[arg(long, default_value = "pcbr0")]
    bridge: String,
    /// The bridge's address: Pods' default gateway, in 198.18.0.0/15.
    #[arg(long, default_value = "198.18.0.1")]
    gateway: Ipv4Addr,
    #[arg(long, default_value_t = 16)]
    prefix_len: u8,
    /// First LoadBalancer address; the pool must lie in 198.18.0.0/15.
    #[arg(long, default_value = "198.19.0.10")]
    load_balancer_pool: Ipv4Addr,
    #[arg(long, default_value_t = 200)]
    load_balancer_pool_size: u32,
    /// How Pods reach the API server.
    #[arg(long, default_value = "198.18.0.1")]
    api_server_host: String,
    #[arg(long, default_value_t = 6443)]
    api_server_port: u16,
    #[arg(long, default_value = ".cache/cluster/pki/ca.crt")]
    api_ca_file: PathBuf,
    /// Port of the kubelet endpoint (`/containerLogs`, `/healthz`) on the
    /// gateway address, the node's InternalIP.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Serving certificate of the kubelet endpoint, PEM.
    #[arg(long, default_value = ".cache/cluster/pki/kubelet.crt")]
    tls_cert_file: PathBuf,
    #[arg(long, default_value = ".cache/cluster/pki/kubelet.key")]
    tls_private_key_file: PathBuf,
    /// Client certificates (the API server's) must chain to this CA to read logs.
    #[arg(long, default_value = ".cache/cluster/pki/ca.crt")]
    client_ca_file: PathBuf,
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|dir| dir.join(&path))
            .unwrap_or(path)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "node agent stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(client_config)?;
    let images = AgentConfig::load_images(&absolute(args.images))?;
    let config = AgentConfig {
        node_name: args.node_name,
        images,
        state_dir: absolute(args.state_dir),
        bridge: args.bridge,
        gateway: args.gateway,
        prefix_len: args.prefix_len,
        load_balancer_pool: args.load_balancer_pool,
        load_balancer_pool_size: args.load_balancer_pool_size,
        api_server_host: args.api_server_host,
        api_server_port: args.api_server_port,
        api_ca_file: absolute(args.api_ca_file),
        kubelet_port: args.kubelet_port,
        tls_cert_file: absolute(args.tls_cert_file),
        tls_private_key_file: absolute(args.tls_private_key_file),
        client_ca_file: absolute(args.client_ca_file),
    };
    Agent::new(client, config).run().await?;
    Ok(())
}
