//! The one owner of the live policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::Policy;

/// Readers take one snapshot per request, so a request never sees two policies.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<Policy>,
    generation: AtomicU64,
}

impl PolicyStore {
    pub fn new(mut policy: Policy) -> Self {
        policy.generation = 1;
        Self {
            current: ArcSwap::from_pointee(policy),
            generation: AtomicU64::new(1),
        }
    }

    pub fn snapshot(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Swaps in an already compiled policy and returns its generation. Compiling first
    /// means a bad file never replaces a good policy.
    pub fn replace(&self, mut next: Policy) -> u64 {
        // Reloads are serialised by their one caller (the reloader), so the generation the
        // policy carries is the one this swap makes.
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        next.generation = generation;
        self.current.store(Arc::new(next));
        self.generation.store(generation, Ordering::Relaxed);
        generation
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}
