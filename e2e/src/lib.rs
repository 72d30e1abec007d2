//! End-to-end harness: the local cluster's node agent, and the fixtures
//! the scenarios in `tests/` use against a real kube-apiserver.

pub mod agent;
pub mod cluster;
pub mod operator;
