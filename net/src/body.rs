//! The request body handed to the service (with the per-frame idle timeout) and the response
//! body handed back to hyper (which keeps its request counted as in flight until it is done).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::BoxError;
use crate::table::RequestGuard;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No frame arrived for the listener's [`crate::Limits::body_idle_timeout`]: the body was
    /// cut. Answer 408 if the request can still be answered.
    #[error("the request body stalled: nothing arrived for {} s (the server's body idle timeout), so it was cut; send the body without pauses", .0.as_secs_f64())]
    Idle(Duration),
    /// The connection failed while the body was being read.
    #[error("the request body could not be read: {0}")]
    Transport(#[from] hyper::Error),
}

/// A request body as the service receives it: hyper's body, cut with [`BodyError::Idle`] when
/// the client sends nothing for the configured idle time while the service waits for more.
/// After an error it ends (no further frames).
pub struct Body {
    inner: Incoming,
    idle: Duration,
    /// Armed while the service waits for a frame; dropped when one arrives.
    timer: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl Body {
    pub(crate) fn new(inner: Incoming, idle: Duration) -> Body {
        Body { inner, idle, timer: None, done: false }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                if !matches!(frame, Some(Ok(_))) {
                    this.done = true;
                }
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Transport)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timer = None;
                        this.done = true;
                        tracing::debug!(idle_secs = idle.as_secs_f64(), "request body idle: cut");
                        Poll::Ready(Some(Err(BodyError::Idle(idle))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The service's response body, holding its request's place among the connection's
    /// requests in flight until hyper has sent it (or dropped it).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: RequestGuard,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, guard: RequestGuard) -> ResponseBody<B> {
        ResponseBody { inner, guard }
    }
}

/// An error of the service's response body while it was being sent (the stream is reset or the
/// connection closed).
#[derive(Debug)]
pub struct ResponseError(pub BoxError);

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the response body failed: {}", self.0)
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl<B> http_body::Body for ResponseBody<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    // A concrete type (not the service's own) keeps hyper's error bounds provable for every
    // service, whatever its body's error is.
    type Error = ResponseError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, ResponseError>>> {
        self.project().inner.poll_frame(cx).map(|f| f.map(|r| r.map_err(|e| ResponseError(e.into()))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
