//! Sluice's LLM-as-judge: a sample of live answers scored by a judge model off the request
//! path, feeding the quality SLO. Owns the judge's settings and decisions; does not own HTTP,
//! pingora, metrics, the SLO engine or remediation, and never imports the gateway.

pub mod budget;
pub mod capture;
pub mod rubric;
pub mod sampler;
pub mod settings;
pub mod verdict;

pub use budget::{Budget, BudgetLimit, Clock, SystemClock, day_index};
pub use capture::{Answer, AnswerAssembler, Conversation};
pub use rubric::{MARKER, judge_request, judge_request_rubric, mock_verdict};
pub use sampler::{SampleFlags, SampleReason, Sampler, key_from_trace_id};
pub use settings::{AlwaysSample, JudgeSettings, Rubric, SettingsProblem, SettingsProblems};
pub use verdict::{InvalidReason, Verdict};

/// Everything that can go wrong in the judge crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Every problem of one route's settings, each with its field.
    #[error("invalid judge settings: {0}")]
    Settings(SettingsProblems),
    #[error("the body is not JSON of the expected shape")]
    NotJson,
    #[error("the body is an error object")]
    ErrorObject,
    #[error("the request has neither messages nor a prompt")]
    NoConversation,
}
