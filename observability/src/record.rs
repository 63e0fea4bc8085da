//! What one request did, as the gateway saw it; handed over once, at the end of the request.
//! Metrics, spans, the access log and (later) the SLO engine all read the same record, so they
//! can never disagree about a request.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// The API surface a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
    /// `POST /v1/feedback`: an app's score of an answer.
    Feedback,
    Other,
    /// `POST /v1/responses`: OpenAI's Responses API, served through the chat exchange.
    Responses,
    /// `POST /v1/messages`: Anthropic's Messages API, served through the chat exchange.
    Messages,
    /// `POST /v1/messages/count_tokens`: counted locally, no provider call.
    MessagesCountTokens,
}

/// How a request ended. A closed set, so it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered in full.
    Ok,
    /// The client's request was wrong (400, 401, 404, 405, 413, or a provider's own 4xx).
    ClientError,
    /// Every attempt failed at the providers (429, 5xx, garbage) before any byte was sent.
    UpstreamError,
    /// A timeout (time to first byte, idle or total) ended the request.
    Timeout,
    /// The stream broke after it started: the client got an SSE error event.
    Truncated,
    /// The client went away before the answer was complete.
    Cancelled,
    /// Sluice itself could not serve it (no key for the provider, internal error).
    GatewayError,
}

/// Why a request failed, as a bounded label (`error.type` on spans, `error_type` on metrics
/// and the access log). The gateway maps each of its errors to one of these; nothing else can
/// become the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    MissingApiKey,
    InvalidApiKey,
    InvalidRequest,
    RequestTooLarge,
    ModelNotFound,
    /// `POST /v1/feedback` named an answer Sluice does not know (for this tenant).
    ResponseNotFound,
    UnknownUrl,
    MethodNotAllowed,
    /// A provider's 429, or the key's own limit.
    RateLimitExceeded,
    UpstreamError,
    ProviderUnavailable,
    UpstreamTimeout,
    StreamInterrupted,
    InternalError,
    /// A provider's own 4xx, passed through.
    ProviderClientError,
    /// A provider's error event after the stream started, passed through.
    ProviderStreamError,
    /// The client did not send its body in time.
    RequestTimeout,
    /// The gateway was shutting down.
    Draining,
    /// Refused by the `shed` remediation (a lower-priority key while the route is overloaded).
    LoadShed,
    ExpiredApiKey,
    /// The tenant's USD budget is spent.
    InsufficientQuota,
    /// Limits are shared through Redis, it is unreachable, and the fail mode is `closed`.
    StateUnavailable,
}

/// How one upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Ok,
    ConnectError,
    Timeout,
    RateLimited,
    ServerError,
    /// The provider refused the request itself (passed through to the client).
    ClientError,
    /// The answer started but did not finish (cut, stalled, error event).
    Interrupted,
    /// The client left while this attempt was running.
    Cancelled,
}

/// Where token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageSource {
    /// The provider reported usage.
    Provider,
    /// The provider did not; Sluice counted with a tokenizer.
    Estimated,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's prompt cache (part of `input`).
    pub cached_input: u64,
    /// Input tokens written to the provider's prompt cache (part of `input`).
    pub cache_write_input: u64,
    /// Output tokens spent on reasoning (part of `output`).
    pub reasoning: u64,
    pub source: UsageSource,
}

/// Request parameters worth recording (GenAI `gen_ai.request.*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestParams {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    /// Tool (function) names the request offered.
    pub tool_names: Vec<String>,
    /// `gen_ai.conversation.id`: the caller's conversation (agent session, chat thread),
    /// from the `x-conversation-id` header or the body's `metadata.conversation_id`.
    pub conversation_id: Option<String>,
    /// The `tool_call_id`s of the tool results the request carries (an agent's step
    /// answering earlier tool calls); at most [`MAX_TOOL_CALL_IDS`].
    pub tool_call_ids: Vec<String>,
}

/// Tool call ids kept per request, so a long agent transcript costs a bounded span.
pub const MAX_TOOL_CALL_IDS: usize = 32;

/// The W3C trace context of a request: from an incoming `traceparent`, or new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span, when a `traceparent` came in.
    pub parent_span_id: Option<[u8; 8]>,
    /// The id of Sluice's server span for this request.
    pub span_id: [u8; 8],
    /// The caller's sampled flag.
    pub sampled: bool,
}

/// One upstream attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The configured provider name (a closed set).
    pub provider: Arc<str>,
    /// The provider kind, e.g. `openai` (the value of `gen_ai.provider.name`).
    pub provider_kind: &'static str,
    /// The catalog model tried.
    pub model: Arc<str>,
    /// The name sent upstream.
    pub upstream_model: Arc<str>,
    pub server_address: Option<String>,
    pub server_port: Option<u16>,
    pub span_id: [u8; 8],
    pub start: SystemTime,
    pub duration: Duration,
    pub outcome: AttemptOutcome,
    /// The provider's HTTP status, when one arrived.
    pub status: Option<u16>,
}

/// How a request was routed: the targets in the order they were to be tried, the ones left
/// out and why, and whether the route was in panic mode or out of retry budget. Names are
/// the policy's own (catalog models), never client input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteDecision {
    /// The route's balancing strategy.
    pub strategy: &'static str,
    /// Catalog models in plan order (the first is the pick).
    pub candidates: Vec<Arc<str>>,
    /// Catalog models left out or moved back: the reason, and for how long more (seconds).
    pub skipped: Vec<(Arc<str>, &'static str, Option<f64>)>,
    /// Nothing was healthy: the least-bad target served.
    pub panic: bool,
    /// A retry was wanted but the route's retry budget had none left.
    pub retry_budget_exhausted: bool,
}

impl RouteDecision {
    /// One line: `p2c pick=a order=a,b skipped=c:ejected(4.2s) panic`; attempts' outcomes
    /// are appended from the record by [`RequestRecord::decision_line`].
    pub fn summary(&self) -> String {
        let mut out = String::with_capacity(64);
        self.write_summary(&mut out);
        out
    }

    /// [`Self::summary`], appended to `out` (the access log writes it escaped, in place).
    pub fn write_summary<W: fmt::Write>(&self, out: &mut W) {
        // Writing to a `String` or an in-memory escaper cannot fail.
        let _ = self.try_write_summary(out);
    }

    fn try_write_summary<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        out.write_str(self.strategy)?;
        if let Some(first) = self.candidates.first() {
            out.write_str(" pick=")?;
            out.write_str(first)?;
        }
        if self.candidates.len() > 1 {
            out.write_str(" order=")?;
            for (i, c) in self.candidates.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                out.write_str(c)?;
            }
        }
        if !self.skipped.is_empty() {
            out.write_str(" skipped=")?;
            for (i, (m, why, left)) in self.skipped.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                match left {
                    Some(s) => write!(out, "{m}:{why}({s:.1}s)")?,
                    None => write!(out, "{m}:{why}")?,
                }
            }
        }
        if self.panic {
            out.write_str(" panic")?;
        }
        if self.retry_budget_exhausted {
            out.write_str(" retry_budget_exhausted")?;
        }
        Ok(())
    }
}

/// Captured prompt and answer, only when `capture_content` is on. Raw: the span sink redacts
/// and truncates them before they leave the process, and nothing else reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedContent {
    /// JSON: the request's `messages` (or `prompt`, `input`).
    pub input: String,
    /// JSON: the answer's messages.
    pub output: String,
}

/// The end-of-request summary. `route`, `model` and `tenant` are the policy's own names, so
/// label values stay a closed set; `request_model` is whatever the client sent and is never a
/// label.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request_id: String,
    pub trace: TraceContext,
    pub start: SystemTime,
    pub duration: Duration,
    pub endpoint: Endpoint,
    pub route: Option<Arc<str>>,
    /// The catalog model that answered (or was tried last).
    pub model: Option<Arc<str>>,
    pub request_model: Option<String>,
    /// `request_model` when the policy knows that name (a closed set, safe as a label).
    pub request_model_label: Option<Arc<str>>,
    pub tenant: Option<Arc<str>>,
    pub stream: bool,
    pub status: u16,
    pub outcome: Outcome,
    /// Why it failed, when it did (`error.type`).
    pub error_type: Option<ErrorKind>,
    pub attempts: Vec<AttemptRecord>,
    pub usage: Option<TokenUsage>,
    pub cost_usd: Option<f64>,
    /// Time from the request's start to the first content chunk sent (streams).
    pub time_to_first_chunk: Option<Duration>,
    /// Content chunks sent (streams).
    pub chunks: u32,
    pub response_id: Option<String>,
    pub response_model: Option<String>,
    pub finish_reasons: Vec<String>,
    pub params: RequestParams,
    /// The key limit (`requests` | `tokens`) that refused the request.
    pub rate_limited: Option<&'static str>,
    /// What the route's response cache did: `hit` | `miss` | `bypass`; `None` without a cache.
    pub cache: Option<&'static str>,
    pub content: Option<CapturedContent>,
    /// How the request was routed, when it got that far.
    pub decision: Option<RouteDecision>,
    /// Remediation actions that changed how it was served: (action, rule). Both are policy
    /// names (a closed set).
    pub remediation: Vec<(&'static str, Arc<str>)>,
    /// The tool calls the answer made (an agent's next step), at most
    /// [`MAX_TOOL_CALL_IDS`]: each a `gen_ai.tool.call` event on the server span.
    pub tool_calls: Vec<ToolCall>,
}

/// One tool call of an answer: its id (`call_…`) and the function's name, each cut to 128
/// bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
}

// === impl RequestRecord ===

impl RequestRecord {
    /// Time spent waiting on providers; the rest of `duration` is Sluice's own overhead.
    pub fn upstream_time(&self) -> Duration {
        self.attempts.iter().map(|a| a.duration).sum()
    }

    pub fn overhead(&self) -> Duration {
        self.duration.saturating_sub(self.upstream_time())
    }

    /// The routing decision and each attempt's outcome, as one line for the access log and
    /// the span: `weighted pick=a order=a,b attempts=a:server_error(503),b:ok(200)`.
    pub fn decision_line(&self) -> Option<String> {
        self.decision.as_ref()?;
        let mut line = String::with_capacity(64);
        self.write_decision_line(&mut line);
        Some(line)
    }

    /// [`Self::decision_line`], appended to `out`; false (and nothing written) without a
    /// decision.
    pub fn write_decision_line<W: fmt::Write>(&self, out: &mut W) -> bool {
        let Some(d) = self.decision.as_ref() else {
            return false;
        };
        d.write_summary(out);
        // Writing to a `String` or an in-memory escaper cannot fail.
        let _ = self.try_write_attempts(out);
        true
    }

    fn try_write_attempts<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        if self.attempts.is_empty() {
            return Ok(());
        }
        out.write_str(" attempts=")?;
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            out.write_str(&a.model)?;
            out.write_char(':')?;
            out.write_str(a.outcome.as_str())?;
            if let Some(s) = a.status {
                write!(out, "({s})")?;
            }
        }
        Ok(())
    }

    /// `failover(rule-a),shed(rule-b)`: the remediation that touched the request, for the
    /// span's `sluice.remediation` and the access log.
    pub fn remediation_line(&self) -> Option<String> {
        let mut line = String::new();
        self.write_remediation_line(&mut line).then_some(line)
    }

    /// [`Self::remediation_line`], appended to `out`; false (and nothing written) when no
    /// remediation touched the request.
    pub fn write_remediation_line<W: fmt::Write>(&self, out: &mut W) -> bool {
        for (i, (action, rule)) in self.remediation.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(out, "{sep}{action}({rule})");
        }
        !self.remediation.is_empty()
    }

    pub fn is_error(&self) -> bool {
        !matches!(
            self.outcome,
            Outcome::Ok | Outcome::ClientError | Outcome::Cancelled
        )
    }
}

// === label values ===

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Models => "models",
            Self::Feedback => "feedback",
            Self::Other => "other",
            Self::Responses => "responses",
            Self::Messages => "messages",
            Self::MessagesCountTokens => "messages_count_tokens",
        }
    }

    /// `gen_ai.operation.name`.
    pub fn operation(self) -> &'static str {
        match self {
            Self::ChatCompletions | Self::Messages => "chat",
            Self::Responses => "responses",
            Self::Completions => "text_completion",
            Self::Embeddings => "embeddings",
            Self::Models | Self::Feedback | Self::Other | Self::MessagesCountTokens => "other",
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::Truncated => "truncated",
            Self::Cancelled => "cancelled",
            Self::GatewayError => "gateway_error",
        }
    }
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::InvalidRequest => "invalid_request",
            Self::RequestTooLarge => "request_too_large",
            Self::ModelNotFound => "model_not_found",
            Self::ResponseNotFound => "response_not_found",
            Self::UnknownUrl => "unknown_url",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::UpstreamError => "upstream_error",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::StreamInterrupted => "stream_interrupted",
            Self::InternalError => "internal_error",
            Self::ProviderClientError => "provider_client_error",
            Self::ProviderStreamError => "provider_stream_error",
            Self::RequestTimeout => "request_timeout",
            Self::Draining => "draining",
            Self::LoadShed => "load_shed",
            Self::ExpiredApiKey => "expired_api_key",
            Self::InsufficientQuota => "insufficient_quota",
            Self::StateUnavailable => "state_unavailable",
        }
    }
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ConnectError => "connect_error",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::ClientError => "client_error",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
        }
    }
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Estimated => "estimated",
        }
    }
}

macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    )*};
}

label_value!(Endpoint, Outcome, AttemptOutcome, UsageSource, ErrorKind);
