//! Mock OpenAI answers: the one place Sluice synthesizes fake responses.
//!
//! Both the gateway's in-process `mock` provider kind and the `mock-llm` server in
//! `sluice-loadtest` build every answer here, so the two can never drift apart. The module is
//! pure: no I/O, no clocks, no runtime. Callers own the timing; [`MockTiming`] only says how long
//! to wait before each event.
//!
//! # Determinism
//!
//! The answer is a function of the request alone:
//! - `seed` is the 64-bit FNV-1a hash of the request's text: for chat each message's role and text
//!   content (string content, or the `text` of content parts); for completions the prompt(s); for
//!   embeddings the input(s). Token arrays hash their numbers. Separators are hashed too, so
//!   `["a b"]` and `["a", "b"]` differ. The model name is *not* hashed.
//! - The text is [`DEFAULT_COMPLETION_TOKENS`] words drawn from a fixed word list by a splitmix64
//!   generator seeded with `seed`, cut to `max_tokens` (chat: `max_completion_tokens`, else
//!   `max_tokens`). One word is one token is one content chunk; chunks after the first carry a
//!   leading space, so the concatenated deltas equal [`completion_text`].
//! - `finish_reason` is `"length"` when `max_tokens` is below the default length, else `"stop"`.
//! - `created` is the constant [`CREATED`]; ids are `chatcmpl-mock-<seed as 16 hex digits>`
//!   (completions: `cmpl-mock-…`).
//!
//! # Shaped chat answers
//!
//! So apps can be tried against the quickstart, a chat request is answered as it asks:
//! - `tools` (function tools) with `tool_choice` absent, `"auto"` or `"required"`: calls to its
//!   first (up to two) tools; a named `tool_choice` calls that tool; `"none"` answers in words.
//!   Call ids are `call_mock_<seed hex>_<i>`, arguments `{"query":"<first word>"}`
//!   (`{"answer":"<text>"}` for a tool named `json_response`), `content` is `null` and the
//!   finish reason `tool_calls`. Streamed, each call is a chunk with its id and name, then its
//!   arguments in pieces, each with the call's `index`.
//! - `response_format` `json_object`: the content is `{"answer":"<text>"}`; `json_schema`: an
//!   object with the schema's required properties (strings carry the text, numbers are 42,
//!   booleans true, arrays and objects empty). Streamed, the JSON text comes in pieces.
//! - `n` (at most [`MAX_CHOICES`]): that many choices; choice 0 is the answer `n = 1` gives,
//!   choice `i` draws its words from the seed mixed with `i`. Streamed, every choice's chunks
//!   carry its `index`, the finish chunks come last.
//!
//! Usage counts the plain answer's words per choice, whatever the shape.
//!
//! # Token counting
//!
//! A word is a whitespace-separated run (`str::split_whitespace`); a token array counts its
//! elements.
//! - chat: `prompt_tokens` = words of every message's text + 3 per message;
//! - completions: words of every prompt string + elements of every token array;
//! - embeddings: the same over `input`.
//!
//! `prompt_tokens` is at least 1. `completion_tokens` is the number of words in the answer (0 for
//! embeddings) and `total_tokens` their sum. The usage chunk of a stream carries exactly the
//! usage of the non-stream answer to the same request.
//!
//! # Stream shape (chat)
//!
//! 1. `{"delta":{"role":"assistant","content":""}}`
//! 2. one chunk per word, `{"delta":{"content":"word"}}`
//! 3. `{"delta":{},"finish_reason":"stop"|"length"}`
//! 4. only with `stream_options.include_usage == true`: `{"choices":[],"usage":{…}}`, and then
//!    every other chunk carries `"usage":null`, as OpenAI does
//! 5. `data: [DONE]`
//!
//! Completions streams are the same without step 1, with `text_completion` objects and
//! `choices[].text` instead of deltas. Each item of [`MockStream`] is one whole SSE event
//! (`data: …\n\n`).
//!
//! # Embeddings
//!
//! One unit-length `f32` vector of `dimensions` (default [`DEFAULT_DIMENSIONS`], at most
//! [`MAX_DIMENSIONS`]) per input, derived from `seed` and the input's index. `encoding_format` is
//! ignored (always floats). Streaming embeddings is a request error.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

/// Length of an answer when `max_tokens` does not cut it short.
pub const DEFAULT_COMPLETION_TOKENS: u32 = 16;
/// Embedding width when the request has no `dimensions`.
pub const DEFAULT_DIMENSIONS: u32 = 8;
/// Largest `dimensions` accepted, to bound the answer size.
pub const MAX_DIMENSIONS: u32 = 4096;
/// The `created` timestamp of every mock object (2025-01-01T00:00:00Z), fixed for determinism.
pub const CREATED: u64 = 1_735_689_600;
/// Tokens added per chat message on top of its words.
pub const TOKENS_PER_MESSAGE: u32 = 3;
/// Largest `n` a chat request may ask for, to bound the answer size.
pub const MAX_CHOICES: u32 = 16;
/// Most tools one answer calls.
const MAX_TOOL_CALLS: usize = 2;

/// The answer vocabulary: 64 plain words.
const WORDS: [&str; 64] = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "river", "stone", "light",
    "shadow", "gate", "water", "flows", "through", "sluice", "token", "stream", "model", "answer",
    "quiet", "bright", "swift", "north", "south", "east", "west", "cloud", "rain", "wind", "field",
    "green", "blue", "red", "silver", "golden", "small", "large", "early", "late", "open", "close",
    "path", "bridge", "tower", "garden", "window", "paper", "signal", "number", "simple", "steady",
    "latency", "budget", "request", "reply", "mock", "echo", "harbor", "island", "forest",
    "meadow", "valley",
];

/// Which OpenAI endpoint a request was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
}

impl Endpoint {
    /// The path below the API prefix (`/v1`), e.g. `/chat/completions`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    /// The endpoint for a path below the API prefix, if it is one of the three.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/chat/completions" => Some(Endpoint::ChatCompletions),
            "/completions" => Some(Endpoint::Completions),
            "/embeddings" => Some(Endpoint::Embeddings),
            _ => None,
        }
    }
}

/// How fast a mock answer arrives. All zero (the default) means no delay at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockTiming {
    /// Wait before the first event of a stream (and before a non-stream answer).
    pub ttft: Duration,
    /// Content events per second after the first; `0` (or anything not finite and positive)
    /// means no delay between events.
    pub tokens_per_s: f64,
}

impl MockTiming {
    /// The wait between two content events: `1 / tokens_per_s`, or zero when it is not positive.
    pub fn per_token(&self) -> Duration {
        if self.tokens_per_s.is_finite() && self.tokens_per_s > 0.0 {
            Duration::try_from_secs_f64(1.0 / self.tokens_per_s).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }

    /// The wait before stream event `event_index`: `ttft` before event 0 and
    /// [`per_token`](Self::per_token) before every later one.
    ///
    /// This cannot know where the content ends; use [`MockStream::delay_before`] to get zero for
    /// the trailing finish/usage/`[DONE]` events.
    pub fn delay_before(&self, event_index: usize) -> Duration {
        if event_index == 0 {
            self.ttft
        } else {
            self.per_token()
        }
    }

    /// The wait before a non-stream answer: `ttft` plus one [`per_token`](Self::per_token) per
    /// completion token after the first, i.e. the time the whole stream would have taken.
    pub fn response_delay(&self, req: &MockRequest) -> Duration {
        let later = completion_tokens(req).saturating_sub(1);
        self.ttft
            .saturating_add(self.per_token().saturating_mul(later))
    }
}

/// What synthesis needs, parsed from an OpenAI request body.
#[derive(Debug, Clone)]
pub struct MockRequest {
    /// The endpoint the body was sent to.
    pub endpoint: Endpoint,
    /// The body's `model`, echoed in the answer.
    pub model: String,
    /// `stream: true` (always false for embeddings).
    pub stream: bool,
    /// `stream && stream_options.include_usage == true`.
    pub include_usage: bool,
    /// Chat: `max_completion_tokens`, else `max_tokens`; completions: `max_tokens`.
    pub max_tokens: Option<u32>,
    /// See the module doc, "Token counting".
    pub prompt_tokens: u32,
    /// Number of messages (chat), prompts (completions) or inputs (embeddings).
    pub inputs: u32,
    /// Embedding width; [`DEFAULT_DIMENSIONS`] unless the request says otherwise.
    pub dimensions: u32,
    /// FNV-1a of the request text; see the module doc, "Determinism".
    pub seed: u64,
    /// For a judge request (`sluice_judge::MARKER` first in its system message): the verdict
    /// the answer carries instead of made-up words, so the judge works with no API key.
    pub verdict: Option<String>,
    /// Chat: tools to call, JSON mode and `n`; see the module doc, "Shaped chat answers".
    pub shape: Shape,
}

/// What a chat request asks of its answer's form.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Names of the function tools the answer calls (empty: an answer in words).
    pub tools: Vec<String>,
    /// JSON mode: `Some(None)` for `json_object`, `Some(Some(schema))` for `json_schema`.
    pub json: Option<Option<Value>>,
    /// Number of choices, 1..=[`MAX_CHOICES`].
    pub choices: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            tools: Vec::new(),
            json: None,
            choices: 1,
        }
    }
}

impl Shape {
    /// Reads `tools`, `tool_choice`, `response_format` and `n` from a chat request.
    fn of_chat(obj: &Map<String, Value>) -> Result<Shape, String> {
        let offered: Vec<&str> = match obj.get("tools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(tools)) => tools
                .iter()
                .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .collect(),
            Some(_) => return Err("`tools` must be an array".to_owned()),
        };
        let tools = match obj.get("tool_choice") {
            None | Some(Value::Null) => offered.into_iter().take(MAX_TOOL_CALLS).collect(),
            Some(Value::String(c)) => match c.as_str() {
                "none" => Vec::new(),
                "auto" | "required" => offered.into_iter().take(MAX_TOOL_CALLS).collect(),
                other => {
                    return Err(format!(
                        "`tool_choice` must be \"none\", \"auto\", \"required\" or a named function, not \"{other}\""
                    ));
                }
            },
            Some(Value::Object(c)) => match c.get("function").and_then(|f| f.get("name")) {
                Some(Value::String(name)) => vec![name.as_str()],
                _ => return Err("`tool_choice.function.name` is required".to_owned()),
            },
            Some(_) => return Err("`tool_choice` must be a string or an object".to_owned()),
        };
        let json = match obj.get("response_format") {
            None | Some(Value::Null) => None,
            Some(f) => match f.get("type").and_then(Value::as_str) {
                Some("text") => None,
                Some("json_object") => Some(None),
                Some("json_schema") => Some(f.pointer("/json_schema/schema").cloned()),
                _ => {
                    return Err(
                        "`response_format.type` must be \"text\", \"json_object\" or \"json_schema\""
                            .to_owned(),
                    );
                }
            },
        };
        let choices = match opt_count(obj, "n")? {
            None => 1,
            Some(n) if n <= MAX_CHOICES => n,
            Some(_) => return Err(format!("`n` must be at most {MAX_CHOICES}")),
        };
        Ok(Shape {
            tools: tools.into_iter().map(str::to_owned).collect(),
            json,
            choices,
        })
    }
}

impl MockRequest {
    /// Parses what synthesis needs from a request body. The error is an OpenAI-style message
    /// (for an `invalid_request_error`), e.g. "`model` is required" or "invalid JSON: …".
    pub fn from_body(endpoint: Endpoint, body: &[u8]) -> Result<MockRequest, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(obj) = value else {
            return Err("the request body must be a JSON object".to_owned());
        };
        let model = match obj.get("model") {
            None | Some(Value::Null) => return Err("`model` is required".to_owned()),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err("`model` must be a non-empty string".to_owned()),
        };
        let stream = opt_bool(&obj, "stream")?.unwrap_or(false);
        let include_usage = match obj.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(opts)) => {
                if !stream {
                    return Err(
                        "`stream_options` is only allowed when `stream` is enabled".to_owned()
                    );
                }
                opt_bool(opts, "include_usage")?.unwrap_or(false)
            }
            Some(_) => return Err("`stream_options` must be an object".to_owned()),
        };

        let mut text = TextAcc::new();
        let mut dimensions = DEFAULT_DIMENSIONS;
        let (max_tokens, inputs) = match endpoint {
            Endpoint::ChatCompletions => {
                let max = match opt_count(&obj, "max_completion_tokens")? {
                    Some(n) => Some(n),
                    None => opt_count(&obj, "max_tokens")?,
                };
                (max, chat_messages(&obj, &mut text)?)
            }
            Endpoint::Completions => {
                let max = opt_count(&obj, "max_tokens")?;
                (max, inputs(&obj, "prompt", &mut text)?)
            }
            Endpoint::Embeddings => {
                if stream {
                    return Err("`stream` is not supported for embeddings".to_owned());
                }
                if let Some(d) = opt_count(&obj, "dimensions")? {
                    if d > MAX_DIMENSIONS {
                        return Err(format!("`dimensions` must be at most {MAX_DIMENSIONS}"));
                    }
                    dimensions = d;
                }
                (None, inputs(&obj, "input", &mut text)?)
            }
        };
        Ok(MockRequest {
            endpoint,
            model,
            stream,
            include_usage,
            max_tokens,
            prompt_tokens: text.tokens.max(1),
            inputs,
            dimensions,
            seed: text.hash,
            verdict: match endpoint {
                Endpoint::ChatCompletions => sluice_judge::mock_verdict(body),
                Endpoint::Completions | Endpoint::Embeddings => None,
            },
            shape: match endpoint {
                Endpoint::ChatCompletions => Shape::of_chat(&obj)?,
                Endpoint::Completions | Endpoint::Embeddings => Shape::default(),
            },
        })
    }
}

/// Token counts of an answer; `total_tokens = prompt_tokens + completion_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MockUsage {
    /// From the request; see the module doc.
    pub prompt_tokens: u32,
    /// Words in the answer (0 for embeddings).
    pub completion_tokens: u32,
    /// The sum of the two.
    pub total_tokens: u32,
}

/// The usage every answer to `req` reports (stream or not).
pub fn usage(req: &MockRequest) -> MockUsage {
    let completion = completion_tokens(req).saturating_mul(req.shape.choices);
    MockUsage {
        prompt_tokens: req.prompt_tokens,
        completion_tokens: completion,
        total_tokens: req.prompt_tokens.saturating_add(completion),
    }
}

/// `"length"` when `max_tokens` cut the answer short, else `"stop"`.
pub fn finish_reason(req: &MockRequest) -> &'static str {
    match req.max_tokens {
        Some(max) if max < DEFAULT_COMPLETION_TOKENS => "length",
        _ => "stop",
    }
}

/// The deterministic text the answer carries (empty for embeddings).
pub fn completion_text(req: &MockRequest) -> String {
    choice_text(req, 0)
}

/// The words of choice `choice`, joined with spaces.
fn choice_text(req: &MockRequest, choice: u32) -> String {
    words(req, choice).collect::<Vec<_>>().join(" ")
}

/// The id of tool call `i` in the answer to a request with seed `seed`.
pub fn tool_call_id(seed: u64, i: usize) -> String {
    format!("call_mock_{seed:x}_{i}")
}

/// The arguments the mock passes to tool `name` (a JSON object, as text).
pub fn tool_call_arguments(name: &str, text: &str) -> String {
    if name == "json_response" {
        serde_json::json!({ "answer": text }).to_string()
    } else {
        let first = text.split(' ').next().unwrap_or("mock");
        serde_json::json!({ "query": first }).to_string()
    }
}

/// A JSON object with the schema's required properties (typed), else `{"answer": text}`.
pub fn json_answer(schema: Option<&Value>, text: &str) -> Value {
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if required.is_empty() {
        return serde_json::json!({ "answer": text });
    }
    let mut out = Map::new();
    for name in required {
        let ty = schema
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        let value = match ty {
            Some("integer" | "number") => Value::from(42),
            Some("boolean") => Value::Bool(true),
            Some("array") => Value::Array(Vec::new()),
            Some("object") => Value::Object(Map::new()),
            _ => Value::String(text.to_owned()),
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// What one chat choice says: text (words, or JSON in JSON mode) or tool calls.
enum Said {
    Text(String),
    Calls(Vec<Call>),
}

struct Call {
    id: String,
    name: String,
    arguments: String,
}

impl Said {
    fn finish_reason(&self, req: &MockRequest) -> &'static str {
        match self {
            Said::Calls(_) => "tool_calls",
            Said::Text(_) => finish_reason(req),
        }
    }
}

/// Choice `choice` of the answer to a chat request, shaped as the request asks.
fn said(req: &MockRequest, choice: u32) -> Said {
    let text = choice_text(req, choice);
    if !req.shape.tools.is_empty() && req.verdict.is_none() {
        return Said::Calls(
            req.shape
                .tools
                .iter()
                .enumerate()
                .map(|(i, name)| Call {
                    id: tool_call_id(req.seed, i),
                    name: name.clone(),
                    arguments: tool_call_arguments(name, &text),
                })
                .collect(),
        );
    }
    match &req.shape.json {
        Some(schema) if req.verdict.is_none() => {
            Said::Text(json_answer(schema.as_ref(), &text).to_string())
        }
        _ => Said::Text(text),
    }
}

/// The non-stream answer: a `chat.completion`, a `text_completion` or a list of embeddings,
/// each with its usage. (For a request with `stream: true` this is still the non-stream shape.)
pub fn response_json(req: &MockRequest) -> Bytes {
    let ids = Ids::new(req);
    let u = usage(req);
    let json = match req.endpoint {
        Endpoint::ChatCompletions => {
            let said: Vec<Said> = (0..req.shape.choices).map(|c| said(req, c)).collect();
            let choices: Vec<ChatChoice<'_>> = said
                .iter()
                .zip(0..)
                .map(|(s, index)| ChatChoice {
                    index,
                    message: Message {
                        role: "assistant",
                        content: match s {
                            Said::Text(t) => Some(t),
                            Said::Calls(_) => None,
                        },
                        refusal: None,
                        tool_calls: match s {
                            Said::Text(_) => None,
                            Said::Calls(calls) => Some(
                                calls
                                    .iter()
                                    .map(|c| ToolCallJson {
                                        id: &c.id,
                                        kind: "function",
                                        function: FunctionJson {
                                            name: &c.name,
                                            arguments: &c.arguments,
                                        },
                                    })
                                    .collect(),
                            ),
                        },
                    },
                    logprobs: None,
                    finish_reason: s.finish_reason(req),
                })
                .collect();
            to_json(&ChatCompletion {
                id: &ids.id,
                object: "chat.completion",
                created: CREATED,
                model: &req.model,
                choices,
                usage: UsageJson::chat(u),
            })
        }
        Endpoint::Completions => to_json(&TextCompletion {
            id: &ids.id,
            object: "text_completion",
            created: CREATED,
            model: &req.model,
            choices: &[TextChoice {
                text: &completion_text(req),
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason(req)),
            }],
            usage: Some(Some(UsageJson::plain(u))),
        }),
        Endpoint::Embeddings => {
            let data: Vec<EmbeddingJson> = (0..req.inputs)
                .map(|index| EmbeddingJson {
                    object: "embedding",
                    index,
                    embedding: embedding(req.seed, index, req.dimensions),
                })
                .collect();
            to_json(&EmbeddingList {
                object: "list",
                data,
                model: &req.model,
                usage: EmbeddingUsage {
                    prompt_tokens: u.prompt_tokens,
                    total_tokens: u.prompt_tokens,
                },
            })
        }
    };
    Bytes::from(json)
}

/// The SSE events of a streamed answer, one complete `data: …\n\n` event per item, ending with
/// `data: [DONE]\n\n`. For embeddings (which cannot stream) it is one error event, then `[DONE]`.
#[derive(Debug, Clone)]
pub struct MockStream {
    events: std::vec::IntoIter<Bytes>,
    /// Index of the first trailing (finish/usage/`[DONE]`) event.
    content_end: usize,
}

impl MockStream {
    /// Builds every event of the answer to `req` (at most [`DEFAULT_COMPLETION_TOKENS`] + 4).
    pub fn new(req: &MockRequest) -> Self {
        let ids = Ids::new(req);
        let usage_field = |u: Option<UsageJson>| req.include_usage.then_some(u);
        let mut events = Vec::with_capacity(DEFAULT_COMPLETION_TOKENS as usize + 4);
        let content_end;
        match req.endpoint {
            Endpoint::ChatCompletions => {
                let chunk = |index: u32, delta: Delta<'_>, finish: Option<&'static str>| {
                    sse(&to_json(&ChatChunk {
                        id: &ids.id,
                        object: "chat.completion.chunk",
                        created: CREATED,
                        model: &req.model,
                        choices: &[ChatChunkChoice {
                            index,
                            delta,
                            logprobs: None,
                            finish_reason: finish,
                        }],
                        usage: usage_field(None),
                    }))
                };
                let mut finishes = Vec::with_capacity(req.shape.choices as usize);
                for index in 0..req.shape.choices {
                    events.push(chunk(
                        index,
                        Delta {
                            role: Some("assistant"),
                            content: Some(""),
                            ..Delta::default()
                        },
                        None,
                    ));
                    let s = said(req, index);
                    match &s {
                        Said::Text(_) if req.shape.json.is_none() => {
                            for piece in pieces(req, index) {
                                events.push(chunk(
                                    index,
                                    Delta {
                                        content: Some(&piece),
                                        ..Delta::default()
                                    },
                                    None,
                                ));
                            }
                        }
                        Said::Text(json) => {
                            for piece in super::translate::render::pieces(json) {
                                events.push(chunk(
                                    index,
                                    Delta {
                                        content: Some(piece),
                                        ..Delta::default()
                                    },
                                    None,
                                ));
                            }
                        }
                        Said::Calls(calls) => {
                            for (k, call) in (0..).zip(calls) {
                                let opening = ToolCallDelta {
                                    index: k,
                                    id: Some(&call.id),
                                    kind: Some("function"),
                                    function: FunctionDelta {
                                        name: Some(&call.name),
                                        arguments: "",
                                    },
                                };
                                events.push(chunk(
                                    index,
                                    Delta {
                                        tool_calls: Some([opening]),
                                        ..Delta::default()
                                    },
                                    None,
                                ));
                                for piece in super::translate::render::pieces(&call.arguments) {
                                    let more = ToolCallDelta {
                                        index: k,
                                        id: None,
                                        kind: None,
                                        function: FunctionDelta {
                                            name: None,
                                            arguments: piece,
                                        },
                                    };
                                    events.push(chunk(
                                        index,
                                        Delta {
                                            tool_calls: Some([more]),
                                            ..Delta::default()
                                        },
                                        None,
                                    ));
                                }
                            }
                        }
                    }
                    finishes.push(s.finish_reason(req));
                }
                content_end = events.len();
                for (index, finish) in (0..).zip(finishes) {
                    events.push(chunk(index, Delta::default(), Some(finish)));
                }
                if req.include_usage {
                    events.push(sse(&to_json(&ChatChunk {
                        id: &ids.id,
                        object: "chat.completion.chunk",
                        created: CREATED,
                        model: &req.model,
                        choices: &[],
                        usage: Some(Some(UsageJson::chat(usage(req)))),
                    })));
                }
            }
            Endpoint::Completions => {
                let chunk = |text: &str, finish: Option<&'static str>| {
                    sse(&to_json(&TextCompletion {
                        id: &ids.id,
                        object: "text_completion",
                        created: CREATED,
                        model: &req.model,
                        choices: &[TextChoice {
                            text,
                            index: 0,
                            logprobs: None,
                            finish_reason: finish,
                        }],
                        usage: usage_field(None),
                    }))
                };
                for piece in pieces(req, 0) {
                    events.push(chunk(&piece, None));
                }
                content_end = events.len();
                events.push(chunk("", Some(finish_reason(req))));
                if req.include_usage {
                    events.push(sse(&to_json(&TextCompletion {
                        id: &ids.id,
                        object: "text_completion",
                        created: CREATED,
                        model: &req.model,
                        choices: &[],
                        usage: Some(Some(UsageJson::plain(usage(req)))),
                    })));
                }
            }
            Endpoint::Embeddings => {
                content_end = 0;
                events.push(sse(
                    br#"{"error":{"message":"`stream` is not supported for embeddings","type":"invalid_request_error","param":"stream","code":null}}"#,
                ));
            }
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        MockStream {
            events: events.into_iter(),
            content_end,
        }
    }

    /// Events not yet yielded (all of them before iteration starts).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when every event has been yielded.
    pub fn is_empty(&self) -> bool {
        self.events.len() == 0
    }

    /// The wait before event `event_index` (counted from the start of the stream): like
    /// [`MockTiming::delay_before`], but zero for the trailing finish/usage/`[DONE]` events.
    pub fn delay_before(&self, timing: &MockTiming, event_index: usize) -> Duration {
        if event_index == 0 {
            timing.ttft
        } else if event_index < self.content_end {
            timing.per_token()
        } else {
            Duration::ZERO
        }
    }
}

impl Iterator for MockStream {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        self.events.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.events.size_hint()
    }
}

impl ExactSizeIterator for MockStream {}

// === synthesis helpers ===

fn completion_tokens(req: &MockRequest) -> u32 {
    if let Some(v) = &req.verdict {
        return u32::try_from(v.split(' ').count()).unwrap_or(u32::MAX);
    }
    match req.endpoint {
        Endpoint::Embeddings => 0,
        Endpoint::ChatCompletions | Endpoint::Completions => {
            req.max_tokens.map_or(DEFAULT_COMPLETION_TOKENS, |m| {
                m.min(DEFAULT_COMPLETION_TOKENS)
            })
        }
    }
}

/// The answer's words, drawn from [`WORDS`] by splitmix64 seeded with the request seed (or a
/// judge request's verdict, word by word, so joined with spaces it is the verdict again).
fn words(req: &MockRequest, choice: u32) -> Box<dyn Iterator<Item = &str> + '_> {
    if let Some(v) = &req.verdict {
        return Box::new(v.split(' '));
    }
    let mut rng = SplitMix64(req.seed ^ u64::from(choice).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    Box::new(
        (0..completion_tokens(req))
            .map(move |_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]),
    )
}

/// The content pieces of a stream: the words, each after the first with a leading space.
fn pieces(req: &MockRequest, choice: u32) -> impl Iterator<Item = String> + '_ {
    words(req, choice).enumerate().map(|(i, w)| {
        if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        }
    })
}

/// A unit-length vector for input `index`.
fn embedding(seed: u64, index: u32, dimensions: u32) -> Vec<f32> {
    let mut rng = SplitMix64(seed ^ u64::from(index).wrapping_mul(0xA076_1D64_78BD_642F));
    let raw: Vec<f64> = (0..dimensions)
        // 53 random bits mapped onto [-1, 1).
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 };
    raw.iter().map(|x| (x * scale) as f32).collect()
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Ids {
    id: String,
}

impl Ids {
    fn new(req: &MockRequest) -> Ids {
        let prefix = match req.endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::ChatCompletions | Endpoint::Embeddings => "chatcmpl",
        };
        Ids {
            id: format!("{prefix}-mock-{:016x}", req.seed),
        }
    }
}

fn sse(json: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(json.len() + 8);
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(json);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// Serializes one of the private answer types below. They only hold strings and numbers, so
/// this cannot fail in practice; if it ever did, the answer says so instead of panicking.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(
            r#"{{"error":{{"message":"mock serialization failed: {e}","type":"server_error","code":null}}}}"#
        )
        .into_bytes()
    })
}

// === request parsing helpers ===

/// Running FNV-1a hash and word count of a request's text.
struct TextAcc {
    hash: u64,
    tokens: u32,
}

impl TextAcc {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        TextAcc {
            hash: Self::FNV_OFFSET,
            tokens: 0,
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(Self::FNV_PRIME);
        }
    }

    /// Hashes a separator byte (ASCII unit/record separators keep fields apart).
    fn sep(&mut self, b: u8) {
        self.bytes(&[b]);
    }

    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
        self.add_tokens(s.split_whitespace().count());
    }

    fn add_tokens(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(n);
    }

    /// A token array: hashes each number, counts the elements.
    fn token_array(&mut self, items: &[Value], field: &str) -> Result<(), String> {
        for item in items {
            let Some(n) = item.as_u64() else {
                return Err(format!(
                    "`{field}` token arrays must hold non-negative integers"
                ));
            };
            self.bytes(&n.to_le_bytes());
        }
        self.add_tokens(items.len());
        Ok(())
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`{key}` must be a boolean")),
    }
}

/// An optional integer ≥ 1 that fits in u32.
fn opt_count(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().map(u32::try_from) {
            Some(Ok(n)) if n >= 1 => Ok(Some(n)),
            _ => Err(format!(
                "`{key}` must be an integer between 1 and {}",
                u32::MAX
            )),
        },
    }
}

/// Reads `messages`: returns their number and feeds their text to `acc`.
fn chat_messages(obj: &Map<String, Value>, acc: &mut TextAcc) -> Result<u32, String> {
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => return Err("`messages` is required".to_owned()),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(_) => return Err("`messages` must be a non-empty array".to_owned()),
    };
    for (i, message) in messages.iter().enumerate() {
        let Some(message) = message.as_object() else {
            return Err(format!("`messages[{i}]` must be an object"));
        };
        let Some(role) = message.get("role").and_then(Value::as_str) else {
            return Err(format!("`messages[{i}].role` is required"));
        };
        acc.bytes(role.as_bytes());
        acc.sep(0x1f);
        match message.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => acc.text(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(text) = part.get("text").and_then(Value::as_str) {
                        acc.text(text);
                        acc.sep(0x1f);
                    }
                }
            }
            Some(_) => {
                return Err(format!(
                    "`messages[{i}].content` must be a string or an array of content parts"
                ));
            }
        }
        acc.sep(0x1e);
        acc.add_tokens(TOKENS_PER_MESSAGE as usize);
    }
    Ok(u32::try_from(messages.len()).unwrap_or(u32::MAX))
}

/// Reads `prompt` or `input`: a string, an array of strings, a token array or an array of token
/// arrays. Returns the number of inputs and feeds their text to `acc`.
fn inputs(obj: &Map<String, Value>, field: &str, acc: &mut TextAcc) -> Result<u32, String> {
    let shape_error = || {
        format!(
            "`{field}` must be a string, an array of strings, a token array or an array of token arrays"
        )
    };
    match obj.get(field) {
        None | Some(Value::Null) => Err(format!("`{field}` is required")),
        Some(Value::String(s)) => {
            acc.text(s);
            Ok(1)
        }
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(format!("`{field}` must not be empty"));
            }
            if items.iter().all(Value::is_number) {
                acc.token_array(items, field)?;
                return Ok(1);
            }
            for item in items {
                match item {
                    Value::String(s) => acc.text(s),
                    Value::Array(tokens) => acc.token_array(tokens, field)?,
                    _ => return Err(shape_error()),
                }
                acc.sep(0x1e);
            }
            Ok(u32::try_from(items.len()).unwrap_or(u32::MAX))
        }
        Some(_) => Err(shape_error()),
    }
}

// === wire types (serialization only) ===

#[derive(Serialize)]
struct UsageJson {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionDetails>,
}

impl UsageJson {
    fn plain(u: MockUsage) -> Self {
        UsageJson {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }
    }

    fn chat(u: MockUsage) -> Self {
        UsageJson {
            prompt_tokens_details: Some(PromptDetails { cached_tokens: 0 }),
            completion_tokens_details: Some(CompletionDetails {
                reasoning_tokens: 0,
            }),
            ..UsageJson::plain(u)
        }
    }
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u32,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u32,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChatChoice<'a>>,
    usage: UsageJson,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallJson<'a>>>,
}

#[derive(Serialize)]
struct ToolCallJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionJson<'a>,
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChatChunkChoice<'a>],
    /// Absent without include_usage; `null` on content chunks with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageJson>>,
}

#[derive(Serialize)]
struct ChatChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [TextChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageJson>>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingJson>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingJson {
    object: &'static str,
    index: u32,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> MockRequest {
        MockRequest::from_body(Endpoint::ChatCompletions, body.as_bytes()).unwrap()
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    /// The JSON of every event but the final `[DONE]`, which is checked to be last.
    fn events(req: &MockRequest) -> Vec<Value> {
        let raw: Vec<Bytes> = MockStream::new(req).collect();
        let (done, rest) = raw.split_last().unwrap();
        assert_eq!(&done[..], b"data: [DONE]\n\n");
        rest.iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                let body = s
                    .strip_prefix("data: ")
                    .unwrap()
                    .strip_suffix("\n\n")
                    .unwrap();
                assert!(!body.contains('\n'), "one line per event: {s:?}");
                json(body.as_bytes())
            })
            .collect()
    }

    const HELLO: &str = r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there world"}]}"#;

    #[test]
    fn parses_chat_and_counts_prompt_tokens() {
        let req = chat(HELLO);
        assert_eq!(req.endpoint, Endpoint::ChatCompletions);
        assert_eq!(req.model, "m");
        assert!(!req.stream && !req.include_usage);
        assert_eq!(req.max_tokens, None);
        // 2 + 3 words, + 3 per message.
        assert_eq!(req.prompt_tokens, 11);
        assert_eq!(req.inputs, 2);
    }

    #[test]
    fn same_prompt_same_answer_other_prompt_other_answer() {
        let a = chat(HELLO);
        let b = chat(&HELLO.replace(r#""model":"m""#, r#""model":"other","temperature":1"#));
        assert_eq!(a.seed, b.seed, "model and sampling params are not hashed");
        assert_eq!(completion_text(&a), completion_text(&b));
        assert_eq!(response_json(&a), response_json(&a));
        let c = chat(&HELLO.replace("hello", "goodbye"));
        assert_ne!(a.seed, c.seed);
        assert_ne!(completion_text(&a), completion_text(&c));
        assert_eq!(completion_text(&a).split(' ').count(), 16);
    }

    #[test]
    fn chat_non_stream_shape_and_usage() {
        let req = chat(HELLO);
        let v = json(&response_json(&req));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], format!("chatcmpl-mock-{:016x}", req.seed));
        assert_eq!(v["model"], "m");
        assert_eq!(v["created"], CREATED);
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["choices"][0]["message"]["content"], completion_text(&req));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 11);
        assert_eq!(v["usage"]["completion_tokens"], 16);
        assert_eq!(v["usage"]["total_tokens"], 27);
    }

    #[test]
    fn max_tokens_cuts_with_length() {
        let req = chat(&HELLO.replace(r#""model":"m""#, r#""model":"m","max_tokens":5"#));
        assert_eq!(req.max_tokens, Some(5));
        assert_eq!(finish_reason(&req), "length");
        let v = json(&response_json(&req));
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 5);
        let full = completion_text(&chat(HELLO));
        assert!(full.starts_with(&completion_text(&req)));
        // max_completion_tokens wins over max_tokens; 16 or more is not a cut.
        let req = chat(&HELLO.replace(
            r#""model":"m""#,
            r#""model":"m","max_tokens":3,"max_completion_tokens":100"#,
        ));
        assert_eq!(req.max_tokens, Some(100));
        assert_eq!(finish_reason(&req), "stop");
        assert_eq!(usage(&req).completion_tokens, 16);
    }

    #[test]
    fn chat_stream_without_usage() {
        let req = chat(&HELLO.replace(r#""model":"m""#, r#""model":"m","stream":true"#));
        assert!(req.stream && !req.include_usage);
        let evs = events(&req);
        assert_eq!(MockStream::new(&req).len(), evs.len() + 1);
        assert_eq!(evs.len(), 1 + 16 + 1);
        assert_eq!(evs[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(evs[0]["choices"][0]["delta"]["content"], "");
        let text: String = evs[1..17]
            .iter()
            .map(|e| e["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, completion_text(&req));
        let last = &evs[17];
        assert_eq!(last["choices"][0]["delta"], serde_json::json!({}));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        for e in &evs {
            assert_eq!(e["object"], "chat.completion.chunk");
            assert_eq!(e["id"], format!("chatcmpl-mock-{:016x}", req.seed));
            assert!(
                e.get("usage").is_none(),
                "no usage key without include_usage"
            );
        }
    }

    #[test]
    fn chat_stream_with_usage_matches_non_stream() {
        let req = chat(&HELLO.replace(
            r#""model":"m""#,
            r#""model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":4"#,
        ));
        assert!(req.include_usage);
        let evs = events(&req);
        assert_eq!(evs.len(), 1 + 4 + 1 + 1);
        let (usage_chunk, rest) = evs.split_last().unwrap();
        assert_eq!(usage_chunk["choices"], serde_json::json!([]));
        for e in rest {
            assert!(e["usage"].is_null() && e.get("usage").is_some());
        }
        assert_eq!(
            rest.last().unwrap()["choices"][0]["finish_reason"],
            "length"
        );
        let non_stream = json(&response_json(&req));
        assert_eq!(usage_chunk["usage"], non_stream["usage"]);
        assert_eq!(usage_chunk["usage"]["total_tokens"], req.prompt_tokens + 4);
    }

    #[test]
    fn completions_shapes() {
        let body = r#"{"model":"c","prompt":"once upon a time","max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}"#;
        let req = MockRequest::from_body(Endpoint::Completions, body.as_bytes()).unwrap();
        assert_eq!(req.prompt_tokens, 4);
        let v = json(&response_json(&req));
        assert_eq!(v["object"], "text_completion");
        assert!(v["id"].as_str().unwrap().starts_with("cmpl-mock-"));
        assert_eq!(v["choices"][0]["text"], completion_text(&req));
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 7);
        let evs = events(&req);
        assert_eq!(evs.len(), 3 + 1 + 1);
        let text: String = evs[..3]
            .iter()
            .map(|e| e["choices"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, completion_text(&req));
        assert_eq!(evs[3]["choices"][0]["finish_reason"], "length");
        assert_eq!(evs[4]["choices"], serde_json::json!([]));
        assert_eq!(evs[4]["usage"], v["usage"]);
        // Arrays of prompts and token arrays.
        let req = MockRequest::from_body(
            Endpoint::Completions,
            br#"{"model":"c","prompt":[[1,2,3],"a b"]}"#,
        )
        .unwrap();
        assert_eq!((req.inputs, req.prompt_tokens), (2, 5));
        let req = MockRequest::from_body(Endpoint::Completions, br#"{"model":"c","prompt":[7,8]}"#)
            .unwrap();
        assert_eq!((req.inputs, req.prompt_tokens), (1, 2));
    }

    #[test]
    fn embeddings_shape() {
        let body = r#"{"model":"e","input":["alpha beta","gamma"],"dimensions":16}"#;
        let req = MockRequest::from_body(Endpoint::Embeddings, body.as_bytes()).unwrap();
        assert_eq!((req.inputs, req.dimensions, req.prompt_tokens), (2, 16, 3));
        let v = json(&response_json(&req));
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "e");
        assert_eq!(
            v["usage"],
            serde_json::json!({"prompt_tokens":3,"total_tokens":3})
        );
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            let e: Vec<f64> = d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(e.len(), 16);
            let norm: f64 = e.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "unit length, got {norm}");
        }
        assert_ne!(data[0]["embedding"], data[1]["embedding"]);
        assert_eq!(response_json(&req), response_json(&req));
        let one =
            MockRequest::from_body(Endpoint::Embeddings, br#"{"model":"e","input":"x"}"#).unwrap();
        assert_eq!((one.inputs, one.dimensions), (1, DEFAULT_DIMENSIONS));
    }

    /// Content, tool calls `(id, name, arguments)` and finish reason of one choice.
    type Choice = (String, Vec<(String, String, String)>, String);

    /// Reassembles a chat stream per choice: (content, tool calls as (id, name, arguments),
    /// finish reason), checking every chunk names its choice and call by index.
    fn reassemble(events: &[Value]) -> Vec<Choice> {
        let mut out: Vec<Choice> = Vec::new();
        for ev in events {
            for c in ev["choices"].as_array().unwrap() {
                let i = c["index"].as_u64().unwrap() as usize;
                if out.len() <= i {
                    out.resize(i + 1, Default::default());
                }
                let slot = &mut out[i];
                if let Some(t) = c["delta"]["content"].as_str() {
                    slot.0.push_str(t);
                }
                for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    let k = tc["index"].as_u64().unwrap() as usize;
                    if let Some(id) = tc["id"].as_str() {
                        assert_eq!(k, slot.1.len(), "a new call opens at the next index");
                        let name = tc["function"]["name"].as_str().unwrap().to_owned();
                        slot.1.push((id.to_owned(), name, String::new()));
                    }
                    slot.1[k]
                        .2
                        .push_str(tc["function"]["arguments"].as_str().unwrap());
                }
                if let Some(f) = c["finish_reason"].as_str() {
                    slot.2 = f.to_owned();
                }
            }
        }
        out
    }

    /// Whole answer's choices in the same form as [`reassemble`].
    fn whole(req: &MockRequest) -> Vec<Choice> {
        let v = json(&response_json(req));
        v["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let calls = c["message"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        assert_eq!(t["type"], "function");
                        let s = |p: &str| t.pointer(p).unwrap().as_str().unwrap().to_owned();
                        (s("/id"), s("/function/name"), s("/function/arguments"))
                    })
                    .collect();
                (
                    c["message"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    calls,
                    c["finish_reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn shaped_answers_stream_what_the_whole_answer_says() {
        let tools = r#""tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}},{"type":"function","function":{"name":"lookup"}},{"type":"function","function":{"name":"third"}}]"#;
        let schema = r#""response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","age","ok"]}}}"#;
        let msgs = r#""model":"m","messages":[{"role":"user","content":"weather in Paris"}]"#;
        let plain = completion_text(&chat(&format!("{{{msgs}}}")));
        let first = plain.split(' ').next().unwrap();
        // (extra fields, expected choices: (content check, tool names, finish))
        type Case<'a> = (String, Vec<(Option<Value>, Vec<&'a str>, &'a str)>);
        let cases: Vec<Case<'_>> = vec![
            (String::new(), vec![(None, vec![], "stop")]),
            (
                format!(",{tools}"),
                vec![(None, vec!["get_weather", "lookup"], "tool_calls")],
            ),
            (
                format!(r#",{tools},"tool_choice":"required""#),
                vec![(None, vec!["get_weather", "lookup"], "tool_calls")],
            ),
            (
                format!(r#",{tools},"tool_choice":"none""#),
                vec![(None, vec![], "stop")],
            ),
            (
                format!(
                    r#",{tools},"tool_choice":{{"type":"function","function":{{"name":"third"}}}}"#
                ),
                vec![(None, vec!["third"], "tool_calls")],
            ),
            (
                r#","response_format":{"type":"json_object"}"#.to_owned(),
                vec![(Some(serde_json::json!({"answer": plain})), vec![], "stop")],
            ),
            (
                format!(",{schema}"),
                vec![(
                    Some(serde_json::json!({"name": plain, "age": 42, "ok": true})),
                    vec![],
                    "stop",
                )],
            ),
            (r#","n":3"#.to_owned(), vec![(None, vec![], "stop"); 3]),
            (
                format!(r#",{tools},"n":2"#),
                vec![(None, vec!["get_weather", "lookup"], "tool_calls"); 2],
            ),
        ];
        for (extra, expected) in cases {
            let body = format!(
                r#"{{{msgs}{extra},"stream":true,"stream_options":{{"include_usage":true}}}}"#
            );
            let req = chat(&body);
            let streamed = reassemble(&events(&req));
            let whole_answer = whole(&req);
            assert_eq!(
                streamed, whole_answer,
                "{extra}: the stream reassembles to the answer"
            );
            assert_eq!(whole_answer.len(), expected.len(), "{extra}: choices");
            for (i, ((content, calls, finish), (json_content, names, want_finish))) in
                whole_answer.iter().zip(&expected).enumerate()
            {
                assert_eq!(finish, want_finish, "{extra}");
                let got: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
                assert_eq!(&got, names, "{extra}");
                for (k, (id, _, args)) in calls.iter().enumerate() {
                    assert_eq!(id, &tool_call_id(req.seed, k));
                    let text = choice_text(&req, i as u32);
                    let word = text.split(' ').next().unwrap();
                    assert_eq!(json(args.as_bytes()), serde_json::json!({"query": word}));
                    assert!(i > 0 || word == first);
                }
                match json_content {
                    Some(v) => assert_eq!(&json(content.as_bytes()), v, "{extra}"),
                    None if calls.is_empty() => {
                        assert_eq!(
                            content.split(' ').count(),
                            DEFAULT_COMPLETION_TOKENS as usize
                        );
                        assert_eq!(
                            i == 0,
                            *content == plain,
                            "{extra}: choice {i} differs from choice 0 only"
                        );
                    }
                    None => assert!(content.is_empty()),
                }
            }
            let u = usage(&req);
            assert_eq!(
                u.completion_tokens,
                DEFAULT_COMPLETION_TOKENS * expected.len() as u32
            );
            let last = events(&req).pop().unwrap();
            assert_eq!(last["usage"]["completion_tokens"], u.completion_tokens);
        }
        // A tool call answer has `content: null`, as OpenAI sends it.
        let v = json(&response_json(&chat(&format!("{{{msgs},{tools}}}"))));
        assert!(v["choices"][0]["message"]["content"].is_null());
    }

    #[test]
    fn shape_errors() {
        let err = |extra: &str| {
            MockRequest::from_body(
                Endpoint::ChatCompletions,
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#)
                    .as_bytes(),
            )
            .unwrap_err()
        };
        assert_eq!(err(r#","n":17"#), "`n` must be at most 16");
        assert!(err(r#","n":0"#).starts_with("`n` must be an integer"));
        assert!(err(r#","tool_choice":"sometimes""#).starts_with("`tool_choice` must be"));
        assert_eq!(
            err(r#","tool_choice":{"type":"function"}"#),
            "`tool_choice.function.name` is required"
        );
        assert!(
            err(r#","response_format":{"type":"yaml"}"#)
                .starts_with("`response_format.type` must be")
        );
        assert_eq!(err(r#","tools":{}"#), "`tools` must be an array");
    }

    #[test]
    fn request_errors() {
        let err = |ep, body: &str| MockRequest::from_body(ep, body.as_bytes()).unwrap_err();
        assert!(err(Endpoint::ChatCompletions, "{").starts_with("invalid JSON: "));
        assert_eq!(
            err(Endpoint::ChatCompletions, r#"{"messages":[]}"#),
            "`model` is required"
        );
        assert_eq!(
            err(Endpoint::ChatCompletions, r#"{"model":"m"}"#),
            "`messages` is required"
        );
        assert_eq!(
            err(Endpoint::Completions, r#"{"model":"m"}"#),
            "`prompt` is required"
        );
        assert_eq!(
            err(Endpoint::Embeddings, r#"{"model":"m"}"#),
            "`input` is required"
        );
        assert_eq!(
            err(
                Endpoint::Embeddings,
                r#"{"model":"m","input":"x","stream":true}"#
            ),
            "`stream` is not supported for embeddings"
        );
        assert!(
            err(
                Endpoint::ChatCompletions,
                &HELLO.replace("{\"model\"", "{\"max_tokens\":0,\"model\"")
            )
            .contains("max_tokens")
        );
        assert!(
            err(
                Endpoint::ChatCompletions,
                &HELLO.replace(
                    "{\"model\"",
                    "{\"stream_options\":{\"include_usage\":true},\"model\""
                )
            )
            .contains("stream_options")
        );
        assert!(err(Endpoint::Embeddings, r#"{"model":"m","input":[]}"#).contains("empty"));
    }

    #[test]
    fn timing() {
        let t = MockTiming {
            ttft: Duration::from_millis(100),
            tokens_per_s: 50.0,
        };
        assert_eq!(t.delay_before(0), Duration::from_millis(100));
        assert_eq!(t.delay_before(1), Duration::from_millis(20));
        assert_eq!(MockTiming::default().delay_before(0), Duration::ZERO);
        assert_eq!(MockTiming::default().delay_before(5), Duration::ZERO);
        let req = chat(&HELLO.replace(
            r#""model":"m""#,
            r#""model":"m","stream":true,"max_tokens":2"#,
        ));
        let s = MockStream::new(&req);
        // role, 2 words, finish, [DONE]
        assert_eq!(s.len(), 5);
        let delays: Vec<Duration> = (0..s.len()).map(|i| s.delay_before(&t, i)).collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, [ms(100), ms(20), ms(20), ms(0), ms(0)]);
        assert_eq!(t.response_delay(&req), ms(120));
    }
}
