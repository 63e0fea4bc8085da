//! Chat answers rendered as Messages answers: a `chat.completion` as a `message` object, and
//! `chat.completion.chunk` events as the named Messages events, one chunk at a time.
//!
//! | chat | Messages |
//! |---|---|
//! | `message.content` / `delta.content` | a `text` block / `text_delta` |
//! | `tool_calls[]` / their deltas | `tool_use` blocks / `input_json_delta` (`arguments` as `input`) |
//! | `finish_reason` `stop`, `length`, `tool_calls`, `content_filter` | `stop_reason` `end_turn`, `max_tokens`, `tool_use`, `refusal` |
//! | `usage` (prompt includes cache tokens) | `input_tokens` (without them), `output_tokens`, `cache_read_input_tokens`, `cache_creation_input_tokens` |
//! | `data: {"error":…}` | `event: error` |
//! | an SSE comment (keep-alive) | `event: ping` |
//! | `reasoning_content` | dropped (no `thinking` block without a signature the client could send back) |
//!
//! Stream order: `message_start` at the first chunk; blocks open and close as the chunks
//! change from text to a tool call (or from one call to the next); the finish reason closes
//! the open block; `message_delta` (stop reason and the whole usage, which chat reports after
//! the finish reason) and `message_stop` go out at `[DONE]`. `message_start` carries zero
//! usage: chat reports input tokens only at the end, so `message_delta` carries them.
//! `stop_sequence` is always `end_turn` through translation: chat's `stop` does not say
//! whether a stop sequence matched.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::{error_type, sse};
use crate::providers::translate::FinishReason;

/// Messages usage from a chat `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagesUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

impl MessagesUsage {
    pub fn from_chat(u: &Value) -> Self {
        let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        let read = n("/prompt_tokens_details/cached_tokens");
        let write = n("/prompt_tokens_details/cache_write_tokens");
        Self {
            input_tokens: n("/prompt_tokens").saturating_sub(read.saturating_add(write)),
            output_tokens: n("/completion_tokens"),
            cache_read_input_tokens: read,
            cache_creation_input_tokens: write,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
        })
    }
}

fn stop_reason(finish: Option<&str>) -> &'static str {
    finish
        .and_then(FinishReason::from_openai)
        .unwrap_or(FinishReason::Stop)
        .to_anthropic()
}

/// A tool call's `arguments` as `input`: an object, or an empty one when the model wrote
/// something that is not.
fn input_of(arguments: Option<&str>) -> Value {
    arguments
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// A whole `chat.completion` as a `message`; `None` when it is not one.
pub fn message(body: &[u8], fallback_model: &str) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v.pointer("/choices/0")?;
    let msg = choice.get("message")?;
    let mut content = Vec::new();
    if let Some(text) = msg.get("content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let f = call.get("function");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
            "name": f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default(),
            "input": input_of(f.and_then(|f| f.get("arguments")).and_then(Value::as_str)),
        }));
    }
    let usage = v
        .get("usage")
        .map(MessagesUsage::from_chat)
        .unwrap_or_default();
    let out = json!({
        "id": v.get("id").and_then(Value::as_str).unwrap_or_default(),
        "type": "message",
        "role": "assistant",
        "model": v.get("model").and_then(Value::as_str).unwrap_or(fallback_model),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage.to_json(),
    });
    Some(Bytes::from(out.to_string()))
}

/// The block open in the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    /// A tool call, by its chat index.
    Tool(u64),
}

/// One stream's rendering state.
#[derive(Debug)]
pub struct StreamRender {
    model: String,
    started: bool,
    open: Open,
    /// The index the next block gets.
    next_index: u64,
    finish: Option<FinishReason>,
    usage: MessagesUsage,
    /// `message_stop` or an error went out: nothing more is rendered.
    ended: bool,
}

impl StreamRender {
    pub fn new(model: String) -> Self {
        Self {
            model,
            started: false,
            open: Open::None,
            next_index: 0,
            finish: None,
            usage: MessagesUsage::default(),
            ended: false,
        }
    }

    /// One complete chat SSE event (its raw bytes) into Messages events.
    pub fn event(&mut self, raw: &[u8], out: &mut BytesMut) {
        if self.ended {
            return;
        }
        let Some(data) = data_of(raw) else {
            // A comment: the provider's (or Sluice's) keep-alive.
            push(out, "ping", &json!({"type": "ping"}));
            return;
        };
        if data.trim_ascii() == b"[DONE]" {
            self.done(out);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            return;
        };
        if let Some(err) = v.get("error") {
            self.error(err, out);
            return;
        }
        self.start(&v, out);
        if let Some(delta) = v.pointer("/choices/0/delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                if self.open != Open::Text {
                    self.close(out);
                    self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
                }
                self.delta(json!({"type": "text_delta", "text": text}), out);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                self.tool_delta(call, out);
            }
        }
        if let Some(finish) = v
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
        {
            self.finish = Some(FinishReason::from_openai(finish).unwrap_or(FinishReason::Stop));
            self.close(out);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = MessagesUsage::from_chat(u);
        }
    }

    fn start(&mut self, v: &Value, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let model = v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(&self.model);
        push(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": v.get("id").and_then(Value::as_str).unwrap_or_default(),
                "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": MessagesUsage::default().to_json(),
            }}),
        );
    }

    fn tool_delta(&mut self, call: &Value, out: &mut BytesMut) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function");
        let id = call.get("id").and_then(Value::as_str);
        // A new call: its id arrives with its first delta.
        if self.open != Open::Tool(index) {
            self.close(out);
            self.open_block(
                Open::Tool(index),
                json!({
                    "type": "tool_use",
                    "id": id.unwrap_or_default(),
                    "name": f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default(),
                    "input": {},
                }),
                out,
            );
        }
        if let Some(args) = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            self.delta(
                json!({"type": "input_json_delta", "partial_json": args}),
                out,
            );
        }
    }

    fn open_block(&mut self, open: Open, block: Value, out: &mut BytesMut) {
        self.open = open;
        push(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next_index, "content_block": block}),
        );
    }

    fn delta(&self, delta: Value, out: &mut BytesMut) {
        push(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.next_index, "delta": delta}),
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open == Open::None {
            return;
        }
        push(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.next_index}),
        );
        self.open = Open::None;
        self.next_index += 1;
    }

    fn done(&mut self, out: &mut BytesMut) {
        self.start(&Value::Null, out);
        self.close(out);
        let reason = self.finish.unwrap_or(FinishReason::Stop).to_anthropic();
        push(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": self.usage.to_json()}),
        );
        push(out, "message_stop", &json!({"type": "message_stop"}));
        self.ended = true;
    }

    /// A provider's error event, already in chat's shape, as `event: error`.
    fn error(&mut self, err: &Value, out: &mut BytesMut) {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider reported an error");
        let kind = match err.get("type").and_then(Value::as_str) {
            Some("invalid_request_error") => error_type(400),
            Some("authentication_error") => error_type(401),
            Some("permission_error") => error_type(403),
            Some("rate_limit_error" | "requests" | "tokens") => error_type(429),
            Some("overloaded_error") => error_type(529),
            _ => error_type(500),
        };
        push(
            out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
        self.ended = true;
    }
}

fn push(out: &mut BytesMut, name: &str, data: &Value) {
    out.extend_from_slice(&sse(name, data.to_string().as_bytes()));
}

/// The joined `data:` lines of one raw SSE event (borrowed when there is one, as chat
/// chunks have); `None` when it has none (a comment).
fn data_of(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    for line in raw.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            data = Some(match data {
                None => Cow::Borrowed(rest),
                Some(d) => {
                    let mut joined = d.into_owned();
                    joined.push(b'\n');
                    joined.extend_from_slice(rest);
                    Cow::Owned(joined)
                }
            });
        }
    }
    data
}
