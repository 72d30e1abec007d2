//! End-to-end scenarios against the local cluster's real kube-apiserver:
//! one test binary (one link on 2 cores), one module per story. Most
//! scenarios share the cluster and run side by side; those that swap the
//! Gateway API CRDs, restart the operator or flood its watches hold it alone
//! ([`e2e::cluster::exclusive`]).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod install;
mod listener_sets;
mod local_cluster;
mod operator;
mod operator_restart;
mod proxy_secret;
mod traffic_policies;

/// The node agent the local cluster runs.
const AGENT: &str = env!("CARGO_BIN_EXE_portcullis-node-agent");
