//! The admit-time decision: is this request judged?
//!
//! It runs on the request path for every request of a route with `judge:`, so it allocates
//! nothing and touches only one atomic, and only for the always-sample rule.
//!
//! # Ratio
//!
//! The request's key (from its trace id, [`key_from_trace_id`]) is passed through the
//! SplitMix64 finalizer, a bijection on `u64` whose every output bit depends on every input
//! bit, so keys that differ in a few bits (sequential ids, time-prefixed trace ids) land
//! uniformly. The top 53 bits of the result, read as a fraction in `[0, 1)`, are compared with
//! the ratio; the comparison is done in integers against a threshold computed once, and 53
//! bits make every ratio an `f64` can express in `[0, 1]` exact up to rounding. The same key
//! always gets the same answer, so a retried request (same `traceparent`) is judged the same
//! way in every replica.
//!
//! # Always-sample rules and their cap
//!
//! Remediated and downgraded requests are the ones whose quality is in question, so a route
//! can judge all of them, up to `per_minute_cap` per minute. A ratio hit is checked first and
//! does not use the cap. The cap counts in fixed minute windows on `tokio::time` (minute `n`
//! is `[epoch + n min, epoch + (n+1) min)`); the minute and its count share one `AtomicU64`
//! (minute in the high half, count in the low half) updated by compare-and-swap, so two
//! threads can never both take the last slot. Fixed windows can let up to twice the cap
//! through across a window edge; that is an acceptable overshoot for a sampling cap, and
//! keeps the request path to one atomic word.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::settings::{AlwaysSample, JudgeSettings};

/// 2^53: the threshold that samples everything.
const ALL: u64 = 1 << 53;

/// What the request path knows about a request at admit time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleFlags {
    /// A remediation action changed how this request is served.
    pub remediated: bool,
    /// Remediation downgraded this request's model.
    pub downgraded: bool,
    /// The request is itself a judge call made through the gateway's routing; judge
    /// traffic is never judged.
    pub judge_traffic: bool,
}

/// Why a request was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleReason {
    /// The route's sample ratio picked it.
    Ratio,
    /// The always-sample rule for remediated requests.
    Remediated,
    /// The always-sample rule for downgraded requests.
    Downgraded,
}

/// A route's sampling decision. Build one per route when the policy is compiled.
#[derive(Debug)]
pub struct Sampler {
    threshold: u64,
    always: AlwaysSample,
    epoch: Instant,
    /// Current minute (high 32 bits) and how many always-samples it has used (low 32 bits).
    window: AtomicU64,
}

// === impl Sampler ===

impl Sampler {
    /// The sampler for `settings`; the cap's minutes count from `now`.
    pub fn new(settings: &JudgeSettings, now: Instant) -> Self {
        let ratio = settings.sample_ratio;
        let threshold = if ratio >= 1.0 {
            ALL
        } else if ratio > 0.0 {
            // ratio < 1, so the product is below 2^53 and the cast is exact in range.
            (ratio * ALL as f64) as u64
        } else {
            // Zero, negative and NaN sample nothing.
            0
        };
        Self {
            threshold,
            always: settings.always,
            epoch: now,
            window: AtomicU64::new(0),
        }
    }

    /// Decides whether the request with `key` is judged. `None` means not sampled: judge
    /// traffic, not picked by the ratio and no always-rule applies, or the rule's cap for this
    /// minute is used up.
    pub fn decide(&self, key: u64, flags: SampleFlags, now: Instant) -> Option<SampleReason> {
        if flags.judge_traffic {
            return None;
        }
        if self.ratio_hit(key) {
            return Some(SampleReason::Ratio);
        }
        let reason = if flags.downgraded && self.always.downgraded {
            SampleReason::Downgraded
        } else if flags.remediated && self.always.remediated {
            SampleReason::Remediated
        } else {
            return None;
        };
        self.take_capped(now).then_some(reason)
    }

    /// Whether the ratio alone picks `key`.
    pub fn ratio_hit(&self, key: u64) -> bool {
        (mix(key) >> 11) < self.threshold
    }

    /// Takes one always-sample slot of the current minute, if one is left.
    fn take_capped(&self, now: Instant) -> bool {
        let cap = self.always.per_minute_cap;
        if cap == 0 {
            return false;
        }
        // 2^32 minutes is over 8000 years of uptime; the truncation never happens.
        let minute = (now.saturating_duration_since(self.epoch).as_secs() / 60) as u32;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window_minute, used) = ((current >> 32) as u32, current as u32);
            let next = if minute > window_minute {
                (u64::from(minute) << 32) | 1
            } else if used >= cap {
                return false;
            } else {
                // Same minute, or a caller whose `now` is older than another's: count it in
                // the newest window rather than reopen an old one.
                current + 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

impl SampleReason {
    /// A label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ratio => "ratio",
            Self::Remediated => "remediated",
            Self::Downgraded => "downgraded",
        }
    }
}

/// The sampling key of a W3C trace id: its two halves folded together, so ids whose
/// randomness sits in either half (some tracers put a timestamp in the high bytes) spread
/// the same.
pub fn key_from_trace_id(trace_id: [u8; 16]) -> u64 {
    let id = u128::from_be_bytes(trace_id);
    ((id >> 64) as u64) ^ (id as u64).rotate_left(32)
}

/// The SplitMix64 finalizer (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number
/// generators"; the constants are Stafford's "Mix13").
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::Rubric;

    fn sampler(ratio: f64, always: AlwaysSample, now: Instant) -> Sampler {
        let mut s = JudgeSettings::new("judge", Rubric::Helpfulness);
        s.sample_ratio = ratio;
        s.always = always;
        Sampler::new(&s, now)
    }

    const PLAIN: SampleFlags = SampleFlags {
        remediated: false,
        downgraded: false,
        judge_traffic: false,
    };
    const REMEDIATED: SampleFlags = SampleFlags {
        remediated: true,
        ..PLAIN
    };
    const DOWNGRADED: SampleFlags = SampleFlags {
        remediated: true,
        downgraded: true,
        judge_traffic: false,
    };

    #[tokio::test(start_paused = true)]
    async fn ratio_holds_within_tolerance_over_100k_keys() {
        let now = Instant::now();
        for ratio in [0.001, 0.02, 0.1, 0.5, 0.9] {
            let s = sampler(ratio, AlwaysSample::default(), now);
            // Sequential keys: the worst case for a sampler that does not mix.
            let hits = (0..100_000u64)
                .filter(|k| s.decide(*k, PLAIN, now).is_some())
                .count() as f64;
            let expected = 100_000.0 * ratio;
            // Five standard deviations of a binomial(100k, ratio).
            let tolerance = 5.0 * (100_000.0 * ratio * (1.0 - ratio)).sqrt();
            assert!(
                (hits - expected).abs() <= tolerance,
                "ratio {ratio}: {hits} hits, expected {expected} ± {tolerance}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_key_always_gets_the_same_answer() {
        let now = Instant::now();
        let a = sampler(0.3, AlwaysSample::default(), now);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let b = sampler(0.3, AlwaysSample::default(), Instant::now());
        for k in (0..10_000u64).map(|i| i.wrapping_mul(0x2545_f491_4f6c_dd1d)) {
            let first = a.decide(k, PLAIN, now);
            assert_eq!(a.decide(k, PLAIN, now), first);
            assert_eq!(
                b.decide(k, PLAIN, Instant::now()),
                first,
                "another replica agrees"
            );
        }
        // A higher ratio samples a superset: raising the ratio never un-samples a request.
        let c = sampler(0.6, AlwaysSample::default(), now);
        assert!((0..10_000u64).all(|k| !a.ratio_hit(k) || c.ratio_hit(k)));
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_edges() {
        let now = Instant::now();
        let none = sampler(0.0, AlwaysSample::default(), now);
        let all = sampler(1.0, AlwaysSample::default(), now);
        for k in [0, 1, u64::MAX, 0x8000_0000_0000_0000] {
            assert_eq!(none.decide(k, PLAIN, now), None);
            assert_eq!(all.decide(k, PLAIN, now), Some(SampleReason::Ratio));
        }
        assert_eq!(sampler(f64::NAN, AlwaysSample::default(), now).threshold, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn judge_traffic_is_never_sampled() {
        let now = Instant::now();
        let always = AlwaysSample {
            remediated: true,
            downgraded: true,
            per_minute_cap: 100,
        };
        let s = sampler(1.0, always, now);
        let flags = SampleFlags {
            judge_traffic: true,
            ..DOWNGRADED
        };
        assert_eq!(s.decide(7, flags, now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn always_rules_follow_their_switches() {
        let now = Instant::now();
        let table = [
            // (remediated rule, downgraded rule, flags, expected)
            (false, false, REMEDIATED, None),
            (true, false, REMEDIATED, Some(SampleReason::Remediated)),
            (false, true, REMEDIATED, None),
            (false, true, DOWNGRADED, Some(SampleReason::Downgraded)),
            (true, false, DOWNGRADED, Some(SampleReason::Remediated)),
            (true, true, DOWNGRADED, Some(SampleReason::Downgraded)),
            (true, true, PLAIN, None),
        ];
        for (remediated, downgraded, flags, expected) in table {
            let always = AlwaysSample {
                remediated,
                downgraded,
                per_minute_cap: 10,
            };
            let s = sampler(0.0, always, now);
            assert_eq!(
                s.decide(1, flags, now),
                expected,
                "{remediated} {downgraded} {flags:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_per_minute_and_reopens_with_the_next() {
        let start = Instant::now();
        let always = AlwaysSample {
            remediated: true,
            downgraded: false,
            per_minute_cap: 5,
        };
        let s = sampler(0.0, always, start);
        let taken = |now| {
            (0..20)
                .filter(|k| s.decide(*k, REMEDIATED, now).is_some())
                .count()
        };
        assert_eq!(taken(start), 5);
        assert_eq!(taken(start + Duration::from_secs(59)), 0, "same minute");
        assert_eq!(taken(start + Duration::from_secs(60)), 5, "next minute");
        // A caller holding an older `now` counts against the newest window.
        assert_eq!(taken(start + Duration::from_secs(30)), 0);
        assert_eq!(taken(start + Duration::from_secs(3600)), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ratio_hit_does_not_use_the_cap() {
        let now = Instant::now();
        let always = AlwaysSample {
            remediated: true,
            downgraded: false,
            per_minute_cap: 1,
        };
        let s = sampler(0.5, always, now);
        let hit = (0..100u64).find(|k| s.ratio_hit(*k)).expect("a hit");
        let miss = (0..100u64).find(|k| !s.ratio_hit(*k)).expect("a miss");
        for _ in 0..3 {
            assert_eq!(s.decide(hit, REMEDIATED, now), Some(SampleReason::Ratio));
        }
        assert_eq!(
            s.decide(miss, REMEDIATED, now),
            Some(SampleReason::Remediated)
        );
        assert_eq!(s.decide(miss, REMEDIATED, now), None, "cap of one used");
        let zero_cap = sampler(
            0.0,
            AlwaysSample {
                per_minute_cap: 0,
                ..always
            },
            now,
        );
        assert_eq!(zero_cap.decide(miss, REMEDIATED, now), None);
    }

    #[test]
    fn concurrent_callers_never_exceed_the_cap() {
        let always = AlwaysSample {
            remediated: true,
            downgraded: false,
            per_minute_cap: 1000,
        };
        let now = Instant::now();
        let s = sampler(0.0, always, now);
        let granted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..1000)
                            .filter(|k| s.decide(*k, REMEDIATED, now).is_some())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(granted, 1000);
    }

    #[test]
    fn trace_id_keys_use_both_halves() {
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        a[0] = 1;
        b[15] = 1;
        assert_ne!(key_from_trace_id(a), key_from_trace_id(b));
        assert_ne!(key_from_trace_id(a), key_from_trace_id([0; 16]));
        assert_ne!(key_from_trace_id(b), key_from_trace_id([0; 16]));
    }
}
