//! The node agent: a test-only kubelet that runs Pods as local processes,
//! each in its own network namespace, and plays the cloud load balancer.
//!
//! With it, a real control plane (etcd, kube-apiserver, controller manager,
//! scheduler) schedules Pods, Deployments scale, EndpointSlices list Pod IPs
//! and readiness gates hold traffic, without a container runtime; and
//! `kubectl logs` reads container output through its kubelet endpoint.

pub mod config;
pub mod error;
pub mod loadbalancer;
pub mod logs;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod server;
pub mod state;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

pub use config::AgentConfig;
pub use error::AgentError;
pub use state::Agent;

impl Agent {
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
