//! BackendTLSPolicy: which policy applies to a Service port, and the TLS
//! settings and CA bundles it gives the backend.

use gwapi::backendtlspolicies::BackendTlsPolicy;
use proxy_config::BackendTls;

use super::certificates::ca_bundle;
use crate::conditions::{Problem, reason};
use crate::keys::ObjectKey;
use crate::names::GATEWAY_GROUP;
use crate::snapshot::Snapshot;

/// The policies that target a Service port, winner first: one naming the
/// port (`sectionName`) beats one naming the whole Service; among equals the
/// oldest wins, then the first by name, as the spec's conflict rule says.
/// The others in the winner's class are conflicted; a whole-Service policy
/// that a port-specific one overrides is simply not used there.
pub(super) fn backend_tls_policies<'a>(
    snapshot: &'a Snapshot,
    namespace: &str,
    service: &str,
    port_name: Option<&str>,
) -> Vec<&'a BackendTlsPolicy> {
    let targets = |policy: &BackendTlsPolicy, with_section: bool| {
        policy.spec.target_refs.iter().any(|target| {
            target.group.is_empty()
                && target.kind == "Service"
                && target.name == service
                && match (&target.section_name, with_section) {
                    (Some(section), true) => Some(section.as_str()) == port_name,
                    (None, false) => true,
                    _ => false,
                }
        })
    };
    let in_namespace =
        |policy: &&BackendTlsPolicy| policy.metadata.namespace.as_deref() == Some(namespace);
    let mut specific: Vec<&BackendTlsPolicy> = snapshot
        .backend_tls_policies
        .iter()
        .filter(in_namespace)
        .filter(|p| targets(p, true))
        .collect();
    let mut general: Vec<&BackendTlsPolicy> = snapshot
        .backend_tls_policies
        .iter()
        .filter(in_namespace)
        .filter(|p| targets(p, false))
        .collect();
    let order = |a: &&BackendTlsPolicy, b: &&BackendTlsPolicy| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            &a.metadata.name,
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &b.metadata.name,
            ))
    };
    specific.sort_by(order);
    general.sort_by(order);
    if specific.is_empty() {
        general
    } else {
        specific
    }
}

/// What a policy gives a backend: TLS settings and the CA bundles they
/// name.
#[derive(Debug, Clone)]
pub(super) struct PolicyTls {
    pub policy: ObjectKey,
    pub tls: BackendTls,
    pub ca_bundles: Vec<(String, String)>,
}

/// The TLS a policy asks for, or why it cannot be had (the policy is at
/// fault, and its backend gets 500).
pub(super) fn policy_tls(
    snapshot: &Snapshot,
    policy: &BackendTlsPolicy,
) -> Result<PolicyTls, (ObjectKey, Problem)> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let key = ObjectKey::of(&policy.metadata);
    let validation = &policy.spec.validation;
    let mut bundles = Vec::new();
    for reference in validation.ca_certificate_refs.iter().flatten() {
        match ca_bundle(
            snapshot,
            (GATEWAY_GROUP, "BackendTLSPolicy", &namespace),
            &reference.group,
            &reference.kind,
            &reference.name,
            None,
        ) {
            Ok(bundle) => bundles.push(bundle),
            Err(mut problem) => {
                // Policies name this reason InvalidKind; listeners use the longer one.
                if problem.reason == reason::INVALID_CA_CERTIFICATE_KIND {
                    problem.reason = reason::INVALID_KIND;
                }
                return Err((key, problem));
            }
        }
    }
    if bundles.is_empty() && validation.well_known_ca_certificates.as_deref() != Some("System") {
        let problem = Problem::new(
            reason::NO_VALID_CA_CERTIFICATE,
            format!(
                "BackendTLSPolicy {key} names no CA certificate and not the System trust store."
            ),
        );
        return Err((key, problem));
    }
    let subject_alt_names = validation
        .subject_alt_names
        .iter()
        .flatten()
        .filter_map(|san| san.hostname.clone().or_else(|| san.uri.clone()))
        .collect();
    Ok(PolicyTls {
        policy: key,
        tls: BackendTls {
            server_name: validation.hostname.clone(),
            ca_bundles: bundles.iter().map(|(name, _)| name.clone()).collect(),
            subject_alt_names,
            client_certificate: None,
        },
        ca_bundles: bundles,
    })
}
