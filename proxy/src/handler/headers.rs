//! Headers a proxy owns: hop-by-hop ones stripped in both directions,
//! `X-Forwarded-*` and `X-Request-Id` added on the way in.

use http::Request;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::connection::ConnectionInfo;

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes the headers that describe one hop, and those the `Connection`
/// header lists.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// What the backend is told about the request's way in.
pub(super) fn add_forwarded<B>(request: &mut Request<B>, connection: &ConnectionInfo) {
    // HTTP/2 carries the host in :authority; HTTP/1.1 backends need Host.
    if !request.headers().contains_key(header::HOST)
        && let Some(value) = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    let headers = request.headers_mut();
    let forwarded = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => {
            HeaderValue::from_str(&format!("{existing}, {}", connection.client.ip())).ok()
        }
        None => Some(connection.client_ip.clone()),
    };
    if let Some(value) = forwarded {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if connection.tls { "https" } else { "http" }),
    );
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), request_id());
    }
}

/// 128 random bits in hex, built without allocating a String.
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for (index, byte) in id.iter_mut().enumerate() {
        *byte = HEX[((bits >> (index * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn forwarded_headers_extend_what_came_in() {
        let connection = ConnectionInfo::new(80, "198.18.0.7:5000".parse().unwrap(), true, None);
        let mut request = Request::builder()
            .uri("https://web.example.com/")
            .header("x-forwarded-for", "203.0.113.1")
            .body(())
            .unwrap();
        add_forwarded(&mut request, &connection);
        let headers = request.headers();
        assert_eq!(headers["host"], "web.example.com");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.1, 198.18.0.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-request-id"].len(), 32);
    }
}
