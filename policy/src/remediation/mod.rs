//! Remediation: the pure decision of what to change in routing while an SLO burns, and the
//! record of why.
//!
//! Owns: the plain SLO state remediation reads ([`SloStatus`], filled by
//! `sluice-observability`'s SLO engine) and the plain anomaly state ([`AnomalyStatus`], filled
//! by its AIOps detector), the rules ([`Rule`]), the overlay routing reads
//! ([`Overlay`]), the decision ([`decide`]) and the incident events it emits
//! ([`Transition`], [`IncidentEvent`]). Does not own: the tick, publishing the overlay
//! (arc-swap), applying it to requests, or writing the incident log; the gateway does those.
//!
//! Everything takes time as an argument (`tokio::time::Instant`), so a whole incident can be
//! replayed tick by tick in a test. The state machine and why it does not flap are described in
//! [`decide`]'s module.

mod anomaly;
mod decide;
mod event;
mod overlay;
mod rule;
mod status;

pub use anomaly::{
    AnomalyBand, AnomalyScope, AnomalySignal, AnomalyState, AnomalyStatus, Direction,
};
pub use decide::{
    Decision, NotActive, RouteTarget, RouteTargets, decide, decide_with_anomalies, force_unwind,
};
pub use event::{
    BlockReason, Event, HintPart, IncidentEvent, IncidentHint, OperatorOp, Transition, UnwindReason,
};
pub use overlay::{
    Applied, CacheFallback, Ejection, Incident, Overlay, Phase, RouteOverlay, SetBy, Shed,
    Substitution, Verdict, in_share,
};
pub use rule::{
    Action, ActionKind, BurnCondition, DEFAULT_COOLDOWN, DEFAULT_HOLD, DEFAULT_MAX_SHARE,
    DEFAULT_PROBE_SHARE, Guard, Rule, Trigger,
};
pub use status::{
    AlertLevel, PAGE_FAST_BURN, PAGE_SLOW_BURN, SloStatus, TICKET_BURN, TargetKey, Window,
    WindowStat, WindowStats,
};

#[cfg(test)]
mod anomaly_tests;
#[cfg(test)]
mod tests;
