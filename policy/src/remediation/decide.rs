//! The decision: one tick of the remediation controller, as a pure function.
//!
//! Each rule runs a small state machine per route (per target for `failover`), an *incident*:
//!
//! | phase | moves on | to |
//! |---|---|---|
//! | (none) | the trigger holds | `Waiting` (`opened`), then at once `Active` if it can act |
//! | `Waiting` | the action can be put in place | `Active` (`action_taken`) |
//! | `Waiting` | the action cannot (last target, cap, another rule, a change this tick) | stays (`blocked`, once per reason) |
//! | `Waiting`, `Unwound`, `Exhausted` | the trigger clears | closed (`resolved`) |
//! | `Active` | the probe's verdict on the original changes | stays (`probe_result`) |
//! | `Active` | the hold has passed and the original has been healthy for the cooldown | `Unwound` (`unwound`) |
//! | `Active` (downgrade) | the guard SLO burns on the substitute | `Active` on the next candidate, or `Exhausted` (`reverted`) |
//! | `Unwound` | the trigger still holds and the original burns again | `Active` (`action_taken`) |
//! | any | the rule is removed or changes meaning, or its route or target goes | closed (`unwound` if active, `resolved`) |
//!
//! Why it does not flap: entering takes the trigger (an SRE Workbook alert, whose long window
//! keeps it up for a while); leaving takes the original's *short-window* burn (5 m, scaled)
//! being known and under 1 continuously for the cooldown, after the minimum hold. A burn that
//! oscillates around any threshold keeps resetting the cooldown, so the action stays. The
//! probe share keeps a trickle of traffic on the original so that burn stays known.
//!
//! What the probe reads (the trigger SLO's 5 m burn): for `failover`, the ejected target's own
//! status; for `downgrade_to`, the route's primary targets other than the substitute (all must
//! be healthy); for `cache_fallback`, every target of the route (one healthy one is enough);
//! for `shed`, the route's own status (shedding is unwound once the admitted traffic is served
//! well, and comes back, after its hold, if the load does).
//!
//! A rule on an anomaly condition ([`BurnCondition::Anomaly`]) runs the same machine over
//! [`AnomalyStatus`]es (route scope for route-wide actions, target scope for `failover` and the
//! per-target reads): the trigger holds while the detector flags the signal, and the probe
//! reads how far out of its band the original is ([`AnomalyStatus::excess`], healthy under 1),
//! so the hold, cooldown, probe share and caps apply unchanged.
//!
//! Safety: at most one live change (apply, switch, revert, unwind) per route per tick, taken in
//! this order: incidents whose rule went away, guard reverts and unwinds of open incidents,
//! then new actions, each group in rule order; an action touches at most its rule's
//! `max_share` of the route; `failover` never takes out a route's last target; a dry-run rule
//! records every step it would take (on top of the live overlay) and changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;

use super::anomaly::{AnomalyScope, AnomalySignal, AnomalyStatus};
use super::event::{BlockReason, Event, Transition, UnwindReason};
use super::overlay::{Applied, Incident, Overlay, Phase, Verdict};
use super::rule::{Action, BurnCondition, Guard, Rule};
use super::status::{SloStatus, TargetKey, Window};

/// The window whose burn says whether an original recovered.
const PROBE_WINDOW: Window = Window::M5;

/// One target of a route as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    pub target: TargetKey,
    /// The route's weight for it; 0 for a fallback (it serves retries only).
    pub weight: u32,
}

/// The targets each route has, so failover knows what is left and downgrade what the original
/// is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTargets {
    pub route: Arc<str>,
    /// Primary targets first, then fallbacks.
    pub targets: Vec<RouteTarget>,
}

/// The outcome of one tick: the overlay to publish and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub overlay: Overlay,
    pub transitions: Vec<Transition>,
}

/// One controller tick. `rules` are taken in order (a later rule with an earlier rule's name is
/// ignored); `routes` lists every route's targets; `current` is the last published overlay.
/// Rules on an anomaly condition see no anomaly here: use [`decide_with_anomalies`].
pub fn decide(
    now: Instant,
    statuses: &[SloStatus],
    rules: &[Rule],
    routes: &[RouteTargets],
    current: &Overlay,
) -> Decision {
    decide_with_anomalies(now, statuses, &[], rules, routes, current)
}

/// [`decide`] with the AIOps detector's statuses too, for rules on an anomaly condition. Only
/// route and target scopes are read; tenant-scope statuses are ignored.
pub fn decide_with_anomalies(
    now: Instant,
    statuses: &[SloStatus],
    anomalies: &[AnomalyStatus],
    rules: &[Rule],
    routes: &[RouteTargets],
    current: &Overlay,
) -> Decision {
    let mut seen = HashSet::new();
    let rules: Vec<&Rule> = rules
        .iter()
        .filter(|r| seen.insert(Arc::clone(&r.name)))
        .collect();
    let mut tick = Tick {
        now,
        statuses: statuses
            .iter()
            .map(|s| ((&*s.slo, &*s.route, s.target.as_ref()), s))
            .collect(),
        all_statuses: statuses,
        anomalies: anomalies
            .iter()
            .filter_map(|a| {
                let key = match &a.scope {
                    AnomalyScope::Route { route } => (a.signal, &**route, None),
                    AnomalyScope::Target { route, target } => (a.signal, &**route, Some(target)),
                    AnomalyScope::Tenant { .. } => return None,
                };
                Some((key, a))
            })
            .collect(),
        all_anomalies: anomalies,
        routes: routes.iter().map(|r| (&*r.route, r)).collect(),
        changed: HashSet::new(),
        transitions: Vec::new(),
        incidents: current.incidents.clone(),
        next_incident: current.next_incident,
    };
    let order = |name: &str| rules.iter().position(|r| *r.name == *name);
    tick.incidents
        .sort_by_key(|i| (order(&i.rule.name).unwrap_or(usize::MAX), i.id));

    tick.end_orphans(&rules);
    tick.advance_open(&rules);
    for rule in &rules {
        tick.enter(rule);
    }

    let mut overlay = Overlay {
        routes: Default::default(),
        incidents: tick.incidents,
        next_incident: tick.next_incident,
    };
    overlay.rebuild_routes();
    Decision {
        overlay,
        transitions: tick.transitions,
    }
}

type StatusKey<'a> = (&'a str, &'a str, Option<&'a TargetKey>);
type AnomalyKey<'a> = (AnomalySignal, &'a str, Option<&'a TargetKey>);

/// One status a condition reads: an SLO's, or an anomaly's for an anomaly condition.
#[derive(Clone, Copy)]
enum Reading<'a> {
    Slo(&'a SloStatus),
    Anomaly(&'a AnomalyStatus),
}

/// The statuses behind a step, as the transition carries them.
#[derive(Clone, Default)]
struct Evidence {
    slo: Vec<SloStatus>,
    anomalies: Vec<AnomalyStatus>,
}

struct Tick<'a> {
    now: Instant,
    statuses: HashMap<StatusKey<'a>, &'a SloStatus>,
    all_statuses: &'a [SloStatus],
    anomalies: HashMap<AnomalyKey<'a>, &'a AnomalyStatus>,
    all_anomalies: &'a [AnomalyStatus],
    routes: HashMap<&'a str, &'a RouteTargets>,
    /// Routes that had a live change this tick.
    changed: HashSet<Arc<str>>,
    transitions: Vec<Transition>,
    incidents: Vec<Incident>,
    next_incident: u64,
}

// === impl Tick ===

impl<'a> Tick<'a> {
    fn status(&self, slo: &str, route: &str, target: Option<&TargetKey>) -> Option<&'a SloStatus> {
        self.statuses.get(&(slo, route, target)).copied()
    }

    fn route(&self, route: &str) -> Option<&'a RouteTargets> {
        self.routes.get(route).copied()
    }

    /// What `cond` reads for `route` (and `target`): the anomaly status of its signal, or the
    /// status of `slo`.
    fn reading(
        &self,
        cond: &BurnCondition,
        slo: &str,
        route: &str,
        target: Option<&TargetKey>,
    ) -> Option<Reading<'a>> {
        match cond.anomaly_signal() {
            Some(signal) => self
                .anomalies
                .get(&(signal, route, target))
                .map(|a| Reading::Anomaly(a)),
            None => self.status(slo, route, target).map(Reading::Slo),
        }
    }

    /// Ends incidents whose rule is gone or changed meaning, or whose route or target is gone.
    fn end_orphans(&mut self, rules: &[&Rule]) {
        let mut i = 0;
        while i < self.incidents.len() {
            let inc = &self.incidents[i];
            let current = rules.iter().find(|r| r.name == inc.rule.name);
            let reason = match current {
                Some(rule) if same_meaning(rule, &inc.rule) => {
                    let route = self.route(&rule.route);
                    let target_known = match (&inc.target, route) {
                        (_, None) => false,
                        (None, Some(_)) => true,
                        (Some(t), Some(r)) => r.targets.iter().any(|rt| rt.target == *t),
                    };
                    if target_known {
                        // Take over the settings that do not change what the incident means.
                        self.incidents[i].rule = (*rule).clone();
                        i += 1;
                        continue;
                    }
                    UnwindReason::RouteChanged
                }
                _ => UnwindReason::RuleChanged,
            };
            if self.close(i, reason) {
                self.incidents.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Takes an incident down for `reason`; `false` when a live unwind has to wait a tick.
    fn close(&mut self, i: usize, reason: UnwindReason) -> bool {
        let mut inc = self.incidents[i].clone();
        let live_active = inc.phase == Phase::Active && !inc.rule.dry_run;
        if live_active && self.changed.contains(&inc.rule.route) {
            self.block(&mut inc, BlockReason::OneChangePerTick, Evidence::default());
            self.incidents[i] = inc;
            return false;
        }
        if inc.phase == Phase::Active {
            self.unwind(&mut inc, reason, Evidence::default());
        }
        let evidence = self.trigger_evidence(&inc);
        self.resolve(&inc, evidence);
        true
    }

    /// Guard reverts, probe results and unwinds of the incidents already open, and resolving
    /// those whose trigger cleared while nothing is in place.
    fn advance_open(&mut self, rules: &[&Rule]) {
        let mut i = 0;
        while i < self.incidents.len() {
            let mut inc = self.incidents[i].clone();
            let Some(rule) = rules.iter().find(|r| r.name == inc.rule.name).copied() else {
                i += 1;
                continue;
            };
            let holds = self.trigger_holds(rule, inc.target.as_ref());
            let mut closed = false;
            match inc.phase {
                Phase::Waiting | Phase::Unwound | Phase::Exhausted | Phase::Overridden => {
                    if !holds {
                        let evidence = self.trigger_evidence(&inc);
                        self.resolve(&inc, evidence);
                        closed = true;
                    }
                }
                Phase::Active => {
                    if !self.guard(rule, &mut inc) {
                        self.probe_and_unwind(rule, &mut inc);
                        if inc.phase == Phase::Unwound && !holds {
                            let evidence = self.trigger_evidence(&inc);
                            self.resolve(&inc, evidence);
                            closed = true;
                        }
                    }
                }
            }
            if closed {
                self.incidents.remove(i);
            } else {
                self.incidents[i] = inc;
                i += 1;
            }
        }
    }

    /// For an active downgrade: when the guard SLO burns on the substitute, moves to the next
    /// candidate or back to the original. Returns whether the guard acted (or wanted to).
    fn guard(&mut self, rule: &Rule, inc: &mut Incident) -> bool {
        let (Some(guard), Some(Applied::DowngradeTo { model, .. })) = (&rule.guard, &inc.applied)
        else {
            return false;
        };
        let tripped = self.guard_tripped(guard, &rule.route, model);
        if tripped.is_empty() {
            return false;
        }
        let tripped = Evidence::of(tripped);
        let from = Arc::clone(model);
        if !rule.dry_run && self.changed.contains(&rule.route) {
            self.block(inc, BlockReason::OneChangePerTick, tripped);
            return true;
        }
        inc.rejected.push(Arc::clone(&from));
        let to = match self.downgrade(rule, inc) {
            Ok(Applied::DowngradeTo { model, share }) => {
                inc.applied = Some(Applied::DowngradeTo {
                    model: Arc::clone(&model),
                    share,
                });
                inc.applied_at = Some(self.now);
                inc.healthy_since = None;
                inc.verdict = Some(self.evidence(rule, inc).0);
                Some(model)
            }
            Ok(_) | Err(_) => {
                inc.applied = None;
                inc.applied_at = None;
                inc.healthy_since = None;
                inc.verdict = None;
                inc.phase = Phase::Exhausted;
                None
            }
        };
        inc.blocked = None;
        if !rule.dry_run {
            self.changed.insert(Arc::clone(&rule.route));
        }
        self.push(
            inc,
            Event::Reverted {
                from,
                to,
                guard_slo: Arc::clone(&guard.slo),
            },
            tripped,
        );
        true
    }

    /// Updates what the probe says about the original, and unwinds after the hold once it has
    /// been healthy for the cooldown.
    fn probe_and_unwind(&mut self, rule: &Rule, inc: &mut Incident) {
        let (verdict, burn, evidence) = self.evidence(rule, inc);
        if inc.verdict != Some(verdict) {
            inc.verdict = Some(verdict);
            self.push(inc, Event::ProbeResult { verdict, burn }, evidence.clone());
        }
        if verdict == Verdict::Healthy {
            inc.healthy_since.get_or_insert(self.now);
        } else {
            inc.healthy_since = None;
        }
        let held = inc
            .applied_at
            .is_some_and(|at| self.now.saturating_duration_since(at) >= rule.hold);
        let cooled = inc
            .healthy_since
            .is_some_and(|at| self.now.saturating_duration_since(at) >= rule.cooldown);
        if !(held && cooled) {
            return;
        }
        if !rule.dry_run && self.changed.contains(&rule.route) {
            self.block(inc, BlockReason::OneChangePerTick, evidence);
            return;
        }
        self.unwind(inc, UnwindReason::Recovered, evidence);
    }

    /// Takes the action back and records it.
    fn unwind(&mut self, inc: &mut Incident, reason: UnwindReason, evidence: Evidence) {
        let held = inc.applied_at.map_or_else(Default::default, |at| {
            self.now.saturating_duration_since(at)
        });
        let healthy_for = inc.healthy_since.map_or_else(Default::default, |at| {
            self.now.saturating_duration_since(at)
        });
        inc.phase = Phase::Unwound;
        inc.applied = None;
        inc.applied_at = None;
        inc.healthy_since = None;
        inc.verdict = None;
        inc.blocked = None;
        if !inc.rule.dry_run {
            self.changed.insert(Arc::clone(&inc.rule.route));
        }
        self.push(
            inc,
            Event::Unwound {
                reason,
                held,
                healthy_for,
            },
            evidence,
        );
    }

    fn resolve(&mut self, inc: &Incident, evidence: Evidence) {
        let open_for = self.now.saturating_duration_since(inc.opened_at);
        self.push(inc, Event::Resolved { open_for }, evidence);
    }

    /// Opens an incident for each subject of `rule` whose trigger holds, and puts actions in
    /// place for incidents waiting for one (or unwound whose original burns again).
    fn enter(&mut self, rule: &Rule) {
        let Some(route) = self.route(&rule.route) else {
            return;
        };
        let subjects: Vec<Option<TargetKey>> = match rule.action {
            Action::Failover => route
                .targets
                .iter()
                .map(|t| Some(t.target.clone()))
                .collect(),
            _ => vec![None],
        };
        for subject in subjects {
            let holds = self.trigger_holds(rule, subject.as_ref());
            let existing = self
                .incidents
                .iter()
                .position(|i| i.rule.name == rule.name && i.target == subject);
            let ix = match existing {
                Some(ix) => ix,
                None if holds => {
                    let inc = Incident {
                        id: self.next_incident,
                        rule: rule.clone(),
                        target: subject,
                        opened_at: self.now,
                        phase: Phase::Waiting,
                        applied: None,
                        applied_at: None,
                        healthy_since: None,
                        verdict: None,
                        rejected: Vec::new(),
                        blocked: None,
                    };
                    self.next_incident += 1;
                    let evidence = self.trigger_evidence(&inc);
                    self.push(&inc, Event::Opened, evidence);
                    self.incidents.push(inc);
                    self.incidents.len() - 1
                }
                None => continue,
            };
            let mut inc = self.incidents[ix].clone();
            let wants = holds
                && match inc.phase {
                    Phase::Waiting => true,
                    Phase::Unwound => self.evidence(rule, &inc).0 == Verdict::Burning,
                    Phase::Active | Phase::Exhausted | Phase::Overridden => false,
                };
            if wants {
                self.apply(rule, &mut inc);
                self.incidents[ix] = inc;
            }
        }
    }

    /// Puts the rule's action in place for `inc`, or records why it cannot be.
    fn apply(&mut self, rule: &Rule, inc: &mut Incident) {
        let evidence = self.trigger_evidence(inc);
        if !rule.dry_run && self.changed.contains(&rule.route) {
            self.block(inc, BlockReason::OneChangePerTick, evidence);
            return;
        }
        let applied = match &rule.action {
            Action::Failover => self.failover(rule, inc),
            Action::DowngradeTo(_) => self.downgrade(rule, inc),
            Action::CacheFallback => self
                .whole_route(rule, inc)
                .map(|share| Applied::CacheFallback { share }),
            Action::Shed { max_priority } => {
                self.whole_route(rule, inc).map(|share| Applied::Shed {
                    max_priority: *max_priority,
                    share,
                })
            }
        };
        match applied {
            Err(reason) => self.block(inc, reason, evidence),
            Ok(applied) => {
                inc.phase = Phase::Active;
                inc.applied = Some(applied.clone());
                inc.applied_at = Some(self.now);
                inc.healthy_since = None;
                inc.blocked = None;
                // The verdict it was entered on, so the first probe result is a change.
                inc.verdict = Some(self.evidence(rule, inc).0);
                if !rule.dry_run {
                    self.changed.insert(Arc::clone(&rule.route));
                }
                self.push(inc, Event::ActionTaken { applied }, evidence);
            }
        }
    }

    fn failover(&self, rule: &Rule, inc: &Incident) -> Result<Applied, BlockReason> {
        let route = self.route(&rule.route).ok_or(BlockReason::UnknownTarget)?;
        let target = inc.target.as_ref().ok_or(BlockReason::UnknownTarget)?;
        if !route.targets.iter().any(|t| t.target == *target) {
            return Err(BlockReason::UnknownTarget);
        }
        let mut used = 0.0;
        let mut out: HashSet<&TargetKey> = HashSet::new();
        for other in self.in_effect(inc) {
            if let Some(Applied::Failover { target: t, share }) = &other.applied {
                if t == target {
                    return Err(BlockReason::TakenBy {
                        rule: Arc::clone(&other.rule.name),
                    });
                }
                out.insert(t);
                if other.rule.name == rule.name {
                    used += weight_share(route, t) * share;
                }
            }
        }
        let left = route
            .targets
            .iter()
            .filter(|t| t.target != *target && !out.contains(&t.target))
            .count();
        if left == 0 {
            return Err(BlockReason::LastTarget);
        }
        let mut share = 1.0 - rule.probe();
        let ws = weight_share(route, target);
        if ws > 0.0 {
            share = share.min((rule.cap() - used) / ws);
        }
        if share <= 0.0 {
            return Err(BlockReason::MaxShare);
        }
        Ok(Applied::Failover {
            target: target.clone(),
            share,
        })
    }

    /// The first usable downgrade candidate.
    fn downgrade(&self, rule: &Rule, inc: &Incident) -> Result<Applied, BlockReason> {
        let Action::DowngradeTo(candidates) = &rule.action else {
            return Err(BlockReason::NoCandidate);
        };
        self.taken_by(inc, |a| matches!(a, Applied::DowngradeTo { .. }))?;
        let share = self.whole_route_share(rule)?;
        let serves_only = |model: &str| {
            self.route(&rule.route).is_some_and(|r| {
                let primary: Vec<_> = r.targets.iter().filter(|t| t.weight > 0).collect();
                !primary.is_empty() && primary.iter().all(|t| &*t.target.model == model)
            })
        };
        let guard_burning = |model: &str| {
            rule.guard
                .as_ref()
                .is_some_and(|g| !self.guard_tripped(g, &rule.route, model).is_empty())
        };
        candidates
            .iter()
            .find(|c| !inc.rejected.contains(c) && !serves_only(c) && !guard_burning(c))
            .map(|c| Applied::DowngradeTo {
                model: Arc::clone(c),
                share,
            })
            .ok_or(BlockReason::NoCandidate)
    }

    /// The share of a route-wide action (cache fallback, shed), after checking no other rule
    /// holds the same kind of entry.
    fn whole_route(&self, rule: &Rule, inc: &Incident) -> Result<f64, BlockReason> {
        let kind = rule.action.kind();
        self.taken_by(inc, |a| applied_kind(a) == kind)?;
        self.whole_route_share(rule)
    }

    fn whole_route_share(&self, rule: &Rule) -> Result<f64, BlockReason> {
        let share = (1.0 - rule.probe()).min(rule.cap());
        if share > 0.0 {
            Ok(share)
        } else {
            Err(BlockReason::MaxShare)
        }
    }

    fn taken_by(&self, inc: &Incident, same: impl Fn(&Applied) -> bool) -> Result<(), BlockReason> {
        match self
            .in_effect(inc)
            .find(|o| o.applied.as_ref().is_some_and(&same))
        {
            Some(other) => Err(BlockReason::TakenBy {
                rule: Arc::clone(&other.rule.name),
            }),
            None => Ok(()),
        }
    }

    /// The other incidents whose actions are in place as `inc` sees the route: the live ones,
    /// plus, for a dry-run rule, its own earlier would-be actions.
    fn in_effect<'s>(&'s self, inc: &'s Incident) -> impl Iterator<Item = &'s Incident> + 's {
        self.incidents.iter().filter(move |o| {
            o.id != inc.id
                && o.phase == Phase::Active
                && o.rule.route == inc.rule.route
                && (!o.rule.dry_run || o.rule.name == inc.rule.name)
        })
    }

    /// Whether the rule's trigger holds for `subject` (a target, for failover).
    fn trigger_holds(&self, rule: &Rule, subject: Option<&TargetKey>) -> bool {
        let when = &rule.when;
        let Some(reading) = self.reading(&when.burn, &when.slo, &rule.route, subject) else {
            return false;
        };
        if !reading.meets(&when.burn) {
            return false;
        }
        if !when.no_healthy_target {
            return true;
        }
        let Some(route) = self.route(&rule.route) else {
            return false;
        };
        let ejected: HashSet<&TargetKey> = self
            .incidents
            .iter()
            .filter(|o| o.phase == Phase::Active && !o.rule.dry_run && o.rule.route == rule.route)
            .filter_map(|o| match &o.applied {
                Some(Applied::Failover { target, .. }) => Some(target),
                _ => None,
            })
            .collect();
        !route.targets.is_empty()
            && route.targets.iter().all(|t| {
                ejected.contains(&t.target)
                    || self
                        .reading(&when.burn, &when.slo, &rule.route, Some(&t.target))
                        .is_some_and(|r| r.meets(&when.burn))
            })
    }

    /// The trigger's status for an incident, as evidence.
    fn trigger_evidence(&self, inc: &Incident) -> Evidence {
        let when = &inc.rule.when;
        Evidence::of(self.reading(&when.burn, &when.slo, &inc.rule.route, inc.target.as_ref()))
    }

    /// What the probe traffic says about the original: the verdict, the burn (or, for an
    /// anomaly condition, the excess) it rests on and the statuses read.
    fn evidence(&self, rule: &Rule, inc: &Incident) -> (Verdict, Option<f64>, Evidence) {
        let (cond, slo) = (&rule.when.burn, &*rule.when.slo);
        let read_one = |target: Option<&TargetKey>| self.reading(cond, slo, &rule.route, target);
        let per_target = |pick: &dyn Fn(&RouteTarget) -> bool| -> Vec<Reading<'a>> {
            self.route(&rule.route)
                .map(|r| {
                    r.targets
                        .iter()
                        .filter(|t| pick(t))
                        .filter_map(|t| read_one(Some(&t.target)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let read: Vec<Reading<'a>> = match &rule.action {
            Action::Failover => read_one(inc.target.as_ref()).into_iter().collect(),
            Action::Shed { .. } => read_one(None).into_iter().collect(),
            Action::CacheFallback => per_target(&|_| true),
            Action::DowngradeTo(_) => {
                let substitute = match &inc.applied {
                    Some(Applied::DowngradeTo { model, .. }) => Some(Arc::clone(model)),
                    _ => None,
                };
                let original = |t: &RouteTarget| substitute.as_deref() != Some(&*t.target.model);
                let primary = per_target(&|t| t.weight > 0 && original(t));
                if primary.is_empty() {
                    per_target(&original)
                } else {
                    primary
                }
            }
        };
        let burns: Vec<f64> = read.iter().filter_map(Reading::probe).collect();
        let (verdict, burn) = if burns.is_empty() {
            (Verdict::NoData, None)
        } else if matches!(rule.action, Action::CacheFallback) {
            // Serving from cache can stop once any target serves well again.
            let best = burns.iter().copied().fold(f64::INFINITY, f64::min);
            (verdict_of(best), Some(best))
        } else {
            // Every probed original must be healthy.
            let worst = burns.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (verdict_of(worst), Some(worst))
        };
        (verdict, burn, Evidence::of(read))
    }

    /// The per-target statuses of the guard on `route` whose target serves `model` and that
    /// meet the guard's condition.
    fn guard_tripped(&self, guard: &Guard, route: &str, model: &str) -> Vec<Reading<'a>> {
        let serves = |target: Option<&TargetKey>| target.is_some_and(|t| &*t.model == model);
        let cond = &guard.burn;
        match cond.anomaly_signal() {
            Some(signal) => self
                .all_anomalies
                .iter()
                .filter(|a| {
                    a.signal == signal
                        && a.scope.route().is_some_and(|r| &**r == route)
                        && serves(a.scope.target())
                        && cond.holds_anomaly(a)
                })
                .map(Reading::Anomaly)
                .collect(),
            None => self
                .all_statuses
                .iter()
                .filter(|s| {
                    *s.slo == *guard.slo
                        && &*s.route == route
                        && serves(s.target.as_ref())
                        && cond.holds(s)
                })
                .map(Reading::Slo)
                .collect(),
        }
    }

    /// Records a block once per reason.
    fn block(&mut self, inc: &mut Incident, reason: BlockReason, evidence: Evidence) {
        if inc.blocked.as_ref() == Some(&reason) {
            return;
        }
        inc.blocked = Some(reason.clone());
        self.push(inc, Event::Blocked { reason }, evidence);
    }

    fn push(&mut self, inc: &Incident, event: Event, evidence: Evidence) {
        self.transitions.push(transition(inc, event, evidence));
    }
}

fn transition(inc: &Incident, event: Event, evidence: Evidence) -> Transition {
    let rule = &inc.rule;
    Transition {
        incident: inc.id,
        route: Arc::clone(&rule.route),
        rule: Arc::clone(&rule.name),
        action: rule.action.kind(),
        target: inc.target.clone(),
        dry_run: rule.dry_run,
        slo: Arc::clone(&rule.when.slo),
        condition: rule.when.burn,
        event,
        evidence: evidence.slo,
        anomalies: evidence.anomalies,
        runbook_url: rule.runbook_url.clone(),
    }
}

/// [`force_unwind`] found no action in place to take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotActive {
    /// No open remediation incident has this id.
    Unknown,
    /// The incident is open but its action is not in place (waiting, unwound, exhausted).
    NothingInPlace,
}

/// An operator takes incident `id`'s action back now: it moves to
/// [`Phase::Overridden`](super::Phase::Overridden), out of routing at once, and nothing is
/// put back until its trigger clears (then it resolves as usual). The one transition is the
/// `unwound` step, with reason `operator`.
pub fn force_unwind(now: Instant, current: &Overlay, id: u64) -> Result<Decision, NotActive> {
    let mut overlay = current.clone();
    let inc = overlay
        .incidents
        .iter_mut()
        .find(|i| i.id == id)
        .ok_or(NotActive::Unknown)?;
    if inc.phase != Phase::Active {
        return Err(NotActive::NothingInPlace);
    }
    let held = inc
        .applied_at
        .map_or_else(Default::default, |at| now.saturating_duration_since(at));
    let healthy_for = inc
        .healthy_since
        .map_or_else(Default::default, |at| now.saturating_duration_since(at));
    inc.phase = Phase::Overridden;
    inc.applied = None;
    inc.applied_at = None;
    inc.healthy_since = None;
    inc.verdict = None;
    inc.blocked = None;
    let unwound = transition(
        inc,
        Event::Unwound {
            reason: UnwindReason::Operator,
            held,
            healthy_for,
        },
        Evidence::default(),
    );
    overlay.rebuild_routes();
    Ok(Decision {
        overlay,
        transitions: vec![unwound],
    })
}

// === impl Reading ===

impl Reading<'_> {
    fn meets(&self, cond: &BurnCondition) -> bool {
        match self {
            Self::Slo(s) => cond.holds(s),
            Self::Anomaly(a) => cond.holds_anomaly(a),
        }
    }

    /// What the probe reads: the short-window burn, or how far out of its band the signal is;
    /// both are healthy under 1.
    fn probe(&self) -> Option<f64> {
        match self {
            Self::Slo(s) => s.burn(PROBE_WINDOW),
            Self::Anomaly(a) => a.excess(),
        }
    }
}

// === impl Evidence ===

impl Evidence {
    fn of<'a>(readings: impl IntoIterator<Item = Reading<'a>>) -> Self {
        let mut out = Self::default();
        for r in readings {
            match r {
                Reading::Slo(s) => out.slo.push(s.clone()),
                Reading::Anomaly(a) => out.anomalies.push(a.clone()),
            }
        }
        out
    }
}

/// Whether `new` still means what `old` meant for an open incident.
fn same_meaning(new: &Rule, old: &Rule) -> bool {
    new.route == old.route
        && new.when == old.when
        && new.action == old.action
        && new.dry_run == old.dry_run
}

fn verdict_of(burn: f64) -> Verdict {
    if burn < 1.0 {
        Verdict::Healthy
    } else {
        Verdict::Burning
    }
}

/// The share of the route's primary traffic `target` gets: its weight over the total, or an
/// equal share when no target has a weight; 0 for a fallback of a weighted route.
fn weight_share(route: &RouteTargets, target: &TargetKey) -> f64 {
    let total: u64 = route.targets.iter().map(|t| u64::from(t.weight)).sum();
    let Some(t) = route.targets.iter().find(|t| t.target == *target) else {
        return 0.0;
    };
    if total == 0 {
        return 1.0 / route.targets.len() as f64;
    }
    f64::from(t.weight) / total as f64
}

fn applied_kind(applied: &Applied) -> super::rule::ActionKind {
    use super::rule::ActionKind;
    match applied {
        Applied::Failover { .. } => ActionKind::Failover,
        Applied::DowngradeTo { .. } => ActionKind::DowngradeTo,
        Applied::CacheFallback { .. } => ActionKind::CacheFallback,
        Applied::Shed { .. } => ActionKind::Shed,
    }
}
