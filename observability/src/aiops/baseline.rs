//! A seasonal, robust baseline for one signal in one scope: an EWMA of the centre and of the
//! spread, kept three times over — a recent level, one per hour of the day, one per hour of the
//! week — and read from the most specific level that has learned enough.
//!
//! ## Learning step
//! Each closed interval gives one value `x`: the signal over the window ending with that
//! interval (in the signal's scale: a mean of logs for latencies and tokens, the log of spend
//! per minute, the plain error ratio), the same statistic the detector compares with the band.
//! For each level it updates, with `s = max(spread, floor)`, `r = x − centre` and
//! `a = max(α, 1/(n+1))`:
//!
//! ```text
//! centre += a · clamp(r, −c·s, c·s)
//! spread += a · (min(|r| · √(π/2), c·s) − spread)
//! ```
//!
//! `|r| · √(π/2)` is an unbiased estimate of σ for normal noise (E|r| = σ·√(2/π)); clipping the
//! residual at `c = 3` spreads is Huber's M-estimator step, which moves the centre toward the
//! median rather than the mean, so one burst cannot drag the baseline. `1/(n+1)` makes the first
//! steps a running mean, so a level is useful after its warm-up rather than after `1/α` steps.
//!
//! ## Seasonality
//! `α = 0.02` everywhere: the recent level remembers about the last 50 steps; an
//! hour-of-day level gets 60 steps a day (at one-minute intervals) and keeps about 30 % of the
//! previous day's; an hour-of-week level, the same per week. The band at a moment comes from its
//! hour-of-week level once that has [`warmup`](super::AiopsConfig::warmup) steps (after a week),
//! else its hour-of-day level (after a day), else the recent level (after the warm-up), so
//! Monday 09:00 is compared with earlier Mondays as soon as there are some, and a fresh gateway
//! is useful within its first hour. Hours are UTC: a fixed time zone only shifts which slot an
//! hour lands in; a daylight-saving change shifts the pattern by an hour for a few days.
//!
//! Memory: 1 + 24 + 168 levels of 12 bytes, 2.3 KB per signal and scope.

use std::time::{SystemTime, UNIX_EPOCH};

use sluice_policy::remediation::AnomalySignal;

/// Learning rate of every level once past its first steps.
const ALPHA: f64 = 0.02;
/// Residuals are clipped at this many spreads.
const CLIP: f64 = 3.0;
/// `√(π/2)`: E|r| = σ·√(2/π) for normal noise.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// Level slots: the recent level, then 24 hours of the day, then 168 hours of the week.
pub(crate) const LEVELS: usize = 1 + 24 + 168;
const DAY0: usize = 1;
const WEEK0: usize = 1 + 24;

/// One EWMA level. `f32` halves the memory; the values are logs or ratios near 1, and a level
/// moves by at most 2 % of its spread per step, far above `f32`'s resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Level {
    pub centre: f32,
    pub spread: f32,
    /// Learning steps taken (saturating).
    pub n: u32,
}

/// The levels of one signal in one scope.
#[derive(Debug, Clone)]
pub(crate) struct Baseline {
    pub levels: Box<[Level; LEVELS]>,
}

/// Which level a band came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Basis {
    Recent,
    HourOfDay,
    HourOfWeek,
}

/// The band's centre and spread in the signal's scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Expected {
    pub centre: f64,
    pub spread: f64,
    pub basis: Basis,
}

/// The smallest spread a signal is given, in its scale: 4 % for log-scale signals (below that
/// a band would flag changes nobody cares about), one percentage point for the error ratio.
pub(crate) fn spread_floor(signal: AnomalySignal) -> f64 {
    if signal.log_scale() { 0.04 } else { 0.01 }
}

/// The spread a level starts from before it has seen any residual: wide, so the first steps
/// are not clipped.
fn initial_spread(signal: AnomalySignal) -> f64 {
    if signal.log_scale() { 0.25 } else { 0.05 }
}

/// Hour of the week of a wall-clock time, 0 = Monday 00:00–01:00 UTC.
pub(crate) fn hour_of_week(wall: SystemTime) -> usize {
    let secs = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let hours = secs / 3600;
    // 1970-01-01 was a Thursday (weekday 3 counting from Monday).
    let weekday = (hours / 24 + 3) % 7;
    usize::try_from(weekday * 24 + hours % 24).unwrap_or(0)
}

// === impl Baseline ===

impl Baseline {
    pub fn new() -> Self {
        Self {
            levels: Box::new([Level::default(); LEVELS]),
        }
    }

    /// Learns one interval's value `x`, observed in hour-of-week `how`.
    pub fn learn(&mut self, signal: AnomalySignal, x: f64, how: usize) {
        if !x.is_finite() {
            return;
        }
        let how = how % 168;
        let floor = spread_floor(signal);
        let recent = self.levels[0];
        let seed = if recent.n > 0 {
            f64::from(recent.spread)
        } else {
            initial_spread(signal)
        };
        for slot in [0, DAY0 + how % 24, WEEK0 + how] {
            step(&mut self.levels[slot], x, floor, seed);
        }
    }

    /// The centre and spread expected in hour-of-week `how`, from the most specific level that
    /// has at least `warmup` steps; `None` while even the recent level is warming up.
    pub fn expected(&self, signal: AnomalySignal, how: usize, warmup: u32) -> Option<Expected> {
        let how = how % 168;
        let floor = spread_floor(signal);
        [
            (WEEK0 + how, Basis::HourOfWeek),
            (DAY0 + how % 24, Basis::HourOfDay),
            (0, Basis::Recent),
        ]
        .into_iter()
        .map(|(slot, basis)| (self.levels[slot], basis))
        .find(|(level, _)| level.n >= warmup.max(1))
        .map(|(level, basis)| Expected {
            centre: f64::from(level.centre),
            spread: f64::from(level.spread).max(floor),
            basis,
        })
    }

    /// Whether any level has learned anything.
    pub fn is_empty(&self) -> bool {
        self.levels[0].n == 0
    }
}

/// One robust EWMA step (see the module docs). `seed` is the spread a level starts with.
fn step(level: &mut Level, x: f64, floor: f64, seed: f64) {
    if level.n == 0 {
        *level = Level {
            centre: x as f32,
            spread: seed.max(floor) as f32,
            n: 1,
        };
        return;
    }
    let centre = f64::from(level.centre);
    let spread = f64::from(level.spread);
    let s = spread.max(floor);
    let r = x - centre;
    let a = ALPHA.max(1.0 / (f64::from(level.n) + 1.0));
    let clip = CLIP * s;
    level.centre = (centre + a * r.clamp(-clip, clip)) as f32;
    level.spread = (spread + a * ((r.abs() * MAD_TO_SIGMA).min(clip) - spread)) as f32;
    level.n = level.n.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TTFT: AnomalySignal = AnomalySignal::Ttft;

    /// A small deterministic noise in [-1, 1].
    fn noise(i: u64) -> f64 {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        (x as f64 / (1_u64 << 53) as f64) * 2.0 - 1.0
    }

    #[test]
    fn hours_of_the_week_start_on_monday_utc() {
        let at = |secs: u64| hour_of_week(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), 3 * 24, "1970-01-01 00:00 was a Thursday");
        // 2024-01-01 was a Monday.
        let monday = 1_704_067_200;
        assert_eq!(at(monday), 0);
        assert_eq!(at(monday + 9 * 3600 + 59 * 60), 9);
        assert_eq!(at(monday + 6 * 86_400 + 23 * 3600), 167);
        assert_eq!(at(monday + 7 * 86_400), 0);
    }

    #[test]
    fn learns_the_centre_and_spread_of_steady_noise() {
        let mut b = Baseline::new();
        assert!(b.expected(TTFT, 0, 30).is_none(), "nothing learned");
        // Uniform noise of half-width 0.1 around ln(0.5): σ = 0.1/√3 ≈ 0.058.
        let centre = 0.5_f64.ln();
        for i in 0..2000 {
            b.learn(TTFT, centre + 0.1 * noise(i), 0);
        }
        let e = b.expected(TTFT, 0, 30).expect("learned");
        assert_eq!(e.basis, Basis::HourOfWeek);
        assert!((e.centre - centre).abs() < 0.02, "{e:?}");
        // Mean |r|·√(π/2) of a uniform is 0.05·1.2533 ≈ 0.063: within 15 %.
        assert!((e.spread - 0.063).abs() < 0.01, "{e:?}");
    }

    #[test]
    fn a_burst_barely_moves_the_baseline() {
        let mut b = Baseline::new();
        for i in 0..500 {
            b.learn(TTFT, 0.1 * noise(i), 0);
        }
        let before = b.expected(TTFT, 0, 30).expect("learned");
        // Ten intervals at ×3 (ln 3 ≈ 1.1, some twenty spreads out).
        for _ in 0..10 {
            b.learn(TTFT, 3_f64.ln(), 0);
        }
        let after = b.expected(TTFT, 0, 30).expect("learned");
        assert!(
            after.centre - before.centre < 0.05,
            "{before:?} → {after:?}: clipped steps"
        );
        assert!(after.spread < 2.0 * before.spread, "{before:?} → {after:?}");
    }

    #[test]
    fn prefers_the_hour_of_the_week_then_the_day_then_the_recent_level() {
        let mut b = Baseline::new();
        // One day of a daily pattern: level = hour / 10.
        for hour in 0..24 {
            for m in 0..60 {
                b.learn(TTFT, hour as f64 / 10.0 + 0.01 * noise(m), hour);
            }
        }
        // Monday 09:00 has its own week slot.
        let e = b.expected(TTFT, 9, 30).expect("learned");
        assert_eq!(e.basis, Basis::HourOfWeek);
        assert!((e.centre - 0.9).abs() < 0.02, "{e:?}");
        // Tuesday 09:00 has no week slot yet: Monday's hour of the day stands in.
        let e = b.expected(TTFT, 24 + 9, 30).expect("learned");
        assert_eq!(e.basis, Basis::HourOfDay);
        assert!((e.centre - 0.9).abs() < 0.02, "{e:?}");

        // A weekly pattern: Sundays (hours 144..168) run at a different level. After two
        // weeks, Monday 09:00 is read from Mondays, not from Sunday's 09:00.
        let mut b = Baseline::new();
        for _week in 0..2 {
            for how in 0..168 {
                let level = if how >= 144 { 1.0 } else { 0.0 };
                for m in 0..60 {
                    b.learn(TTFT, level + 0.01 * noise(m + how as u64), how);
                }
            }
        }
        let monday = b.expected(TTFT, 9, 30).expect("learned");
        let sunday = b.expected(TTFT, 144 + 9, 30).expect("learned");
        assert_eq!(monday.basis, Basis::HourOfWeek);
        assert!(monday.centre.abs() < 0.05, "{monday:?}");
        assert!((sunday.centre - 1.0).abs() < 0.05, "{sunday:?}");

        // With too little history everywhere, the recent level only.
        let mut b = Baseline::new();
        for m in 0..40 {
            b.learn(TTFT, 0.2, m % 3);
        }
        assert_eq!(
            b.expected(TTFT, 0, 30).map(|e| e.basis),
            Some(Basis::Recent)
        );
    }

    #[test]
    fn spreads_never_go_below_the_floor_and_nan_is_ignored() {
        let mut b = Baseline::new();
        for _ in 0..100 {
            b.learn(AnomalySignal::ErrorRatio, 0.0, 5);
        }
        b.learn(AnomalySignal::ErrorRatio, f64::NAN, 5);
        let e = b
            .expected(AnomalySignal::ErrorRatio, 5, 30)
            .expect("learned");
        assert_eq!(e.centre, 0.0);
        assert_eq!(e.spread, 0.01);
        assert_eq!(b.levels[0].n, 100);
    }
}
