//! The endpoint fast path agrees with a full translation.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Two Gateways in `apps`: `edge` sends to `echo`, `side` to `api`, and one
/// route is attached to both.
fn two_gateways() -> Snapshot {
    let side = gateway(HTTP_LISTENER)
        .replace("name: edge", "name: side")
        .replace("uid: u-1", "uid: u-2");
    let yaml = format!(
        "{BASE}{}{side}{}{}{}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: apps}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n",
        gateway(HTTP_LISTENER),
        route(
            "to-echo",
            "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        ),
        route(
            "to-api",
            "  parentRefs: [{name: side}]\n  rules:\n  - backendRefs: [{name: api, port: 8080}]"
        ),
        route(
            "both",
            "  parentRefs: [{name: edge}, {name: side}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /both}}]\n    backendRefs: [{name: api, port: 8080}]"
        ),
    );
    snapshot(&yaml)
}

fn slice(service: &str, index: usize, endpoints: &[(u8, bool)]) -> EndpointSlice {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("{service}-{index}"),
            "namespace": "apps",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 3000}],
        "endpoints": endpoints.iter().map(|(host, ready)| serde_json::json!({
            "addresses": [format!("198.18.2.{host}")],
            "conditions": {"ready": ready},
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[test]
fn an_endpoint_change_retranslates_only_the_gateways_that_use_the_service() {
    let before = two_gateways();
    let previous = translate(&before);
    let mut after = before.clone();
    after.endpoint_slices.insert(
        ObjectKey::new("apps", "echo"),
        vec![slice("echo", 0, &[(7, true), (8, true)])],
    );
    let changed = changed_services(&before.endpoint_slices, &after.endpoint_slices);
    assert_eq!(changed, BTreeSet::from([ObjectKey::new("apps", "echo")]));
    assert_eq!(
        gateways_using(&previous, &changed),
        BTreeSet::from([ObjectKey::new("apps", "edge")]),
        "side never sends to echo"
    );
    let fast = translate_endpoint_change(&after, &previous, &changed);
    assert_eq!(fast, translate(&after));
    let edge = &fast.gateways[&ObjectKey::new("apps", "edge")];
    assert_eq!(
        edge.config.backends["apps/echo:8080/Http1"].endpoints.len(),
        2
    );
    assert_ne!(
        edge.config_hash,
        previous.gateways[&ObjectKey::new("apps", "edge")].config_hash
    );
    assert_eq!(
        fast.gateways[&ObjectKey::new("apps", "side")],
        previous.gateways[&ObjectKey::new("apps", "side")]
    );
    assert_eq!(
        translate_endpoint_change(&before, &previous, &BTreeSet::new()),
        previous,
        "no changed Service, nothing to do"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever happens to the endpoints, the fast path agrees with a full
    /// translation of the same snapshot.
    #[test]
    fn the_endpoint_fast_path_agrees_with_a_full_translation(
        echo in proptest::collection::vec(proptest::collection::vec((0u8..6, any::<bool>()), 0..4), 0..3),
        api in proptest::collection::vec(proptest::collection::vec((0u8..6, any::<bool>()), 0..4), 0..3),
    ) {
        let before = two_gateways();
        let previous = translate(&before);
        let mut after = before.clone();
        for (service, slices) in [("echo", &echo), ("api", &api)] {
            let key = ObjectKey::new("apps", service);
            if slices.is_empty() {
                after.endpoint_slices.remove(&key);
            } else {
                after.endpoint_slices.insert(
                    key,
                    slices.iter().enumerate().map(|(i, e)| slice(service, i, e)).collect(),
                );
            }
        }
        let changed = changed_services(&before.endpoint_slices, &after.endpoint_slices);
        prop_assert_eq!(translate_endpoint_change(&after, &previous, &changed), translate(&after));
    }
}
