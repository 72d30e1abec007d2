//! `backendRefs` to Services, their ready endpoints and BackendTLSPolicy;
//! ReferenceGrant checks for every cross-namespace reference.

use std::net::IpAddr;

use gwapi::backendtlspolicies::BackendTlsPolicy;
use proxy_config::{Backend, BackendProtocol, BackendTls, Endpoint, LoadBalancing, ObjectRef};

use super::tls::{RefProblem, ca_bundle};
use crate::conditions::reason;
use crate::snapshot::{Key, RouteKind, Snapshot, key_of};

/// Whether a ReferenceGrant in the target's namespace lets objects of
/// `(group, kind, namespace)` refer to `(group, kind, namespace, name)`.
pub(super) fn reference_allowed(
    snapshot: &Snapshot,
    from: (&str, &str, &str),
    to: (&str, &str, &str, &str),
) -> bool {
    let (from_group, from_kind, from_namespace) = from;
    let (to_group, to_kind, to_namespace, to_name) = to;
    snapshot.reference_grants.iter().any(|grant| {
        grant.metadata.namespace.as_deref() == Some(to_namespace)
            && grant.spec.from.iter().any(|f| {
                f.group == from_group && f.kind == from_kind && f.namespace == from_namespace
            })
            && grant.spec.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|name| name == to_name)
            })
    })
}

/// What the backend is used for, which decides the protocol spoken to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BackendUse {
    Http,
    Grpc,
    Tcp,
    Udp,
}

impl BackendUse {
    pub fn of(kind: RouteKind) -> BackendUse {
        match kind {
            RouteKind::Http => BackendUse::Http,
            RouteKind::Grpc => BackendUse::Grpc,
            RouteKind::Tls | RouteKind::Tcp => BackendUse::Tcp,
            RouteKind::Udp => BackendUse::Udp,
        }
    }
}

/// A backendRef, whatever route kind it came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct BackendRefFields<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub port: Option<i32>,
}

/// A resolved backend, and CA bundles it needs in the config.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub key: String,
    pub backend: Backend,
    pub ca_bundles: Vec<(String, String)>,
    /// The BackendTLSPolicy applied, for its status.
    pub policy: Option<Key>,
    /// Policies that lost to it (same target), for their status.
    pub conflicted: Vec<Key>,
}

/// A failed resolution: the route's `ResolvedRefs` reason and message, and
/// a policy that was at fault, if any.
#[derive(Debug, Clone)]
pub(super) struct Unresolved {
    pub problem: RefProblem,
    pub policy: Option<Key>,
    pub conflicted: Vec<Key>,
}

impl From<RefProblem> for Unresolved {
    fn from(problem: RefProblem) -> Self {
        Unresolved {
            problem,
            policy: None,
            conflicted: Vec::new(),
        }
    }
}

pub(super) fn resolve(
    snapshot: &Snapshot,
    route_kind: RouteKind,
    route_namespace: &str,
    reference: BackendRefFields<'_>,
    usage: BackendUse,
) -> Result<Resolved, Unresolved> {
    let group = reference.group.unwrap_or("");
    let kind = reference.kind.unwrap_or("Service");
    let name = reference.name;
    if !group.is_empty() || kind != "Service" {
        return Err(RefProblem {
            reason: reason::INVALID_KIND,
            message: format!(
                "backendRef {name} is a {group}/{kind}; only core Services are supported."
            ),
        }
        .into());
    }
    let namespace = reference.namespace.unwrap_or(route_namespace);
    if namespace != route_namespace
        && !reference_allowed(
            snapshot,
            (crate::GATEWAY_GROUP, route_kind.name(), route_namespace),
            ("", "Service", namespace, name),
        )
    {
        return Err(RefProblem {
            reason: reason::REF_NOT_PERMITTED,
            message: format!(
                "Service {namespace}/{name} is in another namespace and no ReferenceGrant there allows {}s from {route_namespace} to use it.",
                route_kind.name()
            ),
        }
        .into());
    }
    let key = (namespace.to_owned(), name.to_owned());
    let Some(service) = snapshot.services.get(&key) else {
        return Err(RefProblem {
            reason: reason::BACKEND_NOT_FOUND,
            message: format!("Service {namespace}/{name} does not exist."),
        }
        .into());
    };
    let Some(port_number) = reference.port else {
        return Err(RefProblem {
            reason: reason::UNSUPPORTED_VALUE,
            message: format!("backendRef to Service {namespace}/{name} needs a port."),
        }
        .into());
    };
    let spec = service.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err(RefProblem {
            reason: reason::UNSUPPORTED_VALUE,
            message: format!("Service {namespace}/{name} is of type ExternalName, which is not supported as a backend."),
        }
        .into());
    }
    let ports = spec.ports.unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| p.port == port_number) else {
        return Err(RefProblem {
            reason: reason::BACKEND_NOT_FOUND,
            message: format!("Service {namespace}/{name} has no port {port_number}."),
        }
        .into());
    };
    let wants_udp = usage == BackendUse::Udp;
    let is_udp = service_port.protocol.as_deref() == Some("UDP");
    if wants_udp != is_udp {
        return Err(RefProblem {
            reason: reason::UNSUPPORTED_PROTOCOL_ROUTE,
            message: format!(
                "port {port_number} of Service {namespace}/{name} is {}, the route needs {}.",
                service_port.protocol.as_deref().unwrap_or("TCP"),
                if wants_udp { "UDP" } else { "TCP" }
            ),
        }
        .into());
    }
    let protocol = match usage {
        BackendUse::Grpc => BackendProtocol::H2c,
        BackendUse::Tcp => BackendProtocol::Tcp,
        BackendUse::Udp => BackendProtocol::Udp,
        BackendUse::Http => match service_port.app_protocol.as_deref() {
            Some("kubernetes.io/h2c" | "h2c" | "grpc") => BackendProtocol::H2c,
            None
            | Some(
                "kubernetes.io/ws" | "kubernetes.io/wss" | "http" | "HTTP" | "https" | "HTTPS"
                | "http1" | "kubernetes.io/http",
            ) => BackendProtocol::Http1,
            Some(other) => {
                return Err(RefProblem {
                    reason: reason::UNSUPPORTED_PROTOCOL_ROUTE,
                    message: format!(
                        "port {port_number} of Service {namespace}/{name} has appProtocol {other:?}, which the gateway cannot speak."
                    ),
                }
                .into());
            }
        },
    };
    let endpoints = ready_endpoints(
        snapshot,
        &key,
        service_port.name.as_deref(),
        port_number,
        service_port.target_port.as_ref(),
    );

    let mut resolved = Resolved {
        key: format!("{namespace}/{name}:{port_number}/{protocol:?}"),
        backend: Backend {
            source: ObjectRef {
                kind: "Service".to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            protocol,
            endpoints,
            load_balancing: LoadBalancing::RoundRobin,
            tls: None,
        },
        ca_bundles: Vec::new(),
        policy: None,
        conflicted: Vec::new(),
    };
    if matches!(usage, BackendUse::Http | BackendUse::Grpc) {
        let mut policies =
            backend_tls_policies(snapshot, namespace, name, service_port.name.as_deref());
        if !policies.is_empty() {
            let winner = policies.remove(0);
            let conflicted: Vec<Key> = policies.iter().map(|p| key_of(&p.metadata)).collect();
            resolved.conflicted.clone_from(&conflicted);
            if let Err(mut unresolved) = apply_policy(snapshot, winner, &mut resolved) {
                unresolved.conflicted = conflicted;
                return Err(unresolved);
            }
        }
    }
    Ok(resolved)
}

/// Ready endpoints of a Service port, from its EndpointSlices, in a fixed
/// order.
fn ready_endpoints(
    snapshot: &Snapshot,
    service: &Key,
    port_name: Option<&str>,
    port_number: i32,
    target_port: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
) -> Vec<Endpoint> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut endpoints = Vec::new();
    for slice in snapshot.endpoint_slices.get(service).into_iter().flatten() {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name.unwrap_or(""))
            .and_then(|p| p.port)
            .or(match target_port {
                Some(IntOrString::Int(port)) => Some(*port),
                None => Some(port_number),
                _ => None,
            });
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                if let Ok(address) = address.parse::<IpAddr>() {
                    endpoints.push(Endpoint { address, port });
                }
            }
        }
    }
    endpoints.sort_by_key(|e| (e.address, e.port));
    endpoints.dedup();
    endpoints
}

/// The policies that target a Service port, winner first: one naming the
/// port (`sectionName`) beats one naming the whole Service; among equals the
/// oldest wins, then the first by name, as the spec's conflict rule says.
/// The others in the winner's class are conflicted; a whole-Service policy
/// that a port-specific one overrides is simply not used there.
fn backend_tls_policies<'a>(
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

fn apply_policy(
    snapshot: &Snapshot,
    policy: &BackendTlsPolicy,
    resolved: &mut Resolved,
) -> Result<(), Unresolved> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let key = (
        namespace.clone(),
        policy.metadata.name.clone().unwrap_or_default(),
    );
    let validation = &policy.spec.validation;
    let mut bundles = Vec::new();
    for reference in validation.ca_certificate_refs.iter().flatten() {
        match ca_bundle(
            snapshot,
            (crate::GATEWAY_GROUP, "BackendTLSPolicy", &namespace),
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
                return Err(Unresolved {
                    problem,
                    policy: Some(key),
                    conflicted: Vec::new(),
                });
            }
        }
    }
    if bundles.is_empty() && validation.well_known_ca_certificates.as_deref() != Some("System") {
        return Err(Unresolved {
            problem: RefProblem {
                reason: reason::NO_VALID_CA_CERTIFICATE,
                message: format!(
                    "BackendTLSPolicy {}/{} names no CA certificate and not the System trust store.",
                    key.0, key.1
                ),
            },
            policy: Some(key),
            conflicted: Vec::new(),
        });
    }
    let subject_alt_names = validation
        .subject_alt_names
        .iter()
        .flatten()
        .filter_map(|san| san.hostname.clone().or_else(|| san.uri.clone()))
        .collect();
    resolved.backend.tls = Some(BackendTls {
        server_name: validation.hostname.clone(),
        ca_bundles: bundles.iter().map(|(name, _)| name.clone()).collect(),
        subject_alt_names,
        client_certificate: None,
    });
    resolved.key = format!("{}+tls:{}/{}", resolved.key, key.0, key.1);
    resolved.ca_bundles = bundles;
    resolved.policy = Some(key);
    Ok(())
}
