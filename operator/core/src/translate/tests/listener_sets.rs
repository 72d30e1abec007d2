//! ListenerSets: which a Gateway takes, their listeners merged after its
//! own in precedence order, routes reaching them only through the set, and
//! their status.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use gwapi::listenersets::ListenerSetStatus;
use pretty_assertions::assert_eq;

use super::*;

/// A Gateway `edge` in `apps` taking ListenerSets `from` where it says.
fn gateway_taking(from: &str, listeners: &str) -> String {
    gateway(listeners).replace(
        "gatewayClassName: portcullis",
        &format!("gatewayClassName: portcullis\n  allowedListeners: {{namespaces: {{from: {from}, selector: {{matchLabels: {{shared: 'yes'}}}}}}}}"),
    )
}

fn listener_set(namespace: &str, name: &str, created: &str, listeners: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: {name}, namespace: {namespace}, generation: 3, creationTimestamp: '{created}'}}
spec:
  parentRef: {{name: edge, namespace: apps}}
  listeners:
{listeners}
"#
    )
}

fn set_status<'a>(t: &'a Translation, namespace: &str, name: &str) -> &'a ListenerSetStatus {
    t.listener_sets
        .get(&ObjectKey::new(namespace, name))
        .unwrap_or_else(|| panic!("no status for ListenerSet {namespace}/{name}"))
}

/// `(status, reason)` of a set's condition.
fn set_condition(t: &Translation, namespace: &str, name: &str, type_: &str) -> (String, String) {
    let c = condition(
        set_status(t, namespace, name).conditions.as_ref().unwrap(),
        type_,
    );
    (c.status.clone(), c.reason.clone())
}

/// `(status, reason)` of each of Accepted, Programmed and Conflicted of a
/// set's listener.
fn set_listener(t: &Translation, set: &str, listener: &str) -> [(String, String); 3] {
    let status = set_status(t, "apps", set)
        .listeners
        .iter()
        .flatten()
        .find(|l| l.name == listener)
        .unwrap_or_else(|| panic!("no listener {listener} in {set}"));
    ["Accepted", "Programmed", "Conflicted"].map(|type_| {
        let c = condition(&status.conditions, type_);
        (c.status.clone(), c.reason.clone())
    })
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_owned(), reason.to_owned())
}

#[test]
fn a_gateway_takes_no_listener_set_unless_it_says_so() {
    let set = listener_set(
        "apps",
        "extra",
        "2026-01-01T00:00:00Z",
        "  - {name: extra, protocol: HTTP, port: 80, hostname: extra.example}",
    );
    let t = translate(&snapshot(&format!("{BASE}{}{set}", gateway(HTTP_LISTENER))));
    for type_ in ["Accepted", "Programmed"] {
        assert_eq!(
            set_condition(&t, "apps", "extra", type_),
            pair("False", "NotAllowed")
        );
    }
    assert_eq!(plan(&t).status.attached_listener_sets, Some(0));
    // The Gateway itself is untouched by the refused set.
    let accepted = condition(plan(&t).status.conditions.as_ref().unwrap(), "Accepted");
    assert_eq!(accepted.reason, "Accepted");
    assert_eq!(plan(&t).config.listeners[0].sources, vec!["http"]);
}

#[test]
fn allowed_listeners_admit_by_namespace() {
    let sets = [("apps", "here"), ("team", "shared"), ("other", "elsewhere")]
        .map(|(namespace, name)| {
            listener_set(
                namespace,
                name,
                "2026-01-01T00:00:00Z",
                &format!("  - {{name: l, protocol: HTTP, port: 80, hostname: {name}.example}}"),
            )
        })
        .concat();
    let other = "\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n";
    for (from, admitted) in [
        ("Same", vec!["here"]),
        ("Selector", vec!["shared"]),
        ("All", vec!["here", "shared", "elsewhere"]),
        ("None", vec![]),
    ] {
        let t = translate(&snapshot(&format!(
            "{BASE}{other}{}{sets}",
            gateway_taking(from, HTTP_LISTENER)
        )));
        let accepted: Vec<&str> = [("apps", "here"), ("team", "shared"), ("other", "elsewhere")]
            .into_iter()
            .filter(|(namespace, name)| set_condition(&t, namespace, name, "Accepted").0 == "True")
            .map(|(_, name)| name)
            .collect();
        assert_eq!(accepted, admitted, "from: {from}");
        assert_eq!(
            plan(&t).status.attached_listener_sets,
            Some(i32::try_from(admitted.len()).unwrap())
        );
    }
}

#[test]
fn earlier_listeners_win_conflicts_and_a_set_with_none_left_is_not_accepted() {
    let gateway = gateway_taking(
        "Same",
        "  - {name: web, protocol: HTTP, port: 80, hostname: a.example}",
    );
    // `first` is older than `second`; `second-b` ties with `second` and
    // loses by name.
    let first = listener_set(
        "apps",
        "first",
        "2026-01-01T00:00:00Z",
        "  - {name: dup-gateway, protocol: HTTP, port: 80, hostname: a.example}\n  - {name: own, protocol: HTTP, port: 80, hostname: b.example}\n  - {name: tcp, protocol: TCP, port: 80}",
    );
    let second = listener_set(
        "apps",
        "second",
        "2026-01-02T00:00:00Z",
        "  - {name: own, protocol: HTTP, port: 80, hostname: c.example}",
    );
    let second_b = listener_set(
        "apps",
        "second-b",
        "2026-01-02T00:00:00Z",
        "  - {name: dup-set, protocol: HTTP, port: 80, hostname: c.example}",
    );
    let t = translate(&snapshot(&format!(
        "{BASE}{gateway}{second_b}{second}{first}"
    )));
    let hostname_conflict = [
        pair("False", "HostnameConflict"),
        pair("False", "HostnameConflict"),
        pair("True", "HostnameConflict"),
    ];
    let served = [
        pair("True", "Accepted"),
        pair("False", "Pending"),
        pair("False", "NoConflicts"),
    ];
    assert_eq!(set_listener(&t, "first", "dup-gateway"), hostname_conflict);
    assert_eq!(set_listener(&t, "first", "own"), served);
    assert_eq!(
        set_listener(&t, "first", "tcp"),
        [
            pair("False", "ProtocolConflict"),
            pair("False", "ProtocolConflict"),
            pair("True", "ProtocolConflict"),
        ]
    );
    assert_eq!(set_listener(&t, "second", "own"), served);
    assert_eq!(set_listener(&t, "second-b", "dup-set"), hostname_conflict);
    assert_eq!(
        set_condition(&t, "apps", "first", "Accepted"),
        pair("True", "ListenersNotValid")
    );
    assert_eq!(
        set_condition(&t, "apps", "second", "Accepted"),
        pair("True", "Accepted")
    );
    for type_ in ["Accepted", "Programmed"] {
        assert_eq!(
            set_condition(&t, "apps", "second-b", type_),
            pair("False", "ListenersNotValid")
        );
    }
    assert_eq!(plan(&t).status.attached_listener_sets, Some(2));
    // The Gateway's own listener keeps its hostname and is the only one in
    // its status; the winners share its socket under names of their own.
    let own: Vec<&str> = plan(&t)
        .status
        .listeners
        .iter()
        .flatten()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(own, vec!["web"]);
    let socket = &plan(&t).config.listeners[0];
    assert_eq!(
        socket.sources,
        vec!["web", "apps/first/own", "apps/second/own"]
    );
}

#[test]
fn routes_reach_a_sets_listeners_only_through_the_set() {
    let gateway = gateway_taking(
        "Same",
        "  - {name: web, protocol: HTTP, port: 80, hostname: gw.example}",
    );
    let set = listener_set(
        "apps",
        "extra",
        "2026-01-01T00:00:00Z",
        "  - {name: one, protocol: HTTP, port: 80, hostname: one.example}\n  - {name: two, protocol: HTTP, port: 80, hostname: two.example}",
    );
    let backend = "  rules:\n  - backendRefs: [{name: echo, port: 8080}]";
    let routes = [
        route("to-gateway", &format!("  parentRefs: [{{name: edge}}]\n{backend}")),
        route(
            "to-set",
            &format!("  parentRefs: [{{kind: ListenerSet, group: gateway.networking.k8s.io, name: extra}}]\n{backend}"),
        ),
        route(
            "to-one",
            &format!("  parentRefs: [{{kind: ListenerSet, group: gateway.networking.k8s.io, name: extra, sectionName: one}}]\n{backend}"),
        ),
        route(
            "set-section-on-gateway",
            &format!("  parentRefs: [{{name: edge, sectionName: one}}]\n{backend}"),
        ),
    ]
    .concat();
    let t = translate(&snapshot(&format!("{BASE}{gateway}{set}{routes}")));
    let accepted = |name: &str| {
        let c = route_conditions(&t, RouteKind::Http, name);
        let c = condition(&c, "Accepted");
        (c.status.clone(), c.reason.clone())
    };
    assert_eq!(accepted("to-gateway"), pair("True", "Accepted"));
    assert_eq!(accepted("to-set"), pair("True", "Accepted"));
    assert_eq!(accepted("to-one"), pair("True", "Accepted"));
    assert_eq!(
        accepted("set-section-on-gateway"),
        pair("False", "NoMatchingParent")
    );
    // The route's status names the set as its parent, namespace included.
    let parent = &t.routes[&RouteKey {
        kind: RouteKind::Http,
        key: ObjectKey::new("apps", "to-set"),
    }][0]
        .parent_ref;
    assert_eq!(
        (
            parent.kind.as_deref(),
            parent.group.as_deref(),
            parent.namespace.as_deref()
        ),
        (
            Some("ListenerSet"),
            Some("gateway.networking.k8s.io"),
            Some("apps")
        )
    );
    let attached: Vec<(String, i32)> = set_status(&t, "apps", "extra")
        .listeners
        .iter()
        .flatten()
        .map(|l| (l.name.clone(), l.attached_routes))
        .collect();
    assert_eq!(attached, vec![("one".into(), 2), ("two".into(), 1)]);
    let web = plan(&t).status.listeners.as_ref().unwrap()[0].attached_routes;
    assert_eq!(web, 1, "only the route naming the Gateway");
    // Each hostname serves only the routes attached to its listener.
    let socket = &plan(&t).config.listeners[0];
    let hosts: Vec<(String, String, usize)> = socket
        .virtual_hosts
        .iter()
        .map(|v| (v.hostnames.join(","), v.source.clone(), v.rules.len()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            ("gw.example".into(), "web".into(), 1),
            ("one.example".into(), "apps/extra/one".into(), 2),
            ("two.example".into(), "apps/extra/two".into(), 1),
        ]
    );
}

#[test]
fn a_sets_listeners_take_routes_and_certificates_from_the_sets_namespace() {
    let gateway = gateway_taking(
        "All",
        "  - {name: web, protocol: HTTP, port: 80, hostname: gw.example}",
    );
    let set = listener_set(
        "team",
        "tenant",
        "2026-01-01T00:00:00Z",
        "  - {name: web, protocol: HTTP, port: 80, hostname: team.example}\n  - {name: own-cert, protocol: HTTPS, port: 443, hostname: team.example, tls: {certificateRefs: [{name: cert}]}}\n  - {name: apps-cert, protocol: HTTPS, port: 443, hostname: apps.example, tls: {certificateRefs: [{name: cert, namespace: apps}]}}",
    );
    let team_cert = SERVER_CERT.replace("namespace: apps", "namespace: team");
    let backend = "  rules:\n  - backendRefs: [{name: echo, port: 8080}]";
    let to_set =
        "  parentRefs: [{kind: ListenerSet, name: tenant, namespace: team, sectionName: web}]";
    let routes = [
        route("from-apps", &format!("{to_set}\n{backend}")),
        route("from-team", &format!("{to_set}\n{backend}"))
            .replace("namespace: apps", "namespace: team"),
    ]
    .concat();
    // A grant to Gateways does not extend to ListenerSets.
    let gateway_grant = r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways, namespace: apps}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: team}]
  to: [{group: "", kind: Secret}]
"#;
    let yaml = format!("{BASE}{SERVER_CERT}{team_cert}{gateway}{set}{routes}{gateway_grant}");
    let t = translate(&snapshot(&yaml));
    let listener = |name: &str| {
        set_status(&t, "team", "tenant")
            .listeners
            .iter()
            .flatten()
            .find(|l| l.name == name)
            .cloned()
            .unwrap()
    };
    let resolved = |name: &str| {
        let l = listener(name);
        let c = condition(&l.conditions, "ResolvedRefs");
        (c.status.clone(), c.reason.clone())
    };
    assert_eq!(resolved("own-cert"), pair("True", "ResolvedRefs"));
    assert_eq!(resolved("apps-cert"), pair("False", "RefNotPermitted"));
    assert_eq!(
        listener("web").attached_routes,
        1,
        "from: Same is the set's namespace"
    );
    let from_apps = t.routes[&RouteKey {
        kind: RouteKind::Http,
        key: ObjectKey::new("apps", "from-apps"),
    }][0]
        .conditions
        .clone();
    assert_eq!(
        condition(&from_apps, "Accepted").reason,
        "NotAllowedByListeners"
    );

    // With a grant to ListenerSets, the certificate resolves.
    let set_grant = gateway_grant.replace("kind: Gateway", "kind: ListenerSet");
    let t = translate(&snapshot(&format!("{yaml}{set_grant}")));
    let apps_cert = set_status(&t, "team", "tenant")
        .listeners
        .iter()
        .flatten()
        .find(|l| l.name == "apps-cert")
        .map(|l| condition(&l.conditions, "ResolvedRefs").status.clone());
    assert_eq!(apps_cert.as_deref(), Some("True"));
}

#[test]
fn without_the_listener_set_crd_the_gateway_reports_no_count() {
    let mut s = snapshot(&format!("{BASE}{}", gateway(HTTP_LISTENER)));
    s.served.listener_sets = false;
    let t = translate(&s);
    assert_eq!(plan(&t).status.attached_listener_sets, None);
}
