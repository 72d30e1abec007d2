//! `ProxyConfig` (`gateway.portcullis.io/v1alpha1`): how the operator runs the
//! proxy of a Gateway.
//!
//! Referenced from `GatewayClass.spec.parametersRef` (defaults for every
//! Gateway of the class) and from `Gateway.spec.infrastructure.parametersRef`
//! (that Gateway only); the Gateway's object wins field by field. The YAML in
//! this folder is generated from these types by `cargo run -p crds --bin
//! crdgen` and checked by a test: edit the Rust, never the YAML.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of Portcullis's own kinds.
pub const GROUP: &str = "gateway.portcullis.io";

/// Where `crdgen` writes the CRD and where the drift test reads it, relative
/// to this crate.
pub const CRD_FILE: &str = "gateway.portcullis.io_proxyconfigs.yaml";

/// Parameters of the proxy the operator provisions for a Gateway: how many
/// replicas, with what resources, behind what kind of Service, scheduled
/// where, logging what, and draining how.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.portcullis.io",
    version = "v1alpha1",
    kind = "ProxyConfig",
    plural = "proxyconfigs",
    shortname = "pxc",
    namespaced,
    status = "ProxyConfigStatus",
    derive = "Default",
    derive = "PartialEq",
    category = "portcullis",
    doc = "How the Portcullis operator runs the proxy of a Gateway. Referenced from a GatewayClass's spec.parametersRef (defaults for its Gateways) or a Gateway's spec.infrastructure.parametersRef (that Gateway only; its fields win).",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service.type"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))")
    .message("replicas and autoscaling are mutually exclusive: with autoscaling the HPA owns the replica count")
    .reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfigSpec {
    /// Number of proxy Pods. Unset: 1, or whatever the HPA decides when
    /// `autoscaling` is set (the two are mutually exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Scale the proxy with a HorizontalPodAutoscaler; the Deployment then
    /// leaves `replicas` unset so that the two never fight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// Keep some proxy Pods running through voluntary disruptions (node
    /// drains) with a PodDisruptionBudget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudget>,

    /// The proxy container: image override, resources and environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSettings>,

    /// The Service that exposes the Gateway's listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSettings>,

    /// Metadata and scheduling of the proxy Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSettings>,

    /// Proxy logs and access logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,

    /// How the proxy stops: it keeps serving open connections for a while so
    /// that clients and load balancers move away without errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<Shutdown>,

    /// Threads serving traffic in each proxy Pod. Unset: one per CPU the Pod
    /// may use (its CPU limit, else the node's CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub worker_threads: Option<i32>,
}

/// HorizontalPodAutoscaler settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas")
    .message("minReplicas must not exceed maxReplicas")
    .reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest proxy Pods. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: Option<i32>,

    /// Most proxy Pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average CPU use, in percent of the CPU request, that the HPA aims
    /// for. Unset (and no memory target): 80.
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,

    /// Average memory use, in percent of the memory request, that the HPA
    /// aims for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_memory_utilization_percentage: Option<i32>,
}

/// PodDisruptionBudget settings: exactly one of the two fields.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.minAvailable) != has(self.maxUnavailable)")
    .message("set exactly one of minAvailable and maxUnavailable")
    .reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudget {
    /// Pods that must stay available: a number or a percentage ("50%").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,

    /// Pods that may be unavailable at once: a number or a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// The proxy container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSettings {
    /// Proxy image to run instead of the operator's default, for example a
    /// mirror in a disconnected cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// CPU and memory requests and limits. Unset: requests of 100m CPU and
    /// 128Mi memory, no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra environment variables for the proxy container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
}

/// The Service in front of the proxy Pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.loadBalancerClass) || !has(self.type) || self.type == 'LoadBalancer'")
    .message("loadBalancerClass applies to type LoadBalancer only")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.loadBalancerSourceRanges) || !has(self.type) || self.type == 'LoadBalancer'")
    .message("loadBalancerSourceRanges applies to type LoadBalancer only")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.externalTrafficPolicy) || !has(self.type) || self.type != 'ClusterIP'")
    .message("externalTrafficPolicy applies to types LoadBalancer and NodePort only")
    .reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// Service type. Default: LoadBalancer.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,

    /// Annotations for the Service, for example a cloud load balancer's
    /// settings. Merged over the Gateway's `spec.infrastructure.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Labels for the Service, merged over the Gateway's infrastructure labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Which load balancer implementation serves the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub load_balancer_class: Option<String>,

    /// `Local` keeps the client's source address and avoids a second hop, at
    /// the cost of uneven spreading; `Cluster` spreads evenly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,

    /// Client CIDRs allowed through the cloud load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub load_balancer_source_ranges: Option<Vec<String>>,
}

/// Kubernetes Service types the proxy can sit behind.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    #[serde(rename = "ClusterIP")]
    ClusterIp,
}

/// Service external traffic policies.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalTrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// Metadata and scheduling of the proxy Pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Labels added to the proxy Pods (never replacing the ones the operator
    /// selects on).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to the proxy Pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Nodes the proxy may run on, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the proxy Pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Node and Pod affinity of the proxy Pods. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How proxy Pods spread across zones and nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the proxy Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,

    /// Secrets for pulling the proxy image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// Proxy logs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Logging {
    /// Level of the proxy's own log. Default: info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,

    /// One line per request or connection. Default: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
}

/// Log levels, most severe first.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// Access log settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// Write access log lines to the proxy's standard output.
    pub enabled: bool,

    /// Line format. Default: JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AccessLogFormat>,
}

/// Access log line formats.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    #[serde(rename = "JSON")]
    Json,
    /// A space-separated line, like a web server's combined log.
    Text,
}

/// Graceful shutdown.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.minDrainDuration) || !has(self.drainTimeout) || duration(self.minDrainDuration) <= duration(self.drainTimeout)")
    .message("minDrainDuration must not exceed drainTimeout")
    .reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct Shutdown {
    /// Longest wait for open requests and connections after SIGTERM, for
    /// example "60s" (Gateway API duration format). Default: 60s. The Pod's
    /// termination grace period is set a little longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub drain_timeout: Option<String>,

    /// How long the proxy keeps accepting new connections after SIGTERM, so
    /// that load balancers notice the endpoint is going. Default: 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub min_drain_duration: Option<String>,
}

/// What the operator observed of a ProxyConfig.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfigStatus {
    /// `Accepted`: whether the operator could apply this ProxyConfig to the
    /// Gateways and GatewayClasses that reference it, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CRD as YAML, with a header saying where it comes from.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&ProxyConfig::crd())?;
    Ok(format!(
        "# Generated from crds/src/lib.rs by `cargo run -p crds --bin crdgen`. Do not edit.\n{body}"
    ))
}

#[cfg(test)]
mod tests;
