//! Virtual keys: stored and looked up only as SHA-256 digests, with what each may use and the
//! tenant it bills to.

use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use sluice_config::{Budget, KeyConfig};

use crate::limits::KeyLimiter;
use crate::runtime::{RuntimeState, TenantState};

/// What a valid virtual key resolves to. Holds no secret material.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub name: String,
    /// Shared so each request can hold it without a copy.
    pub tenant: Arc<str>,
    /// The key's rate limits; `None` when it has none.
    pub limiter: Option<Arc<KeyLimiter>>,
    /// The tenant's live state: its shared limiter and its spend.
    pub tenant_state: Arc<TenantState>,
    /// The tenant's budget (none set: unlimited).
    pub budget: Budget,
    /// Public model names the key may use; empty = all.
    pub models: Vec<String>,
    /// Routes the key may use; empty = all.
    pub routes: Vec<String>,
    /// 0..=9, higher is more important (load shedding refuses the lowest first).
    pub priority: u8,
    pub expires: Option<SystemTime>,
    /// A key Sluice made for its own calls through its routing (the judge's); never in the
    /// policy file, never judged.
    pub internal: bool,
}

impl KeyEntry {
    /// The key's entry, with its and its tenant's live state from (or new in) `runtime`.
    pub fn compile(
        k: &KeyConfig,
        tenant: Option<&sluice_config::TenantConfig>,
        runtime: &RuntimeState,
    ) -> Self {
        let limits = tenant.map(|t| t.limits).unwrap_or_default();
        Self {
            name: k.name.clone(),
            tenant: Arc::from(k.tenant.as_str()),
            limiter: runtime.limiter(&k.name, k.limits),
            tenant_state: runtime.tenant(&k.tenant, limits),
            budget: tenant.map(|t| t.budget).unwrap_or_default(),
            models: k.models.clone(),
            routes: k.routes.clone(),
            priority: k.priority,
            expires: k.expires,
            internal: false,
        }
    }

    /// Whether the key has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// Whether the key may use `model` (its public name) on `route`.
    pub fn allows(&self, model: &str, route: &str) -> bool {
        (self.models.is_empty() || self.models.iter().any(|m| m == model))
            && (self.routes.is_empty() || self.routes.iter().any(|r| r == route))
    }
}

/// The digest the policy file stores for a key (`sluice hash-key` prints it in hex).
pub fn hash_key(plaintext: &str) -> [u8; 32] {
    Sha256::digest(plaintext.as_bytes()).into()
}
