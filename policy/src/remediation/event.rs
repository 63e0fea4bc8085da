//! Incident events: every step the controller takes, with the numbers behind it.
//!
//! [`Transition`] is what [`decide`](super::decide) returns; [`IncidentEvent`] stamps it with
//! the wall clock for the append-only incident log (one JSON object per line; the writer lives
//! in the gateway). Both serialise with serde so the log, `/admin/incidents` and webhooks share
//! one shape.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::anomaly::AnomalyStatus;
use super::overlay::{Applied, Verdict};
use super::rule::{ActionKind, BurnCondition};
use super::status::{SloStatus, TargetKey};

/// Why an action that should be taken is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    /// Another change was made on the route this tick; this one follows next tick.
    OneChangePerTick,
    /// Taking the target out would leave the route with no target at all.
    LastTarget,
    /// The rule's `max_share` is used up by its other actions on the route.
    MaxShare,
    /// Another rule already holds this kind of entry on the route (or this target).
    TakenBy { rule: Arc<str> },
    /// No downgrade candidate is left: each was rejected by the guard, is burning its guard,
    /// or is what the route serves already.
    NoCandidate,
    /// The target is no longer one of the route's.
    UnknownTarget,
}

/// Why an action was taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnwindReason {
    /// The original stayed healthy for the cooldown, after the hold.
    Recovered,
    /// The rule is no longer in the policy, or its action or dry-run flag changed.
    RuleChanged,
    /// The route or the target is no longer in the policy.
    RouteChanged,
    /// An operator took it back (`POST /admin/incidents/{id}/unwind`).
    Operator,
}

/// What an operator did to an incident, or to the rule behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorOp {
    /// Seen and being handled; changes nothing in routing.
    Acknowledged,
    /// The rule was put in dry-run until resumed: its live actions are taken back.
    PausedRule,
    /// The rule acts again.
    ResumedRule,
    /// The incident's action was taken back now, and stays back until the trigger clears.
    ForcedUnwind,
}

/// What happened, with its own details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The rule's trigger started to hold.
    Opened,
    /// The action was put in place (or, for a dry-run rule, would have been).
    ActionTaken { applied: Applied },
    /// The action should be taken but is not (reported once per reason).
    Blocked { reason: BlockReason },
    /// The probe traffic's verdict on the original changed. `burn` is the short-window burn it
    /// was decided on (the highest, when several originals are probed); for a rule on an
    /// anomaly condition, how far out of its band the original is (1 at the band's edge).
    ProbeResult { verdict: Verdict, burn: Option<f64> },
    /// The guard SLO burned on the substitute: the route moved to `to`, or back to its own
    /// models when `to` is `None`.
    Reverted {
        from: Arc<str>,
        to: Option<Arc<str>>,
        guard_slo: Arc<str>,
    },
    /// The action was taken back.
    Unwound {
        reason: UnwindReason,
        #[serde(with = "millis")]
        held: Duration,
        #[serde(with = "millis")]
        healthy_for: Duration,
    },
    /// Alerts joined or left an alert incident (names like `error_ratio anomaly on target
    /// chat/openai/gpt-4o`, `availability burn (page) on route chat`).
    AlertsChanged {
        started: Vec<Arc<str>>,
        ended: Vec<Arc<str>>,
    },
    /// An operator acted (from the console or the admin API): `by` names the admin token's
    /// holder, with ` (console)` for a console session.
    Operator {
        op: OperatorOp,
        by: Arc<str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Arc<str>>,
    },
    /// The trigger no longer holds and nothing is in place: the incident is over.
    Resolved {
        #[serde(with = "millis")]
        open_for: Duration,
    },
}

/// One step of one incident, with the numbers that triggered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub incident: u64,
    pub route: Arc<str>,
    pub rule: Arc<str>,
    pub action: ActionKind,
    /// The burning target, for `failover`.
    pub target: Option<TargetKey>,
    /// The rule is in dry-run: nothing was changed in routing.
    pub dry_run: bool,
    /// The trigger's SLO and condition (the thresholds compared against).
    pub slo: Arc<str>,
    pub condition: BurnCondition,
    #[serde(flatten)]
    pub event: Event,
    /// The SLO statuses the step was decided on: the trigger's status for `opened`,
    /// `action_taken`, `blocked` and `resolved`; the probed originals' for `probe_result` and
    /// `unwound`; the guard's for `reverted`.
    pub evidence: Vec<SloStatus>,
    /// The anomaly statuses, in the same roles, for a rule on an anomaly condition (or a
    /// guard on one); empty, and left out of the JSON, otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<AnomalyStatus>,
    pub runbook_url: Option<Arc<str>>,
}

/// A transition stamped with the wall clock, as written to the incident log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    #[serde(flatten)]
    pub transition: Transition,
    /// What explains the bad events, on an incident's `opened` event (the AIOps root-cause
    /// analysis; absent when AIOps is off or nothing stands out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<IncidentHint>,
}

/// A root-cause hint as an incident carries it: the dimension values that explain most of
/// the bad events (failed or slow requests, extra spend or tokens) of the last minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentHint {
    /// `failed`, `slow`, `cost` or `tokens`.
    pub focus: Arc<str>,
    /// One line for people: `82 % of failed requests: provider openai (…); error 529 (95 %)`.
    pub text: String,
    /// Best first.
    pub top: Vec<HintPart>,
    /// The most common error cause among failed requests.
    pub error: Option<HintPart>,
}

/// One value a hint names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HintPart {
    /// `provider`, `tenant`, `model`, `route`, `endpoint` or `error`.
    pub dimension: Arc<str>,
    pub value: Arc<str>,
    /// Its share of the bad events (of the increase, for amounts).
    pub share: f64,
}

// === impl IncidentEvent ===

impl IncidentEvent {
    pub fn new(transition: Transition, wall: SystemTime) -> Self {
        let at_unix_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            at_unix_ms,
            transition,
            hint: None,
        }
    }
}

// === impl OperatorOp ===

impl OperatorOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::PausedRule => "paused_rule",
            Self::ResumedRule => "resumed_rule",
            Self::ForcedUnwind => "forced_unwind",
        }
    }
}

// === impl Event ===

impl Event {
    /// The event's name (`opened`, `action_taken`, …), a closed set.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::ActionTaken { .. } => "action_taken",
            Self::Blocked { .. } => "blocked",
            Self::ProbeResult { .. } => "probe_result",
            Self::Reverted { .. } => "reverted",
            Self::Unwound { .. } => "unwound",
            Self::AlertsChanged { .. } => "alerts_changed",
            Self::Operator { .. } => "operator",
            Self::Resolved { .. } => "resolved",
        }
    }
}

/// Durations as whole milliseconds in the log.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
