//! The overlay: what remediation changed in routing, per route, and the controller's own
//! record of the incidents behind it.
//!
//! Routing reads only [`RouteOverlay`]. Every entry carries a `share`: the fraction of the
//! eligible requests it applies to. The rest (at least the rule's probe share) are served the
//! original way, which is how the controller sees the original recover. [`in_share`] spreads a
//! share evenly over a request sequence without randomness.
//!
//! The per-route entries are derived from the open incidents after every decision, so the two
//! can never disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::event::BlockReason;
use super::rule::Rule;
use super::status::TargetKey;

/// Who set an overlay entry, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct SetBy {
    pub rule: Arc<str>,
    pub incident: u64,
    pub since: Instant,
}

/// A target taken out of a route by `failover`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ejection {
    pub target: TargetKey,
    /// The share of this target's requests sent elsewhere (the rest probe it).
    pub share: f64,
    pub set_by: SetBy,
}

/// The route served with another model by `downgrade_to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Substitution {
    /// The catalog model requests are sent to instead.
    pub model: Arc<str>,
    /// The share of the route's requests substituted (the rest probe the original).
    pub share: f64,
    pub set_by: SetBy,
}

/// `cache_fallback`: requests with a stale cache entry are answered from it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheFallback {
    /// The share of requests with a stale entry answered from it (the rest go upstream).
    pub share: f64,
    pub set_by: SetBy,
}

/// `shed`: requests of low-priority keys are refused with 503 and `retry-after-ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Shed {
    /// Keys with a priority at most this are shed.
    pub max_priority: u8,
    /// The share of those keys' requests refused (the rest are admitted).
    pub share: f64,
    pub set_by: SetBy,
}

/// What routing applies to one route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteOverlay {
    pub ejected: Vec<Ejection>,
    pub substitution: Option<Substitution>,
    pub cache_fallback: Option<CacheFallback>,
    pub shed: Option<Shed>,
}

/// What an incident's action set (or, in dry-run, would have set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Applied {
    Failover { target: TargetKey, share: f64 },
    DowngradeTo { model: Arc<str>, share: f64 },
    CacheFallback { share: f64 },
    Shed { max_priority: u8, share: f64 },
}

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The trigger holds but the action is not (yet) in place: blocked, or deferred a tick.
    Waiting,
    /// The action is in place (in the overlay, or recorded only for a dry-run rule).
    Active,
    /// The action was unwound; the incident stays open until its trigger clears, and the
    /// action comes back if the original burns again meanwhile.
    Unwound,
    /// Every downgrade candidate broke the guard; nothing more is tried until the trigger
    /// clears.
    Exhausted,
    /// An operator took the action back; nothing is put back until the trigger clears.
    Overridden,
}

/// What the probe traffic says about the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Its short-window burn is known and under 1.
    Healthy,
    /// Its short-window burn is known and at least 1.
    Burning,
    /// Too few events to tell (below the SLO's minimum-events guard).
    NoData,
}

/// One open incident: a rule's trigger held on a route (on one target, for `failover`).
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: u64,
    /// The rule as it stands now. A reload that changes its route, trigger, action or dry-run
    /// flag ends the incident, so an entry never outlives the rule that explains it; other
    /// settings (hold, cooldown, shares, guard, runbook) are taken over.
    pub rule: Rule,
    /// The burning target, for `failover`.
    pub target: Option<TargetKey>,
    pub opened_at: Instant,
    pub phase: Phase,
    /// What is in place while `Active`.
    pub applied: Option<Applied>,
    /// When the current action was put in place (the hold counts from here).
    pub applied_at: Option<Instant>,
    /// Since when the original has been continuously healthy, while `Active`.
    pub healthy_since: Option<Instant>,
    pub verdict: Option<Verdict>,
    /// Downgrade candidates the guard rejected in this incident.
    pub rejected: Vec<Arc<str>>,
    /// Why the action is not in place (reported once per reason).
    pub blocked: Option<BlockReason>,
}

/// The remediation overlay. Cheap to clone; the controller publishes a new one each tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    pub(crate) routes: BTreeMap<Arc<str>, RouteOverlay>,
    pub(crate) incidents: Vec<Incident>,
    pub(crate) next_incident: u64,
}

// === impl Overlay ===

impl Default for Overlay {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Overlay {
    /// An empty overlay whose first incident gets id `first_incident` (continue the numbering
    /// of an incident log after a restart).
    pub fn new(first_incident: u64) -> Self {
        Self {
            routes: BTreeMap::new(),
            incidents: Vec::new(),
            next_incident: first_incident,
        }
    }

    /// What routing applies to `route`; `None` when remediation leaves it alone.
    pub fn route(&self, route: &str) -> Option<&RouteOverlay> {
        self.routes.get(route)
    }

    /// Every route with an entry, by name.
    pub fn routes(&self) -> impl Iterator<Item = (&Arc<str>, &RouteOverlay)> {
        self.routes.iter()
    }

    /// The open incidents (for `/admin/incidents` and the `remediation_active` gauge).
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    /// Whether routing has nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The id the next incident will get.
    pub fn next_incident(&self) -> u64 {
        self.next_incident
    }

    /// Takes the next incident id for an incident opened outside [`decide`](super::decide)
    /// (an alert incident of the AIOps grouping), so both kinds share one numbering.
    pub fn reserve_incident(&mut self) -> u64 {
        let id = self.next_incident;
        self.next_incident += 1;
        id
    }

    /// Rebuilds the per-route entries from the live (not dry-run) active incidents.
    pub(crate) fn rebuild_routes(&mut self) {
        let mut routes: BTreeMap<Arc<str>, RouteOverlay> = BTreeMap::new();
        for inc in &self.incidents {
            if inc.rule.dry_run || inc.phase != Phase::Active {
                continue;
            }
            let (Some(applied), Some(since)) = (&inc.applied, inc.applied_at) else {
                continue;
            };
            let set_by = SetBy {
                rule: Arc::clone(&inc.rule.name),
                incident: inc.id,
                since,
            };
            let entry = routes.entry(Arc::clone(&inc.rule.route)).or_default();
            match applied {
                Applied::Failover { target, share } => entry.ejected.push(Ejection {
                    target: target.clone(),
                    share: *share,
                    set_by,
                }),
                Applied::DowngradeTo { model, share } => {
                    entry.substitution = Some(Substitution {
                        model: Arc::clone(model),
                        share: *share,
                        set_by,
                    });
                }
                Applied::CacheFallback { share } => {
                    entry.cache_fallback = Some(CacheFallback {
                        share: *share,
                        set_by,
                    });
                }
                Applied::Shed {
                    max_priority,
                    share,
                } => {
                    entry.shed = Some(Shed {
                        max_priority: *max_priority,
                        share: *share,
                        set_by,
                    });
                }
            }
        }
        for entry in routes.values_mut() {
            entry.ejected.sort_by(|a, b| a.target.cmp(&b.target));
        }
        self.routes = routes;
    }
}

// === impl RouteOverlay ===

impl RouteOverlay {
    /// The ejection of `provider`/`model`, if it is taken out.
    pub fn ejection(&self, provider: &str, model: &str) -> Option<&Ejection> {
        self.ejected
            .iter()
            .find(|e| &*e.target.provider == provider && &*e.target.model == model)
    }
}

/// Whether request number `seq` (any per-route counter) falls inside `share`.
///
/// Uses the golden-ratio (Weyl) sequence `frac(seq · φ⁻¹)`, computed exactly in 64-bit fixed
/// point, which fills `[0, 1)` evenly for every prefix: any run of `n` consecutive requests puts
/// about `share · n` of them inside, so a 5 % probe reaches the original every twentieth
/// request or so, not in bursts.
pub fn in_share(share: f64, seq: u64) -> bool {
    // 2^64 / φ, rounded to odd so every `seq` maps to a distinct point.
    const STEP: u64 = 0x9E37_79B9_7F4A_7C15;
    if share.is_nan() || share <= 0.0 {
        return false;
    }
    if share >= 1.0 {
        return true;
    }
    let x = seq.wrapping_mul(STEP) as f64 / 18_446_744_073_709_551_616.0;
    x < share
}
