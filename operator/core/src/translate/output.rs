//! What translation decides: one plan per Gateway and every status.

use std::collections::BTreeMap;

use crds::ProxyConfigSpec;
use gwapi::gatewayclasses::GatewayClassStatus;
use gwapi::gateways::GatewayStatus;
use gwapi::listenersets::ListenerSetStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proxy_config::GatewayConfig;
use serde::{Deserialize, Serialize};

use super::routes::ParentRef;
use crate::keys::{ObjectKey, RouteKey};

/// Everything translation decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// Status of each GatewayClass this operator controls, by name.
    pub classes: BTreeMap<String, GatewayClassStatus>,
    /// One plan per Gateway of those classes.
    pub gateways: BTreeMap<ObjectKey, GatewayPlan>,
    /// Our entries of each route's `status.parents`; a route that no longer
    /// references any of our Gateways maps to an empty list, so that stale
    /// entries are removed.
    pub routes: BTreeMap<RouteKey, Vec<RouteParentStatus>>,
    /// Our entries of each BackendTLSPolicy's `status.ancestors`.
    pub policies: BTreeMap<ObjectKey, Vec<PolicyAncestorStatus>>,
    /// Our entries of each XBackendTrafficPolicy's `status.ancestors`.
    pub traffic_policies: BTreeMap<ObjectKey, Vec<PolicyAncestorStatus>>,
    /// Status of each ListenerSet naming a Gateway of ours.
    pub listener_sets: BTreeMap<ObjectKey, ListenerSetStatus>,
}

/// What one Gateway needs: its proxy's config, how to run the proxy, and
/// its status.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayPlan {
    pub class: String,
    /// Gateway UID, for owner references.
    pub uid: String,
    /// Whether the proxy should run at all: false while the Gateway or its
    /// class is not accepted (its objects are then removed).
    pub provision: bool,
    pub config: GatewayConfig,
    /// `content_hash` of `config`.
    pub config_hash: String,
    /// The generation the config Secret will carry: the deployed one when the
    /// hash is unchanged, the next one otherwise.
    pub generation: u64,
    pub status: GatewayStatus,
    pub parameters: ProxyParameters,
    /// Sockets the Service exposes.
    pub ports: Vec<ServicePort>,
    /// An IP address the Gateway asks for (`spec.addresses`).
    pub requested_address: Option<String>,
}

/// How the proxy of a Gateway runs: the class's ProxyConfig with the
/// Gateway's merged over it field by field, and `spec.infrastructure`'s
/// labels and annotations for every generated object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyParameters {
    pub spec: ProxyConfigSpec,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// One port of the Gateway's Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
}

/// One entry of a route's `status.parents`, kind-neutral: every route kind
/// has the same shape there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

/// One entry of a policy's `status.ancestors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: ParentRef,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}
