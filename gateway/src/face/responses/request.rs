//! A Responses request → a chat-completions body.
//!
//! The body is parsed into a `serde_json::Value` once (this face translates every request, so
//! the parse is the price of translating) and every member is checked by name: an unknown or
//! unsupported one is a 400 naming its path (`input[3].content[0].file_id`), never silently
//! dropped.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Echo, TranslateError};
use crate::providers::translate::openai::{invalid, object, string, unsupported};

/// What the exchange sends on, and what the answer echoes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatBody {
    /// A chat-completions body (`model`, `messages`, …); streams ask for the usage chunk.
    pub body: Bytes,
    pub stream: bool,
    pub echo: Echo,
    /// The first built-in tool the request offers or names (`tools`, `tool_choice`), or the
    /// first item of a built-in tool's call in `input` (an earlier answer's `web_search_call`
    /// sent back, as agents do with `input = previous.output + …`), left out of `body`: only an
    /// OpenAI-kind target, which gets the client's own body, can take it.
    pub builtin: Option<Builtin>,
}

/// A built-in tool in a request: its `type`, and the request field it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtin {
    pub kind: String,
    pub param: &'static str,
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Value, TranslateError> {
    obj.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| invalid(join(path, key), "is required"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Members of an object other than those listed are refused, by name.
fn only(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), TranslateError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(unsupported(
            join(path, k),
            "is not a field Sluice translates for the Responses API",
        )),
        None => Ok(()),
    }
}

/// Translates a Responses request body.
pub fn request(body: &[u8]) -> Result<ChatBody, TranslateError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| invalid("", format!("the request body is not valid JSON: {e}")))?;
    let req =
        object(&root, "").map_err(|_| invalid("", "the request body must be a JSON object"))?;

    let mut chat = Map::new();
    let mut echo = Echo::default();
    let mut stream = false;
    let mut builtin: Option<Builtin> = None;

    let model = string(required(req, "model", "")?, "model")?;
    if model.is_empty() {
        return Err(invalid("model", "must not be empty"));
    }
    echo.model = model.to_owned();
    chat.insert("model".into(), Value::String(model.to_owned()));

    let mut messages: Vec<Value> = Vec::new();
    // Unknown fields first: a request we cannot read in full is not half-translated.
    for (key, value) in req {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "model" | "input" => {}
            "instructions" => {
                let text = string(value, "instructions")?;
                echo.instructions = Some(text.to_owned());
            }
            "stream" => {
                stream = value
                    .as_bool()
                    .ok_or_else(|| invalid("stream", "must be a boolean"))?;
            }
            "store" => {
                if value
                    .as_bool()
                    .ok_or_else(|| invalid("store", "must be a boolean"))?
                {
                    return Err(unsupported(
                        "store",
                        "`store: true` is not supported: Sluice keeps no responses; send `store: false` (or leave it out) and pass the conversation as `input` items",
                    ));
                }
            }
            "previous_response_id" => {
                return Err(unsupported(
                    "previous_response_id",
                    "Sluice keeps no responses to continue from; send the whole conversation as `input` items (for example the previous `output` followed by the new message)",
                ));
            }
            "conversation" => {
                return Err(unsupported(
                    "conversation",
                    "Sluice keeps no conversations; send the whole conversation as `input` items",
                ));
            }
            "background" => {
                if value.as_bool() != Some(false) {
                    return Err(unsupported(
                        "background",
                        "background responses need stored state, which Sluice does not keep",
                    ));
                }
            }
            "prompt" => {
                return Err(unsupported(
                    "prompt",
                    "prompt templates live in OpenAI's service; send `instructions` and `input` instead",
                ));
            }
            "tools" => {
                let tools = value
                    .as_array()
                    .ok_or_else(|| invalid("tools", "must be an array"))?;
                let mut out = Vec::with_capacity(tools.len());
                for (i, t) in tools.iter().enumerate() {
                    match tool(t, &format!("tools[{i}]"))? {
                        Tool::Function(f) => out.push(f),
                        Tool::Builtin(kind) => {
                            builtin.get_or_insert(Builtin {
                                kind,
                                param: "tools",
                            });
                        }
                    }
                }
                if !out.is_empty() {
                    chat.insert("tools".into(), Value::Array(out));
                }
                echo.tools.clone_from(tools);
            }
            "tool_choice" => {
                match tool_choice(value)? {
                    Tool::Function(choice) => {
                        chat.insert("tool_choice".into(), choice);
                    }
                    // The chat body keeps its default (`auto`) over its function tools.
                    Tool::Builtin(kind) => {
                        builtin.get_or_insert(Builtin {
                            kind,
                            param: "tool_choice",
                        });
                    }
                }
                echo.tool_choice = value.clone();
            }
            "parallel_tool_calls" => {
                let b = value
                    .as_bool()
                    .ok_or_else(|| invalid("parallel_tool_calls", "must be a boolean"))?;
                echo.parallel_tool_calls = b;
                chat.insert("parallel_tool_calls".into(), Value::Bool(b));
            }
            "text" => {
                let text = object(value, "text")?;
                only(text, &["format", "verbosity"], "text")?;
                if let Some(f) = text.get("format").filter(|f| !f.is_null())
                    && let Some(rf) = response_format(f)?
                {
                    chat.insert("response_format".into(), rf);
                }
                if let Some(v) = text.get("verbosity").filter(|v| !v.is_null()) {
                    string(v, "text.verbosity")?;
                    chat.insert("verbosity".into(), v.clone());
                }
                let mut t = value.clone();
                if let Some(o) = t.as_object_mut() {
                    o.entry("format").or_insert(json!({"type": "text"}));
                }
                echo.text = t;
            }
            "max_output_tokens" => {
                let n = value
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid("max_output_tokens", "must be a positive integer"))?;
                echo.max_output_tokens = Some(n);
                chat.insert("max_completion_tokens".into(), json!(n));
            }
            "temperature" | "top_p" => {
                let x = value
                    .as_f64()
                    .ok_or_else(|| invalid(key.as_str(), "must be a number"))?;
                if key == "temperature" {
                    echo.temperature = Some(x);
                } else {
                    echo.top_p = Some(x);
                }
                chat.insert(key.clone(), value.clone());
            }
            "reasoning" => {
                let r = object(value, "reasoning")?;
                only(r, &["effort", "summary", "generate_summary"], "reasoning")?;
                if let Some(e) = r.get("effort").filter(|e| !e.is_null()) {
                    string(e, "reasoning.effort")?;
                    chat.insert("reasoning_effort".into(), e.clone());
                }
                echo.reasoning = json!({
                    "effort": r.get("effort").cloned().unwrap_or(Value::Null),
                    "summary": r.get("summary").cloned().unwrap_or(Value::Null),
                });
            }
            "metadata" => {
                let m = object(value, "metadata")?;
                if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                    return Err(invalid(format!("metadata.{k}"), "must be a string"));
                }
                echo.metadata = value.clone();
            }
            "user" | "service_tier" | "prompt_cache_key" | "safety_identifier" => {
                let s = string(value, key)?;
                match key.as_str() {
                    "user" => echo.user = Some(s.to_owned()),
                    "service_tier" => echo.service_tier = Some(s.to_owned()),
                    _ => {}
                }
                chat.insert(key.clone(), value.clone());
            }
            "truncation" => {
                if value.as_str() != Some("disabled") {
                    return Err(unsupported(
                        "truncation",
                        "only `disabled` is supported: Sluice does not cut the conversation to fit the model's context",
                    ));
                }
            }
            // What to add to the answer: reasoning items and log probabilities are never
            // produced here, so asking for them adds nothing.
            "include" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| invalid("include", "must be an array"))?;
                for (i, v) in list.iter().enumerate() {
                    string(v, &format!("include[{i}]"))?;
                }
            }
            // Counts built-in tool calls, which only an OpenAI-kind target makes.
            "max_tool_calls" => {
                value
                    .as_u64()
                    .ok_or_else(|| invalid("max_tool_calls", "must be an integer"))?;
            }
            "stream_options" => {
                let o = object(value, "stream_options")?;
                only(o, &["include_obfuscation"], "stream_options")?;
            }
            "top_logprobs" => {
                if value.as_u64() != Some(0) {
                    return Err(unsupported(
                        "top_logprobs",
                        "log probabilities are not translated for the Responses API",
                    ));
                }
            }
            other => {
                return Err(unsupported(
                    other,
                    "is not a field Sluice translates for the Responses API",
                ));
            }
        }
    }

    if let Some(text) = &echo.instructions {
        messages.push(json!({"role": "system", "content": text}));
    }
    input(required(req, "input", "")?, &mut messages, &mut builtin)?;
    if messages.is_empty() {
        return Err(invalid("input", "must not be empty"));
    }
    chat.insert("messages".into(), Value::Array(messages));
    if stream {
        chat.insert("stream".into(), Value::Bool(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let body = serde_json::to_vec(&Value::Object(chat)).map_err(|e| invalid("", e.to_string()))?;
    Ok(ChatBody {
        body: Bytes::from(body),
        stream,
        echo,
        builtin,
    })
}

/// A tool (or tool choice) as chat says it, or the type of a built-in one.
enum Tool {
    Function(Value),
    Builtin(String),
}

/// A Responses function tool → a chat tool; a built-in tool is named, not translated.
fn tool(t: &Value, path: &str) -> Result<Tool, TranslateError> {
    let t = object(t, path)?;
    let kind = string(required(t, "type", path)?, &join(path, "type"))?;
    if kind != "function" {
        return Ok(Tool::Builtin(kind.to_owned()));
    }
    only(
        t,
        &["type", "name", "description", "parameters", "strict"],
        path,
    )?;
    let name = string(required(t, "name", path)?, &join(path, "name"))?;
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name.to_owned()));
    for key in ["description", "parameters", "strict"] {
        if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), v.clone());
        }
    }
    Ok(Tool::Function(
        json!({"type": "function", "function": function}),
    ))
}

fn tool_choice(v: &Value) -> Result<Tool, TranslateError> {
    match v {
        Value::String(s) => match s.as_str() {
            "none" | "auto" | "required" => Ok(Tool::Function(v.clone())),
            other => Err(invalid(
                "tool_choice",
                format!("`{other}` is not one of `none`, `auto`, `required`"),
            )),
        },
        Value::Object(o) => {
            let kind = string(required(o, "type", "tool_choice")?, "tool_choice.type")?;
            match kind {
                "function" => {
                    let name = string(required(o, "name", "tool_choice")?, "tool_choice.name")?;
                    Ok(Tool::Function(
                        json!({"type": "function", "function": {"name": name}}),
                    ))
                }
                "allowed_tools" => Err(unsupported(
                    "tool_choice.type",
                    "`allowed_tools` is not translated; send only the tools the model may call",
                )),
                other => Ok(Tool::Builtin(other.to_owned())),
            }
        }
        _ => Err(invalid("tool_choice", "must be a string or an object")),
    }
}

/// `text.format` → `response_format`; `None` for plain text, chat's default.
fn response_format(f: &Value) -> Result<Option<Value>, TranslateError> {
    let path = "text.format";
    let o = object(f, path)?;
    let kind = string(required(o, "type", path)?, "text.format.type")?;
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(json!({"type": "json_object"}))),
        "json_schema" => {
            only(
                o,
                &["type", "name", "schema", "description", "strict"],
                path,
            )?;
            let name = string(required(o, "name", path)?, "text.format.name")?;
            let schema = required(o, "schema", path)?;
            object(schema, "text.format.schema")?;
            let mut js = Map::new();
            js.insert("name".into(), Value::String(name.to_owned()));
            if let Some(d) = o.get("description").filter(|v| !v.is_null()) {
                js.insert("description".into(), d.clone());
            }
            js.insert("schema".into(), schema.clone());
            if let Some(s) = o.get("strict").filter(|v| !v.is_null()) {
                js.insert("strict".into(), s.clone());
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": js})))
        }
        other => Err(invalid(
            "text.format.type",
            format!("`{other}` is not one of `text`, `json_object`, `json_schema`"),
        )),
    }
}

/// `input` (a string, or items) appended to `messages`. Items chat cannot say are left out
/// of it: `reasoning` items (an OpenAI model's own, opaque to every other provider, and sent
/// back to OpenAI-kind targets in the client's body) and built-in tools' call items, noted in
/// `builtin`.
fn input(
    v: &Value,
    messages: &mut Vec<Value>,
    builtin: &mut Option<Builtin>,
) -> Result<(), TranslateError> {
    let items = match v {
        Value::String(s) => {
            messages.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => return Err(invalid("input", "must be a string or an array of items")),
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        let o = object(item, &path)?;
        // Messages may leave out `type` (the "easy" input message).
        let kind = match o.get("type") {
            None | Some(Value::Null) => "message",
            Some(t) => string(t, &format!("{path}.type"))?,
        };
        match kind {
            "message" => message(o, &path, messages)?,
            "function_call" => function_call(o, &path, messages)?,
            "function_call_output" => {
                only(o, &["type", "call_id", "output", "id", "status"], &path)?;
                let call_id = string(required(o, "call_id", &path)?, &format!("{path}.call_id"))?;
                let content =
                    tool_output(required(o, "output", &path)?, &format!("{path}.output"))?;
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
            }
            "item_reference" => {
                return Err(unsupported(
                    format!("{path}.type"),
                    "`item_reference` needs stored responses, which Sluice does not keep; send the item itself",
                ));
            }
            "reasoning" => {}
            // Built-in tools' calls and their outputs (`web_search_call`, `computer_call_output`,
            // `mcp_call`, …): OpenAI's to read.
            other
                if other.ends_with("_call")
                    || other.ends_with("_call_output")
                    || other.starts_with("mcp_") =>
            {
                builtin.get_or_insert(Builtin {
                    kind: other.to_owned(),
                    param: "input",
                });
            }
            other => {
                return Err(unsupported(
                    format!("{path}.type"),
                    format!("`{other}` is not an input item type Sluice knows"),
                ));
            }
        }
    }
    Ok(())
}

fn message(
    o: &Map<String, Value>,
    path: &str,
    messages: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    only(
        o,
        &["type", "role", "content", "id", "status", "phase"],
        path,
    )?;
    let role = string(required(o, "role", path)?, &format!("{path}.role"))?;
    let content = required(o, "content", path)?;
    let cpath = format!("{path}.content");
    match role {
        "user" | "system" | "developer" => {
            let content = match content {
                Value::String(s) => Value::String(s.clone()),
                Value::Array(parts) => {
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, p) in parts.iter().enumerate() {
                        out.push(input_part(p, &format!("{cpath}[{j}]"), role == "user")?);
                    }
                    Value::Array(out)
                }
                _ => return Err(invalid(cpath, "must be a string or an array of parts")),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "assistant" => {
            let parts = match content {
                Value::String(s) => vec![json!({"type": "text", "text": s})],
                Value::Array(parts) => {
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, p) in parts.iter().enumerate() {
                        let ppath = format!("{cpath}[{j}]");
                        let part = object(p, &ppath)?;
                        let ty = string(required(part, "type", &ppath)?, &format!("{ppath}.type"))?;
                        match ty {
                            "output_text" | "input_text" => {
                                let text = string(
                                    required(part, "text", &ppath)?,
                                    &format!("{ppath}.text"),
                                )?;
                                out.push(json!({"type": "text", "text": text}));
                            }
                            "refusal" => {
                                let text = string(
                                    required(part, "refusal", &ppath)?,
                                    &format!("{ppath}.refusal"),
                                )?;
                                out.push(json!({"type": "refusal", "refusal": text}));
                            }
                            other => {
                                return Err(unsupported(
                                    format!("{ppath}.type"),
                                    format!(
                                        "`{other}` parts are not allowed in an assistant message"
                                    ),
                                ));
                            }
                        }
                    }
                    out
                }
                _ => return Err(invalid(cpath, "must be a string or an array of parts")),
            };
            messages.push(json!({"role": "assistant", "content": parts}));
        }
        other => {
            return Err(invalid(
                format!("{path}.role"),
                format!("unknown role `{other}`"),
            ));
        }
    }
    Ok(())
}

/// A user/system/developer content part. Images only in user messages, as in chat.
fn input_part(p: &Value, path: &str, user: bool) -> Result<Value, TranslateError> {
    let part = object(p, path)?;
    let ty = string(required(part, "type", path)?, &format!("{path}.type"))?;
    match ty {
        "input_text" => {
            only(part, &["type", "text"], path)?;
            let text = string(required(part, "text", path)?, &format!("{path}.text"))?;
            Ok(json!({"type": "text", "text": text}))
        }
        "input_image" if user => {
            only(part, &["type", "image_url", "file_id", "detail"], path)?;
            if part.get("file_id").is_some_and(|v| !v.is_null()) {
                return Err(unsupported(
                    format!("{path}.file_id"),
                    "files uploaded to OpenAI are not translated; send the image as `image_url` (an https or base64 data URL)",
                ));
            }
            let url = string(
                required(part, "image_url", path)?,
                &format!("{path}.image_url"),
            )?;
            let mut image = Map::new();
            image.insert("url".into(), Value::String(url.to_owned()));
            if let Some(d) = part.get("detail").filter(|v| !v.is_null()) {
                string(d, &format!("{path}.detail"))?;
                image.insert("detail".into(), d.clone());
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        "input_file" | "input_audio" => Err(unsupported(
            format!("{path}.type"),
            format!("`{ty}` parts are not translated; send text or images"),
        )),
        other => Err(unsupported(
            format!("{path}.type"),
            format!("`{other}` parts are not allowed in this message"),
        )),
    }
}

/// A `function_call` item joins the assistant message before it, if that is the previous
/// message: one assistant turn with its text and every call, as chat expects.
fn function_call(
    o: &Map<String, Value>,
    path: &str,
    messages: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    only(
        o,
        &[
            "type",
            "call_id",
            "name",
            "arguments",
            "id",
            "status",
            "namespace",
        ],
        path,
    )?;
    let call_id = string(required(o, "call_id", path)?, &format!("{path}.call_id"))?;
    let name = string(required(o, "name", path)?, &format!("{path}.name"))?;
    let arguments = string(
        required(o, "arguments", path)?,
        &format!("{path}.arguments"),
    )?;
    let call = json!({
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    });
    if let Some(last) = messages.last_mut().and_then(Value::as_object_mut)
        && last.get("role").and_then(Value::as_str) == Some("assistant")
    {
        if let Some(Value::Array(calls)) = last.get_mut("tool_calls") {
            calls.push(call);
        } else {
            last.insert("tool_calls".into(), Value::Array(vec![call]));
        }
        return Ok(());
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    Ok(())
}

/// A tool result: a string, or text parts (joined; chat tool messages carry text only).
fn tool_output(v: &Value, path: &str) -> Result<String, TranslateError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                let part = object(p, &ppath)?;
                let ty = string(required(part, "type", &ppath)?, &format!("{ppath}.type"))?;
                if ty != "input_text" && ty != "output_text" {
                    return Err(unsupported(
                        format!("{ppath}.type"),
                        format!(
                            "`{ty}` parts in a tool result are not translated; chat tool results carry text only"
                        ),
                    ));
                }
                text.push_str(string(
                    required(part, "text", &ppath)?,
                    &format!("{ppath}.text"),
                )?);
            }
            Ok(text)
        }
        _ => Err(invalid(path, "must be a string or an array of parts")),
    }
}
