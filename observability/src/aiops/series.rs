//! One scope's signals: a short ring of per-interval sums (what the baselines learn from and the
//! detection window reads), and per signal a [`Baseline`] and a [`Detector`].

use std::time::{Duration, SystemTime};

use sluice_policy::remediation::{
    AnomalyBand, AnomalyScope, AnomalySignal, AnomalyState, AnomalyStatus, Direction,
};
use tokio::time::Instant;

use super::AiopsConfig;
use super::baseline::{Baseline, hour_of_week};
use super::detect::{Detector, Edge, Reading};
use super::sample::AiopsSample;
use crate::slo::ErrorClass;

/// Intervals the ring keeps beyond the detection window, so the evaluator may tick up to this
/// many intervals late without losing an interval to learn from.
pub(crate) const SLACK: usize = 4;

/// Spend per minute below this is taken as this (the log of zero is no number).
const MIN_COST_PER_MINUTE: f64 = 1e-9;
/// A request is slow when at least twice as slow as its target's usual (`ln 2`).
const SLOW_FACTOR_LN: f64 = std::f64::consts::LN_2;

const SIGNALS: usize = AnomalySignal::ALL.len();

/// One interval's sums per signal: `n` events carried the signal, `sum` adds their values in
/// the signal's scale (logs; 0/1 failures for the error ratio; USD for spend) and `sq` their
/// squares (for the window's standard error).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Acc {
    pub n: [u32; SIGNALS],
    pub sum: [f64; SIGNALS],
    pub sq: [f64; SIGNALS],
}

/// Sums over a window.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: [u64; SIGNALS],
    sum: [f64; SIGNALS],
    sq: [f64; SIGNALS],
}

/// What one sample adds to each signal (computed once per sample, added to every scope).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SampleValues {
    pub add: [Option<f64>; SIGNALS],
    pub failed: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SignalState {
    pub baseline: Baseline,
    pub detector: Detector,
}

#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub scope: AnomalyScope,
    /// The newest interval held.
    head: i64,
    ring: Box<[Acc]>,
    /// The newest interval already learned (or passed over).
    learned: i64,
    /// The first interval with data (after a start or a restore): windows reaching before it
    /// would read an empty start as a lull, so they are not learned from, and the detection
    /// window's span is counted from it.
    born: Option<i64>,
    pub signals: [SignalState; SIGNALS],
    pub last_seen: Instant,
    /// `ln` of the TTFT and duration (seconds) above which a request of this target counts as
    /// slow; infinite until learned.
    pub slow_ln: [f32; 2],
}

/// A tick's view of one series: its statuses and the edges they crossed.
pub(crate) struct Evaluated {
    pub status: AnomalyStatus,
    pub edge: Option<Edge>,
}

/// Interval geometry shared by every series.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub origin: Instant,
    pub interval_ns: u64,
}

// === impl SampleValues ===

impl SampleValues {
    pub fn of(sample: &AiopsSample) -> Self {
        let mut add = [None; SIGNALS];
        let counted = sample.class != ErrorClass::Excluded;
        let good = sample.class == ErrorClass::Good;
        let failed = sample.class == ErrorClass::Bad;
        let ln_secs = |d: Duration| d.as_secs_f64().max(1e-6).ln();
        if counted && let Some(ttft) = sample.ttft {
            add[AnomalySignal::Ttft.index()] = Some(ln_secs(ttft));
        }
        if good {
            let out = sample.output_tokens;
            let per_token = match sample.ttft {
                Some(ttft) if out >= 2 => {
                    Some(sample.duration.saturating_sub(ttft).as_secs_f64() / (out - 1) as f64)
                }
                None if out >= 1 => Some(sample.duration.as_secs_f64() / out as f64),
                _ => None,
            };
            add[AnomalySignal::TimePerOutputToken.index()] = per_token.map(|s| s.max(1e-9).ln());
            add[AnomalySignal::Duration.index()] = Some(ln_secs(sample.duration));
            let tokens = sample.input_tokens.saturating_add(out);
            if tokens > 0 {
                add[AnomalySignal::TokensPerRequest.index()] = Some((tokens as f64).ln());
            }
        }
        if counted {
            add[AnomalySignal::ErrorRatio.index()] = Some(if failed { 1.0 } else { 0.0 });
        }
        // Spend counts whatever the outcome: a cancelled stream was still paid for.
        let cost = if sample.cost_usd.is_finite() {
            sample.cost_usd.max(0.0)
        } else {
            0.0
        };
        add[AnomalySignal::CostPerMinute.index()] = Some(cost);
        Self { add, failed }
    }
}

// === impl Clock ===

impl Clock {
    pub fn index(&self, at: Instant) -> i64 {
        let ns = signed_ns(self.origin, at);
        i64::try_from(ns.div_euclid(i128::from(self.interval_ns))).unwrap_or(i64::MAX)
    }

    pub fn start(&self, ix: i64) -> i128 {
        i128::from(ix) * i128::from(self.interval_ns)
    }

    /// The wall-clock time of interval `ix`'s start, given that `now` is `wall`.
    pub fn wall_at(&self, ix: i64, now: Instant, wall: SystemTime) -> SystemTime {
        let back = signed_ns(self.origin, now) - self.start(ix);
        let back = Duration::from_nanos(u64::try_from(back.max(0)).unwrap_or(u64::MAX));
        wall.checked_sub(back).unwrap_or(wall)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }
}

pub(crate) fn signed_ns(from: Instant, to: Instant) -> i128 {
    if to >= from {
        i128::try_from(to.duration_since(from).as_nanos()).unwrap_or(i128::MAX)
    } else {
        -i128::try_from(from.duration_since(to).as_nanos()).unwrap_or(i128::MAX)
    }
}

// === impl Series ===

impl Series {
    pub fn new(scope: AnomalyScope, cfg: &AiopsConfig, head: i64, now: Instant) -> Self {
        let len = usize::try_from(cfg.window)
            .unwrap_or(usize::MAX)
            .saturating_add(SLACK);
        Self {
            scope,
            head,
            ring: vec![Acc::default(); len].into_boxed_slice(),
            learned: head - 1,
            born: None,
            signals: std::array::from_fn(|_| SignalState {
                baseline: Baseline::new(),
                detector: Detector::default(),
            }),
            last_seen: now,
            slow_ln: [f32::INFINITY; 2],
        }
    }

    /// Bytes this series holds, on the heap and inline.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.ring.len() * std::mem::size_of::<Acc>()
            + SIGNALS * std::mem::size_of::<[super::baseline::Level; super::baseline::LEVELS]>()
    }

    fn len(&self) -> i64 {
        i64::try_from(self.ring.len()).unwrap_or(i64::MAX)
    }

    fn slot(&self, ix: i64) -> usize {
        usize::try_from(ix.rem_euclid(self.len())).unwrap_or(0)
    }

    fn oldest(&self) -> i64 {
        self.head - self.len() + 1
    }

    fn advance(&mut self, ix: i64) {
        if ix <= self.head {
            return;
        }
        let steps = (ix - self.head).min(self.len());
        for k in 1..=steps {
            let slot = self.slot(self.head + k);
            self.ring[slot] = Acc::default();
        }
        self.head = ix;
    }

    /// Adds one sample to interval `ix` (dropped when older than the ring holds).
    pub fn add(&mut self, ix: i64, at: Instant, values: &SampleValues) {
        self.advance(ix);
        if ix < self.oldest() {
            return;
        }
        self.born = Some(self.born.map_or(ix, |b| b.min(ix)));
        let slot = self.slot(ix);
        let acc = &mut self.ring[slot];
        for (i, v) in values.add.iter().enumerate() {
            if let Some(v) = v {
                acc.n[i] = acc.n[i].saturating_add(1);
                acc.sum[i] += v;
                acc.sq[i] += v * v;
            }
        }
        self.last_seen = self.last_seen.max(at);
    }

    /// Whether a sample with `ln` TTFT / duration is slow for this target.
    pub fn is_slow(&self, sample: &AiopsSample) -> bool {
        if sample.class != ErrorClass::Good {
            return false;
        }
        match sample.ttft {
            Some(ttft) => ttft.as_secs_f64().max(1e-6).ln() > f64::from(self.slow_ln[0]),
            None => sample.duration.as_secs_f64().max(1e-6).ln() > f64::from(self.slow_ln[1]),
        }
    }

    /// Sums over the intervals `lo..=hi` of those held.
    fn sums(&self, lo: i64, hi: i64) -> Sums {
        let mut out = Sums::default();
        for ix in lo.max(self.oldest())..=hi.min(self.head) {
            let acc = &self.ring[self.slot(ix)];
            for i in 0..SIGNALS {
                out.n[i] += u64::from(acc.n[i]);
                out.sum[i] += acc.sum[i];
                out.sq[i] += acc.sq[i];
            }
        }
        out
    }

    /// Learns from every interval closed since the last call (`cur` is the one still filling):
    /// for each, the window of `window` intervals ending with it — the statistic the detector
    /// compares — so the learned spread is the spread of that very statistic (sampling noise
    /// averaged over the window, slower variation not).
    pub fn learn(
        &mut self,
        clock: &Clock,
        cur: i64,
        now: Instant,
        wall: SystemTime,
        cfg: &AiopsConfig,
    ) {
        self.advance(cur);
        let w = i64::from(cfg.window);
        let Some(born) = self.born else {
            self.learned = self.learned.max(cur - 1);
            return;
        };
        let first = (self.learned + 1)
            .max(born + w - 1)
            .max(self.oldest() + w - 1);
        let minutes = clock.interval().as_secs_f64() / 60.0 * f64::from(cfg.window);
        for ix in first..cur {
            let closing = self.ring[self.slot(ix)];
            let Sums { n, sum, .. } = self.sums(ix - w + 1, ix);
            let how = hour_of_week(clock.wall_at(ix, now, wall));
            for signal in AnomalySignal::ALL {
                let i = signal.index();
                // An interval with nothing of its own teaches nothing new; a thin window
                // would teach a spread the guarded detector never sees.
                if closing.n[i] == 0 || n[i] < u64::from(cfg.min_events.max(1)) {
                    continue;
                }
                let state = &mut self.signals[i];
                if !learns(&state.detector, now, cfg) {
                    continue;
                }
                let count = u32::try_from(n[i]).unwrap_or(u32::MAX);
                if let Some(x) = value(signal, count, sum[i], minutes) {
                    state.baseline.learn(signal, x, how);
                }
            }
        }
        self.learned = self.learned.max(cur - 1);
    }

    /// Reads the detection window, steps every detector and returns the statuses of the
    /// signals this scope has seen.
    pub fn detect(
        &mut self,
        clock: &Clock,
        cur: i64,
        now: Instant,
        wall: SystemTime,
        cfg: &AiopsConfig,
        out: &mut Vec<Evaluated>,
    ) {
        self.advance(cur);
        let w = i64::from(cfg.window);
        let Sums { n, sum, sq } = self.sums(cur - w + 1, cur);
        // The window's span: back to its first interval, or to the first with data.
        let lo = (cur - w + 1).max(self.born.unwrap_or(cur));
        let span_ns = (signed_ns(clock.origin, now) - clock.start(lo)).max(1);
        let minutes = (span_ns as f64 / 60e9).max(1e-9);
        let how = hour_of_week(wall);
        for signal in AnomalySignal::ALL {
            let i = signal.index();
            let state = &mut self.signals[i];
            if state.baseline.is_empty() && n[i] == 0 {
                continue;
            }
            let expected = state.baseline.expected(signal, how, cfg.warmup);
            let enough = n[i] >= u64::from(cfg.min_events.max(1));
            let x = enough
                .then(|| {
                    value(
                        signal,
                        u32::try_from(n[i]).unwrap_or(u32::MAX),
                        sum[i],
                        minutes,
                    )
                })
                .flatten();
            // The learned spread, but never below this window's own standard error: the
            // EWMA of overlapping windows has few independent samples and can run low.
            let se = if signal == AnomalySignal::ErrorRatio {
                expected.map_or(0.0, |e| binomial_se(e.centre, n[i]))
            } else {
                standard_error(signal, n[i], sum[i], sq[i])
            };
            let band = expected.map(|e| (e.centre, e.spread.max(se)));
            let score = match (x, band) {
                (Some(x), Some((c, s))) => Some((x - c) / s),
                _ => None,
            };
            let directed = score.map(|s| match signal.direction() {
                Direction::Up => s,
                Direction::Both => s.abs(),
            });
            let reading = match (band, directed) {
                (None, _) => Reading::Learning,
                (Some(_), None) => Reading::Unknown,
                (Some(_), Some(d)) => Reading::Known {
                    out: d > cfg.k,
                    directed: d,
                },
            };
            let edge = state.detector.step(now, reading, cfg.hold, cfg.clear);
            let det = state.detector;
            let active = det.state.is_active();
            out.push(Evaluated {
                status: AnomalyStatus {
                    signal,
                    scope: self.scope.clone(),
                    state: det.state,
                    value: x.map(|x| natural(signal, x)),
                    score,
                    band: band.map(|(c, s)| AnomalyBand {
                        centre: natural(signal, c),
                        lower: natural(signal, c - cfg.k * s).max(0.0),
                        upper: natural(signal, c + cfg.k * s),
                        spread: s,
                        k: cfg.k,
                    }),
                    events: n[i],
                    active_for_ms: det
                        .flagged
                        .filter(|_| active)
                        .map(|f| millis(now.saturating_duration_since(f))),
                    peak_score: active.then_some(det.peak),
                },
                edge,
            });
        }
        // What the root-cause counts call slow for this target, from the current hour's band.
        for (k, signal) in [AnomalySignal::Ttft, AnomalySignal::Duration]
            .into_iter()
            .enumerate()
        {
            self.slow_ln[k] = self.signals[signal.index()]
                .baseline
                .expected(signal, how, cfg.warmup)
                .map_or(f32::INFINITY, |e| (e.centre + SLOW_FACTOR_LN) as f32);
        }
    }
}

/// Whether a signal's baseline learns this interval: not while it is out of its band, unless it
/// has been flagged so long that the change is the new normal.
fn learns(detector: &Detector, now: Instant, cfg: &AiopsConfig) -> bool {
    match detector.state {
        AnomalyState::Pending => false,
        AnomalyState::Anomalous => detector
            .flagged
            .is_some_and(|f| now.saturating_duration_since(f) >= cfg.relearn_after),
        AnomalyState::Learning | AnomalyState::Normal | AnomalyState::Clearing => true,
    }
}

/// A window's or interval's value in the signal's scale: the mean of the logs, the error
/// ratio, or the log of spend per minute.
fn value(signal: AnomalySignal, n: u32, sum: f64, minutes: f64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    Some(match signal {
        AnomalySignal::CostPerMinute => (sum / minutes).max(MIN_COST_PER_MINUTE).ln(),
        _ => sum / f64::from(n),
    })
}

/// A value in the signal's own units.
fn natural(signal: AnomalySignal, x: f64) -> f64 {
    if signal.log_scale() { x.exp() } else { x }
}

/// The standard error of a window's value in the signal's scale: of the mean of the logs
/// (sample variance over `n`), or, for the log of spend, `√Σc² / Σc` (a compound Poisson sum's
/// relative error, which counts the number of requests as random too).
fn standard_error(signal: AnomalySignal, n: u64, sum: f64, sq: f64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    if signal == AnomalySignal::CostPerMinute {
        return if sum > 0.0 { sq.sqrt() / sum } else { 0.0 };
    }
    let n = n as f64;
    let mean = sum / n;
    let var = ((sq - n * mean * mean) / (n - 1.0)).max(0.0);
    (var / n).sqrt()
}

/// The standard error of a ratio near `p` measured over `n` events, with `p` kept off 0 so a
/// baseline of no errors at all still allows a failure or two in a small window.
fn binomial_se(p: f64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let p = p.clamp(0.5 / n, 0.5);
    (p * (1.0 - p) / n).sqrt()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
