//! Status conditions: built by the pure translation without timestamps, then
//! merged with what the object already carries so that
//! `lastTransitionTime` only moves when a condition's status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Why something is not accepted, resolved or programmed: the spec's
/// reason and one sentence the user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// The condition of a check: True with the reason named like the type and
/// `ok` as its message when `outcome` is Ok, else False with the problem's
/// reason and message. Most conditions the spec defines are of this shape.
pub fn check(
    type_: &str,
    outcome: Result<(), &Problem>,
    ok: &str,
    observed_generation: Option<i64>,
) -> Condition {
    match outcome {
        Ok(()) => condition(type_, true, type_, ok, observed_generation),
        Err(problem) => condition(
            type_,
            false,
            problem.reason,
            problem.message.clone(),
            observed_generation,
        ),
    }
}

/// The time translation puts in every condition; [`merge`] replaces it.
pub fn epoch() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

/// A condition with the spec's `type`, `status` and `reason`.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: epoch(),
    }
}

/// Gives each desired condition the `lastTransitionTime` of the existing one
/// of the same type when its status is unchanged, else `now`.
pub fn merge(desired: &mut [Condition], existing: &[Condition], now: &Time) {
    for condition in desired {
        condition.last_transition_time = existing
            .iter()
            .find(|old| old.type_ == condition.type_ && old.status == condition.status)
            .map_or_else(|| now.clone(), |old| old.last_transition_time.clone());
    }
}

/// Spec condition types and reasons, as named by Gateway API.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const CONFLICTED: &str = "Conflicted";
    pub const SUPPORTED_VERSION: &str = "SupportedVersion";
    pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";
    pub const INSECURE_FRONTEND_VALIDATION_MODE: &str = "InsecureFrontendValidationMode";
    pub const CONFIGURATION_CHANGED: &str = "ConfigurationChanged";

    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    pub const UNSUPPORTED_VERSION: &str = "UnsupportedVersion";
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    pub const PENDING: &str = "Pending";
    pub const INVALID: &str = "Invalid";
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    pub const NO_CONFLICTS: &str = "NoConflicts";
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    pub const INVALID_CLIENT_CERTIFICATE_REF: &str = "InvalidClientCertificateRef";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";
    pub const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
    pub const INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";

    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    pub const INVALID_KIND: &str = "InvalidKind";
    pub const UNSUPPORTED_PROTOCOL_ROUTE: &str = "UnsupportedProtocol";
    pub const NO_MATCHING_HOSTNAME: &str = "NoValidHostname";
    pub const INCOMPATIBLE_FILTERS: &str = "IncompatibleFilters";
    pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
    /// A ListenerSet its Gateway's `allowedListeners` does not admit.
    pub const NOT_ALLOWED: &str = "NotAllowed";
    /// A ListenerSet whose Gateway is not accepted.
    pub const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";
    /// A policy that lost to another on the same target.
    pub const CONFLICTED_POLICY: &str = "Conflicted";
    /// A Gateway whose compiled config does not fit in its Secret.
    pub const CONFIG_TOO_LARGE: &str = "ConfigTooLarge";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_status() {
        let old_time = Time(Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH));
        let now = Time(Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH));
        let mut existing = condition("Accepted", true, "Accepted", "ok", Some(1));
        existing.last_transition_time = old_time.clone();
        let mut desired = vec![
            condition("Accepted", true, "Accepted", "ok", Some(2)),
            condition("Programmed", false, "Pending", "wait", Some(2)),
        ];
        merge(&mut desired, &[existing], &now);
        assert_eq!(desired[0].last_transition_time, old_time);
        assert_eq!(desired[1].last_transition_time, now);
    }

    #[test]
    fn a_check_is_true_with_its_own_reason_or_false_with_the_problems() {
        let ok = check("ResolvedRefs", Ok(()), "All references resolved.", Some(3));
        assert_eq!(
            (ok.status.as_str(), ok.reason.as_str(), ok.message.as_str()),
            ("True", "ResolvedRefs", "All references resolved.")
        );
        assert_eq!(ok.observed_generation, Some(3));
        let problem = Problem::new(
            reason::BACKEND_NOT_FOUND,
            "Service apps/echo does not exist.",
        );
        let failed = check("ResolvedRefs", Err(&problem), "unused", Some(3));
        assert_eq!(
            (
                failed.status.as_str(),
                failed.reason.as_str(),
                failed.message.as_str()
            ),
            (
                "False",
                "BackendNotFound",
                "Service apps/echo does not exist."
            )
        );
    }
}
