//! Sluice's LLM-as-judge: a sample of live answers scored by a judge model off the request
//! path, feeding the quality SLO.
//!
//! Owns:
//! - [`settings`]: a route's `judge:` settings as validated values;
//! - [`sampler`]: the admit-time decision (deterministic ratio per trace id, always-sample
//!   rules for remediated and downgraded requests with a per-minute cap);
//! - [`capture`]: what is judged (the conversation from the request, the answer assembled
//!   from a body or a stream), bounded in bytes;
//! - [`rubric`]: the judge request (built-in and custom rubrics, the strict output contract,
//!   the marker the mock provider recognises, and the mock's verdict);
//! - [`verdict`]: the strict verdict parser;
//! - [`backend`]: the [`JudgeBackend`] seam that the gateway implements through its own
//!   routing;
//! - [`budget`]: the judge's own rpm and USD-per-day limits;
//! - [`pool`]: the workers, a background service fed by a bounded queue, reporting every
//!   outcome to a [`VerdictSink`];
//! - [`recent`]: the last verdicts for an admin view.
//!
//! Does not own: HTTP, pingora, metrics (outcomes are plain data with `as_str` label values
//! that the gateway records through `sluice-observability`), the SLO engine, or remediation.
//! It never imports the gateway.
//!
//! # Wiring, in request order
//!
//! 1. Policy compile: [`JudgeSettings::validate`], then one [`Sampler`] per route.
//! 2. Admit: [`Sampler::decide`] with [`key_from_trace_id`] and [`SampleFlags`]; if sampled,
//!    [`Conversation::from_request`] and an [`AnswerAssembler`].
//! 3. While answering: [`AnswerAssembler::push_chunk`] per streamed `data:` payload, or
//!    [`AnswerAssembler::push_body`] once.
//! 4. Record: `feed.offer(JudgeJob { … })` (never waits).
//! 5. Background: [`JudgePool`] as a `Service`; outcomes to the sinks ([`Fanout`],
//!    [`RecentVerdicts`], metrics, the quality SLI, evaluation events).

pub mod backend;
pub mod budget;
pub mod capture;
pub mod pool;
pub mod recent;
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
pub use recent::{ContentCapture, RecentEntry, RecentVerdicts};
pub use rubric::{MARKER, judge_request, judge_request_rubric, mock_verdict, scripted_verdict};
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
