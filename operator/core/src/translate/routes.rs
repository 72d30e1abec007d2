//! Routes of every kind seen through one shape, and how they attach to
//! listeners: `parentRefs`, `sectionName`/`port`, `allowedRoutes` and
//! hostname intersection.

use gwapi::grpcroutes::{GrpcRouteRulesMatches, GrpcRouteUseDefaultGateways};
use gwapi::httproutes::{
    HttpRouteRulesBackendRefs, HttpRouteRulesFilters, HttpRouteRulesMatches, HttpRouteRulesRetry,
    HttpRouteRulesSessionPersistence, HttpRouteRulesTimeouts, HttpRouteUseDefaultGateways,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use crate::convert::reshape;
use crate::keys::{ObjectKey, RouteKey, RouteKind};
use crate::names::GATEWAY_GROUP;
use crate::snapshot::Snapshot;

/// A route's reference to its parent, the same for every kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

impl ParentRef {
    /// Whether it names a Gateway (the defaults of group and kind).
    pub fn is_gateway(&self) -> bool {
        self.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
            && self.kind.as_deref().unwrap_or("Gateway") == "Gateway"
    }
}

/// The matches of a rule, by route kind.
#[derive(Debug, Clone)]
pub(super) enum RuleMatches {
    Http(Vec<HttpRouteRulesMatches>),
    Grpc(Vec<GrpcRouteRulesMatches>),
    /// TLS, TCP and UDP rules match by listener (and SNI) only.
    None,
}

/// One rule of any route kind.
#[derive(Debug, Clone)]
pub(super) struct RuleView {
    pub name: Option<String>,
    pub matches: RuleMatches,
    /// GRPCRoute filters are a subset of HTTPRoute's, reshaped into them.
    pub filters: Vec<HttpRouteRulesFilters>,
    pub backends: Vec<HttpRouteRulesBackendRefs>,
    pub timeouts: Option<HttpRouteRulesTimeouts>,
    /// Experimental channel only.
    pub retry: Option<HttpRouteRulesRetry>,
    /// Experimental channel only; GRPCRoute's is reshaped into HTTPRoute's.
    pub session_persistence: Option<HttpRouteRulesSessionPersistence>,
}

/// One route of any kind.
#[derive(Debug, Clone)]
pub(super) struct RouteView {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// For precedence: older routes win ties.
    pub created: Option<Time>,
    pub parent_refs: Vec<ParentRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<RuleView>,
    /// `spec.useDefaultGateways` (experimental channel): not implemented
    /// yet, so reported.
    pub uses_default_gateways: bool,
}

impl RouteView {
    /// The route's key in statuses.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            kind: self.kind,
            key: ObjectKey::new(self.namespace.clone(), self.name.clone()),
        }
    }

    /// The Gateway a parentRef names: its namespace defaults to the route's.
    pub fn parent_key(&self, parent: &ParentRef) -> ObjectKey {
        ObjectKey::new(
            parent
                .namespace
                .clone()
                .unwrap_or_else(|| self.namespace.clone()),
            parent.name.clone(),
        )
    }

    fn new(kind: RouteKind, meta: &ObjectMeta) -> RouteView {
        RouteView {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            generation: meta.generation,
            created: meta.creation_timestamp.clone(),
            parent_refs: Vec::new(),
            hostnames: Vec::new(),
            rules: Vec::new(),
            uses_default_gateways: false,
        }
    }
}

/// Every route of the snapshot, in a fixed order (kind, namespace, name).
pub(super) fn views(snapshot: &Snapshot) -> Vec<RouteView> {
    let mut views = Vec::new();
    for route in &snapshot.http_routes {
        let mut view = RouteView::new(RouteKind::Http, &route.metadata);
        view.parent_refs = reshape(&route.spec.parent_refs).unwrap_or_default();
        view.hostnames = route.spec.hostnames.clone().unwrap_or_default();
        view.rules = route
            .spec
            .rules
            .iter()
            .flatten()
            .map(|rule| RuleView {
                name: rule.name.clone(),
                matches: RuleMatches::Http(rule.matches.clone().unwrap_or_default()),
                filters: rule.filters.clone().unwrap_or_default(),
                backends: rule.backend_refs.clone().unwrap_or_default(),
                timeouts: rule.timeouts.clone(),
                retry: rule.retry.clone(),
                session_persistence: rule.session_persistence.clone(),
            })
            .collect();
        view.uses_default_gateways = matches!(
            route.spec.use_default_gateways,
            Some(HttpRouteUseDefaultGateways::All)
        );
        views.push(view);
    }
    for route in &snapshot.grpc_routes {
        let mut view = RouteView::new(RouteKind::Grpc, &route.metadata);
        view.parent_refs = reshape(&route.spec.parent_refs).unwrap_or_default();
        view.hostnames = route.spec.hostnames.clone().unwrap_or_default();
        view.rules = route
            .spec
            .rules
            .iter()
            .flatten()
            .map(|rule| RuleView {
                name: rule.name.clone(),
                matches: RuleMatches::Grpc(rule.matches.clone().unwrap_or_default()),
                filters: reshape(&rule.filters).unwrap_or_default(),
                backends: reshape(&rule.backend_refs).unwrap_or_default(),
                timeouts: None,
                retry: None,
                session_persistence: rule.session_persistence.as_ref().and_then(reshape),
            })
            .collect();
        view.uses_default_gateways = matches!(
            route.spec.use_default_gateways,
            Some(GrpcRouteUseDefaultGateways::All)
        );
        views.push(view);
    }
    for route in &snapshot.tls_routes {
        let mut view = RouteView::new(RouteKind::Tls, &route.metadata);
        view.parent_refs = reshape(&route.spec.parent_refs).unwrap_or_default();
        view.hostnames = route.spec.hostnames.clone();
        view.rules = stream_rules(&route.spec.rules);
        views.push(view);
    }
    for route in &snapshot.tcp_routes {
        let mut view = RouteView::new(RouteKind::Tcp, &route.metadata);
        view.parent_refs = reshape(&route.spec.parent_refs).unwrap_or_default();
        view.rules = stream_rules(&route.spec.rules);
        views.push(view);
    }
    for route in &snapshot.udp_routes {
        let mut view = RouteView::new(RouteKind::Udp, &route.metadata);
        view.parent_refs = reshape(&route.spec.parent_refs).unwrap_or_default();
        view.rules = stream_rules(&route.spec.rules);
        views.push(view);
    }
    views.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    views
}

/// TLS, TCP and UDP rules: backends only.
fn stream_rules<T: Serialize>(rules: &[T]) -> Vec<RuleView> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct StreamRule {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        backend_refs: Vec<HttpRouteRulesBackendRefs>,
    }
    rules
        .iter()
        .filter_map(|rule| reshape::<T, StreamRule>(rule))
        .map(|rule| RuleView {
            name: rule.name,
            matches: RuleMatches::None,
            filters: Vec::new(),
            backends: rule.backend_refs,
            timeouts: None,
            retry: None,
            session_persistence: None,
        })
        .collect()
}

/// Whether `name` (exact or `*.` wildcard) is matched by `pattern`
/// (exact or `*.` wildcard), Gateway API style: a wildcard stands for one or
/// more labels.
fn covers(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    match pattern.strip_prefix('*') {
        // `*.example.com` covers `a.example.com`, `a.b.example.com` and
        // `*.a.example.com`, not `example.com`.
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => false,
    }
}

/// The hostnames a route serves on a listener: each route hostname that the
/// listener's covers, or the listener's own where it is the narrower one.
/// `None` means no overlap (the route does not attach); an empty list means
/// any hostname.
pub fn hostname_intersection(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let listener = listener.filter(|h| !h.is_empty());
    match (listener, route.is_empty()) {
        (None, _) => Some(route.to_vec()),
        (Some(listener), true) => Some(vec![listener.to_owned()]),
        (Some(listener), false) => {
            let mut names: Vec<String> = Vec::new();
            for name in route {
                let narrower = if covers(listener, name) {
                    Some(name.as_str())
                } else if covers(name, listener) {
                    Some(listener)
                } else {
                    None
                };
                if let Some(narrower) = narrower
                    && !names.iter().any(|n| n == narrower)
                {
                    names.push(narrower.to_owned());
                }
            }
            (!names.is_empty()).then_some(names)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn hostname_intersection_table() {
        type Case<'a> = (Option<&'a str>, &'a [&'a str], Option<&'a [&'a str]>);
        let cases: &[Case<'_>] = &[
            (None, &[], Some(&[])),
            (None, &["a.com"], Some(&["a.com"])),
            (Some("a.com"), &[], Some(&["a.com"])),
            (Some("a.com"), &["a.com"], Some(&["a.com"])),
            (Some("a.com"), &["b.com"], None),
            (Some("*.a.com"), &["x.a.com", "b.com"], Some(&["x.a.com"])),
            (Some("*.a.com"), &["x.y.a.com"], Some(&["x.y.a.com"])),
            (Some("*.a.com"), &["a.com"], None),
            (Some("x.a.com"), &["*.a.com"], Some(&["x.a.com"])),
            (Some("*.a.com"), &["*.a.com"], Some(&["*.a.com"])),
            (Some("*.a.com"), &["*.x.a.com"], Some(&["*.x.a.com"])),
            (Some("*.x.a.com"), &["*.a.com"], Some(&["*.x.a.com"])),
            (
                Some("*.com"),
                &["*.a.com", "b.com"],
                Some(&["*.a.com", "b.com"]),
            ),
        ];
        for (listener, route, expected) in cases {
            let got = hostname_intersection(*listener, &names(route));
            assert_eq!(
                got,
                expected.map(names),
                "listener {listener:?}, route {route:?}"
            );
        }
    }
}
