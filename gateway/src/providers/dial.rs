//! Opening one connection to a provider: TCP to the provider or its proxy, TLS to an
//! `https://` proxy, the proxy's CONNECT, then TLS to the provider with this build's own
//! trust store and ALPN.
//!
//! pingora's connector builds a root store and a rustls config on every connection whose peer
//! carries its own CA list (parsing every certificate of the bundle, and the system roots
//! with it, each time) and, as the config is new each time, can never resume a TLS session.
//! Here the config is built once per egress build: connections share its root store and its
//! session cache, so a second connection to the provider resumes instead of a full handshake.
//! pingora still pools HTTP/1.1 connections made this way: [`Dialer`] is its custom L4
//! connect, and the peer is then plain to pingora.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::ext::{TcpKeepalive, set_tcp_keepalive};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::tls::{CertificateDer, ClientConfig, RootCertStore, ServerName, TlsConnector};
use pingora::{Error, ErrorType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy's answer to CONNECT larger than this is not an HTTP proxy.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// The ALPN a connection offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    H2,
    /// `h2` then `http/1.1`: the provider chooses.
    Either,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Self::Http1 => vec![b"http/1.1".to_vec()],
            Self::H2 => vec![b"h2".to_vec()],
            Self::Either => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// A rustls client config trusting `bundle` (DER certificates), plus the system roots unless
/// `replace_roots`; built once and shared by every connection of a build.
pub fn client_config(
    bundle: &[CertificateDer<'static>],
    replace_roots: bool,
    alpn: Alpn,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    if !replace_roots {
        // Unparsable system roots are skipped, as every TLS client does.
        let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    for (i, der) in bundle.iter().enumerate() {
        roots
            .add(der.clone())
            .map_err(|e| format!("certificate {} cannot be used as a root: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err("no trusted certificate: the bundle is empty and the system roots are replaced or missing".into());
    }
    pingora::tls::install_default_crypto_provider();
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.protocols();
    Ok(Arc::new(config))
}

/// TLS to one named server with a prebuilt config.
#[derive(Clone)]
pub struct TlsHop {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// For messages.
    pub shown: String,
}

impl TlsHop {
    pub fn new(config: Arc<ClientConfig>, name: &str) -> Result<Self, String> {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let server = ServerName::try_from(bare.to_owned())
            .map_err(|_| format!("`{name}` is not a name TLS can check a certificate against"))?;
        Ok(Self {
            config,
            name: server,
            shown: name.to_owned(),
        })
    }
}

/// The proxy part of a route.
pub struct ProxyHop {
    /// `host:port`, for messages.
    pub authority: String,
    /// An `https://` proxy.
    pub tls: Option<TlsHop>,
    /// `host:port` for CONNECT; `None` for an http provider (absolute-form requests).
    pub connect: Option<String>,
    pub authorization: Option<String>,
}

/// One provider's way to a connection. The address it is given is the first hop's (the
/// proxy's, or the provider's).
pub struct Dialer {
    pub proxy: Option<ProxyHop>,
    /// TLS to the provider done here (own trust store, ALPN), not by pingora.
    pub tls: Option<TlsHop>,
    pub timeout: Duration,
    pub keepalive: Option<TcpKeepalive>,
}

impl std::fmt::Debug for Dialer {
    // Never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.proxy {
            Some(p) => write!(f, "dial via {}", p.authority),
            None => f.write_str("dial direct"),
        }
    }
}

/// Any connected byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug> Io for T {}

/// A connection as dialled.
pub struct Dialed {
    pub conn: Conn,
    /// TLS to the provider chose HTTP/2 by ALPN.
    pub h2: bool,
}

/// The stream of a connection: TCP as it is, or wrapped in TLS (to the proxy, the provider
/// or both).
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Wrapped(Box<dyn Io>),
}

fn proxy_failed(what: String) -> Box<Error> {
    Error::explain(ErrorType::ConnectProxyFailure, what)
}

impl Dialer {
    /// Connects to `addr` and runs every hop; the error says which hop failed.
    pub async fn dial(&self, addr: std::net::SocketAddr) -> pingora::Result<Dialed> {
        let first = match &self.proxy {
            Some(p) => p.authority.clone(),
            None => self
                .tls
                .as_ref()
                .map_or_else(|| addr.to_string(), |t| t.shown.clone()),
        };
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                let what = format!(
                    "{first} did not accept a connection within {:?}",
                    self.timeout
                );
                match self.proxy {
                    Some(_) => proxy_failed(format!("proxy {what}")),
                    None => Error::explain(ErrorType::ConnectTimedout, what),
                }
            })?
            .map_err(|e| {
                let what = format!("{first} refused the connection ({})", e.kind());
                match self.proxy {
                    Some(_) => proxy_failed(format!("proxy {what}")),
                    None => Error::explain(ErrorType::ConnectRefused, what),
                }
            })?;
        let _ = tcp.set_nodelay(true);
        if let Some(ka) = &self.keepalive {
            set_tcp_keepalive(&tcp, ka)?;
        }
        tokio::time::timeout(self.timeout * 2, self.hops(tcp))
            .await
            .map_err(|_| {
                Error::explain(
                    ErrorType::ConnectTimedout,
                    format!(
                        "{first}: TLS or CONNECT did not finish within {:?}",
                        self.timeout * 2
                    ),
                )
            })?
    }

    async fn hops(&self, tcp: TcpStream) -> pingora::Result<Dialed> {
        let mut conn = match &self.proxy {
            Some(ProxyHop {
                tls: Some(hop),
                authority,
                ..
            }) => {
                let tls = TlsConnector::from(Arc::clone(&hop.config))
                    .connect(hop.name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        proxy_failed(format!(
                            "TLS to proxy {authority} failed: {e} (an https:// proxy's certificate must be trusted by the system roots or the provider's ca_file)"
                        ))
                    })?;
                Conn::Wrapped(Box::new(tls))
            }
            _ => Conn::Tcp(tcp),
        };
        if let Some(p) = &self.proxy
            && let Some(target) = &p.connect
        {
            match &mut conn {
                Conn::Tcp(tcp) => {
                    connect_through(tcp, &p.authority, target, p.authorization.as_deref()).await?;
                }
                Conn::Wrapped(io) => {
                    connect_through(io, &p.authority, target, p.authorization.as_deref()).await?;
                }
            }
        }
        let Some(hop) = &self.tls else {
            return Ok(Dialed { conn, h2: false });
        };
        let inner: Box<dyn Io> = match conn {
            Conn::Tcp(tcp) => Box::new(tcp),
            Conn::Wrapped(io) => io,
        };
        let tls = TlsConnector::from(Arc::clone(&hop.config))
            .connect(hop.name.clone(), inner)
            .await
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("NoApplicationProtocol") {
                    let offered = if hop.config.alpn_protocols.iter().any(|p| p == b"h2") {
                        "it does not accept HTTP/2 (ALPN h2); set http_version to auto or http1"
                    } else {
                        "it wants a protocol other than HTTP/1.1 (ALPN); set http_version to h2"
                    };
                    return Error::explain(
                        ErrorType::TLSHandshakeFailure,
                        format!("TLS to {}: {offered}", hop.shown),
                    );
                }
                let kind = if text.contains("certificate") {
                    ErrorType::InvalidCert
                } else {
                    ErrorType::TLSHandshakeFailure
                };
                Error::explain(kind, format!("TLS to {}: {e}", hop.shown))
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Dialed {
            conn: Conn::Wrapped(Box::new(tls)),
            h2,
        })
    }
}

impl Dialed {
    /// As pingora's stream type, for its HTTP/1.1 pool.
    pub fn into_l4(self) -> L4Stream {
        match self.conn {
            Conn::Tcp(tcp) => L4Stream::from(tcp),
            Conn::Wrapped(io) => L4Stream::from(VirtualSocketStream::new(Box::new(Wrapped(io)))),
        }
    }
}

/// A wrapped stream as pingora's virtual socket. Socket options were set on the TCP stream
/// when it was dialled.
#[derive(Debug)]
struct Wrapped(Box<dyn Io>);

impl VirtualSocket for Wrapped {
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Wrapped {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wrapped {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

#[async_trait]
impl L4Connect for Dialer {
    async fn connect(&self, addr: &PeerAddr) -> pingora::Result<L4Stream> {
        let Some(inet) = addr.as_inet() else {
            return Err(proxy_failed("the first hop has no IP address".into()));
        };
        Ok(self.dial(*inet).await?.into_l4())
    }
}

/// The proxy's CONNECT handshake on `io`; TLS to the provider then runs inside the tunnel.
async fn connect_through<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    proxy: &str,
    target: &str,
    authorization: Option<&str>,
) -> pingora::Result<()> {
    let request = connect_request(target, authorization);
    let sent = async {
        io.write_all(request.as_bytes()).await?;
        io.flush().await
    };
    sent.await
        .map_err(|e| proxy_failed(format!("sending CONNECT to proxy {proxy}: {}", e.kind())))?;
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.len() >= MAX_CONNECT_HEAD {
            return Err(proxy_failed(format!(
                "proxy {proxy} answered CONNECT with more than {MAX_CONNECT_HEAD} bytes of head"
            )));
        }
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| proxy_failed(format!("reading proxy {proxy}'s answer: {}", e.kind())))?;
        if n == 0 {
            return Err(proxy_failed(format!(
                "proxy {proxy} closed the connection instead of answering CONNECT {target}"
            )));
        }
        match connect_answer(&buf) {
            ConnectAnswer::Partial => {}
            ConnectAnswer::Established => return Ok(()),
            ConnectAnswer::Refused(status) => {
                return Err(proxy_failed(format!(
                    "proxy {proxy} answered CONNECT {target} with {status}"
                )));
            }
            ConnectAnswer::Invalid(why) => {
                return Err(proxy_failed(format!("proxy {proxy}: {why}")));
            }
        }
    }
}

/// The CONNECT request for `target` (`host:port`).
pub(crate) fn connect_request(target: &str, authorization: Option<&str>) -> String {
    let mut r = format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n");
    if let Some(a) = authorization {
        r.push_str("proxy-authorization: ");
        r.push_str(a);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConnectAnswer {
    Partial,
    Established,
    /// The status line's code and reason.
    Refused(String),
    Invalid(&'static str),
}

/// Reads a proxy's answer to CONNECT. Bytes after a 2xx head would be the provider speaking
/// before the client did, which neither TLS nor HTTP does: refused, as the tunnel would be
/// out of step.
pub(crate) fn connect_answer(buf: &[u8]) -> ConnectAnswer {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => ConnectAnswer::Partial,
        Err(_) => ConnectAnswer::Invalid("its answer to CONNECT is not HTTP"),
        Ok(httparse::Status::Complete(len)) => match resp.code {
            Some(code) if (200..300).contains(&code) => {
                if len == buf.len() {
                    ConnectAnswer::Established
                } else {
                    ConnectAnswer::Invalid("data followed its answer to CONNECT")
                }
            }
            Some(code) => ConnectAnswer::Refused(
                format!("{code} {}", resp.reason.unwrap_or_default())
                    .trim()
                    .to_owned(),
            ),
            None => ConnectAnswer::Invalid("its answer to CONNECT has no status"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_answers() {
        let cases: &[(&[u8], ConnectAnswer)] = &[
            (
                b"HTTP/1.1 200 Connection established\r\n",
                ConnectAnswer::Partial,
            ),
            (
                b"HTTP/1.1 200 Connection established\r\n\r\n",
                ConnectAnswer::Established,
            ),
            (
                b"HTTP/1.0 200 OK\r\nvia: p\r\n\r\n",
                ConnectAnswer::Established,
            ),
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                ConnectAnswer::Refused("407 Proxy Authentication Required".into()),
            ),
            (
                b"HTTP/1.1 403 \r\n\r\n",
                ConnectAnswer::Refused("403".into()),
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\nextra",
                ConnectAnswer::Invalid("data followed its answer to CONNECT"),
            ),
            (
                b"SSH-2.0-x\r\n\r\n",
                ConnectAnswer::Invalid("its answer to CONNECT is not HTTP"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                &connect_answer(input),
                want,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn the_connect_request() {
        assert_eq!(
            connect_request("api.openai.com:443", None),
            "CONNECT api.openai.com:443 HTTP/1.1\r\nhost: api.openai.com:443\r\n\r\n"
        );
        assert_eq!(
            connect_request("[::1]:8443", Some("Basic dTpw")),
            "CONNECT [::1]:8443 HTTP/1.1\r\nhost: [::1]:8443\r\nproxy-authorization: Basic dTpw\r\n\r\n"
        );
    }

    #[test]
    fn alpn_offers() {
        assert_eq!(Alpn::Http1.protocols(), vec![b"http/1.1".to_vec()]);
        assert_eq!(Alpn::H2.protocols(), vec![b"h2".to_vec()]);
        assert_eq!(
            Alpn::Either.protocols(),
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let config = client_config(&[], true, Alpn::H2);
        assert!(config.is_err(), "no roots at all is refused");
    }

    /// The trust store and session cache are the build's, not the connection's: a second
    /// connection resumes the TLS session of the first instead of a full handshake.
    #[tokio::test]
    async fn a_second_connection_resumes_the_tls_session() {
        use pingora::tls::{PrivateKeyDer, ServerConfig, TlsAcceptor};
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        pingora::tls::install_default_crypto_provider();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
            )
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        #[expect(clippy::disallowed_methods, reason = "a test's stand-in server")]
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                // rustls's HandshakeKind, not re-exported by pingora: compared as text.
                let _ = tx.send(format!("{:?}", tls.get_ref().1.handshake_kind()));
                let _ = tls.write_all(b"x").await;
                let _ = tls.flush().await;
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest).await;
            }
        });
        let config = client_config(&[cert.der().clone()], true, Alpn::Http1).expect("config");
        let dialer = Dialer {
            proxy: None,
            tls: Some(TlsHop::new(config, "localhost").expect("hop")),
            timeout: Duration::from_secs(2),
            keepalive: None,
        };
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let Conn::Wrapped(mut io) = dialer.dial(addr).await.expect("dial").conn else {
                panic!("TLS wraps the stream");
            };
            // Reading takes in the session tickets the server sent after its handshake.
            let mut byte = [0u8; 1];
            io.read_exact(&mut byte).await.expect("read");
            kinds.push(rx.recv().await.expect("kind"));
        }
        assert_eq!(kinds, ["Some(Full)", "Some(Resumed)"]);
    }
}
