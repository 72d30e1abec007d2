//! Semantic validation of a decoded document.
//!
//! Reports every problem, each with the JSON path of the offending value, so
//! that one look at the proxy's log (or its Pod condition) says what to fix.
//! The operator runs the same validation before it writes a document, so a
//! failure in the proxy means a version skew or a hand-edited Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::*;
use crate::{ConfigDocument, FORMAT_VERSION, content_hash};

/// Upper bound of a backend weight, as in Gateway API.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Compiled size bound of a regular expression, so that a hostile pattern
/// cannot make matching slow or memory-hungry.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

const MAX_RETRY_ATTEMPTS: u32 = 100;

/// Longest window of a retry budget: an hour, as Gateway API allows.
const MAX_BUDGET_INTERVAL_MS: u64 = 3_600_000;

/// Longest session cookie or header name the proxy accepts.
pub const MAX_SESSION_NAME_LEN: usize = 128;

/// One problem, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON path of the offending value, e.g. `config.listeners[0].port`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in config: ", self.0.len())?;
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Compiles a pattern that must match a whole value, with the size bound the
/// proxy uses. Validation and matching share it, so what validates compiles.
pub fn anchored_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Checks everything decoding cannot: references resolve, values are in
/// range, protocols and their settings agree.
pub fn validate(document: &ConfigDocument) -> Result<(), ValidationErrors> {
    let mut v = Validator::default();
    if document.format_version != FORMAT_VERSION {
        v.error(
            "formatVersion",
            format!(
                "format version {} is not supported; this build reads {FORMAT_VERSION}",
                document.format_version
            ),
        );
    }
    let expected = content_hash(&document.config);
    if document.hash != expected {
        v.error(
            "hash",
            format!("does not match the content (expected {expected})"),
        );
    }
    v.config(&document.config);
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(v.errors))
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ValidationError>,
}

/// Which names a hostname field accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostnameKind {
    /// `*.` prefix allowed.
    Pattern,
    /// A concrete name only.
    Name,
}

impl Validator {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn config(&mut self, config: &GatewayConfig) {
        if config.gateway.namespace.is_empty() || config.gateway.name.is_empty() {
            self.error(
                "config.gateway",
                "namespace and name of the Gateway are required",
            );
        }
        let mut names = BTreeSet::new();
        let mut sockets = BTreeMap::new();
        for (index, listener) in config.listeners.iter().enumerate() {
            let path = format!("config.listeners[{index}]");
            if listener.name.is_empty() {
                self.error(format!("{path}.name"), "must not be empty");
            } else if !names.insert(listener.name.as_str()) {
                self.error(
                    format!("{path}.name"),
                    format!("listener name {:?} is used twice", listener.name),
                );
            }
            if listener.port == 0 {
                self.error(format!("{path}.port"), "must be between 1 and 65535");
            }
            let socket = (listener.port, listener.protocol.is_datagram());
            if let Some(first) = sockets.insert(socket, index) {
                self.error(
                    format!("{path}.port"),
                    format!(
                        "port {} is already bound by config.listeners[{first}]",
                        listener.port
                    ),
                );
            }
            self.listener(config, &path, listener);
        }
        for (name, backend) in &config.backends {
            self.backend(config, &format!("config.backends[{name:?}]"), backend);
        }
        for (name, certificate) in &config.certificates {
            let path = format!("config.certificates[{name:?}]");
            if !certificate
                .chain_pem
                .contains("-----BEGIN CERTIFICATE-----")
            {
                self.error(
                    format!("{path}.chainPem"),
                    "must hold at least one PEM certificate",
                );
            }
            let key = &certificate.private_key_pem;
            if !key.is_empty() && !is_pem_private_key(key) {
                self.error(format!("{path}.privateKeyPem"), "must be a PEM private key");
            }
        }
        for (name, bundle) in &config.ca_bundles {
            if !bundle.contains("-----BEGIN CERTIFICATE-----") {
                self.error(
                    format!("config.caBundles[{name:?}]"),
                    "must hold at least one PEM certificate",
                );
            }
        }
        self.settings(&config.settings);
    }

    fn listener(&mut self, config: &GatewayConfig, path: &str, listener: &Listener) {
        let protocol = listener.protocol;
        let is_http = matches!(protocol, Protocol::Http | Protocol::Https);
        match (protocol, &listener.tls) {
            (Protocol::Https | Protocol::Tls, None) => self.error(
                format!("{path}.tls"),
                format!("a {protocol:?} listener needs TLS settings"),
            ),
            (Protocol::Http | Protocol::Tcp | Protocol::Udp, Some(_)) => self.error(
                format!("{path}.tls"),
                format!("a {protocol:?} listener takes no TLS settings"),
            ),
            (_, Some(tls)) => self.listener_tls(config, &format!("{path}.tls"), protocol, tls),
            _ => {}
        }
        if !is_http && !listener.virtual_hosts.is_empty() {
            self.error(
                format!("{path}.virtualHosts"),
                format!("a {protocol:?} listener serves no HTTP virtual hosts"),
            );
        }
        match protocol {
            Protocol::Tls => {}
            // HTTPS and TLS passthrough can share a port, split by SNI.
            Protocol::Https => {
                for (index, route) in listener.tls_routes.iter().enumerate() {
                    if route.mode != Some(TlsMode::Passthrough) {
                        self.error(
                            format!("{path}.tlsRoutes[{index}].mode"),
                            "TLS routes on an HTTPS listener must be Passthrough",
                        );
                    }
                }
            }
            _ if !listener.tls_routes.is_empty() => self.error(
                format!("{path}.tlsRoutes"),
                format!("a {protocol:?} listener takes no TLS routes"),
            ),
            _ => {}
        }
        if !matches!(protocol, Protocol::Tcp | Protocol::Udp) && listener.stream_route.is_some() {
            self.error(
                format!("{path}.streamRoute"),
                format!("a {protocol:?} listener takes no stream route"),
            );
        }
        for (index, host) in listener.virtual_hosts.iter().enumerate() {
            let host_path = format!("{path}.virtualHosts[{index}]");
            if !listener.sources.is_empty() && !listener.sources.contains(&host.source) {
                self.error(
                    format!("{host_path}.source"),
                    format!(
                        "{:?} is not one of the listener's sources {:?}",
                        host.source, listener.sources
                    ),
                );
            }
            self.virtual_host(config, &host_path, host);
        }
        let passthrough_listener = listener
            .tls
            .as_ref()
            .is_some_and(|tls| protocol == Protocol::Tls && tls.mode == TlsMode::Passthrough);
        for (index, route) in listener.tls_routes.iter().enumerate() {
            let route_path = format!("{path}.tlsRoutes[{index}]");
            if passthrough_listener && route.mode == Some(TlsMode::Terminate) {
                self.error(
                    format!("{route_path}.mode"),
                    "a passthrough listener has no certificates to terminate with",
                );
            }
            self.hostnames(&format!("{route_path}.hostnames"), &route.hostnames);
            self.backends(
                config,
                &format!("{route_path}.backends"),
                &route.backends,
                false,
            );
        }
        if let Some(route) = &listener.stream_route {
            self.backends(
                config,
                &format!("{path}.streamRoute.backends"),
                &route.backends,
                false,
            );
        }
    }

    fn listener_tls(
        &mut self,
        config: &GatewayConfig,
        path: &str,
        protocol: Protocol,
        tls: &ListenerTls,
    ) {
        let passthrough = protocol == Protocol::Tls && tls.mode == TlsMode::Passthrough;
        if passthrough {
            if !tls.certificates.is_empty() || tls.client_validation.is_some() {
                self.error(
                    path,
                    "a passthrough listener does not terminate TLS: it takes no certificates or client validation",
                );
            }
        } else if tls.certificates.is_empty() {
            self.error(
                format!("{path}.certificates"),
                "a terminating listener needs at least one certificate",
            );
        }
        for (index, served) in tls.certificates.iter().enumerate() {
            let cert_path = format!("{path}.certificates[{index}]");
            match config.certificates.get(&served.certificate) {
                None => self.error(
                    format!("{cert_path}.certificate"),
                    format!("no certificate named {:?}", served.certificate),
                ),
                Some(certificate) if certificate.private_key_pem.is_empty() => self.error(
                    format!("{cert_path}.certificate"),
                    format!("certificate {:?} has no private key", served.certificate),
                ),
                Some(_) => {}
            }
            self.hostnames(&format!("{cert_path}.serverNames"), &served.server_names);
        }
        if let Some(validation) = &tls.client_validation {
            let validation_path = format!("{path}.clientValidation.caBundles");
            if validation.ca_bundles.is_empty() {
                self.error(&validation_path, "at least one CA bundle is required");
            }
            self.ca_refs(config, &validation_path, &validation.ca_bundles);
        }
    }

    fn virtual_host(&mut self, config: &GatewayConfig, path: &str, host: &VirtualHost) {
        self.hostnames(&format!("{path}.hostnames"), &host.hostnames);
        for (index, rule) in host.rules.iter().enumerate() {
            self.http_rule(config, &format!("{path}.rules[{index}]"), rule);
        }
        for (index, ordered) in host.matches.iter().enumerate() {
            let match_path = format!("{path}.matches[{index}]");
            let Some(rule) = host.rules.get(ordered.rule as usize) else {
                self.error(
                    format!("{match_path}.rule"),
                    format!(
                        "there is no rule {} ({} rules)",
                        ordered.rule,
                        host.rules.len()
                    ),
                );
                continue;
            };
            self.http_match(&format!("{match_path}.match"), &ordered.matcher);
            let replaces_prefix = rule
                .filters
                .iter()
                .chain(rule.backends.iter().flat_map(|backend| &backend.filters))
                .any(|filter| {
                    matches!(
                        filter,
                        HttpFilter::RequestRedirect(RequestRedirect {
                            path: Some(PathModifier::ReplacePrefixMatch(_)),
                            ..
                        }) | HttpFilter::UrlRewrite(UrlRewrite {
                            path: Some(PathModifier::ReplacePrefixMatch(_)),
                            ..
                        })
                    )
                });
            if replaces_prefix && !matches!(ordered.matcher.path, Some(PathMatch::PathPrefix(_))) {
                self.error(
                    format!("{match_path}.match.path"),
                    format!(
                        "rule {} replaces a prefix match, so its matches must be PathPrefix",
                        ordered.rule
                    ),
                );
            }
        }
    }

    fn http_match(&mut self, path: &str, matcher: &HttpMatch) {
        match &matcher.path {
            Some(PathMatch::Exact(value) | PathMatch::PathPrefix(value)) => {
                self.absolute_path(&format!("{path}.path.value"), value);
            }
            Some(PathMatch::RegularExpression(pattern)) => {
                self.regex(&format!("{path}.path.value"), pattern);
            }
            None => {}
        }
        if let Some(method) = &matcher.method
            && !is_token(method)
        {
            self.error(
                format!("{path}.method"),
                format!("{method:?} is not an HTTP method"),
            );
        }
        for (index, header) in matcher.headers.iter().enumerate() {
            let header_path = format!("{path}.headers[{index}]");
            if !is_token(&header.name) {
                self.error(
                    format!("{header_path}.name"),
                    format!("{:?} is not a header name", header.name),
                );
            }
            self.value_match(&header_path, header);
        }
        for (index, param) in matcher.query_params.iter().enumerate() {
            let param_path = format!("{path}.queryParams[{index}]");
            if param.name.is_empty() {
                self.error(format!("{param_path}.name"), "must not be empty");
            }
            self.value_match(&param_path, param);
        }
    }

    fn value_match(&mut self, path: &str, value: &ValueMatch) {
        match value.kind {
            ValueMatchKind::Exact if !is_header_value(&value.value) => self.error(
                format!("{path}.value"),
                "must not contain control characters",
            ),
            ValueMatchKind::RegularExpression => self.regex(&format!("{path}.value"), &value.value),
            ValueMatchKind::Exact => {}
        }
    }

    fn http_rule(&mut self, config: &GatewayConfig, path: &str, rule: &HttpRule) {
        self.filters(config, &format!("{path}.filters"), &rule.filters);
        self.backends(config, &format!("{path}.backends"), &rule.backends, true);
        if let Some(timeouts) = &rule.timeouts
            && let (Some(request), Some(backend)) =
                (timeouts.request_ms, timeouts.backend_request_ms)
            && backend > request
        {
            self.error(
                format!("{path}.timeouts.backendRequestMs"),
                format!("{backend} ms exceeds the request timeout of {request} ms"),
            );
        }
        if let Some(retry) = &rule.retry {
            if retry.attempts > MAX_RETRY_ATTEMPTS {
                self.error(
                    format!("{path}.retry.attempts"),
                    format!("at most {MAX_RETRY_ATTEMPTS} attempts"),
                );
            }
            for (index, code) in retry.status_codes.iter().enumerate() {
                if !(400..=599).contains(code) {
                    self.error(
                        format!("{path}.retry.statusCodes[{index}]"),
                        format!("{code} is not an error status (400-599)"),
                    );
                }
            }
        }
        if let Some(session) = &rule.session_persistence {
            self.session_persistence(&format!("{path}.sessionPersistence"), session);
        }
    }

    fn session_persistence(&mut self, path: &str, session: &SessionPersistence) {
        if !is_session_name(&session.name) {
            self.error(
                format!("{path}.name"),
                format!(
                    "{:?} is not a cookie or header name (1 to {MAX_SESSION_NAME_LEN} token characters)",
                    session.name
                ),
            );
        }
        if session.path.as_deref().is_some_and(|p| !is_cookie_path(p)) {
            self.error(
                format!("{path}.path"),
                "must start with / and hold no ';', control or non-ASCII characters",
            );
        }
        if session.permanent && session.absolute_timeout_s.is_none() {
            self.error(
                format!("{path}.absoluteTimeoutS"),
                "a permanent cookie needs an absolute timeout for its Max-Age",
            );
        }
    }

    fn backends(
        &mut self,
        config: &GatewayConfig,
        path: &str,
        backends: &[WeightedBackend],
        http: bool,
    ) {
        for (index, weighted) in backends.iter().enumerate() {
            let backend_path = format!("{path}[{index}]");
            if let BackendTarget::Backend(name) = &weighted.target
                && !config.backends.contains_key(name)
            {
                self.error(
                    format!("{backend_path}.target"),
                    format!("no backend named {name:?}"),
                );
            }
            if weighted.weight > MAX_WEIGHT {
                self.error(
                    format!("{backend_path}.weight"),
                    format!(
                        "{} exceeds the maximum weight {MAX_WEIGHT}",
                        weighted.weight
                    ),
                );
            }
            if !http && !weighted.filters.is_empty() {
                self.error(
                    format!("{backend_path}.filters"),
                    "only HTTP backends take filters",
                );
            }
            self.filters(
                config,
                &format!("{backend_path}.filters"),
                &weighted.filters,
            );
        }
    }

    fn filters(&mut self, config: &GatewayConfig, path: &str, filters: &[HttpFilter]) {
        for (index, filter) in filters.iter().enumerate() {
            let filter_path = format!("{path}[{index}]");
            match filter {
                HttpFilter::RequestHeaderModifier(modifier)
                | HttpFilter::ResponseHeaderModifier(modifier) => {
                    self.header_modifier(&filter_path, modifier);
                }
                HttpFilter::RequestRedirect(redirect) => {
                    if !matches!(redirect.status_code, 301 | 302 | 303 | 307 | 308) {
                        self.error(
                            format!("{filter_path}.statusCode"),
                            format!(
                                "{} is not a redirect status (301, 302, 303, 307, 308)",
                                redirect.status_code
                            ),
                        );
                    }
                    if let Some(scheme) = &redirect.scheme
                        && scheme != "http"
                        && scheme != "https"
                    {
                        self.error(
                            format!("{filter_path}.scheme"),
                            format!("{scheme:?} is neither http nor https"),
                        );
                    }
                    if let Some(hostname) = &redirect.hostname {
                        self.hostname(
                            &format!("{filter_path}.hostname"),
                            hostname,
                            HostnameKind::Name,
                        );
                    }
                    if redirect.port == Some(0) {
                        self.error(format!("{filter_path}.port"), "must be between 1 and 65535");
                    }
                    self.path_modifier(&format!("{filter_path}.path"), redirect.path.as_ref());
                }
                HttpFilter::UrlRewrite(rewrite) => {
                    if let Some(hostname) = &rewrite.hostname {
                        self.hostname(
                            &format!("{filter_path}.hostname"),
                            hostname,
                            HostnameKind::Name,
                        );
                    }
                    self.path_modifier(&format!("{filter_path}.path"), rewrite.path.as_ref());
                }
                HttpFilter::RequestMirror(mirror) => {
                    if !config.backends.contains_key(&mirror.backend) {
                        self.error(
                            format!("{filter_path}.backend"),
                            format!("no backend named {:?}", mirror.backend),
                        );
                    }
                    if mirror.per_million > 1_000_000 {
                        self.error(
                            format!("{filter_path}.perMillion"),
                            "must be at most 1000000 (every request)",
                        );
                    }
                }
                HttpFilter::Cors(cors) => {
                    for (list, names) in [
                        ("allowHeaders", &cors.allow_headers),
                        ("exposeHeaders", &cors.expose_headers),
                        ("allowMethods", &cors.allow_methods),
                    ] {
                        for (name_index, name) in names.iter().enumerate() {
                            if name != "*" && !is_token(name) {
                                self.error(
                                    format!("{filter_path}.{list}[{name_index}]"),
                                    format!("{name:?} is not a token"),
                                );
                            }
                        }
                    }
                    for (origin_index, origin) in cors.allow_origins.iter().enumerate() {
                        if !is_header_value(origin) || origin.is_empty() {
                            self.error(
                                format!("{filter_path}.allowOrigins[{origin_index}]"),
                                format!("{origin:?} is not an origin"),
                            );
                        }
                    }
                }
                HttpFilter::DirectResponse(response) => {
                    if !(200..=599).contains(&response.status_code) {
                        self.error(
                            format!("{filter_path}.statusCode"),
                            format!("{} is not a final status (200-599)", response.status_code),
                        );
                    }
                }
            }
        }
    }

    fn header_modifier(&mut self, path: &str, modifier: &HeaderModifier) {
        for (list, headers) in [("set", &modifier.set), ("add", &modifier.add)] {
            for (index, header) in headers.iter().enumerate() {
                if !is_token(&header.name) {
                    self.error(
                        format!("{path}.{list}[{index}].name"),
                        format!("{:?} is not a header name", header.name),
                    );
                }
                if !is_header_value(&header.value) {
                    self.error(
                        format!("{path}.{list}[{index}].value"),
                        "must not contain control characters",
                    );
                }
            }
        }
        for (index, name) in modifier.remove.iter().enumerate() {
            if !is_token(name) {
                self.error(
                    format!("{path}.remove[{index}]"),
                    format!("{name:?} is not a header name"),
                );
            }
        }
    }

    fn path_modifier(&mut self, path: &str, modifier: Option<&PathModifier>) {
        match modifier {
            Some(
                PathModifier::ReplaceFullPath(value) | PathModifier::ReplacePrefixMatch(value),
            ) => {
                self.absolute_path(&format!("{path}.value"), value);
            }
            None => {}
        }
    }

    fn backend(&mut self, config: &GatewayConfig, path: &str, backend: &Backend) {
        for (index, endpoint) in backend.endpoints.iter().enumerate() {
            if endpoint.port == 0 {
                self.error(
                    format!("{path}.endpoints[{index}].port"),
                    "must be between 1 and 65535",
                );
            }
        }
        if let Some(tls) = &backend.tls {
            self.hostname(
                &format!("{path}.tls.serverName"),
                &tls.server_name,
                HostnameKind::Name,
            );
            self.ca_refs(config, &format!("{path}.tls.caBundles"), &tls.ca_bundles);
            if let Some(name) = &tls.client_certificate {
                match config.certificates.get(name) {
                    None => self.error(
                        format!("{path}.tls.clientCertificate"),
                        format!("no certificate named {name:?}"),
                    ),
                    Some(certificate) if certificate.private_key_pem.is_empty() => self.error(
                        format!("{path}.tls.clientCertificate"),
                        format!("certificate {name:?} has no private key"),
                    ),
                    Some(_) => {}
                }
            }
        }
        if let Some(budget) = &backend.retry_budget {
            let path = format!("{path}.retryBudget");
            if budget.percent > 100 {
                self.error(format!("{path}.percent"), "at most 100");
            }
            for (field, ms) in [
                ("intervalMs", budget.interval_ms),
                ("minIntervalMs", budget.min_interval_ms),
            ] {
                if !(1..=MAX_BUDGET_INTERVAL_MS).contains(&ms) {
                    self.error(
                        format!("{path}.{field}"),
                        format!("must be between 1 and {MAX_BUDGET_INTERVAL_MS} ms"),
                    );
                }
            }
        }
    }

    fn settings(&mut self, settings: &ProxySettings) {
        let limits = &settings.limits;
        for (name, value) in [
            (
                "maxRequestHeaderBytes",
                limits.max_request_header_bytes.map(u64::from),
            ),
            (
                "maxRequestHeaders",
                limits.max_request_headers.map(u64::from),
            ),
            ("maxConnections", limits.max_connections.map(u64::from)),
            ("requestHeaderTimeoutMs", limits.request_header_timeout_ms),
            ("requestBodyTimeoutMs", limits.request_body_timeout_ms),
            ("idleTimeoutMs", limits.idle_timeout_ms),
        ] {
            if value == Some(0) {
                self.error(
                    format!("config.settings.limits.{name}"),
                    "must be positive when set",
                );
            }
        }
    }

    fn ca_refs(&mut self, config: &GatewayConfig, path: &str, names: &[String]) {
        for (index, name) in names.iter().enumerate() {
            if !config.ca_bundles.contains_key(name) {
                self.error(
                    format!("{path}[{index}]"),
                    format!("no CA bundle named {name:?}"),
                );
            }
        }
    }

    fn hostnames(&mut self, path: &str, hostnames: &[String]) {
        for (index, hostname) in hostnames.iter().enumerate() {
            self.hostname(&format!("{path}[{index}]"), hostname, HostnameKind::Pattern);
        }
    }

    fn hostname(&mut self, path: &str, hostname: &str, kind: HostnameKind) {
        if let Err(problem) = check_hostname(hostname, kind == HostnameKind::Pattern) {
            self.error(path, format!("{hostname:?} {problem}"));
        }
    }

    fn absolute_path(&mut self, path: &str, value: &str) {
        if !value.starts_with('/') {
            self.error(path, format!("{value:?} must start with '/'"));
        } else if value
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '?' || c == '#')
        {
            self.error(
                path,
                format!("{value:?} must not contain spaces, controls, '?' or '#'"),
            );
        }
    }

    fn regex(&mut self, path: &str, pattern: &str) {
        if let Err(err) = anchored_regex(pattern) {
            self.error(path, format!("invalid regular expression: {err}"));
        }
    }
}

/// Checks a DNS name as Gateway API defines it: lower-case RFC 1123 labels,
/// optionally behind a single leading `*.` when `wildcard` is allowed.
fn check_hostname(hostname: &str, wildcard: bool) -> Result<(), &'static str> {
    let name = match hostname.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        Some(_) => return Err("must be a name, not a wildcard"),
        None => hostname,
    };
    if name.is_empty() || hostname.len() > 253 {
        return Err("must be 1 to 253 characters");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("must be a name, not an IP address");
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(
                "is not a lower-case DNS name (labels of a-z, 0-9 and '-', at most 63 each)",
            );
        }
    }
    Ok(())
}

fn is_pem_private_key(pem: &str) -> bool {
    pem.contains("-----BEGIN ") && pem.contains("PRIVATE KEY-----")
}

/// An RFC 9110 token: header names, methods.
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `name` can name a session cookie and header alike: a token of
/// at most [`MAX_SESSION_NAME_LEN`] characters. The operator checks the
/// route's `sessionName` with this, so what it sends always validates.
pub fn is_session_name(name: &str) -> bool {
    name.len() <= MAX_SESSION_NAME_LEN && is_token(name)
}

/// Whether `path` can be a cookie's `Path`: absolute, ASCII, no `;` and no
/// control characters. The operator checks route paths with this too.
pub fn is_cookie_path(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b != b';' && b.is_ascii() && !b.is_ascii_control())
}

/// A header value without control characters (tab allowed).
fn is_header_value(value: &str) -> bool {
    value.chars().all(|c| c == '\t' || !c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_gateway_api_rules() {
        let cases: &[(&str, bool, bool)] = &[
            ("example.com", false, true),
            ("a-b.example.com", false, true),
            ("*.example.com", true, true),
            ("*.example.com", false, false),
            ("*", true, false),
            ("foo.*.com", true, false),
            ("Example.com", false, false),
            ("-a.com", false, false),
            ("a..com", false, false),
            ("10.0.0.1", false, false),
            ("", false, false),
        ];
        for &(hostname, wildcard, ok) in cases {
            assert_eq!(
                check_hostname(hostname, wildcard).is_ok(),
                ok,
                "{hostname} wildcard={wildcard}"
            );
        }
    }

    #[test]
    fn tokens_and_values() {
        assert!(is_token("X-Request-Id"));
        assert!(is_token("GET"));
        assert!(!is_token("bad header"));
        assert!(!is_token(""));
        assert!(is_header_value("a\tb"));
        assert!(!is_header_value("a\r\nb"));
    }

    #[test]
    fn regexes_match_whole_values() {
        let regex = anchored_regex("/v[0-9]+").expect("valid");
        assert!(regex.is_match("/v12"));
        assert!(!regex.is_match("/v12/x"));
        assert!(anchored_regex("(").is_err());
    }
}
