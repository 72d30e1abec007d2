#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;
use crate::translate::{ProxyParameters, ServicePort};

fn plan(spec: crds::ProxyConfigSpec) -> GatewayPlan {
    GatewayPlan {
        class: "portcullis".into(),
        uid: "uid-1".into(),
        provision: true,
        config: proxy_config::GatewayConfig::default(),
        config_hash: "h".into(),
        generation: 3,
        status: Default::default(),
        parameters: ProxyParameters {
            spec,
            labels: [("team".to_owned(), "web".to_owned())].into(),
            annotations: [("note".to_owned(), "x".to_owned())].into(),
        },
        ports: vec![ServicePort {
            name: "http-80".into(),
            port: 80,
            protocol: "TCP",
        }],
        requested_address: Some("198.19.0.99".into()),
    }
}

fn settings() -> Settings {
    Settings {
        proxy_image: "example/proxy:1".into(),
    }
}

fn find<'a>(objects: &'a [Desired], kind: &str) -> &'a serde_json::Value {
    &objects
        .iter()
        .find(|o| o.kind == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .body
}

#[test]
fn every_object_has_the_gep_1762_name_labels_and_owner() {
    let key = ("apps".to_owned(), "edge".to_owned());
    let objects = objects(&key, &plan(Default::default()), &settings());
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        vec![
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service"
        ]
    );
    for object in &objects {
        let meta = &object.body["metadata"];
        assert_eq!(meta["name"], "edge-portcullis", "{}", object.kind);
        assert_eq!(meta["namespace"], "apps");
        assert_eq!(
            meta["labels"]["gateway.networking.k8s.io/gateway-name"],
            "edge"
        );
        assert_eq!(
            meta["labels"]["gateway.networking.k8s.io/gateway-class-name"],
            "portcullis"
        );
        assert_eq!(
            meta["labels"]["team"], "web",
            "infrastructure labels propagate"
        );
        assert_eq!(
            meta["annotations"]["note"], "x",
            "infrastructure annotations propagate"
        );
        assert_eq!(meta["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
        assert_eq!(
            meta["annotations"][SPEC_HASH_ANNOTATION],
            object.hash.as_str()
        );
    }
}

#[test]
fn proxy_pods_are_restricted_v2_with_the_readiness_gate() {
    let key = ("apps".to_owned(), "edge".to_owned());
    let objects = objects(&key, &plan(Default::default()), &settings());
    let deployment = find(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        pod["readinessGates"][0]["conditionType"],
        CONFIG_APPLIED_CONDITION
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(
        pod["securityContext"].get("runAsUser").is_none(),
        "no fixed UID"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        pod["securityContext"]["sysctls"][0]["name"],
        "net.ipv4.ip_unprivileged_port_start"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "example/proxy:1");
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["args"][1], "$(POD_NAMESPACE)/edge-portcullis");
    let service = find(&objects, "Service");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(service["spec"]["loadBalancerIP"], "198.19.0.99");
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    let role = find(&objects, "Role");
    assert_eq!(
        role["rules"][0]["resourceNames"][0], "edge-portcullis",
        "the proxy reads its own Secret only"
    );
}

#[test]
fn autoscaling_leaves_replicas_to_the_hpa() {
    let key = ("apps".to_owned(), "edge".to_owned());
    let spec = crds::ProxyConfigSpec {
        autoscaling: Some(crds::Autoscaling {
            min_replicas: Some(2),
            max_replicas: 6,
            ..Default::default()
        }),
        pod_disruption_budget: Some(crds::PodDisruptionBudget {
            min_available: Some(IntOrString::Int(1)),
            max_unavailable: None,
        }),
        ..Default::default()
    };
    let objects = objects(&key, &plan(spec), &settings());
    let deployment = find(&objects, "Deployment");
    assert!(deployment["spec"].get("replicas").is_none());
    let hpa = find(&objects, "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["maxReplicas"], 6);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(
        find(&objects, "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
}

#[test]
fn hashes_change_with_content_only() {
    let key = ("apps".to_owned(), "edge".to_owned());
    let a = objects(&key, &plan(Default::default()), &settings());
    let b = objects(&key, &plan(Default::default()), &settings());
    assert_eq!(a, b);
    let c = objects(
        &key,
        &plan(crds::ProxyConfigSpec {
            replicas: Some(3),
            ..Default::default()
        }),
        &settings(),
    );
    assert_ne!(find(&a, "Deployment"), find(&c, "Deployment"));
    assert_eq!(
        a.iter().find(|o| o.kind == "Role").map(|o| &o.hash),
        c.iter().find(|o| o.kind == "Role").map(|o| &o.hash)
    );
}
