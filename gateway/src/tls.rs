//! TLS for the listeners: the certificate each one serves, reloaded when its files change,
//! and the client-certificate check of a listener with `client_ca`.
//!
//! A listener's rustls config asks [`CertStore`] for its certificate on every handshake, so
//! a reload is one atomic swap: handshakes in progress finish with the certificate they got,
//! new ones get the new one, and no listener is rebuilt. The policy watcher
//! (`reload::PolicyWatch`) looks at the files on the same tick as the policy file, and on
//! `SIGHUP`; a certificate or key that does not load (unreadable, not PEM, a key that does
//! not match the certificate) is logged and counted, and the previous pair keeps serving.
//!
//! The client CA is read once at start: changing who may connect is a restart, like the
//! listener's address.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    CertificateDer, ClientCertVerifier, ClientHello, CryptoProvider, ResolvesServerCert,
    RootCertStore, WebPkiClientVerifier,
};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sluice_config::TlsConfig;

use crate::reload::{Fingerprint, fingerprint};

/// Which listener a certificate belongs to. A closed set, so it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Listener {
    Api,
    Admin,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Admin => "admin",
        }
    }
}

impl EncodeLabelValue for Listener {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// How loading a certificate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertResult {
    /// Loaded and now served.
    Applied,
    /// Did not load; the previous certificate keeps serving.
    Rejected,
}

impl EncodeLabelValue for CertResult {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> std::fmt::Result {
        let s = match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    listener: Listener,
    result: CertResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: Listener,
}

/// The TLS metrics: certificate loads by result, and when each served certificate expires.
#[derive(Debug, Clone)]
pub struct TlsMetrics {
    reloads: Family<ReloadLabels, Counter>,
    expiry: Family<ListenerLabels, Gauge>,
}

impl TlsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "sluice_tls_certificate_reloads",
            "Certificate loads after a change of its files: applied, or rejected (the previous \
             certificate keeps serving)",
            reloads.clone(),
        );
        let expiry = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "sluice_tls_certificate_expiry_timestamp",
            "When the certificate each listener serves expires (notAfter), in Unix time",
            expiry.clone(),
        );
        Self { reloads, expiry }
    }

    fn record(&self, listener: Listener, result: CertResult) {
        self.reloads
            .get_or_create(&ReloadLabels { listener, result })
            .inc();
    }
}

/// A certificate and key as loaded, with what the admin view shows of them.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    subject: String,
    not_after: i64,
}

/// Why a certificate could not be loaded: names the file, never its content.
pub type CertError = String;

/// The certificate one listener serves; rustls asks it on every handshake.
#[derive(Debug)]
pub struct CertStore {
    listener: Listener,
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<Loaded>,
    /// The files as last looked at, to notice a change.
    seen: Mutex<(Option<Fingerprint>, Option<Fingerprint>)>,
    /// When the serving certificate was loaded (Unix seconds).
    loaded_at: AtomicU64,
    /// The last load that failed, if the last attempt failed.
    last_error: Mutex<Option<String>>,
    metrics: TlsMetrics,
}

/// What `/admin/tls` shows of one listener's certificate.
#[derive(Debug, Serialize)]
pub struct CertView {
    pub listener: Listener,
    pub cert: String,
    pub key: String,
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds.
    pub loaded_at: u64,
    /// Why the files on disk are not what is served, when the last load failed.
    pub last_error: Option<String>,
}

impl CertStore {
    /// Loads the pair at start; a failure here stops the start.
    pub fn load(
        listener: Listener,
        cfg: &TlsConfig,
        metrics: TlsMetrics,
    ) -> Result<Arc<Self>, CertError> {
        let seen = (fingerprint(&cfg.cert), fingerprint(&cfg.key));
        let loaded = load_pair(&cfg.cert, &cfg.key)?;
        metrics
            .expiry
            .get_or_create(&ListenerLabels { listener })
            .set(loaded.not_after);
        Ok(Arc::new(Self {
            listener,
            cert: cfg.cert.clone(),
            key: cfg.key.clone(),
            current: ArcSwap::from_pointee(loaded),
            seen: Mutex::new(seen),
            loaded_at: AtomicU64::new(unix_now()),
            last_error: Mutex::new(None),
            metrics,
        }))
    }

    /// Loads the files again if either changed since last looked at (`force`: even if not).
    /// Blocking file reads: call from a blocking task.
    pub fn reload_if_changed(&self, force: bool) -> Option<CertResult> {
        let now = (fingerprint(&self.cert), fingerprint(&self.key));
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            // A file that vanished (mid-swap, or deleted) is not a change to act on.
            if now.0.is_none() || now.1.is_none() || (*seen == now && !force) {
                return None;
            }
            *seen = now;
        }
        let result = match load_pair(&self.cert, &self.key) {
            Ok(loaded) => {
                tracing::info!(
                    listener = ?self.listener,
                    subject = %loaded.subject,
                    not_after = loaded.not_after,
                    "TLS certificate reloaded."
                );
                self.metrics
                    .expiry
                    .get_or_create(&ListenerLabels {
                        listener: self.listener,
                    })
                    .set(loaded.not_after);
                self.current.store(Arc::new(loaded));
                self.loaded_at.store(unix_now(), Ordering::Relaxed);
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                CertResult::Applied
            }
            Err(e) => {
                tracing::warn!(listener = ?self.listener, error = %e, "TLS certificate reload rejected; the previous certificate keeps serving.");
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e);
                CertResult::Rejected
            }
        };
        self.metrics.record(self.listener, result);
        Some(result)
    }

    pub fn view(&self) -> CertView {
        let current = self.current.load();
        CertView {
            listener: self.listener,
            cert: self.cert.display().to_string(),
            key: self.key.display().to_string(),
            subject: current.subject.clone(),
            not_after: current.not_after,
            loaded_at: self.loaded_at.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().key))
    }
}

/// The TLS settings of a listener serving `store`'s certificate with `alpn`, requiring a
/// client certificate from `client_ca` when it is set.
pub fn settings(
    store: &Arc<CertStore>,
    cfg: &TlsConfig,
    alpn: ALPN,
) -> Result<TlsSettings, CertError> {
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| format!("{}: {e}", cfg.cert.display()))?;
    settings.set_cert_resolver(Arc::clone(store) as Arc<dyn ResolvesServerCert>);
    settings.set_alpn(alpn);
    if let Some(ca) = &cfg.client_ca {
        settings.set_client_cert_verifier(client_verifier(ca)?);
    }
    Ok(settings)
}

/// Requires a client certificate that chains to one in `ca`: without one, the handshake
/// fails before any HTTP is read.
fn client_verifier(ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
    let path = ca.display().to_string();
    let pem = std::fs::read(ca).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let mut roots = RootCertStore::empty();
    for der in certificates(&pem) {
        roots
            .add(der)
            .map_err(|e| format!("{path}: no usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{path}: no PEM certificate found"));
    }
    ensure_provider();
    WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("{path}: no usable CA certificate: {e}"))
}

/// pingora installs rustls's `ring` provider when a listener is built; the certificates are
/// loaded before that, so make sure it is there (installing twice is a no-op).
fn ensure_provider() {
    pingora::tls::install_default_crypto_provider();
}

fn load_pair(cert: &Path, key: &Path) -> Result<Loaded, CertError> {
    let cert_path = cert.display().to_string();
    let key_path = key.display().to_string();
    let read =
        |p: &Path, path: &String| std::fs::read(p).map_err(|e| format!("{path}: cannot read: {e}"));
    let chain: Vec<CertificateDer<'static>> = certificates(&read(cert, &cert_path)?);
    let Some(leaf) = chain.first() else {
        return Err(format!("{cert_path}: no PEM certificate found"));
    };
    let (subject, not_after) =
        describe(leaf).ok_or_else(|| format!("{cert_path}: not a valid X.509 certificate"))?;
    let key_pem = read(key, &key_path)?;
    let private = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| format!("{key_path}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)"))?;
    ensure_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| format!("{key_path}: no TLS crypto provider"))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| format!("{key_path}: unusable private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    if certified.keys_match().is_err() {
        return Err(format!(
            "{cert_path}: the certificate does not match the key in {key_path}"
        ));
    }
    Ok(Loaded {
        key: Arc::new(certified),
        subject,
        not_after,
    })
}

fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut &*pem)
        .filter_map(Result::ok)
        .collect()
}

/// The subject and notAfter (Unix seconds) of a DER certificate, if it parses.
fn describe(der: &CertificateDer<'_>) -> Option<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some((
        cert.subject().to_string(),
        cert.validity().not_after.timestamp(),
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }

    #[test]
    fn a_pair_loads_and_each_broken_one_says_which_file_and_why() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("write");
        let missing = dir.path().join("missing.pem");

        let loaded = load_pair(&cert, &key).expect("a good pair loads");
        assert!(loaded.not_after > 0);
        let cases: [(&Path, &Path, &str); 4] = [
            (&cert, &other_key, "does not match the key"),
            (&garbage, &key, "no PEM certificate"),
            (&cert, &garbage, "no PEM private key"),
            (&missing, &key, "cannot read"),
        ];
        for (c, k, why) in cases {
            let err = load_pair(c, k).expect_err("refused");
            assert!(err.contains(why), "{err}");
            assert!(
                err.contains(&c.display().to_string()) || err.contains(&k.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = pair(dir.path(), "a");
        let cfg = TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        };
        let metrics = TlsMetrics::register(&mut Registry::default());
        let store = CertStore::load(Listener::Api, &cfg, metrics).expect("loads");
        assert_eq!(store.reload_if_changed(false), None, "nothing changed");
        let first = Arc::clone(&store.current.load().key);

        let (c2, k2) = pair(dir.path(), "b");
        std::fs::rename(&c2, &cert).expect("swap cert");
        std::fs::rename(&k2, &key).expect("swap key");
        assert_eq!(store.reload_if_changed(false), Some(CertResult::Applied));
        let second = Arc::clone(&store.current.load().key);
        assert_ne!(first.cert, second.cert);

        std::fs::write(&cert, "broken").expect("break");
        assert_eq!(store.reload_if_changed(false), Some(CertResult::Rejected));
        assert_eq!(store.current.load().key.cert, second.cert);
        assert!(store.view().last_error.is_some());
    }
}
