//! Gateway API types, one place for the whole workspace.
//!
//! Most kinds come from the maintained `gateway-api` crate. Kinds it lags on
//! upstream v1.6.1 are generated here with the same generator (kopium) from
//! the upstream CRDs by `hack/gen-gateway-api.sh`; never edit them by hand.
//!
//! HTTPRoute and GRPCRoute are the experimental channel's types, a superset
//! of the standard ones: on a cluster with the standard CRDs their extra
//! fields (retry, sessionPersistence, the ExternalAuth filter) are simply
//! absent, and on one with the experimental CRDs the operator sees them and
//! can honour them or say that it does not.

pub use gateway_api::*;

/// HTTPRoute, with the experimental channel's fields.
pub mod httproutes {
    pub use gateway_api::experimental::httproutes::*;
}

/// GRPCRoute, with the experimental channel's fields.
pub mod grpcroutes {
    pub use gateway_api::experimental::grpcroutes::*;
}

/// XBackendTrafficPolicy (`gateway.networking.x-k8s.io/v1alpha1`, only in
/// the experimental channel): retry budgets and session persistence for a
/// Service.
pub mod xbackendtrafficpolicies {
    pub use gateway_api::experimental::xbackendtrafficpolicies::*;
}

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

/// The annotation each Gateway API CRD carries with its release channel.
pub const CHANNEL_ANNOTATION: &str = "gateway.networking.k8s.io/channel";

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
    fn http_routes_keep_the_experimental_fields() {
        let route: httproutes::HttpRoute = serde_yaml::from_str(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: apps}
spec:
  parentRefs: [{name: edge}]
  rules:
  - retry: {codes: [503], attempts: 2, backoff: 100ms}
    sessionPersistence: {sessionName: web, type: Cookie}
    backendRefs: [{name: web, port: 80}]
"#,
        )
        .expect("valid HTTPRoute");
        let rule = &route.spec.rules.as_deref().expect("rules")[0];
        let retry = rule.retry.as_ref().expect("retry kept");
        assert_eq!(retry.attempts, Some(2));
        assert_eq!(retry.codes.as_deref(), Some(&[503][..]));
        assert!(rule.session_persistence.is_some());
        assert_eq!(
            httproutes::HttpRoute::api_version(&()),
            "gateway.networking.k8s.io/v1"
        );
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
