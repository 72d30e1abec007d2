//! Route rules to the proxy's rules: matches, filters and weighted
//! backends. One bad rule is dropped alone (and reported); one bad backend
//! keeps its share of traffic answering 500, as the spec asks.

use std::collections::BTreeMap;

use gwapi::grpcroutes::{GrpcRouteRulesMatches, GrpcRouteRulesMatchesMethodType};
use gwapi::httproutes::{
    HttpRouteRulesBackendRefs, HttpRouteRulesFilters, HttpRouteRulesFiltersRequestRedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme, HttpRouteRulesFiltersType,
    HttpRouteRulesFiltersUrlRewritePathType, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType,
};
use proxy_config::{
    Backend, BackendTarget, Cors, DirectResponse, Header, HeaderModifier, HttpFilter, HttpMatch,
    HttpRule, PathMatch, PathModifier, RequestMirror, RequestRedirect, RouteRef, Timeouts,
    UrlRewrite, ValueMatch, ValueMatchKind, WeightedBackend, anchored_regex,
};

use super::backends::{BackendRefFields, BackendUse, resolve};
use super::routes::{RouteView, RuleMatches};
use super::tls::RefProblem;
use super::{parse_duration_ms, reshape};
use crate::conditions::reason;
use crate::snapshot::{Key, RouteKind, Snapshot};

/// One route's rules, compiled once and shared by every Gateway it attaches to.
#[derive(Debug, Clone, Default)]
pub(super) struct CompiledRoute {
    pub rules: Vec<CompiledRule>,
    /// Unresolved references, for `ResolvedRefs`.
    pub unresolved: Vec<RefProblem>,
    /// Why rules were dropped, for `PartiallyInvalid`.
    pub dropped: Vec<String>,
    pub backends: BTreeMap<String, Backend>,
    pub ca_bundles: BTreeMap<String, String>,
    /// BackendTLSPolicies used, and what was wrong with them.
    pub policies: BTreeMap<Key, Option<RefProblem>>,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    pub rule: HttpRule,
    /// Empty for TLS, TCP and UDP rules.
    pub matches: Vec<HttpMatch>,
}

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

fn record_conflicts(out: &mut CompiledRoute, conflicted: &[Key]) {
    for policy in conflicted {
        out.policies.insert(
            policy.clone(),
            Some(RefProblem {
                reason: reason::CONFLICTED_POLICY,
                message:
                    "Another BackendTLSPolicy targets the same Service port and takes precedence."
                        .to_owned(),
            }),
        );
    }
}

fn http_matches(matches: &[HttpRouteRulesMatches]) -> Result<Vec<HttpMatch>, String> {
    if matches.is_empty() {
        return Ok(vec![HttpMatch {
            path: Some(PathMatch::PathPrefix("/".to_owned())),
            ..HttpMatch::default()
        }]);
    }
    matches
        .iter()
        .map(|m| {
            let path = match &m.path {
                None => Some(PathMatch::PathPrefix("/".to_owned())),
                Some(path) => {
                    let value = path.value.clone().unwrap_or_else(|| "/".to_owned());
                    Some(match path.r#type {
                        Some(HttpRouteRulesMatchesPathType::Exact) => {
                            absolute(&value)?;
                            PathMatch::Exact(value)
                        }
                        Some(HttpRouteRulesMatchesPathType::RegularExpression) => {
                            regex(&value)?;
                            PathMatch::RegularExpression(value)
                        }
                        _ => {
                            absolute(&value)?;
                            PathMatch::PathPrefix(value)
                        }
                    })
                }
            };
            let headers = m
                .headers
                .iter()
                .flatten()
                .map(|h| {
                    let kind = match h.r#type {
                        Some(HttpRouteRulesMatchesHeadersType::RegularExpression) => {
                            regex(&h.value)?;
                            ValueMatchKind::RegularExpression
                        }
                        _ => ValueMatchKind::Exact,
                    };
                    token(&h.name)?;
                    Ok(ValueMatch {
                        name: h.name.clone(),
                        kind,
                        value: h.value.clone(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let query_params = m
                .query_params
                .iter()
                .flatten()
                .map(|q| {
                    let kind = match q.r#type {
                        Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression) => {
                            regex(&q.value)?;
                            ValueMatchKind::RegularExpression
                        }
                        _ => ValueMatchKind::Exact,
                    };
                    Ok(ValueMatch {
                        name: q.name.clone(),
                        kind,
                        value: q.value.clone(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let method = m
                .method
                .as_ref()
                .and_then(|method| serde_json::to_value(method).ok())
                .and_then(|value| value.as_str().map(str::to_owned));
            Ok(HttpMatch {
                path,
                method,
                headers,
                query_params,
            })
        })
        .collect()
}

/// gRPC matches become path matches on `/service/method`.
fn grpc_matches(matches: &[GrpcRouteRulesMatches]) -> Result<Vec<HttpMatch>, String> {
    if matches.is_empty() {
        return Ok(vec![HttpMatch::default()]);
    }
    matches
        .iter()
        .map(|m| {
            let path = match &m.method {
                None => None,
                Some(method) => {
                    let regex_type =
                        method.r#type == Some(GrpcRouteRulesMatchesMethodType::RegularExpression);
                    match (
                        method.service.as_deref(),
                        method.method.as_deref(),
                        regex_type,
                    ) {
                        (None, None, _) => None,
                        (Some(service), Some(name), false) => {
                            Some(PathMatch::Exact(format!("/{service}/{name}")))
                        }
                        (Some(service), None, false) => {
                            Some(PathMatch::PathPrefix(format!("/{service}")))
                        }
                        (None, Some(name), false) => Some(PathMatch::RegularExpression(format!(
                            "/[^/]+/{}",
                            regex_escape(name)
                        ))),
                        (service, name, true) => {
                            let service = service.unwrap_or("[^/]+");
                            let name = name.unwrap_or("[^/]+");
                            regex(service)?;
                            regex(name)?;
                            Some(PathMatch::RegularExpression(format!(
                                "/(?:{service})/(?:{name})"
                            )))
                        }
                    }
                }
            };
            let headers = m
                .headers
                .iter()
                .flatten()
                .map(|h| {
                    let regex_type = serde_json::to_value(&h.r#type)
                        .ok()
                        .and_then(|v| v.as_str().map(|s| s == "RegularExpression"))
                        .unwrap_or(false);
                    if regex_type {
                        regex(&h.value)?;
                    }
                    token(&h.name)?;
                    Ok(ValueMatch {
                        name: h.name.clone(),
                        kind: if regex_type {
                            ValueMatchKind::RegularExpression
                        } else {
                            ValueMatchKind::Exact
                        },
                        value: h.value.clone(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(HttpMatch {
                path,
                method: None,
                headers,
                query_params: Vec::new(),
            })
        })
        .collect()
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn regex(pattern: &str) -> Result<(), String> {
    anchored_regex(pattern)
        .map(|_| ())
        .map_err(|err| format!("invalid regular expression {pattern:?}: {err}"))
}

fn absolute(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(format!("path {path:?} must start with '/'"))
    }
}

fn token(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid header name"))
    }
}

fn header_value(value: &str) -> Result<(), String> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid header value"))
    }
}

fn filters(
    snapshot: &Snapshot,
    route: &RouteView,
    list: &[HttpRouteRulesFilters],
    out: &mut CompiledRoute,
) -> Result<Vec<HttpFilter>, String> {
    let mut compiled = Vec::new();
    for filter in list {
        let filter = match filter.r#type {
            HttpRouteRulesFiltersType::RequestHeaderModifier => {
                let Some(m) = &filter.request_header_modifier else {
                    return Err("RequestHeaderModifier needs requestHeaderModifier".to_owned());
                };
                HttpFilter::RequestHeaderModifier(header_modifier(m)?)
            }
            HttpRouteRulesFiltersType::ResponseHeaderModifier => {
                let Some(m) = &filter.response_header_modifier else {
                    return Err("ResponseHeaderModifier needs responseHeaderModifier".to_owned());
                };
                let m: gwapi::httproutes::HttpRouteRulesFiltersRequestHeaderModifier =
                    reshape(m).unwrap_or_default();
                HttpFilter::ResponseHeaderModifier(header_modifier(&m)?)
            }
            HttpRouteRulesFiltersType::RequestRedirect => {
                let Some(r) = &filter.request_redirect else {
                    return Err("RequestRedirect needs requestRedirect".to_owned());
                };
                let path = r.path.as_ref().map(|p| match p.r#type {
                    HttpRouteRulesFiltersRequestRedirectPathType::ReplaceFullPath => {
                        PathModifier::ReplaceFullPath(
                            p.replace_full_path.clone().unwrap_or_default(),
                        )
                    }
                    HttpRouteRulesFiltersRequestRedirectPathType::ReplacePrefixMatch => {
                        PathModifier::ReplacePrefixMatch(
                            p.replace_prefix_match.clone().unwrap_or_default(),
                        )
                    }
                });
                let status_code = u16::try_from(r.status_code.unwrap_or(302)).unwrap_or(302);
                if ![301, 302, 303, 307, 308].contains(&status_code) {
                    return Err(format!(
                        "redirect status code {status_code} is not supported"
                    ));
                }
                HttpFilter::RequestRedirect(RequestRedirect {
                    scheme: r.scheme.as_ref().map(|s| match s {
                        HttpRouteRulesFiltersRequestRedirectScheme::Http => "http".to_owned(),
                        HttpRouteRulesFiltersRequestRedirectScheme::Https => "https".to_owned(),
                    }),
                    hostname: r.hostname.clone(),
                    port: r.port.and_then(|p| u16::try_from(p).ok()),
                    path,
                    status_code,
                })
            }
            HttpRouteRulesFiltersType::UrlRewrite => {
                let Some(r) = &filter.url_rewrite else {
                    return Err("URLRewrite needs urlRewrite".to_owned());
                };
                HttpFilter::UrlRewrite(UrlRewrite {
                    hostname: r.hostname.clone(),
                    path: r.path.as_ref().map(|p| match p.r#type {
                        HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath => {
                            PathModifier::ReplaceFullPath(
                                p.replace_full_path.clone().unwrap_or_default(),
                            )
                        }
                        HttpRouteRulesFiltersUrlRewritePathType::ReplacePrefixMatch => {
                            PathModifier::ReplacePrefixMatch(
                                p.replace_prefix_match.clone().unwrap_or_default(),
                            )
                        }
                    }),
                })
            }
            HttpRouteRulesFiltersType::RequestMirror => {
                let Some(m) = &filter.request_mirror else {
                    return Err("RequestMirror needs requestMirror".to_owned());
                };
                let per_million = match (&m.fraction, m.percent) {
                    (Some(fraction), _) => {
                        let denominator = i64::from(fraction.denominator.unwrap_or(100).max(1));
                        (i64::from(fraction.numerator.max(0)) * 1_000_000 / denominator)
                            .min(1_000_000)
                    }
                    (None, Some(percent)) => i64::from(percent.clamp(0, 100)) * 10_000,
                    (None, None) => 1_000_000,
                };
                let reference = &m.backend_ref;
                let fields = BackendRefFields {
                    group: reference.group.as_deref(),
                    kind: reference.kind.as_deref(),
                    name: &reference.name,
                    namespace: reference.namespace.as_deref(),
                    port: reference.port,
                };
                match resolve(
                    snapshot,
                    route.kind,
                    &route.namespace,
                    fields,
                    BackendUse::of(route.kind),
                ) {
                    Ok(resolved) => {
                        out.backends.insert(resolved.key.clone(), resolved.backend);
                        out.ca_bundles.extend(resolved.ca_bundles.iter().cloned());
                        HttpFilter::RequestMirror(RequestMirror {
                            backend: resolved.key,
                            per_million: u32::try_from(per_million).unwrap_or(1_000_000),
                        })
                    }
                    Err(unresolved) => {
                        // A mirror that cannot be resolved mirrors nothing;
                        // the route still serves, and says why.
                        out.unresolved.push(unresolved.problem);
                        continue;
                    }
                }
            }
            HttpRouteRulesFiltersType::Cors => {
                let Some(c) = &filter.cors else {
                    return Err("CORS needs cors".to_owned());
                };
                HttpFilter::Cors(Cors {
                    allow_origins: c.allow_origins.clone().unwrap_or_default(),
                    allow_methods: c.allow_methods.clone().unwrap_or_default(),
                    allow_headers: c.allow_headers.clone().unwrap_or_default(),
                    expose_headers: c.expose_headers.clone().unwrap_or_default(),
                    allow_credentials: c.allow_credentials.unwrap_or(false),
                    max_age_seconds: c.max_age.and_then(|a| u32::try_from(a).ok()),
                })
            }
            HttpRouteRulesFiltersType::ExtensionRef => {
                // An extension this gateway does not know: requests that
                // would have passed through it get 500, as the spec asks.
                let name = filter
                    .extension_ref
                    .as_ref()
                    .map(|e| format!("{}/{} {}", e.group, e.kind, e.name))
                    .unwrap_or_default();
                out.unresolved.push(RefProblem {
                    reason: reason::INVALID_KIND,
                    message: format!("Filter extension {name} is not supported."),
                });
                HttpFilter::DirectResponse(DirectResponse {
                    status_code: 500,
                    body: String::new(),
                })
            }
        };
        compiled.push(filter);
    }
    if route.kind == RouteKind::Grpc
        && compiled.iter().any(|f| {
            matches!(
                f,
                HttpFilter::RequestRedirect(_) | HttpFilter::UrlRewrite(_)
            )
        })
    {
        return Err("GRPCRoute supports no redirect or rewrite".to_owned());
    }
    Ok(compiled)
}

fn header_modifier(
    m: &gwapi::httproutes::HttpRouteRulesFiltersRequestHeaderModifier,
) -> Result<HeaderModifier, String> {
    let headers = |list: Option<Vec<Header>>| -> Result<Vec<Header>, String> {
        let list = list.unwrap_or_default();
        for header in &list {
            token(&header.name)?;
            header_value(&header.value)?;
        }
        Ok(list)
    };
    let remove = m.remove.clone().unwrap_or_default();
    for name in &remove {
        token(name)?;
    }
    Ok(HeaderModifier {
        set: headers(reshape(&m.set))?,
        add: headers(reshape(&m.add))?,
        remove,
    })
}
