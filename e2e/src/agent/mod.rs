//! The node agent: a test-only kubelet that runs Pods as local processes,
//! each in its own network namespace, and plays the cloud load balancer.
//!
//! With it, a real control plane (etcd, kube-apiserver, controller manager,
//! scheduler) schedules Pods, Deployments scale, EndpointSlices list Pod IPs
//! and readiness gates hold traffic, without a container runtime; and
//! `kubectl logs` reads container output through its kubelet endpoint.

pub mod config;
pub mod loadbalancer;
pub mod logs;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

pub use config::AgentConfig;

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

/// Stop signal and latest object of a supervised Pod.
type PodControl = (watch::Sender<bool>, watch::Sender<Pod>);

/// Shared by the agent's tasks.
pub struct Agent {
    pub client: Client,
    pub config: AgentConfig,
    pub network: network::Network,
    /// Running pod supervisors by UID: a stop signal and the latest object.
    pods: Mutex<HashMap<String, PodControl>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(client: Client, config: AgentConfig) -> Arc<Self> {
        let network = network::Network::new(&config);
        Arc::new(Self {
            client,
            config,
            network,
            pods: Mutex::new(HashMap::new()),
        })
    }

    /// Registers the node and runs until the process is stopped.
    pub async fn run(self: Arc<Self>) -> Result<(), AgentError> {
        self.network.prepare().await?;
        // Listening before the Node says where, so that logs never miss it.
        let (listener, acceptor) = server::bind(&self.config).await?;
        tokio::spawn(server::serve(self.clone(), listener, acceptor));
        node::register(&self.client, &self.config).await?;
        tokio::spawn(node::heartbeat(self.client.clone(), self.config.clone()));
        tokio::spawn(loadbalancer::run(self.clone()));
        self.watch_pods().await
    }

    async fn watch_pods(self: &Arc<Self>) -> Result<(), AgentError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={}", self.config.node_name);
        let stream = watcher::watcher(pods, watcher::Config::default().fields(&selector));
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(pod) | Event::InitApply(pod)) => self.observe(pod).await,
                Ok(Event::Delete(pod)) => self.stop(&pod).await,
                Ok(Event::Init | Event::InitDone) => {}
                Err(err) => {
                    warn!(error = %err, "pod watch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        Ok(())
    }

    async fn observe(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.uid() else { return };
        let mut pods = self.pods.lock().await;
        if let Some((stop, latest)) = pods.get(&uid) {
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = stop.send(true);
            }
            let _ = latest.send(pod);
            return;
        }
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
        if finished && pod.metadata.deletion_timestamp.is_none() {
            return;
        }
        let (stop, stopping) = watch::channel(pod.metadata.deletion_timestamp.is_some());
        let (latest, latest_pod) = watch::channel(pod.clone());
        pods.insert(uid.clone(), (stop, latest));
        info!(pod = %pod.name_any(), namespace = %pod.namespace().unwrap_or_default(), "starting pod");
        let agent = self.clone();
        tokio::spawn(async move {
            pod::supervise(agent.clone(), pod, latest_pod, stopping).await;
            agent.pods.lock().await.remove(&uid);
        });
    }

    /// The supervised Pod `namespace/name` and its UID. While a Pod is
    /// replaced by one of the same name, the one not being deleted.
    pub async fn pod_named(&self, namespace: &str, name: &str) -> Option<(String, Pod)> {
        let pods = self.pods.lock().await;
        let mut deleting = None;
        for (uid, (_, latest)) in pods.iter() {
            let pod = latest.borrow();
            if pod.namespace().as_deref() != Some(namespace) || pod.name_any() != name {
                continue;
            }
            if pod.metadata.deletion_timestamp.is_none() {
                return Some((uid.clone(), pod.clone()));
            }
            deleting = Some((uid.clone(), pod.clone()));
        }
        deleting
    }

    /// Whether a container of a supervised Pod may still write output: the
    /// Pod is supervised and the container has not finished for good (its
    /// status is not `terminated`; a restarting one is `waiting`).
    pub async fn container_running(&self, uid: &str, container: &str) -> bool {
        let pods = self.pods.lock().await;
        let Some((_, latest)) = pods.get(uid) else {
            return false;
        };
        let pod = latest.borrow();
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|statuses| statuses.iter().find(|s| s.name == container))
            .and_then(|s| s.state.as_ref())
            .is_none_or(|state| state.terminated.is_none())
    }

    async fn stop(&self, pod: &Pod) {
        if let Some(uid) = pod.uid()
            && let Some((stop, _)) = self.pods.lock().await.get(&uid)
        {
            let _ = stop.send(true);
        }
    }
}

/// Lists pods on this node, for cleanup tools and tests.
pub async fn pods_on_node(client: &Client, node: &str) -> Result<Vec<Pod>, AgentError> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    Ok(list.items)
}
