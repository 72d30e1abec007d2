//! Which Gateway API kinds, at which versions, the API server serves: from
//! v1.2.1 (OpenShift 4.19 pins its CRDs) to v1.6.1. Only those are watched;
//! a missing optional kind is reported through status, never a crash. A
//! change of the CRDs (an install, an upgrade) makes the operator discover
//! again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use operator_core::RouteKind;
use operator_core::names::{GATEWAY_GROUP, GATEWAY_X_GROUP};
use operator_core::snapshot::ServedKinds;
use tracing::debug;

use crate::error::Error;

/// The served Gateway API kinds, by kind name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayApis {
    pub resources: BTreeMap<String, ApiResource>,
    pub bundle_version: Option<String>,
    /// Kinds whose CRD is the experimental channel's.
    pub experimental: BTreeSet<String>,
    /// Whether our own ProxyConfig CRD is installed.
    pub proxy_configs: bool,
}

/// Kinds the operator reads, by API group; `GatewayClass` and `Gateway`
/// are required.
pub const KINDS: [(&str, &str); 11] = [
    (GATEWAY_GROUP, "GatewayClass"),
    (GATEWAY_GROUP, "Gateway"),
    (GATEWAY_GROUP, "HTTPRoute"),
    (GATEWAY_GROUP, "GRPCRoute"),
    (GATEWAY_GROUP, "TLSRoute"),
    (GATEWAY_GROUP, "TCPRoute"),
    (GATEWAY_GROUP, "UDPRoute"),
    (GATEWAY_GROUP, "ReferenceGrant"),
    (GATEWAY_GROUP, "BackendTLSPolicy"),
    (GATEWAY_GROUP, "ListenerSet"),
    (GATEWAY_X_GROUP, "XBackendTrafficPolicy"),
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
            backend_traffic_policies: self.resources.contains_key("XBackendTrafficPolicy"),
            listener_sets: self.resources.contains_key("ListenerSet"),
            bundle_version: self.bundle_version.clone(),
            experimental: self.experimental.clone(),
        }
    }

    /// What the operator cannot work without.
    pub fn complete(&self) -> bool {
        self.resources.contains_key("GatewayClass") && self.resources.contains_key("Gateway")
    }
}

pub async fn discover(client: &Client) -> Result<GatewayApis, Error> {
    let discovery = Discovery::new(client.clone())
        .filter(&[GATEWAY_GROUP, GATEWAY_X_GROUP, crds::GROUP])
        .run()
        .await
        .map_err(|err| Error::Discovery(err.to_string()))?;
    let mut apis = GatewayApis::default();
    for group in discovery.groups() {
        if group.name() == crds::GROUP {
            apis.proxy_configs = group.recommended_kind("ProxyConfig").is_some();
            continue;
        }
        for (_, kind) in KINDS.into_iter().filter(|(name, _)| *name == group.name()) {
            if let Some((resource, _)) = group.recommended_kind(kind) {
                apis.resources.insert(kind.to_owned(), resource);
            }
        }
    }
    // Each CRD says its release channel; the Gateway CRD, the bundle's
    // version. A CRD the operator may not read counts as standard.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (kind, resource) in &apis.resources {
        let annotations = crds
            .get_opt(&format!("{}.{}", resource.plural, resource.group))
            .await
            .ok()
            .flatten()
            .and_then(|crd| crd.metadata.annotations)
            .unwrap_or_default();
        if annotations
            .get(gwapi::CHANNEL_ANNOTATION)
            .map(String::as_str)
            == Some("experimental")
        {
            apis.experimental.insert(kind.clone());
        }
        if kind == "Gateway" {
            apis.bundle_version = annotations.get(BUNDLE_VERSION_ANNOTATION).cloned();
        }
    }
    Ok(apis)
}

const BUNDLE_VERSION_ANNOTATION: &str = "gateway.networking.k8s.io/bundle-version";

/// How long a batch of CRD changes is given to land before discovery looks.
const SETTLE: Duration = Duration::from_millis(500);

/// Resolves when discovery would answer differently than `apis`.
pub async fn changed(client: &Client, apis: &GatewayApis) {
    // One watch for the whole life of these caches: its initial listing
    // counts too, so CRDs that landed between discovery and the watch (a
    // batch still being installed) are not missed.
    let mut changes = std::pin::pin!(crd_changes(client, true));
    while changes.next().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        if discover(client).await.is_ok_and(|now| &now != apis) {
            return;
        }
    }
}

/// Resolves at the next change of a Gateway API or Portcullis CRD.
pub async fn any_change(client: &Client) {
    let mut changes = std::pin::pin!(crd_changes(client, false));
    if changes.next().await.is_some() {
        tokio::time::sleep(SETTLE).await;
    }
}

/// One item per change of a CRD of ours; with `initial_listing`, the end of
/// the watch's first listing is one too.
fn crd_changes(client: &Client, initial_listing: bool) -> impl futures::Stream<Item = ()> + Send {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut listed = false;
    watcher(crds, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let change = match event {
                Ok(watcher::Event::InitDone) => {
                    listed = true;
                    initial_listing
                }
                Ok(watcher::Event::Apply(crd) | watcher::Event::Delete(crd)) => {
                    listed && is_ours(&crd.name_any())
                }
                Err(err) => {
                    debug!(error = %err, "CRD watch");
                    false
                }
                _ => false,
            };
            futures::future::ready(change.then_some(()))
        })
}

fn is_ours(crd_name: &str) -> bool {
    [GATEWAY_GROUP, GATEWAY_X_GROUP, crds::GROUP]
        .iter()
        .any(|group| crd_name.ends_with(&format!(".{group}")))
}
