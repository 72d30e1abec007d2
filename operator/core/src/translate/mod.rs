//! Snapshot → plans: the pure heart of the operator.
//!
//! [`translate`] reads a [`Snapshot`] and decides everything: which
//! GatewayClasses are ours and accepted, each Gateway's listeners and their
//! conditions, which routes attach where and why not, the compiled proxy
//! config of each Gateway, and every status. It does no I/O and uses no
//! clock, so the same snapshot gives byte-identical output (the controller
//! hashes the config to skip writes, and tests compare outputs as values).

use std::collections::{BTreeMap, BTreeSet};

use gwapi::gatewayclasses::GatewayClassStatus;
use gwapi::gateways::GatewayStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proxy_config::GatewayConfig;
use serde::{Deserialize, Serialize};

use crate::snapshot::{EndpointSlices, Key, RouteKind, Snapshot};

mod backends;
mod classes;
pub mod features;
mod gateways;
mod listeners;
mod routes;
mod rules;
mod stream;
mod tls;

pub use gateways::ProxyParameters;
pub use routes::{ParentRef, hostname_intersection};

/// Everything translation decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// Status of each GatewayClass this operator controls, by name.
    pub classes: BTreeMap<String, GatewayClassStatus>,
    /// One plan per Gateway of those classes.
    pub gateways: BTreeMap<Key, GatewayPlan>,
    /// Our entries of each route's `status.parents`; a route that no longer
    /// references any of our Gateways maps to an empty list, so that stale
    /// entries are removed.
    pub routes: BTreeMap<(RouteKind, Key), Vec<RouteParentStatus>>,
    /// Our entries of each BackendTLSPolicy's `status.ancestors`.
    pub policies: BTreeMap<Key, Vec<PolicyAncestorStatus>>,
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

/// Translates the whole snapshot.
pub fn translate(snapshot: &Snapshot) -> Translation {
    let classes = classes::translate(snapshot);
    let routes = routes::views(snapshot);
    gateways::translate(snapshot, classes, &routes, None)
}

/// The endpoint fast path: when only EndpointSlices changed, statuses of
/// classes, routes and policies cannot have changed, and only the Gateways
/// whose config names a Service of `changed` need new plans. Translates just
/// those, with just the routes that attach to them, and returns `previous`
/// with their plans replaced: the same as [`translate`] of the new snapshot,
/// for a fraction of the work when a cluster has many Gateways.
pub fn translate_endpoint_change(
    snapshot: &Snapshot,
    previous: &Translation,
    changed: &BTreeSet<Key>,
) -> Translation {
    let affected = gateways_using(previous, changed);
    let mut translation = previous.clone();
    if affected.is_empty() {
        return translation;
    }
    let classes = classes::translate(snapshot);
    let routes: Vec<routes::RouteView> = routes::views(snapshot)
        .into_iter()
        .filter(|route| {
            route.parent_refs.iter().any(|parent| {
                parent.is_gateway()
                    && affected.contains(&(
                        parent
                            .namespace
                            .clone()
                            .unwrap_or_else(|| route.namespace.clone()),
                        parent.name.clone(),
                    ))
            })
        })
        .collect();
    let narrow = gateways::translate(snapshot, classes, &routes, Some(&affected));
    for (key, plan) in narrow.gateways {
        translation.gateways.insert(key, plan);
    }
    translation
}

/// Gateways whose compiled config sends traffic to one of `services`.
pub fn gateways_using(translation: &Translation, services: &BTreeSet<Key>) -> BTreeSet<Key> {
    translation
        .gateways
        .iter()
        .filter(|(_, plan)| {
            plan.config.backends.values().any(|backend| {
                services.contains(&(
                    backend.source.namespace.clone(),
                    backend.source.name.clone(),
                ))
            })
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Services whose EndpointSlices differ between two snapshots.
pub fn changed_services(before: &EndpointSlices, after: &EndpointSlices) -> BTreeSet<Key> {
    let mut changed: BTreeSet<Key> = BTreeSet::new();
    for (service, slices) in before {
        if after.get(service) != Some(slices) {
            changed.insert(service.clone());
        }
    }
    for service in after.keys() {
        if !before.contains_key(service) {
            changed.insert(service.clone());
        }
    }
    changed
}

/// Converts between two types of the same JSON shape: the generated Gateway
/// API types repeat one shape under many names (a rule's filters and a
/// backend's, an HTTPRoute's parentRefs and a TCPRoute's), and this lets
/// one function serve them all.
pub(crate) fn reshape<T: Serialize, U: for<'de> Deserialize<'de>>(value: &T) -> Option<U> {
    serde_json::to_value(value)
        .ok()
        .and_then(|json| serde_json::from_value(json).ok())
}

/// Parses a Gateway API duration (`1h`, `30s`, `500ms`, `1m30s`) into
/// milliseconds.
pub fn parse_duration_ms(value: &str) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests;
