//! How objects are named in maps and messages.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A namespace and a name; cluster-scoped objects have an empty namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
        ObjectKey::new(String::new(), name)
    }

    /// The key of an object's metadata.
    pub fn of(meta: &ObjectMeta) -> Self {
        ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Route kinds, in the order statuses and configs list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    Http,
    Grpc,
    Tls,
    Tcp,
    Udp,
}

impl RouteKind {
    pub const ALL: [RouteKind; 5] = [
        RouteKind::Http,
        RouteKind::Grpc,
        RouteKind::Tls,
        RouteKind::Tcp,
        RouteKind::Udp,
    ];

    /// The kind's name in the API (`HTTPRoute`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Udp => "UDPRoute",
        }
    }

    pub fn from_name(name: &str) -> Option<RouteKind> {
        RouteKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// A route of some kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    pub kind: RouteKind,
    pub key: ObjectKey,
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.key)
    }
}

/// The Gateway API kinds whose status the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusKind {
    GatewayClass,
    Gateway,
    Route(RouteKind),
    BackendTlsPolicy,
    XBackendTrafficPolicy,
    ListenerSet,
}

impl StatusKind {
    /// The kind's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            StatusKind::GatewayClass => "GatewayClass",
            StatusKind::Gateway => "Gateway",
            StatusKind::Route(kind) => kind.name(),
            StatusKind::BackendTlsPolicy => "BackendTLSPolicy",
            StatusKind::XBackendTrafficPolicy => "XBackendTrafficPolicy",
            StatusKind::ListenerSet => "ListenerSet",
        }
    }

    /// Every kind, for tables that must cover them all.
    pub fn all() -> impl Iterator<Item = StatusKind> {
        [StatusKind::GatewayClass, StatusKind::Gateway]
            .into_iter()
            .chain(RouteKind::ALL.into_iter().map(StatusKind::Route))
            .chain([
                StatusKind::BackendTlsPolicy,
                StatusKind::XBackendTrafficPolicy,
                StatusKind::ListenerSet,
            ])
    }

    /// Whether objects of the kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self != StatusKind::GatewayClass
    }
}

/// One object whose status is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusTarget {
    pub kind: StatusKind,
    pub key: ObjectKey,
}

impl StatusTarget {
    pub fn new(kind: StatusKind, key: ObjectKey) -> Self {
        StatusTarget { kind, key }
    }
}

impl fmt::Display for StatusTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_display_as_users_write_them() {
        assert_eq!(ObjectKey::new("apps", "edge").to_string(), "apps/edge");
        assert_eq!(ObjectKey::cluster("portcullis").to_string(), "portcullis");
        let route = RouteKey {
            kind: RouteKind::Grpc,
            key: ObjectKey::new("apps", "api"),
        };
        assert_eq!(route.to_string(), "GRPCRoute apps/api");
    }

    #[test]
    fn route_kind_names_round_trip() {
        for kind in RouteKind::ALL {
            assert_eq!(RouteKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(RouteKind::from_name("Ingress"), None);
        let names: Vec<&str> = StatusKind::all().map(StatusKind::name).collect();
        assert_eq!(names.len(), 10);
        assert!(!StatusKind::GatewayClass.namespaced());
    }
}
