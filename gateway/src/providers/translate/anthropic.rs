//! Anthropic Messages API (`POST /v1/messages`, `anthropic-version` header, named SSE events).
//!
//! Request: system and developer messages are hoisted into `system`; the conversation becomes
//! alternating `user`/`assistant` turns (consecutive turns of one role merged, tool results
//! first in their user turn, empty text blocks dropped since the API rejects them); tool calls
//! become `tool_use` blocks with parsed `input`, tool messages `tool_result` blocks. See the
//! parent module for the refusals and defaults (`max_tokens`, `temperature`, `n`,
//! `json_object`, `reasoning_effort`).
//!
//! Response and stream: text → `content`; `tool_use` → `tool_calls` (in streams the OpenAI
//! index is the running count of tool blocks, not Anthropic's block index, which also counts
//! text and thinking); `thinking` → `reasoning_content` plus `thinking_blocks` with the
//! signature, for the round trip. Usage: `prompt_tokens` = input + cache read + cache write;
//! streamed usage is cumulative, merged field by field (set when present, never added, never
//! cleared by a later event that omits it).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::openai::{
    self, ChatRequest, ChoiceOut, ChunkWriter, ImageUrl, Part, ReasoningEffort, ResponseFormat,
    ThinkingBlock, ToolCallOut, ToolChoice, Turn, Usage,
};
use super::{
    AnthropicOptions, Endpoint, FinishReason, Kind, ProviderError, RequestState, ResponseCtx,
    TranslateError, Translated, UpstreamRequest, stream_error, unsupported,
};

const KIND: Kind = Kind::Anthropic;

/// The forced tool that carries a `json_object` answer.
pub const JSON_TOOL: &str = "json_response";

/// Image types the API accepts in base64 sources.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// `thinking.budget_tokens` per `reasoning_effort` (the API's minimum is 1024).
fn thinking_budget(effort: ReasoningEffort) -> Option<u64> {
    match effort {
        ReasoningEffort::None => None,
        ReasoningEffort::Minimal | ReasoningEffort::Low => Some(1024),
        ReasoningEffort::Medium => Some(4096),
        ReasoningEffort::High => Some(16384),
    }
}

// === request ===

pub fn request(
    body: &[u8],
    endpoint: Endpoint,
    upstream_model: &str,
    opts: &AnthropicOptions,
) -> Result<UpstreamRequest, TranslateError> {
    if endpoint == Endpoint::Embeddings {
        return Err(unsupported(KIND, "model", "has no embeddings API"));
    }
    let req = openai::parse_chat(body)?;
    let mut state = RequestState::new(KIND, endpoint, upstream_model);
    state.stream = req.stream;
    state.include_usage = req.include_usage;
    let out = body_json(&req, upstream_model, opts, &mut state)?;
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("anthropic-version", opts.version.clone()),
    ];
    if !opts.beta.is_empty() {
        headers.push(("anthropic-beta", opts.beta.join(",")));
    }
    if req.stream {
        headers.push(("accept", "text/event-stream".to_owned()));
    }
    Ok(UpstreamRequest {
        method: "POST",
        path_and_query: "/v1/messages".into(),
        headers,
        body: Bytes::from(out.to_string()),
        stream: req.stream,
        state,
    })
}

fn body_json(
    req: &ChatRequest,
    model: &str,
    opts: &AnthropicOptions,
    state: &mut RequestState,
) -> Result<Value, TranslateError> {
    if req.n > 1 {
        return Err(unsupported(
            KIND,
            "n",
            "answers with one choice; `n` must be 1",
        ));
    }
    if req.temperature.is_some_and(|t| t > 1.0) {
        return Err(unsupported(
            KIND,
            "temperature",
            "accepts temperatures from 0 to 1",
        ));
    }
    for (field, value) in [
        ("presence_penalty", req.presence_penalty),
        ("frequency_penalty", req.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(unsupported(KIND, field, "has no sampling penalties"));
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let messages = messages(&req.turns)?;
    if messages.is_empty() {
        return Err(TranslateError::Invalid {
            field: "messages".into(),
            reason: "needs at least one user or assistant message".into(),
        });
    }
    out.insert("messages".into(), Value::Array(messages));
    if !req.system.is_empty() {
        let blocks: Vec<Value> = req
            .system
            .iter()
            .map(|t| json!({"type": "text", "text": t}))
            .collect();
        out.insert("system".into(), Value::Array(blocks));
    }

    let budget = req.reasoning_effort.and_then(thinking_budget);
    let max_tokens = match (req.max_tokens, budget) {
        (Some(m), Some(b)) => {
            if m <= 1024 {
                return Err(unsupported(
                    KIND,
                    "reasoning_effort",
                    "needs `max_tokens` above 1024 to think",
                ));
            }
            out.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b.min(m - 1)}),
            );
            m
        }
        (None, Some(b)) => {
            out.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
            u64::from(opts.max_tokens_for(model)) + b
        }
        (Some(m), None) => m,
        (None, None) => u64::from(opts.max_tokens_for(model)),
    };
    out.insert("max_tokens".into(), json!(max_tokens));
    if budget.is_some() {
        if req.temperature.is_some_and(|t| t != 1.0) {
            return Err(unsupported(
                KIND,
                "temperature",
                "does not allow changing the temperature while reasoning",
            ));
        }
        if req.top_k.is_some() {
            return Err(unsupported(
                KIND,
                "top_k",
                "does not allow `top_k` while reasoning",
            ));
        }
        if matches!(
            req.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Function(_))
        ) {
            return Err(unsupported(
                KIND,
                "tool_choice",
                "cannot force a tool while reasoning",
            ));
        }
    }

    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        out.insert("top_k".into(), json!(k));
    }
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(req.stop));
    }
    if let Some(user) = &req.user {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
    }

    tools(req, &mut out)?;
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            out.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": schema}}),
            );
        }
        Some(ResponseFormat::JsonObject) => {
            if !req.tools.is_empty() {
                return Err(unsupported(
                    KIND,
                    "response_format",
                    "has no JSON mode; Sluice emulates it with a forced tool, which cannot be combined with `tools`",
                ));
            }
            if budget.is_some() {
                return Err(unsupported(
                    KIND,
                    "response_format",
                    "has no JSON mode; Sluice emulates it with a forced tool, which cannot be combined with reasoning",
                ));
            }
            out.insert(
                "tools".into(),
                json!([{
                    "name": JSON_TOOL,
                    "description": "Respond with a JSON object.",
                    "input_schema": {"type": "object"},
                }]),
            );
            out.insert(
                "tool_choice".into(),
                json!({"type": "tool", "name": JSON_TOOL}),
            );
            state.json_tool = Some(JSON_TOOL.into());
        }
    }
    Ok(Value::Object(out))
}

fn tools(req: &ChatRequest, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    if req.tools.is_empty() {
        return Ok(());
    }
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut schema = t
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            if let Value::Object(s) = &mut schema {
                s.entry("type").or_insert_with(|| json!("object"));
            }
            let mut tool = Map::new();
            tool.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                tool.insert("description".into(), json!(d));
            }
            tool.insert("input_schema".into(), schema);
            if let Some(strict) = t.strict {
                tool.insert("strict".into(), json!(strict));
            }
            Value::Object(tool)
        })
        .collect();
    out.insert("tools".into(), Value::Array(tools));
    let mut choice = match &req.tool_choice {
        None if req.parallel_tool_calls == Some(false) => json!({"type": "auto"}),
        None => return Ok(()),
        Some(ToolChoice::None) => json!({"type": "none"}),
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
    };
    if req.parallel_tool_calls == Some(false) && req.tool_choice != Some(ToolChoice::None) {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    out.insert("tool_choice".into(), choice);
    Ok(())
}

/// OpenAI turns → alternating Anthropic messages.
fn messages(turns: &[Turn]) -> Result<Vec<Value>, TranslateError> {
    let mut out: Vec<(&'static str, Vec<Value>)> = vec![];
    for turn in turns {
        let (role, blocks) = match turn {
            Turn::User { parts, .. } => ("user", user_blocks(parts)?),
            Turn::Tool {
                tool_call_id,
                content,
                ..
            } => {
                let mut block = json!({"type": "tool_result", "tool_use_id": tool_call_id});
                if !content.is_empty() {
                    block["content"] = json!(content);
                }
                ("user", vec![block])
            }
            Turn::Assistant {
                text,
                tool_calls,
                thinking,
                ..
            } => {
                let mut blocks: Vec<Value> = thinking.iter().map(thinking_block).collect();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                blocks.extend(tool_calls.iter().map(|c| {
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
                }));
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Tool results must open the turn that answers the tool calls.
                let (mut results, rest): (Vec<Value>, Vec<Value>) =
                    blocks.into_iter().partition(|b| b["type"] == "tool_result");
                results.extend(rest);
                blocks = results;
            }
            json!({"role": role, "content": blocks})
        })
        .collect())
}

fn thinking_block(b: &ThinkingBlock) -> Value {
    match b {
        ThinkingBlock::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
        ThinkingBlock::Redacted { data } => json!({"type": "redacted_thinking", "data": data}),
    }
}

fn user_blocks(parts: &[Part]) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Text(t) if t.is_empty() => {}
            Part::Text(t) => blocks.push(json!({"type": "text", "text": t})),
            Part::Image { url, path } => {
                let field = format!("{path}.image_url.url");
                let source = match url {
                    ImageUrl::Data { media_type, data } => {
                        if !IMAGE_TYPES.contains(&media_type.as_str()) {
                            return Err(unsupported(
                                KIND,
                                field,
                                "accepts jpeg, png, gif and webp images",
                            ));
                        }
                        json!({"type": "base64", "media_type": media_type, "data": data})
                    }
                    ImageUrl::Http(u) => json!({"type": "url", "url": u}),
                    ImageUrl::Other(_) => {
                        return Err(unsupported(
                            KIND,
                            field,
                            "takes images as http(s) or data URLs",
                        ));
                    }
                };
                blocks.push(json!({"type": "image", "source": source}));
            }
            Part::Audio { path, .. } => {
                return Err(unsupported(
                    KIND,
                    format!("{path}.type"),
                    "does not take audio input",
                ));
            }
        }
    }
    Ok(blocks)
}

// === usage ===

/// Anthropic usage fields as last reported; each is set when present and never cleared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageFields {
    pub input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub thinking_tokens: Option<u64>,
}

impl UsageFields {
    /// Merges a `usage` object (cumulative: the latest value of each field wins).
    pub fn merge(&mut self, usage: &Value) {
        let get = |key: &str| usage.get(key).and_then(Value::as_u64);
        for (slot, key) in [
            (&mut self.input_tokens, "input_tokens"),
            (&mut self.cache_read_input_tokens, "cache_read_input_tokens"),
            (
                &mut self.cache_creation_input_tokens,
                "cache_creation_input_tokens",
            ),
            (&mut self.output_tokens, "output_tokens"),
        ] {
            if let Some(v) = get(key) {
                *slot = Some(v);
            }
        }
        if let Some(v) = usage
            .pointer("/output_tokens_details/thinking_tokens")
            .and_then(Value::as_u64)
        {
            self.thinking_tokens = Some(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn to_usage(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0) + read + write,
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: self.thinking_tokens.unwrap_or(0),
        }
    }
}

// === response ===

pub fn response(
    state: &RequestState,
    ctx: &ResponseCtx<'_>,
    body: &[u8],
) -> Result<Translated, ProviderError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ProviderError::bad_response(KIND, e))?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(stream_error(KIND, None, body));
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::bad_response(KIND, "no `content` in the message"))?;
    let mut choice = ChoiceOut {
        content: String::new(),
        reasoning: String::new(),
        thinking: vec![],
        tool_calls: vec![],
        finish: FinishReason::Stop,
    };
    let mut json_answered = false;
    for block in content {
        let text = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
        match block.get("type").and_then(Value::as_str) {
            Some("text") => choice.content.push_str(text("text")),
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                if state.json_tool.as_deref() == Some(text("name")) {
                    choice.content.push_str(&input.to_string());
                    json_answered = true;
                } else {
                    choice.tool_calls.push(ToolCallOut {
                        id: text("id").to_owned(),
                        name: text("name").to_owned(),
                        arguments: input.to_string(),
                        thought_signature: None,
                    });
                }
            }
            Some("thinking") => {
                choice.reasoning.push_str(text("thinking"));
                choice.thinking.push(ThinkingBlock::Thinking {
                    thinking: text("thinking").to_owned(),
                    signature: text("signature").to_owned(),
                });
            }
            Some("redacted_thinking") => choice.thinking.push(ThinkingBlock::Redacted {
                data: text("data").to_owned(),
            }),
            // Server tool blocks and anything new have no OpenAI form.
            _ => {}
        }
    }
    let raw_stop = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    choice.finish = match FinishReason::from_anthropic(raw_stop) {
        FinishReason::ToolCalls if json_answered && choice.tool_calls.is_empty() => {
            FinishReason::Stop
        }
        f => f,
    };
    let mut fields = UsageFields::default();
    if let Some(u) = v.get("usage") {
        fields.merge(u);
    }
    let usage = (!fields.is_empty()).then(|| fields.to_usage());
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(ctx.fallback_id)
        .to_owned();
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&state.upstream_model)
        .to_owned();
    let finish = choice.finish;
    Ok(Translated {
        body: openai::chat_completion(&id, ctx.created, &model, &[choice], usage.as_ref()),
        usage,
        finish_reasons: vec![finish],
        provider_finish_reasons: vec![raw_stop.to_owned()],
        id,
        model,
    })
}

// === stream ===

enum Block {
    Text,
    /// A client tool call with its OpenAI index.
    Tool(u32),
    /// The forced `json_object` tool: its input is the answer's content.
    JsonTool,
    Thinking {
        text: String,
        signature: String,
    },
    Other,
}

/// The state of one Anthropic event stream.
pub struct StreamState {
    json_tool: Option<String>,
    blocks: HashMap<u64, Block>,
    usage: UsageFields,
    stop_reason: Option<String>,
    json_answered: bool,
}

impl StreamState {
    pub fn new(json_tool: Option<String>) -> Self {
        Self {
            json_tool,
            blocks: HashMap::new(),
            usage: UsageFields::default(),
            stop_reason: None,
            json_answered: false,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        (!self.usage.is_empty()).then(|| self.usage.to_usage())
    }

    pub fn provider_finish_reasons(&self) -> Vec<String> {
        self.stop_reason.iter().cloned().collect()
    }

    /// One SSE event (`name` from `event:`, `data` its JSON).
    pub fn event(
        &mut self,
        w: &mut ChunkWriter,
        name: Option<&[u8]>,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProviderError> {
        let v: Value =
            serde_json::from_slice(data).map_err(|e| ProviderError::bad_response(KIND, e))?;
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| name.and_then(|n| std::str::from_utf8(n).ok()))
            .unwrap_or_default();
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match ty {
            "message_start" => {
                let message = v.get("message");
                w.set_identity(
                    message.and_then(|m| m.get("id")).and_then(Value::as_str),
                    message.and_then(|m| m.get("model")).and_then(Value::as_str),
                );
                if let Some(u) = message.and_then(|m| m.get("usage")) {
                    self.usage.merge(u);
                }
                w.start(0, out);
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                let field = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default();
                let state = match field("type") {
                    "text" => {
                        w.content(0, field("text"), out);
                        Block::Text
                    }
                    "tool_use" if self.json_tool.as_deref() == Some(field("name")) => {
                        self.json_answered = true;
                        Block::JsonTool
                    }
                    "tool_use" => {
                        let t = w.tool_start(0, field("id"), field("name"), "", None, out);
                        // The input normally streams as deltas; a pre-filled one is sent whole.
                        if let Some(input) = block
                            .get("input")
                            .and_then(Value::as_object)
                            .filter(|i| !i.is_empty())
                        {
                            w.tool_args(0, t, &Value::Object(input.clone()).to_string(), out);
                        }
                        Block::Tool(t)
                    }
                    "thinking" => {
                        w.reasoning(0, field("thinking"), out);
                        Block::Thinking {
                            text: field("thinking").to_owned(),
                            signature: field("signature").to_owned(),
                        }
                    }
                    "redacted_thinking" => {
                        let data = field("data").to_owned();
                        w.thinking_block(0, &ThinkingBlock::Redacted { data }, out);
                        Block::Other
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(index, state);
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let field = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or_default();
                match (self.blocks.get_mut(&index), field("type")) {
                    (_, "text_delta") => w.content(0, field("text"), out),
                    (Some(Block::Tool(t)), "input_json_delta") => {
                        w.tool_args(0, *t, field("partial_json"), out);
                    }
                    (Some(Block::JsonTool), "input_json_delta") => {
                        w.content(0, field("partial_json"), out);
                    }
                    (Some(Block::Thinking { text, .. }), "thinking_delta") => {
                        text.push_str(field("thinking"));
                        w.reasoning(0, field("thinking"), out);
                    }
                    (Some(Block::Thinking { signature, .. }), "signature_delta") => {
                        signature.push_str(field("signature"));
                    }
                    // Citations, deltas of blocks never started, and new delta kinds.
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(Block::Thinking { text, signature }) = self.blocks.remove(&index)
                    && !signature.is_empty()
                {
                    let block = ThinkingBlock::Thinking {
                        thinking: text,
                        signature,
                    };
                    w.thinking_block(0, &block, out);
                }
            }
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(u) = v.get("usage") {
                    self.usage.merge(u);
                }
            }
            "message_stop" => {
                let raw = self.stop_reason.as_deref().unwrap_or("end_turn");
                let finish = match FinishReason::from_anthropic(raw) {
                    FinishReason::ToolCalls if self.json_answered && !w.saw_tool_call(0) => {
                        FinishReason::Stop
                    }
                    f => f,
                };
                w.finish(0, finish, out);
                w.end(self.usage().as_ref(), out);
            }
            "error" => return Err(stream_error(KIND, None, data)),
            // `ping` and event types added later.
            _ => {}
        }
        Ok(())
    }

    pub fn eof(&mut self, w: &mut ChunkWriter, _out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        if w.is_done() {
            return Ok(());
        }
        Err(ProviderError::interrupted(
            KIND,
            "the body ended before `message_stop`",
        ))
    }
}
