//! TLS termination on BoringSSL: certificates chosen by SNI, TLS 1.2 and 1.3
//! with forward-secret suites only, ALPN, session resumption.

use std::sync::Arc;

use boring::pkey::PKey;
use boring::ssl::{
    AlpnError, NameType, SniError, SslContext, SslContextBuilder, SslMethod, SslVerifyMode,
    SslVersion, select_next_proto,
};
use boring::x509::X509;
use boring::x509::store::X509StoreBuilder;
use proxy_config::{GatewayConfig, ListenerTls, WildcardDepth};

use crate::error::Error;
use crate::router::HostTable;

/// ALPN protocols offered, most preferred first, in wire format.
const ALPN_HTTP: &[u8] = b"\x02h2\x08http/1.1";

/// ECDHE only (forward secrecy), AEAD only. TLS 1.3 suites are fixed by BoringSSL.
const CIPHERS_TLS12: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// What the application protocol negotiation should offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// h2 and http/1.1.
    Http,
    /// Nothing: the listener carries an opaque byte stream.
    None,
}

/// The server side of a listener's TLS: one context per certificate, the
/// first one also answering handshakes that name no known host.
pub struct ServerTls {
    default: SslContext,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds contexts for every certificate of `tls`; fails on a certificate
    /// or key that BoringSSL refuses, naming it.
    pub fn build(config: &GatewayConfig, tls: &ListenerTls, alpn: Alpn) -> Result<Self, Error> {
        let mut contexts = Vec::with_capacity(tls.certificates.len());
        let mut names = HostTable::default();
        for (index, served) in tls.certificates.iter().enumerate() {
            let certificate = config
                .certificates
                .get(&served.certificate)
                .ok_or_else(|| Error::Certificate {
                    name: served.certificate.clone(),
                    reason: "not in the config".into(),
                })?;
            let context = context(alpn, |builder| {
                load_certificate(
                    builder,
                    &certificate.chain_pem,
                    &certificate.private_key_pem,
                )?;
                require_client_certificates(builder, config, tls)
            })
            .map_err(|reason| Error::Certificate {
                name: served.certificate.clone(),
                reason,
            })?;
            names.insert(index, &served.server_names, WildcardDepth::AnyLabels);
            contexts.push(context);
        }
        let Some(first) = tls.certificates.first() else {
            return Err(Error::Config(
                "a terminating TLS listener needs a certificate".into(),
            ));
        };
        let first = config.certificates.get(&first.certificate);
        let contexts = Arc::new(contexts);
        let by_name = contexts.clone();
        let default = context(alpn, move |builder| {
            if let Some(certificate) = first {
                load_certificate(
                    builder,
                    &certificate.chain_pem,
                    &certificate.private_key_pem,
                )?;
            }
            require_client_certificates(builder, config, tls)?;
            let names = names.clone();
            let by_name = by_name.clone();
            builder.set_servername_callback(move |ssl, _alert| {
                let chosen = ssl
                    .servername(NameType::HOST_NAME)
                    .map(str::to_ascii_lowercase)
                    .and_then(|name| names.lookup(&name))
                    .and_then(|index| by_name.get(index));
                if let Some(context) = chosen {
                    ssl.set_ssl_context(context)
                        .map_err(|_| SniError::ALERT_FATAL)?;
                }
                Ok(())
            });
            Ok(())
        })
        .map_err(|reason| Error::Config(format!("TLS context: {reason}")))?;
        Ok(Self { default })
    }

    /// The context new handshakes start from.
    pub fn context(&self) -> &SslContext {
        &self.default
    }
}

/// A server context with the project's protocol settings.
fn context(
    alpn: Alpn,
    configure: impl FnOnce(&mut SslContextBuilder) -> Result<(), String>,
) -> Result<SslContext, String> {
    let mut builder = SslContextBuilder::new(SslMethod::tls()).map_err(|e| e.to_string())?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .and_then(|()| builder.set_max_proto_version(Some(SslVersion::TLS1_3)))
        .and_then(|()| builder.set_cipher_list(CIPHERS_TLS12))
        .map_err(|e| e.to_string())?;
    if alpn == Alpn::Http {
        builder.set_alpn_select_callback(|_, client| {
            select_next_proto(ALPN_HTTP, client).ok_or(AlpnError::NOACK)
        });
    }
    configure(&mut builder)?;
    Ok(builder.build())
}

/// Frontend mutual TLS: a client certificate must chain to one of the
/// listener's CA bundles. With `allow_missing` (the spec's
/// AllowInsecureFallback) the certificate is still asked for, but a client
/// without one, or with one that fails validation, is let in: the spec
/// leaves authorization to the backend in that mode.
fn require_client_certificates(
    builder: &mut SslContextBuilder,
    config: &GatewayConfig,
    tls: &ListenerTls,
) -> Result<(), String> {
    let Some(validation) = &tls.client_validation else {
        return Ok(());
    };
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    let mut count = 0;
    for name in &validation.ca_bundles {
        let pem = config
            .ca_bundles
            .get(name)
            .ok_or_else(|| format!("no CA bundle named {name:?}"))?;
        let cas =
            X509::stack_from_pem(pem.as_bytes()).map_err(|e| format!("CA bundle {name:?}: {e}"))?;
        for ca in cas {
            builder
                .add_client_ca(&ca)
                .map_err(|e| format!("CA bundle {name:?}: {e}"))?;
            store
                .add_cert(ca)
                .map_err(|e| format!("CA bundle {name:?}: {e}"))?;
            count += 1;
        }
    }
    if count == 0 {
        return Err("client validation has no CA certificate".into());
    }
    builder
        .set_verify_cert_store(store.build())
        .map_err(|e| e.to_string())?;
    if validation.allow_missing {
        builder.set_verify_callback(SslVerifyMode::PEER, |_verified, _context| true);
    } else {
        builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    Ok(())
}

fn load_certificate(
    builder: &mut SslContextBuilder,
    chain_pem: &str,
    key_pem: &str,
) -> Result<(), String> {
    let mut chain = X509::stack_from_pem(chain_pem.as_bytes())
        .map_err(|e| format!("certificate chain is not valid PEM: {e}"))?
        .into_iter();
    let leaf = chain.next().ok_or("certificate chain is empty")?;
    let key = PKey::private_key_from_pem(key_pem.as_bytes())
        .map_err(|e| format!("private key is not valid PEM: {e}"))?;
    builder
        .set_certificate(&leaf)
        .map_err(|e| format!("certificate refused: {e}"))?;
    for intermediate in chain {
        builder
            .add_extra_chain_cert(intermediate)
            .map_err(|e| format!("intermediate certificate refused: {e}"))?;
    }
    builder
        .set_private_key(&key)
        .map_err(|e| format!("private key refused: {e}"))?;
    builder
        .check_private_key()
        .map_err(|_| "private key does not match the certificate".to_owned())
}
