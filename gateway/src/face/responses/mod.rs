//! The Responses face: OpenAI's Responses API (`POST /v1/responses`) spoken to clients, OpenAI
//! Chat Completions spoken to everything behind it.
//!
//! Pure functions and one state machine, like `providers::translate`: no I/O, no clocks, no
//! pingora. The seam ([`crate::face`]) calls [`request()`] on the client's body to get the
//! chat-completions body the exchange routes, limits, caches, retries, records and judges like
//! any chat request; then [`response()`] on a whole `chat.completion`, or an [`EventStream`] fed
//! each chunk event of a stream, to answer in the Responses shapes. Errors keep OpenAI's
//! `{"error":{"message","type","param","code"}}` body, which is also the Responses API's; only
//! a stream's terminal error changes shape (a `response.failed` then an `error` event, see
//! [`EventStream::fail`]).
//!
//! # Decisions
//!
//! - **Stateless**: `store: true`, `previous_response_id`, `conversation`, `background: true`
//!   and `item_reference` input items are refused with a 400 naming the field. Sluice keeps no
//!   conversation state; the client sends the whole history as `input` items (the SDK's
//!   `input=previous.output + [...]` pattern works, since answers round-trip as input). `store`
//!   absent is taken as `false`, and every answer says `"store": false`.
//! - **Tools**: function tools translate. Built-in tools (`web_search`, `file_search`,
//!   `code_interpreter`, `computer_use_preview`, `image_generation`, `mcp`, `local_shell`,
//!   `custom`, …) and tool choices naming them are accepted and left out of the chat body
//!   ([`ChatBody::builtin`] names the first): they run inside OpenAI's service, so only an
//!   OpenAI-kind target, which gets the client's own body ([`Render::native_body`]), serves
//!   them; `exchange::dispatch` refuses them with a 400 for any other target.
//! - **Pass-through**: to an OpenAI-kind target the answer is not rendered at all; see
//!   [`native`] for what is read from it and [`Render::resume_native`] for a cut stream.
//! - **`text.format`** becomes `response_format` (`json_schema`, `json_object`; `text` is the
//!   default and sends nothing); `text.verbosity` becomes chat's `verbosity`.
//! - **`max_output_tokens`** becomes `max_completion_tokens`; `reasoning.effort` becomes
//!   `reasoning_effort` (a `reasoning.summary` is accepted; no summary is produced).
//! - **`metadata`** is echoed on the answer, never sent upstream (chat completions accept it
//!   only with `store`); `user`, `service_tier`, `prompt_cache_key` and `safety_identifier`
//!   go upstream as the chat fields of the same names.
//! - **Items**: consecutive `function_call` items (and the assistant message before them)
//!   become one assistant message with `tool_calls`, as chat and every translated provider
//!   expect; `function_call_output` items become `tool` messages. `reasoning` items are left
//!   out (they go to OpenAI-kind targets in the client's own body); built-in tools' call
//!   items are left out and noted like built-in tools (only OpenAI-kind targets take them);
//!   files, audio, and image outputs in tool results are refused with a 400.
//! - **Streams** always ask for the usage chunk: `response.completed` carries usage.
//! - **Finish reasons**: `stop`/`tool_calls` complete the response; `length` ends it
//!   `incomplete` with `incomplete_details.reason: "max_output_tokens"`, `content_filter` with
//!   `"content_filter"`.

pub mod native;
mod request;
mod response;
mod stream;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;

use crate::error::GatewayError;

pub use request::{Builtin, ChatBody, request};
pub use response::response;
pub use stream::EventStream;

pub use crate::providers::translate::TranslateError;

/// What an answer repeats from its request: the Responses object echoes the settings it ran
/// with. Kept from [`request()`] and handed to [`response()`] / [`EventStream::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// The model the client asked for (the answer says which model answered when it knows).
    pub model: String,
    pub instructions: Option<String>,
    /// The client's function tools, in the Responses shape.
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u64>,
    /// `{"format": …}` as the client gave it, `{"format":{"type":"text"}}` when absent.
    pub text: Value,
    /// `{"effort": …, "summary": …}`.
    pub reasoning: Value,
    pub metadata: Value,
    pub user: Option<String>,
    pub service_tier: Option<String>,
}

impl Default for Echo {
    fn default() -> Self {
        Self {
            model: String::new(),
            instructions: None,
            tools: vec![],
            tool_choice: Value::String("auto".into()),
            parallel_tool_calls: true,
            temperature: None,
            top_p: None,
            max_output_tokens: None,
            text: serde_json::json!({"format": {"type": "text"}}),
            reasoning: serde_json::json!({"effort": null, "summary": null}),
            metadata: Value::Object(serde_json::Map::new()),
            user: None,
            service_tier: None,
        }
    }
}

/// Per-answer facts from outside the body.
#[derive(Debug, Clone, Copy)]
pub struct AnswerCtx<'a> {
    /// The response id, `resp_…`; item ids are derived from it.
    pub id: &'a str,
    /// Unix seconds.
    pub created_at: u64,
}

// === the seam's view: one request's state ===

/// What the face remembers for one request: the echo for a whole answer, or the stream's
/// event state.
#[derive(Debug)]
pub struct Render {
    echo: Echo,
    stream: Option<EventStream>,
    /// Used when the chat answer has no id of its own.
    fallback_id: String,
    created_at: u64,
    /// The client's own body (by reference count), sent as it is to OpenAI-kind targets.
    original: Bytes,
    builtin: Option<Builtin>,
    /// The attempt now answering speaks the Responses API itself: its answer passes through.
    native: bool,
}

/// The seam's request hook: the chat body to route, and the render state. `created_at` is
/// the request's wall-clock time in Unix seconds (used when the answer carries none).
pub fn start(body: &Bytes, created_at: u64) -> Result<(Bytes, Render), GatewayError> {
    let chat = request(body).map_err(|e| GatewayError::invalid(e.to_string(), param_of(&e)))?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let fallback_id = format!("resp_sluice{created_at:x}{n:x}");
    let stream = chat.stream.then(|| {
        EventStream::new(
            chat.echo.clone(),
            &AnswerCtx {
                id: &fallback_id,
                created_at,
            },
        )
    });
    Ok((
        chat.body,
        Render {
            echo: chat.echo,
            stream,
            fallback_id,
            created_at,
            original: body.clone(),
            builtin: chat.builtin,
            native: false,
        },
    ))
}

/// The request fields an error's `param` can name (the top-level member of the failing path;
/// the message names the full path, `tools[1].type`).
const PARAMS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "metadata",
    "user",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "store",
    "previous_response_id",
    "conversation",
    "background",
    "prompt",
    "truncation",
    "include",
    "max_tool_calls",
    "stream",
    "stream_options",
    "top_logprobs",
];

fn param_of(e: &TranslateError) -> Option<&'static str> {
    let top = e.field().split(['.', '[']).next()?;
    PARAMS.iter().find(|p| **p == top).copied()
}

impl Render {
    /// The client's own body, as received.
    pub fn original(&self) -> &Bytes {
        &self.original
    }

    /// The first built-in tool the request offers or names.
    pub fn builtin(&self) -> Option<&Builtin> {
        self.builtin.as_ref()
    }

    /// Whether the attempt now answering passes its Responses answer through.
    pub fn is_native(&self) -> bool {
        self.native
    }

    /// Set by each attempt: `true` when its target got [`Self::native_body`].
    pub fn set_native(&mut self, native: bool) {
        self.native = native;
    }

    /// The request for an OpenAI-kind target: the client's own Responses body with the
    /// target's model, so what chat cannot say (built-in tools, `include`, `truncation`,
    /// `reasoning.summary`, `metadata`, …) reaches the provider. `store` is sent `false`:
    /// Sluice keeps no responses, and an answer stored at one provider would make the next
    /// turn depend on it, which failover cannot honour. `None` only when the body is not the
    /// object it was when accepted.
    pub fn native_body(&self, upstream_model: &str) -> Option<Bytes> {
        let mut body: serde_json::Map<String, Value> =
            serde_json::from_slice(&self.original).ok()?;
        body.insert("model".into(), Value::from(upstream_model));
        body.insert("store".into(), Value::Bool(false));
        serde_json::to_vec(&body).ok().map(Bytes::from)
    }

    /// A passed-through stream Sluice must end (it was cut, or the gateway is going away):
    /// the `response.failed` and `error` events continue the provider's own
    /// `sequence_number`s, under its response id.
    pub fn resume_native(&mut self, id: Option<&str>, model: Option<&str>, next_seq: u64) {
        let ctx = AnswerCtx {
            id: id.unwrap_or(&self.fallback_id),
            created_at: self.created_at,
        };
        self.stream = Some(EventStream::resumed(
            self.echo.clone(),
            &ctx,
            model.map(str::to_owned),
            next_seq,
        ));
    }

    /// One complete chat SSE event, as forwarded (`data: …\n\n`); a passed-through
    /// Responses event is already the client's.
    pub fn event(&mut self, raw: &[u8], out: &mut BytesMut) {
        if self.native {
            out.extend_from_slice(raw);
            return;
        }
        let Some(stream) = &mut self.stream else {
            return;
        };
        // Sluice's own chunks and OpenAI's are one `data:` line; anything else is decoded.
        match raw
            .strip_prefix(b"data: ")
            .and_then(|r| r.strip_suffix(b"\n\n"))
            .filter(|d| !d.contains(&b'\n'))
        {
            Some(data) => stream.chunk(data, out),
            None => stream.push_raw(raw, out),
        }
    }

    /// A whole chat answer as a `response` object. An answer that is not a chat completion
    /// (the exchange already checked it is JSON without `error`) becomes a failed response.
    pub fn whole(&mut self, body: &Bytes) -> Bytes {
        if self.native {
            return body.clone();
        }
        let ctx = AnswerCtx {
            id: &self.fallback_id,
            created_at: self.created_at,
        };
        response(body, &self.echo, &ctx).unwrap_or_else(|message| {
            let state = State {
                ctx,
                model: &self.echo.model,
                status: Status::Failed,
                incomplete: None,
                error: Some(("server_error", &message)),
                items: &[],
                usage: None,
            };
            serde_json::to_vec(&response_json(&self.echo, &state))
                .map(Bytes::from)
                .unwrap_or_default()
        })
    }

    /// Sluice's own error ending a stream: `response.failed`, then `error` with the error's
    /// code (the stream's sequence numbers continue).
    pub fn error_event(&mut self, e: &GatewayError) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(stream) = &mut self.stream {
            stream.fail(e.code(), &e.to_string(), &mut out);
        }
        out.freeze()
    }
}

/// `resp_<chat answer id>`: the chat answer's id kept whole, so `/v1/feedback` can take a
/// response id and find the answer it was recorded under.
pub fn response_id(chat_id: &str) -> String {
    format!("resp_{chat_id}")
}

/// The item id for output item `index` of response `id` (`msg_…`, `fc_…`, `rs_…`).
fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    let seed = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{seed}_{index}")
}

// === the response object, shared by whole answers and stream lifecycle events ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Incomplete => "incomplete",
            Self::Failed => "failed",
        }
    }
}

/// How a chat finish reason ends a response: its status and `incomplete_details.reason`.
pub fn status_of(finish_reason: Option<&str>) -> (Status, Option<&'static str>) {
    match finish_reason {
        Some("length") => (Status::Incomplete, Some("max_output_tokens")),
        Some("content_filter") => (Status::Incomplete, Some("content_filter")),
        _ => (Status::Completed, None),
    }
}

/// One output item, as the answer and the stream's final object list it.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Message {
        id: String,
        parts: Vec<MsgPart>,
        status: Status,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: Status,
    },
    Reasoning {
        id: String,
        text: String,
    },
}

impl Item {
    fn to_json(&self) -> ItemJson<'_> {
        match self {
            Self::Message { id, parts, status } => ItemJson::Message {
                id,
                status: status.as_str(),
                role: "assistant",
                content: parts.iter().map(MsgPart::to_json).collect(),
            },
            Self::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                status,
            } => ItemJson::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                status: status.as_str(),
            },
            Self::Reasoning { id, text } => ItemJson::Reasoning {
                id,
                summary: [],
                content: vec![ReasoningPartJson {
                    kind: "reasoning_text",
                    text,
                }],
            },
        }
    }
}

/// A content part of an output message.
#[derive(Debug, Clone, PartialEq)]
enum MsgPart {
    Text(String),
    Refusal(String),
}

impl MsgPart {
    fn to_json(&self) -> PartJson<'_> {
        match self {
            Self::Text(text) => PartJson::OutputText {
                text,
                annotations: [],
                logprobs: [],
            },
            Self::Refusal(refusal) => PartJson::Refusal { refusal },
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ItemJson<'a> {
    Message {
        id: &'a str,
        status: &'static str,
        role: &'static str,
        content: Vec<PartJson<'a>>,
    },
    FunctionCall {
        id: &'a str,
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
        status: &'static str,
    },
    Reasoning {
        id: &'a str,
        summary: [(); 0],
        content: Vec<ReasoningPartJson<'a>>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartJson<'a> {
    OutputText {
        text: &'a str,
        annotations: [(); 0],
        logprobs: [(); 0],
    },
    Refusal {
        refusal: &'a str,
    },
}

#[derive(Serialize)]
struct ReasoningPartJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// Chat usage, read from a `chat.completion` or the usage chunk.
type ChatUsage = crate::stream::Usage;

#[derive(Serialize)]
struct UsageJson {
    input_tokens: u64,
    input_tokens_details: InputDetailsJson,
    output_tokens: u64,
    output_tokens_details: OutputDetailsJson,
    total_tokens: u64,
}

#[derive(Serialize)]
struct InputDetailsJson {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct OutputDetailsJson {
    reasoning_tokens: u64,
}

impl From<&ChatUsage> for UsageJson {
    fn from(u: &ChatUsage) -> Self {
        let total = if u.total_tokens > 0 {
            u.total_tokens
        } else {
            u.prompt_tokens.saturating_add(u.completion_tokens)
        };
        Self {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputDetailsJson {
                cached_tokens: u.cached_tokens(),
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputDetailsJson {
                reasoning_tokens: u.reasoning_tokens(),
            },
            total_tokens: total,
        }
    }
}

#[derive(Serialize)]
struct IncompleteJson {
    reason: &'static str,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    code: &'a str,
    message: &'a str,
}

/// A Responses `response` object, keys in OpenAI's order.
#[derive(Serialize)]
struct ResponseJson<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: Option<ErrorJson<'a>>,
    incomplete_details: Option<IncompleteJson>,
    instructions: Option<&'a str>,
    max_output_tokens: Option<u64>,
    model: &'a str,
    output: Vec<ItemJson<'a>>,
    parallel_tool_calls: bool,
    previous_response_id: Option<()>,
    reasoning: &'a Value,
    service_tier: Option<&'a str>,
    store: bool,
    temperature: Option<f64>,
    text: &'a Value,
    tool_choice: &'a Value,
    tools: &'a [Value],
    top_p: Option<f64>,
    truncation: &'static str,
    usage: Option<UsageJson>,
    user: Option<&'a str>,
    metadata: &'a Value,
}

/// Everything that varies between renderings of one response.
struct State<'a> {
    ctx: AnswerCtx<'a>,
    model: &'a str,
    status: Status,
    incomplete: Option<&'static str>,
    error: Option<(&'a str, &'a str)>,
    items: &'a [Item],
    usage: Option<&'a ChatUsage>,
}

fn response_json<'a>(echo: &'a Echo, s: &State<'a>) -> ResponseJson<'a> {
    ResponseJson {
        id: s.ctx.id,
        object: "response",
        created_at: s.ctx.created_at,
        status: s.status.as_str(),
        background: false,
        error: s.error.map(|(code, message)| ErrorJson { code, message }),
        incomplete_details: s.incomplete.map(|reason| IncompleteJson { reason }),
        instructions: echo.instructions.as_deref(),
        max_output_tokens: echo.max_output_tokens,
        model: s.model,
        output: s.items.iter().map(Item::to_json).collect(),
        parallel_tool_calls: echo.parallel_tool_calls,
        previous_response_id: None,
        reasoning: &echo.reasoning,
        service_tier: echo.service_tier.as_deref(),
        store: false,
        temperature: echo.temperature,
        text: &echo.text,
        tool_choice: &echo.tool_choice,
        tools: &echo.tools,
        top_p: echo.top_p,
        truncation: "disabled",
        usage: s.usage.map(UsageJson::from),
        user: echo.user.as_deref(),
        metadata: &echo.metadata,
    }
}
