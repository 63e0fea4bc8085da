//! A Messages request as a chat-completions body: the mirror of the outbound Anthropic
//! translator (`providers::translate::anthropic`).
//!
//! | Messages | chat completions |
//! |---|---|
//! | `system` (string or text blocks) | a leading `system` message (text parts) |
//! | user `text` / `image` (base64, url) blocks | `text` / `image_url` parts (base64 as a `data:` URL) |
//! | user `tool_result` blocks | `tool` messages, before the rest of the turn; images in a result follow as a user message |
//! | assistant `text` / `tool_use` blocks | `content` / `tool_calls` (`input` as JSON `arguments`) |
//! | assistant `thinking` / `redacted_thinking` blocks | dropped: chat has no field every provider takes |
//! | `tools[]` (`name`, `description`, `input_schema`) | function tools |
//! | `tool_choice` `auto` / `any` / `tool` / `none`, `disable_parallel_tool_use` | `auto` / `required` / the named function / `none`, `parallel_tool_calls: false` |
//! | `max_tokens` (required), `stop_sequences`, `temperature`, `top_p` | `max_tokens`, `stop`, `temperature`, `top_p` |
//! | `metadata.user_id` | `user` |
//! | `stream` | `stream` with `stream_options.include_usage` (the face needs usage for `message_delta`) |
//!
//! A `system` turn inside `messages` (Claude Code sends them) stays a `system` message at its
//! place.
//!
//! Refused with a 400 naming the field: `top_k` (chat has no equivalent, and a silent drop
//! would change sampling), server tools (`web_search_*`, `bash_*`, …), `document` and other
//! block types chat cannot carry, and unknown fields. Dropped, as hints that do not change
//! the answer's shape: `cache_control` on any block or tool, `thinking` (chat has no budget
//! that every provider takes; the answer is rendered without thinking blocks),
//! `service_tier`, `citations` on text blocks, and what Claude Code sends by default:
//! `context_management` (server-side clearing of old tool results: without it the whole
//! history is sent, the answer is the same) and `output_config` (its effort setting).

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::error::GatewayError;

/// What the renderer needs from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub model: String,
    pub stream: bool,
}

type Result<T> = std::result::Result<T, GatewayError>;

fn bad(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid(message, Some(param))
}

/// A path-named 400 (`messages.2.content.0.source`): the param is the top-level field, the
/// message names the whole path.
fn bad_at(param: &'static str, path: &str, reason: &str) -> GatewayError {
    bad(param, format!("`{path}` {reason}"))
}

/// Whether `max_tokens` must be present (`/v1/messages`) or may be left out
/// (`/v1/messages/count_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    CountTokens,
}

/// Translates a Messages request body into a chat-completions body.
pub fn translate(body: &[u8], mode: Mode) -> Result<(Bytes, Facts)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid(format!("the body is not valid JSON: {e}"), None))?;
    let Value::Object(req) = v else {
        return Err(GatewayError::invalid(
            "the body must be a JSON object",
            None,
        ));
    };
    let mut out = Map::new();
    let mut facts = Facts::default();
    for key in req.keys() {
        match key.as_str() {
            "model" | "messages" | "system" | "max_tokens" | "stop_sequences" | "temperature"
            | "top_p" | "tools" | "tool_choice" | "metadata" | "stream" | "thinking"
            | "service_tier" | "context_management" | "output_config" => {}
            "top_k" => {
                return Err(bad(
                    "top_k",
                    "`top_k` has no equivalent in Sluice's translation to other providers; leave it out",
                ));
            }
            other => {
                return Err(GatewayError::invalid(
                    format!("unknown field `{other}`: Sluice cannot translate it"),
                    None,
                ));
            }
        }
    }

    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(bad("model", "`model` must be a non-empty string")),
        None => return Err(bad("model", "`model` is required")),
    };
    facts.model.clone_from(&model);
    out.insert("model".into(), Value::String(model));

    let mut messages = Vec::new();
    if let Some(system) = req.get("system")
        && let Some(parts) = system_parts(system)?
    {
        messages.push(json!({"role": "system", "content": parts}));
    }
    match req.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => {
            for (i, m) in list.iter().enumerate() {
                turn(m, i, &mut messages)?;
            }
        }
        _ => {
            return Err(bad(
                "messages",
                "`messages` must be a non-empty array of messages",
            ));
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    match req.get("max_tokens") {
        Some(n) if n.as_u64().is_some_and(|n| n >= 1) => {
            out.insert("max_tokens".into(), n.clone());
        }
        Some(_) => {
            return Err(bad(
                "max_tokens",
                "`max_tokens` must be an integer of at least 1",
            ));
        }
        None if mode == Mode::Create => {
            return Err(bad("max_tokens", "`max_tokens` is required"));
        }
        None => {}
    }
    if let Some(stops) = req.get("stop_sequences").filter(|v| !v.is_null()) {
        let list = stops
            .as_array()
            .filter(|l| l.iter().all(Value::is_string))
            .ok_or_else(|| {
                bad(
                    "stop_sequences",
                    "`stop_sequences` must be an array of strings",
                )
            })?;
        if !list.is_empty() {
            out.insert("stop".into(), Value::Array(list.clone()));
        }
    }
    for (name, param) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = req.get(name).filter(|v| !v.is_null()) {
            if !v.is_number() {
                return Err(bad(param, format!("`{name}` must be a number")));
            }
            out.insert(name.into(), v.clone());
        }
    }
    if let Some(meta) = req.get("metadata").filter(|v| !v.is_null()) {
        let meta = meta
            .as_object()
            .ok_or_else(|| bad("metadata", "`metadata` must be an object"))?;
        match meta.get("user_id") {
            Some(Value::String(user)) => {
                out.insert("user".into(), Value::String(user.clone()));
            }
            None | Some(Value::Null) => {}
            Some(_) => return Err(bad("metadata", "`metadata.user_id` must be a string")),
        }
    }
    let mut parallel = None;
    if let Some(tools) = req.get("tools").filter(|v| !v.is_null()) {
        let tools = function_tools(tools)?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = req.get("tool_choice").filter(|v| !v.is_null()) {
        let (choice, disable_parallel) = tool_choice(choice)?;
        if out.contains_key("tools") {
            out.insert("tool_choice".into(), choice);
        }
        parallel = disable_parallel.then_some(false);
    }
    if let Some(p) = parallel.filter(|_| out.contains_key("tools")) {
        out.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    match req.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            facts.stream = true;
            out.insert("stream".into(), Value::Bool(true));
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Some(_) => return Err(bad("stream", "`stream` must be a boolean")),
    }
    if let Some(thinking) = req.get("thinking").filter(|v| !v.is_null()) {
        // Checked, then dropped (see the module docs).
        let kind = thinking.get("type").and_then(Value::as_str);
        if !matches!(kind, Some("enabled" | "disabled" | "adaptive")) {
            return Err(bad(
                "thinking",
                "`thinking.type` must be `enabled`, `disabled` or `adaptive`",
            ));
        }
    }
    Ok((Bytes::from(Value::Object(out).to_string()), facts))
}

/// `system` as chat text parts; `None` when it says nothing.
fn system_parts(system: &Value) -> Result<Option<Vec<Value>>> {
    let parts = match system {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                let path = format!("system.{i}");
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(bad_at("system", &path, "must be a `text` block"));
                }
                let text = b
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad_at("system", &format!("{path}.text"), "must be a string"))?;
                parts.push(json!({"type": "text", "text": text}));
            }
            if parts.is_empty() {
                return Ok(None);
            }
            parts
        }
        _ => {
            return Err(bad(
                "system",
                "`system` must be a string or an array of text blocks",
            ));
        }
    };
    Ok(Some(parts))
}

/// One Messages turn as one or more chat messages.
fn turn(m: &Value, i: usize, out: &mut Vec<Value>) -> Result<()> {
    let path = format!("messages.{i}");
    let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
        bad_at(
            "messages",
            &format!("{path}.role"),
            "must be `user`, `assistant` or `system`",
        )
    })?;
    let content = m
        .get("content")
        .ok_or_else(|| bad_at("messages", &format!("{path}.content"), "is required"))?;
    match role {
        "user" => user_turn(content, &path, out),
        "assistant" => assistant_turn(content, &path, out),
        // Claude Code adds system turns mid-conversation; chat keeps them where they are.
        "system" => {
            let parts = system_parts(content).map_err(|_| {
                bad_at(
                    "messages",
                    &format!("{path}.content"),
                    "must be a string or an array of text blocks",
                )
            })?;
            if let Some(parts) = parts {
                out.push(json!({"role": "system", "content": parts}));
            }
            Ok(())
        }
        _ => Err(bad_at(
            "messages",
            &format!("{path}.role"),
            "must be `user`, `assistant` or `system`",
        )),
    }
}

fn blocks<'a>(content: &'a Value, path: &str) -> Result<&'a [Value]> {
    content.as_array().map(Vec::as_slice).ok_or_else(|| {
        bad_at(
            "messages",
            &format!("{path}.content"),
            "must be a string or an array of content blocks",
        )
    })
}

fn block_type<'a>(b: &'a Value, path: &str) -> Result<&'a str> {
    b.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_at("messages", &format!("{path}.type"), "must be a string"))
}

fn text_of<'a>(b: &'a Value, path: &str) -> Result<&'a str> {
    b.get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_at("messages", &format!("{path}.text"), "must be a string"))
}

/// A user turn: tool results first (each its own `tool` message, as chat requires them right
/// after the assistant's calls), then one user message with the rest.
fn user_turn(content: &Value, path: &str, out: &mut Vec<Value>) -> Result<()> {
    if let Value::String(s) = content {
        out.push(json!({"role": "user", "content": s}));
        return Ok(());
    }
    let mut parts = Vec::new();
    for (j, b) in blocks(content, path)?.iter().enumerate() {
        let bpath = format!("{path}.content.{j}");
        match block_type(b, &bpath)? {
            "text" => parts.push(json!({"type": "text", "text": text_of(b, &bpath)?})),
            "image" => parts.push(image_part(b, &bpath)?),
            "tool_result" => tool_result(b, &bpath, out, &mut parts)?,
            other => {
                return Err(bad_at(
                    "messages",
                    &format!("{bpath}.type"),
                    &format!(
                        "`{other}` cannot be translated for this route's providers; send text, image or tool_result blocks"
                    ),
                ));
            }
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// `{"type":"image","source":{…}}` as an `image_url` part. Sluice never fetches a URL itself.
fn image_part(b: &Value, path: &str) -> Result<Value> {
    let source = b
        .get("source")
        .ok_or_else(|| bad_at("messages", &format!("{path}.source"), "is required"))?;
    let spath = format!("{path}.source");
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source
                .get("media_type")
                .and_then(Value::as_str)
                .filter(|m| matches!(*m, "image/jpeg" | "image/png" | "image/gif" | "image/webp"))
                .ok_or_else(|| {
                    bad_at(
                        "messages",
                        &format!("{spath}.media_type"),
                        "must be image/jpeg, image/png, image/gif or image/webp",
                    )
                })?;
            let data = source
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| bad_at("messages", &format!("{spath}.data"), "must be a string"))?;
            format!("data:{media};base64,{data}")
        }
        Some("url") => {
            let url = source
                .get("url")
                .and_then(Value::as_str)
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                .ok_or_else(|| {
                    bad_at(
                        "messages",
                        &format!("{spath}.url"),
                        "must be an http(s) URL",
                    )
                })?;
            url.to_owned()
        }
        _ => {
            return Err(bad_at(
                "messages",
                &format!("{spath}.type"),
                "must be `base64` or `url`",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `tool_result` block as a `tool` message; an image in it follows in the user message
/// (chat tool messages carry text only).
fn tool_result(b: &Value, path: &str, out: &mut Vec<Value>, parts: &mut Vec<Value>) -> Result<()> {
    let id = b
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad_at(
                "messages",
                &format!("{path}.tool_use_id"),
                "must be a string",
            )
        })?;
    let mut text = String::new();
    match b.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(inner)) => {
            for (k, c) in inner.iter().enumerate() {
                let cpath = format!("{path}.content.{k}");
                match block_type(c, &cpath)? {
                    "text" => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(text_of(c, &cpath)?);
                    }
                    "image" => parts.push(image_part(c, &cpath)?),
                    other => {
                        return Err(bad_at(
                            "messages",
                            &format!("{cpath}.type"),
                            &format!(
                                "`{other}` cannot be translated inside a tool result; send text or image blocks"
                            ),
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(bad_at(
                "messages",
                &format!("{path}.content"),
                "must be a string or an array of blocks",
            ));
        }
    }
    // Chat has no error flag on a tool result: say it in the text the model reads.
    if b.get("is_error").and_then(Value::as_bool) == Some(true) {
        text.insert_str(0, "Error: ");
    }
    out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
    Ok(())
}

/// An assistant turn: its text as `content`, its `tool_use` blocks as `tool_calls`.
fn assistant_turn(content: &Value, path: &str, out: &mut Vec<Value>) -> Result<()> {
    if let Value::String(s) = content {
        out.push(json!({"role": "assistant", "content": s}));
        return Ok(());
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks(content, path)?.iter().enumerate() {
        let bpath = format!("{path}.content.{j}");
        match block_type(b, &bpath)? {
            "text" => text.push_str(text_of(b, &bpath)?),
            "tool_use" => {
                let id = b.get("id").and_then(Value::as_str).ok_or_else(|| {
                    bad_at("messages", &format!("{bpath}.id"), "must be a string")
                })?;
                let name = b.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad_at("messages", &format!("{bpath}.name"), "must be a string")
                })?;
                let input = b.get("input").filter(|i| i.is_object()).ok_or_else(|| {
                    bad_at("messages", &format!("{bpath}.input"), "must be an object")
                })?;
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(bad_at(
                    "messages",
                    &format!("{bpath}.type"),
                    &format!(
                        "`{other}` cannot be translated for this route's providers; send text or tool_use blocks"
                    ),
                ));
            }
        }
    }
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    m.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(m));
    Ok(())
}

/// Client tools as chat function tools; server tools are refused.
fn function_tools(tools: &Value) -> Result<Vec<Value>> {
    let list = tools
        .as_array()
        .ok_or_else(|| bad("tools", "`tools` must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let path = format!("tools.{i}");
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(bad_at(
                    "tools",
                    &format!("{path}.type"),
                    &format!(
                        "`{other}` is a server tool, which Sluice cannot translate; send client tools (name, description, input_schema)"
                    ),
                ));
            }
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad_at(
                    "tools",
                    &format!("{path}.name"),
                    "must be a non-empty string",
                )
            })?;
        let schema = t
            .get("input_schema")
            .filter(|s| s.is_object())
            .ok_or_else(|| {
                bad_at(
                    "tools",
                    &format!("{path}.input_schema"),
                    "must be an object",
                )
            })?;
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        if let Some(d) = t.get("description").and_then(Value::as_str) {
            function.insert("description".into(), json!(d));
        }
        function.insert("parameters".into(), schema.clone());
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `tool_choice` as chat's, and whether parallel calls are off.
fn tool_choice(choice: &Value) -> Result<(Value, bool)> {
    let disable = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    "tool_choice",
                    "`tool_choice.name` is required when the type is `tool`",
                )
            })?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(bad(
                "tool_choice",
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
            ));
        }
    };
    Ok((mapped, disable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Value {
        let (out, _) = translate(body.to_string().as_bytes(), Mode::Create).expect("translates");
        serde_json::from_slice(&out).expect("json")
    }

    fn refused(body: Value) -> GatewayError {
        translate(body.to_string().as_bytes(), Mode::Create).expect_err("refused")
    }

    #[test]
    fn plain_request_with_system_string_and_sampling() {
        let out = chat(json!({
            "model": "claude-x", "max_tokens": 100, "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-x", "max_tokens": 100,
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                    {"role": "user", "content": "hi"},
                ],
                "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "user": "u-1",
            })
        );
    }

    #[test]
    fn stream_asks_for_usage() {
        let (out, facts) = translate(
            br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}"#,
            Mode::Create,
        )
        .expect("ok");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        assert_eq!(
            facts,
            Facts {
                model: "m".into(),
                stream: true
            }
        );
    }

    #[test]
    fn blocks_images_tools_and_results() {
        let out = chat(json!({
            "model": "m", "max_tokens": 10,
            "system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "thanks"},
                ]},
            ],
            "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": [{"type": "text", "text": "a"}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ]},
                {"role": "assistant", "content": "calling", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
            ])
        );
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object"}}}])
        );
        assert_eq!(out["tool_choice"], json!("required"));
        assert_eq!(out["parallel_tool_calls"], json!(false));
    }

    #[test]
    fn tool_choice_table() {
        let cases = [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ];
        for (choice, want) in cases {
            assert_eq!(tool_choice(&choice).expect("ok").0, want, "{choice}");
        }
        assert!(tool_choice(&json!({"type": "tool"})).is_err());
        assert!(tool_choice(&json!({"type": "sometimes"})).is_err());
    }

    #[test]
    fn error_results_and_assistant_tool_only_turns() {
        let out = chat(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": true}]},
            ],
        }));
        assert_eq!(out["messages"][1]["content"], Value::Null);
        assert_eq!(
            out["messages"][2],
            json!({"role": "tool", "tool_call_id": "t", "content": "Error: boom"})
        );
        assert_eq!(out["messages"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn refusals_name_the_field() {
        let base = |extra: Value| {
            let mut v = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        };
        let cases: [(Value, Option<&str>, &str); 8] = [
            (json!({"top_k": 5}), Some("top_k"), "top_k"),
            (json!({"max_tokens": 0}), Some("max_tokens"), "max_tokens"),
            (json!({"mcp_servers": []}), None, "mcp_servers"),
            (
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                Some("tools"),
                "server tool",
            ),
            (
                json!({"tools": [{"name": "f"}]}),
                Some("tools"),
                "input_schema",
            ),
            (json!({"messages": []}), Some("messages"), "non-empty"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
                Some("messages"),
                "document",
            ),
            (
                json!({"thinking": {"type": "sometimes"}}),
                Some("thinking"),
                "thinking.type",
            ),
        ];
        for (extra, param, words) in cases {
            let e = refused(base(extra.clone()));
            assert_eq!(e.status(), 400, "{extra}");
            assert_eq!(e.param(), param, "{extra}");
            assert!(e.to_string().contains(words), "{extra}: {e}");
        }
        let missing =
            refused(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        assert!(missing.to_string().contains("`max_tokens` is required"));
        assert!(
            translate(
                br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
                Mode::CountTokens
            )
            .is_ok()
        );
    }

    #[test]
    fn claude_code_defaults_are_accepted() {
        let out = chat(json!({
            "model": "m", "max_tokens": 5,
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "output_config": {"effort": "high"},
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
                {"role": "user", "content": "y"},
            ],
        }));
        assert_eq!(
            out,
            json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "user", "content": "x"},
                {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
                {"role": "user", "content": "y"},
            ]})
        );
        let e = refused(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
        );
        assert!(e.to_string().contains("`messages.0.role`"), "{e}");
    }

    #[test]
    fn hints_are_dropped() {
        let out = chat(json!({
            "model": "m", "max_tokens": 5, "service_tier": "auto",
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}],
        }));
        assert_eq!(
            out,
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})
        );
    }
}
