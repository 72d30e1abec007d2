//! Route rules to the proxy's rules: matches, filters and weighted
//! backends. One bad rule is dropped alone (and reported); one bad backend
//! keeps its share of traffic answering 500, as the spec asks.

use gwapi::httproutes::{HttpRouteRulesBackendRefs, HttpRouteRulesFilters};
use proxy_config::{BackendTarget, HttpRule, RouteRef, Timeouts, WeightedBackend};

use super::backends::{BackendRefFields, BackendUse, resolve};
use super::compiled::{CompiledRoute, CompiledRule};
use super::filters::filters;
use super::matches::{grpc_matches, http_matches};
use super::routes::{RouteView, RuleMatches};
use crate::conditions::{Problem, reason};
use crate::convert::{parse_duration_ms, reshape};
use crate::keys::ObjectKey;
use crate::snapshot::Snapshot;

pub(super) fn compile(snapshot: &Snapshot, route: &RouteView) -> CompiledRoute {
    let mut out = CompiledRoute::default();
    for (index, rule) in route.rules.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let route_ref = RouteRef {
            kind: route.kind.name().to_owned(),
            namespace: route.namespace.clone(),
            name: route.name.clone(),
            rule: index,
        };
        let matches = match &rule.matches {
            RuleMatches::Http(matches) => http_matches(matches),
            RuleMatches::Grpc(matches) => grpc_matches(matches),
            RuleMatches::None => Ok(Vec::new()),
        };
        let matches = match matches {
            Ok(matches) => matches,
            Err(message) => {
                out.dropped.push(format!(
                    "rule {}: {message}",
                    rule_label(rule.name.as_deref(), index)
                ));
                continue;
            }
        };
        let filters = match filters(snapshot, route, &rule.filters, &mut out) {
            Ok(filters) => filters,
            Err(message) => {
                out.dropped.push(format!(
                    "rule {}: {message}",
                    rule_label(rule.name.as_deref(), index)
                ));
                continue;
            }
        };
        let mut backends = Vec::new();
        let mut rule_error = None;
        for reference in &rule.backends {
            match weighted_backend(snapshot, route, reference, &mut out) {
                Ok(backend) => backends.push(backend),
                Err(message) => rule_error = Some(message),
            }
        }
        if let Some(message) = rule_error {
            out.dropped.push(format!(
                "rule {}: {message}",
                rule_label(rule.name.as_deref(), index)
            ));
            continue;
        }
        let timeouts = rule.timeouts.as_ref().map(|t| Timeouts {
            request_ms: t
                .request
                .as_deref()
                .and_then(parse_duration_ms)
                .filter(|ms| *ms > 0),
            backend_request_ms: t
                .backend_request
                .as_deref()
                .and_then(parse_duration_ms)
                .filter(|ms| *ms > 0),
        });
        out.rules.push(CompiledRule {
            rule: HttpRule {
                route: route_ref,
                filters,
                backends,
                timeouts: timeouts
                    .filter(|t| t.request_ms.is_some() || t.backend_request_ms.is_some()),
                retry: None,
            },
            matches,
        });
    }
    out
}

fn rule_label(name: Option<&str>, index: u32) -> String {
    match name {
        Some(name) => format!("{index} ({name})"),
        None => index.to_string(),
    }
}

fn weighted_backend(
    snapshot: &Snapshot,
    route: &RouteView,
    reference: &HttpRouteRulesBackendRefs,
    out: &mut CompiledRoute,
) -> Result<WeightedBackend, String> {
    let weight = u32::try_from(reference.weight.unwrap_or(1)).unwrap_or(0);
    let backend_filters = match &reference.filters {
        Some(list) => {
            let list: Vec<HttpRouteRulesFilters> = reshape(list).unwrap_or_default();
            filters(snapshot, route, &list, out)?
        }
        None => Vec::new(),
    };
    let fields = BackendRefFields {
        group: reference.group.as_deref(),
        kind: reference.kind.as_deref(),
        name: &reference.name,
        namespace: reference.namespace.as_deref(),
        port: reference.port,
    };
    let target = match resolve(
        snapshot,
        route.kind,
        &route.namespace,
        fields,
        BackendUse::of(route.kind),
    ) {
        Ok(resolved) => {
            if let Some(policy) = resolved.policy.clone() {
                out.policies.entry(policy).or_insert(None);
            }
            record_conflicts(out, &resolved.conflicted);
            out.ca_bundles.extend(resolved.ca_bundles.iter().cloned());
            out.backends.insert(resolved.key.clone(), resolved.backend);
            BackendTarget::Backend(resolved.key)
        }
        Err(unresolved) => {
            if let Some(policy) = unresolved.policy {
                out.policies
                    .insert(policy, Some(unresolved.problem.clone()));
            }
            // The losers stay conflicted, whether or not the winner works.
            record_conflicts(out, &unresolved.conflicted);
            let message = unresolved.problem.message.clone();
            out.unresolved.push(unresolved.problem);
            BackendTarget::Invalid(message)
        }
    };
    Ok(WeightedBackend {
        target,
        weight,
        filters: backend_filters,
    })
}

fn record_conflicts(out: &mut CompiledRoute, conflicted: &[ObjectKey]) {
    for policy in conflicted {
        out.policies.insert(
            policy.clone(),
            Some(Problem {
                reason: reason::CONFLICTED_POLICY,
                message:
                    "Another BackendTLSPolicy targets the same Service port and takes precedence."
                        .to_owned(),
            }),
        );
    }
}
