//! Tail sampling by outcome: decided once the request has ended, from its record.
//!
//! A request is kept when a configured `keep` rule matches it, checked in this order:
//! - `error`: [`RequestRecord::is_error`] (5xx-class outcomes, timeouts, truncations), or any
//!   upstream attempt that failed (a retry that then succeeded is worth seeing);
//! - `slow`: longer than the route's threshold, else `sample.slow`;
//! - `expensive`: `cost_usd` over `sample.expensive_usd`;
//! - `remediated` / `judged`: from [`Flags`], set by the remediation controller and the judge.
//!
//! Otherwise:
//! - **parent**: the caller sent a `traceparent` with the sampled flag. Sluice honours it
//!   (as OpenTelemetry's default `ParentBased` sampler does), so a sampled caller trace is
//!   not left with a hole where the gateway was. Its cost is bounded like any span: the export
//!   queue is bounded and drops are counted.
//! - **head**: a `head_ratio` share, decided from the trace id alone (its low 8 bytes, like
//!   the SDK's `TraceIdRatioBased`), so every span of a trace, and every process that looks
//!   at the same trace id, agrees.

use std::time::Duration;

use sluice_config::{KeepRule, SampleConfig};

use crate::record::{AttemptOutcome, RequestRecord};

/// Facts about a request that the record does not carry (yet): set by the remediation
/// controller and the judge. Both default to `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// A remediation action (failover, downgrade, cache fallback, shed) changed how the
    /// request was served.
    pub remediated: bool,
    /// The judge sampled this request.
    pub judged: bool,
}

/// Why a request's spans were kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeepReason {
    Error,
    Slow,
    Expensive,
    Remediated,
    Judged,
    /// The caller's `traceparent` was sampled.
    Parent,
    /// The `head_ratio` share.
    Head,
}

impl KeepReason {
    /// The value of `sluice.sampled_by`, and a label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Slow => "slow",
            Self::Expensive => "expensive",
            Self::Remediated => "remediated",
            Self::Judged => "judged",
            Self::Parent => "parent",
            Self::Head => "head",
        }
    }
}

/// The sampling decision; cheap to call on every request.
#[derive(Debug, Clone)]
pub struct TailSampler {
    error: bool,
    slow: Option<Duration>,
    expensive_usd: Option<f64>,
    remediated: bool,
    judged: bool,
    /// Keep when the trace id's low 64 bits (shifted right by one) are below this.
    head_threshold: u64,
}

impl TailSampler {
    pub fn new(cfg: &SampleConfig) -> Self {
        let has = |rule| cfg.keep.contains(&rule);
        Self {
            error: has(KeepRule::Error),
            slow: has(KeepRule::Slow).then_some(cfg.slow),
            expensive_usd: has(KeepRule::Expensive).then_some(cfg.expensive_usd),
            remediated: has(KeepRule::Remediated),
            judged: has(KeepRule::Judged),
            head_threshold: head_threshold(cfg.head_ratio),
        }
    }

    /// Whether to keep the request's spans, and why. `route_slow` is the route's own slow
    /// threshold (`routes[].telemetry.slow`), overriding `sample.slow`.
    pub fn keep(
        &self,
        r: &RequestRecord,
        route_slow: Option<Duration>,
        flags: Flags,
    ) -> Option<KeepReason> {
        if self.error && (r.is_error() || r.attempts.iter().any(|a| attempt_failed(a.outcome))) {
            return Some(KeepReason::Error);
        }
        if let Some(slow) = self.slow
            && r.duration > route_slow.unwrap_or(slow)
        {
            return Some(KeepReason::Slow);
        }
        if let (Some(limit), Some(cost)) = (self.expensive_usd, r.cost_usd)
            && cost > limit
        {
            return Some(KeepReason::Expensive);
        }
        if self.remediated && flags.remediated {
            return Some(KeepReason::Remediated);
        }
        if self.judged && flags.judged {
            return Some(KeepReason::Judged);
        }
        if r.trace.sampled && r.trace.parent_span_id.is_some() {
            return Some(KeepReason::Parent);
        }
        head_sampled(r.trace.trace_id, self.head_threshold).then_some(KeepReason::Head)
    }
}

fn attempt_failed(outcome: AttemptOutcome) -> bool {
    !matches!(
        outcome,
        AttemptOutcome::Ok | AttemptOutcome::ClientError | AttemptOutcome::Cancelled
    )
}

/// `ratio` of the 63-bit space; 1.0 keeps everything, 0 nothing.
fn head_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        0
    } else if ratio >= 1.0 {
        u64::MAX
    } else {
        // 0 < ratio < 1, so the product is in 0..2^63 and the conversion cannot saturate.
        (ratio * (1u64 << 63) as f64) as u64
    }
}

fn head_sampled(trace_id: [u8; 16], threshold: u64) -> bool {
    if threshold == u64::MAX {
        return true;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    (u64::from_be_bytes(low) >> 1) < threshold
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::record::{AttemptRecord, Outcome, RequestRecord, TraceContext};

    fn record(outcome: Outcome, duration: Duration, trace_low: u64) -> RequestRecord {
        let mut trace_id = [0u8; 16];
        trace_id[0] = 1;
        trace_id[8..].copy_from_slice(&trace_low.to_be_bytes());
        let plain = crate::testing::record(outcome);
        RequestRecord {
            request_id: "req-1".into(),
            trace: TraceContext {
                trace_id,
                ..plain.trace
            },
            duration,
            route: Some(Arc::from("chat")),
            model: Some(Arc::from("gpt-4o")),
            request_model: Some("gpt-4o".into()),
            request_model_label: Some(Arc::from("gpt-4o")),
            stream: false,
            ..plain
        }
    }

    fn attempt(outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord {
            provider: Arc::from("openai"),
            provider_kind: "openai",
            model: Arc::from("gpt-4o"),
            upstream_model: Arc::from("gpt-4o"),
            server_address: None,
            server_port: None,
            span_id: [3; 8],
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(5),
            outcome,
            status: None,
        }
    }

    fn cfg(head_ratio: f64) -> SampleConfig {
        SampleConfig {
            head_ratio,
            ..SampleConfig::default()
        }
    }

    const FAST: Duration = Duration::from_millis(20);
    const NO: Flags = Flags {
        remediated: false,
        judged: false,
    };

    #[test]
    fn keeps_every_error_at_head_ratio_zero() {
        let s = TailSampler::new(&cfg(0.0));
        for outcome in [
            Outcome::UpstreamError,
            Outcome::Timeout,
            Outcome::Truncated,
            Outcome::GatewayError,
        ] {
            let r = record(outcome, FAST, u64::MAX);
            assert_eq!(s.keep(&r, None, NO), Some(KeepReason::Error), "{outcome:?}");
        }
        for outcome in [Outcome::Ok, Outcome::ClientError, Outcome::Cancelled] {
            let r = record(outcome, FAST, 0);
            assert_eq!(s.keep(&r, None, NO), None, "{outcome:?}");
        }
        // A failed attempt that a retry repaired is still kept.
        let mut r = record(Outcome::Ok, FAST, 0);
        r.attempts = vec![
            attempt(AttemptOutcome::ServerError),
            attempt(AttemptOutcome::Ok),
        ];
        assert_eq!(s.keep(&r, None, NO), Some(KeepReason::Error));
        r.attempts = vec![attempt(AttemptOutcome::Ok)];
        assert_eq!(s.keep(&r, None, NO), None);
    }

    #[test]
    fn rules_in_order_and_only_when_configured() {
        let s = TailSampler::new(&cfg(0.0));
        let slow = record(Outcome::Ok, Duration::from_secs(11), 0);
        assert_eq!(s.keep(&slow, None, NO), Some(KeepReason::Slow));
        assert_eq!(s.keep(&slow, Some(Duration::from_secs(20)), NO), None);
        let r = record(Outcome::Ok, Duration::from_secs(6), 0);
        assert_eq!(
            s.keep(&r, Some(Duration::from_secs(5)), NO),
            Some(KeepReason::Slow)
        );

        let mut pricey = record(Outcome::Ok, FAST, 0);
        pricey.cost_usd = Some(0.25);
        assert_eq!(s.keep(&pricey, None, NO), Some(KeepReason::Expensive));
        pricey.cost_usd = Some(0.1);
        assert_eq!(s.keep(&pricey, None, NO), None, "over, not at, the limit");

        let r = record(Outcome::Ok, FAST, 0);
        let flags = Flags {
            remediated: true,
            judged: true,
        };
        assert_eq!(s.keep(&r, None, flags), Some(KeepReason::Remediated));
        let judged = Flags {
            judged: true,
            ..Flags::default()
        };
        assert_eq!(s.keep(&r, None, judged), Some(KeepReason::Judged));

        let only_judged = TailSampler::new(&SampleConfig {
            head_ratio: 0.0,
            keep: vec![KeepRule::Judged],
            ..SampleConfig::default()
        });
        let failed = record(Outcome::Timeout, Duration::from_secs(60), 0);
        assert_eq!(
            only_judged.keep(&failed, None, flags),
            Some(KeepReason::Judged)
        );
        assert_eq!(only_judged.keep(&failed, None, NO), None);
    }

    #[test]
    fn a_sampled_caller_is_honoured() {
        let s = TailSampler::new(&cfg(0.0));
        let mut r = record(Outcome::Ok, FAST, u64::MAX);
        r.trace.sampled = true;
        r.trace.parent_span_id = Some([9; 8]);
        assert_eq!(s.keep(&r, None, NO), Some(KeepReason::Parent));
        r.trace.sampled = false;
        assert_eq!(s.keep(&r, None, NO), None);
    }

    #[test]
    fn head_sampling_is_deterministic_and_proportional() {
        let all = TailSampler::new(&cfg(1.0));
        let none = TailSampler::new(&cfg(0.0));
        let tenth = TailSampler::new(&cfg(0.1));
        let mut kept = 0;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            // splitmix64 steps: well-spread low halves.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let r = record(Outcome::Ok, FAST, z ^ (z >> 31));
            assert_eq!(all.keep(&r, None, NO), Some(KeepReason::Head));
            assert_eq!(none.keep(&r, None, NO), None);
            let first = tenth.keep(&r, None, NO);
            assert_eq!(first, tenth.keep(&r, None, NO), "same trace, same answer");
            kept += usize::from(first.is_some());
        }
        assert!((800..1200).contains(&kept), "kept {kept} of 10000 at 0.1");
        assert_eq!(head_threshold(f64::NAN), 0);
        assert_eq!(head_threshold(0.5), 1 << 62);
    }
}
