//! The compiled configuration of one Gateway, as the proxy serves it.
//!
//! The model is source-neutral: Gateway API is its first source, Ingress and
//! OpenShift Routes will follow, so it speaks of sockets, virtual hosts,
//! ordered matches and weighted backends rather than of Gateway API objects.
//! Everything the proxy needs is resolved by the operator beforehand
//! (precedence, hostname intersection, endpoints, certificates), so the proxy
//! never reads anything but this document.
//!
//! Determinism matters: the operator hashes the encoded document to skip
//! no-op writes, so maps are `BTreeMap`s and there are no floats.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Derives `Arbitrary` for property tests (in this crate's tests, or for
/// dependants that enable the `arbitrary` feature).
macro_rules! contract_type {
    ($item:item) => {
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        $item
    };
}

contract_type! {
/// One Gateway's configuration: the payload of a [`crate::ConfigDocument`].
#[derive(Default)]
pub struct GatewayConfig {
    /// The Gateway this configuration was compiled for, for logs and status.
    pub gateway: ObjectRef,
    /// Sockets to bind. A (port, transport) pair appears at most once.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Backends by name, referenced from routes.
    #[serde(default)]
    pub backends: BTreeMap<String, Backend>,
    /// Certificates and keys by name, referenced from listeners and backends.
    #[serde(default)]
    pub certificates: BTreeMap<String, Certificate>,
    /// CA bundles (PEM) by name, referenced from client and backend validation.
    #[serde(default)]
    pub ca_bundles: BTreeMap<String, String>,
    /// Settings that apply to the whole proxy.
    #[serde(default)]
    pub settings: ProxySettings,
}
}

contract_type! {
/// Names a Kubernetes object, or a part of one.
#[derive(Default, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub namespace: String,
    pub name: String,
}
}

contract_type! {
/// One bound socket.
pub struct Listener {
    /// Unique among listeners; used in metrics, logs and proxy status.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// Names of the source listeners (Gateway `sectionName`s) merged into
    /// this socket, so that a bind failure can be reported against them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Server certificates chosen by SNI, for `Https` and terminating `Tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// HTTP virtual hosts, for `Http` and `Https`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_hosts: Vec<VirtualHost>,
    /// TLS routes by SNI, for `Tls` (passthrough, or terminate-then-TCP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_routes: Vec<TlsRoute>,
    /// The stream route, for `Tcp` and `Udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_route: Option<StreamRoute>,
}
}

/// What a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum Protocol {
    /// Cleartext HTTP/1.1 and h2c.
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 and HTTP/2 over terminated TLS.
    #[serde(rename = "HTTPS")]
    Https,
    /// TLS routed by SNI: passed through, or terminated to a byte stream.
    #[serde(rename = "TLS")]
    Tls,
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// Whether the socket is a UDP one: TCP and UDP may share a port number.
    pub fn is_datagram(self) -> bool {
        matches!(self, Protocol::Udp)
    }
}

contract_type! {
/// TLS termination settings of a listener.
pub struct ListenerTls {
    /// Certificates, each serving the server names it lists. A handshake whose
    /// SNI matches none (or that has no SNI) gets the first certificate.
    pub certificates: Vec<ServerCertificate>,
    /// What a terminating `Tls` listener does; ignored for `Https`.
    #[serde(default)]
    pub mode: TlsMode,
    /// Client certificate validation, when the listener asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<ClientValidation>,
}
}

contract_type! {
/// A certificate and the server names it is offered for.
pub struct ServerCertificate {
    /// Key into [`GatewayConfig::certificates`].
    pub certificate: String,
    /// Exact names and `*.` wildcards; empty means any name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
}
}

/// Whether a `Tls` listener terminates TLS or forwards it untouched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum TlsMode {
    #[default]
    Terminate,
    Passthrough,
}

contract_type! {
/// Frontend client certificate validation (mutual TLS).
pub struct ClientValidation {
    /// Keys into [`GatewayConfig::ca_bundles`]; a client certificate must
    /// chain to one of them.
    pub ca_bundles: Vec<String>,
    /// When true a client without a certificate, or with one that fails
    /// validation, is let through (the spec's `AllowInsecureFallback`).
    #[serde(default)]
    pub allow_missing: bool,
}
}

contract_type! {
/// PEM certificate chain and private key.
pub struct Certificate {
    pub chain_pem: String,
    /// Empty for CA-only entries. Redacted by the admin `/config` endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key_pem: String,
}
}

contract_type! {
/// Requests for a set of host names, matched in a fixed order.
pub struct VirtualHost {
    /// The source listener (Gateway `sectionName`) this host belongs to; a
    /// request on a TLS connection whose certificate was chosen for another
    /// source listener is misdirected (421).
    pub source: String,
    /// Exact names and `*.` wildcards; empty means any name. Wildcards match
    /// any number of labels unless `wildcard_depth` says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub wildcard_depth: WildcardDepth,
    /// The rules' actions; `matches` refers to them by index.
    #[serde(default)]
    pub rules: Vec<HttpRule>,
    /// Every match of every rule, already in precedence order: the first
    /// match that fits a request decides. No match: 404.
    #[serde(default)]
    pub matches: Vec<OrderedMatch>,
}
}

/// How many labels a `*.` wildcard stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum WildcardDepth {
    /// One or more labels: Gateway API.
    #[default]
    AnyLabels,
    /// Exactly one label: Ingress and OpenShift Routes.
    OneLabel,
}

contract_type! {
/// One match of one rule.
pub struct OrderedMatch {
    /// Index into [`VirtualHost::rules`].
    pub rule: u32,
    #[serde(rename = "match")]
    pub matcher: HttpMatch,
}
}

contract_type! {
/// Conditions a request must meet, all of them.
#[derive(Default)]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
}
}

/// How a request path is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
#[serde(tag = "type", content = "value")]
pub enum PathMatch {
    Exact(String),
    /// Segment-wise: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    PathPrefix(String),
    /// The whole path must match.
    RegularExpression(String),
}

contract_type! {
/// A header or query parameter condition.
pub struct ValueMatch {
    /// Header names compare case-insensitively, query parameter names exactly.
    pub name: String,
    #[serde(default)]
    pub kind: ValueMatchKind,
    pub value: String,
}
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum ValueMatchKind {
    #[default]
    Exact,
    /// The whole value must match.
    RegularExpression,
}

contract_type! {
/// What happens to a request that matched.
pub struct HttpRule {
    /// The route and rule this came from, for metrics and logs.
    pub route: RouteRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpFilter>,
    /// Where the request goes, picked by weight. A rule with no backend of
    /// positive weight answers 500 (the spec's answer for a rule whose
    /// backends are all invalid), unless a filter answered first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<WeightedBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Requests carrying this rule's session token go to the endpoint that
    /// served the session before (GEP-1619).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
}
}

contract_type! {
/// Identifies a route rule for metrics and logs.
#[derive(Default)]
pub struct RouteRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Index of the rule within the route.
    pub rule: u32,
}
}

contract_type! {
/// A backend and its share of the traffic.
pub struct WeightedBackend {
    pub target: BackendTarget,
    /// Relative share; zero means no traffic.
    pub weight: u32,
    /// Filters applied only when this backend is chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpFilter>,
}
}

/// Where a weighted share of traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub enum BackendTarget {
    /// Key into [`GatewayConfig::backends`].
    Backend(String),
    /// The reference could not be resolved; its share of requests gets 500,
    /// as the spec asks, and the reason is logged.
    Invalid(String),
}

contract_type! {
/// Request and per-attempt timeouts, in milliseconds.
#[derive(Default)]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request_ms: Option<u64>,
}
}

contract_type! {
/// When and how often to retry a request.
pub struct Retry {
    /// Total attempts beyond the first.
    pub attempts: u32,
    /// Response status codes that cause a retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_codes: Vec<u16>,
    /// Base delay between attempts, doubled each time.
    #[serde(default)]
    pub backoff_ms: u64,
    /// Also retry when the connection to the backend fails.
    #[serde(default)]
    pub on_connect_failure: bool,
}
}

contract_type! {
/// Sticky sessions: the proxy hands the client a token naming the endpoint
/// that answered, and sends the requests that carry it back there while
/// the session lives and the endpoint serves.
pub struct SessionPersistence {
    /// The cookie's or header's name.
    pub name: String,
    pub carrier: SessionCarrier,
    /// Seconds from the session's start after which it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_timeout_s: Option<u64>,
    /// Seconds without a request after which it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<u64>,
    /// The cookie outlives the browser session (`Max-Age` is the time the
    /// session has left); needs `absolute_timeout_s`.
    #[serde(default)]
    pub permanent: bool,
    /// The cookie's `Path`; none leaves it to the browser (a session set
    /// by a policy on a Service, which many routes may share: GEP-1619).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}
}

/// How a session token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum SessionCarrier {
    /// `Set-Cookie` on the response, `Cookie` on requests.
    Cookie,
    /// A response header the client sends back as a request header.
    Header,
}

/// A request or response transformation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum HttpFilter {
    RequestHeaderModifier(HeaderModifier),
    ResponseHeaderModifier(HeaderModifier),
    RequestRedirect(RequestRedirect),
    UrlRewrite(UrlRewrite),
    RequestMirror(RequestMirror),
    Cors(Cors),
    /// Answer directly without contacting a backend.
    DirectResponse(DirectResponse),
}

contract_type! {
/// Header edits: `set` replaces, `add` appends, `remove` deletes.
#[derive(Default)]
pub struct HeaderModifier {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<Header>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<Header>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}
}

contract_type! {
pub struct Header {
    pub name: String,
    pub value: String,
}
}

contract_type! {
/// A redirect; unset parts keep the request's own.
pub struct RequestRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status_code: u16,
}
}

contract_type! {
/// A rewrite of the request before it is forwarded.
#[derive(Default)]
pub struct UrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
#[serde(tag = "type", content = "value")]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the part matched by the rule's `PathPrefix` match.
    ReplacePrefixMatch(String),
}

contract_type! {
/// A copy of the request sent to another backend; its answer is dropped.
pub struct RequestMirror {
    /// Key into [`GatewayConfig::backends`].
    pub backend: String,
    /// Share of requests mirrored, in parts per million (1_000_000 = all).
    pub per_million: u32,
}
}

contract_type! {
/// Cross-origin resource sharing answers.
#[derive(Default)]
pub struct Cors {
    /// Origins, `*`, or `scheme://*.domain` wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
}
}

contract_type! {
/// A fixed answer.
pub struct DirectResponse {
    pub status_code: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}
}

contract_type! {
/// TLS connections for a set of server names (SNI).
pub struct TlsRoute {
    pub route: RouteRef,
    /// Exact names and `*.` wildcards; empty means any name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub backends: Vec<WeightedBackend>,
    /// Overrides the listener's mode for these names, so that one port can
    /// pass some names through and terminate others (on an `HTTPS`
    /// listener, only `Passthrough` routes are allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
}
}

contract_type! {
/// Where a TCP or UDP listener sends its connections or datagrams.
pub struct StreamRoute {
    pub route: RouteRef,
    pub backends: Vec<WeightedBackend>,
}
}

contract_type! {
/// A set of endpoints reached the same way.
pub struct Backend {
    /// The object the backend was resolved from, for logs and metrics.
    pub source: ObjectRef,
    #[serde(default)]
    pub protocol: BackendProtocol,
    /// Ready endpoints; none means every request to it gets 503.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// Re-encrypt: TLS to the endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
    /// A bound on retries to this backend, whichever rules send them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}
}

contract_type! {
/// Retries to a backend may make up at most `percent` of its requests over
/// `interval_ms`, and `min_retries` per `min_interval_ms` are always
/// allowed, so that a quiet backend can still be retried. A retry over the
/// budget is not sent: the client gets 503 (XBackendTrafficPolicy's
/// `retryConstraint`).
pub struct RetryBudget {
    pub percent: u32,
    pub interval_ms: u64,
    pub min_retries: u32,
    pub min_interval_ms: u64,
}
}

/// What the proxy speaks to a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum BackendProtocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (gRPC, `appProtocol: kubernetes.io/h2c`).
    H2c,
    /// A byte stream (TCP, TLS passthrough).
    Tcp,
    Udp,
}

contract_type! {
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
}
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastRequest,
}

contract_type! {
/// TLS from the proxy to a backend (BackendTLSPolicy).
pub struct BackendTls {
    /// SNI sent, and the name the certificate must carry unless
    /// `subject_alt_names` says otherwise.
    pub server_name: String,
    /// Keys into [`GatewayConfig::ca_bundles`]; empty means the system trust store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_bundles: Vec<String>,
    /// Names (DNS names or URIs) of which the certificate must carry one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Key into [`GatewayConfig::certificates`]: the client certificate the
    /// proxy presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}
}

contract_type! {
/// Proxy-wide settings.
#[derive(Default)]
pub struct ProxySettings {
    /// How long to wait for open requests on shutdown, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_ms: Option<u64>,
    /// How long to keep accepting after SIGTERM so that load balancers
    /// notice the endpoint going away, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_drain_ms: Option<u64>,
    #[serde(default)]
    pub access_log: AccessLog,
    #[serde(default)]
    pub limits: Limits,
}
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum AccessLog {
    #[default]
    Off,
    Json,
    Text,
}

contract_type! {
/// Edge limits; unset means the proxy's built-in default.
#[derive(Default)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_header_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_headers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_timeout_ms: Option<u64>,
    /// Longest pause while a client sends a request body; the request then
    /// gets 408 and the connection closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
}
}
