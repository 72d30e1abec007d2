use std::path::Path;

use kube::core::cel::Validator;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::*;

#[test]
fn committed_yaml_is_generated_from_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed,
        crd_yaml().expect("yaml"),
        "{} is stale: run `cargo run -p crds --bin crdgen` (or `make crds`)",
        path.display()
    );
}

#[test]
fn crd_is_namespaced_v1alpha1_with_status() {
    let crd = ProxyConfig::crd();
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
}

#[test]
fn every_field_has_a_description() {
    let crd = serde_json::to_value(ProxyConfig::crd()).expect("json");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut missing = Vec::new();
    undocumented(schema, "spec", &mut missing);
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "fields without a description"
    );
}

/// Our own fields (not the embedded Kubernetes types, documented upstream)
/// that lack a description.
fn undocumented(schema: &Value, path: &str, missing: &mut Vec<String>) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (name, property) in properties {
        let field = format!("{path}.{name}");
        if property["description"].as_str().is_none_or(str::is_empty) {
            missing.push(field.clone());
        }
        let embedded = [
            "resources",
            "env",
            "tolerations",
            "affinity",
            "topologySpreadConstraints",
            "imagePullSecrets",
            "minAvailable",
            "maxUnavailable",
        ];
        if !embedded.contains(&name.as_str()) {
            undocumented(property, &field, missing);
        }
    }
}

fn validate(spec: Value) -> Result<(), String> {
    let crd = serde_json::to_value(ProxyConfig::crd()).expect("json");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let object = json!({
        "apiVersion": "gateway.portcullis.io/v1alpha1",
        "kind": "ProxyConfig",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": spec,
    });
    Validator::new()
        .validate(schema, &object, None)
        .map_err(|errors| errors.to_string())
}

#[test]
fn cel_rules_accept_valid_and_reject_invalid_combinations() {
    let cases = [
        ("empty", json!({}), None),
        ("replicas", json!({"replicas": 3}), None),
        (
            "autoscaling",
            json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}}),
            None,
        ),
        (
            "replicas with autoscaling",
            json!({"replicas": 3, "autoscaling": {"maxReplicas": 5}}),
            Some("mutually exclusive"),
        ),
        (
            "min above max",
            json!({"autoscaling": {"minReplicas": 6, "maxReplicas": 5}}),
            Some("minReplicas must not exceed maxReplicas"),
        ),
        (
            "pdb min",
            json!({"podDisruptionBudget": {"minAvailable": 1}}),
            None,
        ),
        (
            "pdb percent",
            json!({"podDisruptionBudget": {"maxUnavailable": "50%"}}),
            None,
        ),
        (
            "pdb both",
            json!({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}),
            Some("exactly one"),
        ),
        (
            "pdb none",
            json!({"podDisruptionBudget": {}}),
            Some("exactly one"),
        ),
        (
            "lb class on LoadBalancer",
            json!({"service": {"type": "LoadBalancer", "loadBalancerClass": "metallb"}}),
            None,
        ),
        (
            "lb class on NodePort",
            json!({"service": {"type": "NodePort", "loadBalancerClass": "metallb"}}),
            Some("loadBalancerClass applies to type LoadBalancer only"),
        ),
        (
            "source ranges on ClusterIP",
            json!({"service": {"type": "ClusterIP", "loadBalancerSourceRanges": ["198.18.0.0/15"]}}),
            Some("loadBalancerSourceRanges applies"),
        ),
        (
            "traffic policy on ClusterIP",
            json!({"service": {"type": "ClusterIP", "externalTrafficPolicy": "Local"}}),
            Some("externalTrafficPolicy applies"),
        ),
        (
            "drain",
            json!({"shutdown": {"drainTimeout": "1m", "minDrainDuration": "5s"}}),
            None,
        ),
        (
            "min drain above timeout",
            json!({"shutdown": {"drainTimeout": "10s", "minDrainDuration": "1m"}}),
            Some("minDrainDuration must not exceed drainTimeout"),
        ),
    ];
    for (name, spec, expected_error) in cases {
        let result = validate(spec);
        match expected_error {
            None => assert_eq!(result, Ok(()), "{name}"),
            Some(fragment) => {
                let message = result.expect_err(name);
                assert!(message.contains(fragment), "{name}: {message}");
            }
        }
    }
}

#[test]
fn spec_round_trips_through_json() {
    let spec = ProxyConfigSpec {
        autoscaling: Some(Autoscaling {
            min_replicas: Some(2),
            max_replicas: 10,
            target_cpu_utilization_percentage: Some(70),
            target_memory_utilization_percentage: None,
        }),
        service: Some(ServiceSettings {
            service_type: Some(ServiceType::ClusterIp),
            ..ServiceSettings::default()
        }),
        logging: Some(Logging {
            level: Some(LogLevel::Debug),
            access_log: Some(AccessLog {
                enabled: true,
                format: Some(AccessLogFormat::Json),
            }),
        }),
        ..ProxyConfigSpec::default()
    };
    let value = serde_json::to_value(&spec).expect("json");
    assert_eq!(value["autoscaling"]["targetCPUUtilizationPercentage"], 70);
    assert_eq!(value["service"]["type"], "ClusterIP");
    assert_eq!(value["logging"]["accessLog"]["format"], "JSON");
    assert_eq!(value["logging"]["level"], "debug");
    let back: ProxyConfigSpec = serde_json::from_value(value).expect("back");
    assert_eq!(back, spec);
}
