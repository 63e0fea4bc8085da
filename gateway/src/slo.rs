//! The SLO evaluator and remediation controller: one background service that owns the SLO
//! engine, feeds it every finished request (and every quality score), and on each tick
//! publishes the SLO gauges, runs the remediation decision and applies its outcome.
//!
//! ```text
//! request ─► recorder ─► SloEvent feed ─► SloService ─┬─► engine (buckets per route, target)
//!                                                     ├─► gauges, /admin/slo
//!                                                     ├─► decide() ─► overlay (arc-swap) ─► routing
//!                                                     └─► incident log (fsync) ─► push feed
//! ```
//!
//! Nothing here is on the request path: requests hand their record to the recorder with one
//! `offer`, and read the overlay with one atomic load. The decision itself is
//! `sluice_policy::remediation::decide`, a pure function; this module only gathers its inputs
//! (statuses, the policy's rules and routes, the last overlay) and applies its outputs.
//!
//! The engine's counts are saved to `<data_dir>/slo.json` every `slo.snapshot_every` and at
//! shutdown, and restored at start (shifted by the time the process was down), so a restart
//! does not forget how much error budget was spent. The overlay is not saved: after a restart
//! the controller decides afresh from the restored counts within a tick or two.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use sluice_observability::aiops::AiopsSample;
use sluice_observability::metrics::{
    IncidentEventLabels, RemediationLabels, SloEventLabels, SloLabels, SloWindowLabels,
};
use sluice_observability::service::{Feed, Intake, Service, Shutdown};
use sluice_observability::slo::{
    ErrorClass, QualitySample, SloEngine, SloSample, SloSpec, WindowScale,
};
use sluice_observability::{
    AttemptOutcome, AttemptRecord, ErrorKind, Outcome, RequestRecord, SpanSink,
};
use sluice_policy::Policy;
use sluice_policy::remediation::{
    self, AlertLevel, IncidentEvent, Overlay, SloStatus, TargetKey, Window,
};
use tokio::time::Instant;

use crate::aiops::{Aiops, AiopsView};
use crate::console::operator::{Command, Done, Op, Refused};
use crate::incidents::{self, IncidentLog, Timelines};
use crate::state::AppState;

/// Events waiting for the evaluator; more are dropped (and counted).
pub const QUEUE: usize = 65_536;
/// The engine's snapshot in the data directory.
pub const SNAPSHOT_FILE: &str = "slo.json";
/// How often targets nobody has sent to for a long time are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often what the recorder handed over is taken in, between evaluations. Taken in only
/// on the evaluation tick (1 s by default), a second's requests at 5k req/s cost a core
/// several milliseconds in one go, and requests whose threads woke meanwhile waited behind
/// it, in the tail of their latency (`loadtest/RESULTS.md`). The recorder drains its own
/// queue on the same short tick.
const INTAKE_EVERY: Duration = crate::record::TICK;

/// What the evaluator is fed.
#[derive(Debug, Clone, PartialEq)]
pub enum SloEvent {
    /// A finished request, and its failed attempts that a later attempt (or a stale cache
    /// answer) took over from (counted for their targets only).
    Request {
        sample: SloSample,
        retried: Vec<SloSample>,
    },
    /// A judge's or an app's score of an answer.
    Quality(QualitySample),
    /// A finished request of any route, for the AIOps baselines (`aiops.enabled`).
    Aiops(AiopsSample),
}

/// How a finished request counts for the SLOs of its route; `None` when it never reached a
/// route.
pub fn event_of(r: &RequestRecord) -> Option<SloEvent> {
    let route = r.route.as_ref()?;
    let key = |provider: &Arc<str>, model: &Arc<str>| TargetKey {
        provider: Arc::clone(provider),
        model: Arc::clone(model),
    };
    let failed = |a: &&AttemptRecord| {
        !matches!(
            a.outcome,
            AttemptOutcome::Ok | AttemptOutcome::ClientError | AttemptOutcome::Cancelled
        )
    };
    // A stale cache answer that stood in after every attempt failed: the client was answered
    // (the route counts it as such), but the last target failed like the others and burns too.
    let stood_in = r.outcome == Outcome::Ok && r.attempts.last().is_some_and(|a| failed(&a));
    let (target, taken_over) = if stood_in {
        (None, r.attempts.len())
    } else {
        (
            r.attempts.last().map(|a| key(&a.provider, &a.model)),
            r.attempts.len().saturating_sub(1),
        )
    };
    let retried = r
        .attempts
        .iter()
        .take(taken_over)
        .filter(failed)
        .map(|a| SloSample {
            route: Arc::clone(route),
            target: Some(key(&a.provider, &a.model)),
            class: ErrorClass::Bad,
            ttft: None,
            duration: a.duration,
        })
        .collect();
    Some(SloEvent::Request {
        sample: SloSample {
            route: Arc::clone(route),
            target,
            class: class_of(r),
            ttft: r.time_to_first_chunk,
            duration: r.duration,
        },
        retried,
    })
}

/// `errors`: failures are Sluice's or its providers'; what the client did (a bad request, a
/// cancel) and what Sluice refused on purpose (shedding, draining) count for nothing.
pub fn class_of(r: &RequestRecord) -> ErrorClass {
    match r.outcome {
        Outcome::Ok => ErrorClass::Good,
        Outcome::ClientError | Outcome::Cancelled => ErrorClass::Excluded,
        _ if matches!(
            r.error_type,
            Some(ErrorKind::LoadShed | ErrorKind::Draining)
        ) =>
        {
            ErrorClass::Excluded
        }
        _ => ErrorClass::Bad,
    }
}

/// What the admin views read: the last evaluation's statuses and the incident timelines.
#[derive(Debug, Default)]
pub struct SloView {
    statuses: ArcSwap<Vec<SloStatus>>,
    timelines: Mutex<Timelines>,
    aiops: ArcSwap<AiopsView>,
    paused: ArcSwap<Vec<PausedRule>>,
}

/// A remediation rule an operator put in dry-run, as `/admin/slo` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PausedRule {
    pub rule: Arc<str>,
    pub by: Arc<str>,
    pub since_unix_ms: u64,
}

impl SloView {
    /// Every SLO's status (the route's, then each target's) as of the last tick.
    pub fn statuses(&self) -> Arc<Vec<SloStatus>> {
        self.statuses.load_full()
    }

    /// `GET /admin/anomalies`: the AIOps detector as of the last tick.
    pub fn anomalies(&self) -> Arc<AiopsView> {
        self.aiops.load_full()
    }

    /// The rules operators paused (in dry-run until resumed).
    pub fn paused(&self) -> Arc<Vec<PausedRule>> {
        self.paused.load_full()
    }

    /// `GET /admin/incidents`.
    pub fn incidents(&self, overlay: &Overlay) -> serde_json::Value {
        self.lock().view(overlay)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timelines> {
        self.timelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The evaluator and controller service.
pub struct SloService {
    state: Arc<AppState>,
    intake: Intake<SloEvent>,
    push: Feed<IncidentEvent>,
    dir: PathBuf,
    engine: SloEngine,
    aiops: Aiops,
    generation: u64,
    log: Option<IncidentLog>,
    batch: Vec<SloEvent>,
    /// Route-level (slo, route) pairs whose gauges were set, so gone ones can be removed.
    published: HashSet<(Arc<str>, Arc<str>)>,
    /// (route, action) pairs whose `remediation_active` gauge was set.
    active: HashSet<(Arc<str>, &'static str)>,
    last_prune: Instant,
    /// Operator commands (`console::operator`); `None` takes none.
    commands: Option<Intake<Command>>,
    /// Incident events also go here, as OTLP log records (to destinations taking logs).
    spans: SpanSink,
    /// Rules paused by an operator: run in dry-run until resumed. Kept across reloads (a
    /// rule that a reload removes stays listed, and is paused again if it comes back).
    paused: BTreeMap<Arc<str>, PausedRule>,
}

impl SloService {
    /// The service for the serving policy, with the engine's counts and the incident
    /// timelines read back from `dir`. Problems with either are logged, never fatal: the
    /// gateway serves, and counts afresh.
    pub fn start(
        state: Arc<AppState>,
        intake: Intake<SloEvent>,
        push: Feed<IncidentEvent>,
        dir: PathBuf,
    ) -> Result<Self, String> {
        let policy = state.policy.snapshot();
        let now = Instant::now();
        let mut engine = SloEngine::new(SloSpec::all_of(&policy.config), scale(&policy), now)
            .map_err(|e| format!("cannot start the SLO engine: {e}"))?;
        let snapshot = dir.join(SNAPSHOT_FILE);
        match std::fs::read(&snapshot) {
            Ok(bytes) => match engine.restore(&bytes, now, SystemTime::now()) {
                Ok(report) => tracing::info!(
                    file = %snapshot.display(),
                    report = ?report,
                    "SLO state restored."
                ),
                Err(e) => tracing::warn!(
                    file = %snapshot.display(),
                    error = %e,
                    "Cannot restore SLO state; counting from zero."
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                file = %snapshot.display(),
                error = %e,
                "Cannot read SLO state; counting from zero."
            ),
        }
        let timelines = match incidents::read(&dir) {
            Ok((events, unreadable)) => {
                if unreadable > 0 {
                    tracing::warn!(
                        dir = %dir.display(),
                        unreadable,
                        "Some incident log lines could not be read; they are left out."
                    );
                }
                Timelines::from_events(events)
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Cannot read the incident log.");
                Timelines::default()
            }
        };
        // Incident numbers continue where the log left off.
        state
            .runtime
            .publish_overlay(Arc::new(Overlay::new(timelines.max_id() + 1)));
        *state.slo.lock() = timelines;
        let log = open_log(&dir);
        let aiops = Aiops::start(policy.config.aiops, &dir, now);
        Ok(Self {
            aiops,
            generation: policy.generation,
            state,
            intake,
            push,
            dir,
            engine,
            log,
            batch: Vec::with_capacity(1024),
            published: HashSet::new(),
            active: HashSet::new(),
            last_prune: now,
            commands: None,
            spans: SpanSink::disabled(),
            paused: BTreeMap::new(),
        })
    }

    /// Takes operator commands from `commands`.
    pub fn with_commands(mut self, commands: Intake<Command>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Sends incident events to the telemetry destinations that take logs, too.
    pub fn with_spans(mut self, spans: SpanSink) -> Self {
        self.spans = spans;
        self
    }

    /// Applies one operator command and answers it. The event goes through [`Self::record`]
    /// like the controller's own, so it is in the log, the timelines and the push feed.
    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let Command {
            op,
            by,
            note,
            reply,
        } = cmd;
        let operator = |op: remediation::OperatorOp| remediation::Event::Operator {
            op,
            by: Arc::clone(&by),
            note: note.clone(),
        };
        let step = |t: &remediation::Transition, event: remediation::Event| {
            let mut t = t.clone();
            t.event = event;
            t.evidence.clear();
            t.anomalies.clear();
            IncidentEvent::new(t, wall)
        };
        let outcome = match op {
            Op::Acknowledge { incident } => {
                let first = self
                    .state
                    .slo
                    .lock()
                    .first_step(incident)
                    .map(|e| e.transition.clone());
                match first {
                    None => Err(Refused::UnknownIncident(incident)),
                    Some(t) => {
                        self.record(vec![step(
                            &t,
                            operator(remediation::OperatorOp::Acknowledged),
                        )]);
                        Ok(Done {
                            incidents: vec![incident],
                        })
                    }
                }
            }
            Op::Unwind { incident } => {
                let published = self.state.runtime.overlay_full();
                match remediation::force_unwind(now, &published, incident) {
                    Err(remediation::NotActive::Unknown) => Err(Refused::UnknownIncident(incident)),
                    Err(remediation::NotActive::NothingInPlace) => {
                        Err(Refused::NothingInPlace(incident))
                    }
                    Ok(decision) => {
                        self.publish_active(&decision.overlay);
                        self.state
                            .runtime
                            .publish_overlay(Arc::new(decision.overlay));
                        let mut events = Vec::with_capacity(1 + decision.transitions.len());
                        if let Some(first) = decision.transitions.first() {
                            events
                                .push(step(first, operator(remediation::OperatorOp::ForcedUnwind)));
                        }
                        events.extend(
                            decision
                                .transitions
                                .into_iter()
                                .map(|t| IncidentEvent::new(t, wall)),
                        );
                        self.record(events);
                        Ok(Done {
                            incidents: vec![incident],
                        })
                    }
                }
            }
            Op::Pause { rule, paused } => self.pause(&rule, paused, &by, note.clone(), wall),
        };
        if let Err(e) = &outcome {
            tracing::info!(by = %by, error = %e, "Operator command refused.");
        }
        // The admin request may have given up waiting; the command stands either way.
        let _ = reply.send(outcome);
    }

    /// Pauses or resumes `rule`: the next tick runs it in dry-run (or live again), which
    /// takes a live action back through the decision's own rule-changed path. The event goes
    /// on each of the rule's open incidents, or on a notice of its own when none is open.
    fn pause(
        &mut self,
        rule: &Arc<str>,
        paused: bool,
        by: &Arc<str>,
        note: Option<Arc<str>>,
        wall: SystemTime,
    ) -> Result<Done, Refused> {
        let policy = self.state.policy.snapshot();
        let Some(r) = policy.remediation_rules().iter().find(|r| r.name == *rule) else {
            return Err(Refused::UnknownRule(Arc::clone(rule)));
        };
        let op = if paused {
            remediation::OperatorOp::PausedRule
        } else {
            remediation::OperatorOp::ResumedRule
        };
        let stamp = IncidentEvent::new(
            remediation::Transition {
                incident: 0,
                route: Arc::clone(&r.route),
                rule: Arc::clone(&r.name),
                action: r.action.kind(),
                target: None,
                dry_run: r.dry_run || self.paused.contains_key(rule),
                slo: Arc::clone(&r.when.slo),
                condition: r.when.burn,
                event: remediation::Event::Operator {
                    op,
                    by: Arc::clone(by),
                    note,
                },
                evidence: Vec::new(),
                anomalies: Vec::new(),
                runbook_url: r.runbook_url.clone(),
            },
            wall,
        );
        if paused {
            self.paused.insert(
                Arc::clone(rule),
                PausedRule {
                    rule: Arc::clone(rule),
                    by: Arc::clone(by),
                    since_unix_ms: stamp.at_unix_ms,
                },
            );
        } else {
            self.paused.remove(rule);
        }
        self.state
            .slo
            .paused
            .store(Arc::new(self.paused.values().cloned().collect()));
        let overlay = self.state.runtime.overlay_full();
        let mut ids: Vec<u64> = overlay
            .incidents()
            .iter()
            .filter(|i| i.rule.name == *rule)
            .map(|i| i.id)
            .collect();
        if ids.is_empty() {
            let mut next = (*overlay).clone();
            ids.push(next.reserve_incident());
            self.state.runtime.publish_overlay(Arc::new(next));
        }
        let events = ids
            .iter()
            .map(|id| {
                let mut e = stamp.clone();
                e.transition.incident = *id;
                if let Some(inc) = overlay.incidents().iter().find(|i| i.id == *id) {
                    e.transition.target.clone_from(&inc.target);
                }
                e
            })
            .collect();
        self.record(events);
        Ok(Done { incidents: ids })
    }

    /// Takes in what arrived since the last call.
    fn ingest(&mut self, now: Instant) {
        let metrics = &self.state.metrics;
        let count = |spec: &SloSpec, good: bool| {
            metrics
                .slo_events
                .get_or_create(&SloEventLabels {
                    slo: Arc::clone(&spec.name),
                    route: Arc::clone(&spec.route),
                    good: if good { "true" } else { "false" },
                })
                .inc();
        };
        while self.intake.drain_into(&mut self.batch, 1024) > 0 {
            for event in self.batch.drain(..) {
                match event {
                    SloEvent::Request { sample, retried } => {
                        for attempt in &retried {
                            self.engine.ingest_attempt(now, attempt);
                        }
                        self.engine.ingest_with(now, &sample, count);
                    }
                    SloEvent::Quality(q) => self.engine.ingest_quality_with(now, &q, count),
                    SloEvent::Aiops(sample) => self.aiops.ingest(now, &sample),
                }
            }
        }
    }

    /// One evaluation: statuses, gauges, the decision, and what it changed.
    /// Follows the policy and takes in what arrived: on the short intake tick, and first
    /// thing on each evaluation.
    fn take_in(&mut self, now: Instant, policy: &Policy) {
        if policy.generation != self.generation {
            self.reconfigure(policy, now);
        }
        self.ingest(now);
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let policy = self.state.policy.snapshot();
        self.take_in(now, &policy);
        if now.saturating_duration_since(self.last_prune) >= PRUNE_EVERY {
            self.engine.prune(now);
            self.last_prune = now;
        }
        let statuses = self.engine.status(now);
        self.publish_gauges(&statuses);
        let wall = SystemTime::now();
        let anomalies = self.aiops.evaluate(now, wall, &self.state.metrics);

        let published = self.state.runtime.overlay_full();
        // Alert incidents take their ids from the overlay's numbering before the decision.
        let mut current = (*published).clone();
        let rules = paused_to_dry_run(policy.remediation_rules(), &self.paused);
        let alert_events = self.aiops.alerts(
            (now, wall),
            &statuses,
            &anomalies,
            &policy,
            &rules,
            &mut current,
        );
        let decision = remediation::decide_with_anomalies(
            now,
            &statuses,
            &anomalies,
            &rules,
            policy.route_targets(),
            &current,
        );
        if decision.overlay != *published {
            self.publish_active(&decision.overlay);
            self.state
                .runtime
                .publish_overlay(Arc::new(decision.overlay));
        }
        if !decision.transitions.is_empty() || !alert_events.is_empty() {
            let mut events: Vec<IncidentEvent> = decision
                .transitions
                .into_iter()
                .map(|t| {
                    let hint = matches!(t.event, remediation::Event::Opened)
                        .then(|| self.aiops.hint_for(now, &t, &policy))
                        .flatten();
                    let mut e = IncidentEvent::new(t, wall);
                    e.hint = hint;
                    e
                })
                .collect();
            events.extend(alert_events);
            self.record(events);
        }
        self.state
            .slo
            .lock()
            .set_open_alerts(self.aiops.open_incidents());
        self.state
            .slo
            .aiops
            .store(Arc::new(self.aiops.view(anomalies)));
        self.state.slo.statuses.store(Arc::new(statuses));
    }

    /// A new policy: the engine keeps the counts of every SLO that still counts the same thing.
    fn reconfigure(&mut self, policy: &Policy, now: Instant) {
        self.generation = policy.generation;
        self.aiops.reconfigure(policy.config.aiops, now);
        match self
            .engine
            .reconfigure(SloSpec::all_of(&policy.config), scale(policy), now)
        {
            Ok(report) => tracing::info!(report = ?report, "SLOs reconfigured for the new policy."),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot apply the new SLOs; keeping the previous ones.")
            }
        }
    }

    /// Writes the events to the log (synced), the timelines, the metrics and the push feed.
    fn record(&mut self, events: Vec<IncidentEvent>) {
        if self.log.is_none() {
            self.log = open_log(&self.dir);
        }
        if let Some(log) = &mut self.log {
            let written = crate::datadir::blocking(|| log.append(&events));
            if let Err(e) = written {
                tracing::error!(
                    file = %log.path().display(),
                    error = %e,
                    "Cannot write the incident log; the events are kept in memory only."
                );
                self.log = None;
            }
        }
        let mut timelines = self.state.slo.lock();
        for e in events {
            let t = &e.transition;
            self.state
                .metrics
                .incident_events
                .get_or_create(&IncidentEventLabels {
                    action: t.action.as_str(),
                    event: t.event.as_str(),
                })
                .inc();
            tracing::info!(
                incident = t.incident,
                route = %t.route,
                rule = %t.rule,
                action = t.action.as_str(),
                event = t.event.as_str(),
                dry_run = t.dry_run,
                target = ?t.target.as_ref().map(ToString::to_string),
                "Incident {}.",
                t.event.as_str()
            );
            self.push.offer(e.clone());
            if self.spans.is_enabled()
                && let Ok(line) = serde_json::to_string(&e)
            {
                self.spans
                    .offer_incident(&sluice_observability::logs::IncidentLog {
                        at: UNIX_EPOCH + Duration::from_millis(e.at_unix_ms),
                        incident: t.incident,
                        route: &t.route,
                        rule: &t.rule,
                        action: t.action.as_str(),
                        event: t.event.as_str(),
                        dry_run: t.dry_run,
                        line: &line,
                    });
            }
            timelines.add(e);
        }
    }

    /// Route-level burn rates, budgets and alert levels; gauges of SLOs that went away are
    /// removed rather than left at their last value.
    fn publish_gauges(&mut self, statuses: &[SloStatus]) {
        let metrics = &self.state.metrics;
        let mut seen = HashSet::with_capacity(self.published.len());
        for s in statuses.iter().filter(|s| s.target.is_none()) {
            let labels = SloLabels {
                slo: Arc::clone(&s.slo),
                route: Arc::clone(&s.route),
            };
            for w in Window::ALL {
                let wl = SloWindowLabels {
                    slo: Arc::clone(&s.slo),
                    route: Arc::clone(&s.route),
                    window: w.as_str(),
                };
                match s.burn(w) {
                    Some(b) => {
                        metrics.slo_burn_rate.get_or_create(&wl).set(b);
                    }
                    None => {
                        metrics.slo_burn_rate.remove(&wl);
                    }
                }
            }
            metrics
                .slo_budget_remaining
                .get_or_create(&labels)
                .set(s.budget_remaining);
            metrics.slo_alert.get_or_create(&labels).set(match s.alert {
                AlertLevel::None => 0,
                AlertLevel::Ticket => 1,
                AlertLevel::Page => 2,
            });
            seen.insert((Arc::clone(&s.slo), Arc::clone(&s.route)));
        }
        for (slo, route) in self.published.difference(&seen) {
            let labels = SloLabels {
                slo: Arc::clone(slo),
                route: Arc::clone(route),
            };
            metrics.slo_budget_remaining.remove(&labels);
            metrics.slo_alert.remove(&labels);
            for w in Window::ALL {
                metrics.slo_burn_rate.remove(&SloWindowLabels {
                    slo: Arc::clone(slo),
                    route: Arc::clone(route),
                    window: w.as_str(),
                });
            }
        }
        self.published = seen;
    }

    /// `sluice_remediation_active{route,action}`: entries in force, per route and action.
    fn publish_active(&mut self, overlay: &Overlay) {
        let metrics = &self.state.metrics;
        let mut now_active: HashSet<(Arc<str>, &'static str)> = HashSet::new();
        let mut counts: Vec<((Arc<str>, &'static str), i64)> = Vec::new();
        for (route, entry) in overlay.routes() {
            let mut add = |action: &'static str, n: usize| {
                if n > 0 {
                    now_active.insert((Arc::clone(route), action));
                    counts.push((
                        (Arc::clone(route), action),
                        i64::try_from(n).unwrap_or(i64::MAX),
                    ));
                }
            };
            add("failover", entry.ejected.len());
            add("downgrade_to", usize::from(entry.substitution.is_some()));
            add(
                "cache_fallback",
                usize::from(entry.cache_fallback.is_some()),
            );
            add("shed", usize::from(entry.shed.is_some()));
        }
        for ((route, action), n) in counts {
            metrics
                .remediation_active
                .get_or_create(&RemediationLabels { route, action })
                .set(n);
        }
        for (route, action) in self.active.difference(&now_active) {
            metrics
                .remediation_active
                .get_or_create(&RemediationLabels {
                    route: Arc::clone(route),
                    action,
                })
                .set(0);
        }
        self.active = now_active;
    }

    /// Saves the engine's counts (atomically: a crash leaves the previous snapshot).
    fn save(&self) {
        let bytes = match self.engine.snapshot(Instant::now(), SystemTime::now()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot encode SLO state.");
                return;
            }
        };
        let saved = crate::datadir::blocking(|| {
            crate::datadir::write_atomic(&self.dir, SNAPSHOT_FILE, &bytes)
        });
        if let Err(e) = saved {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %e,
                "Cannot save SLO state; it is kept in memory and saved again later."
            );
        }
        self.aiops.save(&self.dir);
    }
}

/// The rules as the controller runs them: a paused rule is in dry-run.
fn paused_to_dry_run<'a>(
    rules: &'a [remediation::Rule],
    paused: &BTreeMap<Arc<str>, PausedRule>,
) -> std::borrow::Cow<'a, [remediation::Rule]> {
    if paused.is_empty() || !rules.iter().any(|r| paused.contains_key(&r.name)) {
        return std::borrow::Cow::Borrowed(rules);
    }
    std::borrow::Cow::Owned(
        rules
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.dry_run |= paused.contains_key(&r.name);
                r
            })
            .collect(),
    )
}

fn scale(policy: &Policy) -> WindowScale {
    WindowScale::new(policy.config.slo.window_scale).unwrap_or_default()
}

fn open_log(dir: &std::path::Path) -> Option<IncidentLog> {
    match IncidentLog::open(dir) {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::error!(
                dir = %dir.display(),
                error = %e,
                "Cannot open the incident log; incidents are kept in memory only until it can be."
            );
            None
        }
    }
}

/// The next operator command; never resolves without a command intake.
async fn next_command(commands: &mut Option<Intake<Command>>) -> Option<Command> {
    match commands {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

impl Service for SloService {
    fn name(&self) -> &'static str {
        "slo"
    }

    fn run(self: Box<Self>, mut shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut this = *self;
        Box::pin(async move {
            let mut every = this.state.policy.snapshot().config.slo.evaluate_every;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut intake = tokio::time::interval(INTAKE_EVERY);
            intake.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_save = Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = intake.tick() => {
                        let policy = this.state.policy.snapshot();
                        this.take_in(Instant::now(), &policy);
                        continue;
                    }
                    Some(cmd) = next_command(&mut this.commands) => {
                        this.command(cmd);
                        continue;
                    }
                    () = shutdown.wait() => break,
                }
                this.tick();
                let settings = this.state.policy.snapshot().config.slo;
                if settings.evaluate_every != every {
                    every = settings.evaluate_every;
                    tick = tokio::time::interval_at(Instant::now() + every, every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                if last_save.elapsed() >= settings.snapshot_every {
                    this.save();
                    last_save = Instant::now();
                }
            }
            // The recorder (stopped before this) has handed over its last requests.
            this.intake.close();
            this.ingest(Instant::now());
            this.save();
        })
    }
}

#[cfg(test)]
mod tests;
