//! The engine: bucketed good/total counts per SLO, per route and per target, and their burn
//! rates, error budgets and alert levels.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use foldhash::{HashMap, HashMapExt};
use sluice_policy::remediation::{SloStatus, TargetKey, Window, WindowStat, WindowStats};
use tokio::time::Instant;

use super::ring::Ring;
use super::snapshot::{self, RestoreReport};
use super::spec::{QualitySample, SloSample, SloSpec, WindowScale};
use crate::Error;

/// Bucket widths of the three tiers at scale 1: 5 s, 5 min, 1 h.
pub(crate) const TIER_WIDTHS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(60 * 60),
];
/// What the fine and middle tiers span: 1 h and 1 d. The coarse tier spans 3 d or the SLO
/// window, whichever is longer.
const TIER_SPANS: [Duration; 2] = [Duration::from_secs(60 * 60), Duration::from_secs(24 * 3600)];
const THREE_DAYS: Duration = Duration::from_secs(3 * 24 * 3600);

/// Targets tracked per SLO at most. Targets come from the catalog, so this only guards
/// against a caller passing something unbounded.
pub const MAX_TARGETS_PER_SLO: usize = 64;

/// The SLO engine. Owned by one task (the evaluator service), which drains request samples
/// into it and reads statuses on its tick.
#[derive(Debug)]
pub struct SloEngine {
    scale: WindowScale,
    origin: Instant,
    /// Each tier's scaled bucket width in nanoseconds.
    widths_ns: [u64; 3],
    slos: Vec<SloState>,
    by_route: HashMap<Arc<str>, Vec<usize>>,
    refused_targets: u64,
}

#[derive(Debug)]
pub(crate) struct SloState {
    pub spec: SloSpec,
    pub geometry: Geometry,
    pub route: Series,
    pub targets: HashMap<TargetKey, Series>,
}

/// Ring lengths per tier and where each reported window is read from.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub lens: [usize; 3],
    /// `(tier, buckets)` per [`Window::ALL`] entry.
    pub windows: [(usize, usize); 7],
}

/// The three rings of one (SLO, route) or (SLO, route, target).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub rings: [Ring; 3],
    pub last_seen: Instant,
}

// === impl SloEngine ===

impl SloEngine {
    /// An engine for `specs` (SLO names unique per route) with windows scaled by `scale`.
    pub fn new(specs: Vec<SloSpec>, scale: WindowScale, now: Instant) -> Result<Self, Error> {
        let mut by_route: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
        let mut slos: Vec<SloState> = Vec::with_capacity(specs.len());
        let widths_ns = TIER_WIDTHS.map(|w| duration_ns(scale.apply(w)));
        for spec in specs {
            spec.check()?;
            let same_route = by_route.entry(Arc::clone(&spec.route)).or_default();
            if same_route.iter().any(|&i| slos[i].spec.name == spec.name) {
                return Err(Error::SloDuplicate {
                    slo: spec.name.to_string(),
                    route: spec.route.to_string(),
                });
            }
            same_route.push(slos.len());
            let geometry = Geometry::new(&spec);
            let route = Series::empty(&geometry, now);
            slos.push(SloState {
                spec,
                geometry,
                route,
                targets: HashMap::new(),
            });
        }
        Ok(Self {
            scale,
            origin: now,
            widths_ns,
            slos,
            by_route,
            refused_targets: 0,
        })
    }

    /// The specs, in the order given.
    pub fn specs(&self) -> impl Iterator<Item = &SloSpec> {
        self.slos.iter().map(|s| &s.spec)
    }

    pub fn scale(&self) -> WindowScale {
        self.scale
    }

    /// Per-target samples refused because an SLO already tracks [`MAX_TARGETS_PER_SLO`].
    pub fn refused_targets(&self) -> u64 {
        self.refused_targets
    }

    /// Counts one finished request (at `at`, normally its end) for every SLO of its route.
    pub fn ingest(&mut self, at: Instant, sample: &SloSample) {
        self.ingest_with(at, sample, |_, _| {});
    }

    /// As [`Self::ingest`], telling `counted` how the request counted for each SLO (for the
    /// `slo_events` counter).
    pub fn ingest_with(
        &mut self,
        at: Instant,
        sample: &SloSample,
        mut counted: impl FnMut(&SloSpec, bool),
    ) {
        let Some(slos) = self.by_route.get(&*sample.route) else {
            return;
        };
        let ix = self.indices(at);
        for &i in slos {
            let slo = &mut self.slos[i];
            if let Some(good) = slo.spec.sli.classify(sample) {
                counted(&slo.spec, good);
                if !slo.record(ix, at, sample.target.as_ref(), good) {
                    self.refused_targets += 1;
                }
            }
        }
    }

    /// Counts one attempt that a later attempt of the same request took over from, for its
    /// target only: the route's series counts the request once, by how it ended, but a target
    /// that failed half the time must burn even when retries hid it from the client.
    /// `sample.target` names the attempt's target; without one nothing is counted.
    pub fn ingest_attempt(&mut self, at: Instant, sample: &SloSample) {
        let Some(target) = sample.target.as_ref() else {
            return;
        };
        let Some(slos) = self.by_route.get(&*sample.route) else {
            return;
        };
        let ix = self.indices(at);
        for &i in slos {
            let slo = &mut self.slos[i];
            let Some(good) = slo.spec.sli.classify(sample) else {
                continue;
            };
            match slo.target_series(target, at) {
                Some(series) => series.add(ix, at, u32::from(!good), 1),
                None => self.refused_targets += 1,
            }
        }
    }

    /// Counts one judged answer for every `judge_score_at_least` SLO of its route.
    pub fn ingest_quality(&mut self, at: Instant, sample: &QualitySample) {
        self.ingest_quality_with(at, sample, |_, _| {});
    }

    /// As [`Self::ingest_quality`], telling `counted` how the score counted for each SLO.
    pub fn ingest_quality_with(
        &mut self,
        at: Instant,
        sample: &QualitySample,
        mut counted: impl FnMut(&SloSpec, bool),
    ) {
        let Some(slos) = self.by_route.get(&*sample.route) else {
            return;
        };
        let ix = self.indices(at);
        for &i in slos {
            let slo = &mut self.slos[i];
            if let Some(good) = slo.spec.sli.classify_score(sample.score) {
                counted(&slo.spec, good);
                if !slo.record(ix, at, sample.target.as_ref(), good) {
                    self.refused_targets += 1;
                }
            }
        }
    }

    /// Every SLO's status at `now`: the route's first, then each target's (sorted), in spec
    /// order.
    pub fn status(&self, now: Instant) -> Vec<SloStatus> {
        let ix = self.indices(now);
        let mut out = Vec::new();
        for slo in &self.slos {
            out.push(slo.status_of(&slo.route, ix, None));
            let mut targets: Vec<_> = slo.targets.iter().collect();
            targets.sort_by(|a, b| a.0.cmp(b.0));
            for (key, series) in targets {
                out.push(slo.status_of(series, ix, Some(key)));
            }
        }
        out
    }

    /// Forgets targets with no event for longer than the longest ring spans (their counts are
    /// all gone by then anyway); returns how many went.
    pub fn prune(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        for slo in &mut self.slos {
            let span = self
                .scale
                .apply(TIER_WIDTHS[2] * u32::try_from(slo.geometry.lens[2]).unwrap_or(u32::MAX));
            let before = slo.targets.len();
            slo.targets
                .retain(|_, s| now.saturating_duration_since(s.last_seen) <= span);
            gone += before - slo.targets.len();
        }
        gone
    }

    /// The engine's state as bytes (versioned JSON), bucket ages relative to `now`, stamped
    /// with `wall` so a restore can tell how long the process was down.
    pub fn snapshot(&self, now: Instant, wall: SystemTime) -> Result<Vec<u8>, Error> {
        snapshot::encode(&snapshot::take(self, now, wall))
    }

    /// Adds a snapshot's counts, shifted by the wall-clock time since it was taken; buckets
    /// that have aged out of their ring are dropped, SLOs no longer defined (or now counting
    /// something else) are skipped. A corrupt or unknown snapshot is an error and changes
    /// nothing.
    pub fn restore(
        &mut self,
        bytes: &[u8],
        now: Instant,
        wall: SystemTime,
    ) -> Result<RestoreReport, Error> {
        let snap = snapshot::decode(bytes)?;
        let elapsed = snapshot::elapsed(&snap, wall);
        Ok(snapshot::apply(self, &snap, now, elapsed))
    }

    /// Replaces the specs (a policy reload), carrying over the counts of every SLO that is
    /// still defined and counts the same thing.
    pub fn reconfigure(
        &mut self,
        specs: Vec<SloSpec>,
        scale: WindowScale,
        now: Instant,
    ) -> Result<RestoreReport, Error> {
        let snap = snapshot::take(self, now, SystemTime::UNIX_EPOCH);
        let mut next = Self::new(specs, scale, now)?;
        let report = snapshot::apply(&mut next, &snap, now, Duration::ZERO);
        next.refused_targets = self.refused_targets;
        *self = next;
        Ok(report)
    }

    /// The bucket index of `at` in each tier.
    pub(crate) fn indices(&self, at: Instant) -> [i64; 3] {
        let offset = signed_ns(self.origin, at);
        self.widths_ns
            .map(|w| i64::try_from(offset.div_euclid(i128::from(w))).unwrap_or(i64::MAX))
    }

    /// Nanoseconds from the origin to `at` (negative before it).
    pub(crate) fn offset_ns(&self, at: Instant) -> i128 {
        signed_ns(self.origin, at)
    }

    pub(crate) fn widths_ns(&self) -> [u64; 3] {
        self.widths_ns
    }

    pub(crate) fn slos(&self) -> &[SloState] {
        &self.slos
    }

    pub(crate) fn slos_mut(&mut self) -> &mut [SloState] {
        &mut self.slos
    }

    pub(crate) fn refuse_target(&mut self) {
        self.refused_targets += 1;
    }
}

// === impl SloState ===

impl SloState {
    /// Adds one event to the route's series and the target's; `false` when the target was
    /// refused (the route still counts it).
    fn record(
        &mut self,
        ix: [i64; 3],
        at: Instant,
        target: Option<&TargetKey>,
        good: bool,
    ) -> bool {
        let bad = u32::from(!good);
        self.route.add(ix, at, bad, 1);
        let Some(target) = target else {
            return true;
        };
        match self.target_series(target, at) {
            Some(series) => {
                series.add(ix, at, bad, 1);
                true
            }
            None => false,
        }
    }

    /// The target's series, created on first use; `None` when the SLO tracks too many.
    pub(crate) fn target_series(&mut self, target: &TargetKey, at: Instant) -> Option<&mut Series> {
        if !self.targets.contains_key(target) {
            if self.targets.len() >= MAX_TARGETS_PER_SLO {
                return None;
            }
            self.targets
                .insert(target.clone(), Series::empty(&self.geometry, at));
        }
        self.targets.get_mut(target)
    }

    fn status_of(&self, series: &Series, ix: [i64; 3], target: Option<&TargetKey>) -> SloStatus {
        let spec = &self.spec;
        let budget = spec.budget();
        let mut windows = WindowStats::default();
        for (w, &(tier, n)) in Window::ALL.iter().zip(&self.geometry.windows) {
            let (bad, total) = series.rings[tier].sum(ix[tier], n);
            let burn = (total > 0 && total >= spec.min_events)
                .then(|| (bad as f64 / total as f64) / budget);
            *windows.get_mut(*w) = WindowStat { bad, total, burn };
        }
        let period = windows.slo;
        let budget_remaining = if period.total == 0 {
            1.0
        } else {
            1.0 - period.bad as f64 / (budget * period.total as f64)
        };
        SloStatus {
            slo: Arc::clone(&spec.name),
            route: Arc::clone(&spec.route),
            target: target.cloned(),
            objective: spec.objective,
            alert: windows.alert(),
            windows,
            budget_remaining,
        }
    }
}

// === impl Geometry ===

impl Geometry {
    fn new(spec: &SloSpec) -> Self {
        let coarse_span = spec.window.max(THREE_DAYS);
        let lens = [
            buckets(TIER_SPANS[0], TIER_WIDTHS[0]),
            buckets(TIER_SPANS[1], TIER_WIDTHS[1]),
            buckets(coarse_span, TIER_WIDTHS[2]),
        ];
        let windows = Window::ALL.map(|w| {
            let len = w.standard().unwrap_or(spec.window);
            let tier = if len <= TIER_SPANS[0] {
                0
            } else if len <= TIER_SPANS[1] {
                1
            } else {
                2
            };
            (tier, buckets(len, TIER_WIDTHS[tier]).min(lens[tier]))
        });
        Self { lens, windows }
    }
}

// === impl Series ===

impl Series {
    pub(crate) fn empty(geometry: &Geometry, now: Instant) -> Self {
        Self {
            rings: geometry.lens.map(|len| Ring::new(len, i64::MIN / 2)),
            last_seen: now,
        }
    }

    fn add(&mut self, ix: [i64; 3], at: Instant, bad: u32, total: u32) {
        for (ring, ix) in self.rings.iter_mut().zip(ix) {
            ring.add(ix, bad, total);
        }
        self.last_seen = self.last_seen.max(at);
    }
}

/// How many buckets of `width` cover `span` (at least one). Both unscaled, so the count is
/// exact whatever the scale.
fn buckets(span: Duration, width: Duration) -> usize {
    let n = span.as_nanos().div_ceil(width.as_nanos().max(1));
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

fn signed_ns(from: Instant, to: Instant) -> i128 {
    if to >= from {
        i128::try_from(to.duration_since(from).as_nanos()).unwrap_or(i128::MAX)
    } else {
        -i128::try_from(from.duration_since(to).as_nanos()).unwrap_or(i128::MAX)
    }
}
