//! Snapshots of the engine, so a restart does not forget the error budget.
//!
//! A snapshot is versioned JSON. Each non-empty bucket is stored as its *age* (from the
//! bucket's start to the moment of the snapshot), never as an `Instant`, which means nothing
//! in another process. Restoring places each bucket `age + downtime` before now, where the
//! downtime is the wall-clock time since the snapshot (0 if the clock went backwards), and
//! drops what has aged out of its ring. A bucket lands in the new bucket that holds its middle
//! (clamped to the snapshot moment, for the bucket that was still filling), so a restore moves
//! counts by at most half a bucket; with another scale the widths differ and counts are
//! re-bucketed the same way.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_policy::remediation::TargetKey;
use tokio::time::Instant;

use super::engine::{Series, SloEngine};
use crate::Error;

/// The format this build writes and reads.
pub const SNAPSHOT_VERSION: u64 = 1;

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Series (per SLO and route, or per target) whose counts were restored.
    pub series: usize,
    /// Series skipped: the SLO is no longer defined, counts something else now, or has no room
    /// for another target.
    pub skipped: usize,
    /// Buckets older than their ring holds by now.
    pub dropped_buckets: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    version: u64,
    taken_unix_ms: u64,
    series: Vec<SeriesSnap>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SeriesSnap {
    slo: Arc<str>,
    route: Arc<str>,
    /// What was counted (`Sli`'s display form); counts are restored only into the same SLI.
    sli: String,
    target: Option<TargetKey>,
    /// Finest tier first.
    tiers: Vec<TierSnap>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TierSnap {
    width_ns: u64,
    /// `[age_ns, bad, total]` per non-empty bucket.
    buckets: Vec<(u64, u32, u32)>,
}

#[derive(Deserialize)]
struct Head {
    version: u64,
}

pub(crate) fn take(engine: &SloEngine, now: Instant, wall: SystemTime) -> Snapshot {
    let now_ns = engine.offset_ns(now);
    let widths = engine.widths_ns();
    let tiers = |series: &Series| -> Vec<TierSnap> {
        series
            .rings
            .iter()
            .zip(widths)
            .map(|(ring, width)| TierSnap {
                width_ns: width,
                buckets: ring
                    .iter()
                    .map(|(ix, c)| {
                        let start = i128::from(ix) * i128::from(width);
                        let age = u64::try_from((now_ns - start).max(0)).unwrap_or(u64::MAX);
                        (age, c.bad, c.total)
                    })
                    .collect(),
            })
            .collect()
    };
    let mut series = Vec::new();
    for slo in engine.slos() {
        let spec = &slo.spec;
        let snap = |target: Option<&TargetKey>, s: &Series| SeriesSnap {
            slo: Arc::clone(&spec.name),
            route: Arc::clone(&spec.route),
            sli: spec.sli.to_string(),
            target: target.cloned(),
            tiers: tiers(s),
        };
        series.push(snap(None, &slo.route));
        let mut targets: Vec<_> = slo.targets.iter().collect();
        targets.sort_by(|a, b| a.0.cmp(b.0));
        for (key, s) in targets {
            series.push(snap(Some(key), s));
        }
    }
    Snapshot {
        version: SNAPSHOT_VERSION,
        taken_unix_ms: wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        series,
    }
}

pub(crate) fn encode(snap: &Snapshot) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(snap).map_err(Error::SnapshotEncode)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, Error> {
    let head: Head = serde_json::from_slice(bytes).map_err(Error::SnapshotDecode)?;
    if head.version != SNAPSHOT_VERSION {
        return Err(Error::SnapshotVersion {
            found: head.version,
            supported: SNAPSHOT_VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(Error::SnapshotDecode)
}

/// Wall-clock time since the snapshot; zero if the clock is behind it.
pub(crate) fn elapsed(snap: &Snapshot, wall: SystemTime) -> Duration {
    let taken = UNIX_EPOCH + Duration::from_millis(snap.taken_unix_ms);
    wall.duration_since(taken).unwrap_or_default()
}

pub(crate) fn apply(
    engine: &mut SloEngine,
    snap: &Snapshot,
    now: Instant,
    elapsed: Duration,
) -> RestoreReport {
    let mut report = RestoreReport::default();
    let now_ns = engine.offset_ns(now);
    let now_ix = engine.indices(now);
    let widths = engine.widths_ns();
    let shift = i128::try_from(elapsed.as_nanos()).unwrap_or(i128::MAX);
    let seen = now.checked_sub(elapsed).unwrap_or(now);
    for s in &snap.series {
        let Some(slo) = engine
            .slos_mut()
            .iter_mut()
            .find(|x| x.spec.name == s.slo && x.spec.route == s.route)
            .filter(|x| x.spec.sli.to_string() == s.sli)
        else {
            report.skipped += 1;
            continue;
        };
        let series = match &s.target {
            None => Some(&mut slo.route),
            Some(target) => slo.target_series(target, seen),
        };
        let Some(series) = series else {
            report.skipped += 1;
            engine.refuse_target();
            continue;
        };
        for ((tier, ring), t) in series.rings.iter_mut().enumerate().zip(&s.tiers) {
            let width = i128::from(widths[tier]);
            ring.advance(now_ix[tier]);
            for &(age, bad, total) in &t.buckets {
                let to_middle = (t.width_ns / 2).min(age);
                let at = now_ns - shift - i128::from(age - to_middle);
                let ix = i64::try_from(at.div_euclid(width))
                    .unwrap_or(i64::MIN)
                    .min(now_ix[tier]);
                if !ring.add(ix, bad, total) {
                    report.dropped_buckets += 1;
                }
            }
        }
        series.last_seen = series.last_seen.max(seen);
        report.series += 1;
    }
    report
}
