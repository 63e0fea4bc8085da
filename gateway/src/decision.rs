//! A request's routing decision, as the record keeps it: the plan's order, what was left out
//! and why (with how long the ejection or cooldown still lasts), panic mode.

use std::sync::Arc;

use sluice_observability::RouteDecision;
use sluice_policy::{AttemptPlan, SkipReason};
use tokio::time::Instant;

/// The decision of `plan`, made at `now`.
pub fn of(plan: &AttemptPlan<'_>, now: Instant) -> RouteDecision {
    RouteDecision {
        strategy: plan.route.balance.as_str(),
        candidates: plan.candidates().map(|t| Arc::clone(&t.model)).collect(),
        skipped: plan
            .skipped
            .iter()
            .map(|(t, why)| {
                let left = match why {
                    SkipReason::Ejected { until } | SkipReason::Cooling { until } => {
                        Some(until.saturating_duration_since(now).as_secs_f64())
                    }
                    SkipReason::Probing | SkipReason::Remediated => None,
                };
                (Arc::clone(&t.model), why.as_str(), left)
            })
            .collect(),
        panic: plan.panic,
        retry_budget_exhausted: false,
    }
}
