//! Live policy: reloading the policy file while traffic flows.
//!
//! Three triggers lead to the one [`Reloader::reload`]: the [`PolicyWatch`] service noticing
//! the file changed (it polls the path's metadata, following symlinks, so an editor's
//! write-then-rename and a Kubernetes ConfigMap's `..data` symlink swap both show as a new
//! file), `SIGHUP`, and `POST /admin/reload`. A reload validates the whole file and compiles it
//! against the live [`sluice_policy::RuntimeState`] before the atomic swap; if anything fails,
//! or a setting that is read only at start changed, the old policy keeps serving and the
//! reason is logged as `sluice check` prints it. Requests in flight finish on the snapshot
//! they took.
//!
//! The listeners' certificate files (`server.tls`, `server.admin_tls`) are looked at on the
//! same tick and on `SIGHUP`; see `tls`.
//!
//! Polling rather than inotify: it sees every way a file can be replaced (rename, symlink
//! swap, in-place write, a network filesystem) without event storms, and its cost — one
//! `stat` per interval — is nothing next to the request path.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sluice_config::PolicyDiff;
use sluice_observability::metrics::ReloadResult;
use sluice_observability::service::{Service, Shutdown};
use sluice_policy::Policy;

use crate::state::AppState;
use crate::tls::CertStore;

/// What started a reload.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// The watcher saw the file change.
    Watch,
    /// `SIGHUP`.
    Signal,
    /// `POST /admin/reload` by the holder of this admin token.
    Admin(Arc<str>),
}

impl Trigger {
    fn as_str(&self) -> &str {
        match self {
            Self::Watch => "file change",
            Self::Signal => "SIGHUP",
            Self::Admin(_) => "admin API",
        }
    }
}

/// How one reload went; the body of `POST /admin/reload`.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub result: ReloadResult,
    /// The generation serving after this reload.
    pub generation: u64,
    /// What changed, by name (for an applied or rejected reload).
    pub changes: String,
    /// Why it was rejected: each problem as `sluice check` prints it.
    pub problems: Vec<String>,
}

/// Reloads the policy file into the serving gateway; one reload at a time.
pub struct Reloader {
    path: Option<PathBuf>,
    state: Arc<AppState>,
    lock: Mutex<()>,
    /// The listeners' certificates, looked at on the same triggers as the policy file.
    certs: Vec<Arc<CertStore>>,
}

impl Reloader {
    /// `path` is the policy file served; `None` for the embedded quickstart, which cannot
    /// change.
    pub fn new(path: Option<PathBuf>, state: Arc<AppState>) -> Self {
        Self {
            path,
            state,
            lock: Mutex::new(()),
            certs: Vec::new(),
        }
    }

    /// Also reloads these certificates when their files change (and on `SIGHUP`).
    #[must_use]
    pub fn with_certs(mut self, certs: Vec<Arc<CertStore>>) -> Self {
        self.certs = certs;
        self
    }

    pub fn certs(&self) -> &[Arc<CertStore>] {
        &self.certs
    }

    /// Loads each certificate whose files changed (`force`: every one). Blocking.
    fn reload_certs(&self, force: bool) {
        for c in &self.certs {
            c.reload_if_changed(force);
        }
    }

    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// Loads, checks, compiles and swaps in the policy file.
    pub fn reload(&self, trigger: &Trigger) -> ReloadReport {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // A reload also reads again a provider's ca_file that changed on disk.
        self.state.egress.refresh_ca(false);
        let current = self.state.policy.snapshot();
        let report = match self.try_reload(&current) {
            Ok((policy, diff)) => {
                let generation = self.state.policy.replace(policy);
                // Only now may live state of removed rules go: nothing new can reach it.
                self.state.runtime.retain(&self.state.policy.snapshot());
                let changes = diff.summary();
                match trigger {
                    Trigger::Admin(by) => {
                        tracing::info!(generation, by = %by, trigger = trigger.as_str(), changes = %changes, "Policy reloaded.")
                    }
                    _ => {
                        tracing::info!(generation, trigger = trigger.as_str(), changes = %changes, "Policy reloaded.")
                    }
                }
                ReloadReport {
                    result: ReloadResult::Applied,
                    generation,
                    changes,
                    problems: Vec::new(),
                }
            }
            Err(Rejected::Unchanged) => {
                tracing::debug!(
                    trigger = trigger.as_str(),
                    "Policy file unchanged; nothing to reload."
                );
                ReloadReport {
                    result: ReloadResult::Unchanged,
                    generation: current.generation,
                    changes: "no changes".into(),
                    problems: Vec::new(),
                }
            }
            Err(Rejected::Problems { changes, problems }) => {
                tracing::warn!(
                    generation = current.generation,
                    trigger = trigger.as_str(),
                    problems = problems.len(),
                    "Policy reload rejected; the current policy keeps serving."
                );
                for p in &problems {
                    tracing::warn!("  {p}");
                }
                ReloadReport {
                    result: ReloadResult::Rejected,
                    generation: current.generation,
                    changes,
                    problems,
                }
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.state
            .metrics
            .record_reload(report.result, report.generation, now);
        report
    }

    fn try_reload(&self, current: &Policy) -> Result<(Policy, PolicyDiff), Rejected> {
        let Some(path) = &self.path else {
            return Err(Rejected::problem(
                "Sluice is serving its embedded quickstart policy; start it with --config FILE to reload from a file",
            ));
        };
        let loaded = sluice_config::load_file(path).map_err(|e| Rejected::Problems {
            changes: String::new(),
            problems: problems_of(&e),
        })?;
        for w in &loaded.warnings {
            tracing::warn!(warning = %w, "Policy warning.");
        }
        let diff = PolicyDiff::between(&current.config, &loaded.config);
        if diff.is_empty() {
            return Err(Rejected::Unchanged);
        }
        if !diff.restart_only.is_empty() {
            let problems = diff
                .restart_only
                .iter()
                .map(|s| {
                    format!(
                        "{}: {s}: changed, but is read only at start; restart Sluice to change it",
                        path.display()
                    )
                })
                .collect();
            return Err(Rejected::Problems {
                changes: diff.summary(),
                problems,
            });
        }
        // Built and kept now, off the request path: the first request to a changed provider
        // then finds its settings ready instead of reading CA bundles itself.
        let unusable = self.state.egress.prepare(&loaded.config);
        if !unusable.is_empty() {
            return Err(Rejected::Problems {
                changes: diff.summary(),
                problems: unusable
                    .into_iter()
                    .map(|p| format!("{}: {p}", path.display()))
                    .collect(),
            });
        }
        let policy = Policy::compile(&loaded.config, &self.state.runtime).map_err(|e| {
            Rejected::Problems {
                changes: diff.summary(),
                problems: vec![format!("{}: {e}", path.display())],
            }
        })?;
        Ok((policy, diff))
    }
}

enum Rejected {
    Unchanged,
    Problems {
        changes: String,
        problems: Vec<String>,
    },
}

impl Rejected {
    fn problem(p: &str) -> Self {
        Self::Problems {
            changes: String::new(),
            problems: vec![p.to_owned()],
        }
    }
}

/// Each problem of a policy file as one line, as `sluice check` prints them.
pub fn problems_of(e: &sluice_config::Error) -> Vec<String> {
    match e {
        sluice_config::Error::Invalid { diagnostics, .. } => {
            diagnostics.iter().map(ToString::to_string).collect()
        }
        other => vec![other.to_string()],
    }
}

/// What identifies one version of the file on disk: where the path leads (after symlinks),
/// and that file's inode, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    target: Option<PathBuf>,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

pub fn fingerprint(path: &std::path::Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        target: std::fs::canonicalize(path).ok(),
        inode: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Watches the policy file and `SIGHUP`; reloads on either.
pub struct PolicyWatch {
    reloader: Arc<Reloader>,
    /// The file as it was just before the serving policy was read from it, not when the
    /// task first runs: on a busy machine that can be later than an edit, which would then
    /// never be seen.
    loaded: Option<Fingerprint>,
}

impl PolicyWatch {
    pub fn new(reloader: Arc<Reloader>, loaded: Option<Fingerprint>) -> Self {
        Self { reloader, loaded }
    }
}

impl Service for PolicyWatch {
    fn name(&self) -> &'static str {
        "policy-watch"
    }

    fn run(self: Box<Self>, mut shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let Self {
                reloader,
                loaded: mut last,
            } = *self;
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot listen for SIGHUP; reload with the file watcher or POST /admin/reload.");
                    None
                }
            };
            loop {
                let reload = reloader.state.policy.snapshot().server.reload;
                tokio::select! {
                    () = shutdown.wait() => break,
                    Some(()) = async {
                        match hup.as_mut() {
                            Some(s) => s.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        // Taken before the file is read: an edit during the reload is seen
                        // on the next tick.
                        last = reloader.path().and_then(|p| fingerprint(p));
                        let r = Arc::clone(&reloader);
                        let _ = tokio::task::spawn_blocking(move || {
                            r.reload_certs(true);
                            r.state.egress.refresh_ca(true);
                            r.reload(&Trigger::Signal)
                        })
                        .await;
                    }
                    () = tokio::time::sleep(reload.interval) => {
                        if !reload.watch {
                            continue;
                        }
                        if !reloader.certs.is_empty() {
                            let r = Arc::clone(&reloader);
                            let _ = tokio::task::spawn_blocking(move || r.reload_certs(false)).await;
                        }
                        // A provider's ca_file rotated on disk, with no policy edit.
                        let r = Arc::clone(&reloader);
                        let _ = tokio::task::spawn_blocking(move || r.state.egress.refresh_ca(false)).await;
                        let Some(path) = reloader.path() else { continue };
                        let now = fingerprint(path);
                        // A file that vanished (mid-swap, or deleted) is not a change to act on.
                        if now.is_some() && now != last {
                            last = now;
                            let r = Arc::clone(&reloader);
                            let _ = tokio::task::spawn_blocking(move || r.reload(&Trigger::Watch)).await;
                        }
                    }
                }
            }
        })
    }
}
