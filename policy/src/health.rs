//! Passive health of a target (a catalog model on its provider): outlier ejection from the
//! outcomes of real requests, recovery by probing, and the latency and load that balancing
//! reads.
//!
//! - **Ejection.** `consecutive_failures` in a row, or a failure share of at least
//!   `failure_ratio` over `window` once `min_requests` have been seen there, takes a target
//!   out for `base_ejection × 2^(times ejected before)`, at most `max_ejection`. A target that
//!   then stays healthy for `max_ejection` has its count of past ejections forgotten.
//! - **Recovery is probed, not assumed.** When the ejection ends the target is *probing*:
//!   one request at a time may go to it; a success makes it healthy, a failure ejects it again
//!   (for longer).
//! - **What counts.** Connect errors, timeouts, 5xx, garbage and cut streams are failures. A
//!   429 is not (its `Retry-After` cools the target down instead, see `runtime`), nor is the
//!   provider refusing a request on its merits (a 4xx), nor a client that left.
//!
//! The decisions ([`HealthCore::observe`]) are pure over a small state and an instant; the
//! request path reads a target's availability from atomics, and takes a short lock only to
//! record an outcome.

use std::time::Duration;

use sluice_config::HealthConfig;
use tokio::time::Instant;

/// Buckets the failure-ratio window is counted in.
const BUCKETS: usize = 10;

/// How an attempt at a target ended, as far as its health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Success,
    Failure,
}

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Healthy,
    /// Out until then.
    Ejected {
        until: Instant,
    },
    /// Back on trial: one request at a time.
    Probing,
}

/// What an observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Newly ejected (the `nth` time in a row of ejections) until `until`.
    Ejected {
        until: Instant,
        nth: u32,
    },
    /// A probe succeeded: healthy again.
    Recovered,
}

/// The health state machine of one target. Plain data; callers hold it under a lock.
#[derive(Debug, Clone)]
pub struct HealthCore {
    consecutive: u32,
    /// `(total, failed)` per bucket of `window / BUCKETS`.
    buckets: [(u32, u32); BUCKETS],
    /// Index (in bucket lengths since `origin`) of the newest bucket.
    newest: u64,
    origin: Instant,
    /// Ejections since the target was last healthy for `max_ejection`.
    times_ejected: u32,
    phase: Phase,
    /// When it last became healthy.
    healthy_since: Instant,
}

/// A read-only view for the admin API and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthView {
    pub phase: Phase,
    pub consecutive_failures: u32,
    pub window_requests: u32,
    pub window_failures: u32,
    pub times_ejected: u32,
}

impl HealthCore {
    pub fn new(now: Instant) -> Self {
        Self {
            consecutive: 0,
            buckets: [(0, 0); BUCKETS],
            newest: 0,
            origin: now,
            times_ejected: 0,
            phase: Phase::Healthy,
            healthy_since: now,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn view(&self, cfg: &HealthConfig, now: Instant) -> HealthView {
        let (total, failed) = self.window(cfg, now);
        HealthView {
            phase: self.phase,
            consecutive_failures: self.consecutive,
            window_requests: total,
            window_failures: failed,
            times_ejected: self.times_ejected,
        }
    }

    fn bucket_len(cfg: &HealthConfig) -> Duration {
        (cfg.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    /// Moves the ring forward to `now`, clearing buckets that fell out of the window.
    fn advance(&mut self, cfg: &HealthConfig, now: Instant) {
        let len = Self::bucket_len(cfg);
        let index =
            (now.saturating_duration_since(self.origin).as_nanos() / len.as_nanos().max(1)) as u64;
        if index <= self.newest {
            return;
        }
        let steps = (index - self.newest).min(BUCKETS as u64);
        for k in 1..=steps {
            let slot = ((self.newest + k) % BUCKETS as u64) as usize;
            self.buckets[slot] = (0, 0);
        }
        self.newest = index;
    }

    fn window(&self, cfg: &HealthConfig, now: Instant) -> (u32, u32) {
        let mut copy = self.clone();
        copy.advance(cfg, now);
        copy.buckets
            .iter()
            .fold((0, 0), |(t, f), (bt, bf)| (t + bt, f + bf))
    }

    /// The phase at `now`: an ejection whose time is up becomes probing.
    pub fn settle(&mut self, cfg: &HealthConfig, now: Instant) -> Phase {
        if let Phase::Ejected { until } = self.phase
            && now >= until
        {
            self.phase = Phase::Probing;
        }
        if self.phase == Phase::Healthy
            && now.saturating_duration_since(self.healthy_since) >= cfg.max_ejection
        {
            self.times_ejected = 0;
        }
        self.phase
    }

    /// Records one attempt's outcome at `now` and says what changed.
    pub fn observe(&mut self, cfg: &HealthConfig, obs: Observation, now: Instant) -> Change {
        self.settle(cfg, now);
        self.advance(cfg, now);
        let slot = (self.newest % BUCKETS as u64) as usize;
        self.buckets[slot].0 += 1;
        match obs {
            Observation::Success => {
                self.consecutive = 0;
                if self.phase == Phase::Probing {
                    self.phase = Phase::Healthy;
                    self.healthy_since = now;
                    // The failures that ejected it are history now.
                    self.buckets = [(0, 0); BUCKETS];
                    return Change::Recovered;
                }
                Change::None
            }
            Observation::Failure => {
                self.buckets[slot].1 += 1;
                self.consecutive += 1;
                let eject = match self.phase {
                    // A failed probe goes straight back out.
                    Phase::Probing => true,
                    Phase::Ejected { .. } => false,
                    Phase::Healthy => {
                        let (total, failed) = self
                            .buckets
                            .iter()
                            .fold((0u32, 0u32), |(t, f), b| (t + b.0, f + b.1));
                        self.consecutive >= cfg.consecutive_failures
                            || (total >= cfg.min_requests
                                && f64::from(failed) >= cfg.failure_ratio * f64::from(total))
                    }
                };
                if !eject {
                    return Change::None;
                }
                let length = ejection_length(cfg, self.times_ejected);
                self.times_ejected = self.times_ejected.saturating_add(1);
                let until = now + length;
                self.phase = Phase::Ejected { until };
                self.consecutive = 0;
                self.buckets = [(0, 0); BUCKETS];
                Change::Ejected {
                    until,
                    nth: self.times_ejected,
                }
            }
        }
    }
}

/// `base × 2^previous`, capped.
pub fn ejection_length(cfg: &HealthConfig, previous: u32) -> Duration {
    cfg.base_ejection
        .saturating_mul(1u32 << previous.min(16))
        .min(cfg.max_ejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 6,
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(30),
            max_ejected_share: 0.5,
        }
    }

    use Observation::{Failure as F, Success as S};

    #[test]
    fn the_ejection_table() {
        let s = Duration::from_secs;
        // (outcomes, each 100 ms apart) → the change of the last one
        let cases: [(&[Observation], bool); 6] = [
            (&[F, F], false),
            (&[F, F, F], true),
            (&[F, F, S, F, F], false),
            // 3 of 6 failed, none in a row long enough: the ratio ejects at the minimum.
            (&[S, F, S, F, S, F], true),
            (&[S, F, S, F, S], false),
            (&[S, S, S, S, S, F], false),
        ];
        for (i, (outcomes, ejected)) in cases.iter().enumerate() {
            let t0 = Instant::now();
            let mut h = HealthCore::new(t0);
            let mut last = Change::None;
            for (k, o) in outcomes.iter().enumerate() {
                last = h.observe(&cfg(), *o, t0 + Duration::from_millis(100 * k as u64));
            }
            let at = t0 + Duration::from_millis(100 * (outcomes.len() as u64 - 1));
            let want = if *ejected {
                Change::Ejected {
                    until: at + s(5),
                    nth: 1,
                }
            } else {
                Change::None
            };
            assert_eq!(last, want, "case {i}: {outcomes:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejections_grow_recovery_is_probed_and_history_fades() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = HealthCore::new(t0);
        for _ in 0..3 {
            h.observe(&c, F, Instant::now());
        }
        assert_eq!(
            h.phase(),
            Phase::Ejected {
                until: t0 + Duration::from_secs(5)
            }
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(h.settle(&c, Instant::now()), Phase::Probing);
        // The probe fails: out again, for twice as long.
        let now = Instant::now();
        assert_eq!(
            h.observe(&c, F, now),
            Change::Ejected {
                until: now + Duration::from_secs(10),
                nth: 2
            }
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(h.settle(&c, Instant::now()), Phase::Probing);
        assert_eq!(h.observe(&c, S, Instant::now()), Change::Recovered);
        assert_eq!(h.phase(), Phase::Healthy);
        // Failing again soon: the third ejection is longer still.
        for _ in 0..2 {
            h.observe(&c, F, Instant::now());
        }
        let now = Instant::now();
        assert_eq!(
            h.observe(&c, F, now),
            Change::Ejected {
                until: now + Duration::from_secs(20),
                nth: 3
            }
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        h.observe(&c, S, Instant::now());
        // Healthy for max_ejection: the past is forgotten, the next ejection is base-length.
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..2 {
            h.observe(&c, F, Instant::now());
        }
        let now = Instant::now();
        assert_eq!(
            h.observe(&c, F, now),
            Change::Ejected {
                until: now + Duration::from_secs(5),
                nth: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let c = cfg();
        let mut h = HealthCore::new(Instant::now());
        for o in [S, F, S, F, S] {
            h.observe(&c, o, Instant::now());
        }
        // Eleven seconds later the window is empty: one failure of one request is under the
        // minimum.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(h.observe(&c, F, Instant::now()), Change::None);
        let v = h.view(&c, Instant::now());
        assert_eq!((v.window_requests, v.window_failures), (1, 1));
    }

    #[test]
    fn ejection_lengths_are_capped() {
        let c = cfg();
        let s = Duration::from_secs;
        assert_eq!(ejection_length(&c, 0), s(5));
        assert_eq!(ejection_length(&c, 1), s(10));
        assert_eq!(ejection_length(&c, 2), s(20));
        assert_eq!(ejection_length(&c, 3), s(30));
        assert_eq!(ejection_length(&c, 40), s(30));
    }
}
