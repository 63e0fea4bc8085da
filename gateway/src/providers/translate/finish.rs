//! Every finish-reason table, in one place: provider stop reasons → OpenAI's `finish_reason`,
//! and back (for rendering mock answers in a provider's dialect).
//!
//! OpenAI clients are typed against exactly `stop | length | tool_calls | content_filter`
//! (`function_call` is legacy and never produced here), so every table has a default arm and
//! nothing outside that set ever leaves Sluice. The provider's raw value is kept by the callers
//! for observability. Tables follow providers-and-deploy.md §5.2:
//!
//! | OpenAI | Anthropic | Gemini | Bedrock Converse |
//! |---|---|---|---|
//! | `stop` | `end_turn`, `stop_sequence`, `pause_turn`, unknown | `STOP` (no call seen), `OTHER`, `MALFORMED_FUNCTION_CALL`, …, unknown | `end_turn`, `stop_sequence`, `malformed_*`, unknown |
//! | `length` | `max_tokens`, `model_context_window_exceeded` | `MAX_TOKENS` | `max_tokens`, `model_context_window_exceeded` |
//! | `tool_calls` | `tool_use` | `STOP` after any `functionCall` | `tool_use` |
//! | `content_filter` | `refusal` | `SAFETY`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `RECITATION`, `IMAGE_*` safety family | `guardrail_intervened`, `content_filtered` |
//!
//! Gemini's `STOP` is stateful (the call and the `STOP` may arrive in different stream chunks),
//! so the caller passes whether a function call was seen.

/// OpenAI's `choices[].finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
        }
    }

    /// Parses OpenAI's own value (Azure answers in it); `function_call` counts as tool calls.
    pub fn from_openai(raw: &str) -> Option<Self> {
        Some(match raw {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            _ => return None,
        })
    }

    /// Anthropic `stop_reason`.
    pub fn from_anthropic(raw: &str) -> Self {
        match raw {
            "max_tokens" | "model_context_window_exceeded" => Self::Length,
            "tool_use" => Self::ToolCalls,
            "refusal" => Self::ContentFilter,
            // end_turn, stop_sequence, pause_turn and anything new.
            _ => Self::Stop,
        }
    }

    /// Gemini `finishReason`; `saw_tool_call` is whether this candidate produced a function call.
    pub fn from_gemini(raw: &str, saw_tool_call: bool) -> Self {
        match raw {
            "MAX_TOKENS" => Self::Length,
            "SAFETY"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "RECITATION"
            | "IMAGE_RECITATION" => Self::ContentFilter,
            // STOP, and the reasons that carry no OpenAI meaning (OTHER, LANGUAGE,
            // MALFORMED_FUNCTION_CALL, …): a call that did arrive is still a call.
            _ if saw_tool_call => Self::ToolCalls,
            _ => Self::Stop,
        }
    }

    /// Bedrock Converse `stopReason`.
    pub fn from_bedrock(raw: &str) -> Self {
        match raw {
            "max_tokens" | "model_context_window_exceeded" => Self::Length,
            "tool_use" => Self::ToolCalls,
            "guardrail_intervened" | "content_filtered" => Self::ContentFilter,
            _ => Self::Stop,
        }
    }

    /// The Anthropic `stop_reason` a provider would send for this outcome (mock rendering).
    pub fn to_anthropic(self) -> &'static str {
        match self {
            Self::Stop => "end_turn",
            Self::Length => "max_tokens",
            Self::ToolCalls => "tool_use",
            Self::ContentFilter => "refusal",
        }
    }

    /// The Gemini `finishReason` (a tool call ends with `STOP`, as Gemini does).
    pub fn to_gemini(self) -> &'static str {
        match self {
            Self::Stop | Self::ToolCalls => "STOP",
            Self::Length => "MAX_TOKENS",
            Self::ContentFilter => "SAFETY",
        }
    }

    /// The Bedrock `stopReason`.
    pub fn to_bedrock(self) -> &'static str {
        match self {
            Self::Stop => "end_turn",
            Self::Length => "max_tokens",
            Self::ToolCalls => "tool_use",
            Self::ContentFilter => "content_filtered",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FinishReason::{self, *};

    #[test]
    fn anthropic_table() {
        for (raw, want) in [
            ("end_turn", Stop),
            ("stop_sequence", Stop),
            ("pause_turn", Stop),
            ("max_tokens", Length),
            ("model_context_window_exceeded", Length),
            ("tool_use", ToolCalls),
            ("refusal", ContentFilter),
            ("something_new", Stop),
        ] {
            assert_eq!(FinishReason::from_anthropic(raw), want, "{raw}");
        }
    }

    #[test]
    fn gemini_table_is_stateful_for_tool_calls() {
        for (raw, saw, want) in [
            ("STOP", false, Stop),
            ("STOP", true, ToolCalls),
            ("MAX_TOKENS", true, Length),
            ("SAFETY", false, ContentFilter),
            ("BLOCKLIST", false, ContentFilter),
            ("PROHIBITED_CONTENT", false, ContentFilter),
            ("SPII", false, ContentFilter),
            ("IMAGE_SAFETY", false, ContentFilter),
            ("IMAGE_PROHIBITED_CONTENT", false, ContentFilter),
            ("RECITATION", false, ContentFilter),
            ("IMAGE_RECITATION", false, ContentFilter),
            ("MALFORMED_FUNCTION_CALL", false, Stop),
            ("OTHER", false, Stop),
            ("LANGUAGE", false, Stop),
            ("FINISH_REASON_UNSPECIFIED", false, Stop),
            ("BRAND_NEW", false, Stop),
        ] {
            assert_eq!(FinishReason::from_gemini(raw, saw), want, "{raw} {saw}");
        }
    }

    #[test]
    fn bedrock_table() {
        for (raw, want) in [
            ("end_turn", Stop),
            ("stop_sequence", Stop),
            ("max_tokens", Length),
            ("model_context_window_exceeded", Length),
            ("tool_use", ToolCalls),
            ("guardrail_intervened", ContentFilter),
            ("content_filtered", ContentFilter),
            ("malformed_model_output", Stop),
            ("malformed_tool_use", Stop),
        ] {
            assert_eq!(FinishReason::from_bedrock(raw), want, "{raw}");
        }
    }

    #[test]
    fn rendering_round_trips_through_each_table() {
        for r in [Stop, Length, ToolCalls, ContentFilter] {
            assert_eq!(FinishReason::from_anthropic(r.to_anthropic()), r);
            assert_eq!(FinishReason::from_bedrock(r.to_bedrock()), r);
            assert_eq!(FinishReason::from_gemini(r.to_gemini(), r == ToolCalls), r);
            assert_eq!(FinishReason::from_openai(r.as_str()), Some(r));
        }
        assert_eq!(FinishReason::from_openai("function_call"), Some(ToolCalls));
        assert_eq!(FinishReason::from_openai("recitation"), None);
    }
}
