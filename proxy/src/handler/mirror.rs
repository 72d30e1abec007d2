//! Request mirrors: a copy of the request to another backend, whose answer
//! is dropped and never delays the client. The copy is taken where the
//! filter stands in the rule (so it carries the edits before it), and sent
//! only once the request itself is forwarded: a request answered at the
//! gateway (redirect, direct response, no endpoint) mirrors nothing.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, request};
use http_body_util::BodyExt;

use super::headers::strip_hop_by_hop;
use super::send::send;
use crate::body::{Body, MirrorFeed, empty, mirror_channel};
use crate::runtime::BackendRuntime;
use crate::shared::Shared;

/// How long a mirror may take before it is given up.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// A copy of a request's head, for one mirror backend.
#[derive(Debug)]
pub(super) struct MirrorCopy {
    backend: Arc<BackendRuntime>,
    head: request::Parts,
}

/// The copy for a mirror filter, if this request is among its share
/// (`per_million`).
pub(super) fn copy<B>(
    backend: &Arc<BackendRuntime>,
    per_million: u32,
    request: &Request<B>,
) -> Option<MirrorCopy> {
    if per_million < 1_000_000 && fastrand::u32(0..1_000_000) >= per_million {
        return None;
    }
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.headers_mut() = request.headers().clone();
    strip_hop_by_hop(head.headers_mut());
    Some(MirrorCopy {
        backend: backend.clone(),
        head: head.into_parts().0,
    })
}

/// Mirrors ready to go, each with the body it will send.
#[derive(Debug, Default)]
pub(super) struct Pending {
    mirrors: Vec<(MirrorCopy, Body)>,
}

/// Readies the copies. With `body`, each gets a feed that the request's
/// body copies itself into as it streams to the backend; without, an empty
/// body.
pub(super) fn prepare(copies: Vec<MirrorCopy>, body: bool) -> (Vec<MirrorFeed>, Pending) {
    let mut feeds = Vec::new();
    let mut pending = Pending::default();
    for copy in copies {
        let mirrored = if body {
            let (feed, mirrored) = mirror_channel();
            feeds.push(feed);
            mirrored.boxed()
        } else {
            empty()
        };
        pending.mirrors.push((copy, mirrored));
    }
    (feeds, pending)
}

impl Pending {
    /// Sends every mirror in the background: the request it copies is on
    /// its way. A mirror without a ready endpoint is skipped, and its feed
    /// dropped from the request's body.
    pub(super) fn send(self, shared: &Shared) {
        for (MirrorCopy { backend, head }, body) in self.mirrors {
            let Some(endpoint) = backend.pick(shared.now_ms()) else {
                continue;
            };
            let target = head
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            let Ok(call) = send(&backend, endpoint, head, target, body) else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(Ok(response)) = tokio::time::timeout(MIRROR_TIMEOUT, call).await {
                    // Drain so that the connection returns to the pool.
                    let _ = response.into_body().collect().await;
                }
            });
        }
    }
}
