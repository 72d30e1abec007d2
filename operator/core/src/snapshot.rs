//! One consistent view of everything translation reads. Built by the
//! controller from its watch caches; built by hand in tests.

use std::collections::{BTreeMap, BTreeSet};

use crds::ProxyConfig;
use gwapi::backendtlspolicies::BackendTlsPolicy;
use gwapi::gatewayclasses::GatewayClass;
use gwapi::gateways::Gateway;
use gwapi::grpcroutes::GrpcRoute;
use gwapi::httproutes::HttpRoute;
use gwapi::referencegrants::ReferenceGrant;
use gwapi::tlsroutes::TlsRoute;
use gwapi::{TcpRoute, UdpRoute};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// `(namespace, name)`.
pub type Key = (String, String);

/// Route kinds, in the order statuses and configs list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    Http,
    Grpc,
    Tls,
    Tcp,
    Udp,
}

impl RouteKind {
    pub const ALL: [RouteKind; 5] = [
        RouteKind::Http,
        RouteKind::Grpc,
        RouteKind::Tls,
        RouteKind::Tcp,
        RouteKind::Udp,
    ];

    /// The kind's name in the API (`HTTPRoute`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Udp => "UDPRoute",
        }
    }

    pub fn from_name(name: &str) -> Option<RouteKind> {
        RouteKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Which optional Gateway API kinds the API server serves; what is not
/// served is neither watched nor offered to listeners, and listeners that
/// ask for it are told so through status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedKinds {
    pub routes: BTreeSet<RouteKind>,
    pub reference_grants: bool,
    pub backend_tls_policies: bool,
    /// `gateway.networking.k8s.io/bundle-version` of the installed CRDs.
    pub bundle_version: Option<String>,
}

impl ServedKinds {
    /// Everything: what tests assume unless they say otherwise.
    pub fn all() -> Self {
        ServedKinds {
            routes: RouteKind::ALL.into_iter().collect(),
            reference_grants: true,
            backend_tls_policies: true,
            bundle_version: Some("v1.6.1".to_owned()),
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
    pub terminating: bool,
}

/// The generation and hash of a Gateway's config Secret as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployedConfig {
    pub generation: u64,
    pub hash: String,
}

/// EndpointSlices by the Service they belong to
/// (`kubernetes.io/service-name`), each list sorted by name.
pub type EndpointSlices = BTreeMap<Key, Vec<EndpointSlice>>;

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
    pub reference_grants: Vec<ReferenceGrant>,
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    pub services: BTreeMap<Key, Service>,
    pub endpoint_slices: EndpointSlices,
    pub secrets: BTreeMap<Key, Secret>,
    pub config_maps: BTreeMap<Key, ConfigMap>,
    /// Namespace labels, for `allowedRoutes` selectors.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub proxy_configs: BTreeMap<Key, ProxyConfig>,
    /// Proxy Pods by Gateway.
    pub proxy_pods: BTreeMap<Key, Vec<ProxyPod>>,
    /// Config Secrets as deployed, by Gateway.
    pub deployed: BTreeMap<Key, DeployedConfig>,
}

impl Snapshot {
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces.get(namespace).cloned().unwrap_or_default()
    }
}

/// `(namespace, name)` of an object's metadata.
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}
