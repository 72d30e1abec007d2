//! Table tests of translation: cluster objects as YAML in, config and
//! statuses out. No cluster: the snapshot is built from the documents.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pretty_assertions::assert_eq;
use proptest::prelude::*;
use proxy_config::{BackendTarget, Protocol};

use super::*;
use crate::snapshot::{ServedKinds, key_of};

/// Builds a snapshot from multi-document YAML, by `kind`.
fn snapshot(yaml: &str) -> Snapshot {
    let mut snapshot = Snapshot {
        served: ServedKinds::all(),
        ..Snapshot::default()
    };
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(document).expect("yaml");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().expect("kind").to_owned();
        let json: serde_json::Value = serde_json::to_value(&value).expect("json");
        let parse = |json: serde_json::Value| json;
        let json = parse(json);
        match kind.as_str() {
            "GatewayClass" => snapshot
                .gateway_classes
                .push(serde_json::from_value(json).expect("class")),
            "Gateway" => snapshot
                .gateways
                .push(serde_json::from_value(json).expect("gateway")),
            "HTTPRoute" => snapshot
                .http_routes
                .push(serde_json::from_value(json).expect("route")),
            "GRPCRoute" => snapshot
                .grpc_routes
                .push(serde_json::from_value(json).expect("route")),
            "TLSRoute" => snapshot
                .tls_routes
                .push(serde_json::from_value(json).expect("route")),
            "TCPRoute" => snapshot
                .tcp_routes
                .push(serde_json::from_value(json).expect("route")),
            "UDPRoute" => snapshot
                .udp_routes
                .push(serde_json::from_value(json).expect("route")),
            "ReferenceGrant" => snapshot
                .reference_grants
                .push(serde_json::from_value(json).expect("grant")),
            "BackendTLSPolicy" => snapshot
                .backend_tls_policies
                .push(serde_json::from_value(json).expect("policy")),
            "ProxyConfig" => {
                let config: crds::ProxyConfig = serde_json::from_value(json).expect("proxyconfig");
                snapshot
                    .proxy_configs
                    .insert(key_of(&config.metadata), config);
            }
            "Service" => {
                let service: Service = serde_json::from_value(json).expect("service");
                snapshot.services.insert(key_of(&service.metadata), service);
            }
            "EndpointSlice" => {
                let slice: EndpointSlice = serde_json::from_value(json).expect("slice");
                let namespace = slice.metadata.namespace.clone().unwrap_or_default();
                let service =
                    slice.metadata.labels.as_ref().unwrap()["kubernetes.io/service-name"].clone();
                snapshot
                    .endpoint_slices
                    .entry((namespace, service))
                    .or_default()
                    .push(slice);
            }
            "Secret" => {
                let secret: Secret = serde_json::from_value(json).expect("secret");
                snapshot.secrets.insert(key_of(&secret.metadata), secret);
            }
            "ConfigMap" => {
                let map: ConfigMap = serde_json::from_value(json).expect("configmap");
                snapshot.config_maps.insert(key_of(&map.metadata), map);
            }
            "Namespace" => {
                let namespace: Namespace = serde_json::from_value(json).expect("namespace");
                let name = namespace.metadata.name.clone().unwrap();
                let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
                labels.insert("kubernetes.io/metadata.name".into(), name.clone());
                snapshot.namespaces.insert(name, labels);
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    snapshot
}

use serde::Deserialize;

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portcullis, generation: 1}
spec: {controllerName: portcullis.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {shared: "yes"}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: apps}
spec:
  ports: [{name: http, port: 8080, targetPort: 3000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: apps, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 3000}]
endpoints:
- addresses: [198.18.0.5]
  conditions: {ready: true}
- addresses: [198.18.0.6]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: team}
spec:
  ports: [{name: pg, port: 5432}]
"#;

fn gateway(listeners: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: apps, generation: 2, uid: u-1}}
spec:
  gatewayClassName: portcullis
  listeners:
{listeners}
"#
    )
}

const HTTP_LISTENER: &str = "  - {name: http, protocol: HTTP, port: 80}";

fn route(name: &str, spec: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: apps, generation: 1}}
spec:
{spec}
"#
    )
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
}

fn route_conditions(t: &Translation, kind: RouteKind, name: &str) -> Vec<Condition> {
    t.routes[&(kind, ("apps".to_owned(), name.to_owned()))][0]
        .conditions
        .clone()
}

fn listener_conditions(t: &Translation, listener: &str) -> Vec<Condition> {
    let plan = &t.gateways[&("apps".to_owned(), "edge".to_owned())];
    plan.status
        .listeners
        .iter()
        .flatten()
        .find(|l| l.name == listener)
        .map(|l| l.conditions.clone())
        .unwrap_or_else(|| panic!("no listener {listener}"))
}

fn plan(t: &Translation) -> &GatewayPlan {
    &t.gateways[&("apps".to_owned(), "edge".to_owned())]
}

#[test]
fn only_our_classes_are_translated_and_accepted() {
    let t = translate(&snapshot(BASE));
    assert_eq!(t.classes.keys().collect::<Vec<_>>(), vec!["portcullis"]);
    let conditions = t.classes["portcullis"].conditions.clone().unwrap();
    assert_eq!(condition(&conditions, "Accepted").status, "True");
    assert_eq!(condition(&conditions, "SupportedVersion").status, "True");
    let features: Vec<String> = t.classes["portcullis"]
        .supported_features
        .iter()
        .flatten()
        .map(|f| f.name.clone())
        .collect();
    let mut sorted = features.clone();
    sorted.sort();
    assert_eq!(features, sorted, "supported features are sorted");
    assert!(features.contains(&"HTTPRoute".to_owned()));
}

#[test]
fn a_missing_proxy_config_refuses_the_class_naming_the_field() {
    let yaml = BASE.replace(
        "spec: {controllerName: portcullis.io/gateway-controller}",
        "spec: {controllerName: portcullis.io/gateway-controller, parametersRef: {group: gateway.portcullis.io, kind: ProxyConfig, name: tuned, namespace: apps}}",
    ) + &gateway(HTTP_LISTENER);
    let t = translate(&snapshot(&yaml));
    let conditions = t.classes["portcullis"].conditions.clone().unwrap();
    let accepted = condition(&conditions, "Accepted");
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "InvalidParameters")
    );
    assert!(
        accepted.message.contains("spec.parametersRef"),
        "{}",
        accepted.message
    );
    let gateway_accepted =
        condition(plan(&t).status.conditions.as_ref().unwrap(), "Accepted").clone();
    assert_eq!(gateway_accepted.reason, "InvalidParameters");
    assert!(!plan(&t).provision);
}

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

#[test]
fn hostnames_that_do_not_meet_are_reported() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway("  - {name: http, protocol: HTTP, port: 80, hostname: '*.example.com'}"),
        route(
            "elsewhere",
            "  parentRefs: [{name: edge}]\n  hostnames: [web.example.org]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let accepted = condition(
        &route_conditions(&t, RouteKind::Http, "elsewhere"),
        "Accepted",
    )
    .clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "NoMatchingListenerHostname")
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
fn gateway_proxy_config_wins_field_by_field() {
    let yaml = BASE.replace(
        "spec: {controllerName: portcullis.io/gateway-controller}",
        "spec: {controllerName: portcullis.io/gateway-controller, parametersRef: {group: gateway.portcullis.io, kind: ProxyConfig, name: defaults, namespace: apps}}",
    ) + r#"
---
apiVersion: gateway.portcullis.io/v1alpha1
kind: ProxyConfig
metadata: {name: defaults, namespace: apps}
spec: {replicas: 2, service: {type: NodePort, annotations: {a: "1"}}}
---
apiVersion: gateway.portcullis.io/v1alpha1
kind: ProxyConfig
metadata: {name: mine, namespace: apps}
spec: {service: {annotations: {b: "2"}}, autoscaling: {maxReplicas: 5}}
"# + &gateway(HTTP_LISTENER).replace(
        "gatewayClassName: portcullis",
        "gatewayClassName: portcullis\n  infrastructure:\n    labels: {team: web}\n    parametersRef: {group: gateway.portcullis.io, kind: ProxyConfig, name: mine}",
    );
    let t = translate(&snapshot(&yaml));
    let parameters = &plan(&t).parameters;
    assert_eq!(
        parameters.spec.replicas, None,
        "the Gateway's autoscaling replaces the class's replicas"
    );
    assert_eq!(
        parameters.spec.autoscaling.as_ref().map(|a| a.max_replicas),
        Some(5)
    );
    let service = parameters.spec.service.clone().unwrap();
    assert_eq!(
        service.service_type,
        Some(crds::ServiceType::NodePort),
        "kept from the class"
    );
    assert_eq!(service.annotations.len(), 2, "maps merge");
    assert_eq!(parameters.labels["team"], "web");
}

#[test]
fn durations_parse() {
    for (text, expected) in [
        ("1s", Some(1000)),
        ("1m30s", Some(90_000)),
        ("500ms", Some(500)),
        ("1h", Some(3_600_000)),
        ("", None),
        ("1x", None),
        ("s", None),
    ] {
        assert_eq!(parse_duration_ms(text), expected, "{text}");
    }
}

fn many_routes(count: usize) -> String {
    let mut yaml = format!("{BASE}{}", gateway(HTTP_LISTENER));
    for i in 0..count {
        yaml.push_str(&route(
            &format!("r{i}"),
            &format!("  parentRefs: [{{name: edge}}]\n  hostnames: [h{}.example.com]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /p{i}}}}}]\n    backendRefs: [{{name: echo, port: 8080, weight: {}}}]", i % 3, i % 4),
        ));
    }
    yaml
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// The same objects in any order give the same config and statuses.
    #[test]
    fn translation_is_deterministic(seed in any::<u64>()) {
        let base = snapshot(&many_routes(12));
        let mut shuffled = base.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.http_routes.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = (state % (i as u64 + 1)) as usize;
            shuffled.http_routes.swap(i, j);
        }
        let a = translate(&base);
        let b = translate(&shuffled);
        prop_assert_eq!(&a, &b);
        let plan = &a.gateways[&("apps".to_owned(), "edge".to_owned())];
        prop_assert!(proxy_config::validate(&proxy_config::ConfigDocument::new(1, plan.config.clone())).is_ok());
        prop_assert_eq!(
            serde_json::to_vec(&plan.config).unwrap(),
            serde_json::to_vec(&b.gateways[&("apps".to_owned(), "edge".to_owned())].config).unwrap()
        );
    }
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

fn policy(name: &str, created: &str, section: Option<&str>, ca_kind: &str) -> String {
    let section = section
        .map(|s| format!(", sectionName: {s}"))
        .unwrap_or_default();
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: apps, creationTimestamp: '{created}'}}
spec:
  targetRefs: [{{group: "", kind: Service, name: echo{section}}}]
  validation:
    hostname: echo.internal
    caCertificateRefs: [{{group: "", kind: {ca_kind}, name: ca}}]
"#
    )
}

const CA: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ca, namespace: apps}
data:
  ca.crt: "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2n3\n-----END CERTIFICATE-----\n"
"#;

fn policy_conditions(t: &Translation, name: &str) -> Vec<Condition> {
    t.policies[&("apps".to_owned(), name.to_owned())]
        .first()
        .unwrap_or_else(|| panic!("no ancestor status for {name}"))
        .conditions
        .clone()
}

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

#[test]
fn gateway_addresses_of_unsupported_types_or_too_many_are_reported() {
    let with = |addresses: &str| {
        let yaml = format!(
            "{BASE}{}",
            gateway(HTTP_LISTENER).replace(
                "gatewayClassName: portcullis",
                &format!("gatewayClassName: portcullis\n  addresses: {addresses}")
            )
        );
        translate(&snapshot(&yaml))
    };
    let t = with("[{type: test/fake, value: x}]");
    let accepted = condition(plan(&t).status.conditions.as_ref().unwrap(), "Accepted").clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "UnsupportedAddress")
    );
    let t = with("[{value: 198.19.1.250}, {value: 198.19.0.209}]");
    let programmed = condition(plan(&t).status.conditions.as_ref().unwrap(), "Programmed").clone();
    assert_eq!(programmed.reason, "AddressNotUsable");
    let t = with("[{value: 198.19.0.209}]");
    assert_eq!(plan(&t).requested_address.as_deref(), Some("198.19.0.209"));
}

const SERVER_CERT: &str = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: apps}
type: kubernetes.io/tls
data:
  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==
"#;

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

/// Two Gateways in `apps`: `edge` sends to `echo`, `side` to `api`, and one
/// route is attached to both.
fn two_gateways() -> Snapshot {
    let side = gateway(HTTP_LISTENER)
        .replace("name: edge", "name: side")
        .replace("uid: u-1", "uid: u-2");
    let yaml = format!(
        "{BASE}{}{side}{}{}{}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: apps}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n",
        gateway(HTTP_LISTENER),
        route(
            "to-echo",
            "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        ),
        route(
            "to-api",
            "  parentRefs: [{name: side}]\n  rules:\n  - backendRefs: [{name: api, port: 8080}]"
        ),
        route(
            "both",
            "  parentRefs: [{name: edge}, {name: side}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /both}}]\n    backendRefs: [{name: api, port: 8080}]"
        ),
    );
    snapshot(&yaml)
}

fn slice(service: &str, index: usize, endpoints: &[(u8, bool)]) -> EndpointSlice {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("{service}-{index}"),
            "namespace": "apps",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 3000}],
        "endpoints": endpoints.iter().map(|(host, ready)| serde_json::json!({
            "addresses": [format!("198.18.2.{host}")],
            "conditions": {"ready": ready},
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[test]
fn an_endpoint_change_retranslates_only_the_gateways_that_use_the_service() {
    let before = two_gateways();
    let previous = translate(&before);
    let mut after = before.clone();
    after.endpoint_slices.insert(
        ("apps".into(), "echo".into()),
        vec![slice("echo", 0, &[(7, true), (8, true)])],
    );
    let changed = changed_services(&before.endpoint_slices, &after.endpoint_slices);
    assert_eq!(changed, BTreeSet::from([("apps".into(), "echo".into())]));
    assert_eq!(
        gateways_using(&previous, &changed),
        BTreeSet::from([("apps".into(), "edge".into())]),
        "side never sends to echo"
    );
    let fast = translate_endpoint_change(&after, &previous, &changed);
    assert_eq!(fast, translate(&after));
    let edge = &fast.gateways[&("apps".to_owned(), "edge".to_owned())];
    assert_eq!(
        edge.config.backends["apps/echo:8080/Http1"].endpoints.len(),
        2
    );
    assert_ne!(
        edge.config_hash,
        previous.gateways[&("apps".to_owned(), "edge".to_owned())].config_hash
    );
    assert_eq!(
        fast.gateways[&("apps".to_owned(), "side".to_owned())],
        previous.gateways[&("apps".to_owned(), "side".to_owned())]
    );
    assert_eq!(
        translate_endpoint_change(&before, &previous, &BTreeSet::new()),
        previous,
        "no changed Service, nothing to do"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever happens to the endpoints, the fast path agrees with a full
    /// translation of the same snapshot.
    #[test]
    fn the_endpoint_fast_path_agrees_with_a_full_translation(
        echo in proptest::collection::vec(proptest::collection::vec((0u8..6, any::<bool>()), 0..4), 0..3),
        api in proptest::collection::vec(proptest::collection::vec((0u8..6, any::<bool>()), 0..4), 0..3),
    ) {
        let before = two_gateways();
        let previous = translate(&before);
        let mut after = before.clone();
        for (service, slices) in [("echo", &echo), ("api", &api)] {
            let key = ("apps".to_owned(), service.to_owned());
            if slices.is_empty() {
                after.endpoint_slices.remove(&key);
            } else {
                after.endpoint_slices.insert(
                    key,
                    slices.iter().enumerate().map(|(i, e)| slice(service, i, e)).collect(),
                );
            }
        }
        let changed = changed_services(&before.endpoint_slices, &after.endpoint_slices);
        prop_assert_eq!(translate_endpoint_change(&after, &previous, &changed), translate(&after));
    }
}
