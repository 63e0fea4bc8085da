//! Virtual keys: stored and looked up only as SHA-256 digests.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use sluice_config::KeyConfig;

use crate::limits::KeyLimiter;
use crate::runtime::RuntimeState;

/// What a valid virtual key resolves to. Holds no secret material.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub name: String,
    /// Shared so each request can hold it without a copy.
    pub tenant: Arc<str>,
    /// The key's rate limits; `None` when it has none.
    pub limiter: Option<Arc<KeyLimiter>>,
}

impl KeyEntry {
    /// The key's entry, with its limiter from (or new in) the runtime state.
    pub fn compile(k: &KeyConfig, runtime: &RuntimeState) -> Self {
        Self {
            name: k.name.clone(),
            tenant: Arc::from(k.tenant.as_str()),
            limiter: runtime.limiter(&k.name, k.limits),
        }
    }
}

/// The digest the policy file stores for a key (`sluice hash-key` prints it in hex).
pub fn hash_key(plaintext: &str) -> [u8; 32] {
    Sha256::digest(plaintext.as_bytes()).into()
}
