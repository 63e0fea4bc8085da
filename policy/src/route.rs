//! Routes and the attempt plan: the decision of which targets to try, in which order, and why
//! the others were left out.
//!
//! A plan is made once per request from the targets' live state:
//! 1. Each target is *usable*, *ejected* (passive health), *busy probing* (its one probe
//!    request is under way) or *cooling* (a provider's `Retry-After`).
//! 2. Ejections are honoured only up to `health.max_ejected_share` of the route's targets and
//!    never for the last one: the least-bad ejected targets (the ones whose ejection ends
//!    first) come back in until the cap holds. When nothing is usable at all, the least-bad
//!    target serves anyway: *panic mode*, counted.
//! 3. The first target is picked among the usable primary targets by the route's `balance`
//!    strategy ([`crate::balance`]), the other primaries follow, then the fallbacks; targets
//!    that are cooling down go last, so a healthy one is tried before waiting on another.
//! 4. `retry.max_attempts` bounds the walk; when it exceeds the number of distinct targets
//!    the order repeats, which is how a single-target route retries its one provider.
//!
//! The skipped targets and their reasons go with the plan, onto the request's span and
//! access-log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_config::{
    ActionConfig, Balance, CacheConfig, HeaderMatch, HealthConfig, ModelKind, RetryConfig,
    RouteConfig, Timeouts,
};
use tokio::time::Instant;

use crate::balance::{self, Candidate};
use crate::remediation::{ActionKind, RouteOverlay, in_share};
use crate::runtime::{Availability, RouteState, RuntimeState};
use crate::{Error, Result, Target};

/// Whether the route came from the `routes` section or stands for a bare catalog model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrigin {
    Configured,
    Implicit,
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub origin: RouteOrigin,
    pub retry: RetryConfig,
    pub timeouts: Timeouts,
    /// Over this duration a request is kept by the tail sampler as slow (route override).
    pub slow: Option<std::time::Duration>,
    /// The route's response cache settings; `None` caches nothing.
    pub cache: Option<CacheConfig>,
    pub balance: Balance,
    pub health: HealthConfig,
    /// Requests with this header are this route's (with its models, when it has any).
    pub header: Option<HeaderMatch>,
    targets: Vec<(Arc<Target>, u32)>,
    fallbacks: Vec<Arc<Target>>,
    /// The catalog models the route's `downgrade_to` rules may substitute.
    substitutes: Vec<Arc<Target>>,
    /// Live state: the weighted pick's position and the retry budget.
    pub state: Arc<RouteState>,
}

/// Why a target was not where the plan would otherwise have put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Passive health took it out until then.
    Ejected { until: Instant },
    /// On probation, and its one probe request is under way.
    Probing,
    /// The provider asked for a pause until then (tried last).
    Cooling { until: Instant },
    /// A `failover` remediation took it out of this request's plan.
    Remediated,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ejected { .. } => "ejected",
            Self::Probing => "probing",
            Self::Cooling { .. } => "cooling",
            Self::Remediated => "remediated",
        }
    }
}

/// One step of a plan: a target, and whether the request is its probation probe.
#[derive(Debug, Clone, Copy)]
pub struct Step<'p> {
    pub target: &'p Arc<Target>,
    pub probe: bool,
}

/// The ordered targets for one request, with the reasons for what was left out. Borrowed
/// from the policy snapshot the request holds.
#[derive(Debug, Clone)]
pub struct AttemptPlan<'p> {
    pub route: &'p Route,
    /// The public model name the client asked for (a policy name, so a closed set).
    pub requested: &'p Arc<str>,
    order: Vec<Step<'p>>,
    /// Targets left out or moved back, and why.
    pub skipped: Vec<(&'p Arc<Target>, SkipReason)>,
    /// Nothing was usable: the least-bad target serves anyway.
    pub panic: bool,
    /// The remediation actions that shaped this plan: (action, rule).
    pub remediation: Vec<(ActionKind, Arc<str>)>,
}

// === impl Route ===

impl Route {
    pub(crate) fn configured(
        rc: &RouteConfig,
        catalog: &HashMap<String, Arc<Target>>,
        runtime: &RuntimeState,
    ) -> Result<Self> {
        let lookup = |model: &str| {
            catalog
                .get(model)
                .cloned()
                .ok_or_else(|| Error::UnknownModel {
                    route: rc.name.clone(),
                    model: model.to_owned(),
                })
        };
        let targets = rc
            .targets
            .iter()
            .map(|t| Ok((lookup(&t.model)?, t.weight.max(1))))
            .collect::<Result<Vec<_>>>()?;
        let fallbacks = rc
            .fallbacks
            .iter()
            .map(|m| lookup(m))
            .collect::<Result<Vec<_>>>()?;
        let mut substitutes: Vec<Arc<Target>> = Vec::new();
        for rule in &rc.remediation {
            if let ActionConfig::DowngradeTo(models) = &rule.action {
                for m in models {
                    if !substitutes.iter().any(|t| &*t.model == m.as_str()) {
                        substitutes.push(lookup(m)?);
                    }
                }
            }
        }
        Ok(Self {
            name: Arc::from(rc.name.as_str()),
            origin: RouteOrigin::Configured,
            retry: rc.retry.clone(),
            timeouts: rc.timeouts,
            slow: rc.slow,
            cache: rc.cache,
            balance: rc.balance,
            health: rc.health,
            header: rc.header.clone(),
            targets,
            fallbacks,
            substitutes,
            state: runtime.route(&rc.name),
        })
    }

    pub(crate) fn implicit(target: Arc<Target>, runtime: &RuntimeState) -> Self {
        Self {
            name: Arc::clone(&target.model),
            origin: RouteOrigin::Implicit,
            retry: RetryConfig::default(),
            timeouts: Timeouts::default(),
            slow: None,
            cache: None,
            balance: Balance::default(),
            health: HealthConfig::default(),
            header: None,
            state: runtime.route(&target.model),
            targets: vec![(target, 1)],
            fallbacks: Vec::new(),
            substitutes: Vec::new(),
        }
    }

    /// The kind every target of this route serves (validation keeps them uniform).
    pub fn kind(&self) -> ModelKind {
        self.targets
            .first()
            .map_or(ModelKind::Chat, |(t, _)| t.kind)
    }

    /// Distinct targets, primary ones first, then fallbacks.
    pub fn distinct_targets(&self) -> usize {
        self.targets.len() + self.fallbacks.len()
    }

    /// Every target (primaries, then fallbacks) with its weight (0 for fallbacks).
    pub fn all_targets(&self) -> impl Iterator<Item = (&Arc<Target>, u32)> {
        self.targets
            .iter()
            .map(|(t, w)| (t, *w))
            .chain(self.fallbacks.iter().map(|t| (t, 0)))
    }

    /// The plan for one request at `now`; `random` seeds the `p2c` draws; `overlay` is what
    /// remediation changed on this route.
    ///
    /// The overlay's entries apply to their share of requests, spread over the route's request
    /// counter ([`in_share`]); the rest are planned as if there were none (the probe traffic).
    /// A substitution serves the request with the substitute first and the route's own
    /// targets after it as fallbacks; a failover takes the target out unless nothing else is
    /// left to try.
    pub fn plan<'p>(
        &'p self,
        requested: &'p Arc<str>,
        now: Instant,
        random: [u64; 2],
        overlay: Option<&RouteOverlay>,
    ) -> AttemptPlan<'p> {
        let counter = self.state.counter.fetch_add(1, Ordering::Relaxed);
        let mut remediation = Vec::new();
        let substitute = overlay
            .and_then(|o| o.substitution.as_ref())
            .filter(|s| in_share(s.share, counter))
            .and_then(|s| {
                let t = self.substitutes.iter().find(|t| t.model == s.model)?;
                remediation.push((ActionKind::DowngradeTo, Arc::clone(&s.set_by.rule)));
                Some(t)
            });
        let mut states: Vec<TargetView<'p>> = Vec::with_capacity(self.distinct_targets() + 1);
        if let Some(t) = substitute {
            states.push((t, 1, true, t.state.availability(now), false));
        }
        for (t, w) in self.all_targets() {
            if substitute.is_some_and(|s| Arc::ptr_eq(s, t)) {
                continue;
            }
            let taken_out = overlay
                .and_then(|o| o.ejection(&t.provider.name, &t.model))
                .filter(|e| in_share(e.share, counter))
                .map(|e| {
                    remediation.push((ActionKind::Failover, Arc::clone(&e.set_by.rule)));
                })
                .is_some();
            // Under a substitution the route's own targets are its fallbacks.
            let primary = w > 0 && substitute.is_none();
            states.push((t, w, primary, t.state.availability(now), taken_out));
        }
        let mut plan = decide(self, requested, now, counter, random, &states);
        plan.remediation = remediation;
        plan
    }
}

/// A target as one plan sees it: `(target, weight, primary, availability, taken out by a
/// failover remediation)`.
type TargetView<'p> = (&'p Arc<Target>, u32, bool, Availability, bool);

/// A usable target: its index in the route's list, and whether it is a probation probe.
type Pick = (usize, bool);

/// The plan from the targets' states (pure).
fn decide<'p>(
    route: &'p Route,
    requested: &'p Arc<str>,
    now: Instant,
    counter: u64,
    random: [u64; 2],
    states: &[TargetView<'p>],
) -> AttemptPlan<'p> {
    let mut skipped = Vec::new();
    let mut usable: Vec<Pick> = Vec::new();
    let mut ejected: Vec<(usize, Instant)> = Vec::new();
    let mut remediated: Vec<usize> = Vec::new();
    for (i, (t, _, _, a, taken_out)) in states.iter().enumerate() {
        match *a {
            Availability::Usable | Availability::Probe if *taken_out => remediated.push(i),
            Availability::Usable => usable.push((i, false)),
            Availability::Probe => usable.push((i, true)),
            Availability::ProbeBusy => skipped.push((*t, SkipReason::Probing)),
            Availability::Ejected { until } => ejected.push((i, until)),
        }
    }
    // A target only remediation took out is healthy: it can still serve as a last resort.
    let healthy = usable.len() + remediated.len();
    // Honour ejections only up to the cap; the least-bad (ending soonest) come back first.
    ejected.sort_by_key(|(_, until)| *until);
    let total = states.len();
    let max_out = (route.health.max_ejected_share * total as f64).floor() as usize;
    let max_out = max_out.min(total.saturating_sub(1));
    // Nothing healthy at all: whatever serves now is the least bad.
    let panic = healthy == 0;
    let back_in = ejected.len().saturating_sub(max_out);
    for (k, (i, until)) in ejected.iter().enumerate() {
        if k < back_in {
            usable.push((*i, false));
        } else {
            skipped.push((states[*i].0, SkipReason::Ejected { until: *until }));
        }
    }
    if usable.is_empty() && !remediated.is_empty() {
        // A failover never leaves a request with nothing to try: what it took out serves
        // when everything else is out too.
        usable.extend(remediated.iter().map(|&i| (i, false)));
    } else {
        skipped.extend(
            remediated
                .iter()
                .map(|&i| (states[i].0, SkipReason::Remediated)),
        );
    }
    if usable.is_empty() && !states.is_empty() {
        // Only busy probes left: the first target serves rather than nobody.
        usable.push((0, false));
        skipped.retain(|(t, _)| !Arc::ptr_eq(t, states[0].0));
    }
    usable.sort_by_key(|(i, _)| *i);

    // Cooling targets go to the end, keeping their relative order.
    let cooling_until = |i: usize| states[i].0.state.cooling_until(now);
    let (primaries, fallbacks): (Vec<Pick>, Vec<Pick>) =
        usable.iter().partition(|(i, _)| states[*i].2);
    let cands: Vec<Candidate> = primaries
        .iter()
        .map(|(i, _)| Candidate {
            weight: states[*i].1,
            ewma_ms: states[*i].0.state.ewma_ttft_ms(),
            inflight: states[*i].0.state.inflight(),
        })
        .collect();
    let mut ordered: Vec<Pick> = Vec::with_capacity(usable.len());
    if let Some(first) = balance::pick(route.balance, &cands, counter, random) {
        ordered.push(primaries[first]);
        for j in balance::rest_order(route.balance, &cands, first) {
            ordered.push(primaries[j]);
        }
    }
    ordered.extend(fallbacks);
    let (ready, cooling): (Vec<Pick>, Vec<Pick>) = ordered
        .into_iter()
        .partition(|(i, _)| cooling_until(*i).is_none());
    for (i, _) in &cooling {
        if let Some(until) = cooling_until(*i) {
            skipped.push((states[*i].0, SkipReason::Cooling { until }));
        }
    }
    let order = ready
        .into_iter()
        .chain(cooling)
        .map(|(i, probe)| Step {
            target: states[i].0,
            probe,
        })
        .collect();
    AttemptPlan {
        route,
        requested,
        order,
        skipped,
        panic,
        remediation: Vec::new(),
    }
}

// === impl AttemptPlan ===

impl<'p> AttemptPlan<'p> {
    /// How many attempts this plan allows in all.
    pub fn max_attempts(&self) -> usize {
        usize::try_from(self.route.retry.max_attempts)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// Attempt `attempt` (0-based), or `None` past `max_attempts`. The order repeats when
    /// attempts outnumber targets; a probe counts as a probe only the first time round.
    pub fn step(&self, attempt: usize) -> Option<Step<'p>> {
        if attempt >= self.max_attempts() || self.order.is_empty() {
            return None;
        }
        let mut s = self.order[attempt % self.order.len()];
        if attempt >= self.order.len() {
            s.probe = false;
        }
        Some(s)
    }

    /// The target of attempt `attempt` (0-based), or `None` past `max_attempts`.
    pub fn target(&self, attempt: usize) -> Option<&'p Arc<Target>> {
        self.step(attempt).map(|s| s.target)
    }

    /// Every attempt's target in order.
    pub fn targets(&self) -> impl Iterator<Item = &'p Arc<Target>> + '_ {
        (0..self.max_attempts()).map_while(|i| self.target(i))
    }

    /// Distinct targets in the order they will be tried.
    pub fn candidates(&self) -> impl Iterator<Item = &'p Arc<Target>> + '_ {
        self.order.iter().map(|s| s.target)
    }
}

#[cfg(test)]
mod tests;
