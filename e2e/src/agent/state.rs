//! What the agent's tasks share: the client, its configuration, the Pod
//! network and the supervised Pods.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::{Client, ResourceExt};
use tokio::sync::{Mutex, watch};

use super::config::AgentConfig;
use super::network;

/// Stop signal and latest object of a supervised Pod.
pub(super) type PodControl = (watch::Sender<bool>, watch::Sender<Pod>);

/// Shared by the agent's tasks.
pub struct Agent {
    pub client: Client,
    pub config: AgentConfig,
    pub network: network::Network,
    /// Running pod supervisors by UID: a stop signal and the latest object.
    pub(super) pods: Mutex<HashMap<String, PodControl>>,
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
}
