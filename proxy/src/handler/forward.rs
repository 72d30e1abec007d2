//! Forwarding to the backend: endpoint choice, timeouts, retries,
//! WebSocket upgrades, and the response on its way back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use super::connection::ConnectionInfo;
use super::error::RequestError;
use super::headers::{add_forwarded, strip_hop_by_hop};
use super::mirror::{self, MirrorCopy};
use super::send::send;
use crate::body::{Body, BodyTimeout, IdleTimeout, Tee, boxed, empty};
use crate::runtime::{BackendRuntime, EndpointState, Rule};
use crate::shared::Shared;

/// Sends the request to an endpoint of `backend` (first to `pinned`, when a
/// session names one), with the rule's timeouts and retries, and starts the
/// mirrors once it is on its way. Returns the response and the endpoint
/// that gave it.
pub(super) async fn forward(
    shared: &Shared,
    connection: &ConnectionInfo,
    rule: &Rule,
    backend: &BackendRuntime,
    pinned: Option<Arc<EndpointState>>,
    mut request: Request<Incoming>,
    mirrors: Vec<MirrorCopy>,
) -> Result<(Response<Body>, SocketAddr), RequestError> {
    add_forwarded(&mut request, connection);
    let upgrade =
        request.headers().contains_key(header::UPGRADE) && request.version() == Version::HTTP_11;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    if !upgrade {
        strip_hop_by_hop(request.headers_mut());
    }

    // A bodiless request (most of them) needs neither a body timer nor a
    // tee, and can be sent again.
    let replayable = request.body().is_end_stream();
    let retry = rule.retry.as_ref().filter(|_| replayable && !upgrade);
    // An endpoint that just went away (a Pod scaled down before its
    // EndpointSlice says so) should cost no client an error, whatever the
    // rule's retry policy: a bodiless request goes to another endpoint once
    // when its connection could not be made (nothing was sent), and an
    // idempotent one also when the connection failed before any answer
    // (nginx's default `proxy_next_upstream error`, RFC 9110 section 9.2.2). A
    // session's endpoint moves the same way.
    let fallback = replayable && !upgrade && (pinned.is_some() || backend.endpoints.len() > 1);
    let idempotent = request.method().is_idempotent();
    // Several Pods going at once (a scale-down): up to MAX_FALLBACKS other
    // endpoints are tried, each once.
    let fallbacks = if fallback {
        u32::try_from(backend.endpoints.len().saturating_sub(1))
            .unwrap_or(MAX_FALLBACKS)
            .clamp(1, MAX_FALLBACKS)
    } else {
        0
    };
    let attempts = retry.map_or(1 + fallbacks, |r| r.attempts.saturating_add(1));
    let (parts, incoming) = request.into_parts();
    let (feeds, pending) = mirror::prepare(mirrors, !replayable);
    let mut body = Some(if replayable {
        empty()
    } else {
        let timed = IdleTimeout::new(incoming, connection.body_timeout).boxed();
        if feeds.is_empty() {
            timed
        } else {
            Tee::new(timed, feeds).boxed()
        }
    });
    let mut pending = Some(pending);
    let target = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // The first attempt takes the request's own head; only retries copy it.
    let retry_head = (attempts > 1).then(|| parts.clone_without_body());
    let mut first_head = Some(parts);

    let overall = rule.timeouts.request_ms.map(Duration::from_millis);
    let per_try = rule.timeouts.backend_request_ms.map(Duration::from_millis);
    let deadline = overall.map(|d| tokio::time::Instant::now() + d);

    // Whether a retry after `attempt` may start: attempts are left, and its
    // backoff ends before the request's deadline (a retry that could not
    // finish in time is not started).
    let may_retry = |attempt: u32| {
        attempt + 1 < attempts
            && deadline.is_none_or(|d| {
                tokio::time::Instant::now()
                    + retry.map_or(Duration::ZERO, |r| backoff(r, attempt + 1))
                    < d
            })
    };
    let mut last = RequestError::NoEndpoint;
    // The endpoints last tried (without an allocation): a retry goes
    // elsewhere if it can.
    let mut tried = [SocketAddr::from(([0, 0, 0, 0], 0)); AVOIDED];
    for attempt in 0..attempts {
        if attempt > 0
            && let Some(retry) = retry
        {
            tokio::time::sleep(backoff(retry, attempt)).await;
        }
        let now_ms = shared.now_ms();
        let tries = usize::try_from(attempt).unwrap_or(usize::MAX);
        // Every attempt counts towards the backend's retry budget; a retry
        // over it is not sent, and the client gets 503 as the spec asks.
        if let Some(budget) = &backend.retry_budget {
            if attempt == 0 {
                budget.attempt(now_ms);
            } else if !budget.try_retry(now_ms) {
                debug!(backend = %backend.name, attempt, "retry refused: the retry budget is spent");
                return Err(RequestError::RetryBudget);
            }
        }
        // Retries go wherever the balancer sends them: the session follows.
        let first_choice = if attempt == 0 { pinned.as_ref() } else { None };
        let endpoint = match first_choice {
            Some(endpoint) => endpoint,
            None => backend
                .pick_avoiding(now_ms, &tried[..tries.min(AVOIDED)])
                .ok_or(RequestError::NoEndpoint)?,
        };
        tried[tries % AVOIDED] = endpoint.address;
        let head = match (first_head.take(), &retry_head) {
            (Some(head), _) => head,
            (None, Some(copy)) => copy.clone_without_body(),
            (None, None) => break,
        };
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let call = match send(
            backend,
            endpoint,
            head,
            target.clone(),
            body.take().unwrap_or_else(empty),
        ) {
            Ok(call) => call,
            Err(err) => {
                endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
                return Err(err);
            }
        };
        if let Some(mirrors) = pending.take() {
            mirrors.send(shared);
        }
        let limit = match (per_try, deadline) {
            (Some(per_try), Some(deadline)) => {
                Some((tokio::time::Instant::now() + per_try).min(deadline))
            }
            (Some(per_try), None) => Some(tokio::time::Instant::now() + per_try),
            (None, deadline) => deadline,
        };
        let result = match limit {
            Some(limit) => tokio::time::timeout_at(limit, call).await.ok(),
            None => Some(call.await),
        };
        endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        match result {
            None => {
                endpoint.failed(now_ms);
                last = RequestError::Timeout;
                if !may_retry(attempt) {
                    return Err(last);
                }
            }
            // The client's fault: the endpoint is not marked failed.
            Some(Err(err)) if BodyTimeout::caused(&err) => return Err(RequestError::BodyTimeout),
            Some(Err(err)) => {
                let connect = err.is_connect();
                if connect {
                    endpoint.refused(now_ms);
                } else {
                    endpoint.failed(now_ms);
                }
                if connect {
                    shared
                        .metrics
                        .upstream_connect_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
                debug!(backend = %backend.name, endpoint = %endpoint.address, error = %err, "upstream request failed");
                last = RequestError::Unreachable { connect };
                let retries = retry.is_some_and(|r| r.on_connect_failure)
                    || (fallback && attempt < fallbacks && (connect || idempotent));
                if !retries || !may_retry(attempt) {
                    return Err(last);
                }
            }
            Some(Ok(mut response)) => {
                let status = response.status();
                if status.is_server_error() {
                    endpoint.failed(now_ms);
                } else {
                    endpoint.succeeded();
                }
                let retryable = retry.is_some_and(|r| r.status_codes.contains(&status.as_u16()));
                if retryable && may_retry(attempt) {
                    continue;
                }
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_upgrade) = client_upgrade {
                        let backend_upgrade = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client_upgrade, backend_upgrade));
                    }
                    return Ok((response.map(boxed), endpoint.address));
                }
                strip_hop_by_hop(response.headers_mut());
                return Ok((response.map(boxed), endpoint.address));
            }
        }
    }
    Err(last)
}

/// The most other endpoints a request whose endpoint went away tries.
const MAX_FALLBACKS: u32 = 3;
/// How many of the endpoints last tried a retry avoids.
const AVOIDED: usize = 1 + MAX_FALLBACKS as usize;

/// The wait before retry `number` (1 for the first): the rule's backoff,
/// doubled for each further retry up to ten times the first wait (Envoy's
/// bound), so that a long run of retries never waits unboundedly.
fn backoff(retry: &proxy_config::Retry, number: u32) -> Duration {
    let base = retry.backoff_ms;
    let doubled = base.saturating_mul(1u64 << number.saturating_sub(1).min(16));
    Duration::from_millis(doubled.min(base.saturating_mul(10)))
}

/// Copies bytes both ways between an upgraded client and backend.
async fn tunnel(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, backend) {
        Ok((client, backend)) => {
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                debug!(error = %err, "upgraded connection ended");
            }
        }
        Err(err) => warn!(error = %err, "upgrade failed"),
    }
}

trait CloneWithoutBody {
    fn clone_without_body(&self) -> http::request::Parts;
}

impl CloneWithoutBody for http::request::Parts {
    fn clone_without_body(&self) -> http::request::Parts {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .version(self.version);
        if let Some(headers) = builder.headers_mut() {
            *headers = self.headers.clone();
        }
        let (mut parts, ()) = builder.body(()).unwrap_or_default().into_parts();
        parts.extensions = http::Extensions::new();
        parts
    }
}
