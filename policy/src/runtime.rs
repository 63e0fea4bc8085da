//! Live state that outlives a policy: limiter windows, Retry-After cooldowns, the weighted
//! pick's position — and, as they arrive, target health, spend and SLO windows.
//!
//! The compiled [`crate::Policy`] is immutable and replaced whole on a reload; the state here
//! is not. Each piece is keyed by a stable name and carries the *identity* of the rule it
//! serves (a key's limits, a target's provider settings). Compiling a policy asks the store for
//! the state of each rule: same name and same identity gives back the same `Arc`, so a reload
//! that changes an unrelated route leaves a key's rpm window exactly where it was; a changed
//! identity (new limits, a provider moved to another URL) starts fresh.
//!
//! The store is touched only while compiling (a mutex, never on the request path); requests
//! reach their state through the `Arc`s held by the policy they snapshotted.
//! [`RuntimeState::retain`] drops state no serving policy names any more, once a new policy
//! is in place (a request still holding the old snapshot keeps its `Arc` alive until it ends).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_config::{HealthConfig, Limits, ProviderKind};
use tokio::time::Instant;

use crate::budget::RetryBudgetState;
use crate::health::{Change, HealthCore, HealthView, Observation, Phase};
use crate::limits::KeyLimiter;
use crate::remediation::Overlay;
use crate::spend::{Spend, SpendSnapshot};

/// Every piece of live state, by stable name.
#[derive(Debug)]
pub struct RuntimeState {
    /// The clock origin that atomically stored instants count from.
    origin: Instant,
    inner: Mutex<Inner>,
    /// What remediation changed in routing; published by the SLO controller each tick, read
    /// by every request with one atomic load.
    overlay: ArcSwap<Overlay>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By key name: the limits the limiter was built for, and the limiter.
    limiters: HashMap<String, (Limits, Arc<KeyLimiter>)>,
    /// By (provider name, catalog model name).
    targets: HashMap<(String, String), (TargetIdentity, Arc<TargetState>)>,
    /// By route name.
    routes: HashMap<String, Arc<RouteState>>,
    /// By tenant name: the limiter (for the limits it was built for) and the spend.
    tenants: HashMap<String, Arc<TenantState>>,
    /// Spend restored from the data directory, for tenants not compiled yet.
    restored_spend: HashMap<String, SpendSnapshot>,
    /// Keys Sluice uses for its own calls through its routing, compiled into every policy.
    internal_keys: Vec<sluice_config::KeyConfig>,
}

/// The live state of one route.
#[derive(Debug, Default)]
pub struct RouteState {
    /// The weighted pick's position.
    pub counter: AtomicU64,
    pub retry_budget: RetryBudgetState,
}

/// The live state of one tenant.
#[derive(Debug)]
pub struct TenantState {
    /// The limits `limiter` was built for.
    limits: Mutex<Limits>,
    limiter: Mutex<Option<Arc<KeyLimiter>>>,
    pub spend: Spend,
}

impl TenantState {
    /// The tenant's shared limiter, `None` without limits.
    pub fn limiter(&self) -> Option<Arc<KeyLimiter>> {
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What makes a target the same target across reloads: where requests go and under which
/// name. The provider key is not part of it — a rotated key is the same provider.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetIdentity {
    pub provider: ProviderKindId,
    pub upstream_model: String,
}

/// The provider settings that decide where requests go, without secrets.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderKindId {
    OpenAi {
        base_url: String,
    },
    Mock {
        ttft: Duration,
        tokens_per_s: f64,
    },
    /// A translated kind: its name, base URL and the settings that shape its URLs.
    Other {
        kind: &'static str,
        base_url: String,
        settings: String,
    },
}

impl ProviderKindId {
    pub fn of(kind: &ProviderKind) -> Self {
        match kind {
            ProviderKind::OpenAi { base_url, .. } => Self::OpenAi {
                base_url: base_url.to_string(),
            },
            ProviderKind::Mock { ttft, tokens_per_s } => Self::Mock {
                ttft: *ttft,
                tokens_per_s: *tokens_per_s,
            },
            other => Self::Other {
                kind: other.name(),
                base_url: other
                    .access()
                    .map(|a| a.base_url.to_string())
                    .unwrap_or_default(),
                settings: match other {
                    ProviderKind::Gemini {
                        api_version,
                        vertex,
                        ..
                    } => format!("{api_version} {vertex:?}"),
                    ProviderKind::AzureOpenAi {
                        deployment,
                        api_version,
                        ..
                    } => format!("{deployment:?} {api_version:?}"),
                    ProviderKind::Bedrock { region, .. } => region.clone(),
                    _ => String::new(),
                },
            },
        }
    }
}

/// The live state of one target (a catalog model on its provider).
#[derive(Debug)]
pub struct TargetState {
    origin: Instant,
    /// Milliseconds after `origin` until which the provider asked to be left alone; 0 = none.
    cooling_until_ms: AtomicU64,
    /// The health state machine; read on the request path through the atomics below.
    health: Mutex<HealthCore>,
    /// Milliseconds after `origin` until which the target is ejected; 0 = not ejected.
    ejected_until_ms: AtomicU64,
    /// After an ejection: on probation until a request succeeds.
    probation: AtomicBool,
    /// A probe request is under way (one at a time).
    probe_busy: AtomicBool,
    /// Time to first token, EWMA, as f64 bits of milliseconds; 0 before the first sample.
    ewma_ttft: AtomicU64,
    inflight: AtomicU32,
    /// Milliseconds after `origin` until which the provider is known not to serve OpenAI's
    /// Responses API (it answered 404/405 at `/responses`); 0 = not known.
    no_responses_until_ms: AtomicU64,
}

/// Whether a request may go to a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Usable,
    Ejected {
        until: Instant,
    },
    /// On probation, and its one probe is free: the request that takes it is the probe.
    Probe,
    /// On probation, and a probe is under way.
    ProbeBusy,
}

/// An attempt at a target: counts it in flight, and frees the probe slot it holds, when it
/// ends (dropped).
#[derive(Debug)]
pub struct AttemptGuard {
    state: Arc<TargetState>,
    probe: bool,
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.state.inflight.fetch_sub(1, Ordering::AcqRel);
        if self.probe {
            self.state.probe_busy.store(false, Ordering::Release);
        }
    }
}

/// What the admin view shows of a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetView {
    pub health: HealthView,
    pub ewma_ttft_ms: Option<f64>,
    pub inflight: u32,
    pub cooling_until: Option<Instant>,
}

/// EWMA weight of a new time-to-first-token sample.
const EWMA_ALPHA: f64 = 0.3;

// === impl RuntimeState ===

impl Default for RuntimeState {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeState {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            inner: Mutex::new(Inner::default()),
            overlay: ArcSwap::from_pointee(Overlay::default()),
        }
    }

    /// Adds a key Sluice itself uses (the judge's), compiled into this and every later policy
    /// as an internal key. Only its digest is kept.
    pub fn add_internal_key(&self, key: sluice_config::KeyConfig) {
        self.lock().internal_keys.push(key);
    }

    /// The internal keys to compile.
    pub fn internal_keys(&self) -> Vec<sluice_config::KeyConfig> {
        self.lock().internal_keys.clone()
    }

    /// The remediation overlay in force.
    pub fn overlay(&self) -> arc_swap::Guard<Arc<Overlay>> {
        self.overlay.load()
    }

    /// The overlay in force, as an owned handle (for views that outlive a request).
    pub fn overlay_full(&self) -> Arc<Overlay> {
        self.overlay.load_full()
    }

    /// Replaces the overlay (the controller, once per tick).
    pub fn publish_overlay(&self, overlay: Arc<Overlay>) {
        self.overlay.store(overlay);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limiter of key `name` for `limits`: the existing one when the limits are the same,
    /// else a fresh one. `None` for a key without limits.
    pub fn limiter(&self, name: &str, limits: Limits) -> Option<Arc<KeyLimiter>> {
        let mut inner = self.lock();
        if let Some((l, limiter)) = inner.limiters.get(name)
            && *l == limits
        {
            return Some(Arc::clone(limiter));
        }
        let limiter = Arc::new(KeyLimiter::new(limits)?);
        inner
            .limiters
            .insert(name.to_owned(), (limits, Arc::clone(&limiter)));
        Some(limiter)
    }

    /// The state of target (`provider`, `model`) with `identity`: kept while the identity is
    /// the same.
    pub fn target(
        &self,
        provider: &str,
        model: &str,
        identity: TargetIdentity,
    ) -> Arc<TargetState> {
        let mut inner = self.lock();
        let key = (provider.to_owned(), model.to_owned());
        if let Some((id, state)) = inner.targets.get(&key)
            && *id == identity
        {
            return Arc::clone(state);
        }
        let state = Arc::new(TargetState {
            origin: self.origin,
            cooling_until_ms: AtomicU64::new(0),
            health: Mutex::new(HealthCore::new(Instant::now())),
            ejected_until_ms: AtomicU64::new(0),
            probation: AtomicBool::new(false),
            probe_busy: AtomicBool::new(false),
            ewma_ttft: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
            no_responses_until_ms: AtomicU64::new(0),
        });
        inner.targets.insert(key, (identity, Arc::clone(&state)));
        state
    }

    /// The live state of route `name`.
    pub fn route(&self, name: &str) -> Arc<RouteState> {
        Arc::clone(self.lock().routes.entry(name.to_owned()).or_default())
    }

    /// The live state of tenant `name`, its limiter rebuilt only when `limits` changed.
    pub fn tenant(&self, name: &str, limits: Limits) -> Arc<TenantState> {
        let mut inner = self.lock();
        if let Some(t) = inner.tenants.get(name) {
            let mut have = t.limits.lock().unwrap_or_else(PoisonError::into_inner);
            if *have != limits {
                *have = limits;
                *t.limiter.lock().unwrap_or_else(PoisonError::into_inner) =
                    KeyLimiter::new(limits).map(Arc::new);
            }
            return Arc::clone(t);
        }
        let spend = inner.restored_spend.remove(name).unwrap_or_default();
        let t = Arc::new(TenantState {
            limits: Mutex::new(limits),
            limiter: Mutex::new(KeyLimiter::new(limits).map(Arc::new)),
            spend: Spend::from_snapshot(spend),
        });
        inner.tenants.insert(name.to_owned(), Arc::clone(&t));
        t
    }

    /// Spend read back from the data directory at start, before the policy is compiled.
    pub fn restore_spend(&self, spend: impl IntoIterator<Item = (String, SpendSnapshot)>) {
        let mut inner = self.lock();
        for (tenant, s) in spend {
            match inner.tenants.get(&tenant) {
                Some(t) => *t.spend_raw_mut() = s,
                None => {
                    inner.restored_spend.insert(tenant, s);
                }
            }
        }
    }

    /// Every tenant's spend, as stored (for persisting).
    pub fn spend(&self) -> Vec<(String, SpendSnapshot)> {
        let inner = self.lock();
        let mut out: Vec<(String, SpendSnapshot)> = inner
            .tenants
            .iter()
            .map(|(n, t)| (n.clone(), t.spend.raw()))
            .chain(inner.restored_spend.iter().map(|(n, s)| (n.clone(), *s)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets state that `policy` no longer names. Call after swapping `policy` in.
    pub fn retain(&self, policy: &crate::Policy) {
        let mut inner = self.lock();
        inner
            .limiters
            .retain(|name, _| policy.keys().any(|k| k.name == *name));
        inner.targets.retain(|(provider, model), _| {
            policy
                .catalog_model(model)
                .is_some_and(|t| &*t.provider.name == provider)
        });
        inner
            .routes
            .retain(|name, _| policy.routes().iter().any(|r| &*r.name == name));
        // Tenants are kept: their spend is owed whatever the policy says now.
    }

    /// How many pieces of state are held, by kind: (limiters, targets, routes). For tests and
    /// the admin view.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (
            inner.limiters.len(),
            inner.targets.len(),
            inner.routes.len(),
        )
    }
}

// === impl TenantState ===

impl TenantState {
    fn spend_raw_mut(&self) -> std::sync::MutexGuard<'_, SpendSnapshot> {
        self.spend.raw_mut()
    }
}

// === impl TargetState ===

impl TargetState {
    /// Whether a request may go to this target at `now`.
    pub fn availability(&self, now: Instant) -> Availability {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        if until != 0 {
            let at = self.origin + Duration::from_millis(until - 1);
            if at > now {
                return Availability::Ejected { until: at };
            }
        }
        if self.probation.load(Ordering::Acquire) {
            if self.probe_busy.load(Ordering::Acquire) {
                return Availability::ProbeBusy;
            }
            return Availability::Probe;
        }
        Availability::Usable
    }

    /// Starts an attempt here; `probe` claims the probation slot (`None` if another request
    /// took it first).
    pub fn start_attempt(self: &Arc<Self>, probe: bool) -> Option<AttemptGuard> {
        if probe
            && self
                .probe_busy
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return None;
        }
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Some(AttemptGuard {
            state: Arc::clone(self),
            probe,
        })
    }

    /// Requests in flight to this target.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Acquire)
    }

    /// Time to first token, EWMA, milliseconds.
    pub fn ewma_ttft_ms(&self) -> Option<f64> {
        let bits = self.ewma_ttft.load(Ordering::Acquire);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    /// Folds a time-to-first-token sample into the EWMA.
    pub fn observe_ttft(&self, ttft: Duration) {
        let sample = (ttft.as_secs_f64() * 1e3).max(0.001);
        let _ = self
            .ewma_ttft
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                let next = if bits == 0 {
                    sample
                } else {
                    let old = f64::from_bits(bits);
                    old + EWMA_ALPHA * (sample - old)
                };
                Some(next.to_bits())
            });
    }

    /// Records an attempt's outcome under the route's health settings.
    pub fn observe(&self, cfg: &HealthConfig, obs: Observation, now: Instant) -> Change {
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let change = h.observe(cfg, obs, now);
        match change {
            Change::Ejected { until, .. } => {
                self.ejected_until_ms
                    .store(self.ms(until).saturating_add(1), Ordering::Release);
                self.probation.store(true, Ordering::Release);
            }
            Change::Recovered => {
                self.ejected_until_ms.store(0, Ordering::Release);
                self.probation.store(false, Ordering::Release);
            }
            Change::None => {}
        }
        change
    }

    /// The admin view at `now`.
    pub fn view(&self, cfg: &HealthConfig, now: Instant) -> TargetView {
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        h.settle(cfg, now);
        TargetView {
            health: h.view(cfg, now),
            ewma_ttft_ms: self.ewma_ttft_ms(),
            inflight: self.inflight(),
            cooling_until: self.cooling_until(now),
        }
    }

    /// The health phase (settled at `now`), for metrics.
    pub fn phase(&self, cfg: &HealthConfig, now: Instant) -> Phase {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .settle(cfg, now)
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The provider asked for no requests until `until` (its `Retry-After`). A later request
    /// for a shorter wait does not shorten it.
    pub fn cool_down(&self, until: Instant) {
        // +1 so that a cooldown ending at the origin itself is not "none".
        self.cooling_until_ms
            .fetch_max(self.ms(until).saturating_add(1), Ordering::Relaxed);
    }

    /// The provider answered `/responses` with 404 or 405 (an OpenAI-compatible server without
    /// the Responses API): Responses requests are translated for it until `until`, then its
    /// `/responses` is tried again (a server may be upgraded).
    pub fn note_no_responses_api(&self, until: Instant) {
        self.no_responses_until_ms
            .fetch_max(self.ms(until).saturating_add(1), Ordering::Relaxed);
    }

    /// Whether the provider is known, at `now`, not to serve the Responses API.
    pub fn lacks_responses_api(&self, now: Instant) -> bool {
        let until = self.no_responses_until_ms.load(Ordering::Relaxed);
        until != 0 && self.origin + Duration::from_millis(until - 1) > now
    }

    /// When the cooldown ends, if it has not yet at `now`.
    pub fn cooling_until(&self, now: Instant) -> Option<Instant> {
        let until = self.cooling_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let at = self.origin + Duration::from_millis(until - 1);
        (at > now).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(url: &str) -> TargetIdentity {
        TargetIdentity {
            provider: ProviderKindId::OpenAi {
                base_url: url.to_owned(),
            },
            upstream_model: "m".to_owned(),
        }
    }

    #[test]
    fn limiters_are_kept_while_their_limits_are_the_same() {
        let rt = RuntimeState::new();
        let rpm = Limits {
            rpm: Some(3),
            tpm: None,
        };
        let a = rt.limiter("k", rpm).expect("limited");
        let b = rt.limiter("k", rpm).expect("limited");
        assert!(Arc::ptr_eq(&a, &b));
        let c = rt
            .limiter(
                "k",
                Limits {
                    rpm: Some(4),
                    tpm: None,
                },
            )
            .expect("limited");
        assert!(!Arc::ptr_eq(&a, &c), "new limits start a new window");
        assert!(rt.limiter("free", Limits::default()).is_none());
    }

    #[test]
    fn targets_are_kept_while_their_identity_is_the_same() {
        let rt = RuntimeState::new();
        let a = rt.target("p", "m", id("http://a"));
        assert!(Arc::ptr_eq(&a, &rt.target("p", "m", id("http://a"))));
        assert!(!Arc::ptr_eq(&a, &rt.target("p", "m", id("http://b"))));
        assert_eq!(
            rt.sizes().1,
            1,
            "the old identity is replaced, not kept beside"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cooldowns_end_when_the_provider_said() {
        let rt = RuntimeState::new();
        let t = rt.target("p", "m", id("http://a"));
        let now = Instant::now();
        assert_eq!(t.cooling_until(now), None);
        t.cool_down(now + Duration::from_secs(2));
        // A shorter Retry-After from a concurrent request does not cut it short.
        t.cool_down(now + Duration::from_millis(500));
        assert_eq!(t.cooling_until(now), Some(now + Duration::from_secs(2)));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(t.cooling_until(Instant::now()).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(t.cooling_until(Instant::now()), None);
    }
}
