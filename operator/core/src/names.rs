//! Names the operator uses and gives: its controller name, the labels and
//! annotations on what it provisions, and the names of provisioned objects
//! (GEP-1762): `<gateway>-<class>`, bounded to 63 characters so that it is
//! a valid label value and Service name.

use sha2::{Digest, Sha256};

/// The `GatewayClass.spec.controllerName` this operator serves. Classes with
/// any other controller name are never touched.
pub const CONTROLLER_NAME: &str = "portcullis.io/gateway-controller";

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "portcullis-operator";

/// Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The group of the experimental channel's `X`-prefixed kinds.
pub const GATEWAY_X_GROUP: &str = "gateway.networking.x-k8s.io";

/// Label on every object the operator provisions, so that it can list them
/// and remove the ones no Gateway wants any more.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "portcullis-operator";
/// GEP-1762 labels on provisioned objects.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// Label naming the provisioned instance; proxy Pods are selected by it.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/name` of proxy Pods.
pub const PROXY_NAME: &str = "portcullis-proxy";
/// The label EndpointSlices name their Service by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Hash of what the operator last applied to an object; equal hash, no write.
pub const SPEC_HASH_ANNOTATION: &str = "gateway.portcullis.io/spec-hash";
/// On the config Secret: the generation and content hash of its document, so
/// that they are read without decoding it.
pub const GENERATION_ANNOTATION: &str = "gateway.portcullis.io/config-generation";
pub const CONFIG_HASH_ANNOTATION: &str = "gateway.portcullis.io/config-hash";

/// Longest name every provisioned kind accepts (Service names and label
/// values are the tightest).
pub const MAX_NAME: usize = 63;

/// `<gateway>-<class>`, or, when longer than [`MAX_NAME`], a prefix of it
/// followed by `-` and eight hex digits of the full name's SHA-256, so that
/// two long names that share a prefix still differ, and the same Gateway
/// always gets the same name.
pub fn provisioned(gateway: &str, class: &str) -> String {
    let full = format!("{gateway}-{class}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut prefix: String = full.chars().take(MAX_NAME - 1 - suffix.len()).collect();
    // A DNS label may not end with '-' or '.'.
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}-{suffix}")
}

/// Hex SHA-256 of some bytes, for hashes kept in annotations.
pub fn hash_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_names_are_gateway_dash_class() {
        assert_eq!(provisioned("edge", "portcullis"), "edge-portcullis");
    }

    #[test]
    fn long_names_are_bounded_stable_and_distinct() {
        let a = provisioned(&"a".repeat(60), "portcullis");
        let b = provisioned(&format!("{}b", "a".repeat(59)), "portcullis");
        assert_eq!(a.len(), MAX_NAME);
        assert_eq!(a, provisioned(&"a".repeat(60), "portcullis"));
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn always_a_valid_label_value(gateway in "[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", class in "[a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?") {
            let name = provisioned(&gateway, &class);
            prop_assert!(name.len() <= MAX_NAME);
            prop_assert!(!name.ends_with('-') && !name.ends_with('.'));
            prop_assert!(!name.starts_with('-'));
        }
    }
}
