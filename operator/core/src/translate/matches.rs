//! Route matches to the proxy's: HTTP paths, headers, query parameters
//! and methods; gRPC services and methods as paths.

use gwapi::grpcroutes::{GrpcRouteRulesMatches, GrpcRouteRulesMatchesMethodType};
use gwapi::httproutes::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType,
};
use proxy_config::{HttpMatch, PathMatch, ValueMatch, ValueMatchKind, anchored_regex};

pub(super) fn http_matches(matches: &[HttpRouteRulesMatches]) -> Result<Vec<HttpMatch>, String> {
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
pub(super) fn grpc_matches(matches: &[GrpcRouteRulesMatches]) -> Result<Vec<HttpMatch>, String> {
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

/// Whether `name` is a valid header name (an HTTP token).
pub(super) fn token(name: &str) -> Result<(), String> {
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
