//! A guest's stdout or stderr: the first bytes are kept for the host's log, the rest are
//! counted and dropped. Writes always succeed, so a chatty guest is never failed (Rust's
//! `print!` panics on a write error) and never grows the host's memory.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Clone)]
pub(crate) struct Captured {
    capacity: usize,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    kept: BytesMut,
    dropped: u64,
}

impl Captured {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Arc::default(),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap();
        let room = self.capacity - inner.kept.len();
        let (kept, dropped) = bytes.split_at(bytes.len().min(room));
        inner.kept.extend_from_slice(kept);
        inner.dropped += dropped.len() as u64;
    }

    /// What was kept since the last call, and how many bytes beyond it were dropped; the
    /// capture starts empty again, so an instance that serves several requests keeps
    /// capturing for each.
    pub(crate) fn take(&self) -> (Bytes, u64) {
        let mut inner = self.inner.lock().unwrap();
        // Most requests print nothing: an empty split still makes a shared buffer.
        if inner.kept.is_empty() && inner.dropped == 0 {
            return (Bytes::new(), 0);
        }
        let dropped = std::mem::take(&mut inner.dropped);
        (inner.kept.split().freeze(), dropped)
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let mut out = Captured::new(4);
        out.write(Bytes::from_static(b"abc")).unwrap();
        out.write(Bytes::from_static(b"defgh")).unwrap();
        assert_eq!(out.check_write().unwrap(), 64 * 1024, "never full");
        assert_eq!(out.take(), (Bytes::from_static(b"abcd"), 4));
        out.write(Bytes::from_static(b"ij")).unwrap();
        assert_eq!(
            out.take(),
            (Bytes::from_static(b"ij"), 0),
            "empty again after take"
        );
    }
}
