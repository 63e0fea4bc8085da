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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sluice_config::{Limits, ProviderKind};
use tokio::time::Instant;

use crate::limits::KeyLimiter;

/// Every piece of live state, by stable name.
#[derive(Debug)]
pub struct RuntimeState {
    /// The clock origin that atomically stored instants count from.
    origin: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By key name: the limits the limiter was built for, and the limiter.
    limiters: HashMap<String, (Limits, Arc<KeyLimiter>)>,
    /// By (provider name, catalog model name).
    targets: HashMap<(String, String), (TargetIdentity, Arc<TargetState>)>,
    /// By route name: the weighted pick's counter.
    routes: HashMap<String, Arc<AtomicU64>>,
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
    OpenAi { base_url: String },
    Mock { ttft: Duration, tokens_per_s: f64 },
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
        }
    }
}

/// The live state of one target (a catalog model on its provider).
#[derive(Debug)]
pub struct TargetState {
    origin: Instant,
    /// Milliseconds after `origin` until which the provider asked to be left alone; 0 = none.
    cooling_until_ms: AtomicU64,
}

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
        }
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
        });
        inner.targets.insert(key, (identity, Arc::clone(&state)));
        state
    }

    /// The weighted-pick counter of route `name`.
    pub fn route_counter(&self, name: &str) -> Arc<AtomicU64> {
        Arc::clone(self.lock().routes.entry(name.to_owned()).or_default())
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

// === impl TargetState ===

impl TargetState {
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
