//! A config document compiled for serving: routers built, regexes and TLS
//! contexts compiled, backends resolved to shared endpoint state. Built off
//! the request path and swapped in whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use http::{HeaderName, HeaderValue};
use proxy_config::{
    BackendProtocol, BackendTarget, ConfigDocument, HttpFilter, LoadBalancing, Protocol, Retry,
    RouteRef, Timeouts, TlsMode,
};

use crate::budget::RetryBudgetState;
use crate::error::Error;
use crate::metrics::{Metrics, RequestLabels, RequestMetrics};
use crate::router::HttpRouter;
use crate::session::{SessionRuntime, Token, endpoint_id};
use crate::tls::{Alpn, ServerTls};
use crate::upstream::{Connector, TlsClients};

/// Everything one config generation serves.
#[derive(Debug)]
pub struct Snapshot {
    pub document: Arc<ConfigDocument>,
    /// TCP listeners (HTTP, HTTPS, TLS, TCP) by port.
    pub listeners: HashMap<u16, Arc<ListenerRuntime>>,
    /// UDP listeners by port.
    pub udp_listeners: HashMap<u16, Arc<ListenerRuntime>>,
}

impl Snapshot {
    pub fn generation(&self) -> u64 {
        self.document.generation
    }
}

/// One listener as served.
#[derive(Debug)]
pub struct ListenerRuntime {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub tls: Option<ServerTls>,
    pub router: HttpRouter<Arc<Rule>>,
    /// Requests that matched no route.
    pub unmatched: Arc<RequestMetrics>,
    /// `Tls` listeners: routes by server name.
    pub tls_routes: TlsRoutes,
    /// `Tcp` and `Udp` listeners: where connections or datagrams go.
    pub stream: Option<StreamRoute>,
}

impl ListenerRuntime {
    /// Whether a `Tls` listener forwards TLS untouched.
    pub fn passthrough(&self) -> bool {
        self.protocol == Protocol::Tls && self.tls.is_none()
    }

    /// Whether a terminating listener also passes some names through, so
    /// that it must read the ClientHello before deciding.
    pub fn mixed(&self) -> bool {
        self.tls.is_some() && self.tls_routes.routes.iter().any(|route| route.passthrough)
    }
}

/// TLS routes of a listener, looked up by server name.
#[derive(Debug, Default)]
pub struct TlsRoutes {
    pub hosts: crate::router::HostTable,
    pub routes: Vec<StreamRoute>,
}

impl TlsRoutes {
    pub fn route(&self, server_name: &str) -> Option<&StreamRoute> {
        self.hosts
            .lookup(server_name)
            .and_then(|index| self.routes.get(index))
    }
}

/// Weighted backends of a TCP, UDP or TLS route.
#[derive(Debug)]
pub struct StreamRoute {
    pub route: RouteRef,
    /// TLS routes: forward the connection untouched rather than terminate.
    pub passthrough: bool,
    pub backends: Vec<WeightedTarget>,
    pub total_weight: u64,
}

impl StreamRoute {
    pub fn pick(&self) -> Option<&WeightedTarget> {
        pick_weighted(&self.backends, self.total_weight)
    }
}

/// Picks a target by weight; None when every weight is zero.
fn pick_weighted(targets: &[WeightedTarget], total_weight: u64) -> Option<&WeightedTarget> {
    if total_weight == 0 {
        return None;
    }
    let mut point = fastrand::u64(0..total_weight);
    for target in targets {
        let weight = u64::from(target.weight);
        if point < weight {
            return Some(target);
        }
        point -= weight;
    }
    None
}

/// A route rule as served.
#[derive(Debug)]
pub struct Rule {
    pub route: RouteRef,
    pub metrics: Arc<RequestMetrics>,
    pub filters: Vec<Filter>,
    pub backends: Vec<WeightedTarget>,
    pub total_weight: u64,
    pub timeouts: Timeouts,
    pub retry: Option<Retry>,
    pub session: Option<RuleSessions>,
}

impl Rule {
    /// Picks a backend by weight; None when every weight is zero.
    pub fn pick(&self) -> Option<&WeightedTarget> {
        pick_weighted(&self.backends, self.total_weight)
    }
}

/// A rule's session persistence: its tokens, and its endpoints by the id
/// tokens name them with.
#[derive(Debug)]
pub struct RuleSessions {
    pub tokens: SessionRuntime,
    /// The index of each endpoint's target in the rule's backends, and its
    /// state.
    endpoints: HashMap<u64, (usize, Arc<EndpointState>)>,
}

impl RuleSessions {
    fn new(
        config: &proxy_config::SessionPersistence,
        targets: &[WeightedTarget],
    ) -> Result<Self, Error> {
        let mut endpoints = HashMap::new();
        for (index, target) in targets.iter().enumerate() {
            if let Target::Backend(backend) = &target.target {
                for endpoint in &backend.endpoints {
                    endpoints.insert(
                        endpoint_id(&backend.name, endpoint.address),
                        (index, endpoint.clone()),
                    );
                }
            }
        }
        Ok(RuleSessions {
            tokens: SessionRuntime::new(config).map_err(Error::Config)?,
            endpoints,
        })
    }

    /// Where `token` pins the request: its target and endpoint, when the
    /// endpoint still belongs to the rule and is not ejected. A backend
    /// whose weight dropped to zero keeps its sessions (GEP-1619), so that
    /// it drains rather than breaks them.
    pub fn pin<'r>(
        &self,
        targets: &'r [WeightedTarget],
        token: &Token,
        now_ms: u64,
    ) -> Option<(&'r WeightedTarget, Arc<EndpointState>)> {
        let (index, endpoint) = self.endpoints.get(&token.endpoint)?;
        if !endpoint.available(now_ms) {
            return None;
        }
        Some((targets.get(*index)?, endpoint.clone()))
    }
}

/// A backend and its share.
#[derive(Debug)]
pub struct WeightedTarget {
    pub target: Target,
    pub weight: u32,
    pub filters: Vec<Filter>,
}

#[derive(Debug)]
pub enum Target {
    Backend(Arc<BackendRuntime>),
    /// Unresolvable reference: answered with 500.
    Invalid(String),
}

/// A filter with its header names and values parsed once.
#[derive(Debug)]
pub enum Filter {
    RequestHeaders(HeaderEdits),
    ResponseHeaders(HeaderEdits),
    Other(HttpFilter),
    Mirror {
        backend: Arc<BackendRuntime>,
        per_million: u32,
    },
}

#[derive(Debug, Default)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// A backend as served: its endpoints and balancing state.
#[derive(Debug)]
pub struct BackendRuntime {
    pub name: String,
    pub protocol: BackendProtocol,
    /// How its requests are sent: cleartext, or re-encrypted
    /// (BackendTLSPolicy) with the TLS client it needs.
    pub connector: Connector,
    pub load_balancing: LoadBalancing,
    pub endpoints: Vec<Arc<EndpointState>>,
    /// What its retries may spend, carried across config generations.
    pub retry_budget: Option<Arc<RetryBudgetState>>,
    next: AtomicUsize,
}

/// How long an endpoint is left out after it failed repeatedly.
const EJECTION_MS: u64 = 5_000;
/// Consecutive failures that eject an endpoint.
const EJECT_AFTER: u32 = 3;

impl BackendRuntime {
    /// Picks an endpoint other than those in `avoid` (the ones a retry
    /// follows) when the backend has another.
    pub fn pick_avoiding(&self, now_ms: u64, avoid: &[SocketAddr]) -> Option<&Arc<EndpointState>> {
        let mut picked = self.pick(now_ms);
        if !avoid.is_empty() && self.endpoints.len() > avoid.len() {
            for _ in 0..self.endpoints.len().max(3) {
                if picked.is_none_or(|e| !avoid.contains(&e.address)) {
                    break;
                }
                picked = self.pick(now_ms);
            }
        }
        picked
    }

    /// Picks an endpoint: round robin or the lesser-loaded of two random
    /// ones, skipping ejected endpoints unless all are ejected.
    pub fn pick(&self, now_ms: u64) -> Option<&Arc<EndpointState>> {
        let count = self.endpoints.len();
        if count == 0 {
            return None;
        }
        let healthy = |e: &&Arc<EndpointState>| e.available(now_ms);
        match self.load_balancing {
            LoadBalancing::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..count)
                    .map(|offset| &self.endpoints[(start + offset) % count])
                    .find(healthy)
                    .or_else(|| self.endpoints.get(start % count))
            }
            LoadBalancing::LeastRequest => {
                let a = &self.endpoints[fastrand::usize(0..count)];
                let b = &self.endpoints[fastrand::usize(0..count)];
                let candidates = [a, b];
                let mut usable = candidates.iter().filter(|e| healthy(e));
                let first = usable.next();
                let second = usable.next();
                match (first, second) {
                    (Some(x), Some(y)) => Some(
                        if y.in_flight.load(Ordering::Relaxed) < x.in_flight.load(Ordering::Relaxed)
                        {
                            *y
                        } else {
                            *x
                        },
                    ),
                    (Some(x), None) => Some(*x),
                    _ => self.endpoints.iter().find(healthy).or(Some(a)),
                }
            }
        }
    }
}

/// Per-endpoint state, shared across config generations.
#[derive(Debug)]
pub struct EndpointState {
    pub address: SocketAddr,
    /// `address` as a URI authority, built once.
    pub authority: http::uri::Authority,
    pub in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl EndpointState {
    fn new(address: SocketAddr) -> Self {
        Self {
            address,
            authority: http::uri::Authority::try_from(address.to_string().as_str())
                .unwrap_or_else(|_| http::uri::Authority::from_static("invalid")),
            in_flight: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether the endpoint takes requests now (it is not ejected).
    pub fn available(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub fn succeeded(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A connection that could not be made: nothing listens there any more
    /// (a Pod that went away before its EndpointSlice said so), so the
    /// endpoint is left out at once rather than after several requests fail.
    pub fn refused(&self, now_ms: u64) {
        self.ejected_until_ms
            .store(now_ms + EJECTION_MS, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a connection failure or 5xx; ejects after several in a row.
    pub fn failed(&self, now_ms: u64) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= EJECT_AFTER {
            self.ejected_until_ms
                .store(now_ms + EJECTION_MS, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }
}

/// Endpoint state and retry budgets carried from one config to the next.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    endpoints: std::sync::Mutex<HashMap<SocketAddr, Arc<EndpointState>>>,
    budgets: std::sync::Mutex<HashMap<String, Arc<RetryBudgetState>>>,
}

impl EndpointRegistry {
    fn get(&self, address: SocketAddr) -> Arc<EndpointState> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints
            .entry(address)
            .or_insert_with(|| Arc::new(EndpointState::new(address)))
            .clone()
    }

    /// The budget of backend `name`: the one it had, unless its terms
    /// changed.
    fn budget(&self, name: &str, budget: &proxy_config::RetryBudget) -> Arc<RetryBudgetState> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        match budgets.get(name) {
            Some(state) if state.budget() == budget => state.clone(),
            _ => {
                let state = Arc::new(RetryBudgetState::new(budget));
                budgets.insert(name.to_owned(), state.clone());
                state
            }
        }
    }

    fn retain_used(&self) {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints.retain(|_, state| Arc::strong_count(state) > 1);
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets.retain(|_, state| Arc::strong_count(state) > 1);
    }
}

/// Compiles a validated document. Fails only on what validation cannot see
/// (a certificate BoringSSL refuses); the caller keeps the old config then.
pub fn compile(
    document: Arc<ConfigDocument>,
    metrics: &Metrics,
    registry: &EndpointRegistry,
    tls_clients: &TlsClients,
) -> Result<Snapshot, Error> {
    let config = &document.config;
    let backends: HashMap<&str, Arc<BackendRuntime>> = config
        .backends
        .iter()
        .map(|(name, backend)| {
            let tls = backend.tls.as_ref().map(|tls| {
                let h2 = backend.protocol == BackendProtocol::H2c;
                tls_clients.get(config, tls, h2).inspect_err(|reason| {
                    tracing::warn!(backend = %name, %reason, "backend TLS settings refused; its requests get 502");
                })
            });
            let runtime = BackendRuntime {
                name: name.clone(),
                protocol: backend.protocol,
                connector: Connector::new(backend.protocol, tls),
                load_balancing: backend.load_balancing,
                endpoints: backend
                    .endpoints
                    .iter()
                    .map(|e| registry.get(SocketAddr::new(e.address, e.port)))
                    .collect(),
                retry_budget: backend
                    .retry_budget
                    .as_ref()
                    .map(|budget| registry.budget(name, budget)),
                next: AtomicUsize::new(fastrand::usize(..)),
            };
            (name.as_str(), Arc::new(runtime))
        })
        .collect();
    let backend = |name: &str| {
        backends
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Config(format!("no backend named {name:?}")))
    };

    let stream_route = |route: &RouteRef,
                        backends: &[proxy_config::WeightedBackend],
                        passthrough: bool|
     -> Result<StreamRoute, Error> {
        let backends = compile_targets(backends, &backend, false)?;
        Ok(StreamRoute {
            route: route.clone(),
            passthrough,
            total_weight: backends.iter().map(|t| u64::from(t.weight)).sum(),
            backends,
        })
    };

    let mut listeners = HashMap::new();
    let mut udp_listeners = HashMap::new();
    for listener in &config.listeners {
        let tls = match (&listener.tls, listener.protocol) {
            (Some(tls), Protocol::Https) => Some(ServerTls::build(config, tls, Alpn::Http)),
            (Some(tls), Protocol::Tls) if tls.mode == TlsMode::Terminate => {
                Some(ServerTls::build(config, tls, Alpn::None))
            }
            _ => None,
        }
        .transpose()
        // Named by listener, so the Pod condition can say which one.
        .map_err(|source| Error::ListenerTls {
            listener: listener.name.clone(),
            source: Box::new(source),
        })?;
        let mut tls_routes = TlsRoutes::default();
        for (index, route) in listener.tls_routes.iter().enumerate() {
            tls_routes.hosts.insert(
                index,
                &route.hostnames,
                proxy_config::WildcardDepth::AnyLabels,
            );
            // HTTPS listeners only pass names through; TLS listeners
            // default to their own mode.
            let listener_mode = listener
                .tls
                .as_ref()
                .map_or(TlsMode::Terminate, |tls| tls.mode);
            let mode = if listener.protocol == Protocol::Https {
                TlsMode::Passthrough
            } else {
                route.mode.unwrap_or(listener_mode)
            };
            tls_routes.routes.push(stream_route(
                &route.route,
                &route.backends,
                mode == TlsMode::Passthrough,
            )?);
        }
        let stream = listener
            .stream_route
            .as_ref()
            .map(|route| stream_route(&route.route, &route.backends, false))
            .transpose()?;
        let router = HttpRouter::compile(&listener.virtual_hosts, |rule| {
            let filters = compile_filters(&rule.filters, &backend)?;
            let targets = compile_targets(&rule.backends, &backend, true)?;
            let route = &rule.route;
            let session = rule
                .session_persistence
                .as_ref()
                .map(|config| RuleSessions::new(config, &targets))
                .transpose()?;
            Ok(Arc::new(Rule {
                metrics: metrics.requests(RequestLabels {
                    listener: listener.name.clone(),
                    route: format!("{}/{}/{}", route.namespace, route.name, route.rule),
                }),
                route: route.clone(),
                filters,
                total_weight: targets.iter().map(|t| u64::from(t.weight)).sum(),
                backends: targets,
                timeouts: rule.timeouts.clone().unwrap_or_default(),
                retry: rule.retry.clone(),
                session,
            }))
        })?;
        let unmatched = metrics.requests(RequestLabels {
            listener: listener.name.clone(),
            route: "none".into(),
        });
        let runtime = Arc::new(ListenerRuntime {
            name: listener.name.clone(),
            port: listener.port,
            protocol: listener.protocol,
            tls,
            router,
            unmatched,
            tls_routes,
            stream,
        });
        if listener.protocol == Protocol::Udp {
            udp_listeners.insert(listener.port, runtime);
        } else {
            listeners.insert(listener.port, runtime);
        }
    }
    registry.retain_used();
    tls_clients.forget_unused();
    Ok(Snapshot {
        document,
        listeners,
        udp_listeners,
    })
}

/// Weighted backends resolved to their runtime form; per-backend filters
/// only where the route kind has them (HTTP).
fn compile_targets(
    backends: &[proxy_config::WeightedBackend],
    backend: &impl Fn(&str) -> Result<Arc<BackendRuntime>, Error>,
    with_filters: bool,
) -> Result<Vec<WeightedTarget>, Error> {
    backends
        .iter()
        .map(|weighted| {
            Ok(WeightedTarget {
                target: match &weighted.target {
                    BackendTarget::Backend(name) => Target::Backend(backend(name)?),
                    BackendTarget::Invalid(reason) => Target::Invalid(reason.clone()),
                },
                weight: weighted.weight,
                filters: if with_filters {
                    compile_filters(&weighted.filters, backend)?
                } else {
                    Vec::new()
                },
            })
        })
        .collect()
}

fn compile_filters(
    filters: &[HttpFilter],
    backend: &impl Fn(&str) -> Result<Arc<BackendRuntime>, Error>,
) -> Result<Vec<Filter>, Error> {
    filters
        .iter()
        .map(|filter| {
            Ok(match filter {
                HttpFilter::RequestHeaderModifier(m) => Filter::RequestHeaders(header_edits(m)?),
                HttpFilter::ResponseHeaderModifier(m) => Filter::ResponseHeaders(header_edits(m)?),
                HttpFilter::RequestMirror(mirror) => Filter::Mirror {
                    backend: backend(&mirror.backend)?,
                    per_million: mirror.per_million,
                },
                other => Filter::Other(other.clone()),
            })
        })
        .collect()
}

fn header_edits(modifier: &proxy_config::HeaderModifier) -> Result<HeaderEdits, Error> {
    let pair = |h: &proxy_config::Header| -> Result<(HeaderName, HeaderValue), Error> {
        Ok((
            HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| Error::Config(format!("header name {:?}: {e}", h.name)))?,
            HeaderValue::from_str(&h.value)
                .map_err(|e| Error::Config(format!("header value {:?}: {e}", h.value)))?,
        ))
    };
    Ok(HeaderEdits {
        set: modifier.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: modifier.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: modifier
            .remove
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| Error::Config(format!("header name {name:?}: {e}")))
            })
            .collect::<Result<_, _>>()?,
    })
}
