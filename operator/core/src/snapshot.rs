//! One consistent view of everything translation reads. The operator builds
//! it from its watch caches; tests build it by hand.

use std::collections::{BTreeMap, BTreeSet};

use crds::ProxyConfig;
use gwapi::backendtlspolicies::BackendTlsPolicy;
use gwapi::gatewayclasses::GatewayClass;
use gwapi::gateways::Gateway;
use gwapi::grpcroutes::GrpcRoute;
use gwapi::httproutes::HttpRoute;
use gwapi::listenersets::ListenerSet;
use gwapi::referencegrants::ReferenceGrant;
use gwapi::tlsroutes::TlsRoute;
use gwapi::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gwapi::{TcpRoute, UdpRoute};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proxy_config::{CONFIG_APPLIED_CONDITION, Generation};

use crate::keys::{ObjectKey, RouteKind};

/// Which optional Gateway API kinds the API server serves; what is not
/// served is neither watched nor offered to listeners, and listeners that
/// ask for it are told so through status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedKinds {
    pub routes: BTreeSet<RouteKind>,
    pub reference_grants: bool,
    pub backend_tls_policies: bool,
    /// XBackendTrafficPolicy (experimental channel only).
    pub backend_traffic_policies: bool,
    pub listener_sets: bool,
    /// `gateway.networking.k8s.io/bundle-version` of the installed CRDs.
    pub bundle_version: Option<String>,
    /// Kinds whose installed CRD is the experimental channel's
    /// (`gateway.networking.k8s.io/channel`): their experimental fields
    /// reach the operator, so it can honour them.
    pub experimental: BTreeSet<String>,
}

impl ServedKinds {
    /// Everything: what tests assume unless they say otherwise.
    pub fn all() -> Self {
        ServedKinds {
            routes: RouteKind::ALL.into_iter().collect(),
            reference_grants: true,
            backend_tls_policies: true,
            backend_traffic_policies: true,
            listener_sets: true,
            bundle_version: Some("v1.6.1".to_owned()),
            experimental: BTreeSet::new(),
        }
    }
}

/// What a proxy Pod says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPod {
    pub name: String,
    /// Ready as the kubelet sees it (which includes the readiness gate).
    pub ready: bool,
    /// The config generation its `ConfigApplied` condition reports as live.
    pub applied_generation: Option<u64>,
    /// False `ConfigApplied`: its reason and message.
    pub failure: Option<(String, String)>,
    /// A newer generation it refused while it keeps serving
    /// `applied_generation`, and the message saying why.
    pub refused: Option<(u64, String)>,
    pub terminating: bool,
}

impl ProxyPod {
    /// What a proxy Pod reports: Ready, and its `ConfigApplied` condition,
    /// whose message names the generation it serves.
    pub fn of(pod: &Pod) -> ProxyPod {
        let conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let ready = conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let applied = conditions
            .iter()
            .find(|c| c.type_ == CONFIG_APPLIED_CONDITION);
        ProxyPod {
            name: pod.metadata.name.clone().unwrap_or_default(),
            ready,
            applied_generation: applied
                .filter(|c| c.status == "True")
                .and_then(|c| c.message.as_deref().and_then(Generation::of)),
            failure: applied.filter(|c| c.status == "False").map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            }),
            refused: applied
                .filter(|c| c.status == "True")
                .and_then(|c| c.message.as_deref())
                .and_then(|message| {
                    Generation::refused_in(message).map(|g| (g, message.to_owned()))
                }),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// The generation and hash of a Gateway's config Secret as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployedConfig {
    pub generation: u64,
    pub hash: String,
}

/// EndpointSlices by the Service they belong to
/// (`kubernetes.io/service-name`), each list sorted by name.
pub type EndpointSlices = BTreeMap<ObjectKey, Vec<EndpointSlice>>;

/// Everything the operator knows of the cluster, at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub served: ServedKinds,
    pub gateway_classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub http_routes: Vec<HttpRoute>,
    pub grpc_routes: Vec<GrpcRoute>,
    pub tls_routes: Vec<TlsRoute>,
    pub tcp_routes: Vec<TcpRoute>,
    pub udp_routes: Vec<UdpRoute>,
    pub listener_sets: Vec<ListenerSet>,
    pub reference_grants: Vec<ReferenceGrant>,
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    pub backend_traffic_policies: Vec<XBackendTrafficPolicy>,
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoint_slices: EndpointSlices,
    pub secrets: BTreeMap<ObjectKey, Secret>,
    pub config_maps: BTreeMap<ObjectKey, ConfigMap>,
    /// Namespace labels, for `allowedRoutes` selectors.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub proxy_configs: BTreeMap<ObjectKey, ProxyConfig>,
    /// Proxy Pods by Gateway.
    pub proxy_pods: BTreeMap<ObjectKey, Vec<ProxyPod>>,
    /// Config Secrets as deployed, by Gateway.
    pub deployed: BTreeMap<ObjectKey, DeployedConfig>,
}

impl Snapshot {
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces.get(namespace).cloned().unwrap_or_default()
    }

    /// Makes generations only grow. The deployed generation of each Gateway
    /// is raised to the one this process last wrote (`written`: a write the
    /// watch has not shown yet, or a Secret deleted by hand), or past the
    /// newest one a proxy serves (the operator restarted after the Secret
    /// was deleted), so the next write never reuses a generation.
    pub fn raise_generations(&mut self, written: &BTreeMap<ObjectKey, DeployedConfig>) {
        let mut keys: BTreeSet<ObjectKey> = self.proxy_pods.keys().cloned().collect();
        keys.extend(written.keys().cloned());
        for key in keys {
            let serving = self
                .proxy_pods
                .get(&key)
                .into_iter()
                .flatten()
                .filter_map(|p| p.applied_generation)
                .max()
                .unwrap_or(0);
            let mut best = self.deployed.get(&key).cloned().unwrap_or_default();
            if let Some(remembered) = written.get(&key)
                && remembered.generation > best.generation
            {
                best = remembered.clone();
            }
            if serving > best.generation {
                best = DeployedConfig {
                    generation: serving,
                    hash: String::new(),
                };
            }
            self.deployed.insert(key, best);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    use super::*;

    fn pod(conditions: &[(&str, &str, &str, &str)]) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("edge-portcullis-1".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(type_, status, reason, message)| PodCondition {
                            type_: (*type_).into(),
                            status: (*status).into(),
                            reason: Some((*reason).into()),
                            message: Some((*message).into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_proxy_pod_reports_the_generation_it_serves_or_why_not() {
        let serving = ProxyPod::of(&pod(&[
            ("Ready", "True", "", ""),
            (
                CONFIG_APPLIED_CONDITION,
                "True",
                "Applied",
                "generation 7 applied: 2 listener(s) serving",
            ),
        ]));
        assert!(serving.ready);
        assert_eq!(serving.applied_generation, Some(7));
        assert_eq!(serving.failure, None);
        assert_eq!(serving.refused, None);
        let keeps_serving = ProxyPod::of(&pod(&[
            ("Ready", "True", "", ""),
            (
                CONFIG_APPLIED_CONDITION,
                "True",
                "Applied",
                "generation 7 applied: 2 listener(s) serving; generation 8 refused: listener https: no key",
            ),
        ]));
        assert_eq!(keeps_serving.applied_generation, Some(7));
        assert_eq!(keeps_serving.refused.as_ref().map(|r| r.0), Some(8));
        let refused = ProxyPod::of(&pod(&[(
            CONFIG_APPLIED_CONDITION,
            "False",
            "InvalidCertificate",
            "generation 8: listener https: bad key",
        )]));
        assert!(!refused.ready);
        assert_eq!(refused.applied_generation, None);
        assert_eq!(
            refused.failure.as_ref().map(|f| f.0.as_str()),
            Some("InvalidCertificate")
        );
    }

    #[test]
    fn generations_only_grow() {
        let edge = ObjectKey::new("apps", "edge");
        let mut snapshot = Snapshot::default();
        snapshot.deployed.insert(
            edge.clone(),
            DeployedConfig {
                generation: 3,
                hash: "a".into(),
            },
        );
        let written = BTreeMap::from([(
            edge.clone(),
            DeployedConfig {
                generation: 5,
                hash: "b".into(),
            },
        )]);
        snapshot.raise_generations(&written);
        assert_eq!(
            snapshot.deployed[&edge].generation, 5,
            "what this process wrote"
        );
        // A proxy serving a newer one (the Secret was deleted and the
        // operator restarted): the next write goes past it.
        snapshot.proxy_pods.insert(
            edge.clone(),
            vec![ProxyPod {
                applied_generation: Some(9),
                ..ProxyPod::default()
            }],
        );
        snapshot.raise_generations(&written);
        assert_eq!(snapshot.deployed[&edge].generation, 9);
        assert_eq!(snapshot.deployed[&edge].hash, "", "so it is rewritten");
    }
}
