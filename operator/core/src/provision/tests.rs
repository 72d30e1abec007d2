#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;
use crate::translate::{ProxyParameters, ServicePort};

fn plan(spec: crds::ProxyConfigSpec) -> GatewayPlan {
    GatewayPlan {
        class: "portcullis".into(),
        uid: "uid-1".into(),
        provision: true,
        config: proxy_config::GatewayConfig {
            gateway: proxy_config::ObjectRef {
                kind: "Gateway".into(),
                namespace: "apps".into(),
                name: "edge".into(),
            },
            ..Default::default()
        },
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
        max_config_bytes: super::MAX_SECRET_DATA_BYTES,
    }
}

fn find(objects: &[Desired], kind: ProvisionedKind) -> &serde_json::Value {
    &objects
        .iter()
        .find(|o| o.kind == kind)
        .unwrap_or_else(|| panic!("no {}", kind.name()))
        .body
}

#[test]
fn every_object_has_the_gep_1762_name_labels_and_owner() {
    let key = ObjectKey::new("apps", "edge");
    let objects = objects(&key, &plan(Default::default()), &settings());
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind.name()).collect();
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
        assert_eq!(meta["name"], "edge-portcullis", "{}", object.kind.name());
        assert_eq!(object.body["kind"], object.kind.name());
        assert_eq!(object.body["apiVersion"], object.kind.api_version());
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
    let key = ObjectKey::new("apps", "edge");
    let objects = objects(&key, &plan(Default::default()), &settings());
    let deployment = find(&objects, ProvisionedKind::Deployment);
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
    let service = find(&objects, ProvisionedKind::Service);
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(service["spec"]["loadBalancerIP"], "198.19.0.99");
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    let role = find(&objects, ProvisionedKind::Role);
    assert_eq!(
        role["rules"][0]["resourceNames"][0], "edge-portcullis",
        "the proxy reads its own Secret only"
    );
}

#[test]
fn autoscaling_leaves_replicas_to_the_hpa() {
    let key = ObjectKey::new("apps", "edge");
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
    let deployment = find(&objects, ProvisionedKind::Deployment);
    assert!(deployment["spec"].get("replicas").is_none());
    let hpa = find(&objects, ProvisionedKind::HorizontalPodAutoscaler);
    assert_eq!(hpa["spec"]["maxReplicas"], 6);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(
        find(&objects, ProvisionedKind::PodDisruptionBudget)["spec"]["minAvailable"],
        1
    );
}

#[test]
fn hashes_change_with_content_only() {
    let key = ObjectKey::new("apps", "edge");
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
    assert_ne!(
        find(&a, ProvisionedKind::Deployment),
        find(&c, ProvisionedKind::Deployment)
    );
    assert_eq!(
        a.iter()
            .find(|o| o.kind == ProvisionedKind::Role)
            .map(|o| &o.hash),
        c.iter()
            .find(|o| o.kind == ProvisionedKind::Role)
            .map(|o| &o.hash)
    );
}

#[test]
fn the_config_secret_carries_its_generation_and_refuses_what_the_proxy_would() {
    let key = ObjectKey::new("apps", "edge");
    let secret = config_secret(&key, &plan(Default::default())).expect("a valid config");
    assert_eq!(secret.kind, ProvisionedKind::Secret);
    assert_eq!(secret.hash, "3:h");
    let annotations = &secret.body["metadata"]["annotations"];
    assert_eq!(annotations[GENERATION_ANNOTATION], "3");
    assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "h");
    let meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        annotations: serde_json::from_value(annotations.clone()).unwrap(),
        ..Default::default()
    };
    assert_eq!(
        ProvisionedKind::Secret.live_hash(&meta).as_deref(),
        Some(secret.hash.as_str()),
        "what is applied reads back as applied"
    );
    let data = secret.body["data"][CONFIG_SECRET_KEY]
        .as_str()
        .expect("data");
    assert!(!data.is_empty());

    // A listener without a port is refused by the proxy: not written.
    let mut broken = plan(Default::default());
    broken.config.listeners.push(proxy_config::Listener {
        name: "broken".into(),
        port: 0,
        protocol: proxy_config::Protocol::Http,
        sources: Vec::new(),
        tls: None,
        virtual_hosts: Vec::new(),
        tls_routes: Vec::new(),
        stream_route: None,
    });
    let refused = config_secret(&key, &broken).expect_err("refused");
    assert!(
        matches!(&refused, Error::InvalidConfig { gateway, .. } if gateway == "apps/edge"),
        "{refused}"
    );
}
