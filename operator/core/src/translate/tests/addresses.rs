//! The addresses a Gateway asks for.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn gateway_addresses_of_unsupported_types_or_too_many_are_reported() {
    let with = |addresses: &str| {
        let yaml = format!(
            "{BASE}{}",
            gateway(HTTP_LISTENER).replace(
                "gatewayClassName: portcullis",
                &format!("gatewayClassName: portcullis\n  addresses: {addresses}")
            )
        );
        translate(&snapshot(&yaml))
    };
    let t = with("[{type: test/fake, value: x}]");
    let accepted = condition(plan(&t).status.conditions.as_ref().unwrap(), "Accepted").clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "UnsupportedAddress")
    );
    let t = with("[{value: 198.19.1.250}, {value: 198.19.0.209}]");
    let programmed = condition(plan(&t).status.conditions.as_ref().unwrap(), "Programmed").clone();
    assert_eq!(programmed.reason, "AddressNotUsable");
    let t = with("[{value: 198.19.0.209}]");
    assert_eq!(plan(&t).requested_address.as_deref(), Some("198.19.0.209"));
}
