//! Per-key rate limits, each over a rolling minute.
//!
//! Requests per minute use governor's GCRA: exact, lock-free, and it answers "when may the next
//! one go" for `retry-after`. Tokens per minute cannot be checked up front (a request's size is
//! known only when the provider reports usage), so they use a sliding-window counter that each
//! finished request feeds with its real usage, as OpenAI's own limits do: a key under its limit is
//! admitted, and the request that crosses it still finishes.

use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use sluice_config::Limits;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// Which limit refused a request. A closed set, so it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// A refusal: which limit, its value, and when a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub kind: LimitKind,
    pub limit: u64,
    pub retry_after: Duration,
}

/// What an admitted request tells the client in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headroom {
    /// `(limit, remaining, reset)` for requests, when the key has an rpm limit.
    pub requests: Option<(u64, u64, Duration)>,
    /// `(limit, remaining, reset)` for tokens, when the key has a tpm limit.
    pub tokens: Option<(u64, u64, Duration)>,
}

type Gcra = RateLimiter<NotKeyed, InMemoryState, TokioClock, StateInformationMiddleware>;

/// governor's clock over tokio's, so limiter tests run on paused time (governor's default
/// reads the CPU's counter, which no test can move).
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    /// Time since the clock's origin.
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// The live limiter state of one key.
#[derive(Debug)]
pub struct KeyLimiter {
    requests: Option<(u32, Gcra)>,
    tokens: Option<TokenWindow>,
}

impl KeyLimiter {
    /// `None` when the key has no limits, so unlimited keys cost nothing per request.
    pub fn new(limits: Limits) -> Option<Self> {
        let requests = limits.rpm.and_then(NonZeroU32::new).map(|rpm| {
            let quota = Quota::per_minute(rpm);
            (
                rpm.get(),
                RateLimiter::direct_with_clock(quota, TokioClock::default())
                    .with_middleware::<StateInformationMiddleware>(),
            )
        });
        let tokens = limits.tpm.map(|tpm| TokenWindow::new(tpm, Instant::now()));
        (requests.is_some() || tokens.is_some()).then_some(Self { requests, tokens })
    }

    /// Admits one request or says which limit refused it. The token limit is checked first so
    /// a request it refuses does not also use up a request slot.
    pub fn admit(&self) -> Result<Headroom, Denied> {
        let mut headroom = Headroom::default();
        if let Some(w) = &self.tokens {
            headroom.tokens = Some(w.admit_at(Instant::now())?);
        }
        if let Some((rpm, gcra)) = &self.requests {
            let per_request = WINDOW / *rpm;
            match gcra.check() {
                Ok(snapshot) => {
                    let remaining = u64::from(snapshot.remaining_burst_capacity());
                    let used = u64::from(*rpm).saturating_sub(remaining);
                    // Back to a full allowance after every used slot has been replenished.
                    let reset = per_request.saturating_mul(u32::try_from(used).unwrap_or(u32::MAX));
                    headroom.requests = Some((u64::from(*rpm), remaining, reset));
                }
                Err(not_until) => {
                    return Err(Denied {
                        kind: LimitKind::Requests,
                        limit: u64::from(*rpm),
                        retry_after: not_until.wait_time_from(gcra.clock().now()),
                    });
                }
            }
        }
        Ok(headroom)
    }

    /// The limits this limiter enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            rpm: self.requests.as_ref().map(|(rpm, _)| *rpm),
            tpm: self.tokens.as_ref().map(|w| w.limit),
        }
    }

    /// Adds a finished request's tokens to the key's window.
    pub fn consume_tokens(&self, tokens: u64) {
        if let Some(w) = &self.tokens {
            w.consume_at(Instant::now(), tokens);
        }
    }
}

/// A sliding-window counter: the current minute's tokens plus the previous minute's, weighted
/// by how much of it still overlaps the last 60 seconds.
#[derive(Debug)]
struct TokenWindow {
    limit: u64,
    origin: Instant,
    // Two counters and the window index change together; a mutex held for a few instructions
    // is simpler than a CAS loop over a packed word and only keys with a tpm limit take it.
    state: Mutex<WindowState>,
}

#[derive(Debug, Default)]
struct WindowState {
    index: u64,
    current: u64,
    previous: u64,
}

impl TokenWindow {
    fn new(limit: u64, origin: Instant) -> Self {
        Self {
            limit,
            origin,
            state: Mutex::new(WindowState::default()),
        }
    }

    /// The window index at `now` and how far into it `now` is, in `0.0..1.0`.
    fn position(&self, now: Instant) -> (u64, f64) {
        let elapsed = now.saturating_duration_since(self.origin);
        let index = elapsed.as_secs() / WINDOW.as_secs();
        let into = elapsed.saturating_sub(WINDOW * u32::try_from(index).unwrap_or(u32::MAX));
        (index, into.as_secs_f64() / WINDOW.as_secs_f64())
    }

    fn rolled(&self, now: Instant) -> (std::sync::MutexGuard<'_, WindowState>, f64) {
        let (mut index, mut frac) = self.position(now);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // `now` was read before the lock: a caller that waited while another moved the window
        // on counts in the newer window instead of resetting it.
        if index < st.index {
            index = st.index;
            frac = 0.0;
        }
        if index > st.index {
            st.previous = if index == st.index + 1 { st.current } else { 0 };
            st.current = 0;
            st.index = index;
        }
        (st, frac)
    }

    fn admit_at(&self, now: Instant) -> Result<(u64, u64, Duration), Denied> {
        let (st, frac) = self.rolled(now);
        let limit = self.limit as f64;
        let used = st.previous as f64 * (1.0 - frac) + st.current as f64;
        let until_next = WINDOW.mul_f64(1.0 - frac);
        if used < limit {
            // The window empties fully once this minute and the next have passed.
            let reset = if st.current > 0 {
                until_next + WINDOW
            } else {
                until_next
            };
            return Ok((self.limit, (limit - used) as u64, reset));
        }
        // When does `used` fall below the limit if nothing else is spent?
        let wait = if st.current as f64 >= limit {
            // Only in a later window, where this one's count is the fading previous one.
            let fraction = 1.0 - limit / st.current as f64;
            until_next + WINDOW.mul_f64(fraction)
        } else {
            // Later in this window, as the previous one fades.
            let target = 1.0 - (limit - st.current as f64) / st.previous as f64;
            WINDOW.mul_f64((target - frac).max(0.0))
        };
        Err(Denied {
            kind: LimitKind::Tokens,
            limit: self.limit,
            retry_after: wait.max(Duration::from_millis(1)),
        })
    }

    fn consume_at(&self, now: Instant, tokens: u64) {
        let (mut st, _) = self.rolled(now);
        st.current = st.current.saturating_add(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_keys_have_no_limiter() {
        assert!(KeyLimiter::new(Limits::default()).is_none());
    }

    #[test]
    fn requests_beyond_rpm_are_refused_with_a_retry_time() {
        let l = KeyLimiter::new(Limits {
            rpm: Some(3),
            tpm: None,
        })
        .expect("limited");
        for expected_remaining in [2, 1, 0] {
            let h = l.admit().expect("within the limit");
            let (limit, remaining, reset) = h.requests.expect("rpm headroom");
            assert_eq!((limit, remaining), (3, expected_remaining));
            assert!(reset <= WINDOW, "{reset:?}");
        }
        let denied = l.admit().expect_err("fourth request in a minute");
        assert_eq!(denied.kind, LimitKind::Requests);
        assert_eq!(denied.limit, 3);
        // One slot comes back every 20 s.
        assert!(
            denied.retry_after > Duration::from_secs(19)
                && denied.retry_after <= Duration::from_secs(20),
            "{:?}",
            denied.retry_after
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rpm_window_refills_on_paused_time() {
        let l = KeyLimiter::new(Limits {
            rpm: Some(60),
            tpm: None,
        })
        .expect("limited");
        for _ in 0..60 {
            l.admit().expect("within the minute's allowance");
        }
        let denied = l.admit().expect_err("61st in no time");
        assert_eq!(denied.retry_after, Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(l.admit().is_err(), "one slot a second, not yet");
        tokio::time::advance(Duration::from_millis(1)).await;
        l.admit().expect("a slot came back");
        assert!(l.admit().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_window_slides_on_paused_time() {
        let l = KeyLimiter::new(Limits {
            rpm: None,
            tpm: Some(1000),
        })
        .expect("limited");
        l.admit().expect("empty window");
        l.consume_tokens(1500);
        assert!(l.admit().is_err());
        // 1500 fade below 1000 a third of the way into the next minute: at 80 s.
        tokio::time::advance(Duration::from_secs(79)).await;
        assert!(l.admit().is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        l.admit().expect("room again");
    }

    #[test]
    fn tokens_are_admitted_until_usage_reaches_tpm() {
        let t0 = Instant::now();
        let w = TokenWindow::new(1000, t0);
        let (_, remaining, _) = w.admit_at(t0).expect("empty window");
        assert_eq!(remaining, 1000);
        w.consume_at(t0, 600);
        let (_, remaining, _) = w.admit_at(t0 + Duration::from_secs(1)).expect("600 < 1000");
        assert_eq!(remaining, 400);
        // The request that crosses the limit was already admitted; the next one is not.
        w.consume_at(t0 + Duration::from_secs(2), 600);
        let denied = w
            .admit_at(t0 + Duration::from_secs(30))
            .expect_err("1200 >= 1000");
        assert_eq!(denied.kind, LimitKind::Tokens);
        // 1200 tokens fade below 1000 once 1/6 of the next window has passed: 30 s + 10 s.
        let wait = denied.retry_after.as_secs_f64();
        assert!((wait - 40.0).abs() < 0.01, "{wait}");
        assert!(w.admit_at(t0 + Duration::from_secs(71)).is_ok());
    }

    #[test]
    fn a_late_caller_never_rolls_the_window_back() {
        let t0 = Instant::now();
        let w = TokenWindow::new(1000, t0);
        w.consume_at(t0 + Duration::from_secs(61), 700);
        // Read its clock in the first minute, got the lock after the window moved on.
        w.consume_at(t0 + Duration::from_secs(59), 400);
        let denied = w
            .admit_at(t0 + Duration::from_secs(62))
            .expect_err("1100 tokens in the current window");
        assert_eq!(denied.kind, LimitKind::Tokens);
    }

    #[test]
    fn the_previous_window_fades_out() {
        let t0 = Instant::now();
        let w = TokenWindow::new(1000, t0);
        w.consume_at(t0 + Duration::from_secs(50), 900);
        w.consume_at(t0 + Duration::from_secs(61), 400);
        // At 61 s: 900 × (59/60) + 400 ≈ 1285, over the limit until 900 × (1 − f) < 600,
        // that is f > 1/3: at 80 s.
        let denied = w
            .admit_at(t0 + Duration::from_secs(61))
            .expect_err("over the limit");
        let wait = denied.retry_after.as_secs_f64();
        assert!((wait - 19.0).abs() < 0.01, "{wait}");
        assert!(w.admit_at(t0 + Duration::from_secs(81)).is_ok());
        // Two idle minutes forget everything.
        let (_, remaining, _) = w.admit_at(t0 + Duration::from_secs(200)).expect("empty");
        assert_eq!(remaining, 1000);
    }
}
