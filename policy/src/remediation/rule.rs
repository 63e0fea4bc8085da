//! Remediation rules as the policy file states them: when (an SLO burning), what to do, and
//! the hysteresis and safety settings around it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::anomaly::{AnomalySignal, AnomalyStatus};
use super::status::{AlertLevel, SloStatus, Window};

/// How long an action stays at least, unless its guard trips or its rule goes away.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(120);
/// How long the original must stay under a burn of 1 before an action is unwound.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// The share of affected traffic still sent the original way, so recovery can be seen.
pub const DEFAULT_PROBE_SHARE: f64 = 0.05;
/// By default an action may touch all of a route's traffic (less the probe share).
pub const DEFAULT_MAX_SHARE: f64 = 1.0;

/// When an SLO status counts as burning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurnCondition {
    /// The status's alert level is at least this one. `Alert(AlertLevel::None)` never holds: a
    /// rule that would act on every status is a configuration mistake, not a wish.
    Alert(AlertLevel),
    /// The burn over `window` is known and strictly above `burn`.
    Above { window: Window, burn: f64 },
    /// Not a burn: the AIOps detector flags `signal` (on the rule's route, or on the target
    /// for `failover`) with a score of at least `min_score` spreads in the signal's bad
    /// direction (0: being flagged is enough). Read from [`AnomalyStatus`]es, never from SLO
    /// statuses; the trigger's `slo` is then only the name incident events carry.
    Anomaly {
        signal: AnomalySignal,
        min_score: f64,
    },
}

/// What starts an incident for a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The SLO (by name) whose status is watched on the rule's route (per target for
    /// `failover`). With [`BurnCondition::Anomaly`] the condition names the signal and this is
    /// its name ([`Trigger::anomaly`]).
    pub slo: Arc<str>,
    pub burn: BurnCondition,
    /// Also require that no target of the route is healthy: each is taken out by an active
    /// failover, or its own status for `slo` meets `burn`. A target with no status yet counts
    /// as healthy (nothing says otherwise).
    pub no_healthy_target: bool,
}

/// The quality SLO a downgrade must not break.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub slo: Arc<str>,
    /// When the substitute model's status for `slo` meets this, the controller moves to the
    /// next candidate or reverts.
    pub burn: BurnCondition,
}

/// What a rule does to its route.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Take the burning target out (per target; never the last one of the route).
    Failover,
    /// Serve the route with another catalog model; candidates in order of preference.
    DowngradeTo(Vec<Arc<str>>),
    /// Serve stale cache entries instead of calling providers.
    CacheFallback,
    /// Refuse requests of keys whose priority is at most `max_priority` (503 + retry-after-ms).
    Shed { max_priority: u8 },
}

/// An action's name, a closed set (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Failover,
    DowngradeTo,
    CacheFallback,
    Shed,
    /// No action: an alert incident, related anomalies and burn-rate alerts grouped by the
    /// AIOps detector (never a rule's action).
    Alert,
}

/// One remediation rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique among the policy's rules; incidents and overlay entries name it.
    pub name: Arc<str>,
    pub route: Arc<str>,
    pub when: Trigger,
    pub action: Action,
    /// The least time an action stays in place.
    pub hold: Duration,
    /// How long the original's short-window (5 m) burn must stay known and under 1 before the
    /// action is unwound.
    pub cooldown: Duration,
    /// The share of the affected traffic still served the original way, in `[0, 1]`. With 0 a
    /// failover or downgrade never sees its original recover, so it is never unwound.
    pub probe_share: f64,
    /// The largest share of the route's traffic the action may touch, in `[0, 1]`.
    pub max_share: f64,
    /// Decide and record transitions, but leave the overlay routing reads alone.
    pub dry_run: bool,
    /// For `downgrade_to`: the quality SLO the substitute must keep.
    pub guard: Option<Guard>,
    pub runbook_url: Option<Arc<str>>,
}

// === impl BurnCondition ===

impl BurnCondition {
    /// Whether an SLO status meets the condition; never for an anomaly condition.
    pub fn holds(&self, status: &SloStatus) -> bool {
        match *self {
            Self::Alert(AlertLevel::None) => false,
            Self::Alert(level) => status.alert >= level,
            Self::Above { window, burn } => status.burn(window).is_some_and(|b| b > burn),
            Self::Anomaly { .. } => false,
        }
    }

    /// Whether an anomaly status meets the condition: only an anomaly condition on the same
    /// signal can, while the signal is flagged and its score in the bad direction is at least
    /// `min_score`.
    pub fn holds_anomaly(&self, status: &AnomalyStatus) -> bool {
        match *self {
            Self::Anomaly { signal, min_score } => {
                status.signal == signal
                    && status.is_active()
                    && status.directed_score().is_some_and(|s| s >= min_score)
            }
            Self::Alert(_) | Self::Above { .. } => false,
        }
    }

    /// The signal an anomaly condition watches.
    pub fn anomaly_signal(&self) -> Option<AnomalySignal> {
        match *self {
            Self::Anomaly { signal, .. } => Some(signal),
            Self::Alert(_) | Self::Above { .. } => None,
        }
    }
}

// === impl Action ===

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Failover => ActionKind::Failover,
            Self::DowngradeTo(_) => ActionKind::DowngradeTo,
            Self::CacheFallback => ActionKind::CacheFallback,
            Self::Shed { .. } => ActionKind::Shed,
        }
    }
}

// === impl ActionKind ===

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::DowngradeTo => "downgrade_to",
            Self::CacheFallback => "cache_fallback",
            Self::Shed => "shed",
            Self::Alert => "alert",
        }
    }
}

// === impl Rule ===

impl Rule {
    /// A rule with the default hold, cooldown, probe share and cap, live (not dry-run), no
    /// guard and no runbook.
    pub fn new(
        name: impl Into<Arc<str>>,
        route: impl Into<Arc<str>>,
        when: Trigger,
        action: Action,
    ) -> Self {
        Self {
            name: name.into(),
            route: route.into(),
            when,
            action,
            hold: DEFAULT_HOLD,
            cooldown: DEFAULT_COOLDOWN,
            probe_share: DEFAULT_PROBE_SHARE,
            max_share: DEFAULT_MAX_SHARE,
            dry_run: false,
            guard: None,
            runbook_url: None,
        }
    }

    /// The probe share, clamped into `[0, 1]` (NaN is 0).
    pub(crate) fn probe(&self) -> f64 {
        clamp_share(self.probe_share)
    }

    /// The cap, clamped into `[0, 1]` (NaN is 0).
    pub(crate) fn cap(&self) -> f64 {
        clamp_share(self.max_share)
    }
}

// === from the policy file ===

impl Rule {
    /// The rule as `route`'s policy file states it (validation checked the names).
    pub fn from_config(route: &str, c: &sluice_config::RemediationConfig) -> Self {
        use sluice_config::ActionConfig;
        Self {
            name: Arc::from(c.name.as_str()),
            route: Arc::from(route),
            when: Trigger {
                slo: Arc::from(c.slo.as_str()),
                burn: BurnCondition::from_config(c.burn),
                no_healthy_target: c.no_healthy_target,
            },
            action: match &c.action {
                ActionConfig::Failover => Action::Failover,
                ActionConfig::DowngradeTo(models) => {
                    Action::DowngradeTo(models.iter().map(|m| Arc::from(m.as_str())).collect())
                }
                ActionConfig::CacheFallback => Action::CacheFallback,
                ActionConfig::Shed { max_priority } => Action::Shed {
                    max_priority: *max_priority,
                },
            },
            hold: c.hold,
            cooldown: c.cooldown,
            probe_share: c.probe_share,
            max_share: c.max_share,
            dry_run: c.dry_run,
            guard: c.guard.as_ref().map(|(slo, burn)| Guard {
                slo: Arc::from(slo.as_str()),
                burn: BurnCondition::from_config(*burn),
            }),
            runbook_url: c.runbook_url.as_deref().map(Arc::from),
        }
    }
}

impl BurnCondition {
    pub fn from_config(c: sluice_config::BurnConfig) -> Self {
        use sluice_config::{BurnConfig, BurnWindow};
        match c {
            BurnConfig::Page => Self::Alert(AlertLevel::Page),
            BurnConfig::Ticket => Self::Alert(AlertLevel::Ticket),
            BurnConfig::Above { window, burn } => Self::Above {
                window: match window {
                    BurnWindow::M5 => Window::M5,
                    BurnWindow::M30 => Window::M30,
                    BurnWindow::H1 => Window::H1,
                    BurnWindow::H6 => Window::H6,
                    BurnWindow::D1 => Window::D1,
                    BurnWindow::D3 => Window::D3,
                    BurnWindow::Slo => Window::Slo,
                },
                burn,
            },
            BurnConfig::Anomaly { signal, min_score } => Self::Anomaly {
                signal: AnomalySignal::from_config(signal),
                min_score,
            },
        }
    }
}

// === impl Trigger ===

impl Trigger {
    /// Fires on `slo` at `level` or above, without the no-healthy-target condition.
    pub fn at(slo: impl Into<Arc<str>>, level: AlertLevel) -> Self {
        Self {
            slo: slo.into(),
            burn: BurnCondition::Alert(level),
            no_healthy_target: false,
        }
    }

    /// Fires while the detector flags `signal` with a score of at least `min_score`, without
    /// the no-healthy-target condition.
    pub fn anomaly(signal: AnomalySignal, min_score: f64) -> Self {
        Self {
            slo: Arc::from(signal.as_str()),
            burn: BurnCondition::Anomaly { signal, min_score },
            no_healthy_target: false,
        }
    }
}

fn clamp_share(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}
