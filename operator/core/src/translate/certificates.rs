//! Certificates and CA bundles referenced from Gateways and policies:
//! Secrets and ConfigMaps, checked well enough that a malformed one is
//! reported on the listener instead of making the proxy refuse the whole
//! config.

use std::collections::BTreeMap;

use proxy_config::Certificate;

use super::references::{self, reference_allowed};
use crate::conditions::{Problem, reason};
use crate::keys::ObjectKey;
use crate::snapshot::Snapshot;

/// A `tls.certificateRefs` entry of `from` (a Gateway or a ListenerSet)
/// resolved to PEM.
pub(super) fn server_certificate(
    snapshot: &Snapshot,
    from: references::Referrer<'_>,
    group: Option<&str>,
    kind: Option<&str>,
    name: &str,
    namespace: Option<&str>,
) -> Result<(String, Certificate), Problem> {
    let group = group.unwrap_or("");
    let kind = kind.unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err(Problem {
            reason: reason::INVALID_CERTIFICATE_REF,
            message: format!(
                "certificateRefs may name core Secrets only, not {group}/{kind} {name}."
            ),
        });
    }
    let (_, from_kind, from_namespace) = from;
    let namespace = namespace.unwrap_or(from_namespace);
    if namespace != from_namespace
        && !reference_allowed(snapshot, from, ("", "Secret", namespace, name))
    {
        return Err(Problem {
            reason: reason::REF_NOT_PERMITTED,
            message: format!(
                "Secret {namespace}/{name} is in another namespace and no ReferenceGrant there allows this {from_kind} to use it."
            ),
        });
    }
    let Some(secret) = snapshot.secrets.get(&ObjectKey::new(namespace, name)) else {
        return Err(Problem {
            reason: reason::INVALID_CERTIFICATE_REF,
            message: format!("Secret {namespace}/{name} does not exist."),
        });
    };
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
    };
    let (Some(chain), Some(key)) = (text("tls.crt"), text("tls.key")) else {
        return Err(Problem {
            reason: reason::INVALID_CERTIFICATE_REF,
            message: format!("Secret {namespace}/{name} lacks tls.crt or tls.key."),
        });
    };
    if let Err(problem) = check_pem(&chain, &["CERTIFICATE"]) {
        return Err(Problem {
            reason: reason::INVALID_CERTIFICATE_REF,
            message: format!("Secret {namespace}/{name}: tls.crt {problem}."),
        });
    }
    if let Err(problem) = check_pem(&key, &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]) {
        return Err(Problem {
            reason: reason::INVALID_CERTIFICATE_REF,
            message: format!("Secret {namespace}/{name}: tls.key {problem}."),
        });
    }
    Ok((
        format!("secret/{namespace}/{name}"),
        Certificate {
            chain_pem: chain,
            private_key_pem: key,
        },
    ))
}

/// A CA bundle from a ConfigMap (`ca.crt`) or Secret (`ca.crt`).
pub(super) fn ca_bundle(
    snapshot: &Snapshot,
    from: references::Referrer<'_>,
    group: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<(String, String), Problem> {
    let from_namespace = from.2;
    let namespace = namespace.unwrap_or(from_namespace);
    if !group.is_empty() || !matches!(kind, "ConfigMap" | "Secret") {
        return Err(Problem {
            reason: reason::INVALID_CA_CERTIFICATE_KIND,
            message: format!(
                "CA certificates come from ConfigMaps or Secrets, not {group}/{kind} {name}."
            ),
        });
    }
    if namespace != from_namespace
        && !reference_allowed(snapshot, from, ("", kind, namespace, name))
    {
        return Err(Problem {
            reason: reason::REF_NOT_PERMITTED,
            message: format!(
                "{kind} {namespace}/{name} is in another namespace and no ReferenceGrant there allows its use."
            ),
        });
    }
    let key = ObjectKey::new(namespace, name);
    let pem = if kind == "ConfigMap" {
        snapshot
            .config_maps
            .get(&key)
            .and_then(|map| map.data.as_ref())
            .and_then(|data| data.get("ca.crt").cloned())
    } else {
        snapshot
            .secrets
            .get(&key)
            .and_then(|secret| secret.data.as_ref())
            .and_then(|data| data.get("ca.crt"))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
    };
    let Some(pem) = pem else {
        return Err(Problem {
            reason: reason::INVALID_CA_CERTIFICATE_REF,
            message: format!("{kind} {namespace}/{name} does not exist or has no ca.crt key."),
        });
    };
    if let Err(problem) = check_pem(&pem, &["CERTIFICATE"]) {
        return Err(Problem {
            reason: reason::INVALID_CA_CERTIFICATE_REF,
            message: format!("{kind} {namespace}/{name}: ca.crt {problem}."),
        });
    }
    Ok((
        format!("{}/{namespace}/{name}", kind.to_ascii_lowercase()),
        pem,
    ))
}

/// Checks that `pem` holds at least one block, every block of one of
/// `labels`, each a base64 DER SEQUENCE. Not a full X.509 parse: the proxy
/// loads the result with BoringSSL and reports what this lets through.
pub fn check_pem(pem: &str, labels: &[&str]) -> Result<(), String> {
    let mut blocks = 0;
    let mut lines = pem.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            return Err(format!("is not PEM: unexpected line {:?}", truncate(line)));
        };
        if !labels.contains(&label) {
            return Err(format!(
                "holds a {label} block where {} was expected",
                labels.join(" or ")
            ));
        }
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        loop {
            match lines.next() {
                Some(line) if line == end => break,
                Some(line) => body.push_str(line),
                None => return Err(format!("has a {label} block without its END line")),
            }
        }
        let der = decode_base64(&body)
            .ok_or_else(|| format!("has a {label} block that is not base64"))?;
        if der.first() != Some(&0x30) || der.len() < 16 {
            return Err(format!("has a {label} block that is not DER"));
        }
        blocks += 1;
    }
    if blocks == 0 {
        return Err("holds no PEM block".to_owned());
    }
    Ok(())
}

fn truncate(line: &str) -> String {
    line.chars().take(40).collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut table = BTreeMap::new();
    for (index, byte) in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        .iter()
        .enumerate()
    {
        table.insert(*byte, index as u32);
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 6) | table.get(byte)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2n3\n-----END CERTIFICATE-----\n";

    #[test]
    fn pem_checks() {
        assert_eq!(check_pem(CERT, &["CERTIFICATE"]), Ok(()));
        assert!(check_pem("", &["CERTIFICATE"]).is_err());
        assert!(check_pem("not a cert", &["CERTIFICATE"]).is_err());
        assert!(check_pem(CERT, &["PRIVATE KEY"]).is_err());
        assert!(
            check_pem(
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
                &["CERTIFICATE"]
            )
            .is_err()
        );
        assert!(check_pem("-----BEGIN CERTIFICATE-----\nMIIB", &["CERTIFICATE"]).is_err());
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("a$"), None);
    }
}
