//! One HTTP request: route it, apply filters, forward it, answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use proxy_config::{AccessLog, BackendProtocol, Cors, HttpFilter, PathModifier, RequestRedirect};
use tracing::{debug, warn};

use crate::Shared;
use crate::body::{BodyError, BodyTimeout, IdleTimeout, MirrorFeed, Tee, mirror_channel};
use crate::router::{RequestView, host_key};
use crate::runtime::{BackendRuntime, Filter, ListenerRuntime, Rule, Target};

/// Bodies in both directions.
pub type Body = BoxBody<Bytes, BodyError>;

/// What a request's connection knows.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub port: u16,
    pub client: SocketAddr,
    /// The client's address as a header value, made once per connection.
    pub client_ip: HeaderValue,
    pub tls: bool,
    /// The source listener the TLS server name selected, for 421 detection.
    pub sni_source: Option<String>,
    /// Longest wait for the next part of a request body.
    pub body_timeout: Duration,
}

/// How long a client may pause while sending a request body (nginx's
/// `client_body_timeout` has the same default).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

impl ConnectionInfo {
    pub fn new(port: u16, client: SocketAddr, tls: bool, sni_source: Option<String>) -> Self {
        Self {
            port,
            client,
            client_ip: HeaderValue::from_str(&client.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            tls,
            sni_source,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

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
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "listener is being removed\n",
        ));
    };
    let access_log = snapshot.document.config.settings.access_log;
    let logged = (access_log != AccessLog::Off).then(|| {
        (
            request.method().clone(),
            request.uri().clone(),
            request.version(),
        )
    });
    let (response, rule) = route(&shared, &connection, &listener, request).await;
    let elapsed = started.elapsed();
    let metrics = rule
        .as_ref()
        .map_or(&listener.unmatched, |rule| &rule.metrics);
    metrics.record(response.status().as_u16(), elapsed);
    if let Some((method, uri, version)) = logged {
        let entry = AccessEntry {
            connection: &connection,
            listener: &listener.name,
            rule: rule.as_deref(),
            method: &method,
            uri: &uri,
            version,
            status: response.status(),
            elapsed,
        };
        entry.write(access_log);
    }
    Ok(response)
}

/// What one access log line says.
struct AccessEntry<'a> {
    connection: &'a ConnectionInfo,
    listener: &'a str,
    rule: Option<&'a Rule>,
    method: &'a Method,
    uri: &'a Uri,
    version: Version,
    status: StatusCode,
    elapsed: Duration,
}

impl AccessEntry<'_> {
    /// Writes the line to standard output (line-buffered by std).
    fn write(&self, format: AccessLog) {
        use std::io::Write;
        let route = self.rule.map_or_else(String::new, |r| {
            format!("{}/{}/{}", r.route.namespace, r.route.name, r.route.rule)
        });
        let duration_ms = self.elapsed.as_secs_f64() * 1000.0;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let line = match format {
            AccessLog::Json => serde_json::json!({
                "time": time,
                "client": self.connection.client.to_string(),
                "listener": self.listener,
                "method": self.method.as_str(),
                "authority": self.uri.authority().map(|a| a.as_str()),
                "path": self.uri.path(),
                "protocol": format!("{:?}", self.version),
                "status": self.status.as_u16(),
                "durationMs": duration_ms,
                "route": route,
            })
            .to_string(),
            AccessLog::Text | AccessLog::Off => format!(
                "{time:.3} {} {} \"{} {} {:?}\" {} {duration_ms:.3}ms {route}",
                self.connection.client,
                self.listener,
                self.method,
                self.uri.path(),
                self.version,
                self.status.as_u16()
            ),
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

async fn route(
    shared: &Arc<Shared>,
    connection: &ConnectionInfo,
    listener: &ListenerRuntime,
    mut request: Request<Incoming>,
) -> (Response<Body>, Option<Arc<Rule>>) {
    let authority = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let host = authority.and_then(host_key).unwrap_or_default();
    let Some(vhost) = listener.router.virtual_host(&host) else {
        return (
            text(StatusCode::NOT_FOUND, "no route for this host\n"),
            None,
        );
    };
    if let Some(sni_source) = &connection.sni_source
        && *sni_source != vhost.source
    {
        return (
            text(
                StatusCode::MISDIRECTED_REQUEST,
                "host does not match the TLS server name\n",
            ),
            None,
        );
    }
    let view = RequestView {
        path: request.uri().path(),
        query: request.uri().query(),
        method: request.method(),
        headers: request.headers(),
    };
    let Some((matcher, rule)) = vhost.find(&view) else {
        return (
            text(StatusCode::NOT_FOUND, "no route matches this request\n"),
            None,
        );
    };
    let rule = rule.clone();
    let matched_prefix = matcher.matched_prefix().map(str::to_owned);

    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response_edits = Vec::new();
    let mut cors: Option<&Cors> = None;
    let mut mirrors = Vec::new();
    for filter in &rule.filters {
        match filter {
            Filter::RequestHeaders(edits) => edits.apply(request.headers_mut()),
            Filter::ResponseHeaders(edits) => response_edits.push(edits),
            Filter::Other(HttpFilter::RequestRedirect(redirect)) => {
                let response = redirect_response(
                    redirect,
                    connection,
                    &host,
                    request.uri(),
                    matched_prefix.as_deref(),
                );
                return (response, Some(rule.clone()));
            }
            Filter::Other(HttpFilter::DirectResponse(direct)) => {
                let mut response = Response::new(
                    Full::new(Bytes::from(direct.body.clone()))
                        .map_err(|never| match never {})
                        .boxed(),
                );
                *response.status_mut() =
                    StatusCode::from_u16(direct.status_code).unwrap_or(StatusCode::OK);
                return (response, Some(rule.clone()));
            }
            Filter::Other(HttpFilter::UrlRewrite(rewrite)) => {
                if let Some(hostname) = &rewrite.hostname
                    && let Ok(value) = HeaderValue::from_str(hostname)
                {
                    request.headers_mut().insert(header::HOST, value);
                    rewrite_authority(&mut request, hostname);
                }
                if let Some(path) = &rewrite.path {
                    let new_path =
                        rewritten_path(path, request.uri().path(), matched_prefix.as_deref());
                    set_path(&mut request, &new_path);
                }
            }
            Filter::Other(HttpFilter::Cors(policy)) => {
                cors = Some(policy);
                if is_preflight(&request) {
                    let mut response = text(StatusCode::NO_CONTENT, "");
                    apply_cors(
                        policy,
                        origin.as_ref(),
                        response.headers_mut(),
                        true,
                        &request,
                    );
                    return (response, Some(rule.clone()));
                }
            }
            Filter::Mirror {
                backend,
                per_million,
            } => mirrors.extend(mirror(shared, backend, *per_million, &request)),
            Filter::Other(_) => {}
        }
    }

    let Some(target) = rule.pick() else {
        return (
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no backend is available for this route\n",
            ),
            Some(rule.clone()),
        );
    };
    let backend = match &target.target {
        Target::Backend(backend) => backend.clone(),
        Target::Invalid(reason) => {
            debug!(route = %rule.route.name, %reason, "request to an invalid backend");
            return (
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the backend of this route is invalid\n",
                ),
                Some(rule.clone()),
            );
        }
    };
    for filter in &target.filters {
        match filter {
            Filter::RequestHeaders(edits) => edits.apply(request.headers_mut()),
            Filter::ResponseHeaders(edits) => response_edits.push(edits),
            _ => {}
        }
    }

    let mut response = forward(shared, connection, &rule, &backend, request, mirrors).await;
    if let Some(policy) = cors {
        let headers = response.headers_mut();
        apply_cors_simple(policy, origin.as_ref(), headers);
    }
    for edits in response_edits {
        edits.apply(response.headers_mut());
    }
    (response, Some(rule))
}

/// Sends the request to an endpoint of `backend`, with the rule's timeouts
/// and retries.
async fn forward(
    shared: &Arc<Shared>,
    connection: &ConnectionInfo,
    rule: &Rule,
    backend: &Arc<BackendRuntime>,
    mut request: Request<Incoming>,
    mirrors: Vec<MirrorFeed>,
) -> Response<Body> {
    prepare_upstream_headers(&mut request, connection);
    let upgrade =
        request.headers().contains_key(header::UPGRADE) && request.version() == Version::HTTP_11;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    if !upgrade {
        strip_hop_by_hop(request.headers_mut());
    }

    let replayable = request.body().is_end_stream();
    let retry = rule.retry.as_ref().filter(|_| replayable && !upgrade);
    let attempts = retry.map_or(1, |r| r.attempts.saturating_add(1));
    let (parts, body) = request.into_parts();
    // A bodiless request (most of them) needs neither a body timer nor a tee:
    // mirrors get a feed only when there is a body.
    let mut body = Some(if replayable {
        empty()
    } else {
        let body = IdleTimeout::new(body, connection.body_timeout).boxed();
        if mirrors.is_empty() {
            body
        } else {
            Tee::new(body, mirrors).boxed()
        }
    });
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    // The first attempt takes the request's own head; only retries copy it.
    let retry_head = (attempts > 1).then(|| parts.clone_without_body());
    let mut first_head = Some(parts);

    let overall = rule.timeouts.request_ms.map(Duration::from_millis);
    let per_try = rule.timeouts.backend_request_ms.map(Duration::from_millis);
    let deadline = overall.map(|d| tokio::time::Instant::now() + d);

    let mut last = text(StatusCode::SERVICE_UNAVAILABLE, "no healthy endpoint\n");
    for attempt in 0..attempts {
        if attempt > 0 {
            let backoff = retry.map_or(0, |r| {
                r.backoff_ms.saturating_mul(1 << (attempt - 1).min(10))
            });
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
        let now_ms = shared.now_ms();
        let Some(endpoint) = backend.pick(now_ms) else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no endpoint is ready for this backend\n",
            );
        };
        let head = match (first_head.take(), &retry_head) {
            (Some(head), _) => head,
            (None, Some(copy)) => copy.clone_without_body(),
            (None, None) => break,
        };
        let mut upstream = Request::from_parts(head, body.take().unwrap_or_else(empty));
        let mut uri_parts = http::uri::Parts::default();
        uri_parts.scheme = Some(if backend.tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        uri_parts.authority = Some(endpoint.authority.clone());
        uri_parts.path_and_query = Some(path_and_query.clone());
        match Uri::from_parts(uri_parts) {
            Ok(uri) => *upstream.uri_mut() = uri,
            Err(_) => return text(StatusCode::BAD_REQUEST, "invalid request target\n"),
        }
        *upstream.version_mut() = if backend.protocol == BackendProtocol::H2c {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        endpoint
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let call = match &backend.tls {
            None if backend.protocol == BackendProtocol::H2c => {
                crate::upstream::h2c().request(upstream)
            }
            None => crate::upstream::http1().request(upstream),
            Some(Ok(client)) => client.request(upstream),
            Some(Err(_)) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    "the backend's TLS settings are invalid\n",
                );
            }
        };
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
        endpoint
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            None => {
                endpoint.failed(now_ms);
                last = text(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the backend did not answer in time\n",
                );
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return last;
                }
            }
            Some(Err(err)) if BodyTimeout::caused(&err) => {
                // The client's fault: the endpoint is not marked failed.
                let mut response = text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body stopped arriving\n",
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            Some(Err(err)) => {
                endpoint.failed(now_ms);
                let connect = err.is_connect();
                if connect {
                    shared
                        .metrics
                        .upstream_connect_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                debug!(backend = %backend.name, endpoint = %endpoint.address, error = %err, "upstream request failed");
                last = text(
                    if connect {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::BAD_GATEWAY
                    },
                    "the backend could not be reached\n",
                );
                if !retry.is_some_and(|r| r.on_connect_failure) {
                    return last;
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
                if retryable && attempt + 1 < attempts {
                    continue;
                }
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_upgrade) = client_upgrade {
                        let backend_upgrade = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client_upgrade, backend_upgrade));
                    }
                    return response.map(|b| b.map_err(BodyError::from).boxed());
                }
                strip_hop_by_hop(response.headers_mut());
                return response.map(|b| b.map_err(BodyError::from).boxed());
            }
        }
    }
    last
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

fn prepare_upstream_headers(request: &mut Request<Incoming>, connection: &ConnectionInfo) {
    // HTTP/2 carries the host in :authority; HTTP/1.1 backends need Host.
    if !request.headers().contains_key(header::HOST)
        && let Some(value) = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    let headers = request.headers_mut();
    let forwarded = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => {
            HeaderValue::from_str(&format!("{existing}, {}", connection.client.ip())).ok()
        }
        None => Some(connection.client_ip.clone()),
    };
    if let Some(value) = forwarded {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if connection.tls { "https" } else { "http" }),
    );
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), request_id());
    }
}

/// 128 random bits in hex, built without allocating a String.
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for (index, byte) in id.iter_mut().enumerate() {
        *byte = HEX[((bits >> (index * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Builds the Location of a redirect as the spec asks: unset parts keep the
/// request's, and the well-known port of the scheme is left out.
fn redirect_response(
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
pub fn rewritten_path(modifier: &PathModifier, path: &str, matched_prefix: Option<&str>) -> String {
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

fn set_path(request: &mut Request<Incoming>, path: &str) {
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

fn rewrite_authority(request: &mut Request<Incoming>, hostname: &str) {
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

fn is_preflight<B>(request: &Request<B>) -> bool {
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

fn apply_cors<B>(
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

fn apply_cors_simple(policy: &Cors, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
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

/// Sends a copy of the request to a mirror backend in the background; the
/// answer is dropped and never delays the client. A request with a body
/// gets a feed that its body copies itself into as it streams.
fn mirror(
    shared: &Arc<Shared>,
    backend: &Arc<BackendRuntime>,
    per_million: u32,
    request: &Request<Incoming>,
) -> Option<MirrorFeed> {
    if per_million < 1_000_000 && fastrand::u32(0..1_000_000) >= per_million {
        return None;
    }
    let endpoint = backend.pick(shared.now_ms())?;
    let mut uri_parts = http::uri::Parts::default();
    uri_parts.scheme = Some(if backend.tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    uri_parts.authority = Some(endpoint.authority.clone());
    uri_parts.path_and_query = request.uri().path_and_query().cloned();
    let uri = Uri::from_parts(uri_parts).ok()?;
    let (feed, body) = if request.body().is_end_stream() {
        (None, empty())
    } else {
        let (feed, body) = mirror_channel();
        (Some(feed), body.boxed())
    };
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = uri;
    *copy.headers_mut() = request.headers().clone();
    strip_hop_by_hop(copy.headers_mut());
    if backend.protocol == BackendProtocol::H2c {
        *copy.version_mut() = Version::HTTP_2;
    }
    let call = match &backend.tls {
        None if backend.protocol == BackendProtocol::H2c => crate::upstream::h2c().request(copy),
        None => crate::upstream::http1().request(copy),
        Some(Ok(client)) => client.request(copy),
        Some(Err(_)) => return None,
    };
    tokio::spawn(async move {
        if let Ok(response) = tokio::time::timeout(Duration::from_secs(30), call).await
            && let Ok(response) = response
        {
            // Drain so that the connection returns to the pool.
            let _ = response.into_body().collect().await;
        }
    });
    feed
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
