//! ProxyConfig references and their merge.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

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
