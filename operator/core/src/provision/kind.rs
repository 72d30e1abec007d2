//! The kinds of object a Gateway owns, and what the operator needs to know
//! of each to apply, compare and delete it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::names::{CONFIG_HASH_ANNOTATION, GENERATION_ANNOTATION, SPEC_HASH_ANNOTATION};

/// One kind of provisioned object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProvisionedKind {
    ServiceAccount,
    Role,
    RoleBinding,
    Deployment,
    Service,
    /// The config Secret: the compiled config the proxy reads.
    Secret,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
}

impl ProvisionedKind {
    pub const ALL: [ProvisionedKind; 8] = [
        ProvisionedKind::ServiceAccount,
        ProvisionedKind::Role,
        ProvisionedKind::RoleBinding,
        ProvisionedKind::Deployment,
        ProvisionedKind::Service,
        ProvisionedKind::Secret,
        ProvisionedKind::HorizontalPodAutoscaler,
        ProvisionedKind::PodDisruptionBudget,
    ];

    /// `apiVersion` of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            ProvisionedKind::ServiceAccount
            | ProvisionedKind::Service
            | ProvisionedKind::Secret => "v1",
            ProvisionedKind::Role | ProvisionedKind::RoleBinding => "rbac.authorization.k8s.io/v1",
            ProvisionedKind::Deployment => "apps/v1",
            ProvisionedKind::HorizontalPodAutoscaler => "autoscaling/v2",
            ProvisionedKind::PodDisruptionBudget => "policy/v1",
        }
    }

    /// The API group: `apiVersion` without its version.
    pub fn group(self) -> &'static str {
        self.api_version()
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The version part of `apiVersion`.
    pub fn version(self) -> &'static str {
        self.api_version()
            .rsplit_once('/')
            .map_or(self.api_version(), |(_, version)| version)
    }

    /// The kind's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            ProvisionedKind::ServiceAccount => "ServiceAccount",
            ProvisionedKind::Role => "Role",
            ProvisionedKind::RoleBinding => "RoleBinding",
            ProvisionedKind::Deployment => "Deployment",
            ProvisionedKind::Service => "Service",
            ProvisionedKind::Secret => "Secret",
            ProvisionedKind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            ProvisionedKind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }

    /// The resource's plural name, as API paths and RBAC rules spell it.
    pub fn plural(self) -> &'static str {
        match self {
            ProvisionedKind::ServiceAccount => "serviceaccounts",
            ProvisionedKind::Role => "roles",
            ProvisionedKind::RoleBinding => "rolebindings",
            ProvisionedKind::Deployment => "deployments",
            ProvisionedKind::Service => "services",
            ProvisionedKind::Secret => "secrets",
            ProvisionedKind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            ProvisionedKind::PodDisruptionBudget => "poddisruptionbudgets",
        }
    }

    /// Objects of a later wave are applied once the earlier wave's are: a
    /// RoleBinding is only accepted once its Role exists (the API server
    /// checks that the binder holds what it grants).
    pub fn wave(self) -> u8 {
        u8::from(self == ProvisionedKind::RoleBinding)
    }

    /// What a live object of this kind says was last applied, comparable
    /// with [`super::Desired::hash`]: the config Secret's generation and
    /// content hash, every other kind's spec hash.
    pub fn live_hash(self, meta: &ObjectMeta) -> Option<String> {
        let annotations = meta.annotations.as_ref()?;
        if self == ProvisionedKind::Secret {
            Some(format!(
                "{}:{}",
                annotations.get(GENERATION_ANNOTATION)?,
                annotations.get(CONFIG_HASH_ANNOTATION)?
            ))
        } else {
            annotations.get(SPEC_HASH_ANNOTATION).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_names_its_api() {
        let table: Vec<(&str, &str, &str)> = ProvisionedKind::ALL
            .iter()
            .map(|k| (k.group(), k.version(), k.plural()))
            .collect();
        assert_eq!(
            table,
            [
                ("", "v1", "serviceaccounts"),
                ("rbac.authorization.k8s.io", "v1", "roles"),
                ("rbac.authorization.k8s.io", "v1", "rolebindings"),
                ("apps", "v1", "deployments"),
                ("", "v1", "services"),
                ("", "v1", "secrets"),
                ("autoscaling", "v2", "horizontalpodautoscalers"),
                ("policy", "v1", "poddisruptionbudgets"),
            ]
        );
        for kind in ProvisionedKind::ALL {
            assert_eq!(kind.plural(), format!("{}s", kind.name().to_lowercase()));
        }
    }

    #[test]
    fn role_bindings_come_after_their_roles() {
        assert!(ProvisionedKind::RoleBinding.wave() > ProvisionedKind::Role.wave());
        let later: Vec<ProvisionedKind> = ProvisionedKind::ALL
            .into_iter()
            .filter(|k| k.wave() > 0)
            .collect();
        assert_eq!(later, [ProvisionedKind::RoleBinding]);
    }
}
