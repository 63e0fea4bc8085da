//! The judge's own spending limits: calls per minute and USD per UTC day, per route.
//!
//! - **rpm** is exact over any sliding minute: the start times of the calls of the last
//!   minute are kept (at most `rpm` of them, bounded by the settings' maximum), and a call is
//!   admitted while fewer than `rpm` started in the minute before it. Only calls that are
//!   admitted count, so a judge over its limit recovers as soon as old calls age out.
//! - **USD per day** counts the cost the backend reports for each finished call, in the UTC
//!   day the call finished. A call is admitted while the day's spend is below the limit; the
//!   cost is only known afterwards, so the calls already running when the limit is reached
//!   can overshoot it by at most `concurrency` calls' cost. Days come from a wall clock
//!   ([`Clock`]), turned into day numbers by [`day_index`]; a clock that steps back keeps
//!   counting into the later day rather than reopening an earlier one.
//!
//! [`Budget::admit`] reports whether a refusal starts a new over-budget episode, so the caller
//! can say so once instead of on every refused call.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
const SECONDS_PER_DAY: u64 = 86_400;

/// Wall-clock time: for the USD budget's day boundary and for timestamps in outcomes.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Which limit refused a judge call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetLimit {
    Rpm,
    UsdPerDay,
}

/// A refusal by the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub limit: BudgetLimit,
    /// The previous decision was not a refusal by this limit: a new episode begins.
    pub newly: bool,
}

/// One route's judge spending.
#[derive(Debug)]
pub struct Budget {
    /// Start times of the calls admitted in the last minute, oldest first.
    starts: VecDeque<Instant>,
    day: u64,
    spent_usd: f64,
    over: Option<BudgetLimit>,
}

// === impl Budget ===

impl Budget {
    /// A budget with nothing spent.
    pub fn new() -> Self {
        Self {
            starts: VecDeque::new(),
            day: 0,
            spent_usd: 0.0,
            over: None,
        }
    }

    /// Admits one judge call starting at `now` in UTC day `day`, or says which limit refuses
    /// it. An admitted call counts against `rpm` at once.
    pub fn admit(
        &mut self,
        rpm: Option<u32>,
        usd_per_day: Option<f64>,
        now: Instant,
        day: u64,
    ) -> Result<(), OverBudget> {
        self.roll_day(day);
        while self
            .starts
            .front()
            .is_some_and(|start| now.saturating_duration_since(*start) >= MINUTE)
        {
            self.starts.pop_front();
        }
        let refused = if usd_per_day.is_some_and(|limit| self.spent_usd >= limit) {
            Some(BudgetLimit::UsdPerDay)
        } else if rpm.is_some_and(|limit| self.starts.len() >= limit as usize) {
            Some(BudgetLimit::Rpm)
        } else {
            None
        };
        let newly = refused.is_some() && self.over != refused;
        self.over = refused;
        match refused {
            Some(limit) => Err(OverBudget { limit, newly }),
            None => {
                if rpm.is_some() {
                    self.starts.push_back(now);
                }
                Ok(())
            }
        }
    }

    /// Counts a finished call's cost in UTC day `day`. Costs that are not finite and
    /// positive are ignored.
    pub fn spend(&mut self, usd: f64, day: u64) {
        self.roll_day(day);
        if usd.is_finite() && usd > 0.0 {
            self.spent_usd += usd;
        }
    }

    /// USD spent in `day` (0 for a day other than the current one).
    pub fn spent_usd(&self, day: u64) -> f64 {
        if day == self.day { self.spent_usd } else { 0.0 }
    }

    fn roll_day(&mut self, day: u64) {
        if day > self.day {
            self.day = day;
            self.spent_usd = 0.0;
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

/// The UTC day of `t`: whole days since 1970-01-01 (a time before it is day 0).
pub fn day_index(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / SECONDS_PER_DAY)
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl BudgetLimit {
    /// A label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::UsdPerDay => "usd_per_day",
        }
    }
}

impl fmt::Display for BudgetLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-01T00:00:00Z.
    const MARCH_1: u64 = 1_772_323_200;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn day_index_is_the_utc_day() {
        let day = day_index(at(MARCH_1));
        assert_eq!(day, MARCH_1 / 86_400);
        assert_eq!(
            day_index(at(MARCH_1 + 86_399)),
            day,
            "23:59:59 is the same day"
        );
        assert_eq!(
            day_index(at(MARCH_1 + 86_400)),
            day + 1,
            "midnight starts the next"
        );
        assert_eq!(day_index(at(MARCH_1 - 1)), day - 1);
        assert_eq!(day_index(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn rpm_is_exact_over_a_sliding_minute() {
        let t0 = Instant::now();
        let mut b = Budget::new();
        let day = day_index(at(MARCH_1));
        for i in 0..3 {
            let now = t0 + Duration::from_secs(i * 10);
            assert_eq!(b.admit(Some(3), None, now, day), Ok(()), "call {i}");
        }
        let refused = b.admit(Some(3), None, t0 + Duration::from_secs(59), day);
        assert_eq!(
            refused,
            Err(OverBudget {
                limit: BudgetLimit::Rpm,
                newly: true
            })
        );
        let again = b.admit(Some(3), None, t0 + Duration::from_secs(59), day);
        assert_eq!(again.map_err(|o| o.newly), Err(false), "same episode");
        // The first call started at t0; at t0 + 60 s it is out of the window.
        assert_eq!(
            b.admit(Some(3), None, t0 + Duration::from_secs(60), day),
            Ok(())
        );
        assert!(
            b.admit(Some(3), None, t0 + Duration::from_secs(61), day)
                .is_err()
        );
        assert_eq!(
            b.admit(Some(3), None, t0 + Duration::from_secs(70), day),
            Ok(())
        );
        assert_eq!(
            b.admit(None, None, t0 + Duration::from_secs(70), day),
            Ok(()),
            "no limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn usd_budget_stops_at_the_limit_and_resets_at_utc_midnight() {
        let now = Instant::now();
        let mut b = Budget::new();
        let day = day_index(at(MARCH_1 + 3600));
        let limit = Some(1.0);
        assert_eq!(b.admit(None, limit, now, day), Ok(()));
        b.spend(0.6, day);
        assert_eq!(b.admit(None, limit, now, day), Ok(()), "0.6 < 1.0");
        b.spend(0.6, day);
        assert!(
            (b.spent_usd(day) - 1.2).abs() < 1e-9,
            "running calls may overshoot"
        );
        let refused = b.admit(None, limit, now, day_index(at(MARCH_1 + 86_399)));
        assert_eq!(
            refused,
            Err(OverBudget {
                limit: BudgetLimit::UsdPerDay,
                newly: true
            })
        );
        let next = day_index(at(MARCH_1 + 86_400));
        assert_eq!(b.admit(None, limit, now, next), Ok(()), "a new UTC day");
        assert_eq!(b.spent_usd(next), 0.0);
        assert_eq!(b.spent_usd(day), 0.0, "yesterday is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_stepping_back_does_not_reopen_a_spent_day() {
        let now = Instant::now();
        let mut b = Budget::new();
        let day = day_index(at(MARCH_1));
        b.spend(5.0, day);
        b.spend(1.0, day - 1);
        assert!((b.spent_usd(day) - 6.0).abs() < 1e-9);
        assert!(b.admit(None, Some(5.0), now, day - 1).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn odd_costs_are_ignored_and_zero_budget_refuses_everything() {
        let now = Instant::now();
        let mut b = Budget::new();
        let day = 20_000;
        for usd in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            b.spend(usd, day);
        }
        assert_eq!(b.spent_usd(day), 0.0);
        assert!(b.admit(None, Some(0.0), now, day).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_usd_refusal_does_not_use_an_rpm_slot_and_episodes_switch() {
        let now = Instant::now();
        let mut b = Budget::new();
        let day = 20_000;
        b.spend(2.0, day);
        for _ in 0..5 {
            assert!(b.admit(Some(1), Some(1.0), now, day).is_err());
        }
        let next = day + 1;
        assert_eq!(
            b.admit(Some(1), Some(1.0), now, next),
            Ok(()),
            "the slot is free"
        );
        let rpm = b.admit(Some(1), Some(1.0), now, next);
        assert_eq!(
            rpm,
            Err(OverBudget {
                limit: BudgetLimit::Rpm,
                newly: true
            })
        );
    }
}
