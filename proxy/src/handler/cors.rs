//! CORS: preflights answered at the gateway, and the headers a simple
//! request's response gets.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request};
use proxy_config::Cors;

pub(super) fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn origin_allowed(policy: &Cors, origin: &str) -> bool {
    policy.allow_origins.iter().any(|allowed| {
        allowed == "*"
            || allowed == origin
            || allowed.split_once("://*.").is_some_and(|(scheme, domain)| {
                origin
                    .strip_prefix(scheme)
                    .and_then(|rest| rest.strip_prefix("://"))
                    .is_some_and(|host| host.ends_with(&format!(".{domain}")))
            })
    })
}

pub(super) fn apply_cors<B>(
    policy: &Cors,
    origin: Option<&HeaderValue>,
    headers: &mut HeaderMap,
    preflight: bool,
    request: &Request<B>,
) {
    apply_cors_simple(policy, origin, headers);
    if !preflight || !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    for (allowed, asked, answer) in [
        (
            &policy.allow_methods,
            header::ACCESS_CONTROL_REQUEST_METHOD,
            header::ACCESS_CONTROL_ALLOW_METHODS,
        ),
        (
            &policy.allow_headers,
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
        ),
    ] {
        // `*` allows whatever the preflight asks for: echo it back.
        let value = if allowed.iter().any(|entry| entry == "*") {
            request.headers().get(&asked).cloned()
        } else if allowed.is_empty() {
            None
        } else {
            HeaderValue::from_str(&allowed.join(", ")).ok()
        };
        if let Some(value) = value {
            headers.insert(answer, value);
        }
    }
    if let Some(max_age) = policy.max_age_seconds {
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(max_age));
    }
}

pub(super) fn apply_cors_simple(
    policy: &Cors,
    origin: Option<&HeaderValue>,
    headers: &mut HeaderMap,
) {
    let Some(origin) = origin else { return };
    let Ok(origin_text) = origin.to_str() else {
        return;
    };
    if !origin_allowed(policy, origin_text) {
        return;
    }
    let wildcard = policy.allow_origins.iter().any(|o| o == "*") && !policy.allow_credentials;
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        if wildcard {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        },
    );
    if policy.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !policy.expose_headers.is_empty()
        && let Ok(value) = HeaderValue::from_str(&policy.expose_headers.join(", "))
    {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
    }
    if !wildcard {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_match_exact_star_and_subdomain_wildcards() {
        let policy = Cors {
            allow_origins: vec![
                "https://app.example.com".into(),
                "https://*.example.org".into(),
            ],
            ..Cors::default()
        };
        assert!(origin_allowed(&policy, "https://app.example.com"));
        assert!(origin_allowed(&policy, "https://a.b.example.org"));
        assert!(!origin_allowed(&policy, "http://a.example.org"));
        assert!(!origin_allowed(&policy, "https://example.org"));
        assert!(!origin_allowed(&policy, "https://evil.com"));
        let star = Cors {
            allow_origins: vec!["*".into()],
            ..Cors::default()
        };
        assert!(origin_allowed(&star, "https://anything"));
    }
}
