//! GatewayClasses: which are ours, whether their parameters resolve, and
//! what they say they support.

use std::collections::BTreeMap;

use crds::ProxyConfigSpec;
use gwapi::gatewayclasses::{GatewayClassStatus, GatewayClassStatusSupportedFeatures};

use super::features;
use super::parameters::class_parameters;
use crate::conditions::{Problem, check, condition, reason};
use crate::names::CONTROLLER_NAME;
use crate::snapshot::Snapshot;

/// A class of ours, as Gateways see it.
#[derive(Debug, Clone, Default)]
pub(super) struct ClassState {
    pub status: GatewayClassStatus,
    /// Why the class is not accepted, if it is not.
    pub refusal: Option<String>,
    /// The ProxyConfig the class references.
    pub parameters: Option<ProxyConfigSpec>,
}

/// Gateway API versions this operator implements: v1.2 (OpenShift 4.19)
/// through v1.6.
pub fn supported_bundle_version(version: &str) -> bool {
    let trimmed = version.trim_start_matches('v');
    let mut parts = trimmed.split('.');
    let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
        return false;
    };
    major == "1"
        && minor
            .parse::<u32>()
            .is_ok_and(|minor| (2..=6).contains(&minor))
}

pub(super) fn translate(snapshot: &Snapshot) -> BTreeMap<String, ClassState> {
    let mut classes = BTreeMap::new();
    let supported = features::supported(&snapshot.served);
    for class in &snapshot.gateway_classes {
        if class.spec.controller_name != CONTROLLER_NAME {
            continue;
        }
        let Some(name) = class.metadata.name.clone() else {
            continue;
        };
        let generation = class.metadata.generation;
        let (refusal, parameters) = match class_parameters(snapshot, class) {
            Ok(parameters) => (None, parameters),
            Err(message) => (Some(message), None),
        };
        let problem = refusal
            .as_ref()
            .map(|message| Problem::new(reason::INVALID_PARAMETERS, message.clone()));
        let accepted = check(
            reason::ACCEPTED,
            problem.as_ref().map_or(Ok(()), Err),
            "The class is served by the Portcullis operator.",
            generation,
        );
        let version = snapshot.served.bundle_version.clone();
        let supported_version = match version.as_deref() {
            Some(version) if supported_bundle_version(version) => condition(
                reason::SUPPORTED_VERSION,
                true,
                reason::SUPPORTED_VERSION,
                format!("Gateway API {version} is supported."),
                generation,
            ),
            Some(version) => condition(
                reason::SUPPORTED_VERSION,
                false,
                reason::UNSUPPORTED_VERSION,
                format!(
                    "Gateway API {version} is installed; this operator supports v1.2 through v1.6."
                ),
                generation,
            ),
            None => condition(
                reason::SUPPORTED_VERSION,
                true,
                reason::SUPPORTED_VERSION,
                "The installed Gateway API CRDs carry no bundle version; assuming a supported one.",
                generation,
            ),
        };
        let status = GatewayClassStatus {
            conditions: Some(vec![accepted, supported_version]),
            supported_features: Some(
                supported
                    .iter()
                    .map(|name| GatewayClassStatusSupportedFeatures {
                        name: (*name).to_owned(),
                    })
                    .collect(),
            ),
        };
        classes.insert(
            name,
            ClassState {
                status,
                refusal,
                parameters,
            },
        );
    }
    classes
}
