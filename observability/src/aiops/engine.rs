//! The engine: series per route, target and tenant, fed one sample per request, evaluated on
//! a tick; and the bounded counts behind root-cause hints.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use sluice_policy::remediation::{AnomalyScope, AnomalyStatus, TargetKey};
use tokio::time::Instant;

use super::AiopsConfig;
use super::breakdown::{Breakdown, OTHER};
use super::detect::Edge;
use super::rootcause::{self, BreakdownView, Focus, RootCauseHint};
use super::sample::AiopsSample;
use super::series::{Clock, Evaluated, SampleValues, Series, signed_ns};
use super::snapshot::{self, AiopsRestoreReport};
use crate::Error;

/// Contributions a hint names at most.
const HINT_TOP: usize = 3;

/// The AIOps engine. Owned by one task (the evaluator service), which drains request samples
/// into it and evaluates it on its tick; nothing here is shared.
#[derive(Debug)]
pub struct AiopsEngine {
    cfg: AiopsConfig,
    clock: Clock,
    routes: HashMap<Arc<str>, RouteSeries>,
    tenants: HashMap<Arc<str>, Series>,
    /// The tenants past `max_tenants`, together.
    other_tenant: Option<Series>,
    breakdown: Breakdown,
    refused: Refused,
}

#[derive(Debug)]
pub(crate) struct RouteSeries {
    pub series: Series,
    pub targets: HashMap<TargetKey, Series>,
}

/// What one evaluation found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AiopsStatus {
    /// Every signal seen in every scope, sorted by scope then signal (the data behind
    /// `sluice_anomaly_active{signal,scope}`, `/admin/anomalies` and the dashboard bands).
    pub anomalies: Vec<AnomalyStatus>,
    /// Anomalies that started or ended on this tick (incident events).
    pub events: Vec<AnomalyEvent>,
}

/// An anomaly starting or ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyEventKind {
    Started,
    Ended,
}

/// One anomaly event, with the status that crossed the edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyEvent {
    pub event: AnomalyEventKind,
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    #[serde(flatten)]
    pub status: AnomalyStatus,
}

/// Samples (or parts of them) not tracked because a cap was reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// Samples of a route past `max_routes` (not tracked at all).
    pub routes: u64,
    /// Samples of a target past `max_targets_per_route` (still counted for the route).
    pub targets: u64,
    /// Samples of tenants past `max_tenants`, learned under `other`.
    pub tenants_folded: u64,
}

/// What the engine holds, for the memory bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    pub routes: usize,
    pub targets: usize,
    /// Tenants with their own baselines (the `other` tenant not included).
    pub tenants: usize,
    /// Every series: routes, targets, tenants and `other`.
    pub series: usize,
    /// Tenants with their own row in the root-cause counts.
    pub hint_tenants: usize,
    /// Bytes held, series plus counts plus maps (names are shared with the policy).
    pub bytes: usize,
}

// === impl AiopsStatus ===

impl AiopsStatus {
    /// The flagged ones.
    pub fn active(&self) -> impl Iterator<Item = &AnomalyStatus> {
        self.anomalies.iter().filter(|a| a.is_active())
    }
}

// === impl AnomalyEventKind ===

impl AnomalyEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Ended => "ended",
        }
    }
}

// === impl AiopsEngine ===

impl AiopsEngine {
    pub fn new(cfg: AiopsConfig, now: Instant) -> Result<Self, Error> {
        cfg.check()?;
        let clock = Clock {
            origin: now,
            interval_ns: u64::try_from(cfg.interval.as_nanos()).unwrap_or(u64::MAX),
        };
        let breakdown =
            Breakdown::new(cfg.hint_recent, cfg.hint_reference, cfg.max_hint_tenants, 0);
        Ok(Self {
            cfg,
            clock,
            routes: HashMap::new(),
            tenants: HashMap::new(),
            other_tenant: None,
            breakdown,
            refused: Refused::default(),
        })
    }

    pub fn config(&self) -> &AiopsConfig {
        &self.cfg
    }

    pub fn refused(&self) -> Refused {
        self.refused
    }

    /// Counts one finished request (at `at`, normally its end). O(1): a handful of hash
    /// lookups and additions; it allocates only the first time it sees a route, target,
    /// tenant or dimension value.
    pub fn ingest(&mut self, at: Instant, sample: &AiopsSample) {
        let ix = self.clock.index(at);
        let values = SampleValues::of(sample);
        let cfg = &self.cfg;
        let mut slow = false;
        let route = series_in(&mut self.routes, &*sample.route, cfg.max_routes, || {
            let key = Arc::clone(&sample.route);
            let scope = AnomalyScope::Route {
                route: Arc::clone(&key),
            };
            (
                key,
                RouteSeries {
                    series: Series::new(scope, cfg, ix, at),
                    targets: HashMap::new(),
                },
            )
        });
        match route {
            None => self.refused.routes += 1,
            Some(route) => {
                route.series.add(ix, at, &values);
                if let Some(target) = &sample.target {
                    let made = series_in(
                        &mut route.targets,
                        target,
                        cfg.max_targets_per_route,
                        || {
                            let scope = AnomalyScope::Target {
                                route: Arc::clone(&sample.route),
                                target: target.clone(),
                            };
                            (target.clone(), Series::new(scope, cfg, ix, at))
                        },
                    );
                    match made {
                        Some(s) => {
                            slow = s.is_slow(sample);
                            s.add(ix, at, &values);
                        }
                        None => self.refused.targets += 1,
                    }
                }
            }
        }
        if let Some(tenant) = &sample.tenant {
            let own = series_in(&mut self.tenants, &**tenant, cfg.max_tenants, || {
                let scope = AnomalyScope::Tenant {
                    tenant: Arc::clone(tenant),
                };
                (Arc::clone(tenant), Series::new(scope, cfg, ix, at))
            });
            match own {
                Some(s) => s.add(ix, at, &values),
                None => {
                    self.refused.tenants_folded += 1;
                    self.other_tenant
                        .get_or_insert_with(|| {
                            let scope = AnomalyScope::Tenant {
                                tenant: Arc::from(OTHER),
                            };
                            Series::new(scope, cfg, ix, at)
                        })
                        .add(ix, at, &values);
                }
            }
        }
        self.breakdown.add(ix, sample, values.failed, slow);
    }

    /// One tick: learns the intervals that closed, steps every detector and returns every
    /// status and the anomalies that started or ended. `wall` is the wall-clock time at `now`;
    /// it only places intervals in their hour of the week.
    pub fn evaluate(&mut self, now: Instant, wall: SystemTime) -> AiopsStatus {
        let cur = self.clock.index(now);
        let (clock, cfg) = (self.clock, &self.cfg);
        let mut evaluated: Vec<Evaluated> = Vec::new();
        let all = self
            .routes
            .values_mut()
            .flat_map(|r| std::iter::once(&mut r.series).chain(r.targets.values_mut()))
            .chain(self.tenants.values_mut())
            .chain(self.other_tenant.iter_mut());
        for s in all {
            s.learn(&clock, cur, now, wall, cfg);
            s.detect(&clock, cur, now, wall, cfg, &mut evaluated);
        }
        self.breakdown.tick(cur);
        let at_unix_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut status = AiopsStatus::default();
        for e in evaluated {
            if let Some(edge) = e.edge {
                status.events.push(AnomalyEvent {
                    event: match edge {
                        Edge::Started => AnomalyEventKind::Started,
                        Edge::Ended => AnomalyEventKind::Ended,
                    },
                    at_unix_ms,
                    status: e.status.clone(),
                });
            }
            status.anomalies.push(e.status);
        }
        let key = |a: &AnomalyStatus| (a.scope.clone(), a.signal);
        status.anomalies.sort_by_key(key);
        status.events.sort_by_key(|e| key(&e.status));
        status
    }

    /// What explains the bad events of `focus` over the last
    /// [`hint_recent`](AiopsConfig::hint_recent) intervals; `None` when nothing is bad.
    pub fn root_cause(&self, now: Instant, focus: Focus) -> Option<RootCauseHint> {
        rootcause::root_cause(&self.breakdown(now), focus, HINT_TOP)
    }

    /// The counts hints are computed from (also an admin view).
    pub fn breakdown(&self, now: Instant) -> BreakdownView {
        let minutes = self.cfg.interval.as_secs_f64() / 60.0;
        let cur = self.clock.index(now);
        let into_cur = (signed_ns(self.clock.origin, now) - self.clock.start(cur)) as f64 / 60e9;
        self.breakdown.view(cur, minutes, into_cur)
    }

    /// Forgets targets, tenants and routes with no event for [`idle_ttl`](AiopsConfig::idle_ttl);
    /// returns how many series went.
    pub fn prune(&mut self, now: Instant) -> usize {
        let ttl = self.cfg.idle_ttl;
        let idle = |s: &Series| now.saturating_duration_since(s.last_seen) > ttl;
        let mut gone = 0;
        for r in self.routes.values_mut() {
            let before = r.targets.len();
            r.targets.retain(|_, s| !idle(s));
            gone += before - r.targets.len();
        }
        let before = self.routes.len();
        self.routes
            .retain(|_, r| !(r.targets.is_empty() && idle(&r.series)));
        gone += before - self.routes.len();
        let before = self.tenants.len();
        self.tenants.retain(|_, s| !idle(s));
        gone += before - self.tenants.len();
        if self.other_tenant.as_ref().is_some_and(idle) {
            self.other_tenant = None;
            gone += 1;
        }
        gone
    }

    /// The learned baselines as bytes (versioned JSON). Only baselines: detector states and the
    /// current window are rebuilt within minutes.
    pub fn snapshot(&self, wall: SystemTime) -> Result<Vec<u8>, Error> {
        snapshot::encode(&snapshot::take(self, wall))
    }

    /// Restores the baselines of a snapshot (replacing what the same scopes learned so far),
    /// within the caps. A corrupt or unknown snapshot is an error and changes nothing; one
    /// taken with another interval width is skipped whole (its spreads mean something else).
    pub fn restore(&mut self, bytes: &[u8], now: Instant) -> Result<AiopsRestoreReport, Error> {
        let snap = snapshot::decode(bytes)?;
        Ok(snapshot::apply(self, &snap, now))
    }

    /// What the engine holds.
    pub fn footprint(&self) -> Footprint {
        let map_entry = |key: usize, value: usize| key + value + std::mem::size_of::<u64>();
        let mut f = Footprint {
            routes: self.routes.len(),
            tenants: self.tenants.len(),
            hint_tenants: self.breakdown.tenants(),
            ..Footprint::default()
        };
        let mut bytes = std::mem::size_of::<Self>() + self.breakdown.footprint();
        bytes += self.routes.capacity()
            * map_entry(
                std::mem::size_of::<Arc<str>>(),
                std::mem::size_of::<RouteSeries>(),
            );
        for r in self.routes.values() {
            f.targets += r.targets.len();
            bytes += r.series.footprint() - std::mem::size_of::<Series>();
            bytes += r.targets.capacity()
                * map_entry(
                    std::mem::size_of::<TargetKey>(),
                    std::mem::size_of::<Series>(),
                );
            bytes += r
                .targets
                .values()
                .map(|s| s.footprint() - std::mem::size_of::<Series>())
                .sum::<usize>();
        }
        bytes += self.tenants.capacity()
            * map_entry(
                std::mem::size_of::<Arc<str>>(),
                std::mem::size_of::<Series>(),
            );
        bytes += self
            .tenants
            .values()
            .map(|s| s.footprint() - std::mem::size_of::<Series>())
            .sum::<usize>();
        bytes += self.other_tenant.as_ref().map_or(0, Series::footprint);
        f.series = f.routes + f.targets + f.tenants + usize::from(self.other_tenant.is_some());
        f.bytes = bytes;
        f
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// Every series, routes (each followed by its targets), tenants, then `other`.
    pub(crate) fn series(&self) -> impl Iterator<Item = &Series> {
        self.routes
            .values()
            .flat_map(|r| std::iter::once(&r.series).chain(r.targets.values()))
            .chain(self.tenants.values())
            .chain(self.other_tenant.iter())
    }

    /// The series of `scope`, created within the caps; `None` past them.
    pub(crate) fn series_for(&mut self, scope: &AnomalyScope, now: Instant) -> Option<&mut Series> {
        let ix = self.clock.index(now);
        let cfg = &self.cfg;
        match scope {
            AnomalyScope::Route { route } => {
                let r = series_in(&mut self.routes, &**route, cfg.max_routes, || {
                    let s = Series::new(scope.clone(), cfg, ix, now);
                    (
                        Arc::clone(route),
                        RouteSeries {
                            series: s,
                            targets: HashMap::new(),
                        },
                    )
                })?;
                Some(&mut r.series)
            }
            AnomalyScope::Target { route, target } => {
                let route_scope = AnomalyScope::Route {
                    route: Arc::clone(route),
                };
                let r = series_in(&mut self.routes, &**route, cfg.max_routes, || {
                    let s = Series::new(route_scope, cfg, ix, now);
                    (
                        Arc::clone(route),
                        RouteSeries {
                            series: s,
                            targets: HashMap::new(),
                        },
                    )
                })?;
                series_in(&mut r.targets, target, cfg.max_targets_per_route, || {
                    (target.clone(), Series::new(scope.clone(), cfg, ix, now))
                })
            }
            AnomalyScope::Tenant { tenant } if **tenant == *OTHER => Some(
                self.other_tenant
                    .get_or_insert_with(|| Series::new(scope.clone(), cfg, ix, now)),
            ),
            AnomalyScope::Tenant { tenant } => {
                series_in(&mut self.tenants, &**tenant, cfg.max_tenants, || {
                    (Arc::clone(tenant), Series::new(scope.clone(), cfg, ix, now))
                })
            }
        }
    }
}

/// The value of `q` in `map`, inserted with `make` while the map holds fewer than `cap`.
fn series_in<'m, K, Q, V>(
    map: &'m mut HashMap<K, V>,
    q: &Q,
    cap: usize,
    make: impl FnOnce() -> (K, V),
) -> Option<&'m mut V>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized,
{
    if !map.contains_key(q) {
        if map.len() >= cap {
            return None;
        }
        let (k, v) = make();
        map.insert(k, v);
    }
    map.get_mut(q)
}
