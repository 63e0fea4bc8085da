//! The data plane's connections: how many there may be, how long a client may take to send a
//! request head, how big the head may be, how long an idle keep-alive connection is kept.
//!
//! pingora's HTTP/1 server reads a request head with no deadline of its own but a 60 s read
//! timeout, and buffers up to 1 MiB of an unfinished head; a thousand slow or idle clients
//! could hold a thousand sockets and a gigabyte. So Sluice reads each head itself, under
//! `server.header_timeout` and `server.max_header_bytes`, and hands the bytes to pingora as an
//! already-read prefix (its parser takes them without another read). A head that takes too
//! long gets `408`, one too big `431`, a connection over `server.max_connections` `503` — each
//! with `connection: close`, counted in `sluice_downstream_refused_total{reason}` — and a
//! keep-alive connection idle for `server.keepalive_timeout` is closed quietly.
//!
//! A connection that speaks HTTP/2 (by ALPN over TLS, or h2c prior knowledge when enabled)
//! goes to `h2` instead, under the same connection count. An HTTP/1 connection writes through
//! [`coalesce`], so a response head and its body leave in one system call. Connections are
//! accepted by [`listen`], one task each, so that an open connection costs what it holds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use pingora::apps::ServerApp as _;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use sluice_observability::metrics::RefusedReason;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::{Instant, timeout, timeout_at};

use crate::h2::{H2Connection, PREFACE};
use crate::handler::DataPlane;
use crate::state::AppState;
use coalesce::Coalesced;

mod coalesce;
mod listen;

pub use listen::{Bound, DataListener};

/// What serves each data-plane connection: connection limits and head reading, then the
/// request handler for each request on the connection.
pub struct Downstream {
    pub app: Arc<DataPlane>,
}

/// How reading a request head ended.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete head (and maybe more) is in the buffer.
    Ready(BytesMut),
    /// The client closed, or sent nothing on an idle keep-alive connection in time.
    Gone,
    /// The head did not complete within the header timeout.
    Slow,
    /// The head grew past the byte limit.
    TooLarge,
}

/// The limits of one connection, read from the policy when it opens.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    keepalive: Duration,
    max_header_bytes: usize,
    /// Whether a plain connection may open with the HTTP/2 preface.
    h2c: bool,
}

impl Downstream {
    /// Serves one connection until it closes. This future is the connection's whole task (see
    /// `listen`), so what it holds across an open stream is what each connection costs:
    /// the policy's server section is read into [`Limits`] up front, not kept.
    pub(crate) async fn connection(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let state = &self.app.state;
        let _conn = ConnectionGuard::new(state);
        let (limits, over_limit) = {
            let policy = state.policy.snapshot();
            let server = &policy.server;
            let limits = Limits {
                header_timeout: server.header_timeout,
                keepalive: server.keepalive_timeout,
                max_header_bytes: server.max_header_bytes,
                h2c: server.http2.h2c,
            };
            let over = state.connections.load(Ordering::Relaxed) > server.max_connections;
            (limits, over)
        };
        match protocol(&mut stream, limits).await {
            Protocol::H1 => {}
            Protocol::H2 => {
                let h2 = {
                    let policy = state.policy.snapshot();
                    Arc::new(H2Connection::new(Arc::clone(&self.app), &policy.server))
                };
                // HTTP/2 ends with its connection: there is nothing to hand back.
                let _ = h2.process_new(stream, shutdown).await;
                return;
            }
            Protocol::Gone => return,
            Protocol::Slow => {
                refuse(state, &mut stream, RefusedReason::HeaderTimeout).await;
                return;
            }
        }
        // A head held until its body comes: one write for both (see `coalesce`).
        let mut stream: Stream = Box::new(Coalesced::new(stream));
        let mut prefix = BytesMut::new();
        let mut reused = false;
        loop {
            // A new connection gets the header timeout for its first byte too, so a socket that
            // never says anything is let go; a kept-alive one waits its keep-alive time.
            let first_byte = if reused {
                limits.keepalive
            } else {
                limits.header_timeout
            };
            let buf = match read_head(&mut stream, prefix, first_byte, limits).await {
                Head::Ready(buf) => buf,
                Head::Gone => return,
                Head::Slow => {
                    refuse(state, &mut stream, RefusedReason::HeaderTimeout).await;
                    return;
                }
                Head::TooLarge => {
                    refuse(state, &mut stream, RefusedReason::HeaderTooLarge).await;
                    return;
                }
            };
            if over_limit {
                refuse(state, &mut stream, RefusedReason::MaxConnections).await;
                return;
            }
            // Made in the call, not held in a local: a session moved out of a local still
            // keeps its room in this future.
            let Some(reusable) = self.app.serve(session(stream, buf), shutdown).await else {
                return;
            };
            let (next, rest) = reusable.into_parts();
            stream = next;
            prefix = rest.unwrap_or_default();
            reused = true;
        }
    }
}

/// pingora's HTTP/1 session over `stream`, with the head already read in `head`.
fn session(stream: Stream, head: BytesMut) -> ServerSession {
    let mut session = ServerSession::new_http1(stream);
    session.set_pipelined_prefix(fitted(head));
    // Requests a client sends without waiting for answers are served in turn.
    session.set_pipelining_enabled(true);
    session
}

/// `buf` in a buffer of its own size when it fills little of its own. pingora's session keeps
/// the buffer it parsed for the request's life (its header values point into it), so a 4 KiB
/// read buffer around a 600-byte head would be held by every open stream.
fn fitted(buf: BytesMut) -> BytesMut {
    if buf.capacity() - buf.len() > FIT_SLACK {
        BytesMut::from(&buf[..])
    } else {
        buf
    }
}

/// Unused room a request's buffer may keep (see [`fitted`]).
const FIT_SLACK: usize = 512;

/// What a new connection speaks.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    H1,
    H2,
    /// Closed before saying enough to tell.
    Gone,
    /// Did not say enough to tell within the header timeout.
    Slow,
}

/// HTTP/2 when TLS negotiated `h2`, or, with `server.http2.h2c` on a plain listener, when the
/// client opens with the HTTP/2 preface; HTTP/1.1 otherwise. The preface is peeked, not
/// consumed, so either protocol reads the connection from its first byte. With h2c on, a
/// first request shorter than the preface (24 bytes) waits for the header timeout.
async fn protocol(stream: &mut Stream, limits: Limits) -> Protocol {
    if stream.get_ssl_digest().is_some() {
        return if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            Protocol::H2
        } else {
            Protocol::H1
        };
    }
    if !limits.h2c {
        return Protocol::H1;
    }
    let mut first = [0u8; PREFACE.len()];
    match timeout(limits.header_timeout, stream.try_peek(&mut first)).await {
        Err(_) => Protocol::Slow,
        Ok(Err(_)) => Protocol::Gone,
        Ok(Ok(true)) if &first == PREFACE => Protocol::H2,
        Ok(Ok(_)) => Protocol::H1,
    }
}

/// Counts a data-plane connection for as long as it is open.
struct ConnectionGuard<'a>(&'a AppState);

impl<'a> ConnectionGuard<'a> {
    fn new(state: &'a AppState) -> Self {
        let n = state.connections.fetch_add(1, Ordering::AcqRel) + 1;
        state
            .metrics
            .downstream_connections
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        Self(state)
    }
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        let n = self.0.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0
            .metrics
            .downstream_connections
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Reads until `buf` holds a whole request head (it may already), within the limits.
async fn read_head(
    stream: &mut Stream,
    mut buf: BytesMut,
    first_byte: Duration,
    limits: Limits,
) -> Head {
    let mut deadline: Option<Instant> =
        (!buf.is_empty()).then(|| Instant::now() + limits.header_timeout);
    loop {
        if head_end(&buf).is_some() {
            return Head::Ready(buf);
        }
        if buf.len() >= limits.max_header_bytes {
            return Head::TooLarge;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096.min(limits.max_header_bytes - buf.len()).max(1024));
        }
        let read = match deadline {
            None => timeout(first_byte, stream.read_buf(&mut buf)).await,
            Some(at) => timeout_at(at, stream.read_buf(&mut buf)).await,
        };
        match read {
            // Nothing at all within the wait: an idle connection, let go without a word.
            Err(_) if deadline.is_none() => return Head::Gone,
            Err(_) => return Head::Slow,
            Ok(Ok(0) | Err(_)) => return Head::Gone,
            Ok(Ok(_)) => {
                deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
            }
        }
    }
}

/// Where the head ends (after its blank line), if it is complete. Bare LF line ends count,
/// as the parser behind accepts them.
fn head_end(buf: &[u8]) -> Option<usize> {
    // Blank lines before a request line are allowed (RFC 9112 §2.2); skip them.
    let start = buf.iter().position(|b| *b != b'\r' && *b != b'\n')?;
    let body = &buf[start..];
    let mut i = 0;
    while let Some(off) = body[i..].iter().position(|b| *b == b'\n') {
        let at = i + off;
        let rest = &body[at + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(start + at + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(start + at + 3);
        }
        i = at + 1;
    }
    None
}

/// Answers with `reason`'s status and `connection: close`, and counts it.
async fn refuse(state: &AppState, stream: &mut Stream, reason: RefusedReason) {
    state.metrics.record_refused(reason);
    let (status, phrase, message) = match reason {
        RefusedReason::HeaderTimeout => (
            408,
            "Request Timeout",
            "the request head took too long to arrive",
        ),
        RefusedReason::HeaderTooLarge => (
            431,
            "Request Header Fields Too Large",
            "the request head is larger than the server accepts",
        ),
        RefusedReason::MaxConnections => (
            503,
            "Service Unavailable",
            "the server has too many open connections; retry shortly",
        ),
        RefusedReason::BodyTimeout | RefusedReason::Draining => (
            503,
            "Service Unavailable",
            "the server cannot take this request",
        ),
    };
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": reason.as_str()}}).to_string();
    let mut wire = format!(
        "HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if status == 503 {
        wire.push_str("retry-after: 1\r\n");
    }
    wire.push_str("\r\n");
    wire.push_str(&body);
    // A client that does not read its answer does not hold the connection either.
    let _ = timeout(Duration::from_secs(1), async {
        stream.write_all(wire.as_bytes()).await?;
        stream.flush().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_keeps_a_buffer_of_its_own_size() {
        let mut roomy = BytesMut::with_capacity(4096);
        roomy.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let small = fitted(roomy);
        assert_eq!(&small[..], b"GET / HTTP/1.1\r\n\r\n");
        assert!(small.capacity() - small.len() <= FIT_SLACK);
        // One that fills its buffer is kept as it is: no copy.
        let mut full = BytesMut::with_capacity(1024);
        full.extend_from_slice(&[b'a'; 1000]);
        let at = full.as_ptr();
        assert_eq!(fitted(full).as_ptr(), at);
    }

    #[test]
    fn heads_end_at_their_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24));
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Some(22));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert_eq!(head_end(b""), None);
        assert_eq!(head_end(b"\r\n"), None);
    }
}
