//! A Gateway's listeners: protocol, conflicts, allowed route kinds and
//! namespaces, certificates and client validation.

use std::collections::BTreeMap;

use gwapi::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewayListenersAllowedRoutesNamespacesSelector, GatewayListenersTlsMode,
    GatewayTlsFrontendDefaultValidationMode,
};
use proxy_config::{ClientValidation, GatewayConfig, TlsMode};

use super::certificates::{ca_bundle, server_certificate};
use crate::conditions::{Problem, reason};
use crate::keys::RouteKind;
use crate::names::GATEWAY_GROUP;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenerProtocol {
    Http,
    Https,
    Tls(TlsMode),
    Tcp,
    Udp,
}

impl ListenerProtocol {
    fn parse(protocol: &str, mode: Option<&GatewayListenersTlsMode>) -> Option<ListenerProtocol> {
        Some(match protocol {
            "HTTP" => ListenerProtocol::Http,
            "HTTPS" => ListenerProtocol::Https,
            "TLS" => ListenerProtocol::Tls(match mode {
                Some(GatewayListenersTlsMode::Passthrough) => TlsMode::Passthrough,
                _ => TlsMode::Terminate,
            }),
            "TCP" => ListenerProtocol::Tcp,
            "UDP" => ListenerProtocol::Udp,
            _ => return None,
        })
    }

    /// Whether listeners of these protocols can share one port: one of a
    /// kind for HTTP, TCP and UDP; HTTPS beside TLS passthrough (split by
    /// SNI); TLS terminate beside TLS passthrough (mixed mode).
    fn can_share(protocols: &[ListenerProtocol]) -> bool {
        use ListenerProtocol::*;
        let all = |allowed: &[ListenerProtocol]| protocols.iter().all(|p| allowed.contains(p));
        all(&[Http])
            || all(&[Tcp])
            || all(&[Udp])
            || all(&[Https, Tls(TlsMode::Passthrough)])
            || all(&[Tls(TlsMode::Terminate), Tls(TlsMode::Passthrough)])
    }

    fn route_kinds(self) -> &'static [RouteKind] {
        match self {
            ListenerProtocol::Http | ListenerProtocol::Https => &[RouteKind::Http, RouteKind::Grpc],
            ListenerProtocol::Tls(_) => &[RouteKind::Tls],
            ListenerProtocol::Tcp => &[RouteKind::Tcp],
            ListenerProtocol::Udp => &[RouteKind::Udp],
        }
    }
}

/// Which namespaces' routes a listener accepts.
#[derive(Debug, Clone)]
pub(super) enum AllowedFrom {
    Same,
    All,
    Selector(GatewayListenersAllowedRoutesNamespacesSelector),
}

/// Whose listener it is: the Gateway's own, or one merged from a
/// ListenerSet (an index into the Gateway's accepted sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenerOwner {
    Gateway,
    ListenerSet(usize),
}

/// One listener as translation sees it.
#[derive(Debug, Clone)]
pub(super) struct ListenerState {
    pub owner: ListenerOwner,
    /// Its `sectionName`: unique within its owner only.
    pub name: String,
    /// Unique among all the Gateway's listeners, the proxy's name for it:
    /// the name for the Gateway's own, `namespace/set/name` for a set's.
    pub source: String,
    /// The owner's namespace: `allowedRoutes.namespaces.from: Same` and
    /// certificate references are relative to it.
    pub namespace: String,
    pub port: u16,
    pub protocol: Option<ListenerProtocol>,
    pub hostname: Option<String>,
    /// Route kinds it accepts (its `supportedKinds`).
    pub kinds: Vec<RouteKind>,
    pub allowed: AllowedFrom,
    /// Keys into the config's certificates.
    pub certificates: Vec<String>,
    pub client_validation: Option<ClientValidation>,
    pub accepted: Result<(), Problem>,
    pub resolved: Result<(), Problem>,
    pub conflict: Option<Problem>,
    pub attached: i32,
}

impl ListenerState {
    /// Routes attach to accepted listeners without conflicts, even when a
    /// reference of theirs is unresolved (the spec counts them).
    pub fn accepts_routes(&self) -> bool {
        self.accepted.is_ok() && self.conflict.is_none()
    }

    /// Whether it gets a socket.
    pub fn programmable(&self) -> bool {
        self.accepts_routes() && self.resolved.is_ok()
    }

    pub fn allows_namespace(
        &self,
        route_namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        match &self.allowed {
            AllowedFrom::Same => self.namespace == route_namespace,
            AllowedFrom::All => true,
            AllowedFrom::Selector(selector) => selector_matches(selector, labels),
        }
    }
}

pub(super) fn selector_matches(
    selector: &GatewayListenersAllowedRoutesNamespacesSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|expr| {
        let values = expr.values.clone().unwrap_or_default();
        let value = labels.get(&expr.key);
        match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// Validates every listener of `gateway`, adding the certificates and CA
/// bundles they use to `config`.
pub(super) fn listeners(
    snapshot: &Snapshot,
    gateway: &Gateway,
    config: &mut GatewayConfig,
) -> Vec<ListenerState> {
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    let owner = Owner {
        listener_owner: ListenerOwner::Gateway,
        kind: "Gateway",
        namespace: &namespace,
        source_prefix: None,
    };
    let mut states: Vec<ListenerState> = gateway
        .spec
        .listeners
        .iter()
        .map(|listener| listener_state(snapshot, gateway, &owner, listener, config))
        .collect();
    mark_conflicts(&mut states);
    states
}

/// Who declares a listener, for its state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Owner<'a> {
    pub listener_owner: ListenerOwner,
    /// The declaring kind, for ReferenceGrants (`from.kind`).
    pub kind: &'a str,
    pub namespace: &'a str,
    /// `namespace/name/` of a ListenerSet, making its sources unique.
    pub source_prefix: Option<&'a str>,
}

/// One listener's state. The Gateway's `spec.tls.frontend` applies to
/// every listener on its ports, its own or a ListenerSet's.
pub(super) fn listener_state(
    snapshot: &Snapshot,
    gateway: &Gateway,
    owner: &Owner<'_>,
    listener: &GatewayListeners,
    config: &mut GatewayConfig,
) -> ListenerState {
    let tls = listener.tls.as_ref();
    let protocol = ListenerProtocol::parse(&listener.protocol, tls.and_then(|t| t.mode.as_ref()));
    let mut state = ListenerState {
        owner: owner.listener_owner,
        name: listener.name.clone(),
        source: match owner.source_prefix {
            Some(prefix) => format!("{prefix}{}", listener.name),
            None => listener.name.clone(),
        },
        namespace: owner.namespace.to_owned(),
        port: u16::try_from(listener.port).unwrap_or(0),
        protocol,
        hostname: listener.hostname.clone().filter(|h| !h.is_empty()),
        kinds: Vec::new(),
        allowed: AllowedFrom::Same,
        certificates: Vec::new(),
        client_validation: None,
        accepted: Ok(()),
        resolved: Ok(()),
        conflict: None,
        attached: 0,
    };
    let Some(protocol) = protocol else {
        state.accepted = Err(Problem {
            reason: reason::UNSUPPORTED_PROTOCOL,
            message: format!(
                "Protocol {:?} is not supported; use HTTP, HTTPS, TLS, TCP or UDP.",
                listener.protocol
            ),
        });
        return state;
    };
    if state.port == 0 {
        state.accepted = Err(Problem {
            reason: reason::PORT_UNAVAILABLE,
            message: format!("Port {} is not a valid port.", listener.port),
        });
        return state;
    }
    if protocol == ListenerProtocol::Https
        && tls.and_then(|t| t.mode.as_ref()) == Some(&GatewayListenersTlsMode::Passthrough)
    {
        state.accepted = Err(Problem {
            reason: reason::UNSUPPORTED_PROTOCOL,
            message: "An HTTPS listener terminates TLS; use protocol TLS for Passthrough."
                .to_owned(),
        });
        return state;
    }

    // Route kinds.
    let possible: Vec<RouteKind> = protocol
        .route_kinds()
        .iter()
        .copied()
        .filter(|kind| snapshot.served.routes.contains(kind))
        .collect();
    let allowed_routes = listener.allowed_routes.as_ref();
    match allowed_routes.and_then(|a| a.kinds.as_ref()) {
        Some(kinds) => {
            let mut invalid = Vec::new();
            for kind in kinds {
                let group_ok = kind.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP;
                match RouteKind::from_name(&kind.kind) {
                    Some(route_kind) if group_ok && possible.contains(&route_kind) => {
                        if !state.kinds.contains(&route_kind) {
                            state.kinds.push(route_kind);
                        }
                    }
                    Some(route_kind)
                        if group_ok && !snapshot.served.routes.contains(&route_kind) =>
                    {
                        invalid.push(format!("{} (its CRD is not installed)", kind.kind));
                    }
                    _ => invalid.push(kind.kind.clone()),
                }
            }
            if !invalid.is_empty() {
                state.resolved = Err(Problem {
                    reason: reason::INVALID_ROUTE_KINDS,
                    message: format!(
                        "Route kinds {} are not supported on a {} listener.",
                        invalid.join(", "),
                        listener.protocol
                    ),
                });
            }
        }
        None => state.kinds = possible,
    }
    state.allowed = match allowed_routes
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_ref())
    {
        Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => AllowedFrom::All,
        Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => AllowedFrom::Selector(
            allowed_routes
                .and_then(|a| a.namespaces.as_ref())
                .and_then(|n| n.selector.clone())
                .unwrap_or_default(),
        ),
        _ => AllowedFrom::Same,
    };

    // Certificates.
    let terminates = matches!(
        protocol,
        ListenerProtocol::Https | ListenerProtocol::Tls(TlsMode::Terminate)
    );
    if terminates {
        let refs = tls
            .and_then(|t| t.certificate_refs.clone())
            .unwrap_or_default();
        if refs.is_empty() && state.resolved.is_ok() {
            state.resolved = Err(Problem {
                reason: reason::INVALID_CERTIFICATE_REF,
                message: "A terminating listener needs at least one certificateRef.".to_owned(),
            });
        }
        for reference in refs {
            match server_certificate(
                snapshot,
                (GATEWAY_GROUP, owner.kind, owner.namespace),
                reference.group.as_deref(),
                reference.kind.as_deref(),
                &reference.name,
                reference.namespace.as_deref(),
            ) {
                Ok((key, certificate)) => {
                    config.certificates.insert(key.clone(), certificate);
                    state.certificates.push(key);
                }
                Err(problem) => {
                    if state.resolved.is_ok() {
                        state.resolved = Err(problem);
                    }
                }
            }
        }
        let gateway_namespace = gateway.metadata.namespace.as_deref().unwrap_or_default();
        match client_validation(snapshot, gateway, gateway_namespace, state.port, config) {
            Ok((validation, problem)) => {
                state.client_validation = validation;
                if let Some(problem) = problem
                    && state.resolved.is_ok()
                {
                    state.resolved = Err(problem);
                }
            }
            Err(problem) => {
                // No usable CA: the listener cannot check clients, so it is
                // not accepted at all rather than served without checking.
                state.accepted = Err(Problem {
                    reason: reason::NO_VALID_CA_CERTIFICATE,
                    message: format!(
                        "No CA certificate for client validation resolves: {}",
                        problem.message
                    ),
                });
                if state.resolved.is_ok() {
                    state.resolved = Err(problem);
                }
            }
        }
    }
    state
}

/// A CA certificate reference: group, kind, name, namespace.
type CaRef = (String, String, String, Option<String>);

/// `spec.tls.frontend`: the per-port entry, else the default. Returns the
/// validation with the CA bundles that resolve and the first problem with
/// the others; an error when none resolves.
fn client_validation(
    snapshot: &Snapshot,
    gateway: &Gateway,
    namespace: &str,
    port: u16,
    config: &mut GatewayConfig,
) -> Result<(Option<ClientValidation>, Option<Problem>), Problem> {
    let Some(frontend) = gateway.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return Ok((None, None));
    };
    let per_port = frontend
        .per_port
        .iter()
        .flatten()
        .find(|entry| entry.port == i32::from(port))
        .and_then(|entry| entry.tls.validation.as_ref());
    let (refs, insecure): (Vec<CaRef>, bool) = match per_port {
        Some(validation) => (
            validation
                .ca_certificate_refs
                .iter()
                .map(|r| (r.group.clone(), r.kind.clone(), r.name.clone(), r.namespace.clone()))
                .collect(),
            matches!(
                validation.mode,
                Some(gwapi::gateways::GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback)
            ),
        ),
        None => match frontend.default.validation.as_ref() {
            Some(validation) => (
                validation
                    .ca_certificate_refs
                    .iter()
                    .map(|r| (r.group.clone(), r.kind.clone(), r.name.clone(), r.namespace.clone()))
                    .collect(),
                matches!(
                    validation.mode,
                    Some(GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback)
                ),
            ),
            None => return Ok((None, None)),
        },
    };
    let mut bundles = Vec::new();
    let mut first_problem = None;
    for (group, kind, name, ref_namespace) in refs {
        match ca_bundle(
            snapshot,
            (GATEWAY_GROUP, "Gateway", namespace),
            &group,
            &kind,
            &name,
            ref_namespace.as_deref(),
        ) {
            Ok((key, pem)) => {
                config.ca_bundles.insert(key.clone(), pem);
                bundles.push(key);
            }
            Err(problem) => {
                first_problem.get_or_insert(problem);
            }
        }
    }
    if bundles.is_empty() {
        return Err(first_problem.unwrap_or(Problem {
            reason: reason::NO_VALID_CA_CERTIFICATE,
            message: "Client certificate validation names no CA certificate.".to_owned(),
        }));
    }
    Ok((
        Some(ClientValidation {
            ca_bundles: bundles,
            allow_missing: insecure,
        }),
        first_problem,
    ))
}

/// Listeners on one port must be of one compatible protocol group, and
/// listeners of one group on one port need distinct hostnames.
fn mark_conflicts(states: &mut [ListenerState]) {
    let mut by_socket: BTreeMap<(u16, bool), Vec<usize>> = BTreeMap::new();
    for (index, state) in states.iter().enumerate() {
        if let (Some(protocol), Ok(())) = (state.protocol, &state.accepted) {
            by_socket
                .entry((state.port, protocol == ListenerProtocol::Udp))
                .or_default()
                .push(index);
        }
    }
    for indices in by_socket.values() {
        let protocols: Vec<ListenerProtocol> =
            indices.iter().filter_map(|&i| states[i].protocol).collect();
        if !ListenerProtocol::can_share(&protocols) {
            for &i in indices {
                states[i].conflict = Some(Problem {
                    reason: reason::PROTOCOL_CONFLICT,
                    message: format!(
                        "Another listener uses port {} with an incompatible protocol.",
                        states[i].port
                    ),
                });
            }
            continue;
        }
        for (position, &i) in indices.iter().enumerate() {
            let hostname = states[i].hostname.clone().unwrap_or_default();
            let clash = indices.iter().enumerate().any(|(other_position, &j)| {
                other_position != position
                    && states[j].hostname.clone().unwrap_or_default() == hostname
            });
            if clash {
                states[i].conflict = Some(Problem {
                    reason: reason::HOSTNAME_CONFLICT,
                    message: format!(
                        "Another listener on port {} uses the same hostname {:?}.",
                        states[i].port, hostname
                    ),
                });
            }
        }
    }
}

/// Conflicts of the listeners from `first` on (those merged from
/// ListenerSets, in precedence order) with every listener before them that
/// stands: the earlier listener keeps its port and hostname, the later one
/// is conflicted. Listeners before `first` are left as they are.
pub(super) fn mark_later_conflicts(states: &mut [ListenerState], first: usize) {
    for later in first..states.len() {
        let (Some(protocol), Ok(())) = (states[later].protocol, &states[later].accepted) else {
            continue;
        };
        let udp = protocol == ListenerProtocol::Udp;
        let standing: Vec<&ListenerState> = states[..later]
            .iter()
            .filter(|earlier| {
                earlier.accepts_routes()
                    && earlier.port == states[later].port
                    && earlier
                        .protocol
                        .is_some_and(|p| (p == ListenerProtocol::Udp) == udp)
            })
            .collect();
        let mut protocols: Vec<ListenerProtocol> =
            standing.iter().filter_map(|s| s.protocol).collect();
        protocols.push(protocol);
        let port = states[later].port;
        let conflict = if !ListenerProtocol::can_share(&protocols) {
            Some(Problem::new(
                reason::PROTOCOL_CONFLICT,
                format!("An earlier listener uses port {port} with an incompatible protocol."),
            ))
        } else {
            let hostname = states[later].hostname.clone().unwrap_or_default();
            standing
                .iter()
                .any(|s| s.hostname.clone().unwrap_or_default() == hostname)
                .then(|| {
                    Problem::new(
                        reason::HOSTNAME_CONFLICT,
                        format!(
                            "An earlier listener on port {port} uses the same hostname {hostname:?}."
                        ),
                    )
                })
        };
        states[later].conflict = conflict;
    }
}
