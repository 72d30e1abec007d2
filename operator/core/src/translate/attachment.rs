//! Which listeners of a Gateway a route attaches to through one parentRef:
//! `sectionName` and `port`, the listener's state, its `allowedRoutes`
//! (kinds and namespaces) and hostname intersection; and why it does not.

use super::listeners::{ListenerOwner, ListenerState};
use super::routes::{ParentRef, RouteView, hostname_intersection};
use crate::conditions::{Problem, reason};
use crate::keys::RouteKind;
use crate::snapshot::Snapshot;

/// A route attached to one listener of one Gateway.
#[derive(Debug, Clone)]
pub(super) struct Attachment {
    /// Index of the route in translation's list.
    pub route: usize,
    /// Index of the listener in the Gateway's.
    pub listener: usize,
    /// Hostnames it serves there; empty: any.
    pub hostnames: Vec<String>,
}

/// A Gateway's listeners and the attachments made to them so far.
#[derive(Debug)]
pub(super) struct Listeners<'a> {
    /// Whose listeners the parentRef reaches: the Gateway's own for a
    /// Gateway parent, one set's for a ListenerSet parent.
    pub owner: ListenerOwner,
    /// `Gateway` or `ListenerSet`, for messages.
    pub parent_kind: &'a str,
    pub states: &'a mut [ListenerState],
    pub attachments: &'a mut Vec<Attachment>,
}

/// Attaches a route through one parentRef; the error is the `Accepted`
/// reason and message.
pub(super) fn attach(
    snapshot: &Snapshot,
    gateway: Listeners<'_>,
    route: &RouteView,
    route_index: usize,
    parent: &ParentRef,
) -> Result<(), Problem> {
    let candidates: Vec<usize> = gateway
        .states
        .iter()
        .enumerate()
        .filter(|(_, l)| l.owner == gateway.owner)
        .filter(|(_, l)| parent.section_name.as_deref().is_none_or(|s| s == l.name))
        .filter(|(_, l)| parent.port.is_none_or(|p| p == i32::from(l.port)))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        let kind = gateway.parent_kind;
        let name = &parent.name;
        return Err(Problem::new(
            reason::NO_MATCHING_PARENT,
            match (&parent.section_name, parent.port) {
                (Some(section), _) => format!("{kind} {name} has no listener named {section:?}."),
                (None, Some(port)) => format!("{kind} {name} has no listener on port {port}."),
                _ => format!("{kind} {name} has no listeners."),
            },
        ));
    }
    let labels = snapshot.namespace_labels(&route.namespace);
    let mut not_allowed = None;
    let mut no_hostname = None;
    let mut attached = false;
    for listener_index in candidates {
        let listener = &gateway.states[listener_index];
        if !listener.accepts_routes() {
            not_allowed.get_or_insert(format!(
                "Listener {:?} is not accepted or is conflicted.",
                listener.name
            ));
            continue;
        }
        if !listener.kinds.contains(&route.kind) {
            not_allowed.get_or_insert(format!(
                "Listener {:?} does not allow {}s.",
                listener.name,
                route.kind.name()
            ));
            continue;
        }
        if !listener.allows_namespace(&route.namespace, &labels) {
            not_allowed.get_or_insert(format!(
                "Listener {:?} does not allow routes from namespace {}.",
                listener.name, route.namespace
            ));
            continue;
        }
        let hostnames = if matches!(
            route.kind,
            RouteKind::Http | RouteKind::Grpc | RouteKind::Tls
        ) {
            match hostname_intersection(listener.hostname.as_deref(), &route.hostnames) {
                Some(hostnames) => hostnames,
                None => {
                    no_hostname.get_or_insert(format!(
                        "No hostname of the route matches listener {:?} ({}).",
                        listener.name,
                        listener.hostname.as_deref().unwrap_or("any")
                    ));
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        attached = true;
        let already = gateway
            .attachments
            .iter()
            .any(|a| a.route == route_index && a.listener == listener_index);
        if !already {
            gateway.states[listener_index].attached += 1;
            gateway.attachments.push(Attachment {
                route: route_index,
                listener: listener_index,
                hostnames,
            });
        }
    }
    if attached {
        return Ok(());
    }
    Err(match (not_allowed, no_hostname) {
        (_, Some(message)) => Problem::new(reason::NO_MATCHING_LISTENER_HOSTNAME, message),
        (Some(message), None) => Problem::new(reason::NOT_ALLOWED_BY_LISTENERS, message),
        (None, None) => Problem::new(reason::NO_MATCHING_PARENT, "No listener matches."),
    })
}
