//! Redirects and rewrites: the `Location` a redirect answers with, and the
//! path and authority a rewrite sends on.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use proxy_config::{PathModifier, RequestRedirect};

use super::connection::ConnectionInfo;
use super::error::text;
use crate::body::Body;

/// Builds the Location of a redirect as the spec asks: unset parts keep the
/// request's, and the well-known port of the scheme is left out.
pub(super) fn redirect_response(
    redirect: &RequestRedirect,
    connection: &ConnectionInfo,
    host: &str,
    uri: &Uri,
    matched_prefix: Option<&str>,
) -> Response<Body> {
    let request_scheme = if connection.tls { "https" } else { "http" };
    let scheme = redirect.scheme.as_deref().unwrap_or(request_scheme);
    let hostname = redirect.hostname.as_deref().unwrap_or(host);
    let port = match (redirect.port, &redirect.scheme) {
        (Some(port), _) => port,
        (None, Some(scheme)) => {
            if scheme == "https" {
                443
            } else {
                80
            }
        }
        (None, None) => connection.port,
    };
    let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
    let path = match &redirect.path {
        Some(modifier) => rewritten_path(modifier, uri.path(), matched_prefix),
        None => uri.path().to_owned(),
    };
    let mut location = format!("{scheme}://{hostname}");
    if !default_port {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(&path);
    if let Some(query) = uri.query() {
        location.push('?');
        location.push_str(query);
    }
    let status = StatusCode::from_u16(redirect.status_code).unwrap_or(StatusCode::FOUND);
    let mut response = text(status, "");
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Applies a path modifier. `ReplacePrefixMatch` swaps the matched prefix
/// (kept segment-aligned) for the replacement.
pub(super) fn rewritten_path(
    modifier: &PathModifier,
    path: &str,
    matched_prefix: Option<&str>,
) -> String {
    match modifier {
        PathModifier::ReplaceFullPath(full) => full.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let rest = matched_prefix
                .and_then(|prefix| path.strip_prefix(prefix))
                .unwrap_or(path);
            let mut result = replacement.trim_end_matches('/').to_owned();
            if rest.is_empty() || rest.starts_with('/') {
                result.push_str(rest);
            } else {
                result.push('/');
                result.push_str(rest);
            }
            if result.is_empty() {
                result.push('/');
            }
            result
        }
    }
}

pub(super) fn set_path<B>(request: &mut Request<B>, path: &str) {
    let mut parts = request.uri().clone().into_parts();
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

pub(super) fn rewrite_authority<B>(request: &mut Request<B>, hostname: &str) {
    if request.uri().authority().is_some() {
        let mut parts = request.uri().clone().into_parts();
        if let Ok(authority) = hostname.parse() {
            parts.authority = Some(authority);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_keeps_segments() {
        let cases = [
            ("/prefix/one", "/prefix/one/two", "/one", "/one/two"),
            ("/prefix/one", "/prefix/one", "/one", "/one"),
            ("/prefix/one", "/prefix/one/", "/", "/"),
            ("/prefix/one", "/prefix/one/two", "/", "/two"),
            ("/prefix/one", "/prefix/one", "/", "/"),
            ("/prefix", "/prefix/x", "/one/", "/one/x"),
            ("", "/anything", "/base", "/base/anything"),
        ];
        for (prefix, path, replacement, expected) in cases {
            let modifier = PathModifier::ReplacePrefixMatch(replacement.into());
            assert_eq!(
                rewritten_path(&modifier, path, Some(prefix)),
                expected,
                "{prefix} {path} {replacement}"
            );
        }
        let full = PathModifier::ReplaceFullPath("/new".into());
        assert_eq!(rewritten_path(&full, "/old/path", None), "/new");
    }
}
