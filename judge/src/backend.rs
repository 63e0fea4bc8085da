//! The seam between the judge and the model that judges.
//!
//! The gateway implements [`JudgeBackend`] by sending [`JudgeCall::body`] through its own
//! routing as a chat-completions request for [`JudgeCall::model`]: judge traffic is then
//! priced, traced, rate limited and failed over like any other, and it is marked as judge
//! traffic at admit ([`crate::SampleFlags::judge_traffic`]) so it is never judged itself. The
//! backend returns the assistant message's content ([`reply_content`] reads it from a
//! `chat.completion` body) and the call's cost from the catalog's prices.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::pool::JudgedRequest;

/// Sends judge requests to the judge model.
#[async_trait]
pub trait JudgeBackend: Send + Sync + 'static {
    /// Sends one judge request and returns the judge's reply. The pool also bounds the call by
    /// `call.timeout`; the backend should pass it on (as the upstream's total timeout) so an
    /// abandoned call does not keep an upstream connection busy.
    async fn judge(&self, call: JudgeCall) -> Result<JudgeReply, Error>;
}

/// One judge request.
#[derive(Debug, Clone)]
pub struct JudgeCall {
    /// The route whose answer is judged (for the judge call's own span and accounting).
    pub route: Arc<str>,
    /// The catalog model that judges; also the body's `model`.
    pub model: Arc<str>,
    /// An OpenAI chat-completions request body ([`crate::rubric::judge_request`]).
    pub body: Bytes,
    pub timeout: Duration,
    /// The request being judged, so the judge call's span can link to it.
    pub judged: JudgedRequest,
}

/// The judge model's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeReply {
    /// The assistant message's content: the verdict, if the judge kept to its contract.
    pub content: String,
    /// What the call cost, from the catalog's prices; `None` when it cannot be priced (it then
    /// counts as free against the judge's USD budget).
    pub cost_usd: Option<f64>,
}

/// Why a judge call produced no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// No route or target serves the judge model.
    Unroutable,
    /// The gateway's own limits refused the call.
    Limited,
    /// The provider answered with an error.
    Upstream,
    /// Connecting to or talking with the provider failed.
    Transport,
    /// The call ran past its timeout.
    Timeout,
    /// The provider's answer was not a chat completion.
    BadResponse,
    /// The backend panicked.
    Panicked,
}

// === impl Failure ===

impl Failure {
    /// A label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unroutable => "unroutable",
            Self::Limited => "limited",
            Self::Upstream => "upstream",
            Self::Transport => "transport",
            Self::Timeout => "timeout",
            Self::BadResponse => "bad_response",
            Self::Panicked => "panicked",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first choice's message content of a `chat.completion` body. A `null` or missing
/// content (a refusal, a tool call) is an empty string, which the verdict parser then
/// refuses as `empty`: the judge answered, but not with a verdict.
pub fn reply_content(body: &[u8]) -> Result<String, Error> {
    let bad = |message: &str| Error::Backend {
        failure: Failure::BadResponse,
        message: message.to_owned(),
    };
    let completion: Completion<'_> =
        serde_json::from_slice(body).map_err(|_| bad("the judge's answer is not JSON"))?;
    if completion.error.is_some() {
        return Err(bad("the judge's answer is an error object"));
    }
    let choice = completion
        .choices
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| bad("the judge's answer has no choices"))?;
    Ok(choice
        .message
        .and_then(|m| m.content)
        .map(Cow::into_owned)
        .unwrap_or_default())
}

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<ReplyMessage<'a>>,
}

#[derive(Deserialize)]
struct ReplyMessage<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_content_reads_the_first_choice() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"{\"score\":1}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}"#;
        assert_eq!(reply_content(body).expect("content"), r#"{"score":1}"#);
        let refused =
            br#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"no"}}]}"#;
        assert_eq!(reply_content(refused).expect("empty content"), "");
    }

    #[test]
    fn reply_content_refuses_what_is_not_a_completion() {
        for body in [
            &b"not json"[..],
            br#"{"error":{"message":"overloaded"}}"#,
            br#"{"choices":[]}"#,
            br#"{"object":"list"}"#,
        ] {
            match reply_content(body) {
                Err(Error::Backend { failure, .. }) => assert_eq!(failure, Failure::BadResponse),
                other => panic!("{other:?} for {}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn failures_are_snake_case_labels() {
        for f in [
            Failure::Unroutable,
            Failure::Limited,
            Failure::Upstream,
            Failure::Transport,
            Failure::Timeout,
            Failure::BadResponse,
            Failure::Panicked,
        ] {
            assert_eq!(
                serde_json::to_value(f).expect("serializes"),
                serde_json::Value::String(f.as_str().to_owned())
            );
        }
    }
}
