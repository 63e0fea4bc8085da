//! The detector's settings. Defaults suit production traffic; tests and drills shrink the
//! interval like the SLO engine's window scale.

use std::time::Duration;

use crate::Error;

/// How the AIOps engine learns and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AiopsConfig {
    /// The step of learning and detection: each closed interval teaches the baselines the
    /// value of the window ending with it. Also the bucket width of the root-cause counts.
    pub interval: Duration,
    /// The window in intervals: what is learned (complete intervals) and what is compared with
    /// the band (the newest interval still filling).
    pub window: u32,
    /// The band's half-width in spreads of the window value.
    pub k: f64,
    /// How long a signal must stay out of its band before it is flagged.
    pub hold: Duration,
    /// How long a flagged signal must stay back in its band before it is cleared.
    pub clear: Duration,
    /// Fewer events than this in the window: the value is unknown (no flag, no proof of
    /// health), and it is not learned from.
    pub min_events: u32,
    /// Learning steps a baseline level needs before it is trusted.
    pub warmup: u32,
    /// A signal flagged for this long is learned anyway: the change has become the new normal.
    pub relearn_after: Duration,
    /// Routes tracked at most (routes come from the policy; this guards against a caller
    /// passing something unbounded).
    pub max_routes: usize,
    /// Targets tracked per route at most.
    pub max_targets_per_route: usize,
    /// Tenants with their own baselines at most; the rest share the `other` tenant's.
    pub max_tenants: usize,
    /// Tenants named in the root-cause counts at most; the rest are counted as `other`.
    pub max_hint_tenants: usize,
    /// The root-cause hint compares the newest `hint_recent` intervals...
    pub hint_recent: u32,
    /// ...with the `hint_reference` intervals before them (for spend and tokens).
    pub hint_reference: u32,
    /// A series with no event for this long is forgotten by [`prune`](super::AiopsEngine::prune).
    pub idle_ttl: Duration,
}

impl Default for AiopsConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            window: 5,
            k: 5.0,
            hold: Duration::from_secs(120),
            clear: Duration::from_secs(180),
            min_events: 30,
            warmup: 30,
            relearn_after: Duration::from_secs(6 * 3600),
            max_routes: 256,
            max_targets_per_route: 64,
            max_tenants: 100,
            max_hint_tenants: 64,
            hint_recent: 5,
            hint_reference: 25,
            idle_ttl: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

impl AiopsConfig {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |why: &'static str| Err(Error::AiopsConfig { why });
        if self.interval < Duration::from_millis(1) {
            return bad("the interval must be at least a millisecond");
        }
        if self.window == 0 || self.hint_recent == 0 || self.hint_reference == 0 {
            return bad("windows must span at least one interval");
        }
        if !(self.k.is_finite() && self.k > 0.0) {
            return bad("k must be a positive number");
        }
        if self.max_routes == 0 || self.max_targets_per_route == 0 {
            return bad("route and target caps must be at least one");
        }
        Ok(())
    }
}
