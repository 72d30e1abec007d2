//! End-to-end harness: the local cluster (control plane from Go modules,
//! node agent) and the scenarios that run against it. Built up from step 2.
