//! The plain anomaly state remediation reads beside SLO statuses: one [`AnomalyStatus`] per
//! signal and scope, filled by `sluice-observability`'s AIOps detector (learned baselines).
//! Nothing here learns or detects, so the decision stays testable with hand-written numbers.
//!
//! A rule fires on an anomaly through [`BurnCondition::Anomaly`](super::BurnCondition): the
//! signal is flagged on the rule's route (or, for `failover`, on the target) with a score of at
//! least `min_score` spreads in its bad direction. The probe that decides an unwind reads the
//! original's [`AnomalyStatus::excess`]: under 1 means the signal is back inside its band.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::status::TargetKey;

/// A signal the detector learns a baseline for. A closed set (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalySignal {
    /// Time to the first chunk of a stream, in seconds.
    Ttft,
    /// Time per output token after the first, in seconds.
    TimePerOutputToken,
    /// Duration of successful requests, in seconds.
    Duration,
    /// Failed requests over counted requests (client errors and cancels excluded).
    ErrorRatio,
    /// Input plus output tokens of successful requests.
    TokensPerRequest,
    /// Spend in USD per minute.
    CostPerMinute,
}

/// Which side of the band is an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only above the band: slower, more errors, more spend.
    Up,
    /// Either side: tokens per request that collapse (cut answers, refusals) matter as much
    /// as tokens that balloon.
    Both,
}

/// Where a baseline is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnomalyScope {
    /// Every request of a route.
    Route { route: Arc<str> },
    /// The requests of a route answered (or last tried) by one target.
    Target { route: Arc<str>, target: TargetKey },
    /// Every request of a tenant (`other` for the tenants past the tracked cap).
    Tenant { tenant: Arc<str> },
}

/// Where a signal stands in its scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyState {
    /// No baseline yet: nothing is flagged and nothing is proven healthy.
    #[default]
    Learning,
    /// Inside the band, or too few events to tell.
    Normal,
    /// Outside the band, not yet for long enough.
    Pending,
    /// Flagged: outside the band for the hold time with enough events.
    Anomalous,
    /// Flagged, back inside the band, not yet for long enough to clear.
    Clearing,
}

/// The band a signal is expected in: `centre ± k · spread`, in the signal's units. For a
/// log-scale signal the spread is a log ratio (0.1 ≈ ±10 %), so the band is `centre · e^(±k·s)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnomalyBand {
    pub centre: f64,
    pub lower: f64,
    pub upper: f64,
    /// In the signal's scale (log ratio for log-scale signals, the ratio itself for
    /// `error_ratio`).
    pub spread: f64,
    /// The band's half-width in spreads.
    pub k: f64,
}

/// One signal in one scope, as the detector sees it on a tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyStatus {
    pub signal: AnomalySignal,
    pub scope: AnomalyScope,
    pub state: AnomalyState,
    /// The signal over the detection window; `None` below the minimum number of events.
    pub value: Option<f64>,
    /// `(value − centre) / spread` in the signal's scale, signed; `None` when the value or the
    /// band is unknown.
    pub score: Option<f64>,
    /// `None` while learning.
    pub band: Option<AnomalyBand>,
    /// Events in the detection window that carried the signal.
    pub events: u64,
    /// How long it has been flagged, while `anomalous` or `clearing`.
    pub active_for_ms: Option<u64>,
    /// The largest score in the bad direction while flagged.
    pub peak_score: Option<f64>,
}

// === impl AnomalySignal ===

impl AnomalySignal {
    pub const ALL: [AnomalySignal; 6] = [
        AnomalySignal::Ttft,
        AnomalySignal::TimePerOutputToken,
        AnomalySignal::Duration,
        AnomalySignal::ErrorRatio,
        AnomalySignal::TokensPerRequest,
        AnomalySignal::CostPerMinute,
    ];

    pub fn from_config(c: sluice_config::AnomalySignalConfig) -> Self {
        use sluice_config::AnomalySignalConfig as C;
        match c {
            C::Ttft => Self::Ttft,
            C::TimePerOutputToken => Self::TimePerOutputToken,
            C::Duration => Self::Duration,
            C::ErrorRatio => Self::ErrorRatio,
            C::TokensPerRequest => Self::TokensPerRequest,
            C::CostPerMinute => Self::CostPerMinute,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ttft => "ttft",
            Self::TimePerOutputToken => "time_per_output_token",
            Self::Duration => "duration",
            Self::ErrorRatio => "error_ratio",
            Self::TokensPerRequest => "tokens_per_request",
            Self::CostPerMinute => "cost_per_minute",
        }
    }

    pub fn direction(self) -> Direction {
        match self {
            Self::TokensPerRequest => Direction::Both,
            _ => Direction::Up,
        }
    }

    /// Whether the signal is learned on a log scale (multiplicative noise: latencies, tokens,
    /// spend); `error_ratio` is learned as it is.
    pub fn log_scale(self) -> bool {
        !matches!(self, Self::ErrorRatio)
    }

    /// Its position in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Ttft => 0,
            Self::TimePerOutputToken => 1,
            Self::Duration => 2,
            Self::ErrorRatio => 3,
            Self::TokensPerRequest => 4,
            Self::CostPerMinute => 5,
        }
    }
}

impl fmt::Display for AnomalySignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl AnomalyScope ===

impl AnomalyScope {
    /// `route`, `target` or `tenant` (a label value).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Route { .. } => "route",
            Self::Target { .. } => "target",
            Self::Tenant { .. } => "tenant",
        }
    }

    /// The route, for route and target scopes.
    pub fn route(&self) -> Option<&Arc<str>> {
        match self {
            Self::Route { route } | Self::Target { route, .. } => Some(route),
            Self::Tenant { .. } => None,
        }
    }

    pub fn target(&self) -> Option<&TargetKey> {
        match self {
            Self::Target { target, .. } => Some(target),
            _ => None,
        }
    }

    pub fn tenant(&self) -> Option<&Arc<str>> {
        match self {
            Self::Tenant { tenant } => Some(tenant),
            _ => None,
        }
    }
}

/// `route chat`, `target chat/openai/gpt-4o`, `tenant search`: one label value per scope.
impl fmt::Display for AnomalyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Route { route } => write!(f, "route {route}"),
            Self::Target { route, target } => write!(f, "target {route}/{target}"),
            Self::Tenant { tenant } => write!(f, "tenant {tenant}"),
        }
    }
}

// === impl AnomalyState ===

impl AnomalyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Learning => "learning",
            Self::Normal => "normal",
            Self::Pending => "pending",
            Self::Anomalous => "anomalous",
            Self::Clearing => "clearing",
        }
    }

    /// Whether the detector flags it (`anomalous` or `clearing`).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Anomalous | Self::Clearing)
    }
}

// === impl AnomalyStatus ===

impl AnomalyStatus {
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }

    /// The score in the signal's bad direction: the score itself for upward signals (negative
    /// when better than usual), its size for two-sided ones.
    pub fn directed_score(&self) -> Option<f64> {
        let score = self.score?;
        Some(match self.signal.direction() {
            Direction::Up => score,
            Direction::Both => score.abs(),
        })
    }

    /// How far out of its band the signal is, as a fraction of the band's half-width: under 1
    /// inside the band, over 1 outside it in the bad direction. `None` when unknown. The
    /// remediation probe reads it the way it reads a short-window burn rate.
    pub fn excess(&self) -> Option<f64> {
        let k = self.band?.k;
        let d = self.directed_score()?;
        Some(if k > 0.0 { d / k } else { d })
    }
}
