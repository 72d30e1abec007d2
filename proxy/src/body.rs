//! A request body that gives up when the client stops sending: without it,
//! a client that announces a large body and then trickles it (or nothing)
//! holds a connection, a backend connection and a request slot for as long
//! as it likes.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The error of a body, any layer's.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// No part of the request body arrived within the allowed time.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no part of the request body for {0:?}")]
pub struct BodyTimeout(pub Duration);

impl BodyTimeout {
    /// Whether `error`, or anything it wraps, is a body timeout: the hyper
    /// client reports the body's failure as its own error with ours inside.
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(error) = current {
            if error.is::<BodyTimeout>() {
                return true;
            }
            current = error.source();
        }
        false
    }
}

pin_project! {
    /// `inner`, failing with [`BodyTimeout`] when `idle` passes between two
    /// frames (or before the first).
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        idle: Duration,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            sleep: tokio::time::sleep(idle),
            idle,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            let deadline = Instant::now() + *this.idle;
            this.sleep.as_mut().reset(deadline);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(this.sleep.poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.idle)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn trickle(gaps: &'static [u64]) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let stream = futures::stream::unfold(0usize, move |i| async move {
            let gap = *gaps.get(i)?;
            tokio::time::sleep(Duration::from_millis(gap)).await;
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
                i + 1,
            ))
        });
        StreamBody::new(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes_whatever_its_total_length() {
        // Ten chunks 80 ms apart: 800 ms in all, never 100 ms without one.
        let body = IdleTimeout::new(trickle(&[80; 10]), Duration::from_millis(100));
        let collected = body.collect().await.expect("no timeout");
        assert_eq!(collected.to_bytes().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_with_a_timeout_the_client_can_be_told_about() {
        let body = IdleTimeout::new(trickle(&[10, 10, 500]), Duration::from_millis(100));
        let Err(error) = body.collect().await else {
            panic!("the stalled body completed");
        };
        assert!(BodyTimeout::caused(error.as_ref()), "{error}");
        // As the hyper client reports it: its own error, ours as the source.
        #[derive(Debug, thiserror::Error)]
        #[error("request failed")]
        struct Wrapper(#[source] BodyError);
        assert!(BodyTimeout::caused(&Wrapper(error)));
        let unrelated: BodyError = Box::new(std::io::Error::other("reset"));
        assert!(!BodyTimeout::caused(&Wrapper(unrelated)));
    }
}
