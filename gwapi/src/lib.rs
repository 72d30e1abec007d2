//! Gateway API types, one place for the whole workspace.
//!
//! Most kinds come from the maintained `gateway-api` crate. Kinds it lags on
//! upstream v1.6.1 are generated here with the same generator (kopium) from
//! the upstream CRDs by `hack/gen-gateway-api.sh`; never edit them by hand.

pub use gateway_api::*;

/// Kinds generated from the Gateway API v1.6.1 CRDs.
pub mod generated {
    /// TCPRoute, `gateway.networking.k8s.io/v1` since v1.6 (standard channel).
    #[allow(clippy::all, missing_docs)]
    pub mod tcproutes {
        include!("generated/tcproutes.rs");
    }
    /// UDPRoute, `gateway.networking.k8s.io/v1` since v1.6 (standard channel).
    #[allow(clippy::all, missing_docs)]
    pub mod udproutes {
        include!("generated/udproutes.rs");
    }
}

pub use generated::tcproutes::{TcpRoute, TcpRouteSpec, TcpRouteStatus};
pub use generated::udproutes::{UdpRoute, UdpRouteSpec, UdpRouteStatus};

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    #[test]
    fn stream_routes_are_v1() {
        assert_eq!(TcpRoute::api_version(&()), "gateway.networking.k8s.io/v1");
        assert_eq!(UdpRoute::api_version(&()), "gateway.networking.k8s.io/v1");
        assert_eq!(TcpRoute::plural(&()), "tcproutes");
    }

    #[test]
    fn parses_upstream_example() {
        let route: TcpRoute = serde_yaml::from_str(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: db, namespace: apps}
spec:
  parentRefs: [{name: edge, sectionName: tcp}]
  rules:
  - backendRefs: [{name: db, port: 5432, weight: 3}]
"#,
        )
        .expect("valid TCPRoute");
        let rules = &route.spec.rules;
        assert_eq!(rules[0].backend_refs[0].port, Some(5432));
        assert_eq!(route.spec.parent_refs.as_ref().map(Vec::len), Some(1));
    }
}
