//! The built operator refuses to run in `openshift-ingress`, before it
//! talks to any cluster, and says where to install instead. (Being an
//! integration test, this also makes `cargo test` build the
//! `portcullis-operator` binary that the e2e suite runs as a Pod.)

#![allow(clippy::expect_used)]

use std::process::Command;

#[test]
fn the_operator_refuses_to_start_in_openshift_ingress() {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis-operator"))
        .args(["--admin", "127.0.0.1:0", "--log-format", "json"])
        .env("POD_NAMESPACE", "openshift-ingress")
        // No cluster: the refusal must come first.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run portcullis-operator");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {log}");
    assert!(
        log.contains("refusing to run in namespace openshift-ingress")
            && log.contains("portcullis-system"),
        "{log}"
    );
    assert!(!log.contains("Kubernetes client"), "{log}");
}
