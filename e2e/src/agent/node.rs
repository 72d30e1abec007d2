//! The Node object and its heartbeat (a Lease renewed every 10 s, as a
//! kubelet does), so that the node lifecycle controller keeps it Ready.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use tracing::warn;

use super::config::AgentConfig;
use super::error::AgentError;

const MANAGER: &str = "portcullis-node-agent";

fn now() -> Time {
    Time(Timestamp::now())
}

/// CPUs the node offers to the scheduler. Pods here are processes sharing
/// the machine's cores with no CPU limit enforced, so requests are only
/// scheduling hints: the node offers far more than the machine has, so that
/// what a test suite creates (the conformance suite: some twenty Gateways,
/// each with a proxy Pod requesting 100m, beside its backends) is never
/// left Pending for want of CPU that nothing would reserve.
const SCHEDULABLE_CPUS: &str = "64";

fn status(config: &AgentConfig) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(SCHEDULABLE_CPUS.into())),
        ("memory".to_owned(), Quantity("24Gi".into())),
        ("pods".to_owned(), Quantity("250".into())),
        ("ephemeral-storage".to_owned(), Quantity("50Gi".into())),
    ]);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now()),
        last_transition_time: Some(now()),
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "portcullis node agent is posting ready status",
            ),
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "no memory pressure",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "no PID pressure",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.gateway.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        // Where the API server sends `/containerLogs` (it would fall back to
        // its --kubelet-port, 10250, without it).
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            operating_system: "linux".into(),
            kubelet_version: "v1.36.0-portcullis".into(),
            kube_proxy_version: String::new(),
            container_runtime_version: "process://portcullis-node-agent".into(),
            os_image: "local processes in network namespaces".into(),
            kernel_version: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// The network address of `ip`/`prefix_len` (198.18.0.1/16 → 198.18.0.0).
fn network_of(ip: std::net::Ipv4Addr, prefix_len: u8) -> std::net::Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    std::net::Ipv4Addr::from(u32::from(ip) & mask)
}

/// Creates or updates the Node and marks it Ready.
pub async fn register(client: &Client, config: &AgentConfig) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(BTreeMap::from([
                (
                    "kubernetes.io/hostname".to_owned(),
                    config.node_name.clone(),
                ),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                (
                    "kubernetes.io/arch".to_owned(),
                    std::env::consts::ARCH.to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(format!(
                "{}/{}",
                network_of(config.gateway, config.prefix_len),
                config.prefix_len
            )),
            ..NodeSpec::default()
        }),
        status: None,
    };
    let params = PatchParams::apply(MANAGER).force();
    nodes
        .patch(&config.node_name, &params, &Patch::Apply(&node))
        .await?;
    post_status(&nodes, config).await
}

async fn post_status(nodes: &Api<Node>, config: &AgentConfig) -> Result<(), AgentError> {
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "status": status(config),
    });
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Renews the node Lease every 10 s and posts status every minute.
pub async fn heartbeat(client: Client, config: AgentConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut ticks = 0u32;
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.node_name.clone()),
                namespace: Some("kube-node-lease".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.node_name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        if let Err(err) = leases
            .patch(
                &config.node_name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await
        {
            warn!(error = %err, "cannot renew the node lease");
        }
        if ticks.is_multiple_of(6)
            && let Err(err) = post_status(&nodes, &config).await
        {
            warn!(error = %err, "cannot post node status");
        }
        ticks = ticks.wrapping_add(1);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
