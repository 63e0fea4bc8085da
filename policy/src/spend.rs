//! Tenants' spend against their USD budgets, per UTC day and UTC calendar month.
//!
//! Spend is added when a request's cost is known (at record time, from the catalog's prices),
//! so the request that crosses a budget still finishes, and the next one is refused — as the
//! token limits work. Periods roll over on the wall clock (a budget is a calendar notion), so
//! every function takes the wall time as an argument: tests move it by hand.
//!
//! The totals are live state, persisted by the gateway in the data directory so a restart
//! does not reset them.

use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_config::Budget;

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// `daily`, `monthly`.
    pub fn adjective(self) -> &'static str {
        match self {
            Self::Day => "daily",
            Self::Month => "monthly",
        }
    }
}

/// A tenant's spend, by period. Serialised into the data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendSnapshot {
    /// Days since the Unix epoch (UTC) that `day_usd` is for.
    pub day: u64,
    pub day_usd: f64,
    /// Months since January 1970 (UTC) that `month_usd` is for.
    pub month: u64,
    pub month_usd: f64,
}

/// A budget that ran out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverBudget {
    pub period: Period,
    pub limit_usd: f64,
    pub spent_usd: f64,
}

/// The live spend of one tenant.
#[derive(Debug, Default)]
pub struct Spend {
    inner: Mutex<SpendSnapshot>,
}

/// `(day index, month index)` of a wall-clock instant, in UTC.
pub fn periods(at: SystemTime) -> (u64, u64) {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs / 86_400;
    let (year, month) = civil_year_month(day);
    (day, year.saturating_sub(1970) * 12 + month - 1)
}

/// The (year, month 1..=12) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_year_month(days: u64) -> (u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        u64::try_from(year).unwrap_or(0),
        u64::try_from(month).unwrap_or(1),
    )
}

/// The spend as of `at`: a period that has ended counts as zero.
pub fn current(s: &SpendSnapshot, at: SystemTime) -> SpendSnapshot {
    let (day, month) = periods(at);
    SpendSnapshot {
        day,
        day_usd: if s.day == day { s.day_usd } else { 0.0 },
        month,
        month_usd: if s.month == month { s.month_usd } else { 0.0 },
    }
}

/// Whether `spent` leaves room under `budget`; the first exhausted period otherwise.
pub fn check(budget: &Budget, spent: &SpendSnapshot) -> Result<(), OverBudget> {
    for (period, limit, used) in [
        (Period::Day, budget.usd_per_day, spent.day_usd),
        (Period::Month, budget.usd_per_month, spent.month_usd),
    ] {
        if let Some(limit) = limit
            && used >= limit
        {
            return Err(OverBudget {
                period,
                limit_usd: limit,
                spent_usd: used,
            });
        }
    }
    Ok(())
}

impl Spend {
    pub fn from_snapshot(s: SpendSnapshot) -> Self {
        Self {
            inner: Mutex::new(s),
        }
    }

    /// Adds `usd` at `at`, rolling periods over first.
    pub fn add(&self, usd: f64, at: SystemTime) {
        if !usd.is_finite() || usd <= 0.0 {
            return;
        }
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now = current(&s, at);
        now.day_usd += usd;
        now.month_usd += usd;
        *s = now;
    }

    /// The spend as of `at`.
    pub fn snapshot(&self, at: SystemTime) -> SpendSnapshot {
        current(
            &self.inner.lock().unwrap_or_else(PoisonError::into_inner),
            at,
        )
    }

    pub(crate) fn raw_mut(&self) -> std::sync::MutexGuard<'_, SpendSnapshot> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored totals, whatever their periods (for persisting).
    pub fn raw(&self) -> SpendSnapshot {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the tenant may spend more under `budget` at `at`.
    pub fn check(&self, budget: &Budget, at: SystemTime) -> Result<(), OverBudget> {
        check(budget, &self.snapshot(at))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).expect("a time")
    }

    #[test]
    fn periods_follow_the_utc_calendar() {
        assert_eq!(periods(at("1970-01-01T00:00:00Z")), (0, 0));
        assert_eq!(periods(at("1970-02-01T00:00:00Z")).1, 1);
        let (d1, m1) = periods(at("2026-12-31T23:59:59Z"));
        let (d2, m2) = periods(at("2027-01-01T00:00:00Z"));
        assert_eq!((d2 - d1, m2 - m1), (1, 1));
        assert_eq!(m1, (2026 - 1970) * 12 + 11);
        // A leap day stays in February.
        assert_eq!(
            periods(at("2028-02-29T12:00:00Z")).1,
            (2028 - 1970) * 12 + 1
        );
        assert_eq!(
            periods(at("2028-03-01T00:00:00Z")).1,
            (2028 - 1970) * 12 + 2
        );
    }

    #[test]
    fn a_budget_runs_out_then_resets_at_the_period_boundary() {
        let budget = Budget {
            usd_per_day: Some(1.0),
            usd_per_month: Some(2.5),
        };
        let s = Spend::default();
        let day1 = at("2026-12-30T10:00:00Z");
        s.add(0.6, day1);
        assert!(s.check(&budget, day1).is_ok());
        s.add(0.6, day1 + Duration::from_secs(60));
        let over = s
            .check(&budget, day1 + Duration::from_secs(61))
            .expect_err("day spent");
        assert_eq!(over.period, Period::Day);
        assert!((over.spent_usd - 1.2).abs() < 1e-9);
        // Midnight UTC: a new day, the month's spend carries on.
        let day2 = at("2026-12-31T00:00:00Z");
        assert!(s.check(&budget, day2).is_ok());
        s.add(1.0, day2);
        s.add(0.4, day2);
        let over = s.check(&budget, day2).expect_err("month spent");
        assert_eq!(over.period, Period::Day, "the day is checked first");
        let day2_later = day2 + Duration::from_secs(3600);
        assert_eq!(s.snapshot(day2_later).month_usd, 2.6);
        // Next day, still December: the month is spent.
        let jan = at("2027-01-01T00:00:00Z");
        let dec31_late = at("2026-12-31T23:00:00Z");
        assert_eq!(
            s.check(&budget, dec31_late).map_err(|o| o.period),
            Err(Period::Day)
        );
        assert!(s.check(&budget, jan).is_ok(), "a new month");
    }

    #[test]
    fn negative_and_odd_costs_are_ignored() {
        let s = Spend::default();
        let t = at("2026-12-02T00:00:00Z");
        for usd in [-1.0, f64::NAN, f64::INFINITY, 0.0] {
            s.add(usd, t);
        }
        assert_eq!(s.snapshot(t).day_usd, 0.0);
    }
}
