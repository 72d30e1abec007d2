//! The pass over every Gateway: its parameters and listeners, the routes
//! that attach to it, its compiled config, and its status.

use std::collections::{BTreeMap, BTreeSet};

use gwapi::gateways::{Gateway, GatewayStatus};
use gwapi::listenersets::{ListenerSet, ListenerSetStatus};
use proxy_config::{GatewayConfig, ObjectRef, content_hash};

use super::addresses::{self, Requested};
use super::attachment::{Attachment, Listeners, attach};
use super::certificates::server_certificate;
use super::classes::ClassState;
use super::compiled::CompiledRoute;
use super::listener_sets::{self, SetState};
use super::listeners::{ListenerOwner, ListenerState, listeners};
use super::output::{GatewayPlan, ProxyParameters, Translation};
use super::parameters::{gateway_parameters, proxy_settings};
use super::routes::RouteView;
use super::rules;
use super::sockets;
use super::status::{
    GatewayFacts, Serving, listener_status, parent_status, policy_ancestors,
    traffic_policy_ancestors,
};
use crate::conditions::{Problem, reason};
use crate::keys::ObjectKey;
use crate::names;
use crate::snapshot::Snapshot;

/// One Gateway while translation works on it.
struct GatewayWork<'a> {
    key: ObjectKey,
    gateway: &'a Gateway,
    class: String,
    /// Why the Gateway is not accepted: the first of its class's refusal,
    /// its parameters' and its addresses'.
    refusal: Option<Problem>,
    parameters: ProxyParameters,
    addresses: Requested,
    /// The Gateway's own listeners, then those of its admitted
    /// ListenerSets.
    listeners: Vec<ListenerState>,
    /// How many of `listeners` are the Gateway's own.
    own_listeners: usize,
    /// Every ListenerSet naming the Gateway, in precedence order.
    sets: Vec<SetState>,
    config: GatewayConfig,
    attachments: Vec<Attachment>,
    /// `spec.tls.backend.clientCertificateRef`, resolved: the certificate
    /// key presented to TLS backends, or why it is not.
    backend_client_certificate: Result<Option<String>, Problem>,
}

/// Translates every Gateway, or only those in `only`: then the routes
/// passed must include every route with a parent among them, and only the
/// plans of the result are meaningful.
pub(super) fn translate(
    snapshot: &Snapshot,
    classes: BTreeMap<String, ClassState>,
    routes: &[RouteView],
    only: Option<&BTreeSet<ObjectKey>>,
) -> Translation {
    let mut works: Vec<GatewayWork<'_>> = Vec::new();
    let sets_by_gateway = listener_sets::by_gateway(snapshot);
    let mut gateways: Vec<&Gateway> = snapshot.gateways.iter().collect();
    gateways.sort_by_key(|g| ObjectKey::of(&g.metadata));
    for gateway in gateways {
        if only.is_some_and(|only| !only.contains(&ObjectKey::of(&gateway.metadata))) {
            continue;
        }
        let Some(class) = classes.get(&gateway.spec.gateway_class_name) else {
            continue;
        };
        let sets = sets_by_gateway
            .get(&ObjectKey::of(&gateway.metadata))
            .map(Vec::as_slice)
            .unwrap_or_default();
        works.push(gateway_work(snapshot, gateway, class, sets));
    }
    let index: BTreeMap<ObjectKey, usize> = works
        .iter()
        .enumerate()
        .map(|(i, w)| (w.key.clone(), i))
        .collect();
    // Each ListenerSet of a Gateway of ours: (its Gateway, its place there).
    let set_index: BTreeMap<ObjectKey, (usize, usize)> = works
        .iter()
        .enumerate()
        .flat_map(|(w, work)| {
            work.sets
                .iter()
                .enumerate()
                .map(move |(s, set)| (set.key.clone(), (w, s)))
        })
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
    // Each policy's Gateways, and what was wrong with it there.
    let mut policy_use: BTreeMap<ObjectKey, BTreeMap<ObjectKey, Option<Problem>>> = BTreeMap::new();
    let mut traffic_policy_use: BTreeMap<ObjectKey, BTreeMap<ObjectKey, Option<Problem>>> =
        BTreeMap::new();
    for (route_index, route) in routes.iter().enumerate() {
        let mut parents = Vec::new();
        let mut compiled_route: Option<CompiledRoute> = None;
        let mut seen_refs = BTreeSet::new();
        for parent in &route.parent_refs {
            // The Gateway the parentRef leads to, and whose listeners there.
            let (work_index, owner) = if parent.is_gateway() {
                match index.get(&route.parent_key(parent)) {
                    Some(&work_index) => (work_index, ListenerOwner::Gateway),
                    None => continue,
                }
            } else if listener_sets::is_listener_set(parent) {
                match set_index.get(&route.parent_key(parent)) {
                    Some(&(work_index, set)) => (work_index, ListenerOwner::ListenerSet(set)),
                    None => continue,
                }
            } else {
                continue;
            };
            if !seen_refs.insert(parent.clone()) {
                continue;
            }
            let compiled_route =
                compiled_route.get_or_insert_with(|| rules::compile(snapshot, route));
            let work = &mut works[work_index];
            let gateway_key = work.key.clone();
            let refused = match owner {
                ListenerOwner::ListenerSet(set) => work.sets[set].admitted.clone().err(),
                ListenerOwner::Gateway => None,
            };
            let outcome = match refused {
                Some(problem) => Err(Problem::new(
                    reason::NOT_ALLOWED_BY_LISTENERS,
                    format!(
                        "ListenerSet {} is not attached to its Gateway: {}",
                        parent.name, problem.message
                    ),
                )),
                None => attach(
                    snapshot,
                    Listeners {
                        owner,
                        parent_kind: if owner == ListenerOwner::Gateway {
                            "Gateway"
                        } else {
                            "ListenerSet"
                        },
                        states: &mut work.listeners,
                        attachments: &mut work.attachments,
                    },
                    route,
                    route_index,
                    parent,
                ),
            };
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
            for (policy, problem) in &compiled_route.traffic_policies {
                traffic_policy_use
                    .entry(policy.clone())
                    .or_default()
                    .insert(gateway_key.clone(), problem.clone());
            }
        }
        compiled.push(compiled_route.unwrap_or_default());
        translation.routes.insert(route.key(), parents);
    }

    for work in works {
        let (key, plan, sets) = plan(snapshot, work, routes, &compiled);
        translation.gateways.insert(key, plan);
        translation.listener_sets.extend(sets);
    }

    for policy in &snapshot.backend_tls_policies {
        let key = ObjectKey::of(&policy.metadata);
        let ancestors = policy_use
            .get(&key)
            .map(|uses| policy_ancestors(policy.metadata.generation, uses))
            .unwrap_or_default();
        translation.policies.insert(key, ancestors);
    }
    for policy in &snapshot.backend_traffic_policies {
        let key = ObjectKey::of(&policy.metadata);
        let ancestors = traffic_policy_use
            .get(&key)
            .map(|uses| traffic_policy_ancestors(policy.metadata.generation, uses))
            .unwrap_or_default();
        translation.traffic_policies.insert(key, ancestors);
    }
    translation
}

fn gateway_work<'a>(
    snapshot: &Snapshot,
    gateway: &'a Gateway,
    class: &ClassState,
    sets: &[&ListenerSet],
) -> GatewayWork<'a> {
    let key = ObjectKey::of(&gateway.metadata);
    let class_refusal = class.refusal.as_ref().map(|message| {
        Problem::new(
            reason::INVALID_PARAMETERS,
            format!(
                "GatewayClass {} is not accepted: {message}",
                gateway.spec.gateway_class_name
            ),
        )
    });
    let (parameters, parameters_problem) =
        gateway_parameters(snapshot, gateway, class.parameters.as_ref());
    let addresses = addresses::requested(gateway);
    let refusal = class_refusal
        .or(parameters_problem)
        .or_else(|| addresses.unsupported.clone());
    let mut config = GatewayConfig {
        gateway: ObjectRef {
            kind: "Gateway".to_owned(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        },
        ..GatewayConfig::default()
    };
    proxy_settings(&parameters.spec, &mut config.settings);
    let mut listener_states = listeners(snapshot, gateway, &mut config);
    let own_listeners = listener_states.len();
    let sets = listener_sets::merge(snapshot, gateway, sets, &mut listener_states, &mut config);
    let backend_client_certificate =
        backend_client_certificate(snapshot, gateway, &key.namespace, &mut config);
    GatewayWork {
        key,
        gateway,
        class: gateway.spec.gateway_class_name.clone(),
        refusal,
        parameters,
        addresses,
        listeners: listener_states,
        own_listeners,
        sets,
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
) -> Result<Option<String>, Problem> {
    let Some(reference) = gateway
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.backend.as_ref())
        .and_then(|b| b.client_certificate_ref.as_ref())
    else {
        return Ok(None);
    };
    match server_certificate(
        snapshot,
        (names::GATEWAY_GROUP, "Gateway", namespace),
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

/// The Gateway's plan, once every route has attached, and the status of
/// each ListenerSet naming it.
fn plan(
    snapshot: &Snapshot,
    mut work: GatewayWork<'_>,
    routes: &[RouteView],
    compiled: &[CompiledRoute],
) -> (ObjectKey, GatewayPlan, Vec<(ObjectKey, ListenerSetStatus)>) {
    let gateway = work.gateway;
    let (listeners_config, ports) =
        sockets::sockets(&work.listeners, &work.attachments, routes, compiled);
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

    let service = ObjectKey::new(
        work.key.namespace.clone(),
        names::provisioned(&work.key.name, &work.class),
    );
    let addresses = addresses::service_addresses(snapshot, &service);
    let address = addresses::assigned(&work.addresses, &addresses);
    let pods = snapshot
        .proxy_pods
        .get(&work.key)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let facts = GatewayFacts {
        observed_generation: gateway.metadata.generation,
        refusal: work.refusal.as_ref(),
        listeners: &work.listeners[..work.own_listeners],
        references: work.backend_client_certificate.as_ref().map(|_| ()),
        insecure_frontend: insecure_frontend_validation(gateway),
        address: address.as_ref().copied(),
        serving: Serving::of(pods, generation),
        proxy_failure: pods.iter().find_map(|p| p.failure.as_ref()),
        generation,
    };
    let programmed = facts.programmed();
    let conditions = facts.conditions();
    let listener_statuses = work.listeners[..work.own_listeners]
        .iter()
        .map(|listener| listener_status(listener, programmed, gateway.metadata.generation))
        .collect();
    let set_statuses: Vec<(ObjectKey, ListenerSetStatus)> = work
        .sets
        .iter()
        .map(|set| {
            let status = listener_sets::status(
                set,
                &work.listeners,
                work.refusal.as_ref(),
                programmed,
                |listener| listener_status(listener, programmed, set.generation),
            );
            (set.key.clone(), status)
        })
        .collect();
    let attached_sets = work
        .sets
        .iter()
        .filter(|set| set.accepted(&work.listeners))
        .count();
    let status = GatewayStatus {
        addresses: (!addresses.is_empty()).then_some(addresses),
        // Only CRDs that know ListenerSets have the field.
        attached_listener_sets: snapshot
            .served
            .listener_sets
            .then(|| i32::try_from(attached_sets).unwrap_or(i32::MAX)),
        conditions: Some(conditions),
        listeners: Some(listener_statuses),
    };
    let plan = GatewayPlan {
        class: work.class,
        uid: gateway.metadata.uid.clone().unwrap_or_default(),
        provision: work.refusal.is_none(),
        config: work.config,
        config_hash,
        generation,
        status,
        parameters: work.parameters,
        ports,
        requested_address: work.addresses.address,
    };
    (work.key, plan, set_statuses)
}
