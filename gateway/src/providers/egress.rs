//! Reaching a provider from inside a company network (issue 20): extra headers, a CA bundle,
//! an HTTP egress proxy (CONNECT tunnels for https providers, absolute-form requests for
//! http ones), and the provider's own pool and TCP/TLS settings.
//!
//! What a provider needs is built once per policy ([`ProviderEgress`]) and cached by
//! provider name in [`EgressCache`], so a request only looks it up. The proxy decision itself
//! was made when the policy loaded (`sluice_config::choose_proxy`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use pingora::connectors::{ConnectorOptions, L4Connect, TransportConnector};
use pingora::protocols::l4::ext::TcpKeepalive;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::upstreams::peer::PeerOptions;
use pingora::utils::tls::{WrappedX509, parse_x509};
use sluice_config::{BaseUrl, Egress, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an idle pooled connection to a provider is kept unless `idle_timeout` says.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(90);
/// A proxy's answer to CONNECT larger than this is not an HTTP proxy.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Everything built from one provider's egress settings.
pub struct ProviderEgress {
    /// The provider's own pool (`pool_size`); `None` uses the shared one.
    pub connector: Option<Arc<TransportConnector>>,
    /// Where TCP goes: the proxy, or the provider itself.
    pub dial_host: String,
    pub dial_port: u16,
    /// An http provider through a proxy: the request line carries the whole URL.
    pub absolute_form: bool,
    /// `\r\nname: value` for each extra header (and `proxy-authorization` for absolute form).
    pub extra_head: Bytes,
    /// Names the route taken, for log lines: never credentials.
    pub route: String,
    sni: Option<String>,
    ca: Option<Arc<[WrappedX509]>>,
    ca_file: Option<String>,
    tunnel: Option<Arc<ConnectTunnel>>,
    idle_timeout: Duration,
    tcp_keepalive: Option<Duration>,
    group_key: u64,
}

impl ProviderEgress {
    /// Builds a provider's connection settings; the error names what could not be used.
    pub fn build(
        provider: &str,
        egress: &Egress,
        base_url: &BaseUrl,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let ca = match &egress.ca_file {
            Some(path) => Some(load_ca(path, egress.ca_replaces_roots)?),
            None => None,
        };
        let mut extra = BytesMut::new();
        for h in &egress.headers {
            // An unset variable leaves the header out (load warned about it).
            if let Some(v) = h.value.expose() {
                extra.put_slice(b"\r\n");
                extra.put_slice(h.name.as_bytes());
                extra.put_slice(b": ");
                extra.put_slice(v.as_bytes());
            }
        }
        let proxy = egress.proxy.as_ref();
        let auth = proxy.and_then(proxy_authorization);
        let absolute_form = proxy.is_some() && !base_url.tls;
        if absolute_form && let Some(auth) = &auth {
            extra.put_slice(b"\r\nproxy-authorization: ");
            extra.put_slice(auth.as_bytes());
        }
        let tunnel = match proxy {
            Some(p) if base_url.tls => Some(Arc::new(ConnectTunnel {
                proxy: p.authority(),
                target: sluice_config::egress_authority(&base_url.host, base_url.port),
                authorization: auth,
                timeout: connect_timeout,
            })),
            _ => None,
        };
        let (dial_host, dial_port) = match proxy {
            Some(p) => (p.host.clone(), p.port),
            None => (base_url.host.clone(), base_url.port),
        };
        let route = match proxy {
            Some(p) => format!("via proxy {} (from {})", p.authority(), p.source),
            None => "direct".to_owned(),
        };
        let connector = egress
            .pool_size
            .map(|size| Arc::new(TransportConnector::new(Some(ConnectorOptions::new(size)))));
        let mut key = std::collections::hash_map::DefaultHasher::new();
        provider.hash(&mut key);
        // Each build is a new pool group: settings are built again only when they changed
        // (another CA, proxy or server name), and connections made under the old ones must not
        // be reused, which pingora's peer hash alone (address, SNI) would allow.
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        BUILDS
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .hash(&mut key);
        Ok(Self {
            connector,
            dial_host,
            dial_port,
            absolute_form,
            extra_head: extra.freeze(),
            route,
            sni: egress.tls_server_name.clone(),
            ca,
            ca_file: egress.ca_file.as_ref().map(|p| p.display().to_string()),
            tunnel,
            idle_timeout: egress.idle_timeout.unwrap_or(DEFAULT_IDLE),
            tcp_keepalive: egress.tcp_keepalive,
            group_key: key.finish(),
        })
    }

    /// The name TLS asks for and checks, when it is not the base URL's host.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// Applies this provider's settings to a peer's options.
    pub fn apply(&self, options: &mut PeerOptions) {
        options.idle_timeout = Some(self.idle_timeout);
        if let Some(idle) = self.tcp_keepalive {
            options.tcp_keepalive = Some(TcpKeepalive {
                idle,
                interval: Duration::from_secs(5),
                count: 3,
                #[cfg(target_os = "linux")]
                user_timeout: Duration::ZERO,
            });
        }
        if let Some(ca) = &self.ca {
            options.ca = Some(Arc::clone(ca));
        }
        if let Some(t) = &self.tunnel {
            options.custom_l4 = Some(Arc::clone(t) as Arc<dyn L4Connect + Send + Sync>);
        }
    }

    /// Keeps this provider's pooled connections apart from any other's with the same address
    /// (a tunnel through the same proxy, another CA).
    pub fn group_key(&self) -> u64 {
        self.group_key
    }

    /// A connect error as the log should say it: which part failed.
    pub fn explain(&self, e: &pingora::Error) -> String {
        use pingora::ErrorType;
        let detail = e.to_string();
        let tls = matches!(
            e.etype(),
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
        ) || detail.contains("certificate");
        match (&self.ca_file, tls) {
            (Some(file), true) => format!(
                "{} {detail}; the provider's certificate is not trusted by ca_file {file}",
                self.route
            ),
            (None, true) => format!(
                "{} {detail}; the provider's certificate is not trusted by the system roots (a TLS-inspecting proxy's CA goes in ca_file)",
                self.route
            ),
            (_, false) => format!("{} {detail}", self.route),
        }
    }
}

/// `Proxy-Authorization: Basic …` from `user:password`.
fn proxy_authorization(p: &ProxyConfig) -> Option<String> {
    p.credentials
        .as_ref()
        .map(|c| format!("Basic {}", base64(c.expose().as_bytes())))
}

/// Standard base64 with padding (RFC 4648), as `Basic` credentials are written.
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// The certificates of a PEM bundle, plus the system roots unless they are replaced.
fn load_ca(path: &std::path::Path, replace_roots: bool) -> Result<Arc<[WrappedX509]>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_file {shown}: {e}"))?;
    let mut ders = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = item.map_err(|e| format!("ca_file {shown} is not PEM: {e}"))?;
        ders.push(der.to_vec());
    }
    if ders.is_empty() {
        return Err(format!("ca_file {shown} holds no CERTIFICATE block"));
    }
    let own = ders.len();
    if !replace_roots {
        ders.extend(
            rustls_native_certs::load_native_certs()
                .certs
                .into_iter()
                .map(|c| c.to_vec()),
        );
    }
    let mut certs = Vec::with_capacity(ders.len());
    for (i, der) in ders.into_iter().enumerate() {
        // pingora's X.509 wrapper panics on a certificate it cannot parse: check first, so a
        // bad bundle is an error and not a crash.
        if x509_parses(&der) {
            certs.push(WrappedX509::new(der, parse_x509));
        } else if i < own {
            return Err(format!(
                "ca_file {shown}: certificate {} cannot be parsed",
                i + 1
            ));
        }
    }
    Ok(certs.into())
}

fn x509_parses(der: &[u8]) -> bool {
    // rustls's own parser first, which reports instead of panicking; the unwind guard is only
    // for what it accepts and pingora's parser does not.
    let mut probe = pingora::tls::RootCertStore::empty();
    probe
        .add(pingora::tls::CertificateDer::from(der.to_vec()))
        .is_ok()
        && std::panic::catch_unwind(|| {
            let _ = parse_x509(&der);
        })
        .is_ok()
}

/// The proxy's CONNECT handshake, as pingora's connector runs it in place of a TCP connect:
/// TLS to the provider then runs inside the tunnel.
struct ConnectTunnel {
    /// `host:port` of the proxy, for messages.
    proxy: String,
    /// `host:port` asked for.
    target: String,
    authorization: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for ConnectTunnel {
    // Never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CONNECT {} via {}", self.target, self.proxy)
    }
}

fn failed(what: String) -> Box<pingora::Error> {
    pingora::Error::explain(pingora::ErrorType::ConnectProxyFailure, what)
}

#[async_trait]
impl L4Connect for ConnectTunnel {
    async fn connect(&self, addr: &PeerAddr) -> pingora::Result<L4Stream> {
        let Some(inet) = addr.as_inet() else {
            return Err(failed(format!("proxy {} has no IP address", self.proxy)));
        };
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(inet))
            .await
            .map_err(|_| {
                failed(format!(
                    "proxy {} did not accept a connection within {:?}",
                    self.proxy, self.timeout
                ))
            })?
            .map_err(|e| {
                failed(format!(
                    "proxy {} refused the connection ({})",
                    self.proxy,
                    e.kind()
                ))
            })?;
        tokio::time::timeout(self.timeout, self.handshake(tcp))
            .await
            .map_err(|_| {
                failed(format!(
                    "proxy {} did not answer CONNECT {} within {:?}",
                    self.proxy, self.target, self.timeout
                ))
            })?
            .map(L4Stream::from)
    }
}

impl ConnectTunnel {
    async fn handshake(&self, mut tcp: TcpStream) -> pingora::Result<TcpStream> {
        let request = connect_request(&self.target, self.authorization.as_deref());
        tcp.write_all(request.as_bytes()).await.map_err(|e| {
            failed(format!(
                "sending CONNECT to proxy {}: {}",
                self.proxy,
                e.kind()
            ))
        })?;
        let mut buf = Vec::with_capacity(512);
        loop {
            if buf.len() >= MAX_CONNECT_HEAD {
                return Err(failed(format!(
                    "proxy {} answered CONNECT with more than {MAX_CONNECT_HEAD} bytes of head",
                    self.proxy
                )));
            }
            let n = tcp.read_buf(&mut buf).await.map_err(|e| {
                failed(format!(
                    "reading proxy {}'s answer: {}",
                    self.proxy,
                    e.kind()
                ))
            })?;
            if n == 0 {
                return Err(failed(format!(
                    "proxy {} closed the connection instead of answering CONNECT {}",
                    self.proxy, self.target
                )));
            }
            match connect_answer(&buf) {
                ConnectAnswer::Partial => {}
                ConnectAnswer::Established => return Ok(tcp),
                ConnectAnswer::Refused(status) => {
                    return Err(failed(format!(
                        "proxy {} answered CONNECT {} with {status}",
                        self.proxy, self.target
                    )));
                }
                ConnectAnswer::Invalid(why) => {
                    return Err(failed(format!("proxy {}: {why}", self.proxy)));
                }
            }
        }
    }
}

/// The CONNECT request for `target` (`host:port`).
fn connect_request(target: &str, authorization: Option<&str>) -> String {
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
enum ConnectAnswer {
    Partial,
    Established,
    /// The status line's code and reason.
    Refused(String),
    Invalid(&'static str),
}

/// Reads a proxy's answer to CONNECT. Bytes after a 2xx head would be the provider speaking
/// before the client did, which neither TLS nor HTTP does: refused, as the tunnel would be
/// out of step.
fn connect_answer(buf: &[u8]) -> ConnectAnswer {
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

/// Each provider's built settings, rebuilt when its policy entry changes. Read without a
/// lock; a change swaps in a new map.
#[derive(Default)]
pub struct EgressCache {
    map: ArcSwap<HashMap<String, Arc<Entry>>>,
    // Serializes rebuilds; never held across an await.
    write: std::sync::Mutex<()>,
}

struct Entry {
    egress: Egress,
    base_url: BaseUrl,
    connect_timeout: Duration,
    built: Result<Arc<ProviderEgress>, String>,
}

impl EgressCache {
    /// Builds every provider's settings now (at start, and when a reload is checked), so the
    /// first request does not pay for reading CA bundles; returns what could not be built, as
    /// `provider: problem` lines.
    pub fn prepare(&self, config: &sluice_config::Config) -> Vec<String> {
        each_http_provider(config)
            .filter_map(|(name, egress, url, timeout)| self.get(name, egress, url, timeout).err())
            .collect()
    }

    /// The built settings for `provider`, building them on first use or after a change.
    pub fn get(
        &self,
        provider: &str,
        egress: &Egress,
        base_url: &BaseUrl,
        connect_timeout: Duration,
    ) -> Result<Arc<ProviderEgress>, String> {
        let current = |e: &Entry| {
            e.egress == *egress && e.base_url == *base_url && e.connect_timeout == connect_timeout
        };
        if let Some(e) = self.map.load().get(provider)
            && current(e)
        {
            return e.built.clone();
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let map = self.map.load_full();
        if let Some(e) = map.get(provider)
            && current(e)
        {
            return e.built.clone();
        }
        let built = ProviderEgress::build(provider, egress, base_url, connect_timeout)
            .map(Arc::new)
            .map_err(|e| format!("provider `{provider}`: {e}"));
        if let Err(e) = &built {
            tracing::error!(provider, error = %e, "Provider connection settings cannot be used.");
        }
        let mut next = HashMap::clone(&map);
        next.insert(
            provider.to_owned(),
            Arc::new(Entry {
                egress: egress.clone(),
                base_url: base_url.clone(),
                connect_timeout,
                built: built.clone(),
            }),
        );
        self.map.store(Arc::new(next));
        built
    }
}

/// Providers with egress settings: name, settings, base URL and connect timeout.
fn each_http_provider(
    config: &sluice_config::Config,
) -> impl Iterator<Item = (&str, &Egress, &BaseUrl, Duration)> {
    config.providers.values().filter_map(|p| {
        if p.egress.is_default() {
            return None;
        }
        match &p.kind {
            sluice_config::ProviderKind::OpenAi {
                base_url,
                connect_timeout,
                ..
            } => Some((p.name.as_str(), &p.egress, base_url, *connect_timeout)),
            kind => kind
                .access()
                .map(|a| (p.name.as_str(), &p.egress, &a.base_url, a.connect_timeout)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), *want, "{input}");
        }
    }

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
    fn a_bad_bundle_is_an_error_not_a_crash() {
        let dir = std::env::temp_dir().join(format!("sluice-egress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = load_ca(&empty, true).expect_err("no certificate");
        assert!(err.contains("no CERTIFICATE block"), "{err}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let err = load_ca(&garbage, true).expect_err("unparsable");
        assert!(err.contains("cannot be parsed"), "{err}");
        let missing = load_ca(&dir.join("missing.pem"), true).expect_err("missing");
        assert!(missing.contains("cannot read ca_file"), "{missing}");
    }
}
