//! `portcullis-operator`: serves GatewayClasses whose controllerName is
//! `portcullis.io/gateway-controller`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, ValueEnum};
use operator::{Leadership, Metrics};
use operator_core::names::CONTROLLER_NAME;
use operator_core::provision::Settings;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Portcullis operator: Gateway API to provisioned, programmed proxies"
)]
struct Args {
    /// Proxy image for Gateways whose ProxyConfig names none.
    #[arg(
        long,
        env = "PORTCULLIS_PROXY_IMAGE",
        default_value = "ghcr.io/portcullis-io/portcullis-proxy:v0.1.0"
    )]
    proxy_image: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "PORTCULLIS_ADMIN", default_value = "0.0.0.0:8081")]
    admin: SocketAddr,
    /// Hold a Lease so that only one replica reconciles.
    #[arg(long, env = "PORTCULLIS_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease: the operator's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "portcullis-system")]
    namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, env = "PORTCULLIS_LOG", default_value = "info")]
    log_level: String,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }

    if let Err(message) = namespace_allowed(&args.namespace) {
        error!(namespace = %args.namespace, "{message}");
        return ExitCode::FAILURE;
    }

    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            error!(error = %err, "no Kubernetes client configuration");
            return ExitCode::FAILURE;
        }
    };
    let leader_flag = Arc::new(Leadership::new(!args.leader_elect));
    let metrics = Arc::new(Metrics {
        leader: leader_flag.clone(),
        ..Metrics::default()
    });
    match operator::serve_admin(metrics.clone(), args.admin).await {
        Ok(address) => info!(%address, "admin server listening"),
        Err(err) => {
            error!(error = %err, "cannot start the admin server");
            return ExitCode::FAILURE;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let election = args.leader_elect.then(|| {
        let identity = args
            .identity
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
        tokio::spawn(operator::hold_lease(
            client.clone(),
            args.namespace.clone(),
            "portcullis-operator".to_owned(),
            identity,
            leader_flag.clone(),
            stop.clone(),
        ))
    });
    let settings = Settings {
        proxy_image: args.proxy_image.clone(),
        max_config_bytes: operator_core::provision::MAX_SECRET_DATA_BYTES,
    };
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    info!(controller = CONTROLLER_NAME, proxy_image = %args.proxy_image, "starting");
    let code = tokio::select! {
        result = operator::run(client, settings, metrics, leader_flag.clone()) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                error!(error = %err, "operator stopped");
                ExitCode::FAILURE
            }
        },
        _ = terminate.recv() => ExitCode::SUCCESS,
        _ = interrupt.recv() => ExitCode::SUCCESS,
    };
    info!("shutting down");
    stop.store(true, Ordering::Relaxed);
    if let Some(election) = election {
        // Give the lease up so that a successor need not wait it out.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), election).await;
    }
    code
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "operator".to_owned())
}

/// Namespaces the operator refuses to run in. `openshift-ingress` belongs
/// to OpenShift's router and its own Gateway API controller: an operator
/// there would share their RBAC, quotas and upgrades.
const RESERVED_NAMESPACES: &[&str] = &["openshift-ingress"];

fn namespace_allowed(namespace: &str) -> Result<(), String> {
    if RESERVED_NAMESPACES.contains(&namespace) {
        return Err(format!(
            "refusing to run in namespace {namespace}: it belongs to OpenShift's own ingress and Gateway controllers; install Portcullis in a namespace of its own, such as portcullis-system"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::namespace_allowed;

    #[test]
    fn openshift_ingress_is_refused_with_a_reason() {
        let refused = namespace_allowed("openshift-ingress");
        assert!(
            refused
                .as_ref()
                .is_err_and(|m| m.contains("openshift-ingress") && m.contains("portcullis-system")),
            "{refused:?}"
        );
        assert_eq!(namespace_allowed("portcullis-system"), Ok(()));
        assert_eq!(namespace_allowed("openshift-operators"), Ok(()));
    }
}
