//! Bodies on their way through, in both directions.
//!
//! [`Body`] is the one type every request and response body is boxed into.
//! [`IdleTimeout`] gives up when the client stops sending: without it, a
//! client that announces a large body and then trickles it (or nothing)
//! holds a connection, a backend connection and a request slot for as long
//! as it likes. [`Tee`] copies a body to mirrors without ever waiting for
//! them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

/// The error of a body, any layer's.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Bodies in both directions.
pub type Body = BoxBody<Bytes, BodyError>;

/// A body without data.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Boxes any body whose errors convert.
pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BodyError>,
{
    body.map_err(Into::into).boxed()
}

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

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes>,
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

/// How far a mirror may fall behind the primary backend, in body bytes,
/// before it is abandoned: the client's body is never held back for it.
pub const MIRROR_LAG_BUDGET: usize = 1 << 20;

/// The mirror was abandoned before it got the whole body: it fell too far
/// behind, or the client's request ended early.
#[derive(Debug, thiserror::Error)]
#[error("the mirrored request body was abandoned before its end")]
pub struct MirrorAbandoned;

/// What a mirror and the request's body share.
#[derive(Debug, Default)]
struct MirrorState {
    /// Bytes sent to the mirror and not yet taken by its connection.
    lag: AtomicUsize,
    /// Set once the mirror has been sent every frame.
    complete: AtomicBool,
}

/// The request body's end of a mirror: copies of the frames go in here.
#[derive(Debug)]
pub struct MirrorFeed {
    frames: mpsc::UnboundedSender<Frame<Bytes>>,
    state: Arc<MirrorState>,
}

/// A mirror's request body: the copies, then the end only if every frame
/// arrived. A mirror cut short fails its request instead of sending a
/// truncated body as if it were whole.
#[derive(Debug)]
pub struct MirrorBody {
    frames: mpsc::UnboundedReceiver<Frame<Bytes>>,
    state: Arc<MirrorState>,
}

/// A connected feed and body.
pub fn mirror_channel() -> (MirrorFeed, MirrorBody) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let state = Arc::new(MirrorState::default());
    (
        MirrorFeed {
            frames: sender,
            state: state.clone(),
        },
        MirrorBody {
            frames: receiver,
            state,
        },
    )
}

impl MirrorFeed {
    /// Sends a copy of `frame`; false when the mirror is gone or too far
    /// behind, and should be dropped.
    fn offer(&self, frame: &Frame<Bytes>) -> bool {
        let copy = if let Some(data) = frame.data_ref() {
            let lag = self.state.lag.fetch_add(data.len(), Ordering::AcqRel) + data.len();
            if lag > MIRROR_LAG_BUDGET {
                return false;
            }
            Frame::data(data.clone())
        } else if let Some(trailers) = frame.trailers_ref() {
            Frame::trailers(trailers.clone())
        } else {
            return true;
        };
        self.frames.send(copy).is_ok()
    }

    fn finish(self) {
        self.state.complete.store(true, Ordering::Release);
    }
}

impl HttpBody for MirrorBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match ready!(self.frames.poll_recv(cx)) {
            Some(frame) => {
                if let Some(data) = frame.data_ref() {
                    self.state.lag.fetch_sub(data.len(), Ordering::AcqRel);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // The feed is dropped after `complete` is set, so this load sees it.
            None if self.state.complete.load(Ordering::Acquire) => Poll::Ready(None),
            None => Poll::Ready(Some(Err(Box::new(MirrorAbandoned)))),
        }
    }
}

pin_project! {
    /// `inner`, with a copy of each frame offered to every mirror.
    pub struct Tee<B> {
        #[pin]
        inner: B,
        feeds: Vec<MirrorFeed>,
    }
}

impl<B> Tee<B> {
    pub fn new(inner: B, feeds: Vec<MirrorFeed>) -> Self {
        Tee { inner, feeds }
    }
}

impl<B> HttpBody for Tee<B>
where
    B: HttpBody<Data = Bytes, Error = BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => this.feeds.retain(|feed| feed.offer(frame)),
            // Dropping the feeds unfinished fails the mirrors' requests.
            Some(Err(_)) => this.feeds.clear(),
            None => {}
        }
        // hyper stops polling once a body says it has ended, so the end is
        // recognised here, not only on `None`.
        if frame.is_none() || this.inner.is_end_stream() {
            for feed in this.feeds.drain(..) {
                feed.finish();
            }
        }
        Poll::Ready(frame)
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
    use http_body_util::StreamBody;

    fn trickle(
        gaps: &'static [u64],
    ) -> impl HttpBody<Data = Bytes, Error = std::convert::Infallible> {
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

    /// `count` frames of `size` bytes, yielding before each so that other
    /// tasks (a mirror's reader) run in between, as they would on a socket.
    fn chunks(count: usize, size: usize) -> impl HttpBody<Data = Bytes, Error = BodyError> {
        let stream = futures::stream::unfold(0usize, move |i| async move {
            if i == count {
                return None;
            }
            tokio::task::yield_now().await;
            let frame = Frame::data(Bytes::from(vec![i as u8; size]));
            Some((Ok::<_, BodyError>(frame), i + 1))
        });
        StreamBody::new(stream)
    }

    #[tokio::test]
    async fn a_mirror_that_keeps_up_gets_the_whole_body_and_a_clean_end() {
        let (feed, mirror) = mirror_channel();
        let reader = tokio::spawn(mirror.collect());
        let primary = Tee::new(chunks(64, 1024), vec![feed])
            .collect()
            .await
            .expect("primary");
        let mirrored = reader.await.expect("join").expect("mirror ends cleanly");
        assert_eq!(mirrored.to_bytes(), primary.to_bytes());
    }

    #[tokio::test]
    async fn a_mirror_that_falls_behind_is_cut_off_and_the_primary_is_untouched() {
        let (slow_feed, slow) = mirror_channel();
        let (fast_feed, fast) = mirror_channel();
        let fast_reader = tokio::spawn(fast.collect());
        // Three times the lag budget, never read by the slow mirror meanwhile.
        let count = 3 * MIRROR_LAG_BUDGET / 65536;
        let primary = Tee::new(chunks(count, 65536), vec![slow_feed, fast_feed])
            .collect()
            .await
            .expect("the primary gets everything");
        assert_eq!(primary.to_bytes().len(), count * 65536);
        let Err(error) = slow.collect().await else {
            panic!("a cut-off mirror must not look complete");
        };
        assert!(error.is::<MirrorAbandoned>(), "{error}");
        let fast = fast_reader
            .await
            .expect("join")
            .expect("the fast mirror completes");
        assert_eq!(fast.to_bytes().len(), count * 65536);
    }

    #[tokio::test]
    async fn a_client_that_goes_away_fails_the_mirror_instead_of_truncating_it() {
        let (feed, mirror) = mirror_channel();
        let mut tee = Box::pin(Tee::new(chunks(10, 100), vec![feed]));
        let first = tee.frame().await.expect("a frame").expect("data");
        assert_eq!(first.data_ref().map(Bytes::len), Some(100));
        drop(tee);
        let Err(error) = mirror.collect().await else {
            panic!("a truncated mirror body must fail");
        };
        assert!(error.is::<MirrorAbandoned>(), "{error}");
    }
}
