//! What Sluice learns from an OpenAI-style chunk stream while forwarding it.
//!
//! Each complete SSE event is probed once (a borrowed parse that skips everything but
//! `choices[].finish_reason`, `usage` and `error`) to decide whether to forward it, to collect
//! usage, and to tell a finished stream from a truncated one: a stream that ends without
//! `[DONE]` and without any `finish_reason` was cut. The plain chunks that make up most of a
//! stream (its first, its content deltas, its finish) are read by [`scan`] without the parse,
//! and the usage chunk with a parse of its `usage` object alone.

#[cfg(test)]
mod proptests;
mod scan;

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
    /// The answer's tool calls (ids and names), bounded; boxed because most answers have
    /// none, and this rides in every answer.
    pub tool_calls: Option<Box<ToolCalls>>,
}

/// An answer's tool calls (see [`AnswerInfo::tool_calls`]).
#[derive(Debug, Default, Clone)]
pub struct ToolCalls(pub Vec<sluice_observability::ToolCall>);

impl AnswerInfo {
    /// The tool calls, moved out.
    pub fn take_tool_calls(&mut self) -> Vec<sluice_observability::ToolCall> {
        self.tool_calls.take().map(|b| b.0).unwrap_or_default()
    }
}

/// The first room an answer's text gets (it grows from there, up to [`MAX_ESTIMATE_TEXT`]).
const TEXT_START: usize = 512;

/// Text kept for token estimation is bounded; past it the estimate undercounts.
const MAX_ESTIMATE_TEXT: usize = 1 << 20;

impl AnswerInfo {
    pub(crate) fn note_ids(&mut self, id: Option<Cow<'_, str>>, model: Option<Cow<'_, str>>) {
        if self.id.is_none() {
            self.id = id.map(Cow::into_owned);
        }
        if self.model.is_none() {
            self.model = model.map(Cow::into_owned);
        }
    }

    pub(crate) fn note_finish(&mut self, reason: &str) {
        if !self.finish_reasons.iter().any(|r| r == reason) {
            self.finish_reasons.push(reason.to_owned());
        }
    }

    /// A tool call, or a stream's delta of one: a call with an `index` seen before gets the
    /// parts it still lacks; ids and names past 128 bytes are cut (at a character boundary).
    pub(crate) fn note_tool_call(
        &mut self,
        index: Option<usize>,
        id: Option<&str>,
        name: Option<&str>,
    ) {
        let cut = |s: &str| {
            let mut end = s.len().min(128);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        };
        let known = self.tool_calls.as_ref().map_or(0, |c| c.0.len());
        if index.is_none_or(|i| i >= known)
            && (known >= sluice_observability::MAX_TOOL_CALL_IDS
                || (id.is_none() && name.is_none()))
        {
            return;
        }
        let calls = &mut self.tool_calls.get_or_insert_with(Box::default).0;
        let slot = match index {
            Some(i) if i < known => &mut calls[i],
            _ => {
                calls.push(sluice_observability::ToolCall::default());
                let last = calls.len() - 1;
                &mut calls[last]
            }
        };
        if let Some(id) = id.filter(|_| slot.id.is_empty()) {
            slot.id = cut(id);
        }
        if let Some(name) = name.filter(|_| slot.name.is_empty()) {
            slot.name = cut(name);
        }
    }

    pub(crate) fn note_text(&mut self, text: &str) {
        if self.text.len() + text.len() <= MAX_ESTIMATE_TEXT {
            if self.text.capacity() == 0 {
                // Room for a short answer at once, instead of growing through 8, 16, 32, …
                self.text.reserve(TEXT_START.max(text.len()));
            }
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
            let (content, calls) = c
                .message
                .map_or((None, None), |m| (m.content, m.tool_calls));
            for call in calls.into_iter().flatten() {
                let name = call.function.as_ref().and_then(|f| f.name.as_deref());
                info.note_tool_call(None, call.id.as_deref(), name);
            }
            if (keep_text || probe.usage.is_none())
                && let Some(t) = content.or(c.text)
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
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallProbe<'a>>>,
}

/// A tool call, whole (an answer's message) or in parts (a stream's delta: `index` says
/// which call; the id and name come in its first part).
#[derive(Deserialize)]
struct ToolCallProbe<'a> {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<FunctionProbe<'a>>,
}

#[derive(Deserialize)]
struct FunctionProbe<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
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
    /// The events are the Responses API's own, passed through (see
    /// `face::responses::native`): the end is `response.completed`/`response.incomplete`
    /// (taken as `saw_done`), errors are `response.failed`/`error`.
    pub native: bool,
    /// The last `sequence_number` a passed-through stream carried.
    pub last_sequence: Option<u64>,
    /// How this stream's plain chunks look around their text (see [`scan::Template`]).
    template: scan::Template,
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
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallProbe<'a>>>,
}

/// Is this event's data an OpenAI error object (`{"error": …}`)?
pub fn is_error_event(ev: &SseEvent) -> bool {
    ev.event.as_deref() == Some(b"error".as_slice())
        || serde_json::from_slice::<ChunkProbe<'_>>(&ev.data).is_ok_and(|p| p.error.is_some())
}

impl StreamState {
    /// The state of a stream about to start; `native` for a passed-through Responses stream.
    pub fn new(native: bool) -> Self {
        Self {
            native,
            ..Self::default()
        }
    }

    /// Updates the state from one event. `keep_usage_chunk` is the client's own
    /// `stream_options.include_usage`.
    pub fn inspect(&mut self, ev: &SseEvent, keep_usage_chunk: bool) -> Verdict {
        self.inspect_with(ev, keep_usage_chunk, true)
    }

    /// [`Self::inspect`], with the scan of plain deltas on or off (off: every event is parsed,
    /// the reading the scan must agree with).
    fn inspect_with(&mut self, ev: &SseEvent, keep_usage_chunk: bool, scan: bool) -> Verdict {
        if !ev.has_data {
            return Verdict::Forward;
        }
        if self.native {
            return self.inspect_native(ev);
        }
        if ev.is_done() {
            self.saw_done = true;
            return Verdict::Forward;
        }
        self.data_events += 1;
        if ev.event.as_deref() == Some(b"error".as_slice()) {
            return Verdict::Error;
        }
        if scan && let Some(s) = self.scan(&ev.data) {
            // Before the text: once the provider reported usage, the text is not kept.
            if s.usage.is_some() {
                self.usage = s.usage;
            }
            if self.data_events == 1 {
                self.answer
                    .note_ids(s.id.map(Cow::Borrowed), s.model.map(Cow::Borrowed));
            }
            if s.no_choices && s.usage.is_some() && !keep_usage_chunk {
                return Verdict::Drop;
            }
            if let Some(reason) = s.finish {
                self.saw_finish = true;
                self.answer.note_finish(reason);
            }
            if let scan::Plain::Text(t) = s.plain {
                self.content_chunks += 1;
                if self.usage.is_none() {
                    self.answer.note_text(&t);
                }
            }
            return Verdict::Forward;
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
            let (content, calls) = c.delta.map_or((None, None), |d| (d.content, d.tool_calls));
            for call in calls.into_iter().flatten() {
                let name = call.function.as_ref().and_then(|f| f.name.as_deref());
                self.answer
                    .note_tool_call(call.index, call.id.as_deref(), name);
            }
            if let Some(t) = content.or(c.text)
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

    /// A plain chunk read by this stream's template, or by the scan; a delta the template did
    /// not fit (the first, which carries the role, or a provider that changed its frame)
    /// teaches it anew. `None`: parse it.
    fn scan<'a>(&mut self, data: &'a [u8]) -> Option<scan::Scanned<'a>> {
        if let Some(plain) = self.template.read(data) {
            return Some(scan::Scanned::text(plain));
        }
        let s = scan::chunk(data)?;
        if s.finish.is_none()
            && let Some(literal) = s.literal.clone()
        {
            self.template.learn(data, literal);
        }
        Some(s)
    }

    /// One passed-through Responses event.
    fn inspect_native(&mut self, ev: &SseEvent) -> Verdict {
        use crate::face::responses::native::{self, Kind};
        self.data_events += 1;
        if ev.event.as_deref() == Some(b"error".as_slice()) {
            return Verdict::Error;
        }
        let facts = native::event(&ev.data);
        if facts.sequence_number.is_some() {
            self.last_sequence = facts.sequence_number;
        }
        self.answer.note_ids(facts.id, facts.model);
        if let Some(call) = &facts.call {
            self.answer
                .note_tool_call(None, call.id.as_deref(), call.name.as_deref());
        }
        match facts.kind {
            Kind::Error => return Verdict::Error,
            Kind::Content => {
                self.content_chunks += 1;
                if let Some(t) = facts.text.as_deref()
                    && self.usage.is_none()
                {
                    self.answer.note_text(t);
                }
            }
            Kind::End => {
                self.saw_finish = true;
                self.saw_done = true;
                if let Some(r) = facts.finish {
                    self.answer.note_finish(r);
                }
                if facts.usage.is_some() {
                    self.usage = facts.usage;
                }
            }
            Kind::Other | Kind::Unknown => {}
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

    fn calls(info: &AnswerInfo) -> Vec<(&str, &str)> {
        info.tool_calls
            .iter()
            .flat_map(|c| c.0.iter())
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect()
    }

    #[test]
    fn tool_calls_are_noted_whole_and_from_stream_deltas() {
        let body = br#"{"id":"c","choices":[{"finish_reason":"tool_calls","message":{"content":null,"tool_calls":[
            {"id":"call_a","type":"function","function":{"name":"search","arguments":"{}"}},
            {"id":"call_b","type":"function","function":{"name":"fetch","arguments":"{}"}}]}}]}"#;
        let (info, _) = AnswerInfo::from_body(body, false).expect("answer");
        assert_eq!(calls(&info), [("call_a", "search"), ("call_b", "fetch")]);

        // A stream names each call in its first delta (by index), then sends argument parts.
        let evs = events(concat!(
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_x\",\"function\":{\"name\":\"search\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_y\",\"function\":{\"name\":\"fetch\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n"
        ));
        let mut st = StreamState::default();
        for e in &evs {
            st.inspect(e, false);
        }
        assert_eq!(
            calls(&st.answer),
            [("call_x", "search"), ("call_y", "fetch")]
        );

        // Bounded, and long ids cut.
        let mut info = AnswerInfo::default();
        for i in 0..100 {
            info.note_tool_call(None, Some(&format!("call_{i}")), Some("f"));
        }
        assert_eq!(calls(&info).len(), sluice_observability::MAX_TOOL_CALL_IDS);
        let mut info = AnswerInfo::default();
        info.note_tool_call(None, Some(&"é".repeat(100)), None);
        assert!(calls(&info)[0].0.len() <= 128);
    }

    /// Providers open with a chunk that carries the role: the frame learned from it does not
    /// fit the deltas after it, so the first of those teaches the one the rest are read by.
    #[test]
    fn the_template_is_learned_again_from_the_first_delta_it_does_not_fit() {
        let frame = |delta: &str| {
            format!(
                "data: {{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":null}}],\"usage\":null}}\n\n"
            )
        };
        let mut text = frame(r#"{"role":"assistant","content":""}"#);
        for w in ["a", "b", "c"] {
            text.push_str(&frame(&format!(r#"{{"content":"{w}"}}"#)));
        }
        let evs = events(&text);
        let mut st = StreamState::new(false);
        let template_of = |ev: &SseEvent| {
            let s = scan::chunk(&ev.data).expect("plain");
            scan::Template::of(&ev.data, s.literal.expect("a string"))
        };
        st.inspect(&evs[0], false);
        assert_eq!(st.template, template_of(&evs[0]));
        for ev in &evs[1..] {
            st.inspect(ev, false);
        }
        assert_eq!(
            st.template,
            template_of(&evs[1]),
            "learned from the first delta after the role"
        );
        assert_eq!((st.content_chunks, st.answer.text.as_str()), (3, "abc"));
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
    fn passed_through_responses_events_are_read_for_the_record() {
        let stream = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-x\",\"status\":\"in_progress\",\"output\":[]}}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,\"item\":{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"f\"}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"delta\":\"hi \"}\n\n",
            "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":3,\"delta\":\"{}\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":4,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"f\"}],\"usage\":{\"input_tokens\":3,\"output_tokens\":2,\"total_tokens\":5}}}\n\n",
        );
        let evs = events(stream);
        let mut st = StreamState::new(true);
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(st.inspect(e, false), Verdict::Forward, "{i}");
            assert_eq!(st.saw_done, i == 4, "{i}: the end is response.completed");
        }
        assert_eq!(st.last_sequence, Some(4));
        assert_eq!(st.content_chunks, 2);
        assert_eq!(st.answer.text, "hi ");
        assert_eq!(st.answer.id.as_deref(), Some("resp_1"));
        assert_eq!(st.answer.model.as_deref(), Some("gpt-x"));
        assert_eq!(st.answer.finish_reasons, ["tool_calls"]);
        assert_eq!(calls(&st.answer), [("call_1", "f")]);
        assert_eq!(st.usage.map(|u| u.total_tokens), Some(5));
        assert!(!st.truncated());

        // Cut before the end: truncated; the provider's failure or error event: an error.
        let mut st = StreamState::new(true);
        for e in &evs[..3] {
            st.inspect(e, false);
        }
        assert!(st.truncated());
        for failed in [
            "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":3,\"response\":{\"status\":\"failed\"}}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"sequence_number\":3,\"code\":\"server_error\"}\n\n",
        ] {
            assert_eq!(st.inspect(&events(failed)[0], false), Verdict::Error);
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
