//! The SLO engine: good and bad counts per SLO in fixed time buckets, per route and per target
//! (route × provider × model), and from them burn rates, error budgets and alert levels.
//!
//! Owns: SLO definitions ([`SloSpec`], [`Sli`]), classifying finished requests and judge scores
//! for each SLI ([`Sli::classify`]), the windows, snapshots of the counts, and the Prometheus
//! rules for the same SLOs ([`prometheus_rules`]). Does not own: the tick, files, or metrics;
//! the statuses it returns are `sluice_policy::remediation::SloStatus`, which remediation reads.
//!
//! ## Math
//! For a window, burn rate = `(bad / total) / (1 − objective)`: 1 spends the budget exactly over
//! the SLO window, 14.4 spends 2 % of a 30-day budget in an hour. Below the SLO's `min_events`
//! a window's burn is unknown (`None`), which neither alerts nor proves health. The error budget
//! remaining over the SLO window is `1 − bad / ((1 − objective) · total)`. Alert levels are the
//! SRE Workbook's ("Alerting on SLOs", multiwindow, multi-burn-rate): `page` when 1 h and 5 m
//! both burn over 14.4, or 6 h and 30 m over 6; `ticket` when 3 d and 6 h burn over 1
//! ([`sluice_policy::remediation::WindowStats::alert`], shared with remediation's tests).
//!
//! ## Buckets and memory
//! Three tiers of ring buffers, at scale 1: 5 s buckets over 1 h (720) for the 5 m, 30 m and
//! 1 h windows; 5 min buckets over 1 d (288) for 6 h and 1 d; 1 h buckets over 3 d or the SLO
//! window, whichever is longer (720 for 30 d), for 3 d and the SLO window. A window is read as
//! the `n` newest buckets including the one still filling, so it covers between `n − 1` and `n`
//! widths: at most 1/60 short (5 m), 1/72 (6 h, 3 d), 1/720 (30 d). Each bucket is two `u32`s,
//! so a series costs (720 + 288 + 720) × 8 B ≈ 14 KB for a 30-day SLO, whatever the traffic;
//! 10 routes × 3 SLOs × (the route + 3 targets) is 120 series, about 1.7 MB. (Plain 5 s buckets
//! to 6 h and 5 min buckets to 30 d would be 104 KB per series.) Targets unseen for the longest
//! span are dropped by [`SloEngine::prune`], and an SLO tracks at most
//! [`MAX_TARGETS_PER_SLO`] targets.
//!
//! [`WindowScale`] multiplies every window and bucket width (not the bucket counts), so a drill
//! at scale 1/360 sees a 1 h window in 10 s with the same resolution. Time is
//! `tokio::time::Instant`, so tests run on paused time.

mod engine;
mod ring;
mod rules;
mod snapshot;
mod spec;

pub use engine::{MAX_TARGETS_PER_SLO, SloEngine};
pub use rules::{ALERT_NAME, MetricNames, prometheus_rules};
pub use snapshot::{RestoreReport, SNAPSHOT_VERSION};
pub use spec::{ErrorClass, QualitySample, Sli, SloSample, SloSpec, WindowScale};

#[cfg(test)]
mod tests;
