//! Listeners sharing a port: precedence, mixed TLS modes, listener isolation.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn matches_follow_the_specs_precedence() {
    let yaml = format!(
        "{BASE}{}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "b-newer",
            "  parentRefs: [{name: edge}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}, {path: {type: PathPrefix, value: /api}}, {path: {type: Exact, value: /api}}]\n    backendRefs: [{name: echo, port: 8080}]"
        )
        .replace("generation: 1}", "generation: 1, creationTimestamp: '2026-01-02T00:00:00Z'}"),
        route(
            "a-older",
            "  parentRefs: [{name: edge}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x, value: y}]}, {path: {type: PathPrefix, value: /api}}]\n    backendRefs: [{name: echo, port: 8080}]"
        )
        .replace("generation: 1}", "generation: 1, creationTimestamp: '2026-01-01T00:00:00Z'}")
    );
    let t = translate(&snapshot(&yaml));
    let host = &plan(&t).config.listeners[0].virtual_hosts[0];
    let order: Vec<(String, String, usize)> = host
        .matches
        .iter()
        .map(|m| {
            let rule = &host.rules[m.rule as usize];
            let path = match &m.matcher.path {
                Some(proxy_config::PathMatch::Exact(p)) => format!("= {p}"),
                Some(proxy_config::PathMatch::PathPrefix(p)) => format!("^ {p}"),
                other => format!("{other:?}"),
            };
            (rule.route.name.clone(), path, m.matcher.headers.len())
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("b-newer".into(), "= /api".into(), 0),
            ("a-older".into(), "^ /api".into(), 1),
            ("a-older".into(), "^ /api".into(), 0),
            ("b-newer".into(), "^ /api".into(), 0),
            ("b-newer".into(), "^ /".into(), 0),
        ]
    );
}

#[test]
fn tls_terminate_and_passthrough_share_a_port_in_mixed_mode() {
    let secret = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: apps}
type: kubernetes.io/tls
data:
  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==
"#;
    let listeners = "  - name: term\n    protocol: TLS\n    port: 8883\n    hostname: t.example.com\n    tls: {mode: Terminate, certificateRefs: [{name: cert}]}\n  - name: pass\n    protocol: TLS\n    port: 8883\n    hostname: p.example.com\n    tls: {mode: Passthrough}";
    let routes = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: t, namespace: apps}
spec:
  parentRefs: [{name: edge}]
  hostnames: [t.example.com]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: p, namespace: apps}
spec:
  parentRefs: [{name: edge}]
  hostnames: [p.example.com]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
"#;
    let t = translate(&snapshot(&format!(
        "{BASE}{secret}{}{routes}",
        gateway(listeners)
    )));
    for listener in ["term", "pass"] {
        assert_eq!(
            condition(&listener_conditions(&t, listener), "Conflicted").status,
            "False"
        );
    }
    let socket = &plan(&t).config.listeners[0];
    assert_eq!(socket.protocol, Protocol::Tls);
    let modes: Vec<_> = socket
        .tls_routes
        .iter()
        .map(|r| (r.hostnames.clone(), r.mode))
        .collect();
    assert_eq!(
        modes,
        vec![
            (
                vec!["p.example.com".to_owned()],
                Some(proxy_config::TlsMode::Passthrough)
            ),
            (
                vec!["t.example.com".to_owned()],
                Some(proxy_config::TlsMode::Terminate)
            ),
        ]
    );
    proxy_config::validate(&proxy_config::ConfigDocument::new(
        1,
        plan(&t).config.clone(),
    ))
    .expect("valid");
}

#[test]
fn https_listeners_each_own_a_host_so_misdirected_requests_get_421() {
    let secret = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: apps}
type: kubernetes.io/tls
data:
  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==
"#;
    let listeners = "  - {name: any, protocol: HTTPS, port: 443, tls: {certificateRefs: [{name: cert}]}}\n  - {name: second, protocol: HTTPS, port: 443, hostname: second.example, tls: {certificateRefs: [{name: cert}]}}";
    let yaml = format!(
        "{BASE}{secret}{}{}",
        gateway(listeners),
        route(
            "first",
            "  parentRefs: [{name: edge, sectionName: any}]\n  hostnames: [first.example, second.example]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let hosts: Vec<(Vec<String>, String, usize)> = plan(&t).config.listeners[0]
        .virtual_hosts
        .iter()
        .map(|h| (h.hostnames.clone(), h.source.clone(), h.rules.len()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            (vec![], "any".to_owned(), 0),
            (vec!["first.example".to_owned()], "any".to_owned(), 1),
            // second.example belongs to its own listener: the route attached
            // to the catch-all one does not serve it (listener isolation).
            (vec!["second.example".to_owned()], "second".to_owned(), 0),
        ]
    );
}
