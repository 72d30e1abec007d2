//! `deploy/portcullis.yaml`: the operator on a vanilla cluster with one
//! `kubectl apply`, after the Gateway API CRDs.

use crds::ProxyConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use kube::CustomResourceExt;
use operator::rbac::Scope;

use crate::file::{Error, File};
use crate::model::{self, LEADER_ELECTION, NAME, NAMESPACE, meta};
use crate::render::{documents, header, yaml};

pub const PATH: &str = "deploy/portcullis.yaml";

fn subject() -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: NAME.to_owned(),
        namespace: Some(NAMESPACE.to_owned()),
        ..Subject::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

pub fn manifest() -> Result<File, Error> {
    let mut namespace_meta = meta(NAMESPACE, None);
    // The operator Pod meets the `restricted` Pod Security Standard; keep
    // anything less hardened out of its namespace.
    if let Some(labels) = namespace_meta.labels.as_mut() {
        labels.insert(
            "pod-security.kubernetes.io/enforce".to_owned(),
            "restricted".to_owned(),
        );
    }
    let namespace = Namespace {
        metadata: namespace_meta,
        ..Namespace::default()
    };
    let account = ServiceAccount {
        metadata: meta(NAME, Some(NAMESPACE)),
        ..ServiceAccount::default()
    };
    let cluster_role = ClusterRole {
        metadata: meta(NAME, None),
        rules: Some(model::policy_rules(Scope::Cluster)),
        ..ClusterRole::default()
    };
    let cluster_binding = ClusterRoleBinding {
        metadata: meta(NAME, None),
        role_ref: role_ref("ClusterRole", NAME),
        subjects: Some(vec![subject()]),
    };
    let role = Role {
        metadata: meta(LEADER_ELECTION, Some(NAMESPACE)),
        rules: Some(model::policy_rules(Scope::OperatorNamespace)),
    };
    let binding = RoleBinding {
        metadata: meta(LEADER_ELECTION, Some(NAMESPACE)),
        role_ref: role_ref("Role", LEADER_ELECTION),
        subjects: Some(vec![subject()]),
    };
    let deployment = Deployment {
        metadata: meta(NAME, Some(NAMESPACE)),
        spec: Some(model::deployment_spec()),
        ..Deployment::default()
    };
    let docs = vec![
        yaml("Namespace", &namespace)?,
        yaml("CRD", &ProxyConfig::crd())?,
        yaml("ServiceAccount", &account)?,
        yaml("ClusterRole", &cluster_role)?,
        yaml("ClusterRoleBinding", &cluster_binding)?,
        yaml("Role", &role)?,
        yaml("RoleBinding", &binding)?,
        yaml("Deployment", &deployment)?,
        yaml("GatewayClass", &model::gateway_class())?,
    ];
    let header = format!(
        "{}#\n# Install the Gateway API CRDs first (the upstream standard install), then:\n#   kubectl apply -f deploy/portcullis.yaml\n",
        header(&format!(
            "Portcullis {} for vanilla Kubernetes: namespace, ProxyConfig CRD, operator RBAC and Deployment, GatewayClass.",
            model::VERSION
        ))
    );
    Ok(File {
        path: PATH,
        contents: documents(&header, &docs),
    })
}
