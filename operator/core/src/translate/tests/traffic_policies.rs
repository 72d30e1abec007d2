//! XBackendTrafficPolicy: the retry budget and the sessions a Service gets,
//! which policy wins, and what a bad one costs (only itself).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;
use proxy_config::RetryBudget;

use super::*;

fn traffic_policy(name: &str, created: &str, target: &str, spec: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: {name}, namespace: apps, generation: 3, creationTimestamp: '{created}'}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {target}}}]
{spec}
"#
    )
}

fn traffic_policy_conditions(t: &Translation, name: &str) -> Vec<Condition> {
    t.traffic_policies[&ObjectKey::new("apps", name)]
        .first()
        .unwrap_or_else(|| panic!("no ancestor status for {name}"))
        .conditions
        .clone()
}

const TWO_RULES: &str = "  parentRefs: [{name: edge}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /shop}}]\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /own}}]\n    sessionPersistence: {sessionName: own}\n    backendRefs: [{name: echo, port: 8080}]";

#[test]
fn a_traffic_policy_gives_its_service_a_retry_budget_and_sessions_to_rules_without_their_own() {
    let yaml = format!(
        "{BASE}{}{}{}{}{}",
        gateway(HTTP_LISTENER),
        route("web", TWO_RULES),
        traffic_policy(
            "budget",
            "2026-01-01T00:00:00Z",
            "echo",
            "  retryConstraint:\n    budget: {percent: 30, interval: 20s}\n  sessionPersistence: {sessionName: svc, idleTimeout: 10m}",
        ),
        traffic_policy(
            "newer",
            "2026-02-01T00:00:00Z",
            "echo",
            "  retryConstraint:\n    budget: {percent: 90}",
        ),
        traffic_policy(
            "unused",
            "2026-01-01T00:00:00Z",
            "nobody",
            "  retryConstraint: {}",
        ),
    );
    let t = translate(&snapshot(&yaml));
    let accepted = condition(&traffic_policy_conditions(&t, "budget"), "Accepted").clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.observed_generation),
        ("True", Some(3))
    );
    let newer = condition(&traffic_policy_conditions(&t, "newer"), "Accepted").clone();
    assert_eq!(
        (newer.status.as_str(), newer.reason.as_str()),
        ("False", "Conflicted")
    );
    assert!(
        newer.message.contains("XBackendTrafficPolicy apps/budget"),
        "names the winner: {}",
        newer.message
    );
    assert_eq!(
        t.traffic_policies[&ObjectKey::new("apps", "unused")],
        vec![],
        "a policy no Gateway uses has no ancestor"
    );
    let ancestor = &t.traffic_policies[&ObjectKey::new("apps", "budget")][0].ancestor_ref;
    assert_eq!(
        (ancestor.kind.as_deref(), ancestor.name.as_str()),
        (Some("Gateway"), "edge")
    );

    let plan = plan(&t);
    assert_eq!(
        plan.config.backends["apps/echo:8080/Http1"].retry_budget,
        Some(RetryBudget {
            percent: 30,
            interval_ms: 20_000,
            min_retries: 10,
            min_interval_ms: 1_000,
        }),
        "the budget as written, minRetryRate by default"
    );
    let rules = &plan.config.listeners[0].virtual_hosts[0].rules;
    let session_of = |rule: u32| {
        rules
            .iter()
            .find(|r| r.route.rule == rule)
            .and_then(|r| r.session_persistence.clone())
            .expect("a session")
    };
    let service_wide = session_of(0);
    assert_eq!(
        (
            service_wide.name.as_str(),
            service_wide.path.as_deref(),
            service_wide.idle_timeout_s
        ),
        ("svc", None, Some(600)),
        "the policy's session, with no cookie Path (GEP-1619)"
    );
    let own = session_of(1);
    assert_eq!(
        (own.name.as_str(), own.path.as_deref(), own.idle_timeout_s),
        ("own", Some("/own"), None),
        "the rule's own sessionPersistence wins"
    );
    proxy_config::validate(&proxy_config::ConfigDocument::new(
        plan.generation,
        plan.config.clone(),
    ))
    .expect("the compiled config is valid");
}

#[test]
fn a_traffic_policy_the_proxy_cannot_enforce_is_refused_alone_and_the_route_keeps_serving() {
    let yaml = format!(
        "{BASE}{}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "web",
            "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        ),
        traffic_policy(
            "slow",
            "2026-01-01T00:00:00Z",
            "echo",
            "  retryConstraint:\n    minRetryRate: {count: 5, interval: 2h}\n  sessionPersistence: {sessionName: svc}",
        ),
    );
    let t = translate(&snapshot(&yaml));
    let accepted = condition(&traffic_policy_conditions(&t, "slow"), "Accepted").clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "Invalid")
    );
    assert!(
        accepted
            .message
            .contains("retryConstraint.minRetryRate.interval \"2h\""),
        "{}",
        accepted.message
    );
    let route = route_conditions(&t, RouteKind::Http, "web");
    assert_eq!(condition(&route, "Accepted").status, "True");
    assert_eq!(condition(&route, "ResolvedRefs").status, "True");
    let plan = plan(&t);
    assert_eq!(
        plan.config.backends["apps/echo:8080/Http1"].retry_budget,
        None
    );
    let rule = &plan.config.listeners[0].virtual_hosts[0].rules[0];
    assert_eq!(
        rule.session_persistence, None,
        "nothing of a refused policy"
    );
    assert!(matches!(rule.backends[0].target, BackendTarget::Backend(_)));
}

#[test]
fn stream_routes_take_no_retry_budget() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(
            "  - {name: tcp, protocol: TCP, port: 5432, allowedRoutes: {kinds: [{kind: TCPRoute}]}}"
        ),
        traffic_policy(
            "budget",
            "2026-01-01T00:00:00Z",
            "echo",
            "  retryConstraint: {}"
        ),
    ) + "
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: stream, namespace: apps}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: echo, port: 8080}]
";
    let t = translate(&snapshot(&yaml));
    let backends = &plan(&t).config.backends;
    assert_eq!(backends.len(), 1, "the TCP backend: {backends:?}");
    assert!(backends.values().all(|b| b.retry_budget.is_none()));
    assert_eq!(
        t.traffic_policies[&ObjectKey::new("apps", "budget")],
        vec![]
    );
}
