//! One system call for a response head and the body after it.
//!
//! pingora's HTTP/1 server writes a response head, then its body, as two writes, and flushes
//! at the end of every body. Its own connection buffer (1,460 bytes, allocated with every
//! connection) held a head until the body came, but a body that did not fit beside it made
//! the buffer send the head alone first: two system calls, two segments and two wake-ups of
//! the client for every answer larger than a packet — a whole stream, most chat answers.
//! [`Coalesced`] takes that buffer's place on the data plane's HTTP/1 connections: small
//! writes are held (at most [`HOLD`] bytes, in a buffer that exists only while something is
//! held), and the write that would overflow them goes out together with them in one vectored
//! write. A flush sends what is held. Nothing waits longer than it did behind pingora's
//! buffer: held bytes leave with the next write or at the flush that ends every body.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held back at most: the size of the buffer this replaces, more than any head Sluice
/// writes.
pub const HOLD: usize = 1460;
/// Slices passed to one vectored write: the held bytes and up to this many less one of the
/// caller's (pingora writes a chunk as three).
const MAX_SLICES: usize = 8;

/// A data-plane connection that writes a held head together with the body that follows.
#[derive(Debug)]
pub struct Coalesced {
    inner: Stream,
    held: Vec<u8>,
}

impl Coalesced {
    pub fn new(inner: Stream) -> Self {
        Self {
            inner,
            held: Vec::new(),
        }
    }

    /// Sends what is held.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        // An idle keep-alive connection keeps no buffer.
        self.held = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Coalesced {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum::<usize>();
        if this.held.len() + len <= HOLD {
            for b in bufs {
                this.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(len));
        }
        loop {
            if this.held.is_empty() {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            slices[0] = IoSlice::new(&this.held);
            let n = 1 + bufs.len().min(MAX_SLICES - 1);
            slices[1..n].copy_from_slice(&bufs[..n - 1]);
            let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices[..n]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let held = this.held.len();
            if written <= held {
                // Only (part of) the held bytes went: none of the caller's yet.
                this.held.drain(..written);
                continue;
            }
            this.held = Vec::new();
            return Poll::Ready(Ok(written - held));
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for Coalesced {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

// What pingora asks of a connection, answered by the one underneath.

#[async_trait]
impl Shutdown for Coalesced {
    async fn shutdown(&mut self) {
        // What is held is part of an answer: it goes before the connection closes.
        let _ = std::future::poll_fn(|cx| self.poll_release(cx)).await;
        self.inner.shutdown().await;
    }
}

impl UniqueID for Coalesced {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Coalesced {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Coalesced {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Coalesced {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Coalesced {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Coalesced {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests;
