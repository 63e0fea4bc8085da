//! The `openai` provider kind: any OpenAI-compatible HTTP API (OpenAI itself, vLLM, Ollama,
//! another gateway), over connections from [`super::pool`] (dialed by pingora).
//!
//! The request goes out in one vectored write of head and body: pingora's H1 client writes
//! and flushes the head on its own, which costs a second `sendto` (and a second segment the
//! provider must read) on every request. The answer is read by [`super::h1`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pingora::upstreams::peer::{HttpPeer, Peer, PeerOptions, Proxy, Tracer};
use pingora::utils::tls::CertKey;
use sluice_config::{BaseUrl, Secret};
use tokio::io::AsyncWriteExt;

use super::h1::Response;
use super::pool::Connector;
use super::{ConnectError, HttpUpstream, Session, Upstream, h2up};

use super::egress::{DEFAULT_IDLE as POOL_IDLE, ProviderEgress};

/// Everything one attempt needs to reach an OpenAI-compatible provider.
pub struct HttpTarget<'a> {
    pub addr: SocketAddr,
    pub base_url: &'a BaseUrl,
    pub api_key: Option<&'a Secret>,
    pub connect_timeout: Duration,
    /// The API path below the base URL, e.g. `/chat/completions`.
    pub path: &'static str,
    pub stream: bool,
    pub request_id: &'a str,
    /// Only for the judge's calls to Sluice's own HTTPS listener on loopback, whose
    /// certificate is for the public name, not for 127.0.0.1: no hop leaves the host.
    pub own_listener: bool,
    /// The provider's headers, CA, proxy and connection settings, when it has any.
    pub egress: Option<&'a ProviderEgress>,
}

/// Connects (or reuses a pooled connection), sends the request and reads the response header.
/// The caller bounds the whole call with its time-to-first-byte deadline.
pub async fn send(
    connector: &Connector,
    target: &HttpTarget<'_>,
    body: Bytes,
) -> Result<Upstream, ConnectError> {
    // The attempt is already open; a head that cannot be built closes it as a failed send.
    let head = request_head(target, body.len())
        .map_err(ConnectError::Connect)?
        .freeze();
    send_prepared(connector, target, head, body).await
}

/// Sends a request whose head is already written (the other HTTP kinds build their own, with
/// their paths and credential headers) and reads the answer's head. `target.path` is unused.
pub async fn send_prepared(
    connector: &Connector,
    target: &HttpTarget<'_>,
    head: Bytes,
    body: Bytes,
) -> Result<Upstream, ConnectError> {
    let egress = target.egress;
    if let Some(e) = egress
        && let (Some(pool), Some(dialer)) = (&e.h2, e.dialer())
        && !pool.fell_back_to_h1()
    {
        // Boxed, as connecting is below: rare, and large in this future.
        match Box::pin(pool.send(
            dialer,
            target.addr,
            target.base_url.tls,
            &head,
            body.clone(),
        ))
        .await
        {
            Ok(h2up::Sent::Response(r)) => {
                return Ok(Upstream::Http(Box::new(HttpUpstream {
                    session: Session::H2(r),
                    peer: None,
                    own_pool: None,
                })));
            }
            // `auto`, and the provider chose HTTP/1.1: this attempt goes that way too.
            Ok(h2up::Sent::FellBack) => {}
            Err(err) => {
                let message = match err {
                    h2up::SendError::Dial(d) => {
                        format!("connect to {} {}", target.base_url, e.explain(&d))
                    }
                    h2up::SendError::Other(why) => {
                        format!("request to {} {}: {why}", target.base_url, e.route)
                    }
                };
                tracing::warn!(request_id = target.request_id, failure = %message, "Provider connection failed.");
                return Err(ConnectError::Connect(message));
            }
        }
    }
    let sni = egress
        .and_then(ProviderEgress::sni)
        .unwrap_or(&target.base_url.host);
    // TLS the dialer does itself (its own trust store) leaves a plain peer to pingora.
    let tls = target.base_url.tls && !egress.is_some_and(ProviderEgress::own_tls);
    // Made in place: an `HttpPeer` moved into a `ProviderPeer` would keep room for both
    // (672 bytes each) in this future.
    let mut peer = ProviderPeer(HttpPeer::new(target.addr, tls, sni.to_owned()));
    let options = &mut peer.0.options;
    options.connection_timeout = Some(target.connect_timeout);
    options.total_connection_timeout = Some(target.connect_timeout * 2);
    options.idle_timeout = Some(POOL_IDLE);
    if target.own_listener {
        options.verify_cert = false;
        options.verify_hostname = false;
    }
    if let Some(e) = egress {
        e.apply(options);
        peer.0.group_key = e.group_key();
    }
    let own_pool = egress.and_then(|e| e.connector.clone());
    let connector = own_pool.as_deref().unwrap_or(connector);
    // The pool first, then a new connection. Connecting is boxed: its future keeps room for a
    // TLS handshake (8 KiB), and in line it would be part of every attempt's future, held
    // while the request waits for its first event, pooled connection or not.
    let (stream, reused) = match connector.take(&peer) {
        Some(stream) => (stream, true),
        None => (
            Box::pin(connector.dial(&peer))
                .await
                .map_err(|e| connect_failed(target, &e))?,
            false,
        ),
    };
    match exchange(stream, reused, target, head.clone(), body.clone()).await {
        Ok(session) => Ok(http_upstream(session, peer, own_pool)),
        // A pooled connection the provider closed while it sat idle (its keep-alive ran out
        // as we picked it): nothing was answered, so the request goes again on a fresh
        // connection, within the same attempt.
        Err(Sent::Stale) => {
            tracing::debug!(provider = %target.base_url.host, "Pooled connection was closed by the provider; sending on a new one.");
            let stream = Box::pin(connector.dial(&peer))
                .await
                .map_err(|e| connect_failed(target, &e))?;
            match exchange(stream, false, target, head, body).await {
                Ok(session) => Ok(http_upstream(session, peer, own_pool)),
                Err(Sent::Stale) => Err(ConnectError::Connect(format!(
                    "request to {} failed: the provider closed the connection before answering",
                    target.base_url
                ))),
                Err(Sent::Failed(e)) => Err(e),
            }
        }
        Err(Sent::Failed(e)) => Err(e),
    }
}

/// The peer and pool move into the upstream: one per attempt, nothing copied.
fn http_upstream(
    session: Response,
    peer: ProviderPeer,
    own_pool: Option<std::sync::Arc<Connector>>,
) -> Upstream {
    Upstream::Http(Box::new(HttpUpstream {
        session: Session::H1(session),
        peer: Some(peer),
        own_pool,
    }))
}

/// How sending on one connection failed.
enum Sent {
    /// A reused connection that was already closed: nothing was answered.
    Stale,
    Failed(ConnectError),
}

fn connect_failed(target: &HttpTarget<'_>, e: &pingora::Error) -> ConnectError {
    match target.egress {
        // Say which part failed: the proxy, its CONNECT, or trust in the provider's certificate.
        Some(egress) => {
            let message = format!("connect to {} {}", target.base_url, egress.explain(e));
            // A proxy or trust problem is the network's setup, not the provider's mood: said
            // at warn level, with the request id, whatever the log level.
            tracing::warn!(request_id = target.request_id, failure = %message, "Provider connection failed.");
            ConnectError::Connect(message)
        }
        None => ConnectError::Connect(format!(
            "connect to {}: {}",
            target.base_url,
            e.etype().as_str()
        )),
    }
}

/// Writes the request on `stream` and reads the answer's head.
async fn exchange(
    mut stream: pingora::protocols::Stream,
    reused: bool,
    target: &HttpTarget<'_>,
    head: Bytes,
    body: Bytes,
) -> Result<Response, Sent> {
    // The connector applies only connect timeouts; reads are bounded by the exchange's own
    // deadlines, the write by the connect timeout so a dead peer cannot hold the request.
    let mut wire = head.chain(body);
    let written = tokio::time::timeout(target.connect_timeout, async {
        stream.write_all_buf(&mut wire).await?;
        stream.flush().await
    })
    .await;
    let failed = |what: &str| {
        let on = if reused {
            "reused connection to"
        } else {
            "request to"
        };
        Sent::Failed(ConnectError::Connect(format!(
            "{on} {} failed: {what}",
            target.base_url
        )))
    };
    match written {
        Ok(Ok(())) => {}
        // A write error on a pooled connection: it was closed under us.
        Ok(Err(_)) if reused => return Err(Sent::Stale),
        // Dropping the stream closes it; a polite shutdown could wait on a full send buffer.
        Ok(Err(e)) => return Err(failed(&e.kind().to_string())),
        Err(_) => return Err(failed("write timed out")),
    }
    match Response::read_head(stream).await {
        Ok(session) => Ok(session),
        Err(e) if reused && e.nothing_received => Err(Sent::Stale),
        Err(e) => Err(failed(&e.message)),
    }
}

/// The request head, written straight to wire format: building a pingora `RequestHeader`
/// (a header map plus a case map) only to serialize it again cost more than the rest of the
/// upstream write. Every value is checked to be visible ASCII, so nothing from the policy,
/// the environment or the client can inject a header line.
fn request_head(target: &HttpTarget<'_>, len: usize) -> Result<BytesMut, String> {
    const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));
    let url = target.base_url;
    let key = target.api_key.map(Secret::expose);
    let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if !visible(&url.path) || !visible(&url.host) || !visible(target.request_id) {
        return Err("the upstream request has a path, host or id that is not visible ASCII".into());
    }
    if key.is_some_and(|k| !visible(k)) {
        // Never echo the key: say only where the problem is.
        return Err("the provider's API key contains characters a header cannot carry".into());
    }
    let mut b = BytesMut::with_capacity(320 + key.map_or(0, str::len));
    b.put_slice(b"POST ");
    if target.egress.is_some_and(|e| e.absolute_form) {
        // Through a proxy, a plain-HTTP request names its whole target.
        let _ = write!(b, "http://{}", url.authority());
    }
    b.put_slice(url.path.as_bytes());
    b.put_slice(target.path.as_bytes());
    b.put_slice(b" HTTP/1.1\r\nhost: ");
    let ipv6 = url.host.contains(':');
    if ipv6 {
        b.put_u8(b'[');
    }
    b.put_slice(url.host.as_bytes());
    if ipv6 {
        b.put_u8(b']');
    }
    if url.port != if url.tls { 443 } else { 80 } {
        // Writing into a BytesMut cannot fail.
        let _ = write!(b, ":{}", url.port);
    }
    if let Some(key) = key {
        b.put_slice(b"\r\nauthorization: Bearer ");
        b.put_slice(key.as_bytes());
    }
    let _ = write!(
        b,
        "\r\ncontent-type: application/json\r\ncontent-length: {len}"
    );
    b.put_slice(if target.stream {
        &b"\r\naccept: text/event-stream"[..]
    } else {
        &b"\r\naccept: application/json"[..]
    });
    // Sluice parses what comes back, so it asks for it uncompressed.
    b.put_slice(b"\r\naccept-encoding: identity\r\nuser-agent: ");
    b.put_slice(USER_AGENT.as_bytes());
    b.put_slice(b"\r\nx-request-id: ");
    b.put_slice(target.request_id.as_bytes());
    if let Some(e) = target.egress {
        // Checked at load: names are tokens, values printable ASCII.
        b.put_slice(&e.extra_head);
    }
    b.put_slice(b"\r\n\r\n");
    Ok(b)
}

/// A provider address as pingora's connector sees it: an [`HttpPeer`] that skips pingora's
/// check, on every pooled reuse, that the socket's remote address still matches the peer.
/// That check is a `getpeername` syscall per request; pooled streams are owned values keyed
/// by this peer's hash, so a recycled descriptor cannot end up under the wrong peer, and a
/// connection the provider closed is still caught by the connector's liveness probe.
#[derive(Clone)]
pub struct ProviderPeer(pub HttpPeer);

impl std::fmt::Display for ProviderPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Peer for ProviderPeer {
    fn address(&self) -> &pingora::protocols::l4::socket::SocketAddr {
        self.0.address()
    }

    fn tls(&self) -> bool {
        self.0.tls()
    }

    fn sni(&self) -> &str {
        self.0.sni()
    }

    fn reuse_hash(&self) -> u64 {
        self.0.reuse_hash()
    }

    fn get_proxy(&self) -> Option<&Proxy> {
        self.0.get_proxy()
    }

    fn get_peer_options(&self) -> Option<&PeerOptions> {
        self.0.get_peer_options()
    }

    fn get_mut_peer_options(&mut self) -> Option<&mut PeerOptions> {
        self.0.get_mut_peer_options()
    }

    fn matches_fd<V: std::os::fd::AsRawFd>(&self, _fd: V) -> bool {
        true
    }

    fn get_client_cert_key(&self) -> Option<&std::sync::Arc<CertKey>> {
        self.0.get_client_cert_key()
    }

    fn get_tracer(&self) -> Option<Tracer> {
        self.0.get_tracer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(url: &'a BaseUrl, key: Option<&'a Secret>, stream: bool) -> HttpTarget<'a> {
        HttpTarget {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            base_url: url,
            api_key: key,
            connect_timeout: Duration::from_secs(1),
            path: "/chat/completions",
            stream,
            request_id: "req_1",
            own_listener: false,
            egress: None,
        }
    }

    fn url(tls: bool, host: &str, port: u16) -> BaseUrl {
        BaseUrl {
            tls,
            host: host.into(),
            port,
            path: "/v1".into(),
        }
    }

    #[test]
    fn the_head_is_exact_http_1_1() {
        let u = url(true, "api.openai.com", 443);
        let key = Secret::new("sk-test");
        let head = request_head(&target(&u, Some(&key), true), 42).expect("head");
        assert_eq!(
            std::str::from_utf8(&head).expect("ascii"),
            concat!(
                "POST /v1/chat/completions HTTP/1.1\r\n",
                "host: api.openai.com\r\n",
                "authorization: Bearer sk-test\r\n",
                "content-type: application/json\r\n",
                "content-length: 42\r\n",
                "accept: text/event-stream\r\n",
                "accept-encoding: identity\r\n",
                "user-agent: sluice/",
                env!("CARGO_PKG_VERSION"),
                "\r\n",
                "x-request-id: req_1\r\n\r\n"
            )
        );
        // A head pingora itself can parse back.
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(&head).expect("parses").is_complete());
        assert_eq!(req.path, Some("/v1/chat/completions"));
    }

    #[test]
    fn ports_and_ipv6_hosts_are_written_as_rfc_9112_wants() {
        let u = url(false, "::1", 8080);
        let head = request_head(&target(&u, None, false), 0).expect("head");
        let text = std::str::from_utf8(&head).expect("ascii");
        assert!(text.contains("\r\nhost: [::1]:8080\r\n"), "{text}");
        assert!(!text.contains("authorization"), "{text}");
        assert!(text.contains("\r\naccept: application/json\r\n"), "{text}");
    }

    #[test]
    fn nothing_can_inject_a_header_line() {
        let u = url(true, "api.openai.com", 443);
        let key = Secret::new("sk-test\r\nx-evil: 1");
        let err = request_head(&target(&u, Some(&key), false), 1).expect_err("refused");
        assert!(!err.contains("sk-test"), "the key is never echoed: {err}");
        let mut t = target(&u, None, false);
        t.request_id = "a\nb";
        assert!(request_head(&t, 1).is_err());
    }
}
