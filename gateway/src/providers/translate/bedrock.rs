//! Amazon Bedrock Runtime: Converse (`/model/{id}/converse`), ConverseStream
//! (`/model/{id}/converse-stream`, AWS event-stream frames) and embeddings through InvokeModel
//! (`/model/{id}/invoke`) for Amazon Titan and Cohere embedding models.
//!
//! The model id is one path segment, percent-encoded (`:` → `%3A`, `/` → `%2F` for ARNs);
//! SigV4 then encodes it once more in the canonical request (see `auth`).
//!
//! Request: `system` blocks, alternating `user`/`assistant` messages (consecutive same-role
//! turns merged, tool results first), `toolUse`/`toolResult` blocks, `inferenceConfig` with
//! the only four sampling fields Converse has, `toolConfig`, and `outputConfig.textFormat`
//! for JSON schemas (the schema travels as a *string*). Images must be bytes or S3: Sluice
//! does not fetch http(s) URLs. Converse rejects tool blocks without a `toolConfig`, and has
//! no `tool_choice: none`, so those cases are refused unless the tools can simply be left out.
//!
//! Response and stream: there is no id or model in the body; the id is `x-amzn-RequestId`
//! (or the caller's fallback) and the model is the requested one. `metadata` (usage) comes
//! after `messageStop`; exception frames inside the 200 are errors, and a stream that ends
//! without `messageStop` is cut, never completed.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::eventstream::Frame;
use super::openai::{
    self, ChatRequest, ChoiceOut, ChunkWriter, ImageUrl, Part, ResponseFormat, ThinkingBlock,
    ToolCallOut, ToolChoice, Turn, Usage,
};
use super::{
    BedrockOptions, Endpoint, FinishReason, Kind, ProviderError, RequestState, ResponseCtx,
    TranslateError, Translated, UpstreamRequest, stream_error, unsupported,
};

const KIND: Kind = Kind::Bedrock;

/// The forced tool that carries a `json_object` answer.
pub const JSON_TOOL: &str = "json_response";

/// Percent-encodes a model id as one path segment.
pub fn encode_model_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Embedding model families with a known InvokeModel body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmbedFamily {
    Titan,
    Cohere,
}

fn embed_family(model: &str) -> Option<EmbedFamily> {
    if model.contains("amazon.titan-embed") {
        Some(EmbedFamily::Titan)
    } else if model.contains("cohere.embed") {
        Some(EmbedFamily::Cohere)
    } else {
        None
    }
}

// === request ===

pub fn request(
    body: &[u8],
    endpoint: Endpoint,
    upstream_model: &str,
    _opts: &BedrockOptions,
) -> Result<UpstreamRequest, TranslateError> {
    let mut state = RequestState::new(KIND, endpoint, upstream_model);
    let model = encode_model_id(upstream_model);
    let (path, out) = match endpoint {
        Endpoint::Chat => {
            let req = openai::parse_chat(body)?;
            state.stream = req.stream;
            state.include_usage = req.include_usage;
            let action = if req.stream {
                "converse-stream"
            } else {
                "converse"
            };
            (
                format!("/model/{model}/{action}"),
                chat_body(&req, &mut state)?,
            )
        }
        Endpoint::Embeddings => {
            let req = openai::parse_embeddings(body)?;
            state.base64 = req.base64;
            state.inputs = req.inputs.len();
            let out = match embed_family(upstream_model) {
                Some(EmbedFamily::Titan) => {
                    if req.inputs.len() != 1 {
                        return Err(unsupported(
                            KIND,
                            "input",
                            "Titan embeddings take one input per request",
                        ));
                    }
                    let mut out = json!({"inputText": req.inputs[0]});
                    if let Some(d) = req.dimensions {
                        out["dimensions"] = json!(d);
                    }
                    out
                }
                Some(EmbedFamily::Cohere) => {
                    if req.dimensions.is_some() {
                        return Err(unsupported(
                            KIND,
                            "dimensions",
                            "Cohere embeddings have a fixed size",
                        ));
                    }
                    json!({"texts": req.inputs, "input_type": "search_document"})
                }
                None => {
                    return Err(unsupported(
                        KIND,
                        "model",
                        "embeddings are translated for Amazon Titan and Cohere models only",
                    ));
                }
            };
            (format!("/model/{model}/invoke"), out)
        }
    };
    let accept = if state.stream {
        "application/vnd.amazon.eventstream"
    } else {
        "application/json"
    };
    Ok(UpstreamRequest {
        method: "POST",
        path_and_query: path,
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("accept", accept.to_owned()),
        ],
        body: Bytes::from(out.to_string()),
        stream: state.stream,
        state,
    })
}

fn chat_body(req: &ChatRequest, state: &mut RequestState) -> Result<Value, TranslateError> {
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
            return Err(unsupported(
                KIND,
                field,
                "Converse has no sampling penalties",
            ));
        }
    }
    if req.top_k.is_some() {
        return Err(unsupported(
            KIND,
            "top_k",
            "Converse has no `top_k` (it is model-specific)",
        ));
    }
    if req.reasoning_effort.is_some() {
        return Err(unsupported(
            KIND,
            "reasoning_effort",
            "Converse has no reasoning setting (it is model-specific)",
        ));
    }

    let history_has_tools = req.turns.iter().any(|t| match t {
        Turn::Assistant { tool_calls, .. } => !tool_calls.is_empty(),
        Turn::Tool { .. } => true,
        Turn::User { .. } => false,
    });
    let mut out = Map::new();
    let messages = messages(&req.turns)?;
    if messages.is_empty() {
        return Err(TranslateError::Invalid {
            field: "messages".into(),
            reason: "needs at least one user or assistant message".into(),
        });
    }
    out.insert("messages".into(), Value::Array(messages));
    if !req.system.is_empty() {
        let blocks: Vec<Value> = req.system.iter().map(|t| json!({"text": t})).collect();
        out.insert("system".into(), Value::Array(blocks));
    }
    let mut inference = Map::new();
    if let Some(m) = req.max_tokens {
        inference.insert("maxTokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if !req.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(req.stop));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }

    let json_object = req.response_format == Some(ResponseFormat::JsonObject);
    if json_object && !req.tools.is_empty() {
        return Err(unsupported(
            KIND,
            "response_format",
            "has no JSON mode; Sluice emulates it with a forced tool, which cannot be combined with `tools`",
        ));
    }
    if req.tools.is_empty() && history_has_tools && !json_object {
        return Err(unsupported(
            KIND,
            "tools",
            "requires the tool definitions when messages contain tool calls or results",
        ));
    }
    if json_object {
        out.insert(
            "toolConfig".into(),
            json!({
                "tools": [{"toolSpec": {
                    "name": JSON_TOOL,
                    "description": "Respond with a JSON object.",
                    "inputSchema": {"json": {"type": "object"}},
                }}],
                "toolChoice": {"tool": {"name": JSON_TOOL}},
            }),
        );
        state.json_tool = Some(JSON_TOOL.into());
    } else if !req.tools.is_empty() {
        let omit_tools = req.tool_choice == Some(ToolChoice::None);
        if omit_tools && history_has_tools {
            return Err(unsupported(
                KIND,
                "tool_choice",
                "has no `none` tool choice, and cannot drop the tools of a conversation that used them",
            ));
        }
        if !omit_tools {
            let specs: Vec<Value> = req
                .tools
                .iter()
                .map(|t| {
                    let mut spec = Map::new();
                    spec.insert("name".into(), json!(t.name));
                    if let Some(d) = &t.description {
                        spec.insert("description".into(), json!(d));
                    }
                    let schema = t
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                    spec.insert("inputSchema".into(), json!({ "json": schema }));
                    if let Some(strict) = t.strict {
                        spec.insert("strict".into(), json!(strict));
                    }
                    json!({ "toolSpec": spec })
                })
                .collect();
            let mut config = json!({ "tools": specs });
            match &req.tool_choice {
                None | Some(ToolChoice::None) => {}
                Some(ToolChoice::Auto) => config["toolChoice"] = json!({"auto": {}}),
                Some(ToolChoice::Required) => config["toolChoice"] = json!({"any": {}}),
                Some(ToolChoice::Function(name)) => {
                    config["toolChoice"] = json!({"tool": {"name": name}});
                }
            }
            out.insert("toolConfig".into(), config);
        }
    }
    if let Some(ResponseFormat::JsonSchema {
        name,
        description,
        schema,
        ..
    }) = &req.response_format
    {
        let mut js = json!({"schema": schema.to_string(), "name": name});
        if let Some(d) = description {
            js["description"] = json!(d);
        }
        out.insert(
            "outputConfig".into(),
            json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": js}}}),
        );
    }
    Ok(Value::Object(out))
}

fn messages(turns: &[Turn]) -> Result<Vec<Value>, TranslateError> {
    let mut out: Vec<(&'static str, Vec<Value>)> = vec![];
    for turn in turns {
        let (role, blocks) = match turn {
            Turn::User { parts, .. } => ("user", user_blocks(parts)?),
            Turn::Tool {
                tool_call_id,
                content,
                ..
            } => (
                "user",
                vec![json!({"toolResult": {
                    "toolUseId": tool_call_id,
                    "content": [{"text": content}],
                    "status": "success",
                }})],
            ),
            Turn::Assistant {
                text,
                tool_calls,
                thinking,
                ..
            } => {
                let mut blocks: Vec<Value> = thinking
                    .iter()
                    .map(|b| match b {
                        ThinkingBlock::Thinking {
                            thinking,
                            signature,
                        } => json!({"reasoningContent": {"reasoningText": {
                            "text": thinking, "signature": signature}}}),
                        ThinkingBlock::Redacted { data } => {
                            json!({"reasoningContent": {"redactedContent": data}})
                        }
                    })
                    .collect();
                if !text.is_empty() {
                    blocks.push(json!({ "text": text }));
                }
                blocks.extend(tool_calls.iter().map(|c| {
                    json!({"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}})
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
                let (mut results, rest): (Vec<Value>, Vec<Value>) = blocks
                    .into_iter()
                    .partition(|b| b.get("toolResult").is_some());
                results.extend(rest);
                blocks = results;
            }
            json!({"role": role, "content": blocks})
        })
        .collect())
}

fn image_format(media_type_or_path: &str) -> Option<&'static str> {
    let lower = media_type_or_path.to_ascii_lowercase();
    let ext = lower.rsplit(['/', '.']).next().unwrap_or_default();
    Some(match ext {
        "png" => "png",
        "jpeg" | "jpg" => "jpeg",
        "gif" => "gif",
        "webp" => "webp",
        _ => return None,
    })
}

fn user_blocks(parts: &[Part]) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Text(t) if t.is_empty() => {}
            Part::Text(t) => blocks.push(json!({ "text": t })),
            Part::Image { url, path } => {
                let field = format!("{path}.image_url.url");
                let formats = "takes png, jpeg, gif and webp images";
                let image = match url {
                    ImageUrl::Data { media_type, data } => {
                        let format = image_format(media_type)
                            .ok_or_else(|| unsupported(KIND, field.clone(), formats))?;
                        json!({"format": format, "source": {"bytes": data}})
                    }
                    ImageUrl::Other(u) if u.starts_with("s3://") => {
                        let format = image_format(u)
                            .ok_or_else(|| unsupported(KIND, field.clone(), formats))?;
                        json!({"format": format, "source": {"s3Location": {"uri": u}}})
                    }
                    ImageUrl::Http(_) | ImageUrl::Other(_) => {
                        return Err(unsupported(
                            KIND,
                            field,
                            "takes images as data: or s3:// URLs (Sluice does not fetch URLs)",
                        ));
                    }
                };
                blocks.push(json!({ "image": image }));
            }
            Part::Audio { path, .. } => {
                return Err(unsupported(
                    KIND,
                    format!("{path}.type"),
                    "Converse does not take audio input",
                ));
            }
        }
    }
    Ok(blocks)
}

// === usage ===

fn converse_usage(u: &Value) -> Option<Usage> {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    u.is_object().then(|| {
        let read = n("cacheReadInputTokens");
        let write = n("cacheWriteInputTokens");
        Usage {
            // Like Anthropic's, Bedrock's inputTokens leave out cached and cache-written ones.
            prompt_tokens: n("inputTokens") + read + write,
            completion_tokens: n("outputTokens"),
            cached_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: 0,
        }
    })
}

// === response ===

/// Facts Bedrock puts in headers instead of the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHeaders<'a> {
    /// `x-amzn-RequestId`, the answer's id.
    pub request_id: Option<&'a str>,
    /// `x-amzn-bedrock-input-token-count` (InvokeModel).
    pub input_tokens: Option<u64>,
}

pub fn response(
    state: &RequestState,
    ctx: &ResponseCtx<'_>,
    headers: ResponseHeaders<'_>,
    body: &[u8],
) -> Result<Translated, ProviderError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ProviderError::bad_response(KIND, e))?;
    if state.endpoint == Endpoint::Embeddings {
        return embeddings(state, headers, &v);
    }
    let content = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::bad_response(KIND, "no `output.message.content`"))?;
    let mut choice = ChoiceOut {
        content: String::new(),
        reasoning: String::new(),
        thinking: vec![],
        tool_calls: vec![],
        finish: FinishReason::Stop,
    };
    let mut json_answered = false;
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            choice.content.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            let input = tool.get("input").cloned().unwrap_or_else(|| json!({}));
            if state.json_tool.as_deref() == Some(name) {
                choice.content.push_str(&input.to_string());
                json_answered = true;
            } else {
                choice.tool_calls.push(ToolCallOut {
                    id: tool
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    name: name.to_owned(),
                    arguments: input.to_string(),
                    thought_signature: None,
                });
            }
        } else if let Some(r) = block.get("reasoningContent") {
            if let Some(rt) = r.get("reasoningText") {
                let text = rt.get("text").and_then(Value::as_str).unwrap_or_default();
                choice.reasoning.push_str(text);
                if let Some(sig) = rt.get("signature").and_then(Value::as_str) {
                    choice.thinking.push(ThinkingBlock::Thinking {
                        thinking: text.to_owned(),
                        signature: sig.to_owned(),
                    });
                }
            } else if let Some(data) = r.get("redactedContent").and_then(Value::as_str) {
                choice.thinking.push(ThinkingBlock::Redacted {
                    data: data.to_owned(),
                });
            }
        }
    }
    let raw = v
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    choice.finish = match FinishReason::from_bedrock(raw) {
        FinishReason::ToolCalls if json_answered && choice.tool_calls.is_empty() => {
            FinishReason::Stop
        }
        f => f,
    };
    let usage = v.get("usage").and_then(converse_usage);
    let id = headers.request_id.unwrap_or(ctx.fallback_id).to_owned();
    let model = state.upstream_model.clone();
    let finish = choice.finish;
    Ok(Translated {
        body: openai::chat_completion(&id, ctx.created, &model, &[choice], usage.as_ref()),
        usage,
        finish_reasons: vec![finish],
        provider_finish_reasons: vec![raw.to_owned()],
        id,
        model,
    })
}

fn embeddings(
    state: &RequestState,
    headers: ResponseHeaders<'_>,
    v: &Value,
) -> Result<Translated, ProviderError> {
    let bad = |what: &str| ProviderError::bad_response(KIND, what.to_owned());
    let floats = |values: &Value| -> Result<Vec<f32>, ProviderError> {
        values
            .as_array()
            .ok_or_else(|| bad("an embedding that is not an array"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| bad("a non-numeric embedding value"))
            })
            .collect()
    };
    let (vectors, body_tokens) = match embed_family(&state.upstream_model) {
        Some(EmbedFamily::Titan) => (
            vec![floats(
                v.get("embedding").ok_or_else(|| bad("no `embedding`"))?,
            )?],
            v.get("inputTextTokenCount").and_then(Value::as_u64),
        ),
        _ => (
            v.get("embeddings")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("no `embeddings`"))?
                .iter()
                .map(floats)
                .collect::<Result<Vec<_>, _>>()?,
            None,
        ),
    };
    if vectors.len() != state.inputs {
        return Err(bad("a different number of embeddings than inputs"));
    }
    let usage = body_tokens.or(headers.input_tokens).map(|t| Usage {
        prompt_tokens: t,
        ..Usage::default()
    });
    Ok(Translated {
        body: openai::embeddings_list(&state.upstream_model, vectors, state.base64, usage.as_ref()),
        usage,
        finish_reasons: vec![],
        provider_finish_reasons: vec![],
        id: headers.request_id.unwrap_or_default().to_owned(),
        model: state.upstream_model.clone(),
    })
}

// === stream ===

enum Block {
    Tool(u32),
    JsonTool,
    Reasoning { text: String, signature: String },
}

/// The state of one ConverseStream.
pub struct StreamState {
    json_tool: Option<String>,
    blocks: HashMap<u64, Block>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
    json_answered: bool,
}

impl StreamState {
    pub fn new(json_tool: Option<String>) -> Self {
        Self {
            json_tool,
            blocks: HashMap::new(),
            stop_reason: None,
            usage: None,
            json_answered: false,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn provider_finish_reasons(&self) -> Vec<String> {
        self.stop_reason.iter().cloned().collect()
    }

    /// One decoded event-stream frame.
    pub fn frame(
        &mut self,
        w: &mut ChunkWriter,
        frame: &Frame,
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProviderError> {
        match frame.header_str(":message-type") {
            Some("event") => {}
            Some("exception") => {
                return Err(stream_error(
                    KIND,
                    frame.header_str(":exception-type"),
                    &frame.payload,
                ));
            }
            Some("error") => {
                // An unmodelled error: named by `:error-code`, classified like an exception.
                let code = frame.header_str(":error-code");
                let message = frame.header_str(":error-message").unwrap_or("no message");
                let payload = json!({ "message": message }).to_string();
                return Err(stream_error(KIND, code, payload.as_bytes()));
            }
            other => {
                return Err(ProviderError::bad_response(
                    KIND,
                    format!("a frame with message type {other:?}"),
                ));
            }
        }
        let event = frame.header_str(":event-type").unwrap_or_default();
        let v: Value = serde_json::from_slice(&frame.payload)
            .map_err(|e| ProviderError::bad_response(KIND, e))?;
        let index = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match event {
            "messageStart" => w.start(0, out),
            "contentBlockStart" => {
                if let Some(tool) = v.pointer("/start/toolUse") {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                    let block = if self.json_tool.as_deref() == Some(name) {
                        self.json_answered = true;
                        Block::JsonTool
                    } else {
                        let id = tool
                            .get("toolUseId")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        Block::Tool(w.tool_start(0, id, name, "", None, out))
                    };
                    self.blocks.insert(index, block);
                }
            }
            "contentBlockDelta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    w.content(0, t, out);
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str)
                {
                    match self.blocks.get(&index) {
                        Some(Block::Tool(t)) => w.tool_args(0, *t, input, out),
                        Some(Block::JsonTool) => w.content(0, input, out),
                        _ => {
                            return Err(ProviderError::bad_response(
                                KIND,
                                "tool input for a block that never started",
                            ));
                        }
                    }
                } else if let Some(r) = delta.get("reasoningContent") {
                    let block = self
                        .blocks
                        .entry(index)
                        .or_insert_with(|| Block::Reasoning {
                            text: String::new(),
                            signature: String::new(),
                        });
                    if let Block::Reasoning { text, signature } = block {
                        if let Some(t) = r.get("text").and_then(Value::as_str) {
                            text.push_str(t);
                            w.reasoning(0, t, out);
                        }
                        if let Some(s) = r.get("signature").and_then(Value::as_str) {
                            signature.push_str(s);
                        }
                    }
                    if let Some(data) = r.get("redactedContent").and_then(Value::as_str) {
                        let data = data.to_owned();
                        w.thinking_block(0, &ThinkingBlock::Redacted { data }, out);
                    }
                }
            }
            "contentBlockStop" => {
                if let Some(Block::Reasoning { text, signature }) = self.blocks.remove(&index)
                    && !signature.is_empty()
                {
                    let block = ThinkingBlock::Thinking {
                        thinking: text,
                        signature,
                    };
                    w.thinking_block(0, &block, out);
                }
            }
            "messageStop" => {
                let raw = v
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                self.stop_reason = Some(raw.to_owned());
                let finish = match FinishReason::from_bedrock(raw) {
                    FinishReason::ToolCalls if self.json_answered && !w.saw_tool_call(0) => {
                        FinishReason::Stop
                    }
                    f => f,
                };
                w.finish(0, finish, out);
            }
            "metadata" => {
                if let Some(u) = v.get("usage").and_then(converse_usage) {
                    self.usage = Some(u);
                }
                if self.stop_reason.is_some() {
                    w.end(self.usage.as_ref(), out);
                }
            }
            // Events added later.
            _ => {}
        }
        Ok(())
    }

    /// The body ended with `torn` bytes of an incomplete frame. A stream that said
    /// `messageStop` has its whole answer, even if its `metadata` (usage) was lost or torn;
    /// one without `messageStop` was cut.
    pub fn eof(
        &mut self,
        w: &mut ChunkWriter,
        torn: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProviderError> {
        if self.stop_reason.is_none() {
            let detail = if torn > 0 {
                format!("the body ended inside a frame ({torn} bytes) before `messageStop`")
            } else {
                "the body ended before `messageStop`".to_owned()
            };
            return Err(ProviderError::interrupted(KIND, detail));
        }
        w.end(self.usage.as_ref(), out);
        Ok(())
    }
}
