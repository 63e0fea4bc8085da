//! `mock-llm`: a scriptable fake OpenAI provider over real HTTP/1.1, and optionally TLS
//! ([`MockLlmConfig::tls`]) and HTTP/2 ([`MockLlmConfig::http2`]: by ALPN over TLS, by prior
//! knowledge on a plain listener; [`Stats::connections`] then counts connections, not requests).
//!
//! Serves `POST {prefix}/chat/completions`, `{prefix}/completions`, `{prefix}/embeddings`,
//! `{prefix}/responses` (OpenAI's Responses API, see `responses.rs`) and `GET {prefix}/models`
//! (prefix `/v1` by default), plus `GET /_mock/stats` (a [`Stats`] JSON)
//! and `POST /_mock/reset` (zeroes them), and `/_mock/faults` to set and clear faults while it
//! runs ([`runtime`]). Every answer is synthesized by
//! `sluice_gateway::providers::mock`; streams are written one SSE event per chunk, paced by
//! [`MockTiming`], or all at once in one socket write with [`MockLlmConfig::burst`] (or the
//! `burst` fault). Faults are chosen per request; see [`fault`] for the grammar, and [`echo`]
//! for the bodies of the faults that quote the received API key back.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sluice_loadtest::{MockLlm, MockLlmConfig};
//! let llm = MockLlm::start(MockLlmConfig::default()).await?;
//! let base = llm.base_url(); // http://127.0.0.1:PORT/v1
//! // … point an upstream at `base`, use model "m@429" to get rate limited …
//! assert_eq!(llm.requests_for("m@429"), 0);
//! llm.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The same server also answers in Anthropic's, Gemini's (and Vertex AI's), Azure OpenAI's and
//! Bedrock's dialects, on their own paths (see `dialect.rs`).
//!
//! Counting happens before faults apply: every API request adds to `requests`, to
//! `by_model[<body model exactly as received>]`, `bytes_received` and `last_body_len`, whether
//! it is then answered, refused (401, counted in `unauthorized`) or failed on purpose.

mod body;
mod dialect;
pub mod echo;
pub mod fault;
mod responses;
pub mod runtime;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use runtime::RuntimeFaults;
pub use runtime::{Outage, RuntimeFault};
use serde::{Deserialize, Serialize};
pub use sluice_gateway::providers::mock::MockTiming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to start a [`MockLlm`].
#[derive(Debug, Clone)]
pub struct MockLlmConfig {
    /// Where to listen; port 0 picks a free one (see [`MockLlm::addr`]).
    pub addr: SocketAddr,
    /// Path prefix of the API routes, e.g. `/v1`; `""` serves them at the root.
    pub prefix: String,
    /// Pacing of every answer; the default has no delay at all.
    pub timing: MockTiming,
    /// When set, API requests whose `Authorization: Bearer …` differs get a 401.
    pub api_key: Option<String>,
    /// Every stream as the `burst` fault sends it: after the time its pacing adds up to, the
    /// head, every event and the end of the body in one socket write.
    pub burst: bool,
    /// Serve over TLS with this certificate (`https://` in [`MockLlm::base_url`]).
    pub tls: Option<MockTls>,
    /// Also speak HTTP/2: offered by ALPN over TLS, and taken with prior knowledge (h2c) on a
    /// plain listener. Every stream of a connection is one request, answered as on HTTP/1.1.
    pub http2: bool,
}

/// A certificate chain (leaf first) and its private key, DER, for [`MockLlmConfig::tls`].
#[derive(Clone)]
pub struct MockTls {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for MockTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MockTls {{ {} certificates }}", self.chain.len())
    }
}

impl MockTls {
    /// Reads a PEM certificate chain and key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &str, key: &str) -> Result<Self, String> {
        match pingora::tls::load_certs_and_key_files(cert, key) {
            Ok(Some((chain, key))) => Ok(Self {
                chain: chain.into_iter().map(|c| c.to_vec()).collect(),
                key: key.secret_der().to_vec(),
            }),
            Ok(None) => Err(format!("{cert} / {key}: no certificate or no private key")),
            Err(e) => Err(format!("{cert} / {key}: {e}")),
        }
    }

    fn acceptor(&self, http2: bool) -> std::io::Result<pingora::tls::TlsAcceptor> {
        pingora::tls::install_default_crypto_provider();
        let chain = self
            .chain
            .iter()
            .map(|c| pingora::tls::CertificateDer::from(c.clone()))
            .collect();
        let key = pingora::tls::PrivateKeyDer::try_from(self.key.clone())
            .map_err(|e| std::io::Error::other(format!("TLS key: {e}")))?;
        let mut config = pingora::tls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| std::io::Error::other(format!("TLS certificate: {e}")))?;
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(pingora::tls::TlsAcceptor::from(std::sync::Arc::new(config)))
    }
}

impl Default for MockLlmConfig {
    fn default() -> Self {
        MockLlmConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            prefix: "/v1".to_owned(),
            timing: MockTiming::default(),
            api_key: None,
            burst: false,
            tls: None,
            http2: false,
        }
    }
}

/// A snapshot of what a [`MockLlm`] has seen since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// API requests (chat, completions, embeddings, models), before auth and faults.
    pub requests: u64,
    /// Requests per body `model`, exactly as received (including any `@fault` suffix).
    pub by_model: BTreeMap<String, u64>,
    /// Sum of API request body lengths.
    pub bytes_received: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Body length of the latest API request.
    pub last_body_len: u64,
    /// Streams whose reader went away before the last event was written.
    pub streams_aborted: u64,
    /// Requests per path (`/v1/chat/completions`, `/v1/responses`, a dialect's path), so a
    /// test can tell which API was called.
    #[serde(default)]
    pub by_path: BTreeMap<String, u64>,
}

/// A running server. Dropping it (or [`shutdown`](Self::shutdown)) stops it and closes every
/// connection.
#[derive(Debug)]
pub struct MockLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping this tells the accept loop to stop.
    stop: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl MockLlm {
    /// Binds `cfg.addr` and serves in the background on the current tokio runtime.
    pub async fn start(cfg: MockLlmConfig) -> std::io::Result<MockLlm> {
        let listener = TcpListener::bind(cfg.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            prefix: normalize_prefix(&cfg.prefix),
            timing: cfg.timing,
            api_key: cfg.api_key,
            burst: cfg.burst,
            counters: Counters::default(),
            faults: RuntimeFaults::default(),
            tls: cfg
                .tls
                .as_ref()
                .map(|t| t.acceptor(cfg.http2).map(Acceptor))
                .transpose()?,
            http2: cfg.http2,
            sever: tokio::sync::Notify::new(),
        });
        let (stop, stopped) = watch::channel(());
        let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(MockLlm {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{prefix}`, e.g. `http://127.0.0.1:41234/v1` (`https://` with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.addr, self.shared.prefix)
    }

    /// Closes every open connection now, cutting whatever it carries (on HTTP/2, every stream
    /// of it), as a provider host that fails does; the listener keeps accepting.
    pub fn sever_connections(&self) {
        self.shared.sever.notify_waiters();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Requests to exactly `path` (`/v1/responses`), whatever their body.
    pub fn requests_to(&self, path: &str) -> u64 {
        self.shared
            .counters
            .by_path()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests whose body `model` was exactly `model` (suffix included).
    pub fn requests_for(&self, model: &str) -> u64 {
        self.shared
            .counters
            .by_model()
            .get(model)
            .copied()
            .unwrap_or(0)
    }

    /// Sets (replaces) the runtime fault of `fault.model`'s scope, like `POST /_mock/faults`.
    pub fn set_fault(&self, fault: RuntimeFault) -> Result<(), String> {
        self.shared.faults.set(fault)
    }

    /// Clears one model's runtime fault, or (`None`) every one, like `DELETE /_mock/faults`.
    pub fn clear_faults(&self, model: Option<&str>) {
        self.shared.faults.clear(model);
    }

    /// The runtime faults in force, like `GET /_mock/faults`.
    pub fn faults(&self) -> Vec<RuntimeFault> {
        self.shared.faults.list()
    }

    /// Zeroes the counters, like `POST /_mock/reset`.
    pub fn reset(&self) {
        self.shared.counters.reset();
    }

    /// Stops accepting, closes every connection (in-flight answers are cut) and waits for the
    /// listener to be released.
    pub async fn shutdown(self) {
        let MockLlm { stop, task, .. } = self;
        drop(stop);
        // The loop only ends by itself; a JoinError means it panicked, which is already reported.
        let _ = task.await;
    }
}

/// State shared by the handle and every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) prefix: String,
    pub(crate) timing: MockTiming,
    pub(crate) api_key: Option<String>,
    pub(crate) burst: bool,
    pub(crate) counters: Counters,
    pub(crate) faults: RuntimeFaults,
    pub(crate) tls: Option<Acceptor>,
    pub(crate) http2: bool,
    /// Wakes every connection to close it ([`MockLlm::sever_connections`]).
    pub(crate) sever: tokio::sync::Notify,
}

/// The TLS side of a listener.
#[derive(Clone)]
pub(crate) struct Acceptor(pub(crate) pingora::tls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    by_model: Mutex<BTreeMap<String, u64>>,
    by_path: Mutex<BTreeMap<String, u64>>,
    bytes_received: AtomicU64,
    unauthorized: AtomicU64,
    connections: AtomicU64,
    last_body_len: AtomicU64,
    pub(crate) streams_aborted: Arc<AtomicU64>,
}

impl Counters {
    pub(crate) fn request(&self, model: Option<&str>, body_len: usize) {
        let len = body_len as u64;
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_received.fetch_add(len, Ordering::Relaxed);
        self.last_body_len.store(len, Ordering::Relaxed);
        if let Some(model) = model {
            let mut by_model = self.by_model();
            match by_model.get_mut(model) {
                Some(n) => *n += 1,
                None => {
                    by_model.insert(model.to_owned(), 1);
                }
            }
        }
    }

    /// One request to `path`, counted before anything else looks at it.
    pub(crate) fn path(&self, path: &str) {
        let mut by_path = self.by_path();
        match by_path.get_mut(path) {
            Some(n) => *n += 1,
            None => {
                by_path.insert(path.to_owned(), 1);
            }
        }
    }

    pub(crate) fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            by_model: self.by_model().clone(),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            last_body_len: self.last_body_len.load(Ordering::Relaxed),
            streams_aborted: self.streams_aborted.load(Ordering::Relaxed),
            by_path: self.by_path().clone(),
        }
    }

    pub(crate) fn reset(&self) {
        for c in [
            &self.requests,
            &self.bytes_received,
            &self.unauthorized,
            &self.connections,
            &self.last_body_len,
            &*self.streams_aborted,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.by_model().clear();
        self.by_path().clear();
    }

    /// The map survives a panic elsewhere: counters are plain numbers, never half-updated.
    pub(crate) fn by_model(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.by_model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn by_path(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.by_path.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `v1/` → `/v1`, `/` → ``.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}
