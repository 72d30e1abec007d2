//! What a request knows of the connection it came on.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;

/// How long a client may pause while sending a request body (nginx's
/// `client_body_timeout` has the same default).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a request's connection knows.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub port: u16,
    pub client: SocketAddr,
    /// The client's address as a header value, made once per connection.
    pub client_ip: HeaderValue,
    pub tls: bool,
    /// The source listener the TLS server name selected, for 421 detection.
    pub sni_source: Option<String>,
    /// Longest wait for the next part of a request body.
    pub body_timeout: Duration,
}

impl ConnectionInfo {
    pub fn new(port: u16, client: SocketAddr, tls: bool, sni_source: Option<String>) -> Self {
        Self {
            port,
            client,
            client_ip: HeaderValue::from_str(&client.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            tls,
            sni_source,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}
