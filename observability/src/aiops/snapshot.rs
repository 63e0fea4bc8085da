//! Snapshots of the learned baselines, so a restart does not forget a week of seasonality.
//!
//! Versioned JSON of every level that has learned anything, per scope and signal. Levels are
//! keyed by hour of the week (wall clock), not by `Instant`, so they restore as they are
//! whatever the downtime: a level a week stale is still the best guess for its hour, and the
//! EWMA moves on from it. Detector states and the detection window are not kept (they rebuild
//! within the hold time and the window); the interval width is, because a spread learned over
//! one-minute intervals means something else over ten-second ones.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_policy::remediation::{AnomalyScope, AnomalySignal};
use tokio::time::Instant;

use super::baseline::{Baseline, Level};
use super::detect::Detector;
use super::engine::AiopsEngine;
use crate::Error;

/// The format this build writes and reads.
pub const AIOPS_SNAPSHOT_VERSION: u64 = 1;

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AiopsRestoreReport {
    /// Scopes whose baselines were restored.
    pub series: usize,
    /// Scopes skipped: past a cap, or the whole snapshot when the interval width changed.
    pub skipped: usize,
    /// Levels restored.
    pub levels: usize,
    /// The snapshot was taken with another interval width and nothing was restored.
    pub interval_changed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    version: u64,
    taken_unix_ms: u64,
    interval_ns: u64,
    series: Vec<SeriesSnap>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SeriesSnap {
    scope: AnomalyScope,
    signals: Vec<SignalSnap>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignalSnap {
    signal: AnomalySignal,
    /// `[slot, centre, spread, n]` per level that learned something (slot 0 is the recent
    /// level, 1–24 the hours of the day, 25–192 the hours of the week from Monday 00:00 UTC).
    levels: Vec<(u16, f32, f32, u32)>,
}

#[derive(Deserialize)]
struct Head {
    version: u64,
}

pub(crate) fn take(engine: &AiopsEngine, wall: SystemTime) -> Snapshot {
    let mut series: Vec<SeriesSnap> = engine
        .series()
        .map(|s| SeriesSnap {
            scope: s.scope.clone(),
            signals: AnomalySignal::ALL
                .iter()
                .filter_map(|&signal| {
                    let b = &s.signals[signal.index()].baseline;
                    let levels: Vec<(u16, f32, f32, u32)> = b
                        .levels
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| l.n > 0)
                        .map(|(i, l)| {
                            (
                                u16::try_from(i).unwrap_or(u16::MAX),
                                l.centre,
                                l.spread,
                                l.n,
                            )
                        })
                        .collect();
                    (!levels.is_empty()).then_some(SignalSnap { signal, levels })
                })
                .collect(),
        })
        .filter(|s| !s.signals.is_empty())
        .collect();
    series.sort_by(|a, b| a.scope.cmp(&b.scope));
    Snapshot {
        version: AIOPS_SNAPSHOT_VERSION,
        taken_unix_ms: wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        interval_ns: engine.clock().interval_ns,
        series,
    }
}

pub(crate) fn encode(snap: &Snapshot) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(snap).map_err(Error::AiopsSnapshotEncode)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, Error> {
    let head: Head = serde_json::from_slice(bytes).map_err(Error::AiopsSnapshotDecode)?;
    if head.version != AIOPS_SNAPSHOT_VERSION {
        return Err(Error::AiopsSnapshotVersion {
            found: head.version,
            supported: AIOPS_SNAPSHOT_VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(Error::AiopsSnapshotDecode)
}

pub(crate) fn apply(engine: &mut AiopsEngine, snap: &Snapshot, now: Instant) -> AiopsRestoreReport {
    let mut report = AiopsRestoreReport::default();
    if snap.interval_ns != engine.clock().interval_ns {
        report.skipped = snap.series.len();
        report.interval_changed = true;
        return report;
    }
    for s in &snap.series {
        let Some(series) = engine.series_for(&s.scope, now) else {
            report.skipped += 1;
            continue;
        };
        for sig in &s.signals {
            let mut baseline = Baseline::new();
            for &(slot, centre, spread, n) in &sig.levels {
                let Some(level) = baseline.levels.get_mut(usize::from(slot)) else {
                    continue;
                };
                if !(centre.is_finite() && spread.is_finite()) {
                    continue;
                }
                *level = Level { centre, spread, n };
                report.levels += 1;
            }
            let state = &mut series.signals[sig.signal.index()];
            state.baseline = baseline;
            state.detector = Detector::default();
        }
        report.series += 1;
    }
    report
}
