//! A rule's filters, in order, then the backend's: the request edited, or
//! an answer given at the gateway (redirect, direct response, CORS
//! preflight), or the backend to forward to with what the response needs.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use proxy_config::{Cors, HttpFilter};
use tracing::debug;

use super::connection::ConnectionInfo;
use super::cors::{apply_cors, is_preflight};
use super::error::{RequestError, text};
use super::mirror::{self, MirrorCopy};
use super::rewrite::{redirect_response, rewrite_authority, rewritten_path, set_path};
use crate::body::{Body, full};
use crate::runtime::{BackendRuntime, EndpointState, Filter, HeaderEdits, Rule, Target};
use crate::session::{Token, unix_now_s};

/// What the filters decided.
#[derive(Debug)]
pub(super) enum Decision<'r> {
    /// Answered at the gateway.
    Respond(Response<Body>),
    Forward(Forwarding<'r>),
}

/// A request to forward, and what its response needs.
#[derive(Debug)]
pub(super) struct Forwarding<'r> {
    pub backend: Arc<BackendRuntime>,
    /// Response header edits of the rule and the backend, in order.
    pub response_edits: Vec<&'r HeaderEdits>,
    /// The CORS policy, and the request's Origin.
    pub cors: Option<(&'r Cors, Option<HeaderValue>)>,
    /// Copies for the mirrors, sent once the request is.
    pub mirrors: Vec<MirrorCopy>,
    /// The endpoint a live session pins the request to.
    pub pinned: Option<Arc<EndpointState>>,
    /// The live session token the request carried, to continue it.
    pub session: Option<Token>,
}

/// Runs `rule`'s filters on `request` and picks its backend.
pub(super) fn run<'r, B>(
    rule: &'r Rule,
    request: &mut Request<B>,
    connection: &ConnectionInfo,
    host: &str,
    matched_prefix: Option<&str>,
    now_ms: u64,
) -> Result<Decision<'r>, RequestError> {
    // The Origin as the client sent it, whatever the filters do to headers.
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response_edits = Vec::new();
    let mut cors = None;
    let mut mirrors = Vec::new();
    for filter in &rule.filters {
        match filter {
            Filter::RequestHeaders(edits) => edits.apply(request.headers_mut()),
            Filter::ResponseHeaders(edits) => response_edits.push(edits),
            Filter::Other(HttpFilter::RequestRedirect(redirect)) => {
                return Ok(Decision::Respond(redirect_response(
                    redirect,
                    connection,
                    host,
                    request.uri(),
                    matched_prefix,
                )));
            }
            Filter::Other(HttpFilter::DirectResponse(direct)) => {
                let mut response = Response::new(full(direct.body.clone()));
                *response.status_mut() =
                    StatusCode::from_u16(direct.status_code).unwrap_or(StatusCode::OK);
                return Ok(Decision::Respond(response));
            }
            Filter::Other(HttpFilter::UrlRewrite(rewrite)) => {
                if let Some(hostname) = &rewrite.hostname
                    && let Ok(value) = HeaderValue::from_str(hostname)
                {
                    request.headers_mut().insert(header::HOST, value);
                    rewrite_authority(request, hostname);
                }
                if let Some(path) = &rewrite.path {
                    let new_path = rewritten_path(path, request.uri().path(), matched_prefix);
                    set_path(request, &new_path);
                }
            }
            Filter::Other(HttpFilter::Cors(policy)) => {
                if is_preflight(request) {
                    let mut response = text(StatusCode::NO_CONTENT, "");
                    apply_cors(
                        policy,
                        origin.as_ref(),
                        response.headers_mut(),
                        true,
                        request,
                    );
                    return Ok(Decision::Respond(response));
                }
                cors = Some((policy, origin.clone()));
            }
            Filter::Mirror {
                backend,
                per_million,
            } => mirrors.extend(mirror::copy(backend, *per_million, request)),
            Filter::Other(_) => {}
        }
    }

    // A live session goes back to its endpoint; the balancer picks otherwise.
    let session = rule
        .session
        .as_ref()
        .and_then(|sessions| sessions.tokens.carried(request.headers(), unix_now_s()));
    let pin = rule
        .session
        .as_ref()
        .zip(session.as_ref())
        .and_then(|(sessions, token)| sessions.pin(&rule.backends, token, now_ms));
    let (target, pinned) = match pin {
        Some((target, endpoint)) => (target, Some(endpoint)),
        None => (rule.pick().ok_or(RequestError::NoBackend)?, None),
    };
    let backend = match &target.target {
        Target::Backend(backend) => backend.clone(),
        Target::Invalid(reason) => {
            debug!(route = %rule.route.name, %reason, "request to an invalid backend");
            return Err(RequestError::InvalidBackend(reason.clone()));
        }
    };
    for filter in &target.filters {
        match filter {
            Filter::RequestHeaders(edits) => edits.apply(request.headers_mut()),
            Filter::ResponseHeaders(edits) => response_edits.push(edits),
            _ => {}
        }
    }
    Ok(Decision::Forward(Forwarding {
        backend,
        response_edits,
        cors,
        mirrors,
        pinned,
        session,
    }))
}
