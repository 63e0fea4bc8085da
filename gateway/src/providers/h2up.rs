//! HTTP/2 to a provider (`http_version: h2` or `auto`): every attempt is a stream on a
//! connection shared with the provider's other attempts.
//!
//! pingora's HTTP/2 connector takes a connection out of its pool while it opens a stream on
//! it, so attempts arriving together each find the pool empty and open a connection of their
//! own. Here an attempt takes a stream slot on an open connection without a lock (a counter
//! against the provider's `SETTINGS_MAX_CONCURRENT_STREAMS`), and only when every connection
//! is full (or there is none) does it dial, one dial at a time: attempts that arrive during a
//! dial wait for it and share the new connection.
//!
//! A connection that dies fails every attempt it carried: one still waiting for its answer's
//! head fails as a connect failure and fails over like any other; one already streaming ends
//! as a broken body, as on HTTP/1.1. A connection the provider closed politely (GOAWAY) or a
//! stream it refused unprocessed is tried once more on a fresh connection.
//!
//! A connection that carried no stream for the provider's `idle_timeout` is closed, as an idle
//! HTTP/1.1 connection leaves the pool: a NAT or a provider that forgets idle connections
//! silently would otherwise fail the next attempt on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};

use super::dial::{Conn, Dialer};
use super::egress::H2Gauges;

/// Receive windows: large enough that a fast provider is not held back, small enough that a
/// slow client cannot make Sluice buffer without bound (the window is only given back as the
/// body is forwarded).
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Streams per connection Sluice opens at most, whatever the provider allows.
const MAX_STREAMS: usize = 1000;

/// Request headers that are connection-specific in HTTP/1.1 and forbidden in HTTP/2.
const HOP_BY_HOP: [&str; 7] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// One provider's HTTP/2 connections.
pub struct H2Pool {
    conns: ArcSwap<Vec<Arc<H2Conn>>>,
    dialing: tokio::sync::Mutex<()>,
    /// `auto`: a provider whose ALPN answer is HTTP/1.1 is sent HTTP/1.1 from then on.
    auto: bool,
    fell_back: AtomicBool,
    gauges: H2Gauges,
    /// Connections with no stream for this long are closed.
    idle_timeout: Duration,
}

struct H2Conn {
    send: SendRequest<Bytes>,
    use_: Arc<ConnUse>,
}

/// What a connection's driver task and its leases share.
struct ConnUse {
    active: AtomicUsize,
    closed: AtomicBool,
    /// Raised while the idle check decides; a lease that sees it goes elsewhere. Apart from
    /// `closed` so that undoing it never undoes another party's close.
    closing: AtomicBool,
    /// When the last stream ended, as milliseconds since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl ConnUse {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Closes the connection if it has carried no stream for `idle`. The flag goes up before
    /// the count is read, and a lease counts itself before it reads the flag (both
    /// sequentially consistent), so a lease taken meanwhile is either seen here (and the
    /// connection stays) or sees the flag (and goes elsewhere).
    fn close_if_idle(&self, idle: Duration) -> bool {
        if self.active.load(Ordering::SeqCst) != 0 {
            return false;
        }
        let since = self.idle_since_ms.load(Ordering::SeqCst);
        if self.now_ms().saturating_sub(since) < u64::try_from(idle.as_millis()).unwrap_or(u64::MAX)
        {
            return false;
        }
        self.closing.store(true, Ordering::SeqCst);
        if self.active.load(Ordering::SeqCst) != 0 {
            self.closing.store(false, Ordering::SeqCst);
            return false;
        }
        self.closed.store(true, Ordering::SeqCst);
        true
    }
}

impl H2Conn {
    /// Takes a stream slot if the connection is open and has one.
    fn lease(self: &Arc<Self>) -> Option<Lease> {
        let u = &self.use_;
        if u.closed.load(Ordering::SeqCst) || u.closing.load(Ordering::SeqCst) {
            return None;
        }
        let limit = self.send.current_max_send_streams().min(MAX_STREAMS);
        let before = u.active.fetch_add(1, Ordering::SeqCst);
        // Counted first, then the flag read again: see `ConnUse::close_if_idle`.
        if before >= limit || u.closed.load(Ordering::SeqCst) || u.closing.load(Ordering::SeqCst) {
            u.active.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Lease(Arc::clone(self)))
    }
}

/// A stream slot on a connection, given back when the answer is dropped.
struct Lease(Arc<H2Conn>);

impl Drop for Lease {
    fn drop(&mut self) {
        let u = &self.0.use_;
        // The time first: an idle check between the two must not see no stream and an old
        // time.
        u.idle_since_ms.store(u.now_ms(), Ordering::SeqCst);
        u.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What sending over HTTP/2 came to.
pub enum Sent {
    Response(Response),
    /// `auto`, and the provider chose HTTP/1.1: send this attempt that way.
    FellBack,
}

/// The request, kept so it can go again on a fresh connection.
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Prepared {
    fn request(&self) -> Request<()> {
        let mut r = Request::new(());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// Why sending over HTTP/2 failed.
pub enum SendError {
    /// Connecting (TCP, proxy, TLS) failed: the egress settings explain it.
    Dial(Box<pingora::Error>),
    Other(String),
}

/// Why a send failed.
enum Failed {
    /// The connection was gone (or refused the stream unprocessed): another may take it.
    Retry(String),
    Final(String),
}

impl H2Pool {
    pub fn new(auto: bool, gauges: H2Gauges, idle_timeout: Duration) -> Self {
        Self {
            conns: ArcSwap::from_pointee(Vec::new()),
            dialing: tokio::sync::Mutex::new(()),
            auto,
            fell_back: AtomicBool::new(false),
            gauges,
            idle_timeout,
        }
    }

    /// `auto`, and the provider answered ALPN with HTTP/1.1.
    pub fn fell_back_to_h1(&self) -> bool {
        self.fell_back.load(Ordering::Relaxed)
    }

    pub fn open_connections(&self) -> usize {
        self.conns
            .load()
            .iter()
            .filter(|c| !c.use_.closed.load(Ordering::Relaxed))
            .count()
    }

    /// Sends the request written as an HTTP/1.1 `head` with `body`, up to the answer's head.
    /// `tls` is the scheme (`false`: h2c with prior knowledge).
    pub async fn send(
        &self,
        dialer: &Dialer,
        addr: SocketAddr,
        tls: bool,
        head: &[u8],
        body: Bytes,
    ) -> Result<Sent, SendError> {
        let prepared = prepare(head, tls).map_err(SendError::Other)?;
        let mut fresh = false;
        loop {
            let lease = match self.lease(dialer, addr, tls, fresh).await? {
                Some(l) => l,
                None => return Ok(Sent::FellBack),
            };
            match exchange(&lease, &prepared, body.clone()).await {
                Ok((head, recv)) => {
                    return Ok(Sent::Response(Response {
                        head,
                        body: recv,
                        done: false,
                        _lease: lease,
                    }));
                }
                Err(Failed::Retry(why)) if !fresh => {
                    lease.0.use_.closed.store(true, Ordering::SeqCst);
                    tracing::debug!(why = %why, "HTTP/2 connection to the provider is gone; sending on a new one.");
                    fresh = true;
                }
                Err(Failed::Retry(why) | Failed::Final(why)) => return Err(SendError::Other(why)),
            }
        }
    }

    /// A stream slot: on an open connection with room, else on a new one. `None`: `auto` and
    /// the provider chose HTTP/1.1.
    async fn lease(
        &self,
        dialer: &Dialer,
        addr: SocketAddr,
        tls: bool,
        fresh: bool,
    ) -> Result<Option<Lease>, SendError> {
        if !fresh && let Some(l) = self.conns.load().iter().find_map(H2Conn::lease) {
            return Ok(Some(l));
        }
        let _dial = self.dialing.lock().await;
        // Another attempt may have dialled while this one waited.
        if !fresh && let Some(l) = self.conns.load().iter().find_map(H2Conn::lease) {
            return Ok(Some(l));
        }
        let dialed = dialer.dial(addr).await.map_err(SendError::Dial)?;
        if tls && !dialed.h2 {
            if self.auto {
                self.fell_back.store(true, Ordering::Relaxed);
                tracing::info!(
                    "The provider chose HTTP/1.1 by ALPN; its requests use HTTP/1.1 from now on."
                );
                return Ok(None);
            }
            return Err(SendError::Other("the provider does not accept HTTP/2 (its ALPN answer was not h2); set http_version to auto or http1".into()));
        }
        let conn = match dialed.conn {
            Conn::Tcp(tcp) => handshake(tcp).await,
            Conn::Wrapped(io) => handshake(io).await,
        }
        .map_err(SendError::Other)?;
        let (conn, lease) = self.start(conn);
        // Closed connections leave the list as a new one joins it.
        let mut next: Vec<Arc<H2Conn>> = self
            .conns
            .load()
            .iter()
            .filter(|c| !c.use_.closed.load(Ordering::Relaxed))
            .cloned()
            .collect();
        next.push(conn);
        self.conns.store(Arc::new(next));
        Ok(Some(lease))
    }

    /// Drives a handshaken connection until it closes, or has been idle for `idle_timeout`.
    /// The connection comes with its first stream slot, taken before the driver (and its idle
    /// check) starts, so a short `idle_timeout` cannot close it before the dialling attempt
    /// uses it.
    fn start(&self, (send, driver): (SendRequest<Bytes>, Driver)) -> (Arc<H2Conn>, Lease) {
        let epoch = Instant::now();
        let use_ = Arc::new(ConnUse {
            active: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            epoch,
        });
        let watched = Arc::clone(&use_);
        let idle = self.idle_timeout;
        let open = self.gauges.open.clone();
        open.inc();
        self.gauges.opened.inc();
        // The connection's I/O must run whether or not an attempt is reading right now, and
        // outlives any one of them; it ends when the provider closes the connection, or when
        // this build's pool (the last `SendRequest`) is dropped and its streams are done.
        #[expect(
            clippy::disallowed_methods,
            reason = "an HTTP/2 connection is driven by a task of its own, as pingora drives its own"
        )]
        tokio::spawn(async move {
            let mut driver = driver;
            let mut tick = tokio::time::interval_at(
                epoch + idle / 4,
                (idle / 4).max(Duration::from_millis(10)),
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    r = &mut driver => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "HTTP/2 connection to a provider ended.");
                        }
                        break;
                    }
                    _ = tick.tick() => if watched.close_if_idle(idle) {
                        // Dropping the driver closes the connection.
                        tracing::debug!("Idle HTTP/2 connection to a provider closed.");
                        break;
                    },
                }
            }
            watched.closed.store(true, Ordering::SeqCst);
            open.dec();
        });
        let conn = Arc::new(H2Conn { send, use_ });
        let first = Lease(Arc::clone(&conn));
        (conn, first)
    }
}

type Driver = std::pin::Pin<Box<dyn Future<Output = Result<(), h2::Error>> + Send>>;

async fn handshake<T>(io: T) -> Result<(SendRequest<Bytes>, Driver), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<T, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake with the provider failed: {e}"))?;
    Ok((send, Box::pin(conn)))
}

/// Opens the stream, sends the request and waits for the answer's head.
async fn exchange(
    lease: &Lease,
    prepared: &Prepared,
    body: Bytes,
) -> Result<(http::response::Parts, h2::RecvStream), Failed> {
    let gone = |e: h2::Error| {
        let why = format!("HTTP/2 request to the provider failed: {e}");
        // Before the request went out: the connection was closing or already gone, or the
        // stream was refused; nothing was processed.
        if e.is_go_away() || e.is_io() || e.reason() == Some(h2::Reason::REFUSED_STREAM) {
            Failed::Retry(why)
        } else {
            Failed::Final(why)
        }
    };
    let mut send = lease.0.send.clone().ready().await.map_err(gone)?;
    let end = body.is_empty();
    let (answer, mut stream) = send.send_request(prepared.request(), end).map_err(gone)?;
    if !end {
        // h2 holds what the window does not allow yet and sends it as the provider reads.
        stream.send_data(body, true).map_err(|e| {
            Failed::Final(format!("HTTP/2 request body to the provider failed: {e}"))
        })?;
    }
    let response = answer.await.map_err(|e| {
        let why = format!("HTTP/2 request to the provider failed: {e}");
        // The request went out: only a refusal says it was not processed.
        if e.reason() == Some(h2::Reason::REFUSED_STREAM)
            || (e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR))
        {
            Failed::Retry(why)
        } else {
            Failed::Final(why)
        }
    })?;
    let (head, recv) = response.into_parts();
    Ok((head, recv))
}

/// The request as HTTP/2 wants it, from the HTTP/1.1 head the provider kinds write: the
/// request line's method and path, `host` as the authority, and the headers that mean
/// nothing in HTTP/2 left out.
fn prepare(head: &[u8], tls: bool) -> Result<Prepared, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("the upstream request head could not be read back".into()),
    }
    let method = Method::from_bytes(req.method.unwrap_or("POST").as_bytes())
        .map_err(|_| "the upstream request has no valid method".to_owned())?;
    let path = req.path.unwrap_or("/");
    let mut authority = None;
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            authority = std::str::from_utf8(h.value).ok();
        }
        if HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| "the upstream request has an invalid header name".to_owned())?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| "the upstream request has an invalid header value".to_owned())?;
        map.append(name, value);
    }
    let authority = authority.ok_or("the upstream request has no host")?;
    let scheme = if tls { "https" } else { "http" };
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("the upstream request's URL is not valid: {e}"))?;
    Ok(Prepared {
        method,
        uri,
        headers: map,
    })
}

/// An answer arriving on an HTTP/2 stream.
pub struct Response {
    head: http::response::Parts,
    body: h2::RecvStream,
    done: bool,
    /// The stream slot, given back when the answer is dropped (a stream not read to its end
    /// is reset then, which leaves the connection usable).
    _lease: Lease,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status.as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.headers.get(name).map(HeaderValue::as_bytes)
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next piece of the body; `Ok(None)` once it is complete. Each piece read opens the
    /// provider's window by as much, so it sends only as fast as the client takes.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match self.body.data().await {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    if data.is_empty() {
                        continue;
                    }
                    return Ok(Some(data));
                }
                Some(Err(e)) => return Err(format!("reading from the provider failed: {e}")),
                None => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http1_head_becomes_an_h2_request() {
        let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: api.example.com:8443\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: keep-alive\r\nX-Corp: a\r\n\r\n";
        let p = prepare(head, true).expect("prepared");
        assert_eq!(p.method, Method::POST);
        assert_eq!(
            p.uri.to_string(),
            "https://api.example.com:8443/v1/chat/completions"
        );
        assert!(p.headers.get("host").is_none());
        assert!(p.headers.get("connection").is_none());
        assert_eq!(p.headers["x-corp"], "a");
        assert_eq!(p.headers["content-length"], "2");
        let plain = prepare(b"POST /x?a=1 HTTP/1.1\r\nhost: [::1]:80\r\n\r\n", false).expect("h2c");
        assert_eq!(plain.uri.to_string(), "http://[::1]:80/x?a=1");
        assert!(
            prepare(b"POST / HTTP/1.1\r\n\r\n", true).is_err(),
            "no host"
        );
        assert!(
            prepare(b"POST / HTTP/1.1\r\nhost: a\r\n", true).is_err(),
            "incomplete"
        );
    }
}
