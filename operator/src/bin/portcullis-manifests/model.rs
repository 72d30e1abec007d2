//! The install model: names, images and the operator's Deployment, shared by
//! `deploy/` and the OLM bundle so that both run the same operator the same
//! way.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext,
};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator::rbac::{self, Scope};

/// The release: the workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where `deploy/` installs the operator; the bundle suggests it too.
pub const NAMESPACE: &str = "portcullis-system";
/// The operator's Deployment, ServiceAccount and RBAC objects.
pub const NAME: &str = "portcullis-operator";
/// The Role (leader election Lease) in the operator's namespace.
pub const LEADER_ELECTION: &str = "portcullis-operator-leader-election";
/// OLM package and channel.
pub const PACKAGE: &str = "portcullis";
pub const CHANNEL: &str = "alpha";
/// The default GatewayClass and the controller it names.
pub const GATEWAY_CLASS: &str = "portcullis";
/// The operator's admin port: /healthz, /readyz, /metrics.
pub const ADMIN_PORT: i32 = 8081;
pub const REPOSITORY: &str = "https://github.com/portcullis-io/portcullis";
const REGISTRY: &str = "ghcr.io/portcullis-io";

pub fn operator_image() -> String {
    format!("{REGISTRY}/portcullis-operator:v{VERSION}")
}

pub fn proxy_image() -> String {
    format!("{REGISTRY}/portcullis-proxy:v{VERSION}")
}

pub fn bundle_image() -> String {
    format!("{REGISTRY}/portcullis-bundle:v{VERSION}")
}

pub fn catalog_image() -> String {
    format!("{REGISTRY}/portcullis-catalog:v{VERSION}")
}

/// The OLM name of this release's bundle (and its CSV).
pub fn bundle_name() -> String {
    format!("{PACKAGE}.v{VERSION}")
}

/// Labels of everything `deploy/` installs.
pub fn labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", NAME),
        ("app.kubernetes.io/part-of", PACKAGE),
        ("app.kubernetes.io/version", VERSION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn selector() -> BTreeMap<String, String> {
    [("app.kubernetes.io/name".to_owned(), NAME.to_owned())].into()
}

pub fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

/// The RBAC rules of one scope, from the operator's table.
pub fn policy_rules(scope: Scope) -> Vec<PolicyRule> {
    rbac::rules(scope)
        .map(|rule| PolicyRule {
            api_groups: Some(rule.api_groups.iter().map(|s| (*s).to_owned()).collect()),
            resources: Some(rule.resources.iter().map(|s| (*s).to_owned()).collect()),
            verbs: rule.verbs.iter().map(|s| (*s).to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

fn downward(name: &str, field: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The operator Deployment's spec: one replica holding the leader Lease,
/// compatible with OpenShift's restricted-v2 SCC and the `restricted` Pod
/// Security Standard (non-root without a fixed UID, no capabilities, no
/// privilege escalation, RuntimeDefault seccomp, read-only root).
pub fn deployment_spec() -> DeploymentSpec {
    let quantity = |q: &str| Quantity(q.to_owned());
    let container = Container {
        name: "operator".to_owned(),
        image: Some(operator_image()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec!["--log-format".to_owned(), "json".to_owned()]),
        env: Some(vec![
            downward("POD_NAMESPACE", "metadata.namespace"),
            downward("POD_NAME", "metadata.name"),
            EnvVar {
                name: "PORTCULLIS_PROXY_IMAGE".to_owned(),
                value: Some(proxy_image()),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("admin".to_owned()),
            container_port: ADMIN_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            ..probe("/healthz", 10)
        }),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_owned(), quantity("50m")),
                    ("memory".to_owned(), quantity("64Mi")),
                ]
                .into(),
            ),
            limits: Some([("memory".to_owned(), quantity("512Mi"))].into()),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    DeploymentSpec {
        replicas: Some(1),
        selector: LabelSelector {
            match_labels: Some(selector()),
            ..LabelSelector::default()
        },
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels()),
                annotations: Some(
                    [(
                        "kubectl.kubernetes.io/default-container".to_owned(),
                        "operator".to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(NAME.to_owned()),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".to_owned(),
                        ..SeccompProfile::default()
                    }),
                    ..PodSecurityContext::default()
                }),
                node_selector: Some([("kubernetes.io/os".to_owned(), "linux".to_owned())].into()),
                termination_grace_period_seconds: Some(10),
                containers: vec![container],
                ..PodSpec::default()
            }),
        },
        ..DeploymentSpec::default()
    }
}

/// The default GatewayClass: Gateways that name `portcullis` get a proxy.
pub fn gateway_class() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS, "labels": labels()},
        "spec": {
            "controllerName": operator_core::names::CONTROLLER_NAME,
            "description": "Portcullis gateways, one proxy Deployment per Gateway.",
        },
    })
}
