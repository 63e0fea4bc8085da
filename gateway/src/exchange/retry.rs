//! The retry decision, as pure functions: what to do after an attempt failed, and whether an
//! attempt may go to a target that asked to be left alone.
//!
//! - A failure whose class the route does not retry (`retry.on`), or a provider's own 4xx,
//!   stops the request. A provider Sluice cannot use at all (no key) is skipped, not retried.
//! - The attempts are bounded by `retry.max_attempts`.
//! - The next attempt never starts when it could not begin before the request's deadline.
//! - Going to another target needs no wait. Going back to the same target (a single-target
//!   route, or the plan wrapping round) waits a jittered exponential backoff for 5xx, timeouts
//!   and connect errors ("full jitter": a uniform wait in `0..=base × 2^k`, capped), so a
//!   struggling provider is not hit again at once.
//! - A 429's `Retry-After` is not a backoff: it becomes the target's cooldown (shared by every
//!   request), and [`gate`] decides per attempt whether to wait for it (when it is short,
//!   under `retry.max_retry_after`, and ends before the deadline) or to move on.

use std::time::Duration;

use sluice_config::{RetryConfig, RetryOn};
use tokio::time::Instant;

/// What kind of failure an attempt ended with, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Connect,
    Timeout,
    RateLimited,
    ServerError,
    /// The provider cannot be used at all now (its key is not set): try the next target.
    Unavailable,
    /// The provider refused the request itself; another attempt would be refused too.
    Client,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Try the next attempt after this wait (zero: at once).
    Retry {
        after: Duration,
    },
    Stop(Stop),
}

/// Why no further attempt is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The route does not retry this kind of failure (or it is the provider's own 4xx).
    NotRetryable,
    /// `retry.max_attempts` attempts were made.
    AttemptsExhausted,
    /// The next attempt could not start before the request's deadline.
    Deadline,
}

/// Whether an attempt may go to a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// The target's cooldown ends soon enough: wait for it.
    WaitUntil(Instant),
    /// The cooldown is longer than the route waits, or outlasts the request: move on.
    Skip,
}

/// Backoff bounds for retries on the same target.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Decides the step after attempt number `made` (1-based count of attempts so far) failed.
/// `same_target_next` says whether the next attempt goes back to the target that failed;
/// `jitter` is a uniform sample in `0.0..1.0`.
pub fn after_failure(
    class: FailureClass,
    retry: &RetryConfig,
    made: usize,
    same_target_next: bool,
    now: Instant,
    deadline: Instant,
    jitter: f64,
) -> Step {
    let retryable = match class {
        FailureClass::Connect => retry.on.contains(&RetryOn::Connect),
        FailureClass::Timeout => retry.on.contains(&RetryOn::Timeout),
        FailureClass::RateLimited => retry.on.contains(&RetryOn::RateLimited),
        FailureClass::ServerError => retry.on.contains(&RetryOn::ServerError),
        FailureClass::Unavailable => true,
        FailureClass::Client => false,
    };
    if !retryable {
        return Step::Stop(Stop::NotRetryable);
    }
    if made
        >= usize::try_from(retry.max_attempts)
            .unwrap_or(usize::MAX)
            .max(1)
    {
        return Step::Stop(Stop::AttemptsExhausted);
    }
    let after = match class {
        // Its cooldown (from Retry-After) is the target's, checked by `gate`; without one the
        // provider said nothing about when, so it gets the same backoff as a 5xx.
        FailureClass::Connect
        | FailureClass::Timeout
        | FailureClass::ServerError
        | FailureClass::RateLimited
            if same_target_next =>
        {
            backoff(made, jitter)
        }
        _ => Duration::ZERO,
    };
    if now + after >= deadline {
        return Step::Stop(Stop::Deadline);
    }
    Step::Retry { after }
}

/// Full-jitter exponential backoff for the `made`-th retry of the same target.
pub fn backoff(made: usize, jitter: f64) -> Duration {
    let exp = u32::try_from(made.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    let ceiling = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Whether an attempt may go to a target that is cooling down until `cooling_until`.
pub fn gate(
    cooling_until: Option<Instant>,
    max_retry_after: Duration,
    now: Instant,
    deadline: Instant,
) -> Gate {
    match cooling_until {
        None => Gate::Go,
        Some(until) if until <= now => Gate::Go,
        Some(until) if until - now > max_retry_after || until >= deadline => Gate::Skip,
        Some(until) => Gate::WaitUntil(until),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(max_attempts: u32, on: &[RetryOn]) -> RetryConfig {
        RetryConfig {
            max_attempts,
            on: on.to_vec(),
            max_retry_after: Duration::from_secs(2),
            budget: sluice_config::RetryBudget::default(),
        }
    }

    #[test]
    fn the_decision_table() {
        use FailureClass::*;
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        let all = retry(3, &RetryOn::ALL);
        let ms = Duration::from_millis;
        // (class, settings, attempts made, same target next, deadline, jitter) → step
        let cases: [(FailureClass, &RetryConfig, usize, bool, Instant, f64, Step); 14] = [
            (
                ServerError,
                &all,
                1,
                false,
                far,
                0.5,
                Step::Retry { after: ms(0) },
            ),
            (
                ServerError,
                &all,
                1,
                true,
                far,
                0.5,
                Step::Retry { after: ms(50) },
            ),
            (
                ServerError,
                &all,
                2,
                true,
                far,
                0.5,
                Step::Retry { after: ms(100) },
            ),
            (
                ServerError,
                &all,
                3,
                true,
                far,
                0.5,
                Step::Stop(Stop::AttemptsExhausted),
            ),
            (
                Timeout,
                &all,
                1,
                true,
                far,
                1.0,
                Step::Retry { after: ms(100) },
            ),
            (
                Connect,
                &all,
                1,
                false,
                far,
                0.9,
                Step::Retry { after: ms(0) },
            ),
            // Without Retry-After, a 429 to the same target backs off like a 5xx.
            (
                RateLimited,
                &all,
                1,
                true,
                far,
                0.25,
                Step::Retry { after: ms(25) },
            ),
            (
                RateLimited,
                &all,
                1,
                false,
                far,
                0.25,
                Step::Retry { after: ms(0) },
            ),
            // Not in `retry.on`.
            (
                ServerError,
                &retry(3, &[RetryOn::Connect]),
                1,
                false,
                far,
                0.5,
                Step::Stop(Stop::NotRetryable),
            ),
            (
                RateLimited,
                &retry(3, &[RetryOn::ServerError]),
                1,
                false,
                far,
                0.5,
                Step::Stop(Stop::NotRetryable),
            ),
            // The provider's own 4xx is never retried; a keyless provider is skipped.
            (
                Client,
                &all,
                1,
                false,
                far,
                0.5,
                Step::Stop(Stop::NotRetryable),
            ),
            (
                Unavailable,
                &retry(3, &[]),
                1,
                true,
                far,
                0.5,
                Step::Retry { after: ms(0) },
            ),
            // A backoff that would end past the deadline stops instead.
            (
                ServerError,
                &all,
                1,
                true,
                t0 + ms(40),
                0.5,
                Step::Stop(Stop::Deadline),
            ),
            (
                ServerError,
                &retry(1, &RetryOn::ALL),
                1,
                false,
                far,
                0.5,
                Step::Stop(Stop::AttemptsExhausted),
            ),
        ];
        for (i, (class, settings, made, same, deadline, jitter, want)) in cases.iter().enumerate() {
            let got = after_failure(*class, settings, *made, *same, t0, *deadline, *jitter);
            assert_eq!(got, *want, "case {i}: {class:?} after {made} attempt(s)");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(4, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(9, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn the_gate_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let deadline = t0 + s(10);
        let max = s(2);
        assert_eq!(gate(None, max, t0, deadline), Gate::Go);
        assert_eq!(gate(Some(t0), max, t0, deadline), Gate::Go, "over already");
        assert_eq!(
            gate(Some(t0 + s(1)), max, t0, deadline),
            Gate::WaitUntil(t0 + s(1))
        );
        assert_eq!(
            gate(Some(t0 + s(3)), max, t0, deadline),
            Gate::Skip,
            "too long"
        );
        assert_eq!(
            gate(Some(t0 + s(1)), max, t0, t0 + s(1)),
            Gate::Skip,
            "ends at the deadline"
        );
    }
}
