//! The one way a request leaves the proxy: to one endpoint of a backend,
//! over the backend's connector. Forwarding and mirroring both send here.

use http::uri::{Parts, PathAndQuery};
use http::{Request, Uri, Version, request};
use hyper_util::client::legacy::ResponseFuture;
use proxy_config::BackendProtocol;

use super::error::RequestError;
use crate::body::Body;
use crate::runtime::{BackendRuntime, EndpointState};

/// Sends `head` and `body` to `endpoint` of `backend`, with `target` as
/// the path and query: the URI names the endpoint, its scheme the pool.
pub(super) fn send(
    backend: &BackendRuntime,
    endpoint: &EndpointState,
    head: request::Parts,
    target: PathAndQuery,
    body: Body,
) -> Result<ResponseFuture, RequestError> {
    let mut request = Request::from_parts(head, body);
    let mut uri = Parts::default();
    uri.scheme = Some(backend.connector.scheme());
    uri.authority = Some(endpoint.authority.clone());
    uri.path_and_query = Some(target);
    *request.uri_mut() = Uri::from_parts(uri).map_err(|_| RequestError::InvalidTarget)?;
    *request.version_mut() = if backend.protocol == BackendProtocol::H2c {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    backend
        .connector
        .send(request)
        .map_err(|reason| RequestError::BackendTls(reason.to_owned()))
}
