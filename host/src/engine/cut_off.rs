//! A response body that ends in an error when its guest failed before finishing it (a
//! trap, the deadline). wasmtime ends the body of a guest whose store was dropped as if it
//! were complete, on both WASI versions; the error makes hyper close an HTTP/1.1
//! connection without the last chunk and reset an h2 stream, so the client can tell its
//! response was cut.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::BoxError;

/// How a response's guest ended, as far as the body's end needs to know.
pub(super) trait GuestEnd: Unpin {
    /// Why the guest failed (`Some`), that it did not (`None`), or `Pending` while that is
    /// not known yet.
    fn poll_failure(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>>;

    /// Whether it is known that it did not fail (once the body has ended: for the end of
    /// the stream).
    fn finished(&self) -> bool;
}

/// `inner`, ending in an error if its guest failed.
pub(super) struct CutOff<B, E> {
    inner: B,
    end: E,
    /// The guest's body has ended: what is left is to learn how the guest did.
    ended: bool,
}

impl<B, E> CutOff<B, E> {
    pub(super) fn new(inner: B, end: E) -> Self {
        Self {
            inner,
            end,
            ended: false,
        }
    }
}

impl<B, E> Body for CutOff<B, E>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
    E: GuestEnd,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.ended {
            let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
            if frame.is_some() {
                return Poll::Ready(frame);
            }
            self.ended = true;
        }
        let failure = std::task::ready!(self.end.poll_failure(cx));
        Poll::Ready(failure.map(|why| {
            Err(format!("the function failed before its response was complete: {why}").into())
        }))
    }

    fn is_end_stream(&self) -> bool {
        (self.ended || self.inner.is_end_stream()) && self.end.finished()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
