//! What every status says: a Gateway's conditions and listeners, a route's
//! entry per parent, a policy's entry per ancestor.

use std::collections::BTreeMap;

use gwapi::gateways::{GatewayStatusListeners, GatewayStatusListenersSupportedKinds};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::compiled::CompiledRoute;
use super::listeners::ListenerState;
use super::output::{PolicyAncestorStatus, RouteParentStatus};
use super::routes::{ParentRef, RouteView};
use crate::conditions::{Problem, check, condition, reason};
use crate::keys::ObjectKey;
use crate::names::{CONTROLLER_NAME, GATEWAY_GROUP};
use crate::snapshot::ProxyPod;

/// What a Gateway's conditions are made of.
#[derive(Debug)]
pub(super) struct GatewayFacts<'a> {
    pub observed_generation: Option<i64>,
    /// Why the Gateway is not accepted (its class, its parameters, its
    /// addresses), if it is not: then no proxy runs for it.
    pub refusal: Option<&'a Problem>,
    pub listeners: &'a [ListenerState],
    /// The Gateway's own references (`spec.tls.backend`).
    pub references: Result<(), &'a Problem>,
    /// Where frontend validation lets clients without a certificate in.
    pub insecure_frontend: Option<String>,
    /// Whether the Gateway has its address.
    pub address: Result<(), &'a Problem>,
    /// What the ready proxy replicas serve.
    pub serving: Serving<'a>,
    /// A proxy's `ConfigApplied=False` reason and message.
    pub proxy_failure: Option<&'a (String, String)>,
    /// The config generation the Gateway's Secret carries.
    pub generation: u64,
}

/// What a Gateway's ready proxy replicas serve, against the generation its
/// Secret carries.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Serving<'a> {
    /// Ready replicas serving that generation or a later one.
    pub current: usize,
    /// Ready replicas still serving an older one, and the newest of those.
    pub older: usize,
    pub older_generation: u64,
    /// A replica's message saying it refused that generation (or a later
    /// one) and keeps serving an older one.
    pub refused: Option<&'a str>,
}

impl<'a> Serving<'a> {
    pub fn of(pods: &'a [ProxyPod], generation: u64) -> Serving<'a> {
        let mut serving = Serving::default();
        for pod in pods.iter().filter(|p| p.ready && !p.terminating) {
            match pod.applied_generation {
                Some(applied) if applied >= generation => serving.current += 1,
                Some(applied) => {
                    serving.older += 1;
                    serving.older_generation = serving.older_generation.max(applied);
                }
                None => {}
            }
        }
        serving.refused = pods.iter().find_map(|p| {
            p.refused
                .as_ref()
                .filter(|(refused, _)| *refused >= generation)
                .map(|(_, message)| message.as_str())
        });
        serving
    }
}

impl GatewayFacts<'_> {
    /// Whether a ready proxy serves the Gateway at its address: its newest
    /// config, or an older one while the newest is being applied (a busy
    /// Gateway does not flap), but not once the newest was refused.
    pub fn programmed(&self) -> bool {
        self.refusal.is_none()
            && self.address.is_ok()
            && (self.serving.current > 0
                || (self.serving.older > 0 && self.serving.refused.is_none()))
    }

    pub fn conditions(&self) -> Vec<Condition> {
        let generation = self.observed_generation;
        let total = self.listeners.len();
        let valid = self.listeners.iter().filter(|l| l.accepts_routes()).count();
        let mut conditions = vec![match self.refusal {
            Some(problem) => check(reason::ACCEPTED, Err(problem), "", generation),
            None if valid == 0 && total > 0 => condition(
                reason::ACCEPTED,
                false,
                reason::LISTENERS_NOT_VALID,
                "No listener is valid.",
                generation,
            ),
            None if valid < total => condition(
                reason::ACCEPTED,
                true,
                reason::LISTENERS_NOT_VALID,
                "Some listeners are not valid; the others are served.",
                generation,
            ),
            None => condition(
                reason::ACCEPTED,
                true,
                reason::ACCEPTED,
                "The Gateway is accepted.",
                generation,
            ),
        }];
        conditions.push(check(
            reason::RESOLVED_REFS,
            self.references,
            "All references of the Gateway resolved.",
            generation,
        ));
        if let Some(where_) = &self.insecure_frontend {
            conditions.push(condition(
                reason::INSECURE_FRONTEND_VALIDATION_MODE,
                true,
                reason::CONFIGURATION_CHANGED,
                format!("Client certificate validation lets clients without a certificate through ({where_}): AllowInsecureFallback."),
                generation,
            ));
        }
        let config = self.generation;
        conditions.push(if self.refusal.is_some() {
            condition(
                reason::PROGRAMMED,
                false,
                reason::INVALID,
                "The Gateway is not accepted, so no proxy runs for it.",
                generation,
            )
        } else if let Err(problem) = self.address {
            check(reason::PROGRAMMED, Err(problem), "", generation)
        } else if self.serving.current > 0 {
            condition(
                reason::PROGRAMMED,
                true,
                reason::PROGRAMMED,
                format!(
                    "{} proxy replica(s) serve config generation {config}.",
                    self.serving.current
                ),
                generation,
            )
        } else if let Some(refusal) = self.serving.refused {
            condition(
                reason::PROGRAMMED,
                false,
                reason::INVALID,
                format!("The proxy refused config generation {config} and serves an older one: {refusal}"),
                generation,
            )
        } else if self.serving.older > 0 {
            condition(
                reason::PROGRAMMED,
                true,
                reason::PROGRAMMED,
                format!(
                    "{} proxy replica(s) serve config generation {} while they apply generation {config}.",
                    self.serving.older, self.serving.older_generation
                ),
                generation,
            )
        } else {
            let message = match self.proxy_failure {
                Some((why, message)) => {
                    format!("No proxy replica serves config generation {config}: {why}: {message}")
                }
                None => {
                    format!(
                        "Waiting for a ready proxy replica to apply config generation {config}."
                    )
                }
            };
            condition(
                reason::PROGRAMMED,
                false,
                reason::PENDING,
                message,
                generation,
            )
        });
        conditions
    }
}

pub(super) fn listener_status(
    listener: &ListenerState,
    gateway_programmed: bool,
    generation: Option<i64>,
) -> GatewayStatusListeners {
    // A conflicted listener is not served, so it is not accepted either,
    // for the conflict's reason.
    let accepted = match (&listener.accepted, &listener.conflict) {
        (Ok(()), Some(conflict)) => Err(conflict),
        (outcome, _) => outcome.as_ref(),
    };
    let conditions = vec![
        check(
            reason::ACCEPTED,
            accepted.copied(),
            "The listener is valid.",
            generation,
        ),
        match &listener.conflict {
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
        },
        check(
            reason::RESOLVED_REFS,
            listener.resolved.as_ref().copied(),
            "All references resolved.",
            generation,
        ),
        if let Some(conflict) = &listener.conflict {
            condition(
                reason::PROGRAMMED,
                false,
                conflict.reason,
                conflict.message.clone(),
                generation,
            )
        } else if !listener.programmable() {
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
        },
    ];
    GatewayStatusListeners {
        attached_routes: listener.attached,
        conditions,
        name: listener.name.clone(),
        supported_kinds: Some(
            listener
                .kinds
                .iter()
                .map(|kind| GatewayStatusListenersSupportedKinds {
                    group: Some(GATEWAY_GROUP.to_owned()),
                    kind: kind.name().to_owned(),
                })
                .collect(),
        ),
    }
}

/// A route's entry for one parent: attached or why not, its references,
/// and the rules it had to drop.
pub(super) fn parent_status(
    route: &RouteView,
    parent: ParentRef,
    outcome: Result<(), Problem>,
    compiled: &CompiledRoute,
) -> RouteParentStatus {
    let generation = route.generation;
    let mut conditions = Vec::new();
    let all_rules_invalid = !route.rules.is_empty() && compiled.rules.is_empty();
    conditions.push(match (&outcome, all_rules_invalid) {
        (Err(problem), _) => check(reason::ACCEPTED, Err(problem), "", generation),
        (Ok(()), true) => condition(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_VALUE,
            format!("Every rule is invalid: {}", compiled.dropped.join(" ")),
            generation,
        ),
        (Ok(()), false) if compiled.not_honoured.is_empty() => condition(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            "The route is attached.",
            generation,
        ),
        (Ok(()), false) => condition(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            format!(
                "The route is attached. Not honoured: {}",
                compiled.not_honoured.join(" ")
            ),
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
                    .unwrap_or_else(|| GATEWAY_GROUP.to_owned()),
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

/// An XBackendTrafficPolicy's entries: one per Gateway whose backends it
/// applies to, Accepted or why not (Conflicted, Invalid).
pub(super) fn traffic_policy_ancestors(
    generation: Option<i64>,
    uses: &BTreeMap<ObjectKey, Option<Problem>>,
) -> Vec<PolicyAncestorStatus> {
    uses.iter()
        .map(|(gateway, problem)| PolicyAncestorStatus {
            ancestor_ref: gateway_ancestor(gateway),
            controller_name: CONTROLLER_NAME.to_owned(),
            conditions: vec![check(
                reason::ACCEPTED,
                problem.as_ref().map_or(Ok(()), Err),
                "The policy applies to the backends of this Gateway.",
                generation,
            )],
        })
        .collect()
}

fn gateway_ancestor(gateway: &ObjectKey) -> ParentRef {
    ParentRef {
        group: Some(GATEWAY_GROUP.to_owned()),
        kind: Some("Gateway".to_owned()),
        namespace: Some(gateway.namespace.clone()),
        name: gateway.name.clone(),
        section_name: None,
        port: None,
    }
}

/// A BackendTLSPolicy's entries: one per Gateway whose backends it applies
/// to, with what was wrong with it there.
pub(super) fn policy_ancestors(
    generation: Option<i64>,
    uses: &BTreeMap<ObjectKey, Option<Problem>>,
) -> Vec<PolicyAncestorStatus> {
    let resolved = || {
        condition(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "All references resolved.",
            generation,
        )
    };
    uses.iter()
        .map(|(gateway, problem)| {
            let conditions = match problem {
                None => vec![
                    condition(
                        reason::ACCEPTED,
                        true,
                        reason::ACCEPTED,
                        "The policy applies to the backends of this Gateway.",
                        generation,
                    ),
                    resolved(),
                ],
                Some(problem) if problem.reason == reason::CONFLICTED_POLICY => vec![
                    check(reason::ACCEPTED, Err(problem), "", generation),
                    resolved(),
                ],
                Some(problem) => vec![
                    condition(
                        reason::ACCEPTED,
                        false,
                        reason::NO_VALID_CA_CERTIFICATE,
                        problem.message.clone(),
                        generation,
                    ),
                    check(reason::RESOLVED_REFS, Err(problem), "", generation),
                ],
            };
            PolicyAncestorStatus {
                ancestor_ref: gateway_ancestor(gateway),
                controller_name: CONTROLLER_NAME.to_owned(),
                conditions,
            }
        })
        .collect()
}
