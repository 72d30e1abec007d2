//! Per Gateway: parameters, listeners, route attachment, the compiled
//! config and the Gateway's status.

use std::collections::{BTreeMap, BTreeSet};

use crds::ProxyConfigSpec;
use gwapi::gateways::{
    Gateway, GatewayStatus, GatewayStatusAddresses, GatewayStatusListeners,
    GatewayStatusListenersSupportedKinds,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proxy_config::{GatewayConfig, ObjectRef, content_hash};

use super::classes::ClassState;
use super::listeners::{ListenerState, listeners};
use super::routes::{ParentRef, RouteView, hostname_intersection};
use super::rules::{self, CompiledRoute};
use super::stream;
use super::tls::RefProblem;
use super::{GatewayPlan, PolicyAncestorStatus, RouteParentStatus, Translation};
use crate::conditions::{condition, reason};
use crate::snapshot::{Key, RouteKind, Snapshot, key_of};
use crate::{CONTROLLER_NAME, names};

/// How the proxy of a Gateway runs: the class's ProxyConfig with the
/// Gateway's merged over it field by field, and `spec.infrastructure`'s
/// labels and annotations for every generated object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyParameters {
    pub spec: ProxyConfigSpec,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A route attached to one listener of one Gateway.
#[derive(Debug, Clone)]
pub(super) struct Attachment {
    pub route: usize,
    pub listener: usize,
    /// Hostnames it serves there; empty: any.
    pub hostnames: Vec<String>,
}

struct GatewayWork<'a> {
    key: Key,
    gateway: &'a Gateway,
    class: String,
    refusal: Option<RefProblem>,
    parameters: ProxyParameters,
    requested_address: Option<String>,
    /// More IP addresses than the one a Service can carry.
    extra_addresses: Vec<String>,
    listeners: Vec<ListenerState>,
    config: GatewayConfig,
    attachments: Vec<Attachment>,
    /// `spec.tls.backend.clientCertificateRef`, resolved: the certificate
    /// key presented to TLS backends, or why it is not.
    backend_client_certificate: Result<Option<String>, RefProblem>,
}

/// Translates every Gateway, or only those in `only`: then the routes
/// passed must include every route with a parent among them, and only the
/// plans of the result are meaningful.
pub(super) fn translate(
    snapshot: &Snapshot,
    classes: BTreeMap<String, ClassState>,
    routes: &[RouteView],
    only: Option<&BTreeSet<Key>>,
) -> Translation {
    let mut works: Vec<GatewayWork<'_>> = Vec::new();
    let mut gateways: Vec<&Gateway> = snapshot.gateways.iter().collect();
    gateways.sort_by_key(|g| key_of(&g.metadata));
    for gateway in gateways {
        if only.is_some_and(|only| !only.contains(&key_of(&gateway.metadata))) {
            continue;
        }
        let Some(class) = classes.get(&gateway.spec.gateway_class_name) else {
            continue;
        };
        works.push(gateway_work(snapshot, gateway, class));
    }
    let index: BTreeMap<Key, usize> = works
        .iter()
        .enumerate()
        .map(|(i, w)| (w.key.clone(), i))
        .collect();

    let mut translation = Translation {
        classes: classes
            .iter()
            .map(|(name, state)| (name.clone(), state.status.clone()))
            .collect(),
        ..Translation::default()
    };

    // Routes: compile once, attach to every parent of ours.
    let mut compiled: Vec<CompiledRoute> = Vec::with_capacity(routes.len());
    let mut policy_use: BTreeMap<Key, BTreeMap<Key, Option<RefProblem>>> = BTreeMap::new();
    for (route_index, route) in routes.iter().enumerate() {
        let mut parents = Vec::new();
        let mut attached_somewhere = false;
        let mut compiled_route: Option<CompiledRoute> = None;
        let mut seen_refs = BTreeSet::new();
        for parent in &route.parent_refs {
            if !parent.is_gateway() {
                continue;
            }
            let gateway_key = (
                parent
                    .namespace
                    .clone()
                    .unwrap_or_else(|| route.namespace.clone()),
                parent.name.clone(),
            );
            let Some(&work_index) = index.get(&gateway_key) else {
                continue;
            };
            if !seen_refs.insert(parent.clone()) {
                continue;
            }
            let compiled_route =
                compiled_route.get_or_insert_with(|| rules::compile(snapshot, route));
            let work = &mut works[work_index];
            let outcome = attach(snapshot, work, route, route_index, parent);
            attached_somewhere |= outcome.is_ok();
            parents.push(parent_status(
                route,
                parent.clone(),
                outcome,
                compiled_route,
            ));
            if compiled_route.rules.is_empty() && !route.rules.is_empty() {
                continue;
            }
            for (policy, problem) in &compiled_route.policies {
                policy_use
                    .entry(policy.clone())
                    .or_default()
                    .insert(gateway_key.clone(), problem.clone());
            }
        }
        let _ = attached_somewhere;
        compiled.push(compiled_route.unwrap_or_default());
        translation.routes.insert(
            (route.kind, (route.namespace.clone(), route.name.clone())),
            parents,
        );
    }

    for work in works {
        let plan = plan(snapshot, work, routes, &compiled);
        translation.gateways.insert(plan.0, plan.1);
    }

    for policy in &snapshot.backend_tls_policies {
        let key = key_of(&policy.metadata);
        let ancestors = policy_use
            .get(&key)
            .map(|gateways| {
                gateways
                    .iter()
                    .map(|(gateway, problem)| {
                        let generation = policy.metadata.generation;
                        let conditions = match problem {
                            None => vec![
                                condition(
                                    reason::ACCEPTED,
                                    true,
                                    reason::ACCEPTED,
                                    "The policy applies to the backends of this Gateway.",
                                    generation,
                                ),
                                condition(
                                    reason::RESOLVED_REFS,
                                    true,
                                    reason::RESOLVED_REFS,
                                    "All references resolved.",
                                    generation,
                                ),
                            ],
                            Some(problem) if problem.reason == reason::CONFLICTED_POLICY => vec![
                                condition(
                                    reason::ACCEPTED,
                                    false,
                                    reason::CONFLICTED_POLICY,
                                    problem.message.clone(),
                                    generation,
                                ),
                                condition(
                                    reason::RESOLVED_REFS,
                                    true,
                                    reason::RESOLVED_REFS,
                                    "All references resolved.",
                                    generation,
                                ),
                            ],
                            Some(problem) => vec![
                                condition(
                                    reason::ACCEPTED,
                                    false,
                                    reason::NO_VALID_CA_CERTIFICATE,
                                    problem.message.clone(),
                                    generation,
                                ),
                                condition(
                                    reason::RESOLVED_REFS,
                                    false,
                                    problem.reason,
                                    problem.message.clone(),
                                    generation,
                                ),
                            ],
                        };
                        PolicyAncestorStatus {
                            ancestor_ref: ParentRef {
                                group: Some(crate::GATEWAY_GROUP.to_owned()),
                                kind: Some("Gateway".to_owned()),
                                namespace: Some(gateway.0.clone()),
                                name: gateway.1.clone(),
                                section_name: None,
                                port: None,
                            },
                            controller_name: CONTROLLER_NAME.to_owned(),
                            conditions,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        translation.policies.insert(key, ancestors);
    }
    translation
}

fn gateway_work<'a>(
    snapshot: &Snapshot,
    gateway: &'a Gateway,
    class: &ClassState,
) -> GatewayWork<'a> {
    let key = key_of(&gateway.metadata);
    let mut refusal = class.refusal.as_ref().map(|message| RefProblem {
        reason: reason::INVALID_PARAMETERS,
        message: format!(
            "GatewayClass {} is not accepted: {message}",
            gateway.spec.gateway_class_name
        ),
    });
    let infrastructure = gateway.spec.infrastructure.clone().unwrap_or_default();
    let mut spec = class.parameters.clone().unwrap_or_default();
    if let Some(reference) = &infrastructure.parameters_ref {
        if reference.group != crds::GROUP || reference.kind != "ProxyConfig" {
            refusal.get_or_insert(RefProblem {
                reason: reason::INVALID_PARAMETERS,
                message: format!(
                    "spec.infrastructure.parametersRef must name a ProxyConfig of group {}, not {} of group {:?}.",
                    crds::GROUP,
                    reference.kind,
                    reference.group
                ),
            });
        } else {
            match snapshot
                .proxy_configs
                .get(&(key.0.clone(), reference.name.clone()))
            {
                Some(own) => spec = merge_specs(&spec, &own.spec),
                None => {
                    refusal.get_or_insert(RefProblem {
                        reason: reason::INVALID_PARAMETERS,
                        message: format!(
                            "spec.infrastructure.parametersRef: ProxyConfig {}/{} does not exist.",
                            key.0, reference.name
                        ),
                    });
                }
            }
        }
    }
    let mut requested_address = None;
    let mut extra_addresses = Vec::new();
    for address in gateway.spec.addresses.iter().flatten() {
        let kind = address.r#type.as_deref().unwrap_or("IPAddress");
        let value = address.value.clone().unwrap_or_default();
        if kind != "IPAddress" {
            refusal.get_or_insert(RefProblem {
                reason: reason::UNSUPPORTED_ADDRESS,
                message: format!("Address type {kind} is not supported; use IPAddress."),
            });
        } else if value.is_empty() {
            // An address of a type, no value: any address will do.
        } else if value.parse::<std::net::IpAddr>().is_err() {
            refusal.get_or_insert(RefProblem {
                reason: reason::UNSUPPORTED_ADDRESS,
                message: format!("{value:?} is not an IP address."),
            });
        } else if requested_address.is_none() {
            requested_address = Some(value);
        } else {
            extra_addresses.push(value);
        }
    }
    let mut config = GatewayConfig {
        gateway: ObjectRef {
            kind: "Gateway".to_owned(),
            namespace: key.0.clone(),
            name: key.1.clone(),
        },
        ..GatewayConfig::default()
    };
    settings_from(&spec, &mut config);
    let listener_states = listeners(snapshot, gateway, &mut config);
    let backend_client_certificate =
        backend_client_certificate(snapshot, gateway, &key.0, &mut config);
    GatewayWork {
        key,
        gateway,
        class: gateway.spec.gateway_class_name.clone(),
        refusal,
        parameters: ProxyParameters {
            spec,
            labels: infrastructure.labels.unwrap_or_default(),
            annotations: infrastructure.annotations.unwrap_or_default(),
        },
        requested_address,
        extra_addresses,
        listeners: listener_states,
        config,
        attachments: Vec::new(),
        backend_client_certificate,
    }
}

/// Where `spec.tls.frontend` allows clients without a certificate, if anywhere.
fn insecure_frontend_validation(gateway: &Gateway) -> Option<String> {
    use gwapi::gateways::{
        GatewayTlsFrontendDefaultValidationMode, GatewayTlsFrontendPerPortTlsValidationMode,
    };
    let frontend = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let mut places = Vec::new();
    if frontend
        .default
        .validation
        .as_ref()
        .and_then(|v| v.mode.as_ref())
        == Some(&GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback)
    {
        places.push("by default".to_owned());
    }
    for entry in frontend.per_port.iter().flatten() {
        if entry.tls.validation.as_ref().and_then(|v| v.mode.as_ref())
            == Some(&GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback)
        {
            places.push(format!("port {}", entry.port));
        }
    }
    (!places.is_empty()).then(|| places.join(", "))
}

/// The certificate the proxy presents to backends it re-encrypts to.
fn backend_client_certificate(
    snapshot: &Snapshot,
    gateway: &Gateway,
    namespace: &str,
    config: &mut GatewayConfig,
) -> Result<Option<String>, RefProblem> {
    let Some(reference) = gateway
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.backend.as_ref())
        .and_then(|b| b.client_certificate_ref.as_ref())
    else {
        return Ok(None);
    };
    match super::tls::server_certificate(
        snapshot,
        namespace,
        reference.group.as_deref(),
        reference.kind.as_deref(),
        &reference.name,
        reference.namespace.as_deref(),
    ) {
        Ok((key, certificate)) => {
            config.certificates.insert(key.clone(), certificate);
            Ok(Some(key))
        }
        Err(mut problem) => {
            if problem.reason == reason::INVALID_CERTIFICATE_REF {
                problem.reason = reason::INVALID_CLIENT_CERTIFICATE_REF;
            }
            problem.message = format!("spec.tls.backend.clientCertificateRef: {}", problem.message);
            Err(problem)
        }
    }
}

/// Proxy-wide settings the ProxyConfig decides.
fn settings_from(spec: &ProxyConfigSpec, config: &mut GatewayConfig) {
    use super::parse_duration_ms;
    let shutdown = spec.shutdown.clone().unwrap_or_default();
    config.settings.drain_timeout_ms = Some(
        shutdown
            .drain_timeout
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(60_000),
    );
    config.settings.min_drain_ms = Some(
        shutdown
            .min_drain_duration
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(5_000),
    );
    if let Some(access) = spec.logging.as_ref().and_then(|l| l.access_log.as_ref())
        && access.enabled
    {
        config.settings.access_log = match access.format {
            Some(crds::AccessLogFormat::Text) => proxy_config::AccessLog::Text,
            _ => proxy_config::AccessLog::Json,
        };
    }
}

/// The Gateway's ProxyConfig over the class's, field by field: objects merge
/// recursively, anything else set by the Gateway replaces the class's.
pub fn merge_specs(class: &ProxyConfigSpec, gateway: &ProxyConfigSpec) -> ProxyConfigSpec {
    fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
        match (base, over) {
            (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
                for (key, value) in over {
                    merge(base.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
            (base, over) => *base = over,
        }
    }
    let (Ok(mut base), Ok(over)) = (serde_json::to_value(class), serde_json::to_value(gateway))
    else {
        return gateway.clone();
    };
    // With the Gateway's own autoscaling, the class's replicas no longer
    // apply, and the other way round: they are mutually exclusive.
    if over.get("autoscaling").is_some()
        && let Some(object) = base.as_object_mut()
    {
        object.remove("replicas");
    }
    if over.get("replicas").is_some()
        && let Some(object) = base.as_object_mut()
    {
        object.remove("autoscaling");
    }
    merge(&mut base, over);
    serde_json::from_value(base).unwrap_or_else(|_| gateway.clone())
}

/// Attaches a route through one parentRef; the error is the `Accepted`
/// reason and message.
fn attach(
    snapshot: &Snapshot,
    work: &mut GatewayWork<'_>,
    route: &RouteView,
    route_index: usize,
    parent: &ParentRef,
) -> Result<(), RefProblem> {
    let gateway_namespace = work.key.0.clone();
    let candidates: Vec<usize> = work
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| parent.section_name.as_deref().is_none_or(|s| s == l.name))
        .filter(|(_, l)| parent.port.is_none_or(|p| p == i32::from(l.port)))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return Err(RefProblem {
            reason: reason::NO_MATCHING_PARENT,
            message: match (&parent.section_name, parent.port) {
                (Some(section), _) => {
                    format!("Gateway {} has no listener named {section:?}.", parent.name)
                }
                (None, Some(port)) => {
                    format!("Gateway {} has no listener on port {port}.", parent.name)
                }
                _ => format!("Gateway {} has no listeners.", parent.name),
            },
        });
    }
    let labels = snapshot.namespace_labels(&route.namespace);
    let mut not_allowed = None;
    let mut no_hostname = None;
    let mut attached = false;
    for listener_index in candidates {
        let listener = &work.listeners[listener_index];
        if !listener.accepts_routes() {
            not_allowed.get_or_insert(format!(
                "Listener {:?} is not accepted or is conflicted.",
                listener.name
            ));
            continue;
        }
        if !listener.kinds.contains(&route.kind) {
            not_allowed.get_or_insert(format!(
                "Listener {:?} does not allow {}s.",
                listener.name,
                route.kind.name()
            ));
            continue;
        }
        if !listener.allows_namespace(&gateway_namespace, &route.namespace, &labels) {
            not_allowed.get_or_insert(format!(
                "Listener {:?} does not allow routes from namespace {}.",
                listener.name, route.namespace
            ));
            continue;
        }
        let hostnames = if matches!(
            route.kind,
            RouteKind::Http | RouteKind::Grpc | RouteKind::Tls
        ) {
            match hostname_intersection(listener.hostname.as_deref(), &route.hostnames) {
                Some(hostnames) => hostnames,
                None => {
                    no_hostname.get_or_insert(format!(
                        "No hostname of the route matches listener {:?} ({}).",
                        listener.name,
                        listener.hostname.as_deref().unwrap_or("any")
                    ));
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        attached = true;
        let already = work
            .attachments
            .iter()
            .any(|a| a.route == route_index && a.listener == listener_index);
        if !already {
            work.listeners[listener_index].attached += 1;
            work.attachments.push(Attachment {
                route: route_index,
                listener: listener_index,
                hostnames,
            });
        }
    }
    if attached {
        return Ok(());
    }
    Err(match (not_allowed, no_hostname) {
        (_, Some(message)) => RefProblem {
            reason: reason::NO_MATCHING_LISTENER_HOSTNAME,
            message,
        },
        (Some(message), None) => RefProblem {
            reason: reason::NOT_ALLOWED_BY_LISTENERS,
            message,
        },
        (None, None) => RefProblem {
            reason: reason::NO_MATCHING_PARENT,
            message: "No listener matches.".to_owned(),
        },
    })
}

fn parent_status(
    route: &RouteView,
    parent: ParentRef,
    outcome: Result<(), RefProblem>,
    compiled: &CompiledRoute,
) -> RouteParentStatus {
    let generation = route.generation;
    let mut conditions = Vec::new();
    let all_rules_invalid = !route.rules.is_empty() && compiled.rules.is_empty();
    conditions.push(match (&outcome, all_rules_invalid) {
        (Err(problem), _) => condition(
            reason::ACCEPTED,
            false,
            problem.reason,
            problem.message.clone(),
            generation,
        ),
        (Ok(()), true) => condition(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_VALUE,
            format!("Every rule is invalid: {}", compiled.dropped.join(" ")),
            generation,
        ),
        (Ok(()), false) => condition(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            "The route is attached.",
            generation,
        ),
    });
    conditions.push(match compiled.unresolved.first() {
        None => condition(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "All references resolved.",
            generation,
        ),
        Some(first) => condition(
            reason::RESOLVED_REFS,
            false,
            first.reason,
            compiled
                .unresolved
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            generation,
        ),
    });
    if !compiled.dropped.is_empty() && !all_rules_invalid {
        conditions.push(condition(
            reason::PARTIALLY_INVALID,
            true,
            reason::UNSUPPORTED_VALUE,
            format!("Some rules were dropped: {}", compiled.dropped.join(" ")),
            generation,
        ));
    }
    RouteParentStatus {
        parent_ref: ParentRef {
            group: Some(
                parent
                    .group
                    .clone()
                    .unwrap_or_else(|| crate::GATEWAY_GROUP.to_owned()),
            ),
            kind: Some(parent.kind.clone().unwrap_or_else(|| "Gateway".to_owned())),
            namespace: Some(
                parent
                    .namespace
                    .clone()
                    .unwrap_or_else(|| route.namespace.clone()),
            ),
            ..parent
        },
        controller_name: CONTROLLER_NAME.to_owned(),
        conditions,
    }
}

fn plan(
    snapshot: &Snapshot,
    mut work: GatewayWork<'_>,
    routes: &[RouteView],
    compiled: &[CompiledRoute],
) -> (Key, GatewayPlan) {
    let gateway = work.gateway;
    let generation_of_gateway = gateway.metadata.generation;
    let (listeners_config, ports) = stream::sockets(
        &work.listeners,
        &work.attachments,
        routes,
        compiled,
        &mut work.config,
    );
    work.config.listeners = listeners_config;
    for attachment in &work.attachments {
        let route = &compiled[attachment.route];
        for (key, backend) in &route.backends {
            work.config.backends.insert(key.clone(), backend.clone());
        }
        for (key, pem) in &route.ca_bundles {
            work.config.ca_bundles.insert(key.clone(), pem.clone());
        }
    }
    if let Ok(Some(certificate)) = &work.backend_client_certificate {
        for backend in work.config.backends.values_mut() {
            if let Some(tls) = backend.tls.as_mut() {
                tls.client_certificate = Some(certificate.clone());
            }
        }
    }
    let config_hash = content_hash(&work.config);
    let deployed = snapshot
        .deployed
        .get(&work.key)
        .cloned()
        .unwrap_or_default();
    let generation = if deployed.hash == config_hash && deployed.generation > 0 {
        deployed.generation
    } else {
        deployed.generation + 1
    };

    // Address and readiness.
    let service_name = names::provisioned(&work.key.1, &work.class);
    let addresses = service_addresses(snapshot, &work.key.0, &service_name);
    let pods = snapshot
        .proxy_pods
        .get(&work.key)
        .cloned()
        .unwrap_or_default();
    let ready_current = pods.iter().filter(|p| {
        p.ready && !p.terminating && p.applied_generation.is_some_and(|g| g >= generation)
    });
    let ready_count = ready_current.count();
    let failure = pods.iter().find_map(|p| p.failure.clone());
    let provision = work.refusal.is_none();

    let valid_listeners = work.listeners.iter().filter(|l| l.accepts_routes()).count();
    let mut conditions: Vec<Condition> = Vec::new();
    conditions.push(match (&work.refusal, valid_listeners) {
        (Some(problem), _) => condition(
            reason::ACCEPTED,
            false,
            problem.reason,
            problem.message.clone(),
            generation_of_gateway,
        ),
        (None, 0) if !work.listeners.is_empty() => condition(
            reason::ACCEPTED,
            false,
            reason::LISTENERS_NOT_VALID,
            "No listener is valid.",
            generation_of_gateway,
        ),
        (None, n) if n < work.listeners.len() => condition(
            reason::ACCEPTED,
            true,
            reason::LISTENERS_NOT_VALID,
            "Some listeners are not valid; the others are served.",
            generation_of_gateway,
        ),
        (None, _) => condition(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            "The Gateway is accepted.",
            generation_of_gateway,
        ),
    });
    conditions.push(match &work.backend_client_certificate {
        Ok(_) => condition(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "All references of the Gateway resolved.",
            generation_of_gateway,
        ),
        Err(problem) => condition(
            reason::RESOLVED_REFS,
            false,
            problem.reason,
            problem.message.clone(),
            generation_of_gateway,
        ),
    });
    if let Some(where_) = insecure_frontend_validation(gateway) {
        conditions.push(condition(
            reason::INSECURE_FRONTEND_VALIDATION_MODE,
            true,
            reason::CONFIGURATION_CHANGED,
            format!("Client certificate validation lets clients without a certificate through ({where_}): AllowInsecureFallback."),
            generation_of_gateway,
        ));
    }
    let address_ok = match (&work.requested_address, addresses.first()) {
        _ if !work.extra_addresses.is_empty() => Err((
            reason::ADDRESS_NOT_USABLE,
            format!(
                "A Gateway gets one IP address; {} cannot be assigned as well.",
                work.extra_addresses.join(", ")
            ),
        )),
        (_, None) => Err((
            reason::ADDRESS_NOT_ASSIGNED,
            "The Gateway's Service has no address yet.".to_owned(),
        )),
        (Some(requested), Some(_)) if !addresses.iter().any(|a| &a.value == requested) => Err((
            reason::ADDRESS_NOT_USABLE,
            format!("The requested address {requested} could not be assigned."),
        )),
        _ => Ok(()),
    };
    let programmed = provision && address_ok.is_ok() && ready_count > 0;
    conditions.push(if !provision {
        condition(
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "The Gateway is not accepted, so no proxy runs for it.",
            generation_of_gateway,
        )
    } else if let Err((why, message)) = &address_ok {
        condition(
            reason::PROGRAMMED,
            false,
            why,
            message.clone(),
            generation_of_gateway,
        )
    } else if ready_count == 0 {
        let message = match &failure {
            Some((why, message)) => {
                format!("No proxy replica serves config generation {generation}: {why}: {message}")
            }
            None => format!(
                "Waiting for a ready proxy replica to apply config generation {generation}."
            ),
        };
        condition(
            reason::PROGRAMMED,
            false,
            reason::PENDING,
            message,
            generation_of_gateway,
        )
    } else {
        condition(
            reason::PROGRAMMED,
            true,
            reason::PROGRAMMED,
            format!("{ready_count} proxy replica(s) serve config generation {generation}."),
            generation_of_gateway,
        )
    });

    let listener_statuses = work
        .listeners
        .iter()
        .map(|listener| listener_status(listener, programmed, generation_of_gateway))
        .collect();
    let status = GatewayStatus {
        addresses: if addresses.is_empty() {
            None
        } else {
            Some(addresses)
        },
        attached_listener_sets: None,
        conditions: Some(conditions),
        listeners: Some(listener_statuses),
    };
    (
        work.key.clone(),
        GatewayPlan {
            class: work.class.clone(),
            uid: gateway.metadata.uid.clone().unwrap_or_default(),
            provision,
            config: work.config,
            config_hash,
            generation,
            status,
            parameters: work.parameters,
            ports,
            requested_address: work.requested_address,
        },
    )
}

fn listener_status(
    listener: &ListenerState,
    gateway_programmed: bool,
    generation: Option<i64>,
) -> GatewayStatusListeners {
    let mut conditions = Vec::new();
    conditions.push(match &listener.accepted {
        Ok(()) => condition(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            "The listener is valid.",
            generation,
        ),
        Err(problem) => condition(
            reason::ACCEPTED,
            false,
            problem.reason,
            problem.message.clone(),
            generation,
        ),
    });
    conditions.push(match &listener.conflict {
        None => condition(
            reason::CONFLICTED,
            false,
            reason::NO_CONFLICTS,
            "No conflicts.",
            generation,
        ),
        Some(problem) => condition(
            reason::CONFLICTED,
            true,
            problem.reason,
            problem.message.clone(),
            generation,
        ),
    });
    conditions.push(match &listener.resolved {
        Ok(()) => condition(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "All references resolved.",
            generation,
        ),
        Err(problem) => condition(
            reason::RESOLVED_REFS,
            false,
            problem.reason,
            problem.message.clone(),
            generation,
        ),
    });
    conditions.push(if !listener.programmable() {
        condition(
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "The listener is not valid, so it is not served.",
            generation,
        )
    } else if gateway_programmed {
        condition(
            reason::PROGRAMMED,
            true,
            reason::PROGRAMMED,
            "The listener is served.",
            generation,
        )
    } else {
        condition(
            reason::PROGRAMMED,
            false,
            reason::PENDING,
            "Waiting for the proxy to serve the listener.",
            generation,
        )
    });
    GatewayStatusListeners {
        attached_routes: listener.attached,
        conditions,
        name: listener.name.clone(),
        supported_kinds: Some(
            listener
                .kinds
                .iter()
                .map(|kind| GatewayStatusListenersSupportedKinds {
                    group: Some(crate::GATEWAY_GROUP.to_owned()),
                    kind: kind.name().to_owned(),
                })
                .collect(),
        ),
    }
}

/// Addresses of the provisioned Service: load balancer ingress, else the
/// cluster IP for Services of type ClusterIP.
fn service_addresses(
    snapshot: &Snapshot,
    namespace: &str,
    name: &str,
) -> Vec<GatewayStatusAddresses> {
    let Some(service) = snapshot
        .services
        .get(&(namespace.to_owned(), name.to_owned()))
    else {
        return Vec::new();
    };
    let mut addresses = Vec::new();
    for ingress in service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(ip) = &ingress.ip {
            addresses.push(GatewayStatusAddresses {
                r#type: Some("IPAddress".to_owned()),
                value: ip.clone(),
            });
        } else if let Some(hostname) = &ingress.hostname {
            addresses.push(GatewayStatusAddresses {
                r#type: Some("Hostname".to_owned()),
                value: hostname.clone(),
            });
        }
    }
    let spec = service.spec.clone().unwrap_or_default();
    if addresses.is_empty()
        && spec.type_.as_deref() == Some("ClusterIP")
        && let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None")
    {
        addresses.push(GatewayStatusAddresses {
            r#type: Some("IPAddress".to_owned()),
            value: ip,
        });
    }
    addresses
}
