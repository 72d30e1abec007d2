//! Route rules compiled to the proxy's, one bad rule dropped alone.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn gateway_and_route_compile_to_a_listener_with_ready_endpoints() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "web",
            "  parentRefs: [{name: edge}]\n  hostnames: [web.example.com]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let plan = plan(&t);
    let conditions = route_conditions(&t, RouteKind::Http, "web");
    assert_eq!(condition(&conditions, "Accepted").status, "True");
    assert_eq!(condition(&conditions, "ResolvedRefs").status, "True");
    let listener = &plan.config.listeners[0];
    assert_eq!(
        (listener.name.as_str(), listener.port, listener.protocol),
        ("http-80", 80, Protocol::Http)
    );
    assert_eq!(listener.virtual_hosts[0].hostnames, vec!["web.example.com"]);
    let backend = &plan.config.backends["apps/echo:8080/Http1"];
    assert_eq!(backend.endpoints.len(), 1, "only the ready endpoint");
    assert_eq!(
        backend.endpoints[0].port, 3000,
        "the EndpointSlice's target port"
    );
    assert_eq!(
        plan.status.listeners.as_ref().unwrap()[0].attached_routes,
        1
    );
    assert_eq!(
        plan.ports,
        vec![ServicePort {
            name: "http-80".into(),
            port: 80,
            protocol: "TCP"
        }]
    );
    proxy_config::validate(&proxy_config::ConfigDocument::new(
        plan.generation,
        plan.config.clone(),
    ))
    .expect("the compiled config is valid");
    // Not programmed until a proxy replica serves it and the Service has an address.
    let programmed = condition(plan.status.conditions.as_ref().unwrap(), "Programmed");
    assert_eq!(
        (programmed.status.as_str(), programmed.reason.as_str()),
        ("False", "AddressNotAssigned")
    );
}

#[test]
fn one_bad_rule_is_dropped_alone() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "mixed",
            "  parentRefs: [{name: edge}]\n  rules:\n  - matches: [{path: {type: RegularExpression, value: '/(unclosed'}}]\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /ok}}]\n    backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let conditions = route_conditions(&t, RouteKind::Http, "mixed");
    assert_eq!(condition(&conditions, "Accepted").status, "True");
    let partial = condition(&conditions, "PartiallyInvalid");
    assert_eq!(
        (partial.status.as_str(), partial.reason.as_str()),
        ("True", "UnsupportedValue")
    );
    let host = &plan(&t).config.listeners[0].virtual_hosts[0];
    assert_eq!(host.rules.len(), 1);
    assert_eq!(host.rules[0].route.rule, 1, "the good rule keeps its index");
}
