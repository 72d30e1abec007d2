//! Every way a request can fail, and the response each one gets.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{Body, full};

/// Why a request was not served by its backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum RequestError {
    #[error("the listener is being removed")]
    ListenerRemoved,
    #[error("no virtual host serves this host")]
    NoHost,
    #[error("the host belongs to another listener than the TLS server name")]
    Misdirected,
    #[error("no route matches")]
    NoRoute,
    #[error("every backend of the rule has weight 0")]
    NoBackend,
    #[error("the backend reference is invalid: {0}")]
    InvalidBackend(String),
    #[error("the backend has no ready endpoint")]
    NoEndpoint,
    #[error("the request target cannot be sent on")]
    InvalidTarget,
    #[error("the backend's TLS settings were refused: {0}")]
    BackendTls(String),
    #[error("the backend did not answer in time")]
    Timeout,
    #[error("the client stopped sending the request body")]
    BodyTimeout,
    #[error("the backend's retry budget is spent")]
    RetryBudget,
    #[error("the backend could not be reached")]
    Unreachable {
        /// The connection itself failed (rather than the request on it).
        connect: bool,
    },
}

impl RequestError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            RequestError::ListenerRemoved
            | RequestError::NoEndpoint
            | RequestError::RetryBudget => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::NoHost | RequestError::NoRoute => StatusCode::NOT_FOUND,
            RequestError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            RequestError::NoBackend | RequestError::InvalidBackend(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            RequestError::InvalidTarget => StatusCode::BAD_REQUEST,
            RequestError::BackendTls(_) => StatusCode::BAD_GATEWAY,
            RequestError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            RequestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RequestError::Unreachable { connect: true } => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Unreachable { connect: false } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The answer the client gets: the status and one line saying why.
    pub(super) fn response(&self) -> Response<Body> {
        let body = match self {
            RequestError::ListenerRemoved => "listener is being removed\n",
            RequestError::NoHost => "no route for this host\n",
            RequestError::Misdirected => "host does not match the TLS server name\n",
            RequestError::NoRoute => "no route matches this request\n",
            RequestError::NoBackend => "no backend is available for this route\n",
            RequestError::InvalidBackend(_) => "the backend of this route is invalid\n",
            RequestError::NoEndpoint => "no endpoint is ready for this backend\n",
            RequestError::InvalidTarget => "invalid request target\n",
            RequestError::BackendTls(_) => "the backend's TLS settings are invalid\n",
            RequestError::Timeout => "the backend did not answer in time\n",
            RequestError::BodyTimeout => "the request body stopped arriving\n",
            RequestError::RetryBudget => "retries to this backend are over their budget\n",
            RequestError::Unreachable { .. } => "the backend could not be reached\n",
        };
        let mut response = text(self.status(), body);
        if *self == RequestError::BodyTimeout {
            // The rest of the body may still be on its way: the connection
            // cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A plain-text response.
pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body.as_bytes()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status() {
        let table = [
            (RequestError::NoHost, 404),
            (RequestError::NoRoute, 404),
            (RequestError::Misdirected, 421),
            (RequestError::NoBackend, 500),
            (RequestError::InvalidBackend("gone".into()), 500),
            (RequestError::NoEndpoint, 503),
            (RequestError::ListenerRemoved, 503),
            (RequestError::InvalidTarget, 400),
            (RequestError::BackendTls("bad CA".into()), 502),
            (RequestError::Timeout, 504),
            (RequestError::BodyTimeout, 408),
            (RequestError::Unreachable { connect: true }, 503),
            (RequestError::Unreachable { connect: false }, 502),
        ];
        for (error, status) in table {
            let response = error.response();
            assert_eq!(response.status().as_u16(), status, "{error}");
            let close = response.headers().get(header::CONNECTION);
            assert_eq!(
                close.is_some(),
                error == RequestError::BodyTimeout,
                "only a stalled body closes the connection ({error})"
            );
        }
    }
}
