//! Snapshot → plans: the heart of the operator.
//!
//! [`translate`] reads a [`Snapshot`] and decides everything: which
//! GatewayClasses are ours and accepted, each Gateway's listeners and their
//! conditions, which routes attach where and why not, the compiled proxy
//! config of each Gateway, and every status. It uses no clock, so the same
//! snapshot gives byte-identical output (the operator hashes the config to
//! skip writes, and tests compare outputs as values).
//!
//! One module per concern, each depending only on the ones before it:
//! - [`references`]: ReferenceGrant checks for every cross-namespace
//!   reference; [`certificates`]: certificate and CA references to PEM;
//! - [`parameters`]: ProxyConfig references and their merge;
//!   [`classes`]: which GatewayClasses are accepted; [`features`]: what
//!   they support;
//! - [`listeners`]: a Gateway's listeners, their conflicts and references;
//!   [`listener_sets`]: the ListenerSets it takes, their listeners merged
//!   after its own, and their status;
//! - [`routes`]: every route kind seen through one shape; [`attachment`]:
//!   which listeners a route attaches to, and why not;
//! - [`backends`], [`backend_tls`] and [`traffic_policies`]: backendRefs to
//!   endpoints, TLS, retry budgets and Service-wide session persistence;
//!   [`matches`], [`filters`], [`rules`]: route rules compiled once;
//! - [`sockets`]: listeners sharing a port into one proxy listener, with
//!   virtual hosts in the spec's precedence;
//! - [`addresses`] and [`status`]: what every condition says;
//! - [`gateways`]: the pass over every Gateway that ties them together.
//!
//! The model it fills ([`proxy_config::GatewayConfig`]) is source-neutral:
//! a future input (Ingress, OpenShift Route) adds a module beside
//! [`routes`] that yields the same views, not a second translator.

use std::collections::{BTreeMap, BTreeSet};

use crate::keys::ObjectKey;
use crate::snapshot::{EndpointSlices, Snapshot};

mod addresses;
mod attachment;
mod backend_tls;
mod backends;
mod certificates;
mod classes;
mod compiled;
pub mod features;
mod filters;
mod gateways;
mod listener_sets;
mod listeners;
mod matches;
mod output;
mod parameters;
mod references;
mod routes;
mod rules;
mod sockets;
mod status;
mod traffic_policies;

pub use certificates::check_pem;
pub use classes::supported_bundle_version;
pub use output::{
    GatewayPlan, PolicyAncestorStatus, ProxyParameters, RouteParentStatus, ServicePort, Translation,
};
pub use parameters::merge_specs;
pub use routes::{ParentRef, hostname_intersection};

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
    changed: &BTreeSet<ObjectKey>,
) -> Translation {
    let affected = gateways_using(previous, changed);
    let mut translation = previous.clone();
    if affected.is_empty() {
        return translation;
    }
    let classes = classes::translate(snapshot);
    let set_parents: BTreeMap<ObjectKey, ObjectKey> = snapshot
        .listener_sets
        .iter()
        .filter_map(|set| {
            listener_sets::parent_gateway(set)
                .map(|gateway| (ObjectKey::of(&set.metadata), gateway))
        })
        .collect();
    let routes: Vec<routes::RouteView> = routes::views(snapshot)
        .into_iter()
        .filter(|route| {
            route.parent_refs.iter().any(|parent| {
                let key = route.parent_key(parent);
                if parent.is_gateway() {
                    affected.contains(&key)
                } else {
                    listener_sets::is_listener_set(parent)
                        && set_parents.get(&key).is_some_and(|g| affected.contains(g))
                }
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
pub fn gateways_using(
    translation: &Translation,
    services: &BTreeSet<ObjectKey>,
) -> BTreeSet<ObjectKey> {
    translation
        .gateways
        .iter()
        .filter(|(_, plan)| {
            plan.config.backends.values().any(|backend| {
                services.contains(&ObjectKey::new(
                    backend.source.namespace.clone(),
                    backend.source.name.clone(),
                ))
            })
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Services whose EndpointSlices differ between two snapshots.
pub fn changed_services(before: &EndpointSlices, after: &EndpointSlices) -> BTreeSet<ObjectKey> {
    let mut changed = BTreeSet::new();
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

#[cfg(test)]
mod tests;
