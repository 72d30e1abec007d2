//! `backendRefs` to Services and their ready endpoints, with the
//! BackendTLSPolicy and the XBackendTrafficPolicy that apply to each.

use std::net::IpAddr;

use proxy_config::{Backend, BackendProtocol, Endpoint, LoadBalancing, ObjectRef};

use super::backend_tls::{backend_tls_policies, policy_tls};
use super::references::reference_allowed;
use super::traffic_policies::{AppliedTrafficPolicy, traffic_policy};
use crate::conditions::{Problem, reason};
use crate::keys::{ObjectKey, RouteKind};
use crate::names::GATEWAY_GROUP;
use crate::snapshot::Snapshot;

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
    pub policy: Option<ObjectKey>,
    /// Policies that lost to it (same target), for their status.
    pub conflicted: Vec<ObjectKey>,
    /// The XBackendTrafficPolicy on the Service (HTTP and gRPC only).
    pub traffic: AppliedTrafficPolicy,
}

/// A failed resolution: the route's `ResolvedRefs` reason and message, and
/// a policy that was at fault, if any.
#[derive(Debug, Clone)]
pub(super) struct Unresolved {
    pub problem: Problem,
    pub policy: Option<ObjectKey>,
    pub conflicted: Vec<ObjectKey>,
}

impl From<Problem> for Unresolved {
    fn from(problem: Problem) -> Self {
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
        return Err(Problem {
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
            (GATEWAY_GROUP, route_kind.name(), route_namespace),
            ("", "Service", namespace, name),
        )
    {
        return Err(Problem {
            reason: reason::REF_NOT_PERMITTED,
            message: format!(
                "Service {namespace}/{name} is in another namespace and no ReferenceGrant there allows {}s from {route_namespace} to use it.",
                route_kind.name()
            ),
        }
        .into());
    }
    let key = ObjectKey::new(namespace, name);
    let Some(service) = snapshot.services.get(&key) else {
        return Err(Problem {
            reason: reason::BACKEND_NOT_FOUND,
            message: format!("Service {namespace}/{name} does not exist."),
        }
        .into());
    };
    let Some(port_number) = reference.port else {
        return Err(Problem {
            reason: reason::UNSUPPORTED_VALUE,
            message: format!("backendRef to Service {namespace}/{name} needs a port."),
        }
        .into());
    };
    let spec = service.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err(Problem {
            reason: reason::UNSUPPORTED_VALUE,
            message: format!("Service {namespace}/{name} is of type ExternalName, which is not supported as a backend."),
        }
        .into());
    }
    let ports = spec.ports.unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| p.port == port_number) else {
        return Err(Problem {
            reason: reason::BACKEND_NOT_FOUND,
            message: format!("Service {namespace}/{name} has no port {port_number}."),
        }
        .into());
    };
    let wants_udp = usage == BackendUse::Udp;
    let is_udp = service_port.protocol.as_deref() == Some("UDP");
    if wants_udp != is_udp {
        return Err(Problem {
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
                return Err(Problem {
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
            retry_budget: None,
        },
        ca_bundles: Vec::new(),
        policy: None,
        conflicted: Vec::new(),
        traffic: AppliedTrafficPolicy::default(),
    };
    if matches!(usage, BackendUse::Http | BackendUse::Grpc) {
        // Retries and sessions are HTTP's: stream backends take no budget.
        resolved.traffic = traffic_policy(snapshot, namespace, name);
        resolved.backend.retry_budget = resolved.traffic.retry_budget.clone();
        let mut policies =
            backend_tls_policies(snapshot, namespace, name, service_port.name.as_deref());
        if !policies.is_empty() {
            let winner = policies.remove(0);
            let conflicted: Vec<ObjectKey> = policies
                .iter()
                .map(|p| ObjectKey::of(&p.metadata))
                .collect();
            resolved.conflicted.clone_from(&conflicted);
            match policy_tls(snapshot, winner) {
                Ok(applied) => {
                    resolved.backend.tls = Some(applied.tls);
                    resolved.key = format!("{}+tls:{}", resolved.key, applied.policy);
                    resolved.ca_bundles = applied.ca_bundles;
                    resolved.policy = Some(applied.policy);
                }
                Err((policy, problem)) => {
                    return Err(Unresolved {
                        problem,
                        policy: Some(policy),
                        conflicted,
                    });
                }
            }
        }
    }
    Ok(resolved)
}

/// Ready endpoints of a Service port, from its EndpointSlices, in a fixed
/// order.
fn ready_endpoints(
    snapshot: &Snapshot,
    service: &ObjectKey,
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
