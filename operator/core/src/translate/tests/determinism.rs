//! The same objects in any order give the same config and statuses: every
//! object kind of the snapshot is shuffled.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use proptest::prelude::*;

use super::*;

/// A snapshot with objects of every kind: two Gateways (HTTP, HTTPS, TLS,
/// TCP and UDP listeners), routes of every kind, grants, policies that
/// conflict, and Services spread over several EndpointSlices.
fn everything() -> Snapshot {
    let mut yaml = format!("{BASE}{CA}{SERVER_CERT}");
    yaml.push_str(&gateway(
        "  - {name: http, protocol: HTTP, port: 80}\n  - {name: https, protocol: HTTPS, port: 443, hostname: '*.example.com', tls: {certificateRefs: [{name: cert}]}}\n  - {name: tls, protocol: TLS, port: 8443, tls: {mode: Passthrough}}\n  - {name: tcp, protocol: TCP, port: 5432}\n  - {name: udp, protocol: UDP, port: 5353}",
    ).replace("gatewayClassName: portcullis", "gatewayClassName: portcullis\n  allowedListeners: {namespaces: {from: Same}}"));
    // ListenerSets created in the same second, so that their order comes
    // from their names alone, and whose hostnames conflict.
    for (i, host) in ["s0", "s1", "s0"].iter().enumerate() {
        yaml.push_str(&format!(
            r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: set-{i}, namespace: apps, creationTimestamp: '2026-01-01T00:00:00Z'}}
spec:
  parentRef: {{name: edge}}
  listeners:
  - {{name: http, protocol: HTTP, port: 80, hostname: {host}.example.net}}
  - {{name: https, protocol: HTTPS, port: 443, hostname: {host}.example.net, tls: {{certificateRefs: [{{name: cert}}]}}}}
"#
        ));
        yaml.push_str(&route(
            &format!("to-set-{i}"),
            &format!("  parentRefs: [{{kind: ListenerSet, name: set-{}}}]\n  rules:\n  - backendRefs: [{{name: echo, port: 8080}}]", i % 2),
        ));
    }
    yaml.push_str(
        &gateway("  - {name: http, protocol: HTTP, port: 8080, allowedRoutes: {namespaces: {from: All}}}")
            .replace("name: edge", "name: side")
            .replace("uid: u-1", "uid: u-2"),
    );
    for i in 0..8 {
        yaml.push_str(&route(
            &format!("r{i}"),
            &format!(
                "  parentRefs: [{{name: edge}}, {{name: side}}]\n  hostnames: [h{}.example.com]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /p{}}}}}]\n    backendRefs: [{{name: echo, port: 8080, weight: {}}}, {{name: db, namespace: team, port: 5432}}]",
                i % 3,
                i % 4,
                i % 5
            ),
        ));
    }
    for (i, created) in ["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"]
        .iter()
        .enumerate()
    {
        yaml.push_str(&format!(
            r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: g{i}, namespace: apps, creationTimestamp: '{created}'}}
spec:
  parentRefs: [{{name: edge, sectionName: https}}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{{method: {{service: echo.Echo, method: Say{i}}}}}]
    backendRefs: [{{name: echo, port: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: t{i}, namespace: apps, creationTimestamp: '{created}'}}
spec:
  parentRefs: [{{name: edge, sectionName: tls}}]
  hostnames: [t{i}.example.com]
  rules: [{{backendRefs: [{{name: echo, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: c{i}, namespace: apps, creationTimestamp: '{created}'}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: echo, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {{name: u{i}, namespace: apps, creationTimestamp: '{created}'}}
spec:
  parentRefs: [{{name: edge, sectionName: udp}}]
  rules: [{{backendRefs: [{{name: dns, port: 53}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: grant-{i}, namespace: team}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}}]
  to: [{{group: "", kind: Service, name: db}}]
"#
        ));
        yaml.push_str(&policy(&format!("p{i}"), created, None, "ConfigMap"));
        // Two traffic policies on one Service created in the same second:
        // the name decides which wins.
        yaml.push_str(&format!(
            r#"
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: x{i}, namespace: apps, creationTimestamp: '2026-01-01T00:00:00Z'}}
spec:
  targetRefs: [{{group: "", kind: Service, name: echo}}]
  retryConstraint: {{budget: {{percent: {}}}}}
  sessionPersistence: {{sessionName: s{i}}}
"#,
            10 + i
        ));
    }
    yaml.push_str(
        r#"
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: apps}
spec:
  ports: [{name: dns, port: 53, protocol: UDP}]
"#,
    );
    let mut snapshot = snapshot(&yaml);
    let slices: Vec<EndpointSlice> = (0..4)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("echo-{i}"), "namespace": "apps"},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 3000}],
                "endpoints": [{"addresses": [format!("198.18.3.{}", 10 - i)], "conditions": {"ready": true}}],
            }))
            .unwrap()
        })
        .collect();
    snapshot
        .endpoint_slices
        .insert(ObjectKey::new("apps", "echo"), slices);
    snapshot
}

/// A xorshift permutation of `list`, from `state`.
fn shuffle<T>(list: &mut [T], state: &mut u64) {
    for i in (1..list.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let j = (*state % (i as u64 + 1)) as usize;
        list.swap(i, j);
    }
}

#[test]
fn the_fixture_holds_every_kind_and_they_all_attach() {
    let base = everything();
    assert!(base.gateway_classes.len() > 1 && base.gateways.len() > 1);
    for (kind, count) in [
        ("http", base.http_routes.len()),
        ("grpc", base.grpc_routes.len()),
        ("tls", base.tls_routes.len()),
        ("tcp", base.tcp_routes.len()),
        ("udp", base.udp_routes.len()),
        ("grants", base.reference_grants.len()),
        ("policies", base.backend_tls_policies.len()),
        ("traffic policies", base.backend_traffic_policies.len()),
        ("listener sets", base.listener_sets.len()),
    ] {
        assert!(count > 1, "{kind}: {count}");
    }
    let t = translate(&base);
    for (route, parents) in &t.routes {
        for parent in parents {
            let accepted = condition(&parent.conditions, "Accepted");
            assert_eq!(accepted.status, "True", "{route}: {accepted:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn translation_is_deterministic(seed in any::<u64>()) {
        let base = everything();
        let mut shuffled = base.clone();
        let mut state = seed | 1;
        shuffle(&mut shuffled.gateway_classes, &mut state);
        shuffle(&mut shuffled.gateways, &mut state);
        shuffle(&mut shuffled.http_routes, &mut state);
        shuffle(&mut shuffled.grpc_routes, &mut state);
        shuffle(&mut shuffled.tls_routes, &mut state);
        shuffle(&mut shuffled.tcp_routes, &mut state);
        shuffle(&mut shuffled.udp_routes, &mut state);
        shuffle(&mut shuffled.reference_grants, &mut state);
        shuffle(&mut shuffled.backend_tls_policies, &mut state);
        shuffle(&mut shuffled.backend_traffic_policies, &mut state);
        shuffle(&mut shuffled.listener_sets, &mut state);
        for slices in shuffled.endpoint_slices.values_mut() {
            shuffle(slices, &mut state);
        }
        let a = translate(&base);
        let b = translate(&shuffled);
        prop_assert_eq!(&a, &b);
        for (key, plan) in &a.gateways {
            prop_assert!(proxy_config::validate(&proxy_config::ConfigDocument::new(1, plan.config.clone())).is_ok());
            prop_assert_eq!(
                serde_json::to_vec(&plan.config).unwrap(),
                serde_json::to_vec(&b.gateways[key].config).unwrap()
            );
        }
    }
}
