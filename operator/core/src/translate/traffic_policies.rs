//! XBackendTrafficPolicy (experimental channel): which policy applies to a
//! Service, and the retry budget and session persistence it gives the
//! routes that send traffic there.

use gwapi::httproutes::HttpRouteRulesSessionPersistence;
use gwapi::xbackendtrafficpolicies::{XBackendTrafficPolicy, XBackendTrafficPolicyRetryConstraint};
use proxy_config::RetryBudget;

use crate::conditions::{Problem, reason};
use crate::convert::{parse_duration_ms, reshape};
use crate::keys::ObjectKey;
use crate::snapshot::Snapshot;

/// The share of requests that may be retries when the budget leaves it
/// unset, and the window it is counted over (the API's defaults).
pub(super) const DEFAULT_BUDGET_PERCENT: u32 = 20;
pub(super) const DEFAULT_BUDGET_INTERVAL_MS: u64 = 10_000;
/// Retries always allowed, whatever the share, when `minRetryRate` is unset.
pub(super) const DEFAULT_MIN_RETRIES: u32 = 10;
pub(super) const DEFAULT_MIN_RETRY_INTERVAL_MS: u64 = 1_000;
/// The longest window the proxy's contract accepts.
const MAX_INTERVAL_MS: u64 = 3_600_000;

/// What the policy on a Service gives its backends, and the policies that
/// lost to it.
#[derive(Debug, Clone, Default)]
pub(super) struct AppliedTrafficPolicy {
    /// The winning policy and what was wrong with it, if anything.
    pub policy: Option<(ObjectKey, Option<Problem>)>,
    /// Other policies on the same Service: conflicted.
    pub conflicted: Vec<ObjectKey>,
    pub retry_budget: Option<RetryBudget>,
    /// The policy's `sessionPersistence`, for rules without their own.
    pub session: Option<(ObjectKey, HttpRouteRulesSessionPersistence)>,
}

/// The policy that applies to Service `namespace/service`: the oldest of
/// those naming it, then the first by name (GEP-713); the others are
/// conflicted. The policy applies whole or not at all: fields are not
/// merged across policies.
pub(super) fn traffic_policy(
    snapshot: &Snapshot,
    namespace: &str,
    service: &str,
) -> AppliedTrafficPolicy {
    let mut candidates: Vec<&XBackendTrafficPolicy> = snapshot
        .backend_traffic_policies
        .iter()
        .filter(|policy| policy.metadata.namespace.as_deref() == Some(namespace))
        .filter(|policy| {
            policy.spec.target_refs.iter().any(|target| {
                target.group.is_empty() && target.kind == "Service" && target.name == service
            })
        })
        .collect();
    candidates.sort_by_key(|policy| {
        (
            policy.metadata.creation_timestamp.as_ref().map(|t| t.0),
            policy.metadata.name.clone(),
        )
    });
    let Some((winner, losers)) = candidates.split_first() else {
        return AppliedTrafficPolicy::default();
    };
    let key = ObjectKey::of(&winner.metadata);
    let mut applied = AppliedTrafficPolicy {
        conflicted: losers.iter().map(|p| ObjectKey::of(&p.metadata)).collect(),
        ..AppliedTrafficPolicy::default()
    };
    let budget = winner
        .spec
        .retry_constraint
        .as_ref()
        .map(retry_budget)
        .transpose();
    match budget {
        Ok(budget) => {
            applied.retry_budget = budget;
            applied.session = winner
                .spec
                .session_persistence
                .as_ref()
                .and_then(reshape)
                .map(|session| (key.clone(), session));
            applied.policy = Some((key, None));
        }
        Err(message) => {
            let problem = Problem::new(
                reason::INVALID,
                format!("XBackendTrafficPolicy {key}: {message}; the policy is not applied."),
            );
            applied.policy = Some((key, Some(problem)));
        }
    }
    applied
}

/// A `retryConstraint` as the proxy enforces it, with the API's defaults
/// for what it leaves unset; an interval the proxy cannot count over is
/// refused, naming the field.
pub(super) fn retry_budget(
    constraint: &XBackendTrafficPolicyRetryConstraint,
) -> Result<RetryBudget, String> {
    let interval = |field: &str, value: Option<&str>, default_ms: u64| match value {
        None => Ok(default_ms),
        Some(text) => match parse_duration_ms(text) {
            Some(ms) if (1..=MAX_INTERVAL_MS).contains(&ms) => Ok(ms),
            _ => Err(format!(
                "retryConstraint.{field} {text:?} is not a duration from 1ms to 1h"
            )),
        },
    };
    let budget = constraint.budget.as_ref();
    let percent = match budget.and_then(|b| b.percent) {
        None => DEFAULT_BUDGET_PERCENT,
        Some(percent) => u32::try_from(percent)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| format!("retryConstraint.budget.percent {percent} is not 0 to 100"))?,
    };
    let interval_ms = interval(
        "budget.interval",
        budget.and_then(|b| b.interval.as_deref()),
        DEFAULT_BUDGET_INTERVAL_MS,
    )?;
    let rate = constraint.min_retry_rate.as_ref();
    let min_retries = match rate.and_then(|r| r.count) {
        None => DEFAULT_MIN_RETRIES,
        Some(count) => u32::try_from(count)
            .map_err(|_| format!("retryConstraint.minRetryRate.count {count} is negative"))?,
    };
    let min_interval_ms = interval(
        "minRetryRate.interval",
        rate.and_then(|r| r.interval.as_deref()),
        DEFAULT_MIN_RETRY_INTERVAL_MS,
    )?;
    Ok(RetryBudget {
        percent,
        interval_ms,
        min_retries,
        min_interval_ms,
    })
}
