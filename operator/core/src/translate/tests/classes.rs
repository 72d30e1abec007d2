//! GatewayClasses: which are ours, accepted, and why not.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn only_our_classes_are_translated_and_accepted() {
    let t = translate(&snapshot(BASE));
    assert_eq!(t.classes.keys().collect::<Vec<_>>(), vec!["portcullis"]);
    let conditions = t.classes["portcullis"].conditions.clone().unwrap();
    assert_eq!(condition(&conditions, "Accepted").status, "True");
    assert_eq!(condition(&conditions, "SupportedVersion").status, "True");
    let features: Vec<String> = t.classes["portcullis"]
        .supported_features
        .iter()
        .flatten()
        .map(|f| f.name.clone())
        .collect();
    let mut sorted = features.clone();
    sorted.sort();
    assert_eq!(features, sorted, "supported features are sorted");
    assert!(features.contains(&"HTTPRoute".to_owned()));
}

#[test]
fn a_missing_proxy_config_refuses_the_class_naming_the_field() {
    let yaml = BASE.replace(
        "spec: {controllerName: portcullis.io/gateway-controller}",
        "spec: {controllerName: portcullis.io/gateway-controller, parametersRef: {group: gateway.portcullis.io, kind: ProxyConfig, name: tuned, namespace: apps}}",
    ) + &gateway(HTTP_LISTENER);
    let t = translate(&snapshot(&yaml));
    let conditions = t.classes["portcullis"].conditions.clone().unwrap();
    let accepted = condition(&conditions, "Accepted");
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "InvalidParameters")
    );
    assert!(
        accepted.message.contains("spec.parametersRef"),
        "{}",
        accepted.message
    );
    let gateway_accepted =
        condition(plan(&t).status.conditions.as_ref().unwrap(), "Accepted").clone();
    assert_eq!(gateway_accepted.reason, "InvalidParameters");
    assert!(!plan(&t).provision);
}

fn features_of(t: &Translation) -> Vec<String> {
    t.classes["portcullis"]
        .supported_features
        .iter()
        .flatten()
        .map(|f| f.name.clone())
        .collect()
}

#[test]
fn retry_features_are_claimed_only_where_the_httproute_crd_can_carry_retry() {
    const RETRY: [&str; 3] = [
        "HTTPRouteRetry",
        "HTTPRouteRetryBackendTimeout",
        "HTTPRouteRetryConnectionError",
    ];
    // The standard channel's CRD drops `retry`: claiming it would be a lie.
    let standard = features_of(&translate(&snapshot(BASE)));
    for name in RETRY {
        assert!(!standard.contains(&name.to_owned()), "{name} on standard");
    }
    assert!(standard.contains(&"HTTPRouteDestinationPortMatching".to_owned()));
    let mut experimental = snapshot(BASE);
    experimental
        .served
        .experimental
        .insert("HTTPRoute".to_owned());
    let experimental = features_of(&translate(&experimental));
    for name in RETRY {
        assert!(
            experimental.contains(&name.to_owned()),
            "{name} on experimental"
        );
    }
    let mut sorted = experimental.clone();
    sorted.sort();
    assert_eq!(experimental, sorted, "still sorted");
}
