//! AIOps: learned baselines per route, target (route × provider × model) and tenant for six
//! signals, anomalies when a signal leaves its band for long enough, grouping of related
//! alerts into one incident, and a root-cause hint for each.
//!
//! Owns: the per-request sample ([`AiopsSample`]), the baselines and detectors
//! ([`AiopsEngine`]: ingest, evaluate, snapshot, restore), the bounded counts behind hints and
//! their ranking ([`root_cause`]; the `rootcause` module's docs for the math), and alert
//! grouping ([`group_alerts`]). Does not own: the
//! tick, files, metrics, incidents or remediation; the statuses it returns are
//! `sluice_policy::remediation::AnomalyStatus`, which remediation reads
//! (`decide_with_anomalies`) and the gateway turns into `sluice_anomaly_active{signal,scope}`.
//!
//! ## Signals and scales
//! TTFT, time per output token, duration and tokens per request are learned as the mean of the
//! logs of an interval's requests (a geometric mean: latencies and sizes are multiplicative and
//! heavy-tailed, and a log band reads as "×1.3" at any level); spend per minute as the log of
//! the interval's rate; the error ratio as it is. Client errors and cancels count for spend only.
//!
//! ## Learning (the `baseline` module's docs)
//! Each closed interval teaches the baselines the value of the window (`window` intervals)
//! ending with it: per signal and scope, a robust EWMA of the centre and the spread of those
//! window values, kept for a recent level, each hour of the day and each hour of the week; the
//! band comes from the most specific level that has warmed up. Learning the very statistic the
//! detector compares makes the spread its own: sampling noise averaged over the window, slow
//! variation (load, the hour's ramp) not. Baselines do not learn while their signal is out of
//! band (pending or flagged), so an anomaly is not learned as normal — unless it stays flagged
//! past `relearn_after`, when it has become the new normal. Windows reaching back before a
//! series' first data (a start, a restore) are not learned from.
//!
//! ## Detection
//! On each tick the window (the newest interval still filling) is compared with the band
//! `centre ± k · spread` of the current hour: the score is `(value − centre) / spread`. With
//! `k = 5`, a normal-noise crossing is a 5σ event (about 3·10⁻⁷ per window one-sided), which
//! over a day of 5-minute windows on 100 series is about one in five hundred days; floors
//! (4 % for log-scale signals, one point for the error ratio) keep a very steady signal from
//! flagging changes nobody cares about, and the spread is never below the window's own standard
//! error (of the mean of the logs; of a compound Poisson sum for spend; binomial for the error
//! ratio), because the EWMA of overlapping windows has few independent samples and can run
//! low for a small scope. Below `min_events` in the window the value is unknown. A signal out of
//! band (in its bad direction: upward, or either way for tokens per request) for `hold` is
//! flagged; back in band for `clear`, it is cleared (the `detect` module's docs for the state
//! machine).
//!
//! ## Cost per sample
//! `ingest` computes the sample's values once (four `ln`s), then adds them to the route's,
//! target's and tenant's current interval and to one row per dimension of the root-cause
//! counts: about a dozen hash lookups and additions, no allocation once the route, target,
//! tenant and dimension values have been seen. Everything else happens on the tick.
//!
//! ## Memory
//! A series costs 6 × 193 levels × 12 B ≈ 13.9 KB of baselines plus its window ring
//! ([`AiopsEngine::footprint`]). Routes and targets come from the policy (and are capped);
//! tenants past `max_tenants` share one `other` series, so 10 000 tenants cost what
//! `max_tenants + 1` do. The root-cause counts keep `hint_recent + hint_reference` cells of 32 B
//! per tracked value, tenants capped at `max_hint_tenants` plus `other`.
//!
//! Time is `tokio::time::Instant` (paused in tests); the wall clock passed to `evaluate` only
//! places intervals in their hour of the week.

mod baseline;
mod breakdown;
mod config;
mod detect;
mod engine;
mod group;
mod rootcause;
mod sample;
mod series;
mod snapshot;

pub use breakdown::OTHER;
pub use config::AiopsConfig;
pub use engine::{AiopsEngine, AiopsStatus, AnomalyEvent, AnomalyEventKind, Footprint, Refused};
pub use group::{AlertGroup, AlertKind, OpenAlert, group_alerts};
pub use rootcause::{
    BreakdownView, Contribution, Counts, Dimension, DimensionCounts, Focus, RootCauseHint,
    ValueCounts, root_cause,
};
pub use sample::{AiopsSample, ErrorCause};
pub use sluice_policy::remediation::{
    AnomalyBand, AnomalyScope, AnomalySignal, AnomalyState, AnomalyStatus,
};
pub use snapshot::{AIOPS_SNAPSHOT_VERSION, AiopsRestoreReport};

#[cfg(test)]
mod tests;
