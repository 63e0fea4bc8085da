//! SLO definitions, the samples the engine ingests, and how a sample counts for each SLI.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_policy::remediation::TargetKey;

use crate::Error;

/// What an SLO measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sli {
    /// Requests that did not fail: 5xx, timeouts and cut streams are bad; client errors and
    /// client cancels are not counted ([`ErrorClass::Excluded`]).
    Errors,
    /// Streams whose first token came within the bound (inclusive, like a histogram's `le`).
    TtftBelow(Duration),
    /// Requests that succeeded within the bound (inclusive).
    DurationBelow(Duration),
    /// Judged answers scoring at least this (fed by [`QualitySample`]s only).
    JudgeScoreAtLeast(f64),
}

/// One SLO of one route.
#[derive(Debug, Clone, PartialEq)]
pub struct SloSpec {
    /// Unique per route; a metric label value.
    pub name: Arc<str>,
    pub route: Arc<str>,
    pub sli: Sli,
    /// The target ratio of good events, strictly between 0 and 1 (`0.995`).
    pub objective: f64,
    /// The SLO window the error budget is counted over (unscaled; the engine scales it).
    pub window: Duration,
    /// Below this many events in a window its burn is unknown (`None`): no alert and no proof
    /// of health from a handful of requests.
    pub min_events: u64,
    /// Where the runbook for this SLO's alerts lives (Prometheus alert annotation).
    pub runbook_url: Option<Arc<str>>,
}

/// A factor applied to every window (the standard 5 m … 3 d, each SLO's own window) and to
/// the bucket widths, so drills and tests can run a month in minutes. 1 in production.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowScale(f64);

/// How a finished request counts for the `errors` SLI; decided by whoever knows the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Good,
    /// A 5xx, a timeout, a cut stream, an error Sluice itself caused.
    Bad,
    /// Not the service's doing (a client 4xx, a client cancel, a shed refusal): counted by no
    /// SLI at all.
    Excluded,
}

/// One finished request, as the SLO engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SloSample {
    pub route: Arc<str>,
    /// The target that answered (or last failed); `None` when no target was reached.
    pub target: Option<TargetKey>,
    pub class: ErrorClass,
    /// Time to the first token, for streams that got one.
    pub ttft: Option<Duration>,
    pub duration: Duration,
}

/// One judge verdict (or an app's own score) on an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySample {
    pub route: Arc<str>,
    pub target: Option<TargetKey>,
    pub score: f64,
}

// === impl WindowScale ===

impl WindowScale {
    /// No scaling.
    pub const ONE: WindowScale = WindowScale(1.0);

    /// The smallest scale: below it the finest bucket would be under a microsecond.
    pub const MIN: f64 = 1e-6;

    /// A scale factor; finite and at least [`Self::MIN`].
    pub fn new(factor: f64) -> Result<Self, Error> {
        if factor.is_finite() && factor >= Self::MIN {
            Ok(Self(factor))
        } else {
            Err(Error::SloScale { factor })
        }
    }

    pub fn factor(self) -> f64 {
        self.0
    }

    /// `d` scaled, at least one microsecond.
    pub fn apply(self, d: Duration) -> Duration {
        d.mul_f64(self.0).max(Duration::from_micros(1))
    }
}

impl Default for WindowScale {
    fn default() -> Self {
        Self::ONE
    }
}

// === impl Sli ===

impl Sli {
    /// Whether `sample` is good (`Some(true)`), bad (`Some(false)`) or not counted (`None`).
    ///
    /// - `errors`: the class as given.
    /// - `ttft_below`: a stream with a first token is judged on it alone (a stream cut after a
    ///   fast first token was fast; the `errors` SLI counts the cut). With no first token, a
    ///   failed request is bad (the client never got one) and a successful one is not counted
    ///   (not a stream: TTFT does not apply).
    /// - `duration_below`: a success is judged on its duration; a failure is bad however fast
    ///   it failed (the client did not get an answer in time).
    /// - `judge_score_at_least`: requests do not count; only [`QualitySample`]s do.
    ///
    /// Excluded samples count for no SLI.
    pub fn classify(&self, sample: &SloSample) -> Option<bool> {
        if sample.class == ErrorClass::Excluded {
            return None;
        }
        let ok = sample.class == ErrorClass::Good;
        match *self {
            Self::Errors => Some(ok),
            Self::TtftBelow(bound) => match sample.ttft {
                Some(ttft) => Some(ttft <= bound),
                None if ok => None,
                None => Some(false),
            },
            Self::DurationBelow(bound) => Some(ok && sample.duration <= bound),
            Self::JudgeScoreAtLeast(_) => None,
        }
    }

    /// Whether a judge score is good; `None` for a score that is not a number, and for every
    /// SLI other than `judge_score_at_least`.
    pub fn classify_score(&self, score: f64) -> Option<bool> {
        match *self {
            Self::JudgeScoreAtLeast(min) if !score.is_nan() => Some(score >= min),
            _ => None,
        }
    }

    /// The policy-file name of the SLI kind (`errors`, `ttft_below`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Errors => "errors",
            Self::TtftBelow(_) => "ttft_below",
            Self::DurationBelow(_) => "duration_below",
            Self::JudgeScoreAtLeast(_) => "judge_score_at_least",
        }
    }
}

/// `errors`, `ttft_below:2000ms`, `judge_score_at_least:0.7`: stable text that says what was
/// counted, so a snapshot's counts are only restored into an SLO that counts the same thing.
impl fmt::Display for Sli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Errors => f.write_str("errors"),
            Self::TtftBelow(d) | Self::DurationBelow(d) => {
                write!(f, "{}:{}us", self.kind(), d.as_micros())
            }
            Self::JudgeScoreAtLeast(min) => write!(f, "{}:{min}", self.kind()),
        }
    }
}

// === impl SloSpec ===

impl SloSpec {
    /// A spec with no minimum-events guard beyond one event and no runbook.
    pub fn new(
        name: impl Into<Arc<str>>,
        route: impl Into<Arc<str>>,
        sli: Sli,
        objective: f64,
        window: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            route: route.into(),
            sli,
            objective,
            window,
            min_events: 1,
            runbook_url: None,
        }
    }

    /// The spec of a route's SLO as the policy file states it.
    pub fn from_config(route: &str, c: &sluice_config::SloConfig) -> Self {
        use sluice_config::SliConfig;
        Self {
            name: Arc::from(c.name.as_str()),
            route: Arc::from(route),
            sli: match c.sli {
                SliConfig::Errors => Sli::Errors,
                SliConfig::TtftBelow(d) => Sli::TtftBelow(d),
                SliConfig::DurationBelow(d) => Sli::DurationBelow(d),
                SliConfig::JudgeScoreAtLeast(s) => Sli::JudgeScoreAtLeast(s),
            },
            objective: c.objective,
            window: c.window,
            min_events: c.min_events,
            runbook_url: c.runbook_url.as_deref().map(Arc::from),
        }
    }

    /// Every SLO of every route of a policy, in file order.
    pub fn all_of(config: &sluice_config::Config) -> Vec<Self> {
        config
            .routes
            .iter()
            .flat_map(|r| r.slos.iter().map(|s| Self::from_config(&r.name, s)))
            .collect()
    }

    /// The error budget as a ratio (`1 - objective`).
    pub fn budget(&self) -> f64 {
        1.0 - self.objective
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |why: &'static str| Error::SloSpec {
            slo: self.name.to_string(),
            route: self.route.to_string(),
            why,
        };
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(bad("the objective must be strictly between 0 and 1"));
        }
        if self.window.is_zero() {
            return Err(bad("the window must be longer than zero"));
        }
        Ok(())
    }
}
