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
use bytes::{BufMut, Bytes, BytesMut};
use pingora::connectors::L4Connect;
use pingora::protocols::l4::ext::TcpKeepalive;
use pingora::tls::CertificateDer;
use pingora::upstreams::peer::PeerOptions;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_config::{BaseUrl, Egress, HttpVersion, ProxyConfig};

use super::dial::{Alpn, Dialer, ProxyHop, TlsHop, client_config};
use super::h2up::H2Pool;
use crate::reload::{Fingerprint, fingerprint};

/// How long an idle pooled connection to a provider is kept unless `idle_timeout` says.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(90);

/// Everything built from one provider's egress settings.
pub struct ProviderEgress {
    /// The provider's own pool (`pool_size`); `None` uses the shared one.
    pub connector: Option<Arc<super::pool::Connector>>,
    /// Where TCP goes: the proxy, or the provider itself.
    pub dial_host: String,
    pub dial_port: u16,
    /// An http provider through a proxy: the request line carries the whole URL.
    pub absolute_form: bool,
    /// `\r\nname: value` for each extra header (and `proxy-authorization` for absolute form).
    pub extra_head: Bytes,
    /// Names the route taken, for log lines: never credentials.
    pub route: String,
    /// HTTP/2 connections (`http_version: h2` or `auto`).
    pub h2: Option<H2Pool>,
    sni: Option<String>,
    ca_file: Option<String>,
    /// Proxy hops and TLS done by Sluice (see `dial`), pingora's custom L4 connect.
    dialer: Option<Arc<Dialer>>,
    /// TLS to the provider is the dialer's: pingora sees a plain peer.
    own_tls: bool,
    idle_timeout: Duration,
    tcp_keepalive: Option<Duration>,
    group_key: u64,
}

fn keepalive(idle: Duration) -> TcpKeepalive {
    TcpKeepalive {
        idle,
        interval: Duration::from_secs(5),
        count: 3,
        #[cfg(target_os = "linux")]
        user_timeout: Duration::ZERO,
    }
}

impl ProviderEgress {
    /// Builds a provider's connection settings; the error names what could not be used.
    pub fn build(
        provider: &str,
        egress: &Egress,
        base_url: &BaseUrl,
        connect_timeout: Duration,
        metrics: &EgressMetrics,
    ) -> Result<Self, String> {
        let bundle = match &egress.ca_file {
            Some(path) => load_ca(path)?,
            None => Vec::new(),
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
        let (dial_host, dial_port) = match proxy {
            Some(p) => (p.host.clone(), p.port),
            None => (base_url.host.clone(), base_url.port),
        };
        let route = match proxy {
            Some(p) => format!(
                "via proxy {}{} (from {})",
                if p.tls { "https://" } else { "" },
                p.authority(),
                p.source
            ),
            None => "direct".to_owned(),
        };
        let alpn = match egress.http_version {
            HttpVersion::Http1 => Alpn::Http1,
            HttpVersion::H2 => Alpn::H2,
            HttpVersion::Auto => Alpn::Either,
        };
        let own_tls = base_url.tls
            && (egress.ca_file.is_some()
                || proxy.is_some_and(|p| p.tls)
                || egress.http_version != HttpVersion::Http1);
        let bundle_or_roots = |alpn| {
            client_config(&bundle, egress.ca_replaces_roots, alpn).map_err(|e| {
                match &egress.ca_file {
                    Some(f) => format!("ca_file {}: {e}", f.display()),
                    None => e,
                }
            })
        };
        let sni = egress
            .tls_server_name
            .clone()
            .unwrap_or_else(|| base_url.host.clone());
        let tls = if own_tls {
            Some(TlsHop::new(bundle_or_roots(alpn)?, &sni)?)
        } else {
            None
        };
        let proxy_hop = match proxy {
            Some(p) => Some(ProxyHop {
                authority: p.authority(),
                tls: if p.tls {
                    Some(TlsHop::new(bundle_or_roots(Alpn::Http1)?, &p.host)?)
                } else {
                    None
                },
                connect: base_url
                    .tls
                    .then(|| sluice_config::egress_authority(&base_url.host, base_url.port)),
                authorization: auth.filter(|_| base_url.tls),
            }),
            None => None,
        };
        let h2_wanted = egress.http_version != HttpVersion::Http1;
        let dialer = (own_tls || proxy_hop.is_some() || h2_wanted).then(|| {
            Arc::new(Dialer {
                proxy: proxy_hop,
                tls,
                timeout: connect_timeout,
                keepalive: egress.tcp_keepalive.map(keepalive),
            })
        });
        let connector = egress
            .pool_size
            .map(|size| Arc::new(super::pool::Connector::new(size)));
        let mut key = std::collections::hash_map::DefaultHasher::new();
        provider.hash(&mut key);
        // Each build is a new pool group: settings are built again only when they changed
        // (another CA, proxy or server name), and connections made under the old ones must not
        // be reused, which pingora's peer hash alone (address, SNI) would allow.
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        BUILDS
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .hash(&mut key);
        let h2 = h2_wanted.then(|| {
            H2Pool::new(
                egress.http_version == HttpVersion::Auto,
                metrics.h2_gauges(provider),
                egress.idle_timeout.unwrap_or(DEFAULT_IDLE),
            )
        });
        Ok(Self {
            connector,
            dial_host,
            dial_port,
            absolute_form,
            extra_head: extra.freeze(),
            route,
            h2,
            sni: egress.tls_server_name.clone(),
            ca_file: egress.ca_file.as_ref().map(|p| p.display().to_string()),
            dialer,
            own_tls,
            idle_timeout: egress.idle_timeout.unwrap_or(DEFAULT_IDLE),
            tcp_keepalive: egress.tcp_keepalive,
            group_key: key.finish(),
        })
    }

    /// The name TLS asks for and checks, when it is not the base URL's host.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// TLS to the provider is done by the dialer: the peer pingora sees is plain.
    pub fn own_tls(&self) -> bool {
        self.own_tls
    }

    /// The dialer, for connections made outside pingora's pool (HTTP/2).
    pub fn dialer(&self) -> Option<&Arc<Dialer>> {
        self.dialer.as_ref()
    }

    /// Applies this provider's settings to a peer's options.
    pub fn apply(&self, options: &mut PeerOptions) {
        options.idle_timeout = Some(self.idle_timeout);
        if let Some(idle) = self.tcp_keepalive
            && self.dialer.is_none()
        {
            options.tcp_keepalive = Some(keepalive(idle));
        }
        if let Some(d) = &self.dialer {
            options.custom_l4 = Some(Arc::clone(d) as Arc<dyn L4Connect + Send + Sync>);
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
        let proxy = matches!(e.etype(), ErrorType::ConnectProxyFailure);
        let tls = !proxy
            && (matches!(
                e.etype(),
                ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
            ) || detail.contains("certificate"));
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

/// The certificates of a PEM bundle, each checked to be usable as a trust anchor.
fn load_ca(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_file {shown}: {e}"))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = item.map_err(|e| format!("ca_file {shown} is not PEM: {e}"))?;
        certs.push(der);
    }
    if certs.is_empty() {
        return Err(format!("ca_file {shown} holds no CERTIFICATE block"));
    }
    for (i, der) in certs.iter().enumerate() {
        let mut probe = pingora::tls::RootCertStore::empty();
        if probe.add(der.clone()).is_err() {
            return Err(format!(
                "ca_file {shown}: certificate {} cannot be parsed",
                i + 1
            ));
        }
    }
    Ok(certs)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CaReloadLabels {
    provider: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

/// Egress metrics: CA bundles read again after a change, HTTP/2 connections, idle HTTP/1.1
/// connections.
#[derive(Clone, Default)]
pub struct EgressMetrics {
    ca_reloads: Family<CaReloadLabels, Counter>,
    h2_open: Family<ProviderLabels, Gauge>,
    h2_opened: Family<ProviderLabels, Counter>,
    h1_idle: Family<super::pool::PoolLabels, Gauge>,
}

/// One provider's HTTP/2 connection gauges.
#[derive(Clone, Default)]
pub struct H2Gauges {
    pub open: Gauge,
    pub opened: Counter,
}

impl EgressMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "sluice_egress_ca_reloads",
            "A provider's ca_file read again after it changed on disk: applied, or rejected \
             (the previous trust store stays)",
            m.ca_reloads.clone(),
        );
        registry.register(
            "sluice_upstream_h2_connections",
            "HTTP/2 connections open to each provider (http_version h2 or auto)",
            m.h2_open.clone(),
        );
        registry.register(
            "sluice_upstream_h2_connections_opened",
            "HTTP/2 connections opened to each provider",
            m.h2_opened.clone(),
        );
        registry.register(
            "sluice_upstream_idle_connections",
            "Idle HTTP/1.1 provider connections kept for reuse, per pool: `shared` \
             (server.upstream_pool_size) or a provider with a pool_size of its own; set once a \
             second",
            m.h1_idle.clone(),
        );
        m
    }

    fn h2_gauges(&self, provider: &str) -> H2Gauges {
        let labels = ProviderLabels {
            provider: provider.to_owned(),
        };
        H2Gauges {
            open: self.h2_open.get_or_create(&labels).clone(),
            opened: self.h2_opened.get_or_create(&labels).clone(),
        }
    }

    fn ca_reload(&self, provider: &str, result: &'static str) {
        self.ca_reloads
            .get_or_create(&CaReloadLabels {
                provider: provider.to_owned(),
                result,
            })
            .inc();
    }
}

/// Each provider's built settings, rebuilt when its policy entry changes or its `ca_file`
/// changes on disk. Read without a lock; a change swaps in a new map.
#[derive(Default)]
pub struct EgressCache {
    map: ArcSwap<HashMap<String, Arc<Entry>>>,
    // Serializes rebuilds; never held across an await.
    write: std::sync::Mutex<()>,
    metrics: EgressMetrics,
}

struct Entry {
    egress: Egress,
    base_url: BaseUrl,
    connect_timeout: Duration,
    built: Result<Arc<ProviderEgress>, String>,
    /// The `ca_file` as it was when last read (built or rejected).
    ca_seen: Option<Fingerprint>,
}

/// How reading a changed `ca_file` again ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaReload {
    Applied { provider: String },
    Rejected { provider: String, error: String },
}

impl EgressCache {
    pub fn new(metrics: EgressMetrics) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

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
        let ca_seen = egress.ca_file.as_deref().and_then(fingerprint);
        let built =
            ProviderEgress::build(provider, egress, base_url, connect_timeout, &self.metrics)
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
                ca_seen,
            }),
        );
        self.map.store(Arc::new(next));
        built
    }

    /// Reads again every `ca_file` that changed on disk since it was last read (`force`: every
    /// one). A bundle that loads replaces the provider's build (new connections trust it; the
    /// old build's pooled connections are not reused); one that does not keeps the previous
    /// trust, and is logged and counted. Blocking file reads: call from a blocking task.
    pub fn refresh_ca(&self, force: bool) -> Vec<CaReload> {
        let changed: Vec<(String, Option<Fingerprint>)> = self
            .map
            .load()
            .iter()
            .filter_map(|(name, e)| {
                let path = e.egress.ca_file.as_deref()?;
                let now = fingerprint(path);
                // A file that vanished (mid-swap, or deleted) is not a change to act on.
                (now.is_some() && (force || now != e.ca_seen)).then(|| (name.clone(), now))
            })
            .collect();
        if changed.is_empty() {
            return Vec::new();
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::clone(&self.map.load_full());
        let mut results = Vec::new();
        for (provider, now) in changed {
            let Some(entry) = next.get(&provider).cloned() else {
                continue;
            };
            let rebuilt = ProviderEgress::build(
                &provider,
                &entry.egress,
                &entry.base_url,
                entry.connect_timeout,
                &self.metrics,
            );
            let (built, result) = match rebuilt {
                Ok(b) => {
                    tracing::info!(provider = %provider, "Provider ca_file changed on disk; new connections trust the bundle as it is now.");
                    self.metrics.ca_reload(&provider, "applied");
                    (
                        Ok(Arc::new(b)),
                        CaReload::Applied {
                            provider: provider.clone(),
                        },
                    )
                }
                Err(error) => {
                    tracing::warn!(provider = %provider, error = %error, "Provider ca_file changed on disk but cannot be used; the previous trust store stays.");
                    self.metrics.ca_reload(&provider, "rejected");
                    (
                        entry.built.clone(),
                        CaReload::Rejected {
                            provider: provider.clone(),
                            error,
                        },
                    )
                }
            };
            next.insert(
                provider,
                Arc::new(Entry {
                    egress: entry.egress.clone(),
                    base_url: entry.base_url.clone(),
                    connect_timeout: entry.connect_timeout,
                    built,
                    ca_seen: now,
                }),
            );
            results.push(result);
        }
        self.map.store(Arc::new(next));
        results
    }

    /// The providers' own HTTP/1 pools (`pool_size`) by provider, for the idle sweep.
    pub fn pools(&self) -> Vec<(String, Arc<super::pool::Connector>)> {
        self.map
            .load()
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.built.as_ref().ok()?.connector.clone()?)))
            .collect()
    }

    /// The idle-connection gauges the sweep sets.
    pub fn idle_gauges(&self) -> Family<super::pool::PoolLabels, Gauge> {
        self.metrics.h1_idle.clone()
    }

    /// Each provider's HTTP version and open HTTP/2 connections, for the admin view.
    pub fn view(&self) -> Vec<EgressView> {
        let mut out: Vec<EgressView> = self
            .map
            .load()
            .iter()
            .map(|(name, e)| EgressView {
                provider: name.clone(),
                http_version: e.egress.http_version.as_str(),
                h2_connections: e
                    .built
                    .as_ref()
                    .ok()
                    .and_then(|b| b.h2.as_ref())
                    .map(H2Pool::open_connections),
                h1_fallback: e
                    .built
                    .as_ref()
                    .ok()
                    .and_then(|b| b.h2.as_ref())
                    .is_some_and(H2Pool::fell_back_to_h1),
            })
            .collect();
        out.sort_by(|a, b| a.provider.cmp(&b.provider));
        out
    }
}

/// What `/admin/targets` shows of a provider's connections.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EgressView {
    pub provider: String,
    pub http_version: &'static str,
    /// Open HTTP/2 connections (`None` for HTTP/1.1).
    pub h2_connections: Option<usize>,
    /// `auto`, and the provider chose HTTP/1.1.
    pub h1_fallback: bool,
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
    fn a_bad_bundle_is_an_error_not_a_crash() {
        let dir = std::env::temp_dir().join(format!("sluice-egress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = load_ca(&empty).expect_err("no certificate");
        assert!(err.contains("no CERTIFICATE block"), "{err}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let err = load_ca(&garbage).expect_err("unparsable");
        assert!(err.contains("cannot be parsed"), "{err}");
        let missing = load_ca(&dir.join("missing.pem")).expect_err("missing");
        assert!(missing.contains("cannot read ca_file"), "{missing}");
    }
}
