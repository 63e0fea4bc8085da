//! The OpenAI side of every translation: the request view the provider renderers read, and
//! the builders for what clients get back (`chat.completion`, `chat.completion.chunk`,
//! embeddings lists, usage).
//!
//! The request is parsed once into [`ChatRequest`], with the exact field path of anything
//! wrong (`messages[2].tool_calls[0].function.arguments`), so every kind reports the same field
//! names. Parsing keeps what a provider could translate and refuses here what *no* translated
//! kind can do (legacy `functions`, audio output, predicted outputs, logprobs, a non-empty
//! `logit_bias`, web search, unknown fields); each kind then refuses what only it cannot do.
//! Fields that are hints with no effect on the answer's shape (`store`, `metadata`,
//! `service_tier`, `prompt_cache_key`, `safety_identifier`, `verbosity`) are dropped.
//!
//! Output is written with serde structs rather than `serde_json::Value`, so keys keep
//! OpenAI's order (id, object, created, model, choices, usage) and no map is built per chunk.

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::TranslateError;
use super::finish::FinishReason;

// === request view ===

/// A chat request, validated and normalised for translation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// Text of every system and developer message, in order, one entry per text part. Every
    /// translated provider takes these out of the conversation (hoisted).
    pub system: Vec<String>,
    /// The other messages, in order.
    pub turns: Vec<Turn>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not OpenAI's; accepted as the common extension (Anthropic, Gemini).
    pub top_k: Option<u64>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
    /// `n`, 1 when absent.
    pub n: u32,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub tools: Vec<FunctionTool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    pub reasoning_effort: Option<ReasoningEffort>,
    pub user: Option<String>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// One non-system message.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    User {
        /// Index in `messages`, for error paths.
        index: usize,
        parts: Vec<Part>,
    },
    Assistant {
        index: usize,
        /// Text content (string content, text and refusal parts), joined.
        text: String,
        tool_calls: Vec<ToolCall>,
        /// Earlier reasoning blocks echoed back (`thinking_blocks`, the de-facto field, as
        /// Sluice returns them); Anthropic needs them with tool use and thinking.
        thinking: Vec<ThinkingBlock>,
    },
    Tool {
        index: usize,
        tool_call_id: String,
        /// Text content, parts joined.
        content: String,
    },
}

/// A user content part.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image {
        url: ImageUrl,
        /// `messages[i].content[j]`, for errors.
        path: String,
    },
    Audio {
        /// Base64.
        data: String,
        /// `wav` or `mp3`.
        format: String,
        path: String,
    },
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageUrl {
    /// A `data:<media type>;base64,<data>` URL.
    Data { media_type: String, data: String },
    /// `http://` or `https://`.
    Http(String),
    /// Any other scheme (`gs://`, `s3://`): passed on only where a provider takes it.
    Other(String),
}

/// An assistant tool call echoed in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The parsed `function.arguments` (always a JSON object; `""` counts as `{}`).
    pub arguments: Map<String, Value>,
    /// `extra_content.google.thought_signature` (Gemini 3 needs it back).
    pub thought_signature: Option<String>,
}

/// A reasoning block that must travel back to the provider unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThinkingBlock {
    Thinking { thinking: String, signature: String },
    Redacted { data: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema; `None` when the tool takes no parameters.
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Value,
        strict: Option<bool>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
}

/// An embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub inputs: Vec<String>,
    pub dimensions: Option<u32>,
    /// `encoding_format: "base64"` (the openai SDKs ask for it by default).
    pub base64: bool,
}

/// Top-level chat fields that only change how the provider treats the request, not what the
/// answer looks like; dropped for every translated kind.
const DROPPED_HINTS: &[&str] = &[
    "model",
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "verbosity",
];

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> TranslateError {
    TranslateError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported {
        field: field.into(),
        reason: reason.into(),
    }
}

pub(crate) fn object<'a>(
    v: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, TranslateError> {
    v.as_object()
        .ok_or_else(|| invalid(path, "must be an object"))
}

pub(crate) fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    v.as_str().ok_or_else(|| invalid(path, "must be a string"))
}

fn number(v: &Value, path: &str) -> Result<f64, TranslateError> {
    v.as_f64().ok_or_else(|| invalid(path, "must be a number"))
}

fn unsigned(v: &Value, path: &str) -> Result<u64, TranslateError> {
    v.as_u64()
        .ok_or_else(|| invalid(path, "must be a non-negative integer"))
}

fn boolean(v: &Value, path: &str) -> Result<bool, TranslateError> {
    v.as_bool()
        .ok_or_else(|| invalid(path, "must be a boolean"))
}

/// A present, non-null member.
fn member<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Value, TranslateError> {
    member(obj, key).ok_or_else(|| invalid(format!("{path}.{key}"), "is required"))
}

/// Parses a `/v1/chat/completions` body.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| invalid("body", format!("not JSON: {e}")))?;
    let obj = object(&root, "body")?;
    let mut req = ChatRequest {
        n: 1,
        ..ChatRequest::default()
    };
    let mut max_tokens = None;
    let mut max_completion_tokens = None;
    for (key, value) in obj {
        if value.is_null() || DROPPED_HINTS.contains(&key.as_str()) {
            continue;
        }
        let k = key.as_str();
        match k {
            "messages" => parse_messages(value, &mut req)?,
            "stream" => req.stream = boolean(value, k)?,
            "stream_options" => {
                let so = object(value, k)?;
                if let Some(v) = member(so, "include_usage") {
                    req.include_usage = boolean(v, "stream_options.include_usage")?;
                }
            }
            "temperature" => req.temperature = Some(number(value, k)?),
            "top_p" => req.top_p = Some(number(value, k)?),
            "top_k" => req.top_k = Some(unsigned(value, k)?),
            "max_tokens" => max_tokens = Some(unsigned(value, k)?),
            "max_completion_tokens" => max_completion_tokens = Some(unsigned(value, k)?),
            "stop" => req.stop = parse_stop(value)?,
            "n" => {
                let n = unsigned(value, k)?;
                req.n = u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid(k, "must be at least 1"))?;
            }
            "seed" => {
                req.seed = Some(
                    value
                        .as_i64()
                        .ok_or_else(|| invalid(k, "must be an integer"))?,
                );
            }
            "presence_penalty" => req.presence_penalty = Some(number(value, k)?),
            "frequency_penalty" => req.frequency_penalty = Some(number(value, k)?),
            "logprobs" => {
                if boolean(value, k)? {
                    return Err(unsupported(
                        k,
                        "log probabilities are not translated from this provider",
                    ));
                }
            }
            "top_logprobs" => {
                return Err(unsupported(
                    k,
                    "log probabilities are not translated from this provider",
                ));
            }
            "logit_bias" => {
                if !object(value, k)?.is_empty() {
                    return Err(unsupported(k, "this provider has no token biasing"));
                }
            }
            "tools" => req.tools = parse_tools(value)?,
            "tool_choice" => req.tool_choice = Some(parse_tool_choice(value)?),
            "parallel_tool_calls" => req.parallel_tool_calls = Some(boolean(value, k)?),
            "response_format" => req.response_format = Some(parse_response_format(value)?),
            "reasoning_effort" => req.reasoning_effort = Some(parse_effort(value)?),
            "user" => req.user = Some(string(value, k)?.to_owned()),
            "modalities" => {
                let only_text = value
                    .as_array()
                    .is_some_and(|m| m.iter().all(|x| x.as_str() == Some("text")));
                if !only_text {
                    return Err(unsupported(k, "only text output is translated"));
                }
            }
            "functions" | "function_call" => {
                return Err(unsupported(
                    k,
                    "the legacy functions API is not translated; use `tools` and `tool_choice`",
                ));
            }
            "audio" => return Err(unsupported(k, "audio output is not translated")),
            "prediction" => return Err(unsupported(k, "predicted outputs are OpenAI-only")),
            "web_search_options" => {
                return Err(unsupported(k, "web search is not translated"));
            }
            _ => return Err(unsupported(k, "unknown field; it is not translated")),
        }
    }
    req.max_tokens = max_completion_tokens.or(max_tokens);
    if member(obj, "messages").is_none() {
        return Err(invalid("messages", "is required"));
    }
    Ok(req)
}

fn parse_stop(value: &Value) -> Result<Vec<String>, TranslateError> {
    match value {
        Value::String(s) => Ok(if s.is_empty() {
            vec![]
        } else {
            vec![s.clone()]
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| string(s, &format!("stop[{i}]")).map(str::to_owned))
            .filter(|s| s.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        _ => Err(invalid("stop", "must be a string or an array of strings")),
    }
}

fn parse_effort(value: &Value) -> Result<ReasoningEffort, TranslateError> {
    Ok(match string(value, "reasoning_effort")? {
        "none" => ReasoningEffort::None,
        "minimal" => ReasoningEffort::Minimal,
        "low" => ReasoningEffort::Low,
        "medium" => ReasoningEffort::Medium,
        "high" | "xhigh" => ReasoningEffort::High,
        other => {
            return Err(invalid(
                "reasoning_effort",
                format!("unknown value `{other}`"),
            ));
        }
    })
}

fn parse_messages(value: &Value, req: &mut ChatRequest) -> Result<(), TranslateError> {
    let messages = value
        .as_array()
        .ok_or_else(|| invalid("messages", "must be an array"))?;
    if messages.is_empty() {
        return Err(invalid("messages", "must not be empty"));
    }
    for (index, m) in messages.iter().enumerate() {
        let path = format!("messages[{index}]");
        let msg = object(m, &path)?;
        let role = string(required(msg, "role", &path)?, &format!("{path}.role"))?;
        let content = member(msg, "content");
        match role {
            "system" | "developer" => {
                if let Some(c) = content {
                    req.system.extend(
                        text_parts(c, &format!("{path}.content"))?
                            .into_iter()
                            .filter(|t| !t.is_empty()),
                    );
                }
            }
            "user" => {
                let c = content.ok_or_else(|| invalid(format!("{path}.content"), "is required"))?;
                req.turns.push(Turn::User {
                    index,
                    parts: user_parts(c, &format!("{path}.content"))?,
                });
            }
            "assistant" => {
                let text = match content {
                    Some(c) => text_parts(c, &format!("{path}.content"))?.concat(),
                    None => String::new(),
                };
                let tool_calls = match member(msg, "tool_calls") {
                    Some(tc) => parse_tool_calls(tc, &format!("{path}.tool_calls"))?,
                    None => vec![],
                };
                if member(msg, "function_call").is_some() {
                    return Err(unsupported(
                        format!("{path}.function_call"),
                        "the legacy functions API is not translated; use `tool_calls`",
                    ));
                }
                let thinking = match member(msg, "thinking_blocks") {
                    Some(tb) => parse_thinking(tb, &format!("{path}.thinking_blocks"))?,
                    None => vec![],
                };
                req.turns.push(Turn::Assistant {
                    index,
                    text,
                    tool_calls,
                    thinking,
                });
            }
            "tool" => {
                let id_path = format!("{path}.tool_call_id");
                let tool_call_id = string(required(msg, "tool_call_id", &path)?, &id_path)?;
                let content = match content {
                    Some(c) => text_parts(c, &format!("{path}.content"))?.concat(),
                    None => String::new(),
                };
                req.turns.push(Turn::Tool {
                    index,
                    tool_call_id: tool_call_id.to_owned(),
                    content,
                });
            }
            "function" => {
                return Err(unsupported(
                    format!("{path}.role"),
                    "the legacy `function` role is not translated; use `tool` messages",
                ));
            }
            other => {
                return Err(invalid(
                    format!("{path}.role"),
                    format!("unknown role `{other}`"),
                ));
            }
        }
    }
    Ok(())
}

/// String content, or an array of `text` (and, for assistants, `refusal`) parts.
fn text_parts(content: &Value, path: &str) -> Result<Vec<String>, TranslateError> {
    match content {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let ppath = format!("{path}[{j}]");
                let part = object(p, &ppath)?;
                let ty = string(required(part, "type", &ppath)?, &format!("{ppath}.type"))?;
                match ty {
                    "text" | "refusal" => Ok(string(
                        required(part, ty, &ppath)?,
                        &format!("{ppath}.{ty}"),
                    )?
                    .to_owned()),
                    other => Err(unsupported(
                        format!("{ppath}.type"),
                        format!("`{other}` parts are not allowed in this message"),
                    )),
                }
            })
            .collect(),
        _ => Err(invalid(path, "must be a string or an array of parts")),
    }
}

fn user_parts(content: &Value, path: &str) -> Result<Vec<Part>, TranslateError> {
    let parts = match content {
        Value::String(s) => return Ok(vec![Part::Text(s.clone())]),
        Value::Array(parts) => parts,
        _ => return Err(invalid(path, "must be a string or an array of parts")),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let ppath = format!("{path}[{j}]");
        let part = object(p, &ppath)?;
        let ty = string(required(part, "type", &ppath)?, &format!("{ppath}.type"))?;
        match ty {
            "text" => out.push(Part::Text(
                string(required(part, "text", &ppath)?, &format!("{ppath}.text"))?.to_owned(),
            )),
            "image_url" => {
                let iu_path = format!("{ppath}.image_url");
                let iu = required(part, "image_url", &ppath)?;
                // Some clients send the URL as a bare string.
                let url = match iu {
                    Value::String(s) => s.as_str(),
                    _ => string(
                        required(object(iu, &iu_path)?, "url", &iu_path)?,
                        &format!("{iu_path}.url"),
                    )?,
                };
                out.push(Part::Image {
                    url: parse_image_url(url, &format!("{iu_path}.url"))?,
                    path: ppath,
                });
            }
            "input_audio" => {
                let a_path = format!("{ppath}.input_audio");
                let audio = object(required(part, "input_audio", &ppath)?, &a_path)?;
                out.push(Part::Audio {
                    data: string(required(audio, "data", &a_path)?, &format!("{a_path}.data"))?
                        .to_owned(),
                    format: string(
                        required(audio, "format", &a_path)?,
                        &format!("{a_path}.format"),
                    )?
                    .to_owned(),
                    path: ppath,
                });
            }
            other => {
                return Err(unsupported(
                    format!("{ppath}.type"),
                    format!("`{other}` content parts are not translated"),
                ));
            }
        }
    }
    Ok(out)
}

/// Splits a `data:` URL; anything else is kept as a URL.
pub fn parse_image_url(url: &str, path: &str) -> Result<ImageUrl, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid(path, "a data URL needs a comma before its data"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| invalid(path, "only base64 data URLs are supported"))?;
        return Ok(ImageUrl::Data {
            media_type: media_type.to_ascii_lowercase(),
            data: data.to_owned(),
        });
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        Ok(ImageUrl::Http(url.to_owned()))
    } else {
        Ok(ImageUrl::Other(url.to_owned()))
    }
}

fn parse_tool_calls(value: &Value, path: &str) -> Result<Vec<ToolCall>, TranslateError> {
    let calls = value
        .as_array()
        .ok_or_else(|| invalid(path, "must be an array"))?;
    let mut out = Vec::with_capacity(calls.len());
    for (k, c) in calls.iter().enumerate() {
        let cpath = format!("{path}[{k}]");
        let call = object(c, &cpath)?;
        if let Some(t) = member(call, "type") {
            let t = string(t, &format!("{cpath}.type"))?;
            if t != "function" {
                return Err(unsupported(
                    format!("{cpath}.type"),
                    format!("`{t}` tool calls are not translated"),
                ));
            }
        }
        let id = string(required(call, "id", &cpath)?, &format!("{cpath}.id"))?;
        let fpath = format!("{cpath}.function");
        let f = object(required(call, "function", &cpath)?, &fpath)?;
        let name = string(required(f, "name", &fpath)?, &format!("{fpath}.name"))?;
        let apath = format!("{fpath}.arguments");
        let arguments = match member(f, "arguments") {
            None => Map::new(),
            Some(a) => parse_arguments(string(a, &apath)?, &apath)?,
        };
        let thought_signature = member(call, "extra_content")
            .and_then(|e| e.pointer("/google/thought_signature"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.push(ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments,
            thought_signature,
        });
    }
    Ok(out)
}

/// OpenAI carries arguments as a JSON string; providers want the object.
pub fn parse_arguments(raw: &str, path: &str) -> Result<Map<String, Value>, TranslateError> {
    if raw.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid(path, "must be a JSON object")),
        Err(e) => Err(invalid(path, format!("is not valid JSON: {e}"))),
    }
}

fn parse_thinking(value: &Value, path: &str) -> Result<Vec<ThinkingBlock>, TranslateError> {
    let blocks = value
        .as_array()
        .ok_or_else(|| invalid(path, "must be an array"))?;
    blocks
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let bpath = format!("{path}[{k}]");
            let block = object(b, &bpath)?;
            match string(required(block, "type", &bpath)?, &format!("{bpath}.type"))? {
                "thinking" => Ok(ThinkingBlock::Thinking {
                    thinking: member(block, "thinking")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    signature: string(
                        required(block, "signature", &bpath)?,
                        &format!("{bpath}.signature"),
                    )?
                    .to_owned(),
                }),
                "redacted_thinking" => Ok(ThinkingBlock::Redacted {
                    data: string(required(block, "data", &bpath)?, &format!("{bpath}.data"))?
                        .to_owned(),
                }),
                other => Err(invalid(
                    format!("{bpath}.type"),
                    format!("unknown thinking block `{other}`"),
                )),
            }
        })
        .collect()
}

fn parse_tools(value: &Value) -> Result<Vec<FunctionTool>, TranslateError> {
    let tools = value
        .as_array()
        .ok_or_else(|| invalid("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = object(t, &path)?;
        let ty = string(required(tool, "type", &path)?, &format!("{path}.type"))?;
        if ty != "function" {
            return Err(unsupported(
                format!("{path}.type"),
                format!("`{ty}` tools are not translated"),
            ));
        }
        let fpath = format!("{path}.function");
        let f = object(required(tool, "function", &path)?, &fpath)?;
        let parameters = match member(f, "parameters") {
            Some(p) => {
                object(p, &format!("{fpath}.parameters"))?;
                Some(p.clone())
            }
            None => None,
        };
        out.push(FunctionTool {
            name: string(required(f, "name", &fpath)?, &format!("{fpath}.name"))?.to_owned(),
            description: member(f, "description")
                .map(|d| string(d, &format!("{fpath}.description")).map(str::to_owned))
                .transpose()?,
            parameters,
            strict: member(f, "strict")
                .map(|s| boolean(s, &format!("{fpath}.strict")))
                .transpose()?,
        });
    }
    Ok(out)
}

fn parse_tool_choice(value: &Value) -> Result<ToolChoice, TranslateError> {
    match value {
        Value::String(s) => match s.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid("tool_choice", format!("unknown value `{other}`"))),
        },
        Value::Object(o) => {
            let ty = string(required(o, "type", "tool_choice")?, "tool_choice.type")?;
            if ty != "function" {
                return Err(unsupported(
                    "tool_choice.type",
                    format!("`{ty}` tool choices are not translated"),
                ));
            }
            let f = object(
                required(o, "function", "tool_choice")?,
                "tool_choice.function",
            )?;
            Ok(ToolChoice::Function(
                string(
                    required(f, "name", "tool_choice.function")?,
                    "tool_choice.function.name",
                )?
                .to_owned(),
            ))
        }
        _ => Err(invalid("tool_choice", "must be a string or an object")),
    }
}

fn parse_response_format(value: &Value) -> Result<ResponseFormat, TranslateError> {
    let o = object(value, "response_format")?;
    match string(
        required(o, "type", "response_format")?,
        "response_format.type",
    )? {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let path = "response_format.json_schema";
            let js = object(required(o, "json_schema", "response_format")?, path)?;
            let Some(schema) = member(js, "schema") else {
                // OpenAI allows a schema-less json_schema; it constrains nothing beyond JSON.
                return Ok(ResponseFormat::JsonObject);
            };
            object(schema, &format!("{path}.schema"))?;
            Ok(ResponseFormat::JsonSchema {
                name: string(required(js, "name", path)?, &format!("{path}.name"))?.to_owned(),
                description: member(js, "description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                schema: schema.clone(),
                strict: member(js, "strict").and_then(Value::as_bool),
            })
        }
        other => Err(unsupported(
            "response_format.type",
            format!("`{other}` is not translated"),
        )),
    }
}

/// Parses a `/v1/embeddings` body. Token-array inputs are refused: providers other than
/// OpenAI take text only.
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest, TranslateError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| invalid("body", format!("not JSON: {e}")))?;
    let obj = object(&root, "body")?;
    let mut req = EmbeddingsRequest {
        inputs: vec![],
        dimensions: None,
        base64: false,
    };
    let mut saw_input = false;
    for (key, value) in obj {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "model" | "user" => {}
            "input" => {
                saw_input = true;
                req.inputs = match value {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| match v {
                            Value::String(s) => Ok(s.clone()),
                            _ => Err(unsupported(
                                format!("input[{i}]"),
                                "token arrays are not translated; send text",
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(invalid("input", "must be a string or an array of strings")),
                };
            }
            "dimensions" => {
                req.dimensions = Some(
                    u32::try_from(unsigned(value, "dimensions")?)
                        .map_err(|_| invalid("dimensions", "is too large"))?,
                );
            }
            "encoding_format" => {
                req.base64 = match string(value, "encoding_format")? {
                    "float" => false,
                    "base64" => true,
                    other => {
                        return Err(invalid(
                            "encoding_format",
                            format!("unknown value `{other}`"),
                        ));
                    }
                };
            }
            other => return Err(unsupported(other, "unknown field; it is not translated")),
        }
    }
    if !saw_input || req.inputs.is_empty() {
        return Err(invalid("input", "must not be empty"));
    }
    Ok(req)
}

// === usage ===

/// Token usage in OpenAI's terms, whatever the provider: `prompt_tokens` includes cached and
/// cache-written tokens, `completion_tokens` includes reasoning, the total is recomputed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens read from the provider's cache (part of `prompt_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's cache (part of `prompt_tokens`).
    pub cache_write_tokens: u64,
    /// Completion tokens spent on reasoning (part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

#[derive(Serialize)]
struct UsageJson {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetailsJson,
    completion_tokens_details: CompletionDetailsJson,
}

#[derive(Serialize)]
struct PromptDetailsJson {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetailsJson {
    reasoning_tokens: u64,
}

impl From<&Usage> for UsageJson {
    fn from(u: &Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens(),
            prompt_tokens_details: PromptDetailsJson {
                cached_tokens: u.cached_tokens,
                cache_write_tokens: u.cache_write_tokens,
            },
            completion_tokens_details: CompletionDetailsJson {
                reasoning_tokens: u.reasoning_tokens,
            },
        }
    }
}

// === non-stream answer ===

/// One tool call in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallOut {
    pub id: String,
    pub name: String,
    /// JSON text.
    pub arguments: String,
    /// Gemini's signature, returned as `extra_content.google.thought_signature` (the field
    /// Google's own OpenAI-compatible endpoint uses), so clients that keep it send it back.
    pub thought_signature: Option<String>,
}

/// One choice of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceOut {
    pub content: String,
    /// Reasoning text (`reasoning_content`); empty when there was none.
    pub reasoning: String,
    pub thinking: Vec<ThinkingBlock>,
    pub tool_calls: Vec<ToolCallOut>,
    pub finish: FinishReason,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<CompletionChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageJson>,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: usize,
    message: MessageJson<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thinking_blocks: Vec<ThinkingJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallJson<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ThinkingJson<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

impl<'a> From<&'a ThinkingBlock> for ThinkingJson<'a> {
    fn from(b: &'a ThinkingBlock) -> Self {
        match b {
            ThinkingBlock::Thinking {
                thinking,
                signature,
            } => Self::Thinking {
                thinking,
                signature,
            },
            ThinkingBlock::Redacted { data } => Self::RedactedThinking { data },
        }
    }
}

#[derive(Serialize)]
struct ToolCallJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
    function: FunctionJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<Value>,
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    arguments: &'a str,
}

fn signature_extra(sig: Option<&str>) -> Option<Value> {
    sig.map(|s| serde_json::json!({"google": {"thought_signature": s}}))
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A `chat.completion` body. An empty content next to tool calls is `null`, as OpenAI sends it.
pub fn chat_completion(
    id: &str,
    created: u64,
    model: &str,
    choices: &[ChoiceOut],
    usage: Option<&Usage>,
) -> Bytes {
    let choices = choices
        .iter()
        .enumerate()
        .map(|(index, c)| CompletionChoice {
            index,
            message: MessageJson {
                role: "assistant",
                content: (!c.content.is_empty() || c.tool_calls.is_empty())
                    .then_some(c.content.as_str()),
                refusal: None,
                reasoning_content: (!c.reasoning.is_empty()).then_some(c.reasoning.as_str()),
                thinking_blocks: c.thinking.iter().map(ThinkingJson::from).collect(),
                tool_calls: c
                    .tool_calls
                    .iter()
                    .map(|t| ToolCallJson {
                        id: &t.id,
                        ty: "function",
                        function: FunctionJson {
                            name: &t.name,
                            arguments: &t.arguments,
                        },
                        extra_content: signature_extra(t.thought_signature.as_deref()),
                    })
                    .collect(),
            },
            logprobs: None,
            finish_reason: c.finish.as_str(),
        })
        .collect();
    to_bytes(&Completion {
        id,
        object: "chat.completion",
        created,
        model,
        choices,
        usage: usage.map(UsageJson::from),
    })
}

// === embeddings ===

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
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// An embeddings `list`. With `base64`, each vector is its little-endian `f32` bytes in
/// base64, which is what the openai SDKs decode.
pub fn embeddings_list(
    model: &str,
    vectors: Vec<Vec<f32>>,
    base64: bool,
    usage: Option<&Usage>,
) -> Bytes {
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingJson {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                EmbeddingValue::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingValue::Floats(v)
            },
        })
        .collect();
    let prompt = usage.map_or(0, |u| u.prompt_tokens);
    to_bytes(&EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: prompt,
            total_tokens: prompt,
        },
    })
}

// === stream chunks ===

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageJson>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
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
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thinking_blocks: Vec<ThinkingJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallDelta<'a>>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    ty: Option<&'static str>,
    function: FunctionDelta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<Value>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Debug, Clone, Default)]
struct ChoiceState {
    role_sent: bool,
    tools: u32,
    finish: Option<FinishReason>,
}

/// Writes the OpenAI chunk sequence of one stream, whatever the provider's events were.
///
/// It guarantees the invariants clients rely on: the first chunk of every choice carries
/// `role: "assistant"` (with `content: ""`, as OpenAI sends it); tool calls get a running
/// index per choice, independent of the provider's block numbering; each choice's
/// `finish_reason` is sent once; with `include_usage` every chunk carries `"usage": null` and
/// the usage chunk (`choices: []`) comes last, just before `[DONE]`.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    choices: Vec<ChoiceState>,
    done: bool,
}

/// The end-of-stream sentinel payload.
pub const DONE: &[u8] = b"[DONE]";

impl ChunkWriter {
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        Self {
            id,
            created,
            model,
            include_usage,
            choices: vec![],
            done: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Replaces the id and model (before anything was written; e.g. from `message_start`).
    pub fn set_identity(&mut self, id: Option<&str>, model: Option<&str>) {
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            id.clone_into(&mut self.id);
        }
        if let Some(model) = model.filter(|s| !s.is_empty()) {
            model.clone_into(&mut self.model);
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Finish reasons sent so far, per choice in order.
    pub fn finish_reasons(&self) -> Vec<FinishReason> {
        self.choices.iter().filter_map(|c| c.finish).collect()
    }

    /// Whether choice `choice` already has its finish reason.
    pub fn finished(&self, choice: u32) -> bool {
        self.choices
            .get(choice as usize)
            .is_some_and(|c| c.finish.is_some())
    }

    /// Whether choice `choice` has produced a tool call.
    pub fn saw_tool_call(&self, choice: u32) -> bool {
        self.choices
            .get(choice as usize)
            .is_some_and(|c| c.tools > 0)
    }

    /// Choices that have started, in index order.
    pub fn started_choices(&self) -> u32 {
        u32::try_from(self.choices.len()).unwrap_or(u32::MAX)
    }

    fn state(&mut self, choice: u32) -> &mut ChoiceState {
        let i = choice as usize;
        if self.choices.len() <= i {
            self.choices.resize_with(i + 1, ChoiceState::default);
        }
        &mut self.choices[i]
    }

    fn write(
        &self,
        choice: u32,
        delta: Delta<'_>,
        finish: Option<FinishReason>,
        out: &mut Vec<Bytes>,
    ) {
        out.push(to_bytes(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &[ChunkChoice {
                index: choice,
                delta,
                logprobs: None,
                finish_reason: finish.map(FinishReason::as_str),
            }],
            usage: self.include_usage.then_some(None),
        }));
    }

    /// The role chunk of `choice`, once.
    pub fn start(&mut self, choice: u32, out: &mut Vec<Bytes>) {
        if self.done || self.state(choice).role_sent {
            return;
        }
        self.state(choice).role_sent = true;
        self.write(
            choice,
            Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            },
            None,
            out,
        );
    }

    pub fn content(&mut self, choice: u32, text: &str, out: &mut Vec<Bytes>) {
        if text.is_empty() || self.done {
            return;
        }
        self.start(choice, out);
        self.write(
            choice,
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
            out,
        );
    }

    pub fn reasoning(&mut self, choice: u32, text: &str, out: &mut Vec<Bytes>) {
        if text.is_empty() || self.done {
            return;
        }
        self.start(choice, out);
        self.write(
            choice,
            Delta {
                reasoning_content: Some(text),
                ..Delta::default()
            },
            None,
            out,
        );
    }

    /// A finished reasoning block to carry back later (its signature, or redacted data).
    pub fn thinking_block(&mut self, choice: u32, block: &ThinkingBlock, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.start(choice, out);
        self.write(
            choice,
            Delta {
                thinking_blocks: vec![ThinkingJson::from(block)],
                ..Delta::default()
            },
            None,
            out,
        );
    }

    /// The first delta of a tool call; returns its index within the choice.
    pub fn tool_start(
        &mut self,
        choice: u32,
        id: &str,
        name: &str,
        arguments: &str,
        thought_signature: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> u32 {
        self.start(choice, out);
        let state = self.state(choice);
        let index = state.tools;
        state.tools += 1;
        if !self.done {
            self.write(
                choice,
                Delta {
                    tool_calls: vec![ToolCallDelta {
                        index,
                        id: Some(id),
                        ty: Some("function"),
                        function: FunctionDelta {
                            name: Some(name),
                            arguments,
                        },
                        extra_content: signature_extra(thought_signature),
                    }],
                    ..Delta::default()
                },
                None,
                out,
            );
        }
        index
    }

    /// A fragment of tool call `index`'s arguments.
    pub fn tool_args(&mut self, choice: u32, index: u32, fragment: &str, out: &mut Vec<Bytes>) {
        if fragment.is_empty() || self.done {
            return;
        }
        self.write(
            choice,
            Delta {
                tool_calls: vec![ToolCallDelta {
                    index,
                    id: None,
                    ty: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: fragment,
                    },
                    extra_content: None,
                }],
                ..Delta::default()
            },
            None,
            out,
        );
    }

    /// The finish chunk of `choice` (once; later calls are ignored).
    pub fn finish(&mut self, choice: u32, reason: FinishReason, out: &mut Vec<Bytes>) {
        if self.done || self.finished(choice) {
            return;
        }
        self.start(choice, out);
        self.state(choice).finish = Some(reason);
        self.write(choice, Delta::default(), Some(reason), out);
    }

    /// The usage chunk (only when the client asked and usage is known), then `[DONE]`.
    pub fn end(&mut self, usage: Option<&Usage>, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(u) = usage.filter(|_| self.include_usage) {
            out.push(to_bytes(&Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(Some(UsageJson::from(u))),
            }));
        }
        out.push(Bytes::from_static(DONE));
    }
}
