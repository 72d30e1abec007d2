//! `GatewayClass.status.supportedFeatures`: exactly what this implementation
//! does, so that the conformance suite (and users) can rely on it. Kinds
//! the cluster does not serve are left out with their features, and so are
//! the features of experimental fields when the installed CRD is the
//! standard channel's (which drops those fields).

use crate::keys::RouteKind;
use crate::snapshot::ServedKinds;

const GATEWAY: &[&str] = &[
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayPort8080",
    "GatewayStaticAddresses",
];

const HTTP_ROUTE: &[&str] = &[
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
];

/// Features of fields only the experimental channel's HTTPRoute CRD has.
const HTTP_ROUTE_EXPERIMENTAL: &[&str] = &[
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
];

const GRPC_ROUTE: &[&str] = &["GRPCRoute", "GRPCRouteNamedRouteRule"];
const TLS_ROUTE: &[&str] = &["TLSRoute", "TLSRouteModeMixed", "TLSRouteModeTerminate"];
const TCP_ROUTE: &[&str] = &["TCPRoute"];
const UDP_ROUTE: &[&str] = &["UDPRoute"];
const REFERENCE_GRANT: &[&str] = &["ReferenceGrant"];
const LISTENER_SET: &[&str] = &["ListenerSet"];
const BACKEND_TLS_POLICY: &[&str] = &["BackendTLSPolicy", "BackendTLSPolicySANValidation"];

/// The supported feature names, sorted as the spec asks.
pub fn supported(served: &ServedKinds) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = GATEWAY.to_vec();
    for kind in &served.routes {
        names.extend_from_slice(match kind {
            RouteKind::Http => HTTP_ROUTE,
            RouteKind::Grpc => GRPC_ROUTE,
            RouteKind::Tls => TLS_ROUTE,
            RouteKind::Tcp => TCP_ROUTE,
            RouteKind::Udp => UDP_ROUTE,
        });
        if *kind == RouteKind::Http && served.experimental.contains(kind.name()) {
            names.extend_from_slice(HTTP_ROUTE_EXPERIMENTAL);
        }
    }
    if served.reference_grants {
        names.extend_from_slice(REFERENCE_GRANT);
    }
    if served.backend_tls_policies {
        names.extend_from_slice(BACKEND_TLS_POLICY);
    }
    if served.listener_sets {
        names.extend_from_slice(LISTENER_SET);
    }
    names.sort_unstable();
    names.dedup();
    names
}
