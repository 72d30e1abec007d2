//! Route rules to the proxy's rules: matches, filters and weighted
//! backends. One bad rule is dropped alone (and reported); one bad backend
//! keeps its share of traffic answering 500, as the spec asks.

use gwapi::httproutes::{
    HttpRouteRulesBackendRefs, HttpRouteRulesFilters, HttpRouteRulesRetry,
    HttpRouteRulesSessionPersistence, HttpRouteRulesSessionPersistenceCookieConfigLifetimeType,
    HttpRouteRulesSessionPersistenceType,
};
use proxy_config::{
    BackendTarget, HttpMatch, HttpRule, PathMatch, Retry, RouteRef, SessionCarrier,
    SessionPersistence, Timeouts, WeightedBackend, is_cookie_path, is_session_name,
};

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
    if route.uses_default_gateways {
        out.not_honoured.push(
            "spec.useDefaultGateways is not implemented yet; the route attaches to its parentRefs only."
                .to_owned(),
        );
    }
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
        // The first Service-wide session among the rule's backends.
        let mut service_session = None;
        for reference in &rule.backends {
            match weighted_backend(snapshot, route, reference, &mut out) {
                Ok((backend, session)) => {
                    backends.push(backend);
                    if service_session.is_none() {
                        service_session = session;
                    }
                }
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
        let label = rule_label(rule.name.as_deref(), index);
        let retry = rule.retry.as_ref().and_then(|spec| {
            let (retry, notes) = retry(spec);
            out.not_honoured.extend(
                notes
                    .into_iter()
                    .map(|note| format!("rule {label}: {note}")),
            );
            retry
        });
        // The rule's own sessionPersistence wins over its Services'
        // (GEP-1619). One from an XBackendTrafficPolicy covers the whole
        // rule, every backend alike, and leaves the cookie's Path unset: many
        // routes may share the Service.
        let session_persistence =
            match (&rule.session_persistence, &service_session) {
                (Some(spec), _) => {
                    let (session, notes) = session_persistence(spec, &route_ref, &matches);
                    out.not_honoured.extend(
                        notes
                            .into_iter()
                            .map(|note| format!("rule {label}: {note}")),
                    );
                    Some(session)
                }
                (None, Some((policy, spec))) => {
                    let (mut session, notes) = session_persistence(spec, &route_ref, &matches);
                    session.path = None;
                    out.not_honoured.extend(notes.into_iter().map(|note| {
                        format!("rule {label}: XBackendTrafficPolicy {policy}: {note}")
                    }));
                    Some(session)
                }
                (None, None) => None,
            };
        out.rules.push(CompiledRule {
            rule: HttpRule {
                route: route_ref,
                filters,
                backends,
                timeouts: timeouts
                    .filter(|t| t.request_ms.is_some() || t.backend_request_ms.is_some()),
                retry,
                session_persistence,
            },
            matches,
        });
    }
    out
}

/// Retries beyond the first attempt when `attempts` is unset (the spec
/// leaves it to the implementation; Istio and Envoy Gateway also use 2).
pub(super) const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
/// The most retries one request may make, as the proxy's contract allows.
pub(super) const MAX_RETRY_ATTEMPTS: u32 = 100;
/// The first wait before a retry when `backoff` is unset (Envoy's base
/// interval); it doubles with each further retry.
pub(super) const DEFAULT_RETRY_BACKOFF_MS: u64 = 25;

/// An HTTPRoute rule's `retry` as the proxy applies it: `attempts` retries
/// beyond the first try, on the listed status codes, on a connection error
/// and on an attempt that reached `timeouts.backendRequest` (the spec's
/// HTTPRouteRetryConnectionError and HTTPRouteRetryBackendTimeout), with
/// `backoff` as the least wait between tries. `None` when it asks for no
/// retry at all; the notes say what could not be honoured as written.
pub(super) fn retry(spec: &HttpRouteRulesRetry) -> (Option<Retry>, Vec<String>) {
    let mut notes = Vec::new();
    let attempts = match spec.attempts {
        None => DEFAULT_RETRY_ATTEMPTS,
        Some(attempts) if attempts <= 0 => return (None, notes),
        Some(attempts) => {
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            if attempts > MAX_RETRY_ATTEMPTS {
                notes.push(format!(
                    "retry.attempts {attempts} is capped at {MAX_RETRY_ATTEMPTS}."
                ));
            }
            attempts.min(MAX_RETRY_ATTEMPTS)
        }
    };
    let mut status_codes = Vec::new();
    for code in spec.codes.iter().flatten() {
        match u16::try_from(*code) {
            Ok(code) if (400..=599).contains(&code) => status_codes.push(code),
            _ => notes.push(format!(
                "retry.codes {code} is not an HTTP error status (400-599) and is ignored."
            )),
        }
    }
    status_codes.sort_unstable();
    status_codes.dedup();
    let backoff_ms = match spec.backoff.as_deref() {
        None => DEFAULT_RETRY_BACKOFF_MS,
        Some(text) => match parse_duration_ms(text) {
            Some(ms) => ms,
            None => {
                notes.push(format!(
                    "retry.backoff {text:?} is not a Gateway API duration; {DEFAULT_RETRY_BACKOFF_MS}ms is used."
                ));
                DEFAULT_RETRY_BACKOFF_MS
            }
        },
    };
    let retry = Retry {
        attempts,
        status_codes,
        backoff_ms,
        on_connect_failure: true,
    };
    (Some(retry), notes)
}

/// A rule's `sessionPersistence` as the proxy applies it. An unusable
/// `sessionName` or timeout falls back to a default, named in the notes:
/// the session still sticks, which is what its author wanted most.
pub(super) fn session_persistence(
    spec: &HttpRouteRulesSessionPersistence,
    route: &RouteRef,
    matches: &[HttpMatch],
) -> (SessionPersistence, Vec<String>) {
    let mut notes = Vec::new();
    let default_name = || {
        let key = format!(
            "{}/{}/{}/{}",
            route.kind, route.namespace, route.name, route.rule
        );
        format!("portcullis-session-{:08x}", fnv1a32(&key))
    };
    let name = match spec.session_name.as_deref() {
        None => default_name(),
        Some(name) if is_session_name(name) => name.to_owned(),
        Some(name) => {
            let fallback = default_name();
            notes.push(format!(
                "sessionPersistence.sessionName {name:?} is not a valid cookie or header name; {fallback:?} is used."
            ));
            fallback
        }
    };
    let mut seconds = |field: &str, value: Option<&str>| {
        let text = value?;
        match parse_duration_ms(text) {
            Some(ms) if ms > 0 => Some(ms.div_ceil(1_000)),
            _ => {
                notes.push(format!(
                    "sessionPersistence.{field} {text:?} is not a positive Gateway API duration and is ignored."
                ));
                None
            }
        }
    };
    let absolute_timeout_s = seconds("absoluteTimeout", spec.absolute_timeout.as_deref());
    let idle_timeout_s = seconds("idleTimeout", spec.idle_timeout.as_deref());
    let carrier = match spec.r#type {
        Some(HttpRouteRulesSessionPersistenceType::Header) => SessionCarrier::Header,
        Some(HttpRouteRulesSessionPersistenceType::Cookie) | None => SessionCarrier::Cookie,
    };
    let wants_permanent = carrier == SessionCarrier::Cookie
        && spec
            .cookie_config
            .as_ref()
            .and_then(|config| config.lifetime_type.as_ref())
            == Some(&HttpRouteRulesSessionPersistenceCookieConfigLifetimeType::Permanent);
    if wants_permanent && absolute_timeout_s.is_none() {
        notes.push(
            "sessionPersistence.cookieConfig.lifetimeType Permanent needs an absoluteTimeout; a session cookie is used."
                .to_owned(),
        );
    }
    // The cookie covers the rule's one path; a rule matching several paths
    // or by pattern gets the whole site.
    let path = match matches {
        [only] => match &only.path {
            Some(PathMatch::Exact(path) | PathMatch::PathPrefix(path)) if is_cookie_path(path) => {
                path.clone()
            }
            _ => "/".to_owned(),
        },
        _ => "/".to_owned(),
    };
    let path = Some(path);
    let session = SessionPersistence {
        name,
        carrier,
        absolute_timeout_s,
        idle_timeout_s,
        permanent: wants_permanent && absolute_timeout_s.is_some(),
        path,
    };
    (session, notes)
}

/// FNV-1a, 32 bits: a short stable suffix for default session names.
fn fnv1a32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

fn rule_label(name: Option<&str>, index: u32) -> String {
    match name {
        Some(name) => format!("{index} ({name})"),
        None => index.to_string(),
    }
}

/// A Service-wide `sessionPersistence` and the policy that gave it.
type ServiceSession = (ObjectKey, HttpRouteRulesSessionPersistence);

fn weighted_backend(
    snapshot: &Snapshot,
    route: &RouteView,
    reference: &HttpRouteRulesBackendRefs,
    out: &mut CompiledRoute,
) -> Result<(WeightedBackend, Option<ServiceSession>), String> {
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
    let mut session = None;
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
            let traffic = resolved.traffic;
            if let Some((winner, problem)) = traffic.policy {
                for loser in traffic.conflicted {
                    out.traffic_policies.insert(
                        loser,
                        Some(Problem::new(
                            reason::CONFLICTED_POLICY,
                            format!(
                                "XBackendTrafficPolicy {winner} targets the same Service and takes precedence (the oldest wins, then the first by name)."
                            ),
                        )),
                    );
                }
                out.traffic_policies.entry(winner).or_insert(problem);
            }
            session = traffic.session;
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
    Ok((
        WeightedBackend {
            target,
            weight,
            filters: backend_filters,
        },
        session,
    ))
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
