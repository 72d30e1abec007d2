//! BackendTLSPolicy: which one applies, and what a bad one costs.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn backend_tls_policies_conflict_and_the_oldest_wins_unless_one_names_the_port() {
    let route = route(
        "web",
        "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]",
    );
    let yaml = format!(
        "{BASE}{CA}{}{route}{}{}",
        gateway(HTTP_LISTENER),
        policy("older", "2026-01-01T00:00:00Z", None, "ConfigMap"),
        policy("newer", "2026-02-01T00:00:00Z", None, "ConfigMap"),
    );
    let t = translate(&snapshot(&yaml));
    assert_eq!(
        condition(&policy_conditions(&t, "older"), "Accepted").status,
        "True"
    );
    let newer = condition(&policy_conditions(&t, "newer"), "Accepted").clone();
    assert_eq!(
        (newer.status.as_str(), newer.reason.as_str()),
        ("False", "Conflicted")
    );
    let backend = plan(&t).config.backends.values().next().expect("backend");
    assert_eq!(
        backend.tls.as_ref().map(|tls| tls.server_name.as_str()),
        Some("echo.internal")
    );

    // A policy naming the port wins over the whole-Service ones, whatever its age.
    let yaml = yaml + &policy("port", "2026-03-01T00:00:00Z", Some("http"), "ConfigMap");
    let t = translate(&snapshot(&yaml));
    assert_eq!(
        condition(&policy_conditions(&t, "port"), "Accepted").status,
        "True"
    );
}

#[test]
fn a_backend_tls_policy_with_a_ca_of_the_wrong_kind_is_refused_and_its_backend_gets_500() {
    let route = route(
        "web",
        "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]",
    );
    let yaml = format!(
        "{BASE}{}{route}{}",
        gateway(HTTP_LISTENER),
        policy("bad", "2026-01-01T00:00:00Z", None, "Unknown")
    );
    let t = translate(&snapshot(&yaml));
    let conditions = policy_conditions(&t, "bad");
    let accepted = condition(&conditions, "Accepted");
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "NoValidCACertificate")
    );
    assert_eq!(condition(&conditions, "ResolvedRefs").reason, "InvalidKind");
    let rule = &plan(&t).config.listeners[0].virtual_hosts[0].rules[0];
    assert!(matches!(rule.backends[0].target, BackendTarget::Invalid(_)));
}
