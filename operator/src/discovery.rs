//! Which Gateway API kinds, at which versions, the API server serves: from
//! v1.2.1 (OpenShift 4.19 pins its CRDs) to v1.6.1. Only those are watched;
//! a missing optional kind is reported through status, never a crash.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::discovery::{ApiResource, Discovery};
use kube::{Api, Client};

use crate::snapshot::{RouteKind, ServedKinds};
use crate::{Error, GATEWAY_GROUP};

/// The served Gateway API kinds, by kind name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayApis {
    pub resources: BTreeMap<String, ApiResource>,
    pub bundle_version: Option<String>,
    /// Whether our own ProxyConfig CRD is installed.
    pub proxy_configs: bool,
}

/// Kinds the operator reads; `GatewayClass` and `Gateway` are required.
pub const KINDS: [&str; 9] = [
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "ReferenceGrant",
    "BackendTLSPolicy",
];

impl GatewayApis {
    pub fn served(&self) -> ServedKinds {
        ServedKinds {
            routes: RouteKind::ALL
                .into_iter()
                .filter(|kind| self.resources.contains_key(kind.name()))
                .collect(),
            reference_grants: self.resources.contains_key("ReferenceGrant"),
            backend_tls_policies: self.resources.contains_key("BackendTLSPolicy"),
            bundle_version: self.bundle_version.clone(),
        }
    }

    /// What the operator cannot work without.
    pub fn complete(&self) -> bool {
        self.resources.contains_key("GatewayClass") && self.resources.contains_key("Gateway")
    }
}

pub async fn discover(client: &Client) -> Result<GatewayApis, Error> {
    let discovery = Discovery::new(client.clone())
        .filter(&[GATEWAY_GROUP, crds::GROUP])
        .run()
        .await
        .map_err(|err| Error::Discovery(err.to_string()))?;
    let mut apis = GatewayApis::default();
    for group in discovery.groups() {
        if group.name() == crds::GROUP {
            apis.proxy_configs = group.recommended_kind("ProxyConfig").is_some();
            continue;
        }
        for kind in KINDS {
            if let Some((resource, _)) = group.recommended_kind(kind) {
                apis.resources.insert(kind.to_owned(), resource);
            }
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    apis.bundle_version = crds
        .get_opt(&format!("gateways.{GATEWAY_GROUP}"))
        .await
        .ok()
        .flatten()
        .and_then(|crd| crd.metadata.annotations)
        .and_then(|a| a.get("gateway.networking.k8s.io/bundle-version").cloned());
    Ok(apis)
}
