//! Route filters to the proxy's: header modifiers, redirects, rewrites,
//! mirrors, CORS; a filter this gateway does not know answers 500.

use gwapi::httproutes::{
    HttpRouteRulesFilters, HttpRouteRulesFiltersRequestRedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme, HttpRouteRulesFiltersType,
    HttpRouteRulesFiltersUrlRewritePathType,
};
use proxy_config::{
    Cors, DirectResponse, Header, HeaderModifier, HttpFilter, PathModifier, RequestMirror,
    RequestRedirect, UrlRewrite,
};

use super::backends::{BackendRefFields, BackendUse, resolve};
use super::compiled::CompiledRoute;
use super::matches::token;
use super::routes::RouteView;
use crate::conditions::{Problem, reason};
use crate::convert::reshape;
use crate::keys::RouteKind;
use crate::snapshot::Snapshot;

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

/// Compiles a filter list; an error drops the rule it belongs to.
pub(super) fn filters(
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
                out.unresolved.push(Problem {
                    reason: reason::INVALID_KIND,
                    message: format!("Filter extension {name} is not supported."),
                });
                HttpFilter::DirectResponse(DirectResponse {
                    status_code: 500,
                    body: String::new(),
                })
            }
            HttpRouteRulesFiltersType::ExternalAuth => {
                // Not implemented yet. Serving the rule without it would
                // let unauthenticated requests through: they get 500.
                out.not_honoured.push(
                    "filter ExternalAuth is not implemented yet; requests that would pass through it get 500."
                        .to_owned(),
                );
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
