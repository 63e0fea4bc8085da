//! Root-cause hints: which dimension values explain the bad events (or the extra spend) of the
//! last minutes, ranked, with their share. A pure function over bucketed counts
//! ([`BreakdownView`]) that the engine keeps per dimension value.
//!
//! ## Counting focuses (failed, slow)
//! Per dimension (provider, model, route, tenant, endpoint), for a value `v` with `bad_v` of
//! `total_v` events, against the rest of the dimension's values (`rest_rate`, their bad ratio):
//!
//! - **coverage** `c = max(0, bad_v − total_v · rest_rate) / bad`: the share of all bad events
//!   that `v` has *beyond* what it would have at the others' rate. A provider that is simply
//!   busier gets no credit for failing like everyone else.
//! - **purity** `p = max(0, rate_v − rest_rate) / (1 − rest_rate)`: how much worse `v` is than
//!   the rest, 1 when all of `v` fails and nothing else does.
//!
//! The score is their harmonic mean (an F1). Coverage alone cannot tell a tenant whose burst
//! fails (coverage 1, purity 0.6) from the route it happens to use (coverage 1, purity 0.2);
//! purity alone would pick a tiny value that failed twice. A dimension with a single value
//! explains nothing by contrast and is skipped; the aggregate `other` value is counted but
//! never named. Ties go to the dimension named first in [`Dimension::PRIORITY`].
//!
//! For failures the error cause (provider status or Sluice's error kind) is reported beside the
//! ranking as the most common cause among the failed requests and its share.
//!
//! ## Amount focuses (spend, tokens)
//! The recent rate per minute `a_v` is compared with the reference window's `r_v`, and the
//! rest of the dimension's growth factor `g = (Σa − a_v) / (Σr − r_v)` plays the rest's rate:
//! `v`'s excess is `e_v = max(0, a_v − r_v · g)` (what it spends beyond growing like the others),
//! coverage is `e_v / (Σa − Σr)` and purity `e_v / a_v`. A provider that doubles because one
//! tenant doubled everywhere grows like the other providers and gets no credit. With no
//! increase there is no hint.
//!
//! This is the "explanatory power" half of Adtributor (Bhagwan et al., NSDI 2014) with purity
//! standing in for its surprise term, which needs a forecast per value that a bounded set of
//! counters does not have.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use sluice_policy::remediation::AnomalySignal;

use crate::slo::Sli;

/// Contributions scoring below this are not named.
const MIN_SCORE: f64 = 0.2;

/// A dimension requests are broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Provider,
    Tenant,
    Model,
    Route,
    Endpoint,
    /// The provider's status or Sluice's error kind, for failed requests only.
    Error,
}

/// What counts as bad for a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Focus {
    /// Failed requests.
    Failed,
    /// Requests at least twice as slow as their target's usual (TTFT for streams, duration
    /// otherwise).
    Slow,
    /// Spend.
    Cost,
    /// Tokens.
    Tokens,
}

/// Counts of one value over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    pub total: u64,
    pub failed: u64,
    pub slow: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

/// One value of a dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueCounts {
    pub value: Arc<str>,
    /// The tail of values past the tracked cap, summed: counted, never named.
    pub aggregate: bool,
    pub recent: Counts,
    pub reference: Counts,
}

/// Every value of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DimensionCounts {
    pub dimension: Dimension,
    pub values: Vec<ValueCounts>,
}

/// What a hint is computed from: per dimension value, counts over the recent window and over
/// the reference window before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownView {
    pub recent_minutes: f64,
    pub reference_minutes: f64,
    pub dimensions: Vec<DimensionCounts>,
}

/// How much one value explains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// The counts it was computed from, to tell a value that only restates another (a model
    /// served by one provider only) from one that adds something.
    #[serde(skip)]
    counts: (Counts, Counts),
    pub dimension: Dimension,
    pub value: Arc<str>,
    /// Its share of the bad events (of the increase, for amounts).
    pub share: f64,
    /// The ranking score in `[0, 1]` (see the module docs).
    pub score: f64,
    /// Its own bad ratio (its growth factor `a_v / r_v`, for amounts).
    pub rate: f64,
    /// The rest of the dimension's bad ratio (growth factor, for amounts); `None` for the
    /// error cause.
    pub rest_rate: Option<f64>,
}

/// The hint put on an incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RootCauseHint {
    pub focus: Focus,
    /// Bad events in the recent window (the increase per minute, for amounts).
    pub bad: f64,
    /// The best-scoring values, best first.
    pub top: Vec<Contribution>,
    /// The most common cause among failed requests, for [`Focus::Failed`].
    pub error: Option<Contribution>,
    /// One line for people: `82 % of failed requests: provider openai (…); error 529 (95 %)`.
    pub text: String,
}

// === impl Dimension ===

impl Dimension {
    /// Tie-break order: shared infrastructure first (a provider explains many routes), then who
    /// sent it, then what was asked for.
    pub const PRIORITY: [Dimension; 6] = [
        Dimension::Provider,
        Dimension::Tenant,
        Dimension::Model,
        Dimension::Route,
        Dimension::Endpoint,
        Dimension::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Tenant => "tenant",
            Self::Model => "model",
            Self::Route => "route",
            Self::Endpoint => "endpoint",
            Self::Error => "error",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::Provider => "providers",
            Self::Tenant => "tenants",
            Self::Model => "models",
            Self::Route => "routes",
            Self::Endpoint => "endpoints",
            Self::Error => "errors",
        }
    }
}

// === impl Focus ===

impl Focus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Slow => "slow",
            Self::Cost => "cost",
            Self::Tokens => "tokens",
        }
    }

    /// What to explain for an anomaly on `signal`.
    pub fn for_signal(signal: AnomalySignal) -> Self {
        match signal {
            AnomalySignal::ErrorRatio => Self::Failed,
            AnomalySignal::Ttft | AnomalySignal::TimePerOutputToken | AnomalySignal::Duration => {
                Self::Slow
            }
            AnomalySignal::TokensPerRequest => Self::Tokens,
            AnomalySignal::CostPerMinute => Self::Cost,
        }
    }

    /// What to explain for a burn-rate alert on an SLO measuring `sli`; `None` for quality,
    /// which the counts do not see.
    pub fn for_sli(sli: &Sli) -> Option<Self> {
        match sli {
            Sli::Errors => Some(Self::Failed),
            Sli::TtftBelow(_) | Sli::DurationBelow(_) => Some(Self::Slow),
            Sli::JudgeScoreAtLeast(_) => None,
        }
    }

    fn is_amount(self) -> bool {
        matches!(self, Self::Cost | Self::Tokens)
    }

    fn bad(self, c: &Counts) -> f64 {
        match self {
            Self::Failed => c.failed as f64,
            Self::Slow => c.slow as f64,
            Self::Cost => c.cost_usd,
            Self::Tokens => c.tokens as f64,
        }
    }
}

/// Ranks what explains the bad events of `focus` in `view`, keeping the `top` best; `None`
/// when there is nothing bad (or no increase) to explain.
pub fn root_cause(view: &BreakdownView, focus: Focus, top: usize) -> Option<RootCauseHint> {
    let mut all: Vec<Contribution> = Vec::new();
    let mut bad_total: Option<f64> = None;
    for dim in &view.dimensions {
        if dim.dimension == Dimension::Error {
            continue;
        }
        let (bad, contributions) = if focus.is_amount() {
            amounts(dim, focus, view.recent_minutes, view.reference_minutes)
        } else {
            counts(dim, focus)
        };
        if bad > 0.0 {
            bad_total.get_or_insert(bad);
        }
        all.extend(contributions);
    }
    let bad = bad_total?;
    all.retain(|c| c.score >= MIN_SCORE);
    all.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| priority(a.dimension).cmp(&priority(b.dimension)))
            .then_with(|| a.value.cmp(&b.value))
    });
    // A value with exactly the events of a better one says nothing new.
    let mut kept: Vec<Contribution> = Vec::new();
    for c in all {
        if !kept.iter().any(|k| k.counts == c.counts) {
            kept.push(c);
        }
    }
    let mut all = kept;
    all.truncate(top);
    let error = (focus == Focus::Failed).then(|| top_error(view)).flatten();
    let text = render(focus, &all, error.as_ref());
    Some(RootCauseHint {
        focus,
        bad,
        top: all,
        error,
        text,
    })
}

fn priority(d: Dimension) -> usize {
    Dimension::PRIORITY
        .iter()
        .position(|p| *p == d)
        .unwrap_or(usize::MAX)
}

/// Coverage and purity of each value for a counting focus; returns the bad events too.
fn counts(dim: &DimensionCounts, focus: Focus) -> (f64, Vec<Contribution>) {
    let live: Vec<&ValueCounts> = dim.values.iter().filter(|v| v.recent.total > 0).collect();
    let bad: f64 = live.iter().map(|v| focus.bad(&v.recent)).sum();
    let total: f64 = live.iter().map(|v| v.recent.total as f64).sum();
    if bad <= 0.0 || live.len() < 2 {
        return (bad, Vec::new());
    }
    let mut out = Vec::new();
    for v in live.iter().filter(|v| !v.aggregate) {
        let (bad_v, tot_v) = (focus.bad(&v.recent), v.recent.total as f64);
        let (rest_bad, rest_tot) = (bad - bad_v, total - tot_v);
        if rest_tot <= 0.0 {
            continue;
        }
        let rate = bad_v / tot_v;
        let rest_rate = rest_bad / rest_tot;
        let coverage = ((bad_v - tot_v * rest_rate) / bad).max(0.0);
        let purity = if rest_rate < 1.0 {
            ((rate - rest_rate) / (1.0 - rest_rate)).max(0.0)
        } else {
            0.0
        };
        out.push(Contribution {
            counts: (v.recent, v.reference),
            dimension: dim.dimension,
            value: Arc::clone(&v.value),
            share: bad_v / bad,
            score: f1(coverage, purity),
            rate,
            rest_rate: Some(rest_rate),
        });
    }
    (bad, out)
}

/// Attribution of the increase per minute for an amount focus; returns the increase too.
fn amounts(
    dim: &DimensionCounts,
    focus: Focus,
    recent_minutes: f64,
    reference_minutes: f64,
) -> (f64, Vec<Contribution>) {
    let (rm, fm) = (recent_minutes.max(1e-9), reference_minutes.max(1e-9));
    let rates: Vec<(&ValueCounts, f64, f64)> = dim
        .values
        .iter()
        .map(|v| (v, focus.bad(&v.recent) / rm, focus.bad(&v.reference) / fm))
        .filter(|(_, a, r)| *a > 0.0 || *r > 0.0)
        .collect();
    let (sum_a, sum_r): (f64, f64) = rates
        .iter()
        .fold((0.0, 0.0), |(x, y), (_, a, r)| (x + a, y + r));
    let increase = sum_a - sum_r;
    if increase <= 0.0 || rates.len() < 2 {
        return (increase.max(0.0), Vec::new());
    }
    let mut out = Vec::new();
    for (v, a, r) in rates.iter().filter(|(v, _, _)| !v.aggregate) {
        let (rest_a, rest_r) = (sum_a - a, sum_r - r);
        // What `v` would spend now had it grown like the rest (not at all, when the rest had
        // nothing before).
        let rest_growth = if rest_r > 0.0 { rest_a / rest_r } else { 1.0 };
        let excess = (a - r * rest_growth).max(0.0);
        let coverage = (excess / increase).min(1.0);
        let purity = if *a > 0.0 { excess / a } else { 0.0 };
        out.push(Contribution {
            counts: (v.recent, v.reference),
            dimension: dim.dimension,
            value: Arc::clone(&v.value),
            share: coverage,
            score: f1(coverage, purity),
            rate: growth(*a, *r),
            rest_rate: Some(growth(rest_a, rest_r)),
        });
    }
    (increase, out)
}

fn growth(now: f64, before: f64) -> f64 {
    if before > 0.0 {
        now / before
    } else {
        f64::INFINITY
    }
}

fn f1(a: f64, b: f64) -> f64 {
    if a + b > 0.0 {
        2.0 * a * b / (a + b)
    } else {
        0.0
    }
}

/// The most common named cause among the recent failures.
fn top_error(view: &BreakdownView) -> Option<Contribution> {
    let dim = view
        .dimensions
        .iter()
        .find(|d| d.dimension == Dimension::Error)?;
    let failed: f64 = dim.values.iter().map(|v| v.recent.failed as f64).sum();
    if failed <= 0.0 {
        return None;
    }
    let best = dim
        .values
        .iter()
        .filter(|v| !v.aggregate && v.recent.failed > 0)
        .max_by(|a, b| {
            a.recent
                .failed
                .cmp(&b.recent.failed)
                .then_with(|| b.value.cmp(&a.value))
        })?;
    let share = best.recent.failed as f64 / failed;
    Some(Contribution {
        counts: (best.recent, best.reference),
        dimension: Dimension::Error,
        value: Arc::clone(&best.value),
        share,
        score: share,
        rate: share,
        rest_rate: None,
    })
}

fn pct(x: f64) -> String {
    let p = 100.0 * x;
    if p > 0.0 && p < 1.0 {
        format!("{p:.1} %")
    } else {
        format!("{p:.0} %")
    }
}

fn times(x: f64) -> String {
    if x.is_finite() {
        format!("×{x:.1}")
    } else {
        "new".to_owned()
    }
}

fn render(focus: Focus, top: &[Contribution], error: Option<&Contribution>) -> String {
    let what = match focus {
        Focus::Failed => "failed requests",
        Focus::Slow => "slow requests",
        Focus::Cost => "the cost increase",
        Focus::Tokens => "the token increase",
    };
    if top.is_empty() {
        let mut s = format!("no single value explains the {what}");
        if let Some(e) = error {
            let _ = write!(s, "; error {} ({} of failures)", e.value, pct(e.share));
        }
        return s;
    }
    let mut s = String::new();
    for (i, c) in top.iter().enumerate() {
        if i == 0 {
            let _ = write!(s, "{} of {what}: ", pct(c.share));
        } else {
            let _ = write!(s, "; also {} (", pct(c.share));
        }
        let rest = c.rest_rate.unwrap_or(0.0);
        let others = c.dimension.plural();
        let (dim, value) = (c.dimension.as_str(), &c.value);
        let detail = match focus {
            Focus::Failed | Focus::Slow => {
                let adj = if focus == Focus::Failed {
                    "failed"
                } else {
                    "slow"
                };
                format!("{} {adj}; other {others} {}", pct(c.rate), pct(rest))
            }
            Focus::Cost | Focus::Tokens => {
                format!("{}; other {others} {}", times(c.rate), times(rest))
            }
        };
        if i == 0 {
            let _ = write!(s, "{dim} {value} ({detail})");
            if let Some(e) = error {
                let _ = write!(s, ", error {} ({} of failures)", e.value, pct(e.share));
            }
        } else {
            let _ = write!(s, "{dim} {value}, {detail})");
        }
    }
    s
}

// === the hint an incident carries ===

impl From<&RootCauseHint> for sluice_policy::remediation::IncidentHint {
    fn from(h: &RootCauseHint) -> Self {
        let part = |c: &Contribution| sluice_policy::remediation::HintPart {
            dimension: Arc::from(c.dimension.as_str()),
            value: Arc::clone(&c.value),
            share: c.share,
        };
        Self {
            focus: Arc::from(h.focus.as_str()),
            text: h.text.clone(),
            top: h.top.iter().map(part).collect(),
            error: h.error.as_ref().map(part),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: &str, total: u64, failed: u64) -> ValueCounts {
        ValueCounts {
            value: Arc::from(value),
            aggregate: value == "other",
            recent: Counts {
                total,
                failed,
                ..Counts::default()
            },
            reference: Counts::default(),
        }
    }

    fn spend(value: &str, recent: f64, reference: f64) -> ValueCounts {
        ValueCounts {
            value: Arc::from(value),
            aggregate: false,
            recent: Counts {
                total: 100,
                cost_usd: recent,
                ..Counts::default()
            },
            reference: Counts {
                total: 100,
                cost_usd: reference,
                ..Counts::default()
            },
        }
    }

    fn dim(dimension: Dimension, values: Vec<ValueCounts>) -> DimensionCounts {
        DimensionCounts { dimension, values }
    }

    fn view(dimensions: Vec<DimensionCounts>) -> BreakdownView {
        BreakdownView {
            recent_minutes: 10.0,
            reference_minutes: 20.0,
            dimensions,
        }
    }

    fn names(h: &RootCauseHint) -> Vec<(Dimension, &str)> {
        h.top.iter().map(|c| (c.dimension, &*c.value)).collect()
    }

    #[test]
    fn a_failing_provider_beats_the_routes_it_serves() {
        // openai fails 90 % of its 300 requests spread over three routes; anthropic is fine.
        let view = view(vec![
            dim(
                Dimension::Provider,
                vec![v("openai", 300, 270), v("anthropic", 300, 1)],
            ),
            dim(
                Dimension::Route,
                vec![v("a", 200, 91), v("b", 200, 90), v("c", 200, 90)],
            ),
            dim(Dimension::Tenant, vec![v("x", 300, 136), v("y", 300, 135)]),
            dim(
                Dimension::Error,
                vec![v("529", 260, 260), v("upstream_timeout", 11, 11)],
            ),
        ]);
        let h = root_cause(&view, Focus::Failed, 3).expect("hint");
        assert_eq!(names(&h), [(Dimension::Provider, "openai")]);
        let top = &h.top[0];
        assert!((top.share - 270.0 / 271.0).abs() < 1e-9);
        assert!((top.rate - 0.9).abs() < 1e-9);
        assert!(top.score > 0.9, "{top:?}");
        let e = h.error.as_ref().expect("error cause");
        assert_eq!(&*e.value, "529");
        assert!((e.share - 260.0 / 271.0).abs() < 1e-9);
        assert_eq!(h.bad, 271.0);
        assert_eq!(
            h.text,
            "100 % of failed requests: provider openai (90 % failed; other providers 0.3 %), \
             error 529 (96 % of failures)"
        );
    }

    #[test]
    fn a_bursting_tenant_beats_its_route_and_the_providers() {
        // Tenant x sends half the traffic and 60 % of it fails (a burst over its quota), all on
        // route chat, spread evenly over both providers.
        let view = view(vec![
            dim(
                Dimension::Provider,
                vec![v("openai", 500, 150), v("anthropic", 500, 150)],
            ),
            dim(
                Dimension::Tenant,
                vec![v("x", 500, 300), v("y", 250, 0), v("z", 250, 0)],
            ),
            dim(
                Dimension::Route,
                vec![v("chat", 800, 300), v("embed", 200, 0)],
            ),
        ]);
        let h = root_cause(&view, Focus::Failed, 3).expect("hint");
        assert_eq!(h.top[0].dimension, Dimension::Tenant);
        assert_eq!(&*h.top[0].value, "x");
        assert!(
            h.top.iter().all(|c| c.dimension != Dimension::Provider),
            "providers fail alike: {:?}",
            h.top
        );
        let route = h.top.iter().find(|c| c.dimension == Dimension::Route);
        assert!(route.is_some_and(|r| r.score < h.top[0].score));
    }

    #[test]
    fn nothing_to_explain_and_single_values_explain_nothing() {
        let quiet = view(vec![dim(
            Dimension::Provider,
            vec![v("openai", 100, 0), v("anthropic", 100, 0)],
        )]);
        assert_eq!(root_cause(&quiet, Focus::Failed, 3), None);
        // One provider only: no contrast; the aggregate tail is never named.
        let single = view(vec![
            dim(Dimension::Provider, vec![v("openai", 100, 50)]),
            dim(Dimension::Tenant, vec![v("x", 50, 0), v("other", 50, 50)]),
        ]);
        let h = root_cause(&single, Focus::Failed, 3).expect("hint");
        assert!(h.top.is_empty(), "{:?}", h.top);
        assert_eq!(h.text, "no single value explains the failed requests");
    }

    #[test]
    fn a_spend_increase_is_attributed_to_what_grew() {
        // Per-minute spend: tenant a tripled (0.1 → 0.3 per minute); b steady at 0.1.
        let view = view(vec![
            dim(
                Dimension::Tenant,
                vec![spend("a", 3.0, 2.0), spend("b", 1.0, 2.0)],
            ),
            dim(
                Dimension::Provider,
                vec![spend("openai", 2.0, 2.0), spend("anthropic", 2.0, 2.0)],
            ),
        ]);
        let h = root_cause(&view, Focus::Cost, 3).expect("hint");
        assert_eq!(names(&h), [(Dimension::Tenant, "a")]);
        assert!((h.bad - 0.2).abs() < 1e-9, "0.4 − 0.2 per minute");
        assert!((h.top[0].rate - 3.0).abs() < 1e-9);
        assert_eq!(
            h.text,
            "100 % of the cost increase: tenant a (×3.0; other tenants ×1.0)"
        );
        // No increase, no hint.
        let flat = view_of_flat();
        assert_eq!(root_cause(&flat, Focus::Cost, 3), None);
    }

    fn view_of_flat() -> BreakdownView {
        view(vec![dim(
            Dimension::Tenant,
            vec![spend("a", 1.0, 2.0), spend("b", 1.0, 2.0)],
        )])
    }

    #[test]
    fn focuses_follow_signals_and_slis() {
        assert_eq!(Focus::for_signal(AnomalySignal::Ttft), Focus::Slow);
        assert_eq!(Focus::for_signal(AnomalySignal::ErrorRatio), Focus::Failed);
        assert_eq!(Focus::for_signal(AnomalySignal::CostPerMinute), Focus::Cost);
        assert_eq!(
            Focus::for_signal(AnomalySignal::TokensPerRequest),
            Focus::Tokens
        );
        assert_eq!(Focus::for_sli(&Sli::Errors), Some(Focus::Failed));
        assert_eq!(
            Focus::for_sli(&Sli::TtftBelow(std::time::Duration::from_secs(2))),
            Some(Focus::Slow)
        );
        assert_eq!(Focus::for_sli(&Sli::JudgeScoreAtLeast(0.7)), None);
    }
}
