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

#[test]
fn a_rules_retry_reaches_the_proxy_with_the_specs_meaning() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "flaky",
            "  parentRefs: [{name: edge}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /codes}}]\n    retry: {codes: [503, 500, 503], attempts: 3, backoff: 100ms}\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /defaults}}]\n    retry: {}\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /never}}]\n    retry: {attempts: 0, codes: [500]}\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /many}}]\n    retry: {attempts: 1000}\n    backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let host = &plan(&t).config.listeners[0].virtual_hosts[0];
    let retry_of = |rule: u32| {
        host.rules
            .iter()
            .find(|r| r.route.rule == rule)
            .map(|r| r.retry.clone())
            .expect("rule")
    };
    assert_eq!(
        retry_of(0),
        Some(proxy_config::Retry {
            attempts: 3,
            status_codes: vec![500, 503],
            backoff_ms: 100,
            on_connect_failure: true,
        }),
        "attempts are retries beyond the first; codes sorted once"
    );
    assert_eq!(
        retry_of(1),
        Some(proxy_config::Retry {
            attempts: crate::translate::rules::DEFAULT_RETRY_ATTEMPTS,
            status_codes: vec![],
            backoff_ms: crate::translate::rules::DEFAULT_RETRY_BACKOFF_MS,
            on_connect_failure: true,
        }),
        "no codes: connection errors and backend timeouts only"
    );
    assert_eq!(retry_of(2), None, "attempts 0 is no retry");
    assert_eq!(
        retry_of(3).map(|r| r.attempts),
        Some(crate::translate::rules::MAX_RETRY_ATTEMPTS)
    );
    let conditions = route_conditions(&t, RouteKind::Http, "flaky");
    let accepted = condition(&conditions, "Accepted");
    assert_eq!(accepted.status, "True");
    assert!(
        accepted
            .message
            .contains("rule 3: retry.attempts 1000 is capped at 100."),
        "{}",
        accepted.message
    );
    proxy_config::validate(&proxy_config::ConfigDocument::new(
        plan(&t).generation,
        plan(&t).config.clone(),
    ))
    .expect("the compiled config is valid");
}

#[test]
fn fields_not_implemented_are_named_in_status_and_auth_fails_closed() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "sticky",
            "  parentRefs: [{name: edge}]\n  useDefaultGateways: All\n  rules:\n  - name: cart\n    sessionPersistence: {sessionName: cart, type: Cookie}\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /admin}}]\n    filters:\n    - type: ExternalAuth\n      externalAuth: {protocol: HTTP, backendRef: {name: auth, port: 9000}}\n    backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let conditions = route_conditions(&t, RouteKind::Http, "sticky");
    let accepted = condition(&conditions, "Accepted");
    assert_eq!(accepted.status, "True", "the route still serves");
    assert!(
        !accepted.message.contains("sessionPersistence"),
        "sessions are honoured: {}",
        accepted.message
    );
    for field in ["spec.useDefaultGateways", "filter ExternalAuth"] {
        assert!(
            accepted.message.contains(field),
            "{field}: {}",
            accepted.message
        );
    }
    let host = &plan(&t).config.listeners[0].virtual_hosts[0];
    let admin = host
        .rules
        .iter()
        .find(|r| r.route.rule == 1)
        .expect("the /admin rule is kept, not dropped to a wider one");
    assert!(
        matches!(
            admin.filters.as_slice(),
            [proxy_config::HttpFilter::DirectResponse(d)] if d.status_code == 500
        ),
        "{:?}",
        admin.filters
    );
}

#[test]
fn session_persistence_reaches_the_proxy_with_defaults_and_notes() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "sticky",
            "  parentRefs: [{name: edge}]\n  rules:\n  - name: cart\n    matches: [{path: {type: PathPrefix, value: /cart}}]\n    sessionPersistence: {sessionName: cart, absoluteTimeout: 1h, idleTimeout: 1500ms, cookieConfig: {lifetimeType: Permanent}}\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: Exact, value: /a}}, {path: {type: Exact, value: /b}}]\n    sessionPersistence: {type: Header, sessionName: 'bad name', idleTimeout: soon}\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /p}}]\n    sessionPersistence: {cookieConfig: {lifetimeType: Permanent}}\n    backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let host = &plan(&t).config.listeners[0].virtual_hosts[0];
    let session_of = |rule: u32| {
        host.rules
            .iter()
            .find(|r| r.route.rule == rule)
            .and_then(|r| r.session_persistence.clone())
            .expect("a session")
    };
    assert_eq!(
        session_of(0),
        proxy_config::SessionPersistence {
            name: "cart".into(),
            carrier: proxy_config::SessionCarrier::Cookie,
            absolute_timeout_s: Some(3_600),
            idle_timeout_s: Some(2),
            permanent: true,
            path: Some("/cart".into()),
        }
    );
    let header = session_of(1);
    assert_eq!(header.carrier, proxy_config::SessionCarrier::Header);
    assert!(header.name.starts_with("portcullis-session-"), "{header:?}");
    assert_eq!(
        (header.path.as_deref(), header.idle_timeout_s),
        (Some("/"), None)
    );
    let fallback = session_of(2);
    assert!(
        !fallback.permanent,
        "no Max-Age without an absolute timeout"
    );
    assert_ne!(fallback.name, header.name, "one default name per rule");

    let conditions = route_conditions(&t, RouteKind::Http, "sticky");
    let accepted = condition(&conditions, "Accepted");
    assert_eq!(accepted.status, "True");
    for note in [
        "rule 1: sessionPersistence.sessionName \"bad name\" is not a valid cookie or header name",
        "rule 1: sessionPersistence.idleTimeout \"soon\" is not a positive Gateway API duration",
        "rule 2: sessionPersistence.cookieConfig.lifetimeType Permanent needs an absoluteTimeout",
    ] {
        assert!(
            accepted.message.contains(note),
            "{note}: {}",
            accepted.message
        );
    }
    proxy_config::validate(&proxy_config::ConfigDocument::new(
        1,
        plan(&t).config.clone(),
    ))
    .expect("the compiled config is valid");
}
