//! A route's rules compiled once, shared by every Gateway it attaches to.

use std::collections::BTreeMap;

use proxy_config::{Backend, HttpMatch, HttpRule};

use crate::conditions::Problem;
use crate::keys::ObjectKey;

/// One route's rules, compiled once and shared by every Gateway it attaches to.
#[derive(Debug, Clone, Default)]
pub(super) struct CompiledRoute {
    pub rules: Vec<CompiledRule>,
    /// Unresolved references, for `ResolvedRefs`.
    pub unresolved: Vec<Problem>,
    /// Why rules were dropped, for `PartiallyInvalid`.
    pub dropped: Vec<String>,
    /// Fields this gateway does not honour (the rules still serve), named
    /// in the `Accepted` condition's message.
    pub not_honoured: Vec<String>,
    pub backends: BTreeMap<String, Backend>,
    pub ca_bundles: BTreeMap<String, String>,
    /// BackendTLSPolicies used, and what was wrong with them.
    pub policies: BTreeMap<ObjectKey, Option<Problem>>,
    /// XBackendTrafficPolicies used, and what was wrong with them.
    pub traffic_policies: BTreeMap<ObjectKey, Option<Problem>>,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    pub rule: HttpRule,
    /// Empty for TLS, TCP and UDP rules.
    pub matches: Vec<HttpMatch>,
}
