//! Grouping: anomalies and burn-rate alerts that start close together and share a dimension
//! become one incident, not ten. A pure function over the open alerts and the groups of the
//! previous tick, so an incident keeps its identity while it grows.
//!
//! An alert carries the dimension values of its scope (route; route, provider and model for a
//! target; tenant). A group has a **key**, one shared dimension value, and a start. An alert
//! joins a group when it started within `window` of the group's start and either has the key's
//! value, or is *coarser* than a member (its values are a subset of the member's: the route's
//! own alert beside its target's), which pulls in aggregates without chaining unrelated alerts
//! through them.
//!
//! An alert may also carry the top value of the root-cause hint taken when it started
//! ([`OpenAlert::with_cause`]), which counts as one more of its values: when a provider fails,
//! every tenant's error ratio leaves its band too, and those tenant alerts share no dimension
//! with the provider's — but their hint names the provider, so they join its incident; when one
//! tenant's burst trips its routes' alerts, their hint names the tenant.
//!
//! Each tick: members of last tick's groups that are still open stay (a group whose members
//! all closed is gone); new alerts join an existing group if they can (the one whose key
//! dimension comes first in [`Dimension::PRIORITY`], then the oldest); the rest are grouped
//! greedily — the key value shared by the most of them within a window forms a group first
//! (ties: dimension priority, then the earlier start) — and what is left stands alone, keyed
//! by nothing until another alert shares one of its values.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_policy::remediation::{
    AlertLevel, AnomalyScope, AnomalySignal, AnomalyStatus, SloStatus,
};
use tokio::time::Instant;

use super::rootcause::{Dimension, RootCauseHint};

/// What an alert is about.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertKind {
    Anomaly { signal: AnomalySignal },
    Burn { slo: Arc<str>, level: AlertLevel },
}

/// One open alert, as grouping sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAlert {
    /// The caller's stable id for the alert.
    pub id: u64,
    pub kind: AlertKind,
    pub started: Instant,
    pub route: Option<Arc<str>>,
    pub provider: Option<Arc<str>>,
    pub model: Option<Arc<str>>,
    pub tenant: Option<Arc<str>>,
    /// What the root-cause hint named when it started.
    pub cause: Option<(Dimension, Arc<str>)>,
}

/// Alerts that make one incident.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertGroup {
    /// The id of the alert that founded it; kept while the group lives.
    pub id: u64,
    /// The shared value; `None` for an alert standing alone.
    pub key: Option<(Dimension, Arc<str>)>,
    /// The earliest start among its founding members.
    pub started: Instant,
    /// Alert ids, ascending.
    pub members: Vec<u64>,
}

// === impl OpenAlert ===

impl OpenAlert {
    /// An anomaly's alert, with its scope's dimensions.
    pub fn anomaly(id: u64, status: &AnomalyStatus, started: Instant) -> Self {
        let mut a = Self::bare(
            id,
            AlertKind::Anomaly {
                signal: status.signal,
            },
            started,
        );
        match &status.scope {
            AnomalyScope::Route { route } => a.route = Some(Arc::clone(route)),
            AnomalyScope::Target { route, target } => {
                a.route = Some(Arc::clone(route));
                a.provider = Some(Arc::clone(&target.provider));
                a.model = Some(Arc::clone(&target.model));
            }
            AnomalyScope::Tenant { tenant } => a.tenant = Some(Arc::clone(tenant)),
        }
        a
    }

    /// A burn-rate alert's, with its route and target.
    pub fn burn(id: u64, status: &SloStatus, started: Instant) -> Self {
        let mut a = Self::bare(
            id,
            AlertKind::Burn {
                slo: Arc::clone(&status.slo),
                level: status.alert,
            },
            started,
        );
        a.route = Some(Arc::clone(&status.route));
        if let Some(t) = &status.target {
            a.provider = Some(Arc::clone(&t.provider));
            a.model = Some(Arc::clone(&t.model));
        }
        a
    }

    fn bare(id: u64, kind: AlertKind, started: Instant) -> Self {
        Self {
            id,
            kind,
            started,
            route: None,
            provider: None,
            model: None,
            tenant: None,
            cause: None,
        }
    }

    /// The alert with the top value of `hint` as its cause (none when the hint names none).
    pub fn with_cause(mut self, hint: Option<&RootCauseHint>) -> Self {
        self.cause = hint
            .and_then(|h| h.top.first())
            .map(|c| (c.dimension, Arc::clone(&c.value)));
        self
    }

    /// Its dimension values in priority order, then its cause's when that is another one.
    pub fn dims(&self) -> impl Iterator<Item = (Dimension, &Arc<str>)> {
        let own = [
            (Dimension::Provider, &self.provider),
            (Dimension::Tenant, &self.tenant),
            (Dimension::Model, &self.model),
            (Dimension::Route, &self.route),
        ];
        let cause = self
            .cause
            .as_ref()
            .filter(|(d, v)| {
                !own.iter()
                    .any(|(od, ov)| od == d && ov.as_deref() == Some(&**v))
            })
            .map(|(d, v)| (*d, v));
        own.into_iter()
            .filter_map(|(d, v)| v.as_ref().map(|v| (d, v)))
            .chain(cause)
    }

    fn has(&self, dim: Dimension, value: &str) -> bool {
        self.dims().any(|(d, v)| d == dim && **v == *value)
    }

    /// Whether every value of `self` is also one of `other`'s (and it has at least one).
    fn coarser_than(&self, other: &OpenAlert) -> bool {
        let mut any = false;
        for (d, v) in self.dims() {
            if !other.has(d, v) {
                return false;
            }
            any = true;
        }
        any
    }
}

fn priority(d: Dimension) -> usize {
    Dimension::PRIORITY
        .iter()
        .position(|p| *p == d)
        .unwrap_or(usize::MAX)
}

fn within(a: Instant, b: Instant, window: Duration) -> bool {
    let d = if a >= b { a - b } else { b - a };
    d <= window
}

/// Groups `alerts` (the open ones), keeping `previous` groups' identity; groups come back
/// ordered by id.
pub fn group_alerts(
    alerts: &[OpenAlert],
    previous: &[AlertGroup],
    window: Duration,
) -> Vec<AlertGroup> {
    let by_id: HashMap<u64, &OpenAlert> = alerts.iter().map(|a| (a.id, a)).collect();
    let mut taken: HashSet<u64> = HashSet::new();
    let mut groups: Vec<AlertGroup> = Vec::new();
    for g in previous {
        let members: Vec<u64> = g
            .members
            .iter()
            .copied()
            .filter(|id| by_id.contains_key(id) && !taken.contains(id))
            .collect();
        if members.is_empty() {
            continue;
        }
        taken.extend(&members);
        groups.push(AlertGroup {
            members,
            ..g.clone()
        });
    }

    let mut fresh: Vec<&OpenAlert> = alerts.iter().filter(|a| !taken.contains(&a.id)).collect();
    fresh.sort_by_key(|a| (a.started, a.id));
    fresh.dedup_by_key(|a| a.id);

    // New alerts join the groups that already exist.
    let mut rest = Vec::new();
    for a in fresh {
        match best_group(a, &groups, &by_id, window) {
            Some(i) => join(&mut groups[i], a, &by_id),
            None => rest.push(a),
        }
    }

    // The rest, greedily by the most widely shared value.
    while let Some((key, members)) = widest_key(&rest, window) {
        let started = members
            .iter()
            .map(|a| a.started)
            .min()
            .unwrap_or_else(Instant::now);
        let mut group = AlertGroup {
            id: members.iter().map(|a| a.id).min().unwrap_or(0),
            key: Some(key),
            started,
            members: members.iter().map(|a| a.id).collect(),
        };
        rest.retain(|a| !group.members.contains(&a.id));
        // Aggregates of the members come along.
        let mut i = 0;
        while i < rest.len() {
            if fits(rest[i], &group, &by_id, window) {
                let a = rest.remove(i);
                join(&mut group, a, &by_id);
            } else {
                i += 1;
            }
        }
        group.members.sort_unstable();
        groups.push(group);
    }
    for a in rest {
        groups.push(AlertGroup {
            id: a.id,
            key: None,
            started: a.started,
            members: vec![a.id],
        });
    }
    groups.sort_by_key(|g| g.id);
    groups
}

/// Whether `a` may join `g`: close enough in time, and sharing its key or coarser than a member
/// (for a keyless group: sharing any value with its one member).
fn fits(a: &OpenAlert, g: &AlertGroup, by_id: &HashMap<u64, &OpenAlert>, window: Duration) -> bool {
    if !within(a.started, g.started, window) {
        return false;
    }
    let members = || g.members.iter().filter_map(|id| by_id.get(id).copied());
    let keyed = match &g.key {
        Some((d, v)) => a.has(*d, v),
        None => members().any(|m| m.dims().any(|(d, v)| a.has(d, v))),
    };
    keyed || members().any(|m| a.coarser_than(m))
}

/// The group `a` fits best: keyed by the dimension that comes first, then the oldest.
fn best_group(
    a: &OpenAlert,
    groups: &[AlertGroup],
    by_id: &HashMap<u64, &OpenAlert>,
    window: Duration,
) -> Option<usize> {
    groups
        .iter()
        .enumerate()
        .filter(|(_, g)| fits(a, g, by_id, window))
        .min_by_key(|(_, g)| {
            let rank = g.key.as_ref().map_or(usize::MAX, |(d, _)| priority(*d));
            (rank, g.started, g.id)
        })
        .map(|(i, _)| i)
}

/// Adds `a` to `g`; a keyless group takes the first value they share as its key.
fn join(g: &mut AlertGroup, a: &OpenAlert, by_id: &HashMap<u64, &OpenAlert>) {
    if g.key.is_none() {
        let shared = g
            .members
            .iter()
            .filter_map(|id| by_id.get(id))
            .flat_map(|m| m.dims())
            .filter(|(d, v)| a.has(*d, v))
            .min_by_key(|(d, _)| priority(*d));
        g.key = shared.map(|(d, v)| (d, Arc::clone(v)));
    }
    if let Err(at) = g.members.binary_search(&a.id) {
        g.members.insert(at, a.id);
    }
}

/// A dimension value and the alerts that share it.
type Shared<'a> = ((Dimension, Arc<str>), Vec<&'a OpenAlert>);

/// The value shared by the most of `alerts` whose starts fall within one window (at least
/// two), and those alerts.
fn widest_key<'a>(alerts: &[&'a OpenAlert], window: Duration) -> Option<Shared<'a>> {
    let mut best: Option<Shared<'a>> = None;
    let mut seen: HashSet<(Dimension, &str)> = HashSet::new();
    for a in alerts {
        for (d, v) in a.dims() {
            if !seen.insert((d, &**v)) {
                continue;
            }
            // Alerts are sorted by start: the run from the first holder within the window.
            let holders: Vec<&OpenAlert> = alerts.iter().copied().filter(|x| x.has(d, v)).collect();
            let Some(first) = holders.first() else {
                continue;
            };
            let run: Vec<&OpenAlert> = holders
                .iter()
                .copied()
                .filter(|x| within(x.started, first.started, window))
                .collect();
            if run.len() < 2 {
                continue;
            }
            let better = match &best {
                None => true,
                Some(((bd, _), bm)) => {
                    (run.len(), std::cmp::Reverse(priority(d)))
                        > (bm.len(), std::cmp::Reverse(priority(*bd)))
                }
            };
            if better {
                best = Some(((d, Arc::clone(v)), run));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    fn make(t0: Instant, id: u64, at: u64, dims: &[(Dimension, &str)]) -> OpenAlert {
        let mut a = OpenAlert::bare(
            id,
            AlertKind::Anomaly {
                signal: AnomalySignal::ErrorRatio,
            },
            t0 + Duration::from_secs(at),
        );
        for (d, v) in dims {
            let v = Some(Arc::from(*v));
            match d {
                Dimension::Provider => a.provider = v,
                Dimension::Tenant => a.tenant = v,
                Dimension::Model => a.model = v,
                Dimension::Route => a.route = v,
                Dimension::Endpoint | Dimension::Error => {}
            }
        }
        a
    }

    fn target<'a>(route: &'a str, provider: &'a str, model: &'a str) -> [(Dimension, &'a str); 3] {
        [
            (Dimension::Route, route),
            (Dimension::Provider, provider),
            (Dimension::Model, model),
        ]
    }

    type Summary<'a> = Vec<(Option<(Dimension, &'a str)>, Vec<u64>)>;

    fn summary(groups: &[AlertGroup]) -> Summary<'_> {
        groups
            .iter()
            .map(|g| (g.key.as_ref().map(|(d, v)| (*d, &**v)), g.members.clone()))
            .collect()
    }

    #[test]
    fn one_provider_failing_across_routes_is_one_group() {
        let t0 = Instant::now();
        let alerts = vec![
            make(t0, 1, 0, &target("a", "openai", "gpt-4o")),
            make(t0, 2, 20, &target("b", "openai", "gpt-4o")),
            make(t0, 3, 40, &target("c", "openai", "gpt-4o-mini")),
            // The routes' own alerts (aggregates) and a burn alert on route b.
            make(t0, 4, 30, &[(Dimension::Route, "a")]),
            make(t0, 5, 50, &[(Dimension::Route, "b")]),
            make(t0, 6, 60, &[(Dimension::Route, "c")]),
            // Unrelated: another provider on route d, and a tenant, later.
            make(t0, 7, 10, &target("d", "anthropic", "claude")),
            make(t0, 8, 900, &[(Dimension::Tenant, "acme")]),
        ];
        let groups = group_alerts(&alerts, &[], WINDOW);
        assert_eq!(
            summary(&groups),
            [
                (
                    Some((Dimension::Provider, "openai")),
                    vec![1, 2, 3, 4, 5, 6]
                ),
                (None, vec![7]),
                (None, vec![8]),
            ]
        );
        assert_eq!(groups[0].started, t0);

        // Next tick: a fourth route joins, route a's alerts closed; identity is kept.
        let mut next: Vec<OpenAlert> = alerts
            .iter()
            .filter(|a| a.id != 1 && a.id != 4)
            .cloned()
            .collect();
        next.push(make(t0, 9, 200, &target("e", "openai", "gpt-4o")));
        let again = group_alerts(&next, &groups, WINDOW);
        assert_eq!(
            summary(&again),
            [
                (Some((Dimension::Provider, "openai")), vec![2, 3, 5, 6, 9]),
                (None, vec![7]),
                (None, vec![8]),
            ]
        );
        // Too late to join: a new incident.
        next.push(make(t0, 10, 400, &target("f", "openai", "gpt-4o")));
        let later = group_alerts(&next, &again, WINDOW);
        assert_eq!(later.len(), 4);
        assert_eq!(summary(&later)[3], (None, vec![10]));
    }

    #[test]
    fn a_tenant_across_signals_is_one_group_and_lone_alerts_find_each_other() {
        let t0 = Instant::now();
        let acme = [(Dimension::Tenant, "acme")];
        let alerts = vec![
            make(t0, 1, 0, &acme),
            make(t0, 2, 30, &acme),
            make(t0, 3, 60, &acme),
        ];
        assert_eq!(
            summary(&group_alerts(&alerts, &[], WINDOW)),
            [(Some((Dimension::Tenant, "acme")), vec![1, 2, 3])]
        );

        // A lone target alert, then (next tick) the same model on another provider: they
        // share the model.
        let first = vec![make(t0, 1, 0, &target("a", "openai", "gpt-4o"))];
        let g1 = group_alerts(&first, &[], WINDOW);
        assert_eq!(summary(&g1), [(None, vec![1])]);
        let mut second = first.clone();
        second.push(make(t0, 2, 60, &target("b", "azure", "gpt-4o")));
        assert_eq!(
            summary(&group_alerts(&second, &g1, WINDOW)),
            [(Some((Dimension::Model, "gpt-4o")), vec![1, 2])]
        );
    }

    #[test]
    fn a_shared_cause_joins_alerts_with_no_dimension_in_common() {
        let t0 = Instant::now();
        let openai = Some((Dimension::Provider, Arc::<str>::from("openai")));
        let mut tenant_a = make(t0, 3, 40, &[(Dimension::Tenant, "a")]);
        tenant_a.cause = openai.clone();
        let mut tenant_b = make(t0, 4, 45, &[(Dimension::Tenant, "b")]);
        tenant_b.cause = openai;
        let alerts = vec![
            make(t0, 1, 0, &target("r1", "openai", "gpt-4o")),
            make(t0, 2, 10, &target("r2", "openai", "gpt-4o")),
            tenant_a,
            tenant_b,
        ];
        assert_eq!(
            summary(&group_alerts(&alerts, &[], WINDOW)),
            [(Some((Dimension::Provider, "openai")), vec![1, 2, 3, 4])]
        );
        // A cause equal to an own value adds nothing.
        let mut own = make(t0, 5, 0, &target("r1", "openai", "gpt-4o"));
        own.cause = Some((Dimension::Route, Arc::from("r1")));
        assert_eq!(own.dims().count(), 3);
    }

    #[test]
    fn the_most_widely_shared_value_wins_a_batch() {
        let t0 = Instant::now();
        // A and B share route r1; A, C and D share provider openai: openai takes three, B is
        // left alone rather than pulling A into a route group.
        let alerts = vec![
            make(t0, 1, 0, &target("r1", "openai", "gpt-4o")),
            make(t0, 2, 0, &target("r1", "anthropic", "claude")),
            make(t0, 3, 0, &target("r2", "openai", "gpt-4o")),
            make(t0, 4, 0, &target("r3", "openai", "o1")),
        ];
        assert_eq!(
            summary(&group_alerts(&alerts, &[], WINDOW)),
            [
                (Some((Dimension::Provider, "openai")), vec![1, 3, 4]),
                (None, vec![2]),
            ]
        );
        // Burn alerts from SLO statuses carry the same dimensions.
        let status = SloStatus {
            slo: Arc::from("availability"),
            route: Arc::from("r1"),
            target: Some(sluice_policy::remediation::TargetKey {
                provider: Arc::from("openai"),
                model: Arc::from("gpt-4o"),
            }),
            objective: 0.99,
            windows: Default::default(),
            alert: AlertLevel::Page,
            budget_remaining: 0.5,
        };
        let burn = OpenAlert::burn(5, &status, t0);
        assert!(burn.has(Dimension::Provider, "openai"));
        assert!(burn.has(Dimension::Route, "r1"));
        assert_eq!(
            burn.kind,
            AlertKind::Burn {
                slo: Arc::from("availability"),
                level: AlertLevel::Page
            }
        );
    }
}
