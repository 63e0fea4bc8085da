//! Translation between Sluice's OpenAI face and providers that speak another dialect:
//! Anthropic Messages, Gemini (Gemini API and Vertex AI), Azure OpenAI and Bedrock Converse.
//!
//! Pure functions and state machines only: no I/O, no clocks, no pingora. The exchange calls
//! [`request`] to build what to send, then [`response`] or a [`StreamTranslator`] on what
//! came back, and [`error`] for a non-2xx answer. The OpenAI → OpenAI path never comes here
//! (it stays zero-parse); for these kinds parsing with serde_json is the cost of translating.
//!
//! # Where everything is
//!
//! | kind | request | response | stream | errors | auth |
//! |---|---|---|---|---|---|
//! | anthropic | [`anthropic::request`] | [`anthropic::response`] | `anthropic::StreamState` (named SSE events) | [`error()`] by `error.type` | [`auth::anthropic`] |
//! | gemini / vertex | [`gemini::request`] | [`gemini::response`] (chat and embeddings) | `gemini::StreamState` (`data:` JSON, ends at EOF) | by `error.status` | [`auth::gemini_api_key`] / [`auth::bearer`] |
//! | azure_openai | [`azure::request`] | [`azure::response`] | `azure::StreamState` (OpenAI chunks, filter chunks dropped) | by `error.code` | [`auth::azure_api_key`] / [`auth::bearer`] |
//! | bedrock | [`bedrock::request`] | [`bedrock::response`] (chat and embeddings) | `bedrock::StreamState` over [`eventstream`] frames | by `x-amzn-ErrorType` | [`auth::bedrock_sigv4`] / [`auth::bearer`] |
//!
//! Shared pieces: [`openai`] (the request view every kind renders from, the chunk writer that
//! keeps OpenAI's stream invariants, usage), [`finish`] (every finish-reason table),
//! `error.rs` ([`ErrorClass`]: one table for client status, OpenAI type/code and
//! retryability), [`eventstream`] (Bedrock's binary framing), [`render`] (the same answers
//! rendered *in* each dialect, for the mock provider and round-trip tests).
//!
//! # Wiring (what the caller does)
//!
//! 1. `request(body, endpoint, upstream_model, &opts)`; a [`TranslateError`] is a 400
//!    ([`TranslateError::to_openai_json`], `param` = the field path).
//! 2. Add the credential headers from [`auth`] (for Bedrock SigV4, last, over the final URL,
//!    headers and body), send `method` to base URL + `path_and_query`.
//! 3. Non-stream: [`response`] with the status, headers and whole body. Stream: a
//!    [`StreamTranslator`] fed the body; each payload goes out as `data: <payload>\n\n`.
//!    Usage, finish reasons, id and model come back from both for the request record.
//!
//! # Decisions where the notes left a choice (providers-and-deploy.md, marked [U] there)
//!
//! - **`temperature` above 1** on Anthropic and Bedrock (whose range is 0–1) is refused with a
//!   400 naming `temperature`, not clamped: a silent clamp changes sampling behind the
//!   client's back. Gemini takes 0–2 like OpenAI.
//! - **`n` > 1** is refused on Anthropic and Bedrock (no equivalent; fanning out n requests
//!   would multiply cost and rate-limit use invisibly). Gemini maps it to `candidateCount`.
//! - **`response_format: json_object`**: Gemini has `responseMimeType`. Anthropic and Bedrock
//!   have no JSON mode, so Sluice forces a tool named `json_response` whose input schema is any
//!   object and turns that tool's input back into the message content (streamed as content
//!   deltas), finish reason `stop`. Combined with client tools (or, on Anthropic, with
//!   reasoning) it is refused. `json_schema` uses each provider's native structured output
//!   (`output_config.format`, `responseJsonSchema`, `outputConfig.textFormat`).
//! - **`max_tokens`** is required by Anthropic: when the client sends none, Sluice sends
//!   [`AnthropicOptions::max_tokens_for`] (per-model config, default 4096, a value every
//!   current Claude model accepts). It is never defaulted for Azure, which counts it against
//!   the TPM quota.
//! - **`reasoning_effort`** → Anthropic `thinking.budget_tokens` (minimal/low 1024, medium
//!   4096, high 16384, kept below `max_tokens`; `max_tokens` is raised by the budget when it
//!   was defaulted) and Gemini `thinkingConfig` (`thinkingBudget` for 1.x/2.x models,
//!   `thinkingLevel` for later ones, with `includeThoughts`). Refused on Bedrock, where it is
//!   model-specific.
//! - **`parallel_tool_calls: false`** → Anthropic `disable_parallel_tool_use`; dropped on Gemini
//!   and Bedrock, which have no control (refusing would break clients that always send it).
//! - **Hints** with no effect on the answer's shape are dropped everywhere (`seed` where there is
//!   no seed, `user` where there is no user field, `store`, `metadata`, `service_tier`, …);
//!   sampling penalties are accepted when 0 and refused otherwise where unsupported.
//! - **Unknown request fields** are refused with a 400 naming them: Sluice cannot vouch for a
//!   translation it does not know.
//! - **Image URLs** are never fetched by Sluice (SSRF). Anthropic takes http(s) URL sources;
//!   Gemini gets `fileData` for http(s) and `gs://` URLs (Google decides whether it can read
//!   them); Bedrock takes `s3://` URLs and refuses http(s) ones. `data:` URLs work everywhere
//!   (jpeg, png, gif, webp).
//! - **Sluice's own answer extensions** (`reasoning_content`, `thinking_blocks`,
//!   `tool_calls[].extra_content`) are read back by the kinds that use them and stripped from
//!   Azure requests, whose OpenAI dialect rejects unknown message fields.
//! - **Gemini thought signatures** round-trip through `tool_calls[].extra_content.google.thought_signature`
//!   (the field Google's own OpenAI-compatible endpoint uses). When a client drops it, the first
//!   call of each assistant turn gets Google's documented `skip_thought_signature_validator`
//!   on models after Gemini 2.x, so a stripped history still works.
//! - **Tool messages**: consecutive tool results (and a following user message) become one user
//!   turn with the results first, as Anthropic and Bedrock require; Gemini recovers each
//!   function name from the earlier assistant call with that id. Bedrock refuses a history with
//!   tool calls but no `tools` (its API rejects it; a stub tool would invite new calls).
//! - **Streams**: reasoning goes to `delta.reasoning_content` and signatures to
//!   `delta.thinking_blocks`, never into `content`; a stream that ends without its terminal
//!   event (Anthropic `message_stop`, Gemini `finishReason`, Bedrock `messageStop`, Azure
//!   `[DONE]`/finish) is an error, never a fabricated clean finish. The usage chunk is written
//!   only when the client asked *and* the provider reported usage.
//!
//! # Always refused (any translated kind)
//! Legacy `functions`/`function_call`, audio output (`audio`, `modalities` other than text),
//! `prediction`, `web_search_options`, `logprobs: true`/`top_logprobs`, a non-empty
//! `logit_bias`, `file` content parts, non-function tools and tool choices, token-array
//! embeddings inputs, and unknown fields. Azure OpenAI is the exception: it speaks OpenAI, so
//! its requests pass through with only `model`, `stream_options` and Sluice's own extension
//! fields changed, and Azure judges the rest.

pub mod anthropic;
pub mod auth;
pub mod azure;
pub mod bedrock;
mod error;
pub mod eventstream;
pub mod finish;
pub mod gemini;
pub mod openai;
pub mod render;

#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::sse::SseDecoder;

pub use error::{ClientView, ErrorClass, ProviderError, error, retry_after_header, stream_error};
pub use finish::FinishReason;
pub use openai::Usage;

/// A provider kind that needs translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Anthropic,
    /// The Gemini API (`generativelanguage.googleapis.com`).
    Gemini,
    /// Gemini on Vertex AI: the same dialect, other URLs and auth.
    Vertex,
    AzureOpenAi,
    Bedrock,
}

impl Kind {
    /// The config name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Vertex => "vertex",
            Self::AzureOpenAi => "azure_openai",
            Self::Bedrock => "bedrock",
        }
    }

    /// `gen_ai.provider.name` (OpenTelemetry GenAI semantic conventions).
    pub fn genai_provider_name(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Gemini => "gcp.gemini",
            Self::Vertex => "gcp.vertex_ai",
            Self::AzureOpenAi => "azure.ai.openai",
            Self::Bedrock => "aws.bedrock",
        }
    }
}

/// The OpenAI endpoint being translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Chat,
    Embeddings,
}

/// Per-kind settings, parsed from the policy by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindOptions {
    Anthropic(AnthropicOptions),
    Gemini(GeminiOptions),
    AzureOpenAi(AzureOptions),
    Bedrock(BedrockOptions),
}

impl KindOptions {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Anthropic(_) => Kind::Anthropic,
            Self::Gemini(g) => match g.flavour {
                GeminiFlavour::Api { .. } => Kind::Gemini,
                GeminiFlavour::Vertex { .. } => Kind::Vertex,
            },
            Self::AzureOpenAi(_) => Kind::AzureOpenAi,
            Self::Bedrock(_) => Kind::Bedrock,
        }
    }

    /// The provider's usual base URL (scheme and host, no path), when it does not depend on
    /// the customer's resource: Azure's does, so it has none.
    pub fn default_base_url(&self) -> Option<String> {
        match self {
            Self::Anthropic(_) => Some("https://api.anthropic.com".into()),
            Self::Gemini(g) => Some(match &g.flavour {
                GeminiFlavour::Api { .. } => "https://generativelanguage.googleapis.com".into(),
                GeminiFlavour::Vertex { location, .. } => match location.as_str() {
                    "global" => "https://aiplatform.googleapis.com".into(),
                    "us" | "eu" => format!("https://aiplatform.{location}.rep.googleapis.com"),
                    _ => format!("https://{location}-aiplatform.googleapis.com"),
                },
            }),
            Self::AzureOpenAi(_) => None,
            Self::Bedrock(b) => Some(format!(
                "https://bedrock-runtime.{}.amazonaws.com",
                b.region
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicOptions {
    /// `anthropic-version`, `2023-06-01` unless configured.
    pub version: String,
    /// `max_tokens` when the client sends none and no model entry matches.
    pub default_max_tokens: u32,
    /// Per-model defaults: the longest entry that prefixes the upstream model wins, so
    /// `claude-3-haiku` covers `claude-3-haiku-20240307`.
    pub max_tokens_by_model: Vec<(String, u32)>,
    /// `anthropic-beta` flags to send, if any.
    pub beta: Vec<String>,
}

impl Default for AnthropicOptions {
    fn default() -> Self {
        Self {
            version: "2023-06-01".into(),
            default_max_tokens: 4096,
            max_tokens_by_model: vec![],
            beta: vec![],
        }
    }
}

impl AnthropicOptions {
    pub fn max_tokens_for(&self, model: &str) -> u32 {
        self.max_tokens_by_model
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.default_max_tokens, |(_, n)| *n)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiOptions {
    pub flavour: GeminiFlavour,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeminiFlavour {
    /// The Gemini API; `api_version` is `v1beta` (what Google's SDK uses) unless configured.
    Api { api_version: String },
    /// Vertex AI; `api_version` is `v1` unless configured.
    Vertex {
        project: String,
        location: String,
        api_version: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureOptions {
    /// The deployment; `None` uses the upstream model name as the deployment name.
    pub deployment: Option<String>,
    /// `api-version` for the classic `/openai/deployments/…` API; `None` uses the v1 API
    /// (`/openai/v1/…`, no version, `model` in the body).
    pub api_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockOptions {
    pub region: String,
}

/// What to send upstream. Credentials are not in it: the caller adds them (see [`auth`]),
/// after this, since SigV4 signs the final head and body.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub method: &'static str,
    /// Below the provider's base URL (prefix the base URL's own path, if any).
    pub path_and_query: String,
    /// Non-secret headers (`content-type`, `accept`, `anthropic-version`, …).
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub stream: bool,
    /// What the response side needs to know about this request; hand it back to
    /// [`response`] or [`StreamTranslator::new`].
    pub state: RequestState,
}

/// What the response translation needs from the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    pub kind: Kind,
    pub endpoint: Endpoint,
    pub stream: bool,
    /// The client asked for the usage chunk.
    pub include_usage: bool,
    pub upstream_model: String,
    /// The tool that carries a `json_object` answer on Anthropic and Bedrock.
    pub json_tool: Option<String>,
    /// Embeddings: answer with base64 vectors.
    pub base64: bool,
    /// Embeddings: how many inputs were sent.
    pub inputs: usize,
}

impl RequestState {
    fn new(kind: Kind, endpoint: Endpoint, upstream_model: &str) -> Self {
        Self {
            kind,
            endpoint,
            stream: false,
            include_usage: false,
            upstream_model: upstream_model.to_owned(),
            json_tool: None,
            base64: false,
            inputs: 0,
        }
    }
}

/// Per-answer facts from outside the body.
#[derive(Debug, Clone, Copy)]
pub struct ResponseCtx<'a> {
    /// Unix seconds for `created`.
    pub created: u64,
    /// The answer's id when the provider gives none (Bedrock; Gemini without `responseId`),
    /// and the seed of synthesized tool-call ids (`call_<id>_<n>`).
    pub fallback_id: &'a str,
}

/// The translated non-stream answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// A `chat.completion` or an embeddings `list`.
    pub body: Bytes,
    pub usage: Option<Usage>,
    /// One per choice.
    pub finish_reasons: Vec<FinishReason>,
    /// The provider's own stop reasons, for spans and logs.
    pub provider_finish_reasons: Vec<String>,
    pub id: String,
    pub model: String,
}

/// A request that cannot be translated. The caller answers 400 with `field` as `param`
/// ([`TranslateError::to_openai_json`] renders it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The target provider cannot do what the request asks.
    #[error("`{field}` is not supported: {reason}")]
    Unsupported { field: String, reason: String },
    /// The request itself is malformed.
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: String, reason: String },
}

impl TranslateError {
    /// The offending field's path, e.g. `messages[2].tool_calls[0].function.arguments`.
    pub fn field(&self) -> &str {
        match self {
            Self::Unsupported { field, .. } | Self::Invalid { field, .. } => field,
        }
    }

    /// `{"error":{"message","type":"invalid_request_error","param":<field>,"code"}}` for a 400.
    pub fn to_openai_json(&self) -> Bytes {
        let code = match self {
            Self::Unsupported { .. } => "unsupported_parameter",
            Self::Invalid { .. } => "invalid_request",
        };
        let json = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": "invalid_request_error",
                "param": self.field(),
                "code": code,
            }
        });
        Bytes::from(json.to_string())
    }
}

fn unsupported(kind: Kind, field: impl Into<String>, reason: &str) -> TranslateError {
    TranslateError::Unsupported {
        field: field.into(),
        reason: format!("{} {reason}", kind.as_str()),
    }
}

/// Response headers, however the caller holds them.
pub trait HeaderSource {
    /// The value of header `name` (ASCII case-insensitive).
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl HeaderSource for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

impl<const N: usize> HeaderSource for [(&str, &str); N] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(http::HeaderValue::as_bytes)
    }
}

// === dispatch ===

/// Builds the upstream request for an OpenAI body.
pub fn request(
    openai_body: &[u8],
    endpoint: Endpoint,
    upstream_model: &str,
    opts: &KindOptions,
) -> Result<UpstreamRequest, TranslateError> {
    match opts {
        KindOptions::Anthropic(o) => anthropic::request(openai_body, endpoint, upstream_model, o),
        KindOptions::Gemini(o) => gemini::request(openai_body, endpoint, upstream_model, o),
        KindOptions::AzureOpenAi(o) => azure::request(openai_body, endpoint, upstream_model, o),
        KindOptions::Bedrock(o) => bedrock::request(openai_body, endpoint, upstream_model, o),
    }
}

/// Translates a whole (non-stream) answer. A non-2xx status goes to [`error()`]; a 2xx body
/// that is not a usable answer is a [`ErrorClass::BadResponse`].
pub fn response(
    state: &RequestState,
    ctx: &ResponseCtx<'_>,
    status: u16,
    headers: &(impl HeaderSource + ?Sized),
    body: &[u8],
) -> Result<Translated, ProviderError> {
    if !(200..300).contains(&status) {
        return Err(error(state.kind, status, headers, body));
    }
    match state.kind {
        Kind::Anthropic => anthropic::response(state, ctx, body),
        Kind::Gemini | Kind::Vertex => gemini::response(state, ctx, body),
        Kind::AzureOpenAi => azure::response(state, ctx, body),
        Kind::Bedrock => {
            let text = |name| {
                headers
                    .header(name)
                    .and_then(|v| std::str::from_utf8(v).ok())
            };
            let facts = bedrock::ResponseHeaders {
                request_id: text("x-amzn-requestid"),
                input_tokens: text("x-amzn-bedrock-input-token-count").and_then(|v| v.parse().ok()),
            };
            bedrock::response(state, ctx, facts, body)
        }
    }
}

// === streams ===

/// The largest SSE event or event-stream frame accepted: Bedrock's own payload limit (24 MiB)
/// plus headers; a Gemini chunk with an inline image stays well below.
pub const MAX_STREAM_EVENT: usize = 24 * 1024 * 1024 + 128 * 1024;

/// Turns one provider stream into OpenAI `chat.completion.chunk` payloads.
///
/// Feed it the raw body with [`push`](Self::push) (it decodes SSE or event-stream frames
/// itself, split-safe at every byte) or already-decoded SSE events with
/// [`push_sse_event`](Self::push_sse_event); call [`finish`](Self::finish) at the end of the
/// body. Each output item is one JSON payload to frame as `data: <payload>\n\n`; the last one
/// of a clean stream is `[DONE]`. An `Err` is a classified [`ProviderError`]: before anything
/// was sent to the client the caller may fail over; after, it sends
/// [`ProviderError::to_sse_event`] and closes. After an error the translator ignores input.
pub struct StreamTranslator {
    kind: Kind,
    input: Input,
    inner: Inner,
    writer: openai::ChunkWriter,
    failed: bool,
}

enum Input {
    Sse(SseDecoder),
    Frames(eventstream::FrameDecoder),
}

enum Inner {
    Anthropic(anthropic::StreamState),
    Gemini(gemini::StreamState),
    Azure(azure::StreamState),
    Bedrock(bedrock::StreamState),
}

impl StreamTranslator {
    pub fn new(state: &RequestState, ctx: &ResponseCtx<'_>) -> Self {
        let writer = openai::ChunkWriter::new(
            ctx.fallback_id.to_owned(),
            ctx.created,
            state.upstream_model.clone(),
            state.include_usage,
        );
        let (input, inner) = match state.kind {
            Kind::Anthropic => (
                Input::Sse(SseDecoder::new(MAX_STREAM_EVENT)),
                Inner::Anthropic(anthropic::StreamState::new(state.json_tool.clone())),
            ),
            Kind::Gemini | Kind::Vertex => (
                Input::Sse(SseDecoder::new(MAX_STREAM_EVENT)),
                Inner::Gemini(gemini::StreamState::new(state.kind, ctx.fallback_id)),
            ),
            Kind::AzureOpenAi => (
                Input::Sse(SseDecoder::new(MAX_STREAM_EVENT)),
                Inner::Azure(azure::StreamState::new(state.include_usage)),
            ),
            Kind::Bedrock => (
                Input::Frames(eventstream::FrameDecoder::new(MAX_STREAM_EVENT)),
                Inner::Bedrock(bedrock::StreamState::new(state.json_tool.clone())),
            ),
        };
        Self {
            kind: state.kind,
            input,
            inner,
            writer,
            failed: false,
        }
    }

    /// Raw upstream body bytes, in any split.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        if self.failed || self.writer.is_done() {
            return Ok(());
        }
        let result = self.drain(bytes, out);
        self.check(result)
    }

    fn drain(&mut self, bytes: &[u8], out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        match &mut self.input {
            Input::Sse(dec) => {
                dec.push(bytes);
                loop {
                    let event = dec
                        .next_event()
                        .map_err(|e| ProviderError::bad_response(self.kind, e))?;
                    let Some(event) = event else { return Ok(()) };
                    if event.has_data {
                        Self::sse_into(
                            &mut self.inner,
                            &mut self.writer,
                            event.event.as_deref(),
                            &event.data,
                            out,
                        )?;
                    }
                    if self.writer.is_done() {
                        return Ok(());
                    }
                }
            }
            Input::Frames(dec) => {
                dec.push(bytes);
                loop {
                    let frame = dec
                        .next_frame()
                        .map_err(|e| ProviderError::bad_response(self.kind, e))?;
                    let Some(frame) = frame else { return Ok(()) };
                    if let Inner::Bedrock(b) = &mut self.inner {
                        b.frame(&mut self.writer, &frame, out)?;
                    }
                    if self.writer.is_done() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One SSE event already decoded by the caller (`event` is its `event:` field).
    pub fn push_sse_event(
        &mut self,
        event: Option<&[u8]>,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProviderError> {
        if self.failed || self.writer.is_done() {
            return Ok(());
        }
        let result = Self::sse_into(&mut self.inner, &mut self.writer, event, data, out);
        self.check(result)
    }

    fn sse_into(
        inner: &mut Inner,
        writer: &mut openai::ChunkWriter,
        event: Option<&[u8]>,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProviderError> {
        match inner {
            Inner::Anthropic(a) => a.event(writer, event, data, out),
            Inner::Gemini(g) => g.event(writer, data, out),
            Inner::Azure(z) => z.event(writer, data, out),
            Inner::Bedrock(_) => Err(ProviderError::bad_response(
                Kind::Bedrock,
                "an SSE event on an event-stream body",
            )),
        }
    }

    /// The upstream body ended. Writes the closing chunks of a stream whose end is the end of
    /// the body (Gemini), or reports a stream that was cut.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        if self.failed || self.writer.is_done() {
            return Ok(());
        }
        let result = self.finish_inner(out);
        self.check(result)
    }

    fn finish_inner(&mut self, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        match &mut self.input {
            Input::Sse(dec) => {
                // A last event without its blank line still counts.
                if let Some(event) = dec.finish().filter(|e| e.has_data) {
                    Self::sse_into(
                        &mut self.inner,
                        &mut self.writer,
                        event.event.as_deref(),
                        &event.data,
                        out,
                    )?;
                }
            }
            Input::Frames(_) => {}
        }
        if self.writer.is_done() {
            return Ok(());
        }
        match &mut self.inner {
            Inner::Anthropic(a) => a.eof(&mut self.writer, out),
            Inner::Gemini(g) => g.eof(&mut self.writer, out),
            Inner::Azure(z) => z.eof(&mut self.writer, out),
            Inner::Bedrock(b) => {
                let torn = match &self.input {
                    Input::Frames(dec) => dec.pending_len(),
                    Input::Sse(_) => 0,
                };
                b.eof(&mut self.writer, torn, out)
            }
        }
    }

    fn check(&mut self, result: Result<(), ProviderError>) -> Result<(), ProviderError> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// True once the stream ended cleanly (`[DONE]` was written).
    pub fn is_finished(&self) -> bool {
        self.writer.is_done() && !self.failed
    }

    /// Usage as reported so far (cumulative fields merged, never summed).
    pub fn usage(&self) -> Option<Usage> {
        match &self.inner {
            Inner::Anthropic(a) => a.usage(),
            Inner::Gemini(g) => g.usage(),
            Inner::Azure(z) => z.usage(),
            Inner::Bedrock(b) => b.usage(),
        }
    }

    /// Finish reasons sent to the client, one per finished choice.
    pub fn finish_reasons(&self) -> Vec<FinishReason> {
        match &self.inner {
            Inner::Azure(z) => z.finish_reasons(),
            _ => self.writer.finish_reasons(),
        }
    }

    /// The provider's own stop reasons, for spans and logs.
    pub fn provider_finish_reasons(&self) -> Vec<String> {
        match &self.inner {
            Inner::Anthropic(a) => a.provider_finish_reasons(),
            Inner::Gemini(g) => g.provider_finish_reasons(),
            Inner::Azure(z) => z
                .finish_reasons()
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect(),
            Inner::Bedrock(b) => b.provider_finish_reasons(),
        }
    }

    /// The answer's id (the provider's, once it said it).
    pub fn id(&self) -> &str {
        match &self.inner {
            Inner::Azure(z) => z.id().unwrap_or(self.writer.id()),
            _ => self.writer.id(),
        }
    }

    /// The model that answered (the provider's name for it, once it said it).
    pub fn model(&self) -> &str {
        match &self.inner {
            Inner::Azure(z) => z.model().unwrap_or(self.writer.model()),
            _ => self.writer.model(),
        }
    }
}
