//! What Sluice learns from an OpenAI-style chunk stream while forwarding it.
//!
//! Each complete SSE event is probed once (a borrowed parse that skips everything but
//! `choices[].finish_reason`, `usage` and `error`) to decide whether to forward it, to collect
//! usage, and to tell a finished stream from a truncated one: a stream that ends without
//! `[DONE]` and without any `finish_reason` was cut.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::sse::SseEvent;

/// Token usage as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    /// Written to the provider's prompt cache. OpenAI itself does not report it; the translated
    /// kinds put Anthropic's and Bedrock's cache writes here, as some OpenAI-compatible servers do.
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }

    pub fn cache_write_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cache_write_tokens)
            .unwrap_or(0)
    }

    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

/// What the answer said about itself: id, model, finish reasons, and (only kept while no
/// usage has arrived, for estimating it) the text delivered.
#[derive(Debug, Default)]
pub struct AnswerInfo {
    pub id: Option<String>,
    pub model: Option<String>,
    pub finish_reasons: Vec<String>,
    pub text: String,
}

/// Text kept for token estimation is bounded; past it the estimate undercounts.
const MAX_ESTIMATE_TEXT: usize = 1 << 20;

impl AnswerInfo {
    fn note_ids(&mut self, id: Option<Cow<'_, str>>, model: Option<Cow<'_, str>>) {
        if self.id.is_none() {
            self.id = id.map(Cow::into_owned);
        }
        if self.model.is_none() {
            self.model = model.map(Cow::into_owned);
        }
    }

    fn note_finish(&mut self, reason: &str) {
        if !self.finish_reasons.iter().any(|r| r == reason) {
            self.finish_reasons.push(reason.to_owned());
        }
    }

    fn note_text(&mut self, text: &str) {
        if self.text.len() + text.len() <= MAX_ESTIMATE_TEXT {
            self.text.push_str(text);
        }
    }

    /// Reads a whole (non-streaming) answer: one parse gives the check and the facts. The
    /// answer's text is copied only when it is needed: `keep_text` (content capture) or no
    /// usage to record.
    pub fn from_body(body: &[u8], keep_text: bool) -> Result<(Self, Option<Usage>), AnswerProblem> {
        let mut info = Self::default();
        let probe =
            serde_json::from_slice::<AnswerProbe<'_>>(body).map_err(|_| AnswerProblem::NotJson)?;
        if probe.error.is_some() {
            return Err(AnswerProblem::ErrorObject);
        }
        info.note_ids(probe.id, probe.model);
        for c in probe.choices.unwrap_or_default() {
            if let Some(r) = c.finish_reason.as_deref() {
                info.note_finish(r);
            }
            if (keep_text || probe.usage.is_none())
                && let Some(t) = c.message.and_then(|m| m.content).or(c.text)
            {
                info.note_text(&t);
            }
        }
        Ok((info, probe.usage))
    }
}

/// Why a 2xx non-streaming answer cannot be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerProblem {
    NotJson,
    /// A JSON object with a top-level `error`.
    ErrorObject,
}

#[derive(Deserialize)]
struct AnswerProbe<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<AnswerChoice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct AnswerChoice<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<MessageProbe<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageProbe<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    /// The usage-only chunk Sluice asked for on the client's behalf: recorded, not forwarded.
    Drop,
    /// An error event from the provider after the stream started.
    Error,
}

#[derive(Debug, Default)]
pub struct StreamState {
    pub saw_done: bool,
    pub saw_finish: bool,
    pub usage: Option<Usage>,
    pub data_events: u32,
    /// Events that carried content (a delta or text).
    pub content_chunks: u32,
    pub answer: AnswerInfo,
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceProbe<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceProbe<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
    /// Legacy completions stream `text` instead of a delta.
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// Is this event's data an OpenAI error object (`{"error": …}`)?
pub fn is_error_event(ev: &SseEvent) -> bool {
    ev.event.as_deref() == Some(b"error".as_slice())
        || serde_json::from_slice::<ChunkProbe<'_>>(&ev.data).is_ok_and(|p| p.error.is_some())
}

impl StreamState {
    /// Updates the state from one event. `keep_usage_chunk` is the client's own
    /// `stream_options.include_usage`.
    pub fn inspect(&mut self, ev: &SseEvent, keep_usage_chunk: bool) -> Verdict {
        if !ev.has_data {
            return Verdict::Forward;
        }
        if ev.is_done() {
            self.saw_done = true;
            return Verdict::Forward;
        }
        self.data_events += 1;
        if ev.event.as_deref() == Some(b"error".as_slice()) {
            return Verdict::Error;
        }
        let Ok(probe) = serde_json::from_slice::<ChunkProbe<'_>>(&ev.data) else {
            // Not JSON: forward as is; the client's parser will say what it thinks.
            return Verdict::Forward;
        };
        if probe.error.is_some() {
            return Verdict::Error;
        }
        if let Some(usage) = probe.usage {
            self.usage = Some(usage);
        }
        if self.data_events == 1 {
            self.answer.note_ids(probe.id, probe.model);
        }
        let Some(choices) = probe.choices else {
            return Verdict::Forward;
        };
        if choices.is_empty() && probe.usage.is_some() && !keep_usage_chunk {
            return Verdict::Drop;
        }
        let mut has_content = false;
        for c in choices {
            if let Some(r) = c.finish_reason.as_deref() {
                self.saw_finish = true;
                self.answer.note_finish(r);
            }
            if let Some(t) = c.delta.and_then(|d| d.content).or(c.text)
                && !t.is_empty()
            {
                has_content = true;
                // Only needed to estimate usage; once the provider reported usage, stop.
                if self.usage.is_none() {
                    self.answer.note_text(&t);
                }
            }
        }
        if has_content {
            self.content_chunks += 1;
        }
        Verdict::Forward
    }

    /// A stream that ended with neither `[DONE]` nor a finish reason was cut short.
    pub fn truncated(&self) -> bool {
        !self.saw_done && !self.saw_finish
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    fn events(s: &str) -> Vec<SseEvent> {
        let mut d = SseDecoder::new(1 << 20);
        d.push(s.as_bytes());
        let mut out = Vec::new();
        while let Some(e) = d.next_event().expect("decodes") {
            out.push(e);
        }
        out
    }

    #[test]
    fn usage_chunk_dropped_only_when_the_client_did_not_ask() {
        let evs = events(concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}],\"usage\":null}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
            "data: [DONE]\n\n"
        ));
        for keep in [false, true] {
            let mut st = StreamState::default();
            let verdicts: Vec<Verdict> = evs.iter().map(|e| st.inspect(e, keep)).collect();
            let usage_verdict = if keep {
                Verdict::Forward
            } else {
                Verdict::Drop
            };
            assert_eq!(
                verdicts,
                [
                    Verdict::Forward,
                    Verdict::Forward,
                    usage_verdict,
                    Verdict::Forward
                ]
            );
            assert_eq!(
                st.usage
                    .map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens)),
                Some((3, 1, 4))
            );
            assert_eq!(st.answer.finish_reasons, ["stop"]);
            assert_eq!(st.content_chunks, 1);
            assert_eq!(st.answer.text, "hi", "text kept until usage arrived");
            assert!(!st.truncated());
        }
    }

    #[test]
    fn truncation_and_error_events() {
        let mut st = StreamState::default();
        for e in events("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n") {
            st.inspect(&e, false);
        }
        assert!(st.truncated());
        let e = &events("data: {\"error\":{\"message\":\"overloaded\"}}\n\n")[0];
        assert!(is_error_event(e));
        assert_eq!(StreamState::default().inspect(e, false), Verdict::Error);
        let e = &events("event: error\ndata: {\"type\":\"overloaded_error\"}\n\n")[0];
        assert!(is_error_event(e));
    }
}
