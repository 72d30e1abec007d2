//! Plan → the objects a Gateway owns (GEP-1762): ServiceAccount, Role and
//! RoleBinding, config Secret, Deployment, Service, and HPA/PDB when asked
//! for. Pure: the operator applies them with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodReadinessGate, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecurityContext, Service, ServiceAccount,
    ServicePort as CoreServicePort, ServiceSpec, Sysctl,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use proxy_config::{CONFIG_APPLIED_CONDITION, CONFIG_SECRET_KEY, ConfigDocument};

use crate::convert::parse_duration_ms;
use crate::error::Error;
use crate::keys::ObjectKey;
use crate::names::{
    self, CONFIG_HASH_ANNOTATION, GATEWAY_CLASS_LABEL, GATEWAY_NAME_LABEL, GENERATION_ANNOTATION,
    INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL, PROXY_NAME, SPEC_HASH_ANNOTATION,
};
use crate::translate::GatewayPlan;

mod kind;

pub use kind::ProvisionedKind;

/// Port of the proxy's admin server (health, readiness, metrics) in its Pod.
pub const ADMIN_PORT: u16 = 19001;

/// How the operator runs proxies, from its own flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The proxy image, unless a ProxyConfig says otherwise.
    pub proxy_image: String,
    /// The largest encoded config written to a Secret
    /// ([`MAX_SECRET_DATA_BYTES`] but in tests).
    pub max_config_bytes: usize,
}

/// One object to apply, as the JSON server-side apply sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub kind: ProvisionedKind,
    pub key: ObjectKey,
    pub body: serde_json::Value,
    /// What the live object's [`ProvisionedKind::live_hash`] is once this
    /// is applied: equal hash, no write.
    pub hash: String,
}

/// The name of every object a Gateway owns.
pub fn provisioned_key(gateway: &ObjectKey, class: &str) -> ObjectKey {
    ObjectKey::new(
        gateway.namespace.clone(),
        names::provisioned(&gateway.name, class),
    )
}

/// Every object a Gateway owns but its config Secret, which carries its own
/// generation (see [`config_secret`]).
pub fn objects(gateway: &ObjectKey, plan: &GatewayPlan, settings: &Settings) -> Vec<Desired> {
    let name = names::provisioned(&gateway.name, &plan.class);
    let meta = |extra_labels: &BTreeMap<String, String>,
                extra_annotations: &BTreeMap<String, String>| {
        base_meta(gateway, plan, &name, extra_labels, extra_annotations)
    };
    let none = BTreeMap::new();
    let spec = &plan.parameters.spec;
    let mut out = Vec::new();

    out.push(desired(
        ProvisionedKind::ServiceAccount,
        &ServiceAccount {
            metadata: meta(&none, &none),
            automount_service_account_token: Some(true),
            ..ServiceAccount::default()
        },
    ));
    out.push(desired(
        ProvisionedKind::Role,
        &Role {
            metadata: meta(&none, &none),
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["secrets".to_owned()]),
                    resource_names: Some(vec![name.clone()]),
                    verbs: vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["pods/status".to_owned()]),
                    verbs: vec!["get".to_owned(), "patch".to_owned()],
                    ..PolicyRule::default()
                },
            ]),
        },
    ));
    out.push(desired(
        ProvisionedKind::RoleBinding,
        &RoleBinding {
            metadata: meta(&none, &none),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "Role".to_owned(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: name.clone(),
                namespace: Some(gateway.namespace.clone()),
                ..Subject::default()
            }]),
        },
    ));

    let selector: BTreeMap<String, String> = [
        (NAME_LABEL.to_owned(), PROXY_NAME.to_owned()),
        (INSTANCE_LABEL.to_owned(), name.clone()),
    ]
    .into();
    out.push(desired(
        ProvisionedKind::Deployment,
        &deployment(gateway, plan, settings, &name, &selector),
    ));

    if !plan.ports.is_empty() {
        let service_settings = spec.service.clone().unwrap_or_default();
        let service_type = match service_settings.service_type.unwrap_or_default() {
            crds::ServiceType::LoadBalancer => "LoadBalancer",
            crds::ServiceType::NodePort => "NodePort",
            crds::ServiceType::ClusterIp => "ClusterIP",
        };
        out.push(desired(
            ProvisionedKind::Service,
            &Service {
                metadata: meta(&service_settings.labels, &service_settings.annotations),
                spec: Some(ServiceSpec {
                    type_: Some(service_type.to_owned()),
                    selector: Some(selector.clone()),
                    ports: Some(
                        plan.ports
                            .iter()
                            .map(|port| CoreServicePort {
                                name: Some(port.name.clone()),
                                port: i32::from(port.port),
                                target_port: Some(IntOrString::Int(i32::from(port.port))),
                                protocol: Some(port.protocol.to_owned()),
                                ..CoreServicePort::default()
                            })
                            .collect(),
                    ),
                    load_balancer_class: service_settings.load_balancer_class.clone(),
                    load_balancer_source_ranges: service_settings
                        .load_balancer_source_ranges
                        .clone(),
                    external_traffic_policy: service_settings.external_traffic_policy.map(|p| {
                        match p {
                            crds::ExternalTrafficPolicy::Cluster => "Cluster",
                            crds::ExternalTrafficPolicy::Local => "Local",
                        }
                        .to_owned()
                    }),
                    load_balancer_ip: plan
                        .requested_address
                        .clone()
                        .filter(|_| service_type == "LoadBalancer"),
                    ..ServiceSpec::default()
                }),
                status: None,
            },
        ));
    }

    if let Some(autoscaling) = &spec.autoscaling {
        let mut metrics = Vec::new();
        let cpu = autoscaling.target_cpu_utilization_percentage;
        let memory = autoscaling.target_memory_utilization_percentage;
        let resource = |name: &str, percent: i32| MetricSpec {
            type_: "Resource".to_owned(),
            resource: Some(ResourceMetricSource {
                name: name.to_owned(),
                target: MetricTarget {
                    type_: "Utilization".to_owned(),
                    average_utilization: Some(percent),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        };
        if cpu.is_some() || memory.is_none() {
            metrics.push(resource("cpu", cpu.unwrap_or(80)));
        }
        if let Some(memory) = memory {
            metrics.push(resource("memory", memory));
        }
        out.push(desired(
            ProvisionedKind::HorizontalPodAutoscaler,
            &HorizontalPodAutoscaler {
                metadata: meta(&none, &none),
                spec: HorizontalPodAutoscalerSpec {
                    scale_target_ref: CrossVersionObjectReference {
                        api_version: Some("apps/v1".to_owned()),
                        kind: "Deployment".to_owned(),
                        name: name.clone(),
                    },
                    min_replicas: Some(autoscaling.min_replicas.unwrap_or(1)),
                    max_replicas: autoscaling.max_replicas,
                    metrics: Some(metrics),
                    ..HorizontalPodAutoscalerSpec::default()
                },
                status: None,
            },
        ));
    }
    if let Some(budget) = &spec.pod_disruption_budget {
        out.push(desired(
            ProvisionedKind::PodDisruptionBudget,
            &PodDisruptionBudget {
                metadata: meta(&none, &none),
                spec: Some(PodDisruptionBudgetSpec {
                    min_available: budget.min_available.clone(),
                    max_unavailable: budget.max_unavailable.clone(),
                    selector: Some(LabelSelector {
                        match_labels: Some(selector.clone()),
                        ..LabelSelector::default()
                    }),
                    ..PodDisruptionBudgetSpec::default()
                }),
                status: None,
            },
        ));
    }
    out
}

/// The config Secret's [`Desired::hash`]: its generation and config hash.
pub fn config_secret_hash(plan: &GatewayPlan) -> String {
    format!("{}:{}", plan.generation, plan.config_hash)
}

/// The config Secret, with the document's generation and hash annotated so
/// that they are read without decoding. A document the proxy would refuse
/// is not written: a translation bug must not reach the proxy, which would
/// refuse the whole document; the last good one stays and the error says
/// why.
pub fn config_secret(gateway: &ObjectKey, plan: &GatewayPlan) -> Result<Desired, Error> {
    config_secret_within(gateway, plan, MAX_SECRET_DATA_BYTES)
}

/// The most data a Secret may hold (the API server's limit).
pub const MAX_SECRET_DATA_BYTES: usize = 1024 * 1024;

/// [`config_secret`], refusing an encoded document over `limit` bytes: the
/// API server would refuse the write on every pass.
pub fn config_secret_within(
    gateway: &ObjectKey,
    plan: &GatewayPlan,
    limit: usize,
) -> Result<Desired, Error> {
    let document = ConfigDocument::new(plan.generation, plan.config.clone());
    if let Err(errors) = proxy_config::validate(&document) {
        return Err(Error::InvalidConfig {
            gateway: gateway.to_string(),
            errors: errors.to_string(),
        });
    }
    let encoded = proxy_config::encode(&document).map_err(|err| Error::Encode {
        gateway: gateway.to_string(),
        message: err.to_string(),
    })?;
    if encoded.len() > limit {
        return Err(Error::TooLarge {
            gateway: gateway.to_string(),
            size: encoded.len(),
            limit,
        });
    }
    let name = names::provisioned(&gateway.name, &plan.class);
    let annotations: BTreeMap<String, String> = [
        (
            GENERATION_ANNOTATION.to_owned(),
            plan.generation.to_string(),
        ),
        (CONFIG_HASH_ANNOTATION.to_owned(), plan.config_hash.clone()),
    ]
    .into();
    let secret = Secret {
        metadata: base_meta(gateway, plan, &name, &BTreeMap::new(), &annotations),
        data: Some([(CONFIG_SECRET_KEY.to_owned(), ByteString(encoded))].into()),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    let mut desired = desired(ProvisionedKind::Secret, &secret);
    desired.hash = config_secret_hash(plan);
    Ok(desired)
}

fn base_meta(
    gateway: &ObjectKey,
    plan: &GatewayPlan,
    name: &str,
    extra_labels: &BTreeMap<String, String>,
    extra_annotations: &BTreeMap<String, String>,
) -> ObjectMeta {
    let mut labels = plan.parameters.labels.clone();
    labels.extend(extra_labels.clone());
    labels.insert(GATEWAY_NAME_LABEL.to_owned(), gateway.name.clone());
    labels.insert(GATEWAY_CLASS_LABEL.to_owned(), plan.class.clone());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    let mut annotations = plan.parameters.annotations.clone();
    annotations.extend(extra_annotations.clone());
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(gateway.namespace.clone()),
        labels: Some(labels),
        annotations: Some(annotations),
        owner_references: Some(vec![OwnerReference {
            api_version: "gateway.networking.k8s.io/v1".to_owned(),
            kind: "Gateway".to_owned(),
            name: gateway.name.clone(),
            uid: plan.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

fn deployment(
    gateway: &ObjectKey,
    plan: &GatewayPlan,
    settings: &Settings,
    name: &str,
    selector: &BTreeMap<String, String>,
) -> Deployment {
    let spec = &plan.parameters.spec;
    let pod = spec.pod.clone().unwrap_or_default();
    let container_settings = spec.container.clone().unwrap_or_default();
    let mut pod_labels = plan.parameters.labels.clone();
    pod_labels.extend(pod.labels.clone());
    pod_labels.insert(GATEWAY_NAME_LABEL.to_owned(), gateway.name.clone());
    pod_labels.insert(GATEWAY_CLASS_LABEL.to_owned(), plan.class.clone());
    pod_labels.extend(selector.clone());
    let mut pod_annotations = plan.parameters.annotations.clone();
    pod_annotations.extend(pod.annotations.clone());

    let level = spec
        .logging
        .as_ref()
        .and_then(|l| l.level)
        .map(|level| {
            serde_json::to_value(level)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .unwrap_or(None)
        .unwrap_or_else(|| "info".to_owned());
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_owned(),
            ..ObjectFieldSelector::default()
        }),
        ..EnvVarSource::default()
    };
    let mut env = vec![
        EnvVar {
            name: "POD_NAME".to_owned(),
            value_from: Some(field("metadata.name")),
            ..EnvVar::default()
        },
        EnvVar {
            name: "POD_NAMESPACE".to_owned(),
            value_from: Some(field("metadata.namespace")),
            ..EnvVar::default()
        },
    ];
    if let Some(threads) = spec.worker_threads {
        env.push(EnvVar {
            name: "PORTCULLIS_WORKER_THREADS".to_owned(),
            value: Some(threads.to_string()),
            ..EnvVar::default()
        });
    }
    env.extend(container_settings.env.clone());
    let resources = container_settings
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_owned(), Quantity("100m".to_owned())),
                    ("memory".to_owned(), Quantity("128Mi".to_owned())),
                ]
                .into(),
            ),
            ..ResourceRequirements::default()
        });
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(ADMIN_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let mut ports: Vec<ContainerPort> = plan
        .ports
        .iter()
        .map(|port| ContainerPort {
            name: None,
            container_port: i32::from(port.port),
            protocol: Some(port.protocol.to_owned()),
            ..ContainerPort::default()
        })
        .collect();
    ports.push(ContainerPort {
        name: Some("admin".to_owned()),
        container_port: i32::from(ADMIN_PORT),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    });
    let drain_ms = spec
        .shutdown
        .as_ref()
        .and_then(|s| s.drain_timeout.as_deref())
        .and_then(parse_duration_ms)
        .unwrap_or(60_000);
    let container = Container {
        name: "proxy".to_owned(),
        image: Some(
            container_settings
                .image
                .clone()
                .unwrap_or_else(|| settings.proxy_image.clone()),
        ),
        args: Some(vec![
            "--config-secret".to_owned(),
            format!("$(POD_NAMESPACE)/{name}"),
            "--admin".to_owned(),
            format!("0.0.0.0:{ADMIN_PORT}"),
            "--log-level".to_owned(),
            level,
            "--log-format".to_owned(),
            "json".to_owned(),
        ]),
        env: Some(env),
        ports: Some(ports),
        resources: Some(resources),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            ..probe("/healthz")
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata: base_meta(gateway, plan, name, &BTreeMap::new(), &BTreeMap::new()),
        spec: Some(DeploymentSpec {
            replicas: if spec.autoscaling.is_some() {
                None
            } else {
                Some(spec.replicas.unwrap_or(1))
            },
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".to_owned())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: if pod_annotations.is_empty() {
                        None
                    } else {
                        Some(pod_annotations)
                    },
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.to_owned()),
                    readiness_gates: Some(vec![PodReadinessGate {
                        condition_type: CONFIG_APPLIED_CONDITION.to_owned(),
                    }]),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        sysctls: Some(vec![Sysctl {
                            name: "net.ipv4.ip_unprivileged_port_start".to_owned(),
                            value: "0".to_owned(),
                        }]),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(
                        i64::try_from(drain_ms / 1000).unwrap_or(60) + 10,
                    ),
                    containers: vec![container],
                    node_selector: if pod.node_selector.is_empty() {
                        None
                    } else {
                        Some(pod.node_selector.clone())
                    },
                    tolerations: if pod.tolerations.is_empty() {
                        None
                    } else {
                        Some(pod.tolerations.clone())
                    },
                    affinity: pod.affinity.clone(),
                    topology_spread_constraints: if pod.topology_spread_constraints.is_empty() {
                        None
                    } else {
                        Some(pod.topology_spread_constraints.clone())
                    },
                    priority_class_name: pod.priority_class_name.clone(),
                    image_pull_secrets: if pod.image_pull_secrets.is_empty() {
                        None
                    } else {
                        Some(pod.image_pull_secrets.clone())
                    },
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn desired<T: Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>>(
    kind: ProvisionedKind,
    object: &T,
) -> Desired {
    let key = ObjectKey::of(object.metadata());
    let mut body = serde_json::to_value(object).unwrap_or(serde_json::Value::Null);
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".to_owned(), kind.api_version().into());
        map.insert("kind".to_owned(), kind.name().into());
    }
    let hash = names::hash_hex(body.to_string().as_bytes())[..16].to_owned();
    if let Some(annotations) = body
        .pointer_mut("/metadata/annotations")
        .and_then(|a| a.as_object_mut())
    {
        annotations.insert(SPEC_HASH_ANNOTATION.to_owned(), hash.clone().into());
    } else if let Some(metadata) = body
        .pointer_mut("/metadata")
        .and_then(|m| m.as_object_mut())
    {
        metadata.insert(
            "annotations".to_owned(),
            serde_json::json!({ SPEC_HASH_ANNOTATION: hash.clone() }),
        );
    }
    Desired {
        kind,
        key,
        body,
        hash,
    }
}

#[cfg(test)]
mod tests;
