//! One HTTP request, in phases: find its rule ([`crate::router`]), run the
//! rule's filters (`filters`: header edits, rewrites, redirects, CORS,
//! mirror copies), forward it with timeouts and retries (`forward`), start
//! its mirrors once it is on its way (`mirror`), edit the response, and log
//! it (`access_log`). Every failure is a [`RequestError`], which answers
//! with its status.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, header};
use hyper::body::Incoming;
use proxy_config::AccessLog;

use crate::body::Body;
use crate::router::{RequestView, host_key};
use crate::runtime::{ListenerRuntime, Rule};
use crate::session::unix_now_s;
use crate::shared::Shared;

mod access_log;
mod connection;
mod cors;
mod error;
mod filters;
mod forward;
mod headers;
mod mirror;
mod rewrite;
mod send;

use access_log::AccessEntry;
pub use connection::ConnectionInfo;
use cors::apply_cors_simple;
use error::RequestError;
use filters::Decision;

/// Serves one request on the current config; never fails (errors become
/// status codes).
pub async fn handle(
    shared: Arc<Shared>,
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let snapshot = shared.snapshot.load_full();
    let Some(listener) = snapshot.listeners.get(&connection.port).cloned() else {
        return Ok(RequestError::ListenerRemoved.response());
    };
    let access_log = snapshot.document.config.settings.access_log;
    let logged = (access_log != AccessLog::Off).then(|| {
        (
            request.method().clone(),
            request.uri().clone(),
            request.version(),
        )
    });
    let (response, rule) = match serve(&shared, &connection, &listener, request).await {
        (Ok(response), rule) => (response, rule),
        (Err(error), rule) => (error.response(), rule),
    };
    let elapsed = started.elapsed();
    let metrics = rule
        .as_ref()
        .map_or(&listener.unmatched, |rule| &rule.metrics);
    metrics.record(response.status().as_u16(), elapsed);
    if let Some((method, uri, version)) = logged {
        AccessEntry {
            connection: &connection,
            listener: &listener.name,
            rule: rule.as_deref(),
            method: &method,
            uri: &uri,
            version,
            status: response.status(),
            elapsed,
        }
        .write(access_log);
    }
    Ok(response)
}

/// The phases of one request; the rule is returned for metrics and logs
/// whether it was served or failed.
async fn serve(
    shared: &Shared,
    connection: &ConnectionInfo,
    listener: &ListenerRuntime,
    mut request: Request<Incoming>,
) -> (Result<Response<Body>, RequestError>, Option<Arc<Rule>>) {
    let authority = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let host = authority.and_then(host_key).unwrap_or_default();
    let Some(vhost) = listener.router.virtual_host(&host) else {
        return (Err(RequestError::NoHost), None);
    };
    if let Some(sni_source) = &connection.sni_source
        && *sni_source != vhost.source
    {
        return (Err(RequestError::Misdirected), None);
    }
    let view = RequestView {
        path: request.uri().path(),
        query: request.uri().query(),
        method: request.method(),
        headers: request.headers(),
    };
    let Some((matcher, rule)) = vhost.find(&view) else {
        return (Err(RequestError::NoRoute), None);
    };
    let rule = rule.clone();
    let matched_prefix = matcher.matched_prefix().map(str::to_owned);

    let forwarding = match filters::run(
        &rule,
        &mut request,
        connection,
        &host,
        matched_prefix.as_deref(),
        shared.now_ms(),
    ) {
        Ok(Decision::Respond(response)) => return (Ok(response), Some(rule.clone())),
        Ok(Decision::Forward(forwarding)) => forwarding,
        Err(error) => return (Err(error), Some(rule.clone())),
    };
    // A failure to reach the backend is answered by the gateway, but still
    // on behalf of the rule: its response edits apply to it too.
    let mut response = match forward::forward(
        shared,
        connection,
        &rule,
        &forwarding.backend,
        forwarding.pinned,
        request,
        forwarding.mirrors,
    )
    .await
    {
        Ok((mut response, served_by)) => {
            if let Some(sessions) = &rule.session
                && let Some((name, value)) = sessions.tokens.issue(
                    forwarding.session,
                    &forwarding.backend.name,
                    served_by,
                    unix_now_s(),
                    connection.tls,
                )
            {
                response.headers_mut().append(name, value);
            }
            response
        }
        Err(error) => error.response(),
    };
    if let Some((policy, origin)) = &forwarding.cors {
        apply_cors_simple(policy, origin.as_ref(), response.headers_mut());
    }
    for edits in &forwarding.response_edits {
        edits.apply(response.headers_mut());
    }
    (Ok(response), Some(rule))
}
