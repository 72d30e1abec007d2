//! A Gateway's addresses: the one it asks for (`spec.addresses`) and the
//! ones its Service got.

use gwapi::gateways::{Gateway, GatewayStatusAddresses};

use crate::conditions::{Problem, reason};
use crate::keys::ObjectKey;
use crate::snapshot::Snapshot;

/// What `spec.addresses` asks for.
#[derive(Debug, Clone, Default)]
pub(super) struct Requested {
    /// The IP address the Service is asked to carry.
    pub address: Option<String>,
    /// More IP addresses than the one a Service can carry.
    pub extra: Vec<String>,
    /// An address of a type or value that is not supported.
    pub unsupported: Option<Problem>,
}

pub(super) fn requested(gateway: &Gateway) -> Requested {
    let mut requested = Requested::default();
    for address in gateway.spec.addresses.iter().flatten() {
        let kind = address.r#type.as_deref().unwrap_or("IPAddress");
        let value = address.value.clone().unwrap_or_default();
        if kind != "IPAddress" {
            requested.unsupported.get_or_insert(Problem::new(
                reason::UNSUPPORTED_ADDRESS,
                format!("Address type {kind} is not supported; use IPAddress."),
            ));
        } else if value.is_empty() {
            // An address of a type, no value: any address will do.
        } else if value.parse::<std::net::IpAddr>().is_err() {
            requested.unsupported.get_or_insert(Problem::new(
                reason::UNSUPPORTED_ADDRESS,
                format!("{value:?} is not an IP address."),
            ));
        } else if requested.address.is_none() {
            requested.address = Some(value);
        } else {
            requested.extra.push(value);
        }
    }
    requested
}

/// Addresses of the provisioned Service: load balancer ingress, else the
/// cluster IP for Services of type ClusterIP.
pub(super) fn service_addresses(
    snapshot: &Snapshot,
    service: &ObjectKey,
) -> Vec<GatewayStatusAddresses> {
    let Some(service) = snapshot.services.get(service) else {
        return Vec::new();
    };
    let mut addresses = Vec::new();
    for ingress in service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(ip) = &ingress.ip {
            addresses.push(GatewayStatusAddresses {
                r#type: Some("IPAddress".to_owned()),
                value: ip.clone(),
            });
        } else if let Some(hostname) = &ingress.hostname {
            addresses.push(GatewayStatusAddresses {
                r#type: Some("Hostname".to_owned()),
                value: hostname.clone(),
            });
        }
    }
    let spec = service.spec.clone().unwrap_or_default();
    if addresses.is_empty()
        && spec.type_.as_deref() == Some("ClusterIP")
        && let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None")
    {
        addresses.push(GatewayStatusAddresses {
            r#type: Some("IPAddress".to_owned()),
            value: ip,
        });
    }
    addresses
}

/// Whether the Gateway has the address it asked for: the reason of a
/// `Programmed=False` when not.
pub(super) fn assigned(
    requested: &Requested,
    addresses: &[GatewayStatusAddresses],
) -> Result<(), Problem> {
    if !requested.extra.is_empty() {
        return Err(Problem::new(
            reason::ADDRESS_NOT_USABLE,
            format!(
                "A Gateway gets one IP address; {} cannot be assigned as well.",
                requested.extra.join(", ")
            ),
        ));
    }
    if addresses.is_empty() {
        return Err(Problem::new(
            reason::ADDRESS_NOT_ASSIGNED,
            "The Gateway's Service has no address yet.",
        ));
    }
    if let Some(address) = &requested.address
        && !addresses.iter().any(|a| &a.value == address)
    {
        return Err(Problem::new(
            reason::ADDRESS_NOT_USABLE,
            format!("The requested address {address} could not be assigned."),
        ));
    }
    Ok(())
}
