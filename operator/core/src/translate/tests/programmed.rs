//! `Programmed` means serving: a Gateway whose ready replicas serve the
//! previous config while they apply the next stays Programmed, and says
//! which generation is being applied; it turns False when no ready replica
//! serves it or the newest config was refused.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;
use crate::snapshot::{DeployedConfig, ProxyPod};

const WITH_ADDRESS: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: edge-portcullis, namespace: apps}
spec:
  ports: [{name: http-80, port: 80}]
status:
  loadBalancer: {ingress: [{ip: 198.18.0.100}]}
"#;

fn pod(name: &str, ready: bool, applied: Option<u64>, refused: Option<u64>) -> ProxyPod {
    ProxyPod {
        name: name.into(),
        ready,
        applied_generation: applied,
        failure: None,
        refused: refused.map(|g| {
            (
                g,
                format!("generation 4 applied; generation {g} refused: listener http: bad"),
            )
        }),
        terminating: false,
    }
}

/// The Gateway's Programmed condition with these proxy Pods, the deployed
/// config being generation 4 of other content (so the plan carries 5).
fn programmed(pods: Vec<ProxyPod>) -> (u64, Condition) {
    let mut snapshot = snapshot(&format!("{BASE}{}{WITH_ADDRESS}", gateway(HTTP_LISTENER)));
    let edge = ObjectKey::new("apps", "edge");
    snapshot.deployed.insert(
        edge.clone(),
        DeployedConfig {
            generation: 4,
            hash: "older".into(),
        },
    );
    snapshot.proxy_pods.insert(edge, pods);
    let t = translate(&snapshot);
    let plan = plan(&t);
    let condition = condition(plan.status.conditions.as_ref().unwrap(), "Programmed").clone();
    (plan.generation, condition)
}

#[test]
fn a_gateway_stays_programmed_while_its_replicas_apply_the_next_config() {
    let cases: &[(&str, Vec<ProxyPod>, &str, &str, &str)] = &[
        (
            "one replica serves the newest",
            vec![pod("a", true, Some(5), None), pod("b", true, Some(4), None)],
            "True",
            "Programmed",
            "1 proxy replica(s) serve config generation 5.",
        ),
        (
            "the ready replicas apply the newest",
            vec![pod("a", true, Some(4), None), pod("b", true, Some(3), None)],
            "True",
            "Programmed",
            "2 proxy replica(s) serve config generation 4 while they apply generation 5.",
        ),
        (
            "the newest was refused",
            vec![pod("a", true, Some(4), Some(5))],
            "False",
            "Invalid",
            "The proxy refused config generation 5 and serves an older one: generation 4 applied; generation 5 refused: listener http: bad",
        ),
        (
            "an older refusal is history",
            vec![pod("a", true, Some(4), Some(4))],
            "True",
            "Programmed",
            "1 proxy replica(s) serve config generation 4 while they apply generation 5.",
        ),
        (
            "no ready replica",
            vec![pod("a", false, Some(5), None)],
            "False",
            "Pending",
            "Waiting for a ready proxy replica to apply config generation 5.",
        ),
        (
            "no replica at all",
            vec![],
            "False",
            "Pending",
            "Waiting for a ready proxy replica to apply config generation 5.",
        ),
    ];
    for (case, pods, status, reason, message) in cases {
        let (generation, programmed) = programmed(pods.clone());
        assert_eq!(generation, 5, "{case}");
        assert_eq!(
            (
                programmed.status.as_str(),
                programmed.reason.as_str(),
                programmed.message.as_str()
            ),
            (*status, *reason, *message),
            "{case}"
        );
    }
}
