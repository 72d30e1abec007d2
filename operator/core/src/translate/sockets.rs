//! Listeners to sockets: Gateway listeners sharing a port become one proxy
//! listener, with HTTP virtual hosts in the spec's precedence, TLS routes by
//! SNI, or one TCP/UDP stream route.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use proxy_config::{
    HttpMatch, Listener, ListenerTls, OrderedMatch, PathMatch, Protocol, ServerCertificate,
    StreamRoute, TlsMode, TlsRoute, VirtualHost, WildcardDepth,
};

use super::attachment::Attachment;
use super::compiled::CompiledRoute;
use super::listeners::{ListenerProtocol, ListenerState};
use super::output::ServicePort;
use super::routes::RouteView;
use crate::keys::RouteKind;

/// The proxy listeners of a Gateway, one per bound socket, and the ports
/// its Service exposes.
pub(super) fn sockets(
    listeners: &[ListenerState],
    attachments: &[Attachment],
    routes: &[RouteView],
    compiled: &[CompiledRoute],
) -> (Vec<Listener>, Vec<ServicePort>) {
    let mut by_socket: BTreeMap<(u16, bool), Vec<usize>> = BTreeMap::new();
    for (index, listener) in listeners.iter().enumerate() {
        if let (true, Some(protocol)) = (listener.programmable(), listener.protocol) {
            by_socket
                .entry((listener.port, protocol == ListenerProtocol::Udp))
                .or_default()
                .push(index);
        }
    }
    let mut sockets = Vec::new();
    let mut ports = Vec::new();
    for ((port, udp), members) in by_socket {
        let protocols: Vec<ListenerProtocol> = members
            .iter()
            .filter_map(|&i| listeners[i].protocol)
            .collect();
        let protocol = if protocols.contains(&ListenerProtocol::Https) {
            Protocol::Https
        } else {
            match protocols.first() {
                Some(ListenerProtocol::Http) => Protocol::Http,
                Some(ListenerProtocol::Tls(_)) => Protocol::Tls,
                Some(ListenerProtocol::Tcp) => Protocol::Tcp,
                Some(ListenerProtocol::Udp) => Protocol::Udp,
                _ => continue,
            }
        };
        let name = format!("{}-{port}", format!("{protocol:?}").to_ascii_lowercase());
        let mut socket = Listener {
            name: name.clone(),
            port,
            protocol,
            sources: members
                .iter()
                .map(|&i| listeners[i].source.clone())
                .collect(),
            tls: None,
            virtual_hosts: Vec::new(),
            tls_routes: Vec::new(),
            stream_route: None,
        };
        // TLS termination settings.
        if matches!(protocol, Protocol::Https | Protocol::Tls) {
            let passthrough_only = protocols
                .iter()
                .all(|p| *p == ListenerProtocol::Tls(TlsMode::Passthrough));
            let mut certificates = Vec::new();
            let mut ordered: Vec<usize> = members.clone();
            // Catch-all listeners' certificates first: a handshake without a
            // matching SNI gets the first.
            ordered.sort_by_key(|&i| listeners[i].hostname.is_some());
            for &i in &ordered {
                if matches!(
                    listeners[i].protocol,
                    Some(ListenerProtocol::Tls(TlsMode::Passthrough))
                ) {
                    continue;
                }
                for certificate in &listeners[i].certificates {
                    certificates.push(ServerCertificate {
                        certificate: certificate.clone(),
                        server_names: listeners[i].hostname.iter().cloned().collect(),
                    });
                }
            }
            let client_validation = members
                .iter()
                .find_map(|&i| listeners[i].client_validation.clone());
            socket.tls = Some(ListenerTls {
                certificates,
                mode: if passthrough_only {
                    TlsMode::Passthrough
                } else {
                    TlsMode::Terminate
                },
                client_validation: if passthrough_only {
                    None
                } else {
                    client_validation
                },
            });
        }
        match protocol {
            Protocol::Http | Protocol::Https => {
                socket.virtual_hosts = virtual_hosts(
                    listeners,
                    &members,
                    attachments,
                    routes,
                    compiled,
                    protocol == Protocol::Https,
                );
                if protocol == Protocol::Https {
                    socket.tls_routes = tls_routes(
                        listeners,
                        &members,
                        attachments,
                        routes,
                        compiled,
                        Some(TlsMode::Passthrough),
                    );
                }
            }
            Protocol::Tls => {
                socket.tls_routes =
                    tls_routes(listeners, &members, attachments, routes, compiled, None);
            }
            Protocol::Tcp | Protocol::Udp => {
                socket.stream_route = stream_route(&members, attachments, routes, compiled);
            }
        }
        ports.push(ServicePort {
            name: name.clone(),
            port,
            protocol: if udp { "UDP" } else { "TCP" },
        });
        sockets.push(socket);
    }
    (sockets, ports)
}

/// How specific a listener hostname is for a request hostname: exact beats
/// wildcard (longer beats shorter), which beats none.
fn specificity(listener: Option<&str>, host: &str) -> Option<(u8, usize)> {
    match listener {
        None => Some((0, 0)),
        Some(l) if l == host => Some((2, l.len())),
        Some(l) => {
            let suffix = l.strip_prefix('*')?;
            let host_suffix_ok = host.len() > suffix.len() && host.ends_with(suffix);
            host_suffix_ok.then_some((1, l.len()))
        }
    }
}

struct Entry<'a> {
    attachment: &'a Attachment,
    rule: usize,
    matcher: &'a HttpMatch,
    match_index: usize,
}

fn virtual_hosts(
    listeners: &[ListenerState],
    members: &[usize],
    attachments: &[Attachment],
    routes: &[RouteView],
    compiled: &[CompiledRoute],
    tls: bool,
) -> Vec<VirtualHost> {
    // Listener isolation: a hostname belongs to the most specific listener
    // of the port that covers it; only routes attached there serve it.
    let owner = |hostname: &str| -> Option<usize> {
        members
            .iter()
            .filter_map(|&i| {
                if hostname.is_empty() {
                    listeners[i].hostname.is_none().then_some((i, (0, 0)))
                } else {
                    specificity(listeners[i].hostname.as_deref(), hostname).map(|s| (i, s))
                }
            })
            .max_by_key(|(i, s)| (*s, Reverse(*i)))
            .map(|(i, _)| i)
    };
    // hostname → (owning listener, entries)
    let mut hosts: BTreeMap<String, (usize, Vec<Entry<'_>>)> = BTreeMap::new();
    for attachment in attachments {
        if !members.contains(&attachment.listener) {
            continue;
        }
        let route = &routes[attachment.route];
        if !matches!(route.kind, RouteKind::Http | RouteKind::Grpc) {
            continue;
        }
        let hostnames = if attachment.hostnames.is_empty() {
            vec![String::new()]
        } else {
            attachment.hostnames.clone()
        };
        for hostname in hostnames {
            if owner(&hostname) != Some(attachment.listener) {
                continue;
            }
            let (_, entries) = hosts
                .entry(hostname.clone())
                .or_insert_with(|| (attachment.listener, Vec::new()));
            for (rule_index, rule) in compiled[attachment.route].rules.iter().enumerate() {
                for (match_index, matcher) in rule.matches.iter().enumerate() {
                    entries.push(Entry {
                        attachment,
                        rule: rule_index,
                        matcher,
                        match_index,
                    });
                }
            }
        }
    }
    // On TLS, every listener's own hostname gets a host, even without
    // routes, so that a request whose Host belongs to another listener than
    // its SNI is told 421 rather than routed or 404'd.
    if tls {
        for &i in members {
            let hostname = listeners[i].hostname.clone().unwrap_or_default();
            hosts.entry(hostname).or_insert_with(|| (i, Vec::new()));
        }
    }
    let mut out = Vec::new();
    for (hostname, (owner, mut entries)) in hosts {
        entries.sort_by(|a, b| precedence(a, routes).cmp(&precedence(b, routes)));
        let source = listeners[owner].source.clone();
        let mut rules = Vec::new();
        let mut rule_ids: BTreeMap<(usize, usize), u32> = BTreeMap::new();
        let mut matches = Vec::new();
        for entry in &entries {
            let id = *rule_ids
                .entry((entry.attachment.route, entry.rule))
                .or_insert_with(|| {
                    rules.push(
                        compiled[entry.attachment.route].rules[entry.rule]
                            .rule
                            .clone(),
                    );
                    u32::try_from(rules.len() - 1).unwrap_or(u32::MAX)
                });
            matches.push(OrderedMatch {
                rule: id,
                matcher: entry.matcher.clone(),
            });
        }
        out.push(VirtualHost {
            source,
            hostnames: if hostname.is_empty() {
                Vec::new()
            } else {
                vec![hostname]
            },
            wildcard_depth: WildcardDepth::AnyLabels,
            rules,
            matches,
        });
    }
    out
}

/// The spec's order: exact path, longest prefix (regexes between), method,
/// most headers, most query parameters; then oldest route, then
/// namespace/name, then rule and match order.
#[allow(clippy::type_complexity)]
fn precedence<'a>(
    entry: &Entry<'a>,
    routes: &'a [RouteView],
) -> (
    Reverse<u8>,
    Reverse<usize>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
    Option<i64>,
    &'a str,
    &'a str,
    usize,
    usize,
) {
    let route = &routes[entry.attachment.route];
    let (rank, length) = match &entry.matcher.path {
        Some(PathMatch::Exact(p)) => (3, p.len()),
        Some(PathMatch::RegularExpression(p)) => (2, p.len()),
        Some(PathMatch::PathPrefix(p)) => {
            (1, p.trim_end_matches('/').len() + usize::from(p == "/"))
        }
        None => (0, 0),
    };
    (
        Reverse(rank),
        Reverse(length),
        Reverse(entry.matcher.method.is_some()),
        Reverse(entry.matcher.headers.len()),
        Reverse(entry.matcher.query_params.len()),
        route.created.as_ref().map(|t| t.0.as_second()),
        route.namespace.as_str(),
        route.name.as_str(),
        entry.rule,
        entry.match_index,
    )
}

fn tls_routes(
    listeners: &[ListenerState],
    members: &[usize],
    attachments: &[Attachment],
    routes: &[RouteView],
    compiled: &[CompiledRoute],
    mode_override: Option<TlsMode>,
) -> Vec<TlsRoute> {
    let mut out = Vec::new();
    let mixed = members
        .iter()
        .filter_map(|&i| listeners[i].protocol)
        .any(|p| p == ListenerProtocol::Tls(TlsMode::Terminate))
        && members
            .iter()
            .filter_map(|&i| listeners[i].protocol)
            .any(|p| p == ListenerProtocol::Tls(TlsMode::Passthrough));
    for attachment in attachments {
        if !members.contains(&attachment.listener)
            || routes[attachment.route].kind != RouteKind::Tls
        {
            continue;
        }
        let listener_mode = match listeners[attachment.listener].protocol {
            Some(ListenerProtocol::Tls(mode)) => mode,
            _ => continue,
        };
        // One rule per TLSRoute is what the spec allows.
        if let Some(rule) = compiled[attachment.route].rules.first() {
            out.push(TlsRoute {
                route: rule.rule.route.clone(),
                hostnames: attachment.hostnames.clone(),
                backends: rule.rule.backends.clone(),
                mode: mode_override.or(mixed.then_some(listener_mode)),
            });
        }
    }
    out
}

fn stream_route(
    members: &[usize],
    attachments: &[Attachment],
    routes: &[RouteView],
    compiled: &[CompiledRoute],
) -> Option<StreamRoute> {
    let mut candidates: Vec<&Attachment> = attachments
        .iter()
        .filter(|a| members.contains(&a.listener))
        .filter(|a| matches!(routes[a.route].kind, RouteKind::Tcp | RouteKind::Udp))
        .collect();
    // The oldest route wins the port.
    candidates.sort_by_key(|a| {
        let route = &routes[a.route];
        (
            route.created.as_ref().map(|t| t.0.as_second()),
            route.namespace.clone(),
            route.name.clone(),
        )
    });
    candidates.into_iter().find_map(|a| {
        compiled[a.route].rules.first().map(|rule| StreamRoute {
            route: rule.rule.route.clone(),
            backends: rule.rule.backends.clone(),
        })
    })
}
