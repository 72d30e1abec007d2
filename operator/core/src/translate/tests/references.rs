//! ReferenceGrant for every cross-namespace reference.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn cross_namespace_backends_need_a_reference_grant() {
    let refusing = format!(
        "{BASE}{}{}",
        gateway(HTTP_LISTENER),
        route(
            "db",
            "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: db, namespace: team, port: 5432}]"
        )
    );
    let t = translate(&snapshot(&refusing));
    let conditions = route_conditions(&t, RouteKind::Http, "db");
    let resolved = condition(&conditions, "ResolvedRefs");
    assert_eq!(
        (resolved.status.as_str(), resolved.reason.as_str()),
        ("False", "RefNotPermitted")
    );
    assert_eq!(
        condition(&conditions, "Accepted").status,
        "True",
        "the route still attaches"
    );
    let rule = &plan(&t).config.listeners[0].virtual_hosts[0].rules[0];
    assert!(
        matches!(rule.backends[0].target, BackendTarget::Invalid(_)),
        "its share gets 500"
    );

    let granted = refusing
        + r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-apps, namespace: team}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}]
  to: [{group: "", kind: Service}]
"#;
    let t = translate(&snapshot(&granted));
    let conditions = route_conditions(&t, RouteKind::Http, "db");
    assert_eq!(condition(&conditions, "ResolvedRefs").status, "True");
}

#[test]
fn certificates_in_other_namespaces_need_a_grant() {
    let secret = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: team}
type: kubernetes.io/tls
data:
  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==
"#;
    let listener = "  - name: https\n    protocol: HTTPS\n    port: 443\n    tls: {certificateRefs: [{name: cert, namespace: team}]}";
    let yaml = format!("{BASE}{secret}{}", gateway(listener));
    let t = translate(&snapshot(&yaml));
    let resolved = condition(&listener_conditions(&t, "https"), "ResolvedRefs").clone();
    assert_eq!(
        (resolved.status.as_str(), resolved.reason.as_str()),
        ("False", "RefNotPermitted")
    );
    assert_eq!(
        condition(&listener_conditions(&t, "https"), "Programmed").status,
        "False"
    );

    let granted = yaml
        + r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: certs, namespace: team}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: apps}]
  to: [{group: "", kind: Secret, name: cert}]
"#;
    let t = translate(&snapshot(&granted));
    assert_eq!(
        condition(&listener_conditions(&t, "https"), "ResolvedRefs").status,
        "True"
    );
    let tls = plan(&t).config.listeners[0].tls.clone().expect("tls");
    assert_eq!(tls.certificates[0].certificate, "secret/team/cert");
}
