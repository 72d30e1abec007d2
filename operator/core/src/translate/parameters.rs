//! ProxyConfig references: the class's, the Gateway's merged over it field
//! by field, and the proxy-wide settings they decide.

use crds::ProxyConfigSpec;
use gwapi::gatewayclasses::GatewayClass;
use gwapi::gateways::Gateway;
use proxy_config::{AccessLog, ProxySettings};

use super::output::ProxyParameters;
use crate::conditions::{Problem, reason};
use crate::convert::parse_duration_ms;
use crate::keys::ObjectKey;
use crate::snapshot::Snapshot;

/// What `spec.parametersRef` of a class names, or why it does not resolve.
pub(super) fn class_parameters(
    snapshot: &Snapshot,
    class: &GatewayClass,
) -> Result<Option<ProxyConfigSpec>, String> {
    let Some(reference) = &class.spec.parameters_ref else {
        return Ok(None);
    };
    if reference.group != crds::GROUP || reference.kind != "ProxyConfig" {
        return Err(format!(
            "spec.parametersRef must name a ProxyConfig of group {}, not {} of group {:?}.",
            crds::GROUP,
            reference.kind,
            reference.group
        ));
    }
    let Some(namespace) = &reference.namespace else {
        return Err(
            "spec.parametersRef.namespace is required: ProxyConfig is a namespaced kind."
                .to_owned(),
        );
    };
    match snapshot
        .proxy_configs
        .get(&ObjectKey::new(namespace.clone(), reference.name.clone()))
    {
        Some(config) => Ok(Some(config.spec.clone())),
        None => Err(format!(
            "spec.parametersRef: ProxyConfig {namespace}/{} does not exist.",
            reference.name
        )),
    }
}

/// How the proxy of `gateway` runs: the class's spec with the one its
/// `spec.infrastructure.parametersRef` names merged over it, and the
/// infrastructure labels and annotations. A reference that does not resolve
/// is reported, and the class's spec is used meanwhile.
pub(super) fn gateway_parameters(
    snapshot: &Snapshot,
    gateway: &Gateway,
    class: Option<&ProxyConfigSpec>,
) -> (ProxyParameters, Option<Problem>) {
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    let infrastructure = gateway.spec.infrastructure.clone().unwrap_or_default();
    let mut spec = class.cloned().unwrap_or_default();
    let mut problem = None;
    if let Some(reference) = &infrastructure.parameters_ref {
        if reference.group != crds::GROUP || reference.kind != "ProxyConfig" {
            problem = Some(Problem::new(
                reason::INVALID_PARAMETERS,
                format!(
                    "spec.infrastructure.parametersRef must name a ProxyConfig of group {}, not {} of group {:?}.",
                    crds::GROUP,
                    reference.kind,
                    reference.group
                ),
            ));
        } else {
            match snapshot
                .proxy_configs
                .get(&ObjectKey::new(namespace.clone(), reference.name.clone()))
            {
                Some(own) => spec = merge_specs(&spec, &own.spec),
                None => {
                    problem = Some(Problem::new(
                        reason::INVALID_PARAMETERS,
                        format!(
                            "spec.infrastructure.parametersRef: ProxyConfig {namespace}/{} does not exist.",
                            reference.name
                        ),
                    ));
                }
            }
        }
    }
    let parameters = ProxyParameters {
        spec,
        labels: infrastructure.labels.unwrap_or_default(),
        annotations: infrastructure.annotations.unwrap_or_default(),
    };
    (parameters, problem)
}

/// The Gateway's ProxyConfig over the class's, field by field: objects merge
/// recursively, anything else set by the Gateway replaces the class's.
pub fn merge_specs(class: &ProxyConfigSpec, gateway: &ProxyConfigSpec) -> ProxyConfigSpec {
    fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
        match (base, over) {
            (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
                for (key, value) in over {
                    merge(base.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
            (base, over) => *base = over,
        }
    }
    let (Ok(mut base), Ok(over)) = (serde_json::to_value(class), serde_json::to_value(gateway))
    else {
        return gateway.clone();
    };
    // With the Gateway's own autoscaling, the class's replicas no longer
    // apply, and the other way round: they are mutually exclusive.
    if over.get("autoscaling").is_some()
        && let Some(object) = base.as_object_mut()
    {
        object.remove("replicas");
    }
    if over.get("replicas").is_some()
        && let Some(object) = base.as_object_mut()
    {
        object.remove("autoscaling");
    }
    merge(&mut base, over);
    serde_json::from_value(base).unwrap_or_else(|_| gateway.clone())
}

/// Proxy-wide settings the ProxyConfig decides.
pub(super) fn proxy_settings(spec: &ProxyConfigSpec, settings: &mut ProxySettings) {
    let shutdown = spec.shutdown.clone().unwrap_or_default();
    settings.drain_timeout_ms = Some(
        shutdown
            .drain_timeout
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(60_000),
    );
    settings.min_drain_ms = Some(
        shutdown
            .min_drain_duration
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(5_000),
    );
    if let Some(access) = spec.logging.as_ref().and_then(|l| l.access_log.as_ref())
        && access.enabled
    {
        settings.access_log = match access.format {
            Some(crds::AccessLogFormat::Text) => AccessLog::Text,
            _ => AccessLog::Json,
        };
    }
}
