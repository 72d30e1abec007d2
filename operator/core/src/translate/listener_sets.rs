//! ListenerSets: which ones a Gateway takes (`spec.allowedListeners`),
//! their listeners merged after the Gateway's own in the spec's precedence
//! (oldest set first, then by namespace/name), and each set's status.
//!
//! A set's listeners become the Gateway's for sockets and conflicts, but
//! routes reach them only through a parentRef to the set: the Gateway's own
//! status and its routes never see them.

use std::collections::BTreeMap;
use std::ops::Range;

use gwapi::gateways::{
    Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners, GatewayStatusListeners,
};
use gwapi::listenersets::{ListenerSet, ListenerSetStatus, ListenerSetStatusListeners};
use proxy_config::GatewayConfig;

use super::listeners::{
    ListenerOwner, ListenerState, Owner, listener_state, mark_later_conflicts, selector_matches,
};
use super::routes::ParentRef;
use crate::conditions::{Problem, condition, reason};
use crate::convert::reshape;
use crate::keys::ObjectKey;
use crate::names::GATEWAY_GROUP;
use crate::snapshot::Snapshot;

/// The Gateway a ListenerSet names, when it names one (`parentRef` may only
/// name a Gateway; its namespace defaults to the set's).
pub(super) fn parent_gateway(set: &ListenerSet) -> Option<ObjectKey> {
    let parent = &set.spec.parent_ref;
    let is_gateway = parent.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway";
    is_gateway.then(|| {
        ObjectKey::new(
            parent
                .namespace
                .clone()
                .or_else(|| set.metadata.namespace.clone())
                .unwrap_or_default(),
            parent.name.clone(),
        )
    })
}

/// Every ListenerSet by the Gateway it names, each list in precedence
/// order: oldest first, ties by namespace/name.
pub(super) fn by_gateway(snapshot: &Snapshot) -> BTreeMap<ObjectKey, Vec<&ListenerSet>> {
    let mut sets: BTreeMap<ObjectKey, Vec<&ListenerSet>> = BTreeMap::new();
    for set in &snapshot.listener_sets {
        if let Some(gateway) = parent_gateway(set) {
            sets.entry(gateway).or_default().push(set);
        }
    }
    for list in sets.values_mut() {
        list.sort_by(|a, b| {
            let created = |s: &ListenerSet| s.metadata.creation_timestamp.clone().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| ObjectKey::of(&a.metadata).cmp(&ObjectKey::of(&b.metadata)))
        });
    }
    sets
}

/// One ListenerSet that names a Gateway of ours.
#[derive(Debug, Clone)]
pub(super) struct SetState {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    /// Why the Gateway does not take it, if it does not.
    pub admitted: Result<(), Problem>,
    /// Its listeners in the Gateway's list; empty unless admitted.
    pub listeners: Range<usize>,
}

impl SetState {
    /// Whether any of its listeners can be served.
    fn any_valid(&self, states: &[ListenerState]) -> bool {
        states[self.listeners.clone()]
            .iter()
            .any(ListenerState::programmable)
    }

    /// Whether it is attached (counted in the Gateway's
    /// `attachedListenerSets`).
    pub fn accepted(&self, states: &[ListenerState]) -> bool {
        self.admitted.is_ok() && self.any_valid(states)
    }
}

/// Whether `gateway` takes ListenerSets from `namespace`; none unless its
/// `spec.allowedListeners` says so.
fn admission(snapshot: &Snapshot, gateway: &Gateway, namespace: &str) -> Result<(), Problem> {
    let gateway_namespace = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let name = gateway.metadata.name.as_deref().unwrap_or_default();
    let namespaces = gateway
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let allowed = match namespaces.and_then(|n| n.from.as_ref()) {
        Some(GatewayAllowedListenersNamespacesFrom::All) => true,
        Some(GatewayAllowedListenersNamespacesFrom::Same) => namespace == gateway_namespace,
        Some(GatewayAllowedListenersNamespacesFrom::Selector) => {
            let selector = namespaces
                .and_then(|n| n.selector.as_ref())
                .and_then(reshape)
                .unwrap_or_default();
            selector_matches(&selector, &snapshot.namespace_labels(namespace))
        }
        Some(GatewayAllowedListenersNamespacesFrom::None) | None => {
            return Err(Problem::new(
                reason::NOT_ALLOWED,
                format!(
                    "Gateway {gateway_namespace}/{name} takes no ListenerSets: its spec.allowedListeners does not allow any."
                ),
            ));
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Problem::new(
            reason::NOT_ALLOWED,
            format!(
                "Gateway {gateway_namespace}/{name} does not take ListenerSets from namespace {namespace} (spec.allowedListeners)."
            ),
        ))
    }
}

/// Appends the listeners of every admitted set to `states` (the Gateway's
/// own first), marks the conflicts they bring, and returns every set that
/// names the Gateway.
pub(super) fn merge(
    snapshot: &Snapshot,
    gateway: &Gateway,
    sets: &[&ListenerSet],
    states: &mut Vec<ListenerState>,
    config: &mut GatewayConfig,
) -> Vec<SetState> {
    let first = states.len();
    let mut merged = Vec::with_capacity(sets.len());
    for set in sets {
        let key = ObjectKey::of(&set.metadata);
        let admitted = admission(snapshot, gateway, &key.namespace);
        let start = states.len();
        if admitted.is_ok() {
            let prefix = format!("{}/{}/", key.namespace, key.name);
            let owner = Owner {
                listener_owner: ListenerOwner::ListenerSet(merged.len()),
                kind: "ListenerSet",
                namespace: &key.namespace,
                source_prefix: Some(&prefix),
            };
            for entry in &set.spec.listeners {
                // A set's entry has the shape of a Gateway listener.
                let Some(listener) = reshape::<_, GatewayListeners>(entry) else {
                    continue;
                };
                states.push(listener_state(snapshot, gateway, &owner, &listener, config));
            }
        }
        merged.push(SetState {
            generation: set.metadata.generation,
            admitted,
            listeners: start..states.len(),
            key,
        });
    }
    mark_later_conflicts(states, first);
    merged
}

/// A set's status: whether its Gateway takes it and serves it, and each of
/// its listeners (built by `listener_status`, as the Gateway's are).
pub(super) fn status(
    set: &SetState,
    states: &[ListenerState],
    gateway_refusal: Option<&Problem>,
    gateway_programmed: bool,
    listener_status: impl Fn(&ListenerState) -> GatewayStatusListeners,
) -> ListenerSetStatus {
    let generation = set.generation;
    let both = |status: bool, why: &'static str, message: String| {
        vec![
            condition(reason::ACCEPTED, status, why, message.clone(), generation),
            condition(reason::PROGRAMMED, status, why, message, generation),
        ]
    };
    let valid = states[set.listeners.clone()]
        .iter()
        .filter(|l| l.programmable())
        .count();
    let total = set.listeners.len();
    let conditions = if let Err(problem) = &set.admitted {
        both(false, problem.reason, problem.message.clone())
    } else if let Some(problem) = gateway_refusal {
        both(
            false,
            reason::PARENT_NOT_ACCEPTED,
            format!("The parent Gateway is not accepted: {}", problem.message),
        )
    } else if valid == 0 {
        both(
            false,
            reason::LISTENERS_NOT_VALID,
            "No listener of the ListenerSet is valid.".to_owned(),
        )
    } else {
        let (why, message) = if valid < total {
            (
                reason::LISTENERS_NOT_VALID,
                "Some listeners are not valid; the others are served.",
            )
        } else {
            (reason::ACCEPTED, "The ListenerSet is accepted.")
        };
        vec![
            condition(reason::ACCEPTED, true, why, message, generation),
            if gateway_programmed {
                condition(
                    reason::PROGRAMMED,
                    true,
                    reason::PROGRAMMED,
                    "The parent Gateway's proxy serves the ListenerSet's valid listeners.",
                    generation,
                )
            } else {
                condition(
                    reason::PROGRAMMED,
                    false,
                    reason::PENDING,
                    "Waiting for the parent Gateway's proxy to serve the listeners.",
                    generation,
                )
            },
        ]
    };
    let listeners = states[set.listeners.clone()]
        .iter()
        .map(|state| {
            let status = listener_status(state);
            ListenerSetStatusListeners {
                attached_routes: status.attached_routes,
                conditions: status.conditions,
                name: status.name,
                supported_kinds: reshape(&status.supported_kinds).flatten(),
            }
        })
        .collect();
    ListenerSetStatus {
        conditions: Some(conditions),
        listeners: Some(listeners),
    }
}

/// Whether a route's parentRef names a ListenerSet.
pub(super) fn is_listener_set(parent: &ParentRef) -> bool {
    parent.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && parent.kind.as_deref() == Some("ListenerSet")
}
