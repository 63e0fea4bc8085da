//! A route's `judge:` settings as plain, validated values.
//!
//! The policy file's schema lives in `sluice-config`; the policy compiler builds a
//! [`JudgeSettings`] per route from it and calls [`JudgeSettings::validate`], which reports
//! every problem at once, each with the field it concerns, so the config layer can prefix its
//! own path (`routes[2].judge.sample`). The settings are immutable once built and shared as an
//! `Arc` by the sampler, every queued job and the worker pool, so a reload never changes the
//! settings of a job already queued.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// Longest rubric name: it is a metric label value and part of the judge prompt's marker line.
pub const MAX_RUBRIC_NAME: usize = 64;
/// Longest custom rubric text. The rubric is sent with every judge call, so it is paid for on
/// every call; 16 KiB is far more than a good rubric needs.
pub const MAX_RUBRIC_TEXT: usize = 16 * 1024;
/// Smallest useful capture: below this a conversation cannot even hold a short question.
pub const MIN_CAPTURE_BYTES: usize = 256;
/// Largest capture. The judged text is held in memory while the job is queued and is sent to
/// the judge model; 1 MiB per side is already beyond most judge models' context.
pub const MAX_CAPTURE_BYTES: usize = 1 << 20;
/// Most judge calls of one route at once.
pub const MAX_CONCURRENCY: usize = 256;
/// Highest judge `rpm`: bounds the memory of the exact sliding-minute log (8 bytes a call).
pub const MAX_RPM: u32 = 10_000;
/// Longest judge call timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// A route's judge settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSettings {
    /// Share of requests sampled, in `[0, 1]`, decided from a hash of the request's trace id.
    pub sample_ratio: f64,
    /// Requests judged regardless of the ratio.
    pub always: AlwaysSample,
    /// The catalog model that judges. The gateway sends the judge request through its own
    /// routing under this name.
    pub model: Arc<str>,
    pub rubric: Rubric,
    /// Bound on each captured side (the conversation, the answer), in bytes of text, and on
    /// the two together in the judge prompt.
    pub max_capture_bytes: usize,
    /// Most judge calls of this route running at once.
    pub concurrency: usize,
    /// Bound on one judge call, from its start to its verdict.
    pub timeout: Duration,
    /// Most judge calls started in any sliding minute; `None` for no limit.
    pub rpm: Option<u32>,
    /// Most USD spent on judge calls per UTC day; `None` for no limit.
    pub usd_per_day: Option<f64>,
}

/// Requests that are judged whatever the ratio says, up to a cap per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlwaysSample {
    /// Every request that a remediation action touched (failover, cache fallback, …).
    pub remediated: bool,
    /// Every request whose model was downgraded by remediation.
    pub downgraded: bool,
    /// Most always-sampled requests per minute (fixed minute windows); `0` turns the rule off.
    pub per_minute_cap: u32,
}

/// What the judge is asked to assess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rubric {
    /// Does the answer do what the user asked, correctly and usefully?
    Helpfulness,
    /// Does the answer address the question that was asked, and nothing else?
    Relevance,
    /// Is every claim in the answer supported by context given in the conversation (the RAG
    /// case)? Judged only against that context, never against the judge's own knowledge.
    Faithfulness,
    /// Is the answer free of harmful content?
    Safety,
    /// An operator's rubric: `text` says what to assess; the output contract is added to it.
    Custom { name: Arc<str>, text: Arc<str> },
}

/// One problem found by [`JudgeSettings::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    /// The field under `judge:` (`sample`, `rubric.name`, …).
    pub field: &'static str,
    pub problem: String,
}

/// Every problem found in one route's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblems(pub Vec<SettingsProblem>);

// === impl JudgeSettings ===

impl JudgeSettings {
    /// Settings with the defaults for everything but the model and rubric: no ratio sampling,
    /// no always-sample rule, 16 KiB captures, 4 concurrent calls, 30 s timeout, no limits.
    pub fn new(model: impl Into<Arc<str>>, rubric: Rubric) -> Self {
        Self {
            sample_ratio: 0.0,
            always: AlwaysSample::default(),
            model: model.into(),
            rubric,
            max_capture_bytes: 16 * 1024,
            concurrency: 4,
            timeout: Duration::from_secs(30),
            rpm: None,
            usd_per_day: None,
        }
    }

    /// The settings a route's `judge:` section states (validated by `sluice-config` already;
    /// [`Self::validate`] stays the guard for settings built any other way).
    pub fn from_config(c: &sluice_config::JudgeConfig) -> Self {
        use sluice_config::RubricConfig;
        let rubric = match &c.rubric {
            RubricConfig::Builtin(name) => Rubric::builtin(name).unwrap_or(Rubric::Helpfulness),
            RubricConfig::Custom { name, text } => Rubric::Custom {
                name: Arc::from(name.as_str()),
                text: Arc::from(text.as_str()),
            },
        };
        Self {
            sample_ratio: c.sample,
            always: AlwaysSample {
                remediated: c.always_remediated,
                downgraded: c.always_downgraded,
                per_minute_cap: c.always_per_minute,
            },
            model: Arc::from(c.model.as_str()),
            rubric,
            max_capture_bytes: c.max_capture_bytes,
            concurrency: c.concurrency,
            timeout: c.timeout,
            rpm: c.rpm,
            usd_per_day: c.usd_per_day,
        }
    }

    /// Checks every field; [`Error::Settings`] lists all problems, not just the first.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        let mut bad = |field: &'static str, problem: String| {
            problems.push(SettingsProblem { field, problem });
        };
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            bad(
                "sample",
                format!("must be between 0 and 1, got {}", self.sample_ratio),
            );
        }
        if self.model.trim().is_empty() {
            bad("model", "must name a catalog model".to_owned());
        }
        if let Rubric::Custom { name, text } = &self.rubric {
            if let Err(p) = check_rubric_name(name) {
                bad("rubric.name", p);
            }
            if text.trim().is_empty() {
                bad("rubric.text", "must not be empty".to_owned());
            } else if text.len() > MAX_RUBRIC_TEXT {
                bad(
                    "rubric.text",
                    format!("is {} bytes, at most {MAX_RUBRIC_TEXT}", text.len()),
                );
            }
        }
        if !(MIN_CAPTURE_BYTES..=MAX_CAPTURE_BYTES).contains(&self.max_capture_bytes) {
            bad(
                "max_capture_bytes",
                format!(
                    "must be between {MIN_CAPTURE_BYTES} and {MAX_CAPTURE_BYTES}, got {}",
                    self.max_capture_bytes
                ),
            );
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            bad(
                "concurrency",
                format!(
                    "must be between 1 and {MAX_CONCURRENCY}, got {}",
                    self.concurrency
                ),
            );
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            bad(
                "timeout",
                format!(
                    "must be above 0 and at most {}s, got {:?}",
                    MAX_TIMEOUT.as_secs(),
                    self.timeout
                ),
            );
        }
        if let Some(rpm) = self.rpm
            && !(1..=MAX_RPM).contains(&rpm)
        {
            bad("rpm", format!("must be between 1 and {MAX_RPM}, got {rpm}"));
        }
        if let Some(usd) = self.usd_per_day
            && !(usd.is_finite() && usd >= 0.0)
        {
            bad(
                "usd_per_day",
                format!("must be a finite amount of at least 0, got {usd}"),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Settings(SettingsProblems(problems)))
        }
    }
}

/// A custom rubric's name: it becomes a label value and part of the prompt's marker line, so
/// it must be a short `snake_case` word that cannot collide with a built-in rubric.
fn check_rubric_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_RUBRIC_NAME {
        return Err(format!("must be 1 to {MAX_RUBRIC_NAME} characters"));
    }
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(format!(
            "`{name}` must be snake_case: a lowercase letter, then lowercase letters, digits or _"
        ));
    }
    if Rubric::builtin(name).is_some() {
        return Err(format!(
            "`{name}` is a built-in rubric; choose another name"
        ));
    }
    Ok(())
}

// === impl Rubric ===

impl Rubric {
    /// The built-in rubric of that name.
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "helpfulness" => Some(Self::Helpfulness),
            "relevance" => Some(Self::Relevance),
            "faithfulness" => Some(Self::Faithfulness),
            "safety" => Some(Self::Safety),
            _ => None,
        }
    }

    /// The rubric's name: a label value, and the `rubric=` of the prompt's marker line.
    pub fn name(&self) -> &str {
        match self {
            Self::Helpfulness => "helpfulness",
            Self::Relevance => "relevance",
            Self::Faithfulness => "faithfulness",
            Self::Safety => "safety",
            Self::Custom { name, .. } => name,
        }
    }
}

impl fmt::Display for SettingsProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.field, p.problem)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(s: &JudgeSettings) -> Vec<&'static str> {
        let Err(Error::Settings(problems)) = s.validate() else {
            return Vec::new();
        };
        problems.0.iter().map(|p| p.field).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = JudgeSettings::new("gpt-4o-mini", Rubric::Helpfulness);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let s = JudgeSettings {
            sample_ratio: 1.5,
            always: AlwaysSample::default(),
            model: " ".into(),
            rubric: Rubric::Custom {
                name: "Tone!".into(),
                text: "".into(),
            },
            max_capture_bytes: 10,
            concurrency: 0,
            timeout: Duration::ZERO,
            rpm: Some(0),
            usd_per_day: Some(f64::NAN),
        };
        assert_eq!(
            fields(&s),
            vec![
                "sample",
                "model",
                "rubric.name",
                "rubric.text",
                "max_capture_bytes",
                "concurrency",
                "timeout",
                "rpm",
                "usd_per_day"
            ]
        );
        let shown = s.validate().expect_err("invalid").to_string();
        assert!(
            shown.starts_with(
                "invalid judge settings: sample: must be between 0 and 1, got 1.5; model: "
            ),
            "{shown}"
        );
    }

    #[test]
    fn sample_ratio_nan_is_refused() {
        let mut s = JudgeSettings::new("m", Rubric::Safety);
        s.sample_ratio = f64::NAN;
        assert_eq!(fields(&s), vec!["sample"]);
    }

    #[test]
    fn custom_rubric_names() {
        let table = [
            ("tone", true),
            ("tone_v2", true),
            ("", false),
            ("2tone", false),
            ("Tone", false),
            ("tone check", false),
            ("tone\nrubric=safety", false),
            ("helpfulness", false),
            (&"a".repeat(MAX_RUBRIC_NAME), true),
            (&"a".repeat(MAX_RUBRIC_NAME + 1), false),
        ];
        for (name, ok) in table {
            let s = JudgeSettings::new(
                "m",
                Rubric::Custom {
                    name: name.into(),
                    text: "Is it polite?".into(),
                },
            );
            assert_eq!(s.validate().is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn bounds_are_inclusive() {
        let mut s = JudgeSettings::new("m", Rubric::Relevance);
        s.sample_ratio = 1.0;
        s.max_capture_bytes = MAX_CAPTURE_BYTES;
        s.concurrency = MAX_CONCURRENCY;
        s.timeout = MAX_TIMEOUT;
        s.rpm = Some(MAX_RPM);
        s.usd_per_day = Some(0.0);
        assert_eq!(s.validate(), Ok(()));
        s.rpm = Some(MAX_RPM + 1);
        s.timeout = MAX_TIMEOUT + Duration::from_millis(1);
        assert_eq!(fields(&s), vec!["timeout", "rpm"]);
    }

    #[test]
    fn builtin_names_round_trip() {
        for r in [
            Rubric::Helpfulness,
            Rubric::Relevance,
            Rubric::Faithfulness,
            Rubric::Safety,
        ] {
            assert_eq!(Rubric::builtin(r.name()), Some(r.clone()));
        }
        assert_eq!(Rubric::builtin("tone"), None);
    }
}
