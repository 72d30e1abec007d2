//! The writes of a pass, as values: what a cluster state and a live state
//! make the operator apply, delete and patch.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use pretty_assertions::assert_eq;

use super::*;
use crate::error::Error;
use crate::fixtures::{BASE, HTTP_LISTENER, gateway, route, snapshot};
use crate::keys::{ObjectKey, RouteKey, RouteKind, StatusKind, StatusTarget};
use crate::names::{CONTROLLER_NAME, MANAGED_BY, MANAGED_BY_LABEL};
use crate::provision::{ProvisionedKind, Settings};
use crate::snapshot::DeployedConfig;
use crate::translate::{Translation, translate};

fn settings() -> Settings {
    Settings {
        proxy_image: "example/proxy:1".into(),
        max_config_bytes: crate::provision::MAX_SECRET_DATA_BYTES,
    }
}

fn now() -> Time {
    Time(Timestamp::from_second(2_000_000_000).unwrap())
}

fn edge() -> ObjectKey {
    ObjectKey::new("apps", "edge")
}

fn cluster() -> crate::snapshot::Snapshot {
    snapshot(&format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "web",
            "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        )
    ))
}

fn translated() -> Translation {
    translate(&cluster())
}

/// Live statuses for the class, the Gateway and the route, all empty.
fn empty_statuses() -> Live {
    let mut live = Live::default();
    for target in [
        StatusTarget::new(StatusKind::GatewayClass, ObjectKey::cluster("portcullis")),
        StatusTarget::new(StatusKind::Gateway, edge()),
        StatusTarget::new(
            StatusKind::Route(RouteKind::Http),
            ObjectKey::new("apps", "web"),
        ),
    ] {
        live.statuses.insert(
            target,
            LiveStatus {
                resource_version: "1".into(),
                status: None,
            },
        );
    }
    live
}

/// What the cluster holds after `writes` were made: the objects applied
/// and the statuses patched, each at a new resourceVersion.
fn after(mut live: Live, writes: &Writes) -> Live {
    for desired in &writes.apply {
        let meta: ObjectMeta =
            serde_json::from_value(desired.body["metadata"].clone()).expect("metadata");
        live.own(desired.kind, &meta);
    }
    for owned in &writes.delete {
        live.owned.remove(owned);
    }
    for patch in &writes.statuses {
        let entry = live.statuses.entry(patch.target.clone()).or_default();
        let mut status = entry
            .status
            .as_deref()
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        merge_patch(&mut status, &patch.status);
        entry.status = Some(Arc::new(status));
        entry.resource_version = format!("{}0", entry.resource_version);
    }
    live
}

fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(
                        target.entry(key.clone()).or_insert(serde_json::Value::Null),
                        value,
                    );
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn writes_of(
    translation: &Translation,
    live: &Live,
    held: &BTreeSet<ObjectKey>,
    scope: Scope,
) -> Writes {
    writes_with(translation, live, held, scope, &settings())
}

fn writes_with(
    translation: &Translation,
    live: &Live,
    held: &BTreeSet<ObjectKey>,
    scope: Scope,
    settings: &Settings,
) -> Writes {
    let memo = StatusMemo::default();
    let now = now();
    writes(
        translation,
        live,
        &Context {
            settings,
            now: &now,
            held,
            scope,
            memo: &memo,
        },
    )
}

fn kinds(writes: &Writes) -> Vec<Vec<&'static str>> {
    writes
        .waves()
        .iter()
        .map(|wave| wave.iter().map(|d| d.kind.name()).collect())
        .collect()
}

#[test]
fn a_new_gateway_gets_its_objects_in_waves_and_every_status() {
    let memo = StatusMemo::default();
    let (settings, time, held) = (settings(), now(), BTreeSet::new());
    let context = Context {
        settings: &settings,
        now: &time,
        held: &held,
        scope: Scope::All,
        memo: &memo,
    };
    let (translation, writes) = decide(&cluster(), &empty_statuses(), &context);
    assert_eq!(
        kinds(&writes),
        vec![
            vec!["ServiceAccount", "Role", "Deployment", "Service", "Secret"],
            vec!["RoleBinding"],
        ],
        "RoleBindings after their Roles"
    );
    assert!(writes.delete.is_empty());
    let targets: Vec<String> = writes
        .statuses
        .iter()
        .map(|p| p.target.to_string())
        .collect();
    assert_eq!(
        targets,
        [
            "Gateway apps/edge",
            "GatewayClass portcullis",
            "HTTPRoute apps/web"
        ]
    );
    let generation = &translation.gateways[&edge()].generation;
    assert_eq!(
        writes.generations,
        vec![(
            edge(),
            DeployedConfig {
                generation: *generation,
                hash: translation.gateways[&edge()].config_hash.clone()
            }
        )]
    );
    let route = writes
        .statuses
        .iter()
        .find(|p| p.target.kind == StatusKind::Route(RouteKind::Http))
        .unwrap();
    assert_eq!(
        route.resource_version, "1",
        "a compare-and-swap on what was read"
    );
    assert_eq!(
        route.status["parents"][0]["controllerName"],
        CONTROLLER_NAME
    );
    assert_eq!(
        route.status["parents"][0]["conditions"][0]["lastTransitionTime"],
        serde_json::to_value(now()).unwrap(),
        "a new condition's transition is now"
    );
}

#[test]
fn once_written_the_same_state_writes_nothing() {
    let translation = translated();
    let first = writes_of(
        &translation,
        &empty_statuses(),
        &BTreeSet::new(),
        Scope::All,
    );
    let live = after(empty_statuses(), &first);
    let second = writes_of(&translation, &live, &BTreeSet::new(), Scope::All);
    assert!(second.is_empty(), "{second:#?}");
    assert_eq!(second.generations, first.generations, "still remembered");
    assert_eq!(second.unchanged_routes.len(), 1, "the route is memoised");
}

#[test]
fn objects_no_gateway_wants_are_deleted_and_others_kept() {
    let translation = translated();
    let first = writes_of(
        &translation,
        &empty_statuses(),
        &BTreeSet::new(),
        Scope::All,
    );
    let mut live = after(empty_statuses(), &first);
    let labels = Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())].into());
    let stale = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some("apps".into()),
        labels: labels.clone(),
        ..ObjectMeta::default()
    };
    live.own(ProvisionedKind::Deployment, &stale("gone-portcullis"));
    let mut deleting = stale("leaving-portcullis");
    deleting.deletion_timestamp = Some(now());
    live.own(ProvisionedKind::Service, &deleting);
    // Not ours: never touched.
    live.own(
        ProvisionedKind::Service,
        &ObjectMeta {
            name: Some("theirs".into()),
            namespace: Some("apps".into()),
            ..ObjectMeta::default()
        },
    );
    let writes = writes_of(&translation, &live, &BTreeSet::new(), Scope::All);
    assert_eq!(
        writes.delete,
        vec![Owned {
            kind: ProvisionedKind::Deployment,
            key: ObjectKey::new("apps", "gone-portcullis"),
        }],
        "one being deleted already is left to finish"
    );
    assert!(writes.apply.is_empty());

    // A Gateway that is no longer accepted loses everything it owned.
    let mut refused = translation.clone();
    refused.gateways.get_mut(&edge()).unwrap().provision = false;
    let writes = writes_of(&refused, &live, &BTreeSet::new(), Scope::All);
    let deleted: BTreeSet<&str> = writes.delete.iter().map(|o| o.kind.name()).collect();
    assert_eq!(
        deleted,
        BTreeSet::from([
            "Deployment",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ])
    );
    assert!(writes.generations.is_empty());
}

#[test]
fn a_held_config_waits_and_the_rest_is_written() {
    let translation = translated();
    let first = writes_of(
        &translation,
        &empty_statuses(),
        &BTreeSet::new(),
        Scope::All,
    );
    let live = after(empty_statuses(), &first);
    let mut changed = translation.clone();
    let plan = changed.gateways.get_mut(&edge()).unwrap();
    plan.config_hash = "new".into();
    plan.generation += 1;
    let held = BTreeSet::from([edge()]);
    let writes = writes_of(&changed, &live, &held, Scope::All);
    assert_eq!(writes.held_configs, vec![edge()]);
    assert!(writes.configs_written.is_empty());
    assert!(writes.generations.is_empty(), "nothing new was written");
    let writes = writes_of(&changed, &live, &BTreeSet::new(), Scope::All);
    assert_eq!(writes.configs_written, vec![edge()]);
    let secret = writes
        .apply
        .iter()
        .find(|d| d.kind == ProvisionedKind::Secret)
        .unwrap();
    assert_eq!(
        secret.hash,
        format!("{}:new", changed.gateways[&edge()].generation)
    );
}

#[test]
fn a_config_the_proxy_would_refuse_is_not_written_and_nothing_else_waits() {
    let mut translation = translated();
    let plan = translation.gateways.get_mut(&edge()).unwrap();
    plan.config.listeners[0].port = 0;
    plan.config_hash = "broken".into();
    let writes = writes_of(
        &translation,
        &empty_statuses(),
        &BTreeSet::new(),
        Scope::All,
    );
    assert_eq!(writes.refused.len(), 1);
    let message = writes.refused[0].1.to_string();
    assert!(
        message.contains("apps/edge") && message.contains("port"),
        "{message}"
    );
    assert!(writes.configs_written.is_empty());
    assert_eq!(writes.waves()[0].len(), 4, "the other objects are applied");
}

#[test]
fn a_config_over_the_secret_limit_is_not_written_and_the_gateway_says_why_once() {
    let translation = translated();
    let small = Settings {
        max_config_bytes: 64,
        ..settings()
    };
    let first = writes_with(
        &translation,
        &empty_statuses(),
        &BTreeSet::new(),
        Scope::All,
        &small,
    );
    assert!(
        matches!(&first.refused[..], [(gateway, Error::TooLarge { limit: 64, .. })] if *gateway == edge()),
        "{:?}",
        first.refused
    );
    assert!(first.configs_written.is_empty());
    assert!(
        first
            .apply
            .iter()
            .all(|d| d.kind != ProvisionedKind::Secret),
        "no Secret the API server would refuse"
    );
    let gateway = first
        .statuses
        .iter()
        .find(|p| p.target.kind == StatusKind::Gateway)
        .expect("the Gateway's status");
    let conditions = gateway.status["conditions"].as_array().expect("conditions");
    let programmed = conditions
        .iter()
        .find(|c| c["type"] == "Programmed")
        .expect("Programmed");
    assert_eq!(programmed["status"], "False");
    assert_eq!(programmed["reason"], "ConfigTooLarge");
    let message = programmed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("over the 64 bytes a Secret holds"),
        "{message}"
    );

    // The next pass over the same inputs writes nothing more: no retry loop.
    let live = after(empty_statuses(), &first);
    let second = writes_with(&translation, &live, &BTreeSet::new(), Scope::All, &small);
    assert!(second.is_empty(), "{second:#?}");
    assert_eq!(second.refused.len(), 1, "still refused, still reported");
}

#[test]
fn other_controllers_entries_are_kept_and_the_fast_path_writes_gateways_only() {
    let translation = translated();
    let mut live = empty_statuses();
    let theirs = serde_json::json!({
        "parentRef": {"name": "edge"},
        "controllerName": "example.com/other",
        "conditions": [],
    });
    live.statuses.insert(
        StatusTarget::new(
            StatusKind::Route(RouteKind::Http),
            ObjectKey::new("apps", "web"),
        ),
        LiveStatus {
            resource_version: "7".into(),
            status: Some(Arc::new(serde_json::json!({"parents": [theirs]}))),
        },
    );
    let writes = writes_of(&translation, &live, &BTreeSet::new(), Scope::All);
    let route = writes
        .statuses
        .iter()
        .find(|p| p.target.kind == StatusKind::Route(RouteKind::Http))
        .unwrap();
    assert_eq!(route.status["parents"][0], theirs);
    assert_eq!(
        route.status["parents"][1]["controllerName"],
        CONTROLLER_NAME
    );

    let fast = writes_of(&translation, &live, &BTreeSet::new(), Scope::Gateways);
    let kinds: Vec<StatusKind> = fast.statuses.iter().map(|p| p.target.kind).collect();
    assert_eq!(kinds, vec![StatusKind::Gateway]);
}

#[test]
fn addresses_the_service_lost_are_cleared() {
    let translation = translated();
    let mut live = empty_statuses();
    let gateway = StatusTarget::new(StatusKind::Gateway, edge());
    let plan_status = serde_json::to_value(&translation.gateways[&edge()].status).unwrap();
    let mut with_address = plan_status.clone();
    with_address["addresses"] = serde_json::json!([{"type": "IPAddress", "value": "198.19.0.9"}]);
    live.statuses.insert(
        gateway.clone(),
        LiveStatus {
            resource_version: "3".into(),
            status: Some(Arc::new(with_address)),
        },
    );
    let writes = writes_of(&translation, &live, &BTreeSet::new(), Scope::Gateways);
    let patch = writes
        .statuses
        .iter()
        .find(|p| p.target == gateway)
        .unwrap();
    assert_eq!(patch.status["addresses"], serde_json::Value::Null);
}

#[test]
fn a_route_memo_skips_the_comparison_until_the_route_moves() {
    let translation = translated();
    let first = writes_of(
        &translation,
        &empty_statuses(),
        &BTreeSet::new(),
        Scope::All,
    );
    let live = after(empty_statuses(), &first);
    let mut second = writes_of(&translation, &live, &BTreeSet::new(), Scope::All);
    let mut memo = StatusMemo::default();
    memo.remember(&translation, &mut second);
    let route = RouteKey {
        kind: RouteKind::Http,
        key: ObjectKey::new("apps", "web"),
    };
    let version = live
        .status(StatusKind::Route(RouteKind::Http), &route.key)
        .unwrap()
        .resource_version
        .clone();
    assert!(memo.unchanged(&route, &version, &translation.routes[&route]));
    assert!(!memo.unchanged(&route, "other", &translation.routes[&route]));
    let mut gone = translation.clone();
    gone.routes.clear();
    memo.remember(&gone, &mut Writes::default());
    assert!(!memo.unchanged(&route, &version, &translation.routes[&route]));
}

#[test]
fn a_listener_sets_status_is_written_once_and_keeps_its_transition_times() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER).replace(
            "gatewayClassName: portcullis",
            "gatewayClassName: portcullis\n  allowedListeners: {namespaces: {from: Same}}"
        ),
        "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: team, namespace: apps, generation: 1}\nspec:\n  parentRef: {name: edge}\n  listeners:\n  - {name: team, protocol: HTTP, port: 80, hostname: team.example}\n"
    );
    let translation = translate(&snapshot(&yaml));
    let set = StatusTarget::new(StatusKind::ListenerSet, ObjectKey::new("apps", "team"));
    let mut live = empty_statuses();
    live.statuses.insert(
        set.clone(),
        LiveStatus {
            resource_version: "1".into(),
            status: None,
        },
    );
    let first = writes_of(&translation, &live, &BTreeSet::new(), Scope::All);
    let patch = first
        .statuses
        .iter()
        .find(|p| p.target == set)
        .expect("the set's status is written");
    assert_eq!(patch.status["listeners"][0]["name"], "team");
    assert_eq!(
        patch.status["listeners"][0]["conditions"][0]["lastTransitionTime"],
        serde_json::to_value(now()).unwrap()
    );

    // A later pass with nothing changed: the times it wrote are kept, so
    // there is nothing to write.
    let live = after(live, &first);
    let memo = StatusMemo::default();
    let (settings, later) = (
        settings(),
        Time(Timestamp::from_second(2_000_000_600).unwrap()),
    );
    let second = writes(
        &translation,
        &live,
        &Context {
            settings: &settings,
            now: &later,
            held: &BTreeSet::new(),
            scope: Scope::All,
            memo: &memo,
        },
    );
    assert!(
        second.statuses.iter().all(|p| p.target != set),
        "{:#?}",
        second.statuses
    );
}

#[test]
fn a_traffic_policys_ancestors_are_written_beside_other_controllers_and_then_left_alone() {
    let yaml = format!(
        "{BASE}{}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "web",
            "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        ),
        "
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: budget, namespace: apps, generation: 2}
spec:
  targetRefs: [{group: '', kind: Service, name: echo}]
  retryConstraint: {}
"
    );
    let translation = translate(&snapshot(&yaml));
    let policy = StatusTarget::new(
        StatusKind::XBackendTrafficPolicy,
        ObjectKey::new("apps", "budget"),
    );
    let theirs = serde_json::json!({
        "ancestorRef": {"name": "other-gateway"},
        "controllerName": "example.com/other",
        "conditions": [],
    });
    let mut live = empty_statuses();
    live.statuses.insert(
        policy.clone(),
        LiveStatus {
            resource_version: "4".into(),
            status: Some(Arc::new(serde_json::json!({"ancestors": [theirs]}))),
        },
    );
    let writes = writes_of(&translation, &live, &BTreeSet::new(), Scope::All);
    let patch = writes
        .statuses
        .iter()
        .find(|p| p.target == policy)
        .expect("the policy's status is written");
    assert_eq!(patch.resource_version, "4");
    assert_eq!(patch.status["ancestors"][0], theirs);
    let ours = &patch.status["ancestors"][1];
    assert_eq!(ours["ancestorRef"]["name"], "edge");
    assert_eq!(ours["controllerName"], CONTROLLER_NAME);
    assert_eq!(ours["conditions"][0]["type"], "Accepted");
    assert_eq!(ours["conditions"][0]["status"], "True");
    assert_eq!(ours["conditions"][0]["observedGeneration"], 2);

    let again = writes_of(
        &translation,
        &after(live, &writes),
        &BTreeSet::new(),
        Scope::All,
    );
    assert!(
        again.statuses.iter().all(|p| p.target != policy),
        "nothing changed, nothing written"
    );
}
