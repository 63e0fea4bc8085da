//! Sluice's LLM-as-judge: a sample of live answers scored by a judge model off the request
//! path, feeding the quality SLO. Owns the judge's settings and decisions; does not own HTTP,
//! pingora, metrics, the SLO engine or remediation, and never imports the gateway.

pub mod backend;
pub mod budget;
pub mod capture;
pub mod pool;
pub mod rubric;
pub mod sampler;
pub mod settings;
pub mod verdict;

pub use backend::{Failure, JudgeBackend, JudgeCall, JudgeReply, reply_content};
pub use budget::{Budget, BudgetLimit, Clock, SystemClock, day_index};
pub use capture::{Answer, AnswerAssembler, Conversation};
pub use pool::{
    DropReason, Fanout, JudgeJob, JudgeOutcome, JudgePool, JudgedContent, JudgedRequest,
    OutcomeDetail, PoolOptions, SampleOutcome, VerdictSink,
};
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
    /// A judge call failed. `message` is for logs: it must not hold a key or a prompt.
    #[error("judge call failed ({failure}): {message}")]
    Backend { failure: Failure, message: String },
}

impl Error {
    /// The failure kind to report when a backend returns this error.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Backend { failure, .. } => *failure,
            _ => Failure::BadResponse,
        }
    }
}
