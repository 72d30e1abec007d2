//! Status patches: ours merged with what the object carries, written only
//! when they differ.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

use super::batch::{StatusPatch, Writes};
use super::context::Context;
use super::live::{Live, LiveStatus};
use crate::conditions::{merge, reason};
use crate::error::Error;
use crate::keys::{ObjectKey, StatusKind, StatusTarget};
use crate::names::CONTROLLER_NAME;
use crate::translate::{ParentRef, Translation};

pub(super) fn classes(
    translation: &Translation,
    live: &Live,
    context: &Context<'_>,
    out: &mut Writes,
) {
    for (name, status) in &translation.classes {
        let key = ObjectKey::cluster(name.clone());
        let Some(current) = live.status(StatusKind::GatewayClass, &key) else {
            continue;
        };
        let existing = conditions_at(current, "/conditions");
        let mut desired = status.clone();
        if let Some(conditions) = desired.conditions.as_mut() {
            merge(conditions, &existing, context.now);
        }
        let Some(desired) = to_json(&desired) else {
            continue;
        };
        if current.status.as_deref() == Some(&desired) {
            continue;
        }
        out.statuses
            .push(patch(StatusKind::GatewayClass, key, current, desired));
    }
}

pub(super) fn gateways(
    translation: &Translation,
    live: &Live,
    context: &Context<'_>,
    out: &mut Writes,
) {
    for (key, plan) in &translation.gateways {
        let Some(current) = live.status(StatusKind::Gateway, key) else {
            continue;
        };
        let mut desired = plan.status.clone();
        if let Some((_, error)) = out.refused.iter().find(|(gateway, _)| gateway == key) {
            not_programmed(desired.conditions.as_mut(), error);
        }
        merge_with_live(
            desired.conditions.as_mut(),
            desired
                .listeners
                .iter_mut()
                .flatten()
                .map(|l| (l.name.as_str(), &mut l.conditions)),
            current,
            context.now,
        );
        let Some(mut desired) = to_json(&desired) else {
            continue;
        };
        // Clear addresses the Service no longer has: a merge patch leaves
        // a field that is merely absent.
        if let (Some(live_status), Some(object)) =
            (current.status.as_deref(), desired.as_object_mut())
            && live_status.get("addresses").is_some()
            && object.get("addresses").is_none()
        {
            object.insert("addresses".to_owned(), serde_json::Value::Null);
        }
        if status_equal(current.status.as_deref(), &desired) {
            continue;
        }
        out.statuses
            .push(patch(StatusKind::Gateway, key.clone(), current, desired));
    }
}

/// A Gateway whose config was not written is not programmed, whatever its
/// proxies serve: they serve an older config than its inputs say.
fn not_programmed(conditions: Option<&mut Vec<Condition>>, error: &Error) {
    let Some(programmed) = conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == reason::PROGRAMMED)
    else {
        return;
    };
    programmed.status = "False".to_owned();
    programmed.reason = match error {
        Error::TooLarge { .. } => reason::CONFIG_TOO_LARGE,
        Error::InvalidConfig { .. } | Error::Encode { .. } => reason::INVALID,
    }
    .to_owned();
    programmed.message = format!("{error}; the proxy keeps the last config written.");
}

/// A ListenerSet's status is ours alone (its parent Gateway's class is
/// ours), written like a Gateway's: conditions and listeners by name.
pub(super) fn listener_sets(
    translation: &Translation,
    live: &Live,
    context: &Context<'_>,
    out: &mut Writes,
) {
    for (key, status) in &translation.listener_sets {
        let Some(current) = live.status(StatusKind::ListenerSet, key) else {
            continue;
        };
        let mut desired = status.clone();
        merge_with_live(
            desired.conditions.as_mut(),
            desired
                .listeners
                .iter_mut()
                .flatten()
                .map(|l| (l.name.as_str(), &mut l.conditions)),
            current,
            context.now,
        );
        let Some(desired) = to_json(&desired) else {
            continue;
        };
        if status_equal(current.status.as_deref(), &desired) {
            continue;
        }
        out.statuses.push(patch(
            StatusKind::ListenerSet,
            key.clone(),
            current,
            desired,
        ));
    }
}

pub(super) fn routes(
    translation: &Translation,
    live: &Live,
    context: &Context<'_>,
    out: &mut Writes,
) {
    for (route, ours) in &translation.routes {
        let kind = StatusKind::Route(route.kind);
        let Some(current) = live.status(kind, &route.key) else {
            continue;
        };
        if context
            .memo
            .unchanged(route, &current.resource_version, ours)
        {
            continue;
        }
        let entries = ours
            .iter()
            .map(|p| (p.parent_ref.clone(), p.conditions.clone()))
            .collect();
        match shared_list(
            current,
            SharedList::PARENTS,
            entries,
            &route.key.namespace,
            context.now,
        ) {
            Some(desired) => out
                .statuses
                .push(patch(kind, route.key.clone(), current, desired)),
            None => out.unchanged_routes.push((
                route.clone(),
                (current.resource_version.clone(), ours.clone()),
            )),
        }
    }
}

pub(super) fn policies(
    translation: &Translation,
    live: &Live,
    context: &Context<'_>,
    out: &mut Writes,
) {
    let kinds = [
        (StatusKind::BackendTlsPolicy, &translation.policies),
        (
            StatusKind::XBackendTrafficPolicy,
            &translation.traffic_policies,
        ),
    ];
    for (kind, key, ours) in kinds
        .into_iter()
        .flat_map(|(kind, policies)| policies.iter().map(move |(key, ours)| (kind, key, ours)))
    {
        let Some(current) = live.status(kind, key) else {
            continue;
        };
        let entries = ours
            .iter()
            .map(|a| (a.ancestor_ref.clone(), a.conditions.clone()))
            .collect();
        if let Some(desired) = shared_list(
            current,
            SharedList::ANCESTORS,
            entries,
            &key.namespace,
            context.now,
        ) {
            out.statuses
                .push(patch(kind, key.clone(), current, desired));
        }
    }
}

fn patch(
    kind: StatusKind,
    key: ObjectKey,
    current: &LiveStatus,
    status: serde_json::Value,
) -> StatusPatch {
    StatusPatch {
        target: StatusTarget::new(kind, key),
        resource_version: current.resource_version.clone(),
        status,
    }
}

/// A status list shared with other controllers: its field and the name of
/// each entry's reference.
#[derive(Debug, Clone, Copy)]
struct SharedList {
    field: &'static str,
    reference: &'static str,
}

impl SharedList {
    const PARENTS: SharedList = SharedList {
        field: "parents",
        reference: "parentRef",
    };
    const ANCESTORS: SharedList = SharedList {
        field: "ancestors",
        reference: "ancestorRef",
    };
}

/// The status holding `list` with our entries, or None when it would
/// change nothing.
fn shared_list(
    current: &LiveStatus,
    list: SharedList,
    ours: Vec<(ParentRef, Vec<Condition>)>,
    namespace: &str,
    now: &Time,
) -> Option<serde_json::Value> {
    let entries: Vec<serde_json::Value> = current
        .status
        .as_deref()
        .and_then(|s| s.get(list.field))
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let desired = shared_entries(&entries, ours, list.reference, namespace, now)?;
    Some(serde_json::json!({ list.field: desired }))
}

/// The list with other controllers' entries kept and ours replaced; our
/// conditions keep their `lastTransitionTime` where their status did not
/// change. None when the result equals `current`.
fn shared_entries(
    current: &[serde_json::Value],
    ours: Vec<(ParentRef, Vec<Condition>)>,
    reference: &str,
    namespace: &str,
    now: &Time,
) -> Option<Vec<serde_json::Value>> {
    let (mine, mut desired): (Vec<_>, Vec<_>) = current.iter().cloned().partition(|entry| {
        entry.get("controllerName").and_then(|c| c.as_str()) == Some(CONTROLLER_NAME)
    });
    if ours.is_empty() && mine.is_empty() {
        return None;
    }
    for (target, mut conditions) in ours {
        let existing: Vec<Condition> = mine
            .iter()
            .find(|entry| {
                entry
                    .get(reference)
                    .and_then(|r| serde_json::from_value::<ParentRef>(r.clone()).ok())
                    .is_some_and(|r| same_parent(&r, &target, namespace))
            })
            .and_then(|entry| entry.get("conditions"))
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        merge(&mut conditions, &existing, now);
        desired.push(serde_json::json!({
            reference: target,
            "controllerName": CONTROLLER_NAME,
            "conditions": conditions,
        }));
    }
    (desired != current).then_some(desired)
}

fn same_parent(a: &ParentRef, b: &ParentRef, route_namespace: &str) -> bool {
    a.name == b.name
        && a.namespace.as_deref().unwrap_or(route_namespace)
            == b.namespace.as_deref().unwrap_or(route_namespace)
        && a.section_name == b.section_name
        && a.port == b.port
}

/// Compares statuses as the API server stores them: absent and null fields
/// are the same.
fn status_equal(live: Option<&serde_json::Value>, desired: &serde_json::Value) -> bool {
    fn strip(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            serde_json::Value::Array(list) => {
                serde_json::Value::Array(list.iter().map(strip).collect())
            }
            other => other.clone(),
        }
    }
    live.map(strip) == Some(strip(desired))
}

fn to_json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// The conditions at `pointer` in a live status.
/// Keeps the `lastTransitionTime`s of a Gateway's or ListenerSet's status:
/// its conditions, and each listener's, matched by name, against what the
/// object carries.
fn merge_with_live<'a>(
    conditions: Option<&mut Vec<Condition>>,
    listeners: impl Iterator<Item = (&'a str, &'a mut Vec<Condition>)>,
    current: &LiveStatus,
    now: &Time,
) {
    /// A live listener entry, of either kind: only what merging needs.
    #[derive(serde::Deserialize)]
    struct LiveListener {
        name: String,
        #[serde(default)]
        conditions: Vec<Condition>,
    }
    if let Some(conditions) = conditions {
        merge(conditions, &conditions_at(current, "/conditions"), now);
    }
    let live: Vec<LiveListener> = current
        .status
        .as_deref()
        .and_then(|s| s.get("listeners"))
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for (name, conditions) in listeners {
        let existing = live
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.conditions.as_slice())
            .unwrap_or_default();
        merge(conditions, existing, now);
    }
}

fn conditions_at(current: &LiveStatus, pointer: &str) -> Vec<Condition> {
    current
        .status
        .as_deref()
        .and_then(|s| s.pointer(pointer))
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::conditions::condition;

    #[test]
    fn shared_status_lists_keep_other_controllers_and_transition_times() {
        let parent = ParentRef {
            name: "edge".into(),
            ..ParentRef::default()
        };
        let earlier = Time(Timestamp::from_second(1_000).unwrap());
        let now = Time(Timestamp::from_second(2_000).unwrap());
        let mut accepted = condition("Accepted", true, "Accepted", "ok", Some(1));
        accepted.last_transition_time = earlier.clone();
        let other = serde_json::json!({"parentRef": {"name": "theirs"}, "controllerName": "example.com/other", "conditions": []});
        let current = vec![
            other.clone(),
            serde_json::json!({"parentRef": {"name": "edge"}, "controllerName": CONTROLLER_NAME, "conditions": [accepted]}),
        ];
        let ours = || {
            vec![(
                parent.clone(),
                vec![condition("Accepted", true, "Accepted", "ok", Some(1))],
            )]
        };
        assert_eq!(
            shared_entries(&current, ours(), "parentRef", "apps", &now),
            None,
            "nothing changed, nothing written"
        );

        let changed = vec![(
            parent.clone(),
            vec![condition("Accepted", true, "Accepted", "still ok", Some(2))],
        )];
        let desired =
            shared_entries(&current, changed, "parentRef", "apps", &now).expect("a write");
        assert_eq!(desired[0], other, "other controllers' entries are kept");
        let time = desired[1]
            .pointer("/conditions/0/lastTransitionTime")
            .cloned();
        assert_eq!(
            time,
            Some(serde_json::to_value(&earlier).unwrap()),
            "same status, same transition time"
        );

        let gone =
            shared_entries(&current, Vec::new(), "parentRef", "apps", &now).expect("removal");
        assert_eq!(gone, vec![other], "our stale entry is removed");
    }

    #[test]
    fn absent_and_null_fields_are_equal_statuses() {
        let live = serde_json::json!({"addresses": null, "conditions": []});
        assert!(status_equal(
            Some(&live),
            &serde_json::json!({"conditions": []})
        ));
        assert!(!status_equal(None, &serde_json::json!({})));
        assert!(!status_equal(
            Some(&live),
            &serde_json::json!({"conditions": [{}]})
        ));
    }
}
