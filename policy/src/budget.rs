//! Retry budgets: how many retries a route may add to its traffic (Envoy's `retry_budget`,
//! Linkerd's `retryRatio` + `minRetriesPerSecond`, tower's `Budget`).
//!
//! Over the last [`WINDOW`], retries may be at most `ratio` × requests + `min_per_s` × the
//! window's seconds. Without a budget, a provider that fails everything gets
//! `max_attempts` × the traffic — a retry storm that keeps it down; with one, retries fade to
//! a trickle while first attempts still go (and still fail fast). Client retries (requests
//! that say `x-stainless-retry-count` > 0) count against the same budget, since they are
//! load the provider sees twice as well.
//!
//! Counted in one-second buckets under a short lock: one lock per request and per retry.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sluice_config::RetryBudget;
use tokio::time::Instant;

/// The window requests and retries are counted over.
pub const WINDOW: Duration = Duration::from_secs(10);
const SLOTS: usize = 10;

/// A route's live retry budget.
#[derive(Debug)]
pub struct RetryBudgetState {
    origin: Instant,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Second index of the newest slot.
    newest: u64,
    /// `(requests, retries)` per second.
    slots: [(u64, u64); SLOTS],
}

impl Counts {
    fn advance(&mut self, second: u64) {
        if second <= self.newest {
            return;
        }
        let steps = (second - self.newest).min(SLOTS as u64);
        for k in 1..=steps {
            self.slots[((self.newest + k) % SLOTS as u64) as usize] = (0, 0);
        }
        self.newest = second;
    }

    fn totals(&self) -> (u64, u64) {
        self.slots
            .iter()
            .fold((0, 0), |(r, t), s| (r + s.0, t + s.1))
    }
}

/// Whether a retry fits, given the window's requests and retries.
pub fn allows(cfg: &RetryBudget, requests: u64, retries: u64) -> bool {
    let allowed = cfg.ratio * requests as f64 + cfg.min_per_s * WINDOW.as_secs_f64();
    (retries as f64) < allowed
}

impl Default for RetryBudgetState {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl RetryBudgetState {
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            inner: Mutex::new(Counts::default()),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// A request arrived (its first attempt deposits into the budget).
    pub fn record_request(&self, now: Instant) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        c.advance(self.second(now));
        let slot = (c.newest % SLOTS as u64) as usize;
        c.slots[slot].0 += 1;
    }

    /// Takes one retry from the budget if it has room; `false` when exhausted.
    pub fn try_retry(&self, cfg: &RetryBudget, now: Instant) -> bool {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        c.advance(self.second(now));
        let (requests, retries) = c.totals();
        if !allows(cfg, requests, retries) {
            return false;
        }
        let slot = (c.newest % SLOTS as u64) as usize;
        c.slots[slot].1 += 1;
        true
    }

    /// `(requests, retries)` in the window, for the admin view.
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        c.advance(self.second(now));
        c.totals()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_table() {
        let cfg = RetryBudget {
            ratio: 0.2,
            min_per_s: 1.0,
        };
        // (requests, retries so far) → another retry allowed?
        for (requests, retries, ok) in [
            (0, 0, true),
            (0, 9, true),
            (0, 10, false),
            (100, 29, true),
            (100, 30, false),
            (1000, 209, true),
            (1000, 210, false),
        ] {
            assert_eq!(
                allows(&cfg, requests, retries),
                ok,
                "{requests} req, {retries} retries"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn under_constant_failure_retries_stay_within_the_ratio_plus_the_floor() {
        let cfg = RetryBudget {
            ratio: 0.2,
            min_per_s: 1.0,
        };
        let b = RetryBudgetState::new(Instant::now());
        let (mut requests, mut retries) = (0u64, 0u64);
        // 100 requests a second for 30 s, each wanting 2 retries.
        for _ in 0..30 {
            for _ in 0..100 {
                b.record_request(Instant::now());
                requests += 1;
                for _ in 0..2 {
                    if b.try_retry(&cfg, Instant::now()) {
                        retries += 1;
                    }
                }
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let bound = 0.2 * requests as f64 + 1.0 * 30.0 + 10.0;
        assert!(
            (retries as f64) <= bound,
            "{retries} retries for {requests} requests"
        );
        assert!(retries >= 600, "the budget is used, not starved: {retries}");
        // A quiet window later, the floor is back.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.totals(Instant::now()), (0, 0));
        assert!(b.try_retry(&cfg, Instant::now()));
    }
}
