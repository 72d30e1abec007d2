//! Listeners: conflicts, kinds, client validation, the Gateway's own references.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn listener_conflicts_and_kinds_get_the_specs_reasons() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway(
            "  - {name: http, protocol: HTTP, port: 80}\n  - {name: tcp, protocol: TCP, port: 80}\n  - {name: web, protocol: HTTP, port: 8080}"
        ),
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: db, namespace: apps}
spec:
  parentRefs: [{name: edge, sectionName: web}]
  rules:
  - backendRefs: [{name: echo, port: 8080}]
"#
    );
    let t = translate(&snapshot(&yaml));
    for listener in ["http", "tcp"] {
        let conflicted = condition(&listener_conditions(&t, listener), "Conflicted").clone();
        assert_eq!(
            (conflicted.status.as_str(), conflicted.reason.as_str()),
            ("True", "ProtocolConflict")
        );
    }
    let conditions = route_conditions(&t, RouteKind::Tcp, "db");
    let accepted = condition(&conditions, "Accepted");
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "NotAllowedByListeners")
    );
    // The valid listener is still served; the conflicted ones are not.
    assert_eq!(
        plan(&t)
            .config
            .listeners
            .iter()
            .map(|l| l.port)
            .collect::<Vec<_>>(),
        vec![8080]
    );
}

#[test]
fn frontend_client_validation_with_no_usable_ca_refuses_only_that_listener() {
    let listeners = "  - {name: good, protocol: HTTPS, port: 443, tls: {certificateRefs: [{name: cert}]}}\n  - {name: missing, protocol: HTTPS, port: 7443, tls: {certificateRefs: [{name: cert}]}}\n  - {name: kind, protocol: HTTPS, port: 8443, tls: {certificateRefs: [{name: cert}]}}";
    let tls = "gatewayClassName: portcullis\n  tls:\n    frontend:\n      default:\n        validation:\n          mode: AllowInsecureFallback\n          caCertificateRefs: [{group: '', kind: ConfigMap, name: ca}]\n      perPort:\n      - port: 7443\n        tls: {validation: {caCertificateRefs: [{group: '', kind: ConfigMap, name: nope}]}}\n      - port: 8443\n        tls: {validation: {caCertificateRefs: [{group: '', kind: Service, name: echo}]}}";
    let yaml = format!(
        "{BASE}{CA}{SERVER_CERT}{}",
        gateway(listeners).replace("gatewayClassName: portcullis", tls)
    );
    let t = translate(&snapshot(&yaml));
    assert_eq!(
        condition(&listener_conditions(&t, "good"), "Accepted").status,
        "True"
    );
    for (listener, reason) in [
        ("missing", "InvalidCACertificateRef"),
        ("kind", "InvalidCACertificateKind"),
    ] {
        let conditions = listener_conditions(&t, listener);
        let resolved = condition(&conditions, "ResolvedRefs");
        assert_eq!(
            (resolved.status.as_str(), resolved.reason.as_str()),
            ("False", reason),
            "{listener}"
        );
        let accepted = condition(&conditions, "Accepted");
        assert_eq!(
            (accepted.status.as_str(), accepted.reason.as_str()),
            ("False", "NoValidCACertificate")
        );
    }
    let sockets = &plan(&t).config.listeners;
    assert_eq!(sockets.len(), 1, "only the valid listener is served");
    let validation = sockets[0]
        .tls
        .as_ref()
        .and_then(|t| t.client_validation.clone())
        .expect("validation");
    assert!(validation.allow_missing);
    assert_eq!(validation.ca_bundles, vec!["configmap/apps/ca"]);
}

#[test]
fn the_backend_client_certificate_is_presented_to_tls_backends() {
    let route = route(
        "web",
        "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]",
    );
    let gw = |reference: &str| {
        gateway(HTTP_LISTENER).replace(
            "gatewayClassName: portcullis",
            &format!("gatewayClassName: portcullis\n  tls:\n    backend:\n      clientCertificateRef: {reference}"),
        )
    };
    let yaml = format!(
        "{BASE}{CA}{SERVER_CERT}{}{route}{}",
        gw("{name: cert}"),
        policy("p", "2026-01-01T00:00:00Z", None, "ConfigMap")
    );
    let t = translate(&snapshot(&yaml));
    assert_eq!(
        condition(plan(&t).status.conditions.as_ref().unwrap(), "ResolvedRefs").status,
        "True"
    );
    let backend = plan(&t).config.backends.values().next().expect("backend");
    assert_eq!(
        backend
            .tls
            .as_ref()
            .and_then(|t| t.client_certificate.clone())
            .as_deref(),
        Some("secret/apps/cert")
    );

    for (reference, reason) in [
        ("{name: absent}", "InvalidClientCertificateRef"),
        ("{name: cert, namespace: team}", "RefNotPermitted"),
    ] {
        let yaml = format!("{BASE}{CA}{SERVER_CERT}{}{route}", gw(reference));
        let t = translate(&snapshot(&yaml));
        let conditions = plan(&t).status.conditions.clone().unwrap();
        let resolved = condition(&conditions, "ResolvedRefs");
        assert_eq!(
            (resolved.status.as_str(), resolved.reason.as_str()),
            ("False", reason)
        );
        assert_eq!(condition(&conditions, "Accepted").status, "True");
    }
}
