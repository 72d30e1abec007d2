//! Table tests of translation, one file per concern: cluster objects as
//! YAML in, config and statuses out. No cluster: the snapshot is built from
//! the documents.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proxy_config::{BackendTarget, Protocol};

use super::*;
use crate::fixtures::{BASE, HTTP_LISTENER, gateway, route, snapshot};
use crate::keys::{ObjectKey, RouteKey, RouteKind};
use crate::snapshot::Snapshot;

mod addresses;
mod attachment;
mod backend_tls;
mod classes;
mod determinism;
mod endpoints;
mod listener_sets;
mod listeners;
mod parameters;
mod programmed;
mod references;
mod rules;
mod sockets;
mod traffic_policies;

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
}

pub(super) fn route_conditions(t: &Translation, kind: RouteKind, name: &str) -> Vec<Condition> {
    t.routes[&RouteKey {
        kind,
        key: ObjectKey::new("apps", name),
    }][0]
        .conditions
        .clone()
}

pub(super) fn listener_conditions(t: &Translation, listener: &str) -> Vec<Condition> {
    let plan = &t.gateways[&ObjectKey::new("apps", "edge")];
    plan.status
        .listeners
        .iter()
        .flatten()
        .find(|l| l.name == listener)
        .map(|l| l.conditions.clone())
        .unwrap_or_else(|| panic!("no listener {listener}"))
}

pub(super) fn plan(t: &Translation) -> &GatewayPlan {
    &t.gateways[&ObjectKey::new("apps", "edge")]
}

pub(super) const SERVER_CERT: &str = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: apps}
type: kubernetes.io/tls
data:
  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUJzekNDQVZtZ0F3SUJBZ0lVUTJuMwotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==
"#;

pub(super) const CA: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ca, namespace: apps}
data:
  ca.crt: "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2n3\n-----END CERTIFICATE-----\n"
"#;

pub(super) fn policy(name: &str, created: &str, section: Option<&str>, ca_kind: &str) -> String {
    let section = section
        .map(|s| format!(", sectionName: {s}"))
        .unwrap_or_default();
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: apps, creationTimestamp: '{created}'}}
spec:
  targetRefs: [{{group: "", kind: Service, name: echo{section}}}]
  validation:
    hostname: echo.internal
    caCertificateRefs: [{{group: "", kind: {ca_kind}, name: ca}}]
"#
    )
}

pub(super) fn policy_conditions(t: &Translation, name: &str) -> Vec<Condition> {
    t.policies[&ObjectKey::new("apps", name)]
        .first()
        .unwrap_or_else(|| panic!("no ancestor status for {name}"))
        .conditions
        .clone()
}
