//! Test fixtures shared by the core's tests: snapshots written as the YAML
//! a user would apply.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;

use crate::keys::ObjectKey;
use crate::snapshot::{ServedKinds, Snapshot};

/// Builds a snapshot from multi-document YAML, by `kind`.
pub fn snapshot(yaml: &str) -> Snapshot {
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
            "ListenerSet" => snapshot
                .listener_sets
                .push(serde_json::from_value(json).expect("listener set")),
            "ReferenceGrant" => snapshot
                .reference_grants
                .push(serde_json::from_value(json).expect("grant")),
            "BackendTLSPolicy" => snapshot
                .backend_tls_policies
                .push(serde_json::from_value(json).expect("policy")),
            "XBackendTrafficPolicy" => snapshot
                .backend_traffic_policies
                .push(serde_json::from_value(json).expect("traffic policy")),
            "ProxyConfig" => {
                let config: crds::ProxyConfig = serde_json::from_value(json).expect("proxyconfig");
                snapshot
                    .proxy_configs
                    .insert(ObjectKey::of(&config.metadata), config);
            }
            "Service" => {
                let service: Service = serde_json::from_value(json).expect("service");
                snapshot
                    .services
                    .insert(ObjectKey::of(&service.metadata), service);
            }
            "EndpointSlice" => {
                let slice: EndpointSlice = serde_json::from_value(json).expect("slice");
                let namespace = slice.metadata.namespace.clone().unwrap_or_default();
                let service =
                    slice.metadata.labels.as_ref().unwrap()["kubernetes.io/service-name"].clone();
                snapshot
                    .endpoint_slices
                    .entry(ObjectKey::new(namespace, service))
                    .or_default()
                    .push(slice);
            }
            "Secret" => {
                let secret: Secret = serde_json::from_value(json).expect("secret");
                snapshot
                    .secrets
                    .insert(ObjectKey::of(&secret.metadata), secret);
            }
            "ConfigMap" => {
                let map: ConfigMap = serde_json::from_value(json).expect("configmap");
                snapshot
                    .config_maps
                    .insert(ObjectKey::of(&map.metadata), map);
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

pub const BASE: &str = r#"
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

pub fn gateway(listeners: &str) -> String {
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

pub const HTTP_LISTENER: &str = "  - {name: http, protocol: HTTP, port: 80}";

pub fn route(name: &str, spec: &str) -> String {
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
