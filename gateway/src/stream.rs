//! What Sluice learns from an OpenAI-style chunk stream while forwarding it.
//!
//! Each complete SSE event is probed once (a borrowed parse that skips everything but
//! `choices[].finish_reason`, `usage` and `error`) to decide whether to forward it, to collect
//! usage, and to tell a finished stream from a truncated one: a stream that ends without
//! `[DONE]` and without any `finish_reason` was cut.

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
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
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
    finish_reason: Option<&'a str>,
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
        match probe.choices {
            Some(choices) if choices.is_empty() && probe.usage.is_some() && !keep_usage_chunk => {
                return Verdict::Drop;
            }
            Some(choices) if choices.iter().any(|c| c.finish_reason.is_some()) => {
                self.saw_finish = true;
            }
            _ => {}
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
                st.usage,
                Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 1,
                    total_tokens: 4
                })
            );
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
