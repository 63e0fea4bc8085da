//! AIOps in the gateway: the SLO service's learned baselines, anomalies, alert incidents and
//! root-cause hints.
//!
//! ```text
//! recorder ─► SloEvent::Aiops(sample) ─► SloService ─► Aiops::ingest ─► AiopsEngine (observability)
//!                                        tick ─► Aiops::evaluate ─► sluice_anomaly_active, /admin/anomalies
//!                                             ─► decide_with_anomalies (anomaly rules)
//!                                             ─► Aiops::alerts ─► group_alerts ─► alert incidents (+ hint)
//! ```
//!
//! The engine lives inside the SLO service's task (no lock): the recorder offers one sample per
//! finished request through the SLO feed (never waiting), the service adds it on its tick.
//!
//! **Alert incidents.** Every open alert (an anomaly the detector flags, in any scope, or an
//! SLO status at ticket or page) gets a stable id and, when it starts, the top value of a
//! root-cause hint. [`group_alerts`] groups alerts that start within `aiops.group_window` and
//! share a provider, tenant, model or route (or whose hint names one); each group is one
//! incident in the incident log: `opened` (with the hint), `alerts_changed` as alerts join or
//! leave, `resolved` when the last one ends. Its id comes from the same numbering as
//! remediation incidents; its `rule` is `aiops` and its `action` `alert`. Remediation
//! incidents get a hint on their `opened` event too.
//!
//! Baselines are saved to `<data_dir>/aiops.json` with the SLO snapshot and restored at start;
//! a reload that changes `aiops` moves the baselines over to the new settings (dropped only
//! when the interval changed, since spreads are per interval).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sluice_config::{AiopsSettings, SliConfig};
use sluice_observability::Metrics;
use sluice_observability::aiops::{
    AiopsConfig, AiopsEngine, AiopsSample, AlertGroup, AnomalyEventKind, Focus, Footprint,
    OpenAlert, Refused, group_alerts,
};
use sluice_observability::metrics::{AnomalyBandLabels, AnomalyLabels};
use sluice_policy::Policy;
use sluice_policy::remediation::{
    ActionKind, AlertLevel, AnomalySignal, AnomalyStatus, BurnCondition, Event, IncidentEvent,
    IncidentHint, Overlay, SloStatus, TargetKey, Transition,
};
use tokio::time::Instant;

/// The baselines' snapshot in the data directory.
pub const SNAPSHOT_FILE: &str = "aiops.json";
/// The `rule` of alert incidents.
pub const ALERT_RULE: &str = "aiops";
/// How often series nobody has sent to for `idle_ttl` are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What `/admin/anomalies` shows, as of the last tick.
#[derive(Debug, Default, Serialize)]
pub struct AiopsView {
    pub enabled: bool,
    pub interval_ms: u64,
    pub window: u32,
    pub k: f64,
    /// Every signal in every scope, with its band (`None` while learning).
    pub signals: Vec<AnomalyStatus>,
    pub footprint: Footprint,
    pub refused: Refused,
    /// Open alert incidents: id and the alerts grouped in it.
    pub incidents: Vec<OpenIncidentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenIncidentView {
    pub incident: u64,
    pub alerts: Vec<Arc<str>>,
}

/// What an alert is about; stable across ticks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AlertKey {
    Anomaly(AnomalySignal, sluice_policy::remediation::AnomalyScope),
    Burn {
        slo: Arc<str>,
        route: Arc<str>,
        target: Option<TargetKey>,
    },
}

#[derive(Debug)]
struct Alert {
    open: OpenAlert,
    name: Arc<str>,
    /// Its current status, for incident evidence.
    status: Status,
}

#[derive(Debug, Clone)]
enum Status {
    Anomaly(AnomalyStatus),
    Burn(SloStatus),
}

/// An alert incident while it is open.
#[derive(Debug)]
struct GroupIncident {
    incident: u64,
    opened_at: Instant,
    /// Alert ids and names.
    members: BTreeMap<u64, Arc<str>>,
    /// Taken from the founding alert when it opened; every event of the incident carries them.
    route: Arc<str>,
    target: Option<TargetKey>,
    slo: Arc<str>,
    condition: BurnCondition,
}

/// The SLO service's AIOps half.
pub struct Aiops {
    settings: AiopsSettings,
    engine: Option<AiopsEngine>,
    alerts: HashMap<AlertKey, Alert>,
    next_alert: u64,
    groups: Vec<AlertGroup>,
    /// Open alert incidents by the id of their group.
    incidents: BTreeMap<u64, GroupIncident>,
    /// (signal, scope) gauges set, so gone ones are removed.
    published: HashSet<(&'static str, Arc<str>)>,
    last_prune: Instant,
}

impl Aiops {
    /// The detector for `settings`, with the baselines of `<dir>/aiops.json` when there are.
    /// Problems are logged, never fatal: the gateway serves and learns afresh.
    pub fn start(settings: AiopsSettings, dir: &Path, now: Instant) -> Self {
        let mut engine = new_engine(&settings, now);
        if let Some(engine) = &mut engine {
            let file = dir.join(SNAPSHOT_FILE);
            match std::fs::read(&file) {
                Ok(bytes) => match engine.restore(&bytes, now) {
                    Ok(report) => tracing::info!(
                        file = %file.display(),
                        report = ?report,
                        "AIOps baselines restored."
                    ),
                    Err(e) => tracing::warn!(
                        file = %file.display(),
                        error = %e,
                        "Cannot restore AIOps baselines; learning afresh."
                    ),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    file = %file.display(),
                    error = %e,
                    "Cannot read AIOps baselines; learning afresh."
                ),
            }
        }
        Self {
            settings,
            engine,
            alerts: HashMap::new(),
            next_alert: 1,
            groups: Vec::new(),
            incidents: BTreeMap::new(),
            published: HashSet::new(),
            last_prune: now,
        }
    }

    /// A policy whose `aiops` section changed: the baselines move to the new settings.
    pub fn reconfigure(&mut self, settings: AiopsSettings, now: Instant) {
        if settings == self.settings {
            return;
        }
        let old = self.engine.take();
        self.settings = settings;
        self.engine = new_engine(&settings, now);
        if let (Some(old), Some(new)) = (old, &mut self.engine) {
            let moved = old
                .snapshot(SystemTime::now())
                .and_then(|bytes| new.restore(&bytes, now));
            match moved {
                Ok(report) => {
                    tracing::info!(report = ?report, "AIOps reconfigured for the new policy.")
                }
                Err(e) => tracing::warn!(error = %e, "AIOps baselines could not be kept."),
            }
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.engine.is_some()
    }

    /// Counts one finished request.
    pub fn ingest(&mut self, now: Instant, sample: &AiopsSample) {
        if let Some(e) = &mut self.engine {
            e.ingest(now, sample);
        }
    }

    /// One detection step: every status (empty when off), with the gauges set.
    pub fn evaluate(
        &mut self,
        now: Instant,
        wall: SystemTime,
        metrics: &Metrics,
    ) -> Vec<AnomalyStatus> {
        let Some(engine) = &mut self.engine else {
            self.publish(metrics, &[]);
            return Vec::new();
        };
        if now.saturating_duration_since(self.last_prune) >= PRUNE_EVERY {
            engine.prune(now);
            self.last_prune = now;
        }
        let status = engine.evaluate(now, wall);
        for e in &status.events {
            let s = &e.status;
            match e.event {
                AnomalyEventKind::Started => tracing::info!(
                    signal = s.signal.as_str(),
                    scope = %s.scope,
                    score = ?s.score,
                    value = ?s.value,
                    "Anomaly started."
                ),
                AnomalyEventKind::Ended => tracing::info!(
                    signal = s.signal.as_str(),
                    scope = %s.scope,
                    "Anomaly ended."
                ),
            }
        }
        self.publish(metrics, &status.anomalies);
        status.anomalies
    }

    /// `sluice_anomaly_active{signal,scope}` and `sluice_anomaly_band{signal,scope,line}` for
    /// every status that has a baseline (or is flagged).
    fn publish(&mut self, metrics: &Metrics, statuses: &[AnomalyStatus]) {
        let mut seen = HashSet::with_capacity(self.published.len());
        for s in statuses
            .iter()
            .filter(|s| s.band.is_some() || s.is_active())
        {
            let labels = AnomalyLabels {
                signal: s.signal.as_str(),
                scope: Arc::from(s.scope.to_string()),
            };
            metrics
                .anomaly_active
                .get_or_create(&labels)
                .set(i64::from(s.is_active()));
            let lines = [
                ("value", s.value),
                ("lower", s.band.as_ref().map(|b| b.lower)),
                ("centre", s.band.as_ref().map(|b| b.centre)),
                ("upper", s.band.as_ref().map(|b| b.upper)),
            ];
            for (line, v) in lines {
                let band = AnomalyBandLabels {
                    signal: labels.signal,
                    scope: Arc::clone(&labels.scope),
                    line,
                };
                // An unknown value (too few events) is absent, not zero.
                match v {
                    Some(v) => {
                        metrics.anomaly_band.get_or_create(&band).set(v);
                    }
                    None => {
                        metrics.anomaly_band.remove(&band);
                    }
                }
            }
            seen.insert((labels.signal, labels.scope));
        }
        for (signal, scope) in self.published.difference(&seen) {
            metrics.anomaly_active.remove(&AnomalyLabels {
                signal,
                scope: Arc::clone(scope),
            });
            for line in ["value", "lower", "centre", "upper"] {
                metrics.anomaly_band.remove(&AnomalyBandLabels {
                    signal,
                    scope: Arc::clone(scope),
                    line,
                });
            }
        }
        self.published = seen;
    }

    /// Groups the open alerts into incidents; returns their events (ids taken from
    /// `overlay`'s numbering).
    pub fn alerts(
        &mut self,
        now: Instant,
        wall: SystemTime,
        slo: &[SloStatus],
        anomalies: &[AnomalyStatus],
        policy: &Policy,
        overlay: &mut Overlay,
    ) -> Vec<IncidentEvent> {
        let mut current: HashMap<AlertKey, Status> = HashMap::new();
        if self.engine.is_some() {
            for a in anomalies.iter().filter(|a| a.is_active()) {
                current.insert(
                    AlertKey::Anomaly(a.signal, a.scope.clone()),
                    Status::Anomaly(a.clone()),
                );
            }
            // A burn that a (live) remediation rule acts on is that rule's incident already:
            // a second, alert-only incident would page twice for one fault.
            let covered = |s: &SloStatus| {
                policy.remediation_rules().iter().any(|r| {
                    !r.dry_run && r.route == s.route && r.when.slo == s.slo && r.when.burn.holds(s)
                })
            };
            for s in slo
                .iter()
                .filter(|s| s.alert != AlertLevel::None && !covered(s))
            {
                current.insert(
                    AlertKey::Burn {
                        slo: Arc::clone(&s.slo),
                        route: Arc::clone(&s.route),
                        target: s.target.clone(),
                    },
                    Status::Burn(s.clone()),
                );
            }
        }
        self.alerts.retain(|k, _| current.contains_key(k));
        for (key, status) in current {
            if let Some(a) = self.alerts.get_mut(&key) {
                a.status = status;
                continue;
            }
            let id = self.next_alert;
            self.next_alert += 1;
            let focus = focus_of(&status, policy);
            let hint = focus.and_then(|f| self.engine.as_ref()?.root_cause(now, f));
            let (open, name) = match &status {
                Status::Anomaly(a) => (
                    OpenAlert::anomaly(id, a, now),
                    format!("{} anomaly on {}", a.signal, a.scope),
                ),
                Status::Burn(s) => (
                    OpenAlert::burn(id, s, now),
                    match &s.target {
                        Some(t) => format!(
                            "{} burn ({}) on target {}/{t}",
                            s.slo,
                            s.alert.as_str(),
                            s.route
                        ),
                        None => {
                            format!("{} burn ({}) on route {}", s.slo, s.alert.as_str(), s.route)
                        }
                    },
                ),
            };
            self.alerts.insert(
                key,
                Alert {
                    open: open.with_cause(hint.as_ref()),
                    name: Arc::from(name),
                    status,
                },
            );
        }

        let open: Vec<OpenAlert> = self.alerts.values().map(|a| a.open.clone()).collect();
        self.groups = group_alerts(&open, &self.groups, self.settings.group_window);
        let by_id: HashMap<u64, &Alert> = self.alerts.values().map(|a| (a.open.id, a)).collect();
        let mut events = Vec::new();
        let live: HashSet<u64> = self.groups.iter().map(|g| g.id).collect();

        // Incidents whose alerts all ended.
        let gone: Vec<u64> = self
            .incidents
            .keys()
            .copied()
            .filter(|g| !live.contains(g))
            .collect();
        for g in gone {
            if let Some(inc) = self.incidents.remove(&g) {
                let open_for = now.saturating_duration_since(inc.opened_at);
                events.push(self.event(&inc, Event::Resolved { open_for }, &[], &by_id, wall));
            }
        }

        for group in &self.groups {
            let members: BTreeMap<u64, Arc<str>> = group
                .members
                .iter()
                .filter_map(|id| by_id.get(id).map(|a| (*id, Arc::clone(&a.name))))
                .collect();
            match self.incidents.get_mut(&group.id) {
                Some(inc) => {
                    if inc.members.keys().eq(members.keys()) {
                        continue;
                    }
                    let started = members
                        .iter()
                        .filter(|(id, _)| !inc.members.contains_key(id))
                        .map(|(_, n)| Arc::clone(n))
                        .collect();
                    let ended = inc
                        .members
                        .iter()
                        .filter(|(id, _)| !members.contains_key(id))
                        .map(|(_, n)| Arc::clone(n))
                        .collect();
                    inc.members = members;
                    let inc = &self.incidents[&group.id];
                    events.push(self.event(
                        inc,
                        Event::AlertsChanged { started, ended },
                        &group.members,
                        &by_id,
                        wall,
                    ));
                }
                None => {
                    let Some(founder) = by_id
                        .get(&group.id)
                        .or_else(|| group.members.first().and_then(|id| by_id.get(id)))
                    else {
                        continue;
                    };
                    let (slo_name, condition) = match &founder.status {
                        Status::Anomaly(a) => (
                            Arc::from(a.signal.as_str()),
                            BurnCondition::Anomaly {
                                signal: a.signal,
                                min_score: 0.0,
                            },
                        ),
                        Status::Burn(s) => (Arc::clone(&s.slo), BurnCondition::Alert(s.alert)),
                    };
                    let target = match (&founder.open.provider, &founder.open.model) {
                        (Some(p), Some(m)) => Some(TargetKey {
                            provider: Arc::clone(p),
                            model: Arc::clone(m),
                        }),
                        _ => None,
                    };
                    let inc = GroupIncident {
                        incident: overlay.reserve_incident(),
                        opened_at: now,
                        members: members.clone(),
                        route: founder.open.route.clone().unwrap_or_else(|| Arc::from("*")),
                        target,
                        slo: slo_name,
                        condition,
                    };
                    let focus = focus_of(&founder.status, policy);
                    let hint = focus
                        .and_then(|f| self.engine.as_ref()?.root_cause(now, f))
                        .map(|h| IncidentHint::from(&h));
                    let mut e = self.event(&inc, Event::Opened, &group.members, &by_id, wall);
                    e.hint = hint;
                    tracing::info!(
                        incident = inc.incident,
                        alerts = group.members.len(),
                        key = ?group.key.as_ref().map(|(d, v)| format!("{} {v}", d.as_str())),
                        hint = e.hint.as_ref().map_or("", |h| h.text.as_str()),
                        "Alert incident opened."
                    );
                    events.push(e);
                    self.incidents.insert(group.id, inc);
                }
            }
        }
        events
    }

    fn event(
        &self,
        inc: &GroupIncident,
        event: Event,
        members: &[u64],
        by_id: &HashMap<u64, &Alert>,
        wall: SystemTime,
    ) -> IncidentEvent {
        let mut evidence = Vec::new();
        let mut anomalies = Vec::new();
        for a in members.iter().filter_map(|id| by_id.get(id)) {
            match &a.status {
                Status::Anomaly(s) => anomalies.push(s.clone()),
                Status::Burn(s) => evidence.push(s.clone()),
            }
        }
        IncidentEvent::new(
            Transition {
                incident: inc.incident,
                route: Arc::clone(&inc.route),
                rule: Arc::from(ALERT_RULE),
                action: ActionKind::Alert,
                target: inc.target.clone(),
                dry_run: false,
                slo: Arc::clone(&inc.slo),
                condition: inc.condition,
                event,
                evidence,
                anomalies,
                runbook_url: None,
            },
            wall,
        )
    }

    /// The hint for a remediation incident's `opened` event.
    pub fn hint_for(&self, now: Instant, t: &Transition, policy: &Policy) -> Option<IncidentHint> {
        let engine = self.engine.as_ref()?;
        let focus = match t.condition.anomaly_signal() {
            Some(signal) => Focus::for_signal(signal),
            None => sli_focus(policy, &t.route, &t.slo)?,
        };
        engine
            .root_cause(now, focus)
            .map(|h| IncidentHint::from(&h))
    }

    /// Ids of the alert incidents open now.
    pub fn open_incidents(&self) -> Vec<u64> {
        self.incidents.values().map(|i| i.incident).collect()
    }

    /// What `/admin/anomalies` shows.
    pub fn view(&self, signals: Vec<AnomalyStatus>) -> AiopsView {
        AiopsView {
            enabled: self.engine.is_some(),
            interval_ms: u64::try_from(self.settings.interval.as_millis()).unwrap_or(u64::MAX),
            window: self.settings.window,
            k: self.settings.k,
            signals,
            footprint: self
                .engine
                .as_ref()
                .map(AiopsEngine::footprint)
                .unwrap_or_default(),
            refused: self
                .engine
                .as_ref()
                .map(AiopsEngine::refused)
                .unwrap_or_default(),
            incidents: self
                .incidents
                .values()
                .map(|i| OpenIncidentView {
                    incident: i.incident,
                    alerts: i.members.values().cloned().collect(),
                })
                .collect(),
        }
    }

    /// Saves the baselines (atomically: a crash leaves the previous snapshot).
    pub fn save(&self, dir: &Path) {
        let Some(engine) = &self.engine else { return };
        let bytes = match engine.snapshot(SystemTime::now()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot encode AIOps baselines.");
                return;
            }
        };
        let saved =
            crate::datadir::blocking(|| crate::datadir::write_atomic(dir, SNAPSHOT_FILE, &bytes));
        if let Err(e) = saved {
            tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "Cannot save AIOps baselines; they are kept in memory and saved again later."
            );
        }
    }
}

/// The engine's settings from the policy's; `None` when AIOps is off.
pub fn engine_config(s: &AiopsSettings) -> Option<AiopsConfig> {
    s.enabled.then(|| AiopsConfig {
        interval: s.interval,
        window: s.window,
        k: s.k,
        hold: s.hold,
        clear: s.clear,
        min_events: s.min_events,
        warmup: s.warmup,
        relearn_after: s.relearn_after,
        max_tenants: usize::try_from(s.max_tenants).unwrap_or(usize::MAX),
        ..AiopsConfig::default()
    })
}

fn new_engine(settings: &AiopsSettings, now: Instant) -> Option<AiopsEngine> {
    let cfg = engine_config(settings)?;
    match AiopsEngine::new(cfg, now) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot start AIOps; it stays off.");
            None
        }
    }
}

/// What the hint of an alert explains.
fn focus_of(status: &Status, policy: &Policy) -> Option<Focus> {
    match status {
        Status::Anomaly(a) => Some(Focus::for_signal(a.signal)),
        Status::Burn(s) => sli_focus(policy, &s.route, &s.slo),
    }
}

/// Failed requests for an `errors` SLO, slow ones for a latency SLO; nothing for quality,
/// which the counts do not see.
fn sli_focus(policy: &Policy, route: &str, slo: &str) -> Option<Focus> {
    let sli = policy
        .config
        .routes
        .iter()
        .find(|r| r.name == route)?
        .slos
        .iter()
        .find(|s| s.name == slo)?
        .sli;
    match sli {
        SliConfig::Errors => Some(Focus::Failed),
        SliConfig::TtftBelow(_) | SliConfig::DurationBelow(_) => Some(Focus::Slow),
        SliConfig::JudgeScoreAtLeast(_) => None,
    }
}
