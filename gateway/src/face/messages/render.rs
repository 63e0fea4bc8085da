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
//! | `thinking_blocks` (Anthropic's signed reasoning, carried through chat) | `thinking` blocks with their `signature`, `redacted_thinking` blocks |
//! | `delta.reasoning_content`, then `delta.thinking_blocks` | a `thinking` block: `thinking_delta`s, then a `signature_delta` |
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
    // Reasoning with what it takes to send it back (Anthropic's signed blocks, carried
    // through chat as `thinking_blocks`); bare `reasoning_content` has no signature and is
    // left out.
    for block in msg
        .get("thinking_blocks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if let Some(b) = thinking_block(block) {
            content.push(b);
        }
    }
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

/// A chat `thinking_blocks` entry as a Messages content block.
fn thinking_block(b: &Value) -> Option<Value> {
    let s = |k: &str| b.get(k).and_then(Value::as_str);
    match s("type")? {
        "thinking" => Some(json!({
            "type": "thinking",
            "thinking": s("thinking").unwrap_or_default(),
            "signature": s("signature").unwrap_or_default(),
        })),
        "redacted_thinking" => Some(json!({"type": "redacted_thinking", "data": s("data")?})),
        _ => None,
    }
}

/// The block open in the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Thinking,
    Redacted,
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
            if let Some(text) = delta.get("reasoning_content").and_then(Value::as_str)
                && !text.is_empty()
            {
                if self.open != Open::Thinking {
                    self.close(out);
                    self.open_block(
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                }
                self.delta(json!({"type": "thinking_delta", "thinking": text}), out);
            }
            for block in delta
                .get("thinking_blocks")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                self.thinking_done(block, out);
            }
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

    /// A finished reasoning block: its signature ends the open thinking block; a redacted
    /// block is a block of its own.
    fn thinking_done(&mut self, block: &Value, out: &mut BytesMut) {
        match block.get("type").and_then(Value::as_str) {
            Some("thinking") => {
                if self.open != Open::Thinking {
                    // The text came whole, with no deltas before it.
                    self.close(out);
                    self.open_block(
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                    if let Some(text) = block
                        .get("thinking")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                    {
                        self.delta(json!({"type": "thinking_delta", "thinking": text}), out);
                    }
                }
                if let Some(sig) = block.get("signature").and_then(Value::as_str) {
                    self.delta(json!({"type": "signature_delta", "signature": sig}), out);
                }
                self.close(out);
            }
            Some("redacted_thinking") => {
                if let Some(b) = thinking_block(block) {
                    self.close(out);
                    self.open_block(Open::Redacted, b, out);
                    self.close(out);
                }
            }
            _ => {}
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
        // Chat's `code` is the finer word (Sluice's and the translators' table); `type` next.
        let code = err.get("code").and_then(Value::as_str);
        let kind = match (code, err.get("type").and_then(Value::as_str)) {
            (Some("provider_overloaded" | "provider_unavailable"), _)
            | (_, Some("overloaded_error")) => error_type(529),
            (Some("upstream_timeout"), _) => error_type(504),
            (Some("rate_limit_exceeded" | "insufficient_quota"), _)
            | (_, Some("rate_limit_error" | "requests" | "tokens" | "insufficient_quota")) => {
                error_type(429)
            }
            (_, Some("invalid_request_error")) => error_type(400),
            (_, Some("authentication_error")) => error_type(401),
            (_, Some("permission_error")) => error_type(403),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered stream as (event name, data) pairs.
    fn parse(out: &[u8]) -> Vec<(String, Value)> {
        std::str::from_utf8(out)
            .expect("utf8")
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut lines = e.lines();
                let name = lines
                    .next()
                    .and_then(|l| l.strip_prefix("event: "))
                    .expect("named");
                let data = lines
                    .next()
                    .and_then(|l| l.strip_prefix("data: "))
                    .expect("data");
                (name.to_owned(), serde_json::from_str(data).expect("json"))
            })
            .collect()
    }

    fn chunk(v: Value) -> Vec<u8> {
        format!("data: {v}\n\n").into_bytes()
    }

    fn render(events: &[Vec<u8>]) -> Vec<(String, Value)> {
        let mut r = StreamRender::new("asked".into());
        let mut out = BytesMut::new();
        for e in events {
            r.event(e, &mut out);
        }
        parse(&out)
    }

    const USAGE: &str = r#"{"prompt_tokens":100,"completion_tokens":7,"total_tokens":107,"prompt_tokens_details":{"cached_tokens":25,"cache_write_tokens":12}}"#;

    #[test]
    fn usage_table() {
        let u = MessagesUsage::from_chat(&serde_json::from_str(USAGE).expect("json"));
        assert_eq!(
            u,
            MessagesUsage {
                input_tokens: 63,
                output_tokens: 7,
                cache_read_input_tokens: 25,
                cache_creation_input_tokens: 12,
            }
        );
        assert_eq!(
            MessagesUsage::from_chat(&json!({"prompt_tokens": 3, "completion_tokens": 1})),
            MessagesUsage {
                input_tokens: 3,
                output_tokens: 1,
                ..MessagesUsage::default()
            }
        );
    }

    #[test]
    fn stop_reason_table() {
        for (finish, want) in [
            (Some("stop"), "end_turn"),
            (Some("length"), "max_tokens"),
            (Some("tool_calls"), "tool_use"),
            (Some("content_filter"), "refusal"),
            (Some("something_new"), "end_turn"),
            (None, "end_turn"),
        ] {
            assert_eq!(stop_reason(finish), want, "{finish:?}");
        }
    }

    #[test]
    fn whole_answer_with_text_and_tool_calls() {
        let body = format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-x","choices":[{{"index":0,"message":{{"role":"assistant","content":"Let me look.","tool_calls":[{{"id":"call_1","type":"function","function":{{"name":"get_weather","arguments":"{{\"city\":\"Paris\"}}"}}}},{{"id":"call_2","type":"function","function":{{"name":"f","arguments":"not json"}}}}]}},"finish_reason":"tool_calls"}}],"usage":{USAGE}}}"#
        );
        let out: Value =
            serde_json::from_slice(&message(body.as_bytes(), "asked").expect("a message"))
                .expect("json");
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "f", "input": {}},
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 63, "output_tokens": 7, "cache_read_input_tokens": 25, "cache_creation_input_tokens": 12},
            })
        );
        assert!(message(b"{\"choices\":[]}", "m").is_none());
        assert!(message(b"not json", "m").is_none());
    }

    #[test]
    fn text_stream_renders_the_events_in_order() {
        let events = render(&[
            chunk(
                json!({"id": "c1", "model": "gpt-x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            ),
            chunk(json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]})),
            b": keepalive\n\n".to_vec(),
            chunk(json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"}}]})),
            chunk(
                json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
            ),
            chunk(
                serde_json::from_str(&format!(r#"{{"id":"c1","choices":[],"usage":{USAGE}}}"#))
                    .expect("json"),
            ),
            b"data: [DONE]\n\n".to_vec(),
            // Anything after the end is ignored.
            chunk(json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "late"}}]})),
        ]);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[0].1["message"]["id"], "c1");
        assert_eq!(events[0].1["message"]["model"], "gpt-x");
        assert_eq!(events[0].1["message"]["content"], json!([]));
        assert_eq!(
            events[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            events[2].1,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
        );
        assert_eq!(
            events[5].1,
            json!({"type": "content_block_stop", "index": 0})
        );
        assert_eq!(
            events[6].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                "usage": {"input_tokens": 63, "output_tokens": 7, "cache_read_input_tokens": 25, "cache_creation_input_tokens": 12}})
        );
    }

    #[test]
    fn tool_call_deltas_become_tool_use_blocks() {
        let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut c = json!({"index": index, "function": {"arguments": args}});
            if let Some(id) = id {
                c["id"] = json!(id);
                c["type"] = json!("function");
            }
            if let Some(name) = name {
                c["function"]["name"] = json!(name);
            }
            chunk(
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [c]}}]}),
            )
        };
        let events = render(&[
            chunk(
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "ok"}}]}),
            ),
            call(0, Some("call_a"), Some("get_weather"), ""),
            call(0, None, None, "{\"q\":"),
            call(0, None, None, "\"x\"}"),
            call(1, Some("call_b"), Some("get_time"), "{}"),
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            ),
            b"data: [DONE]\n\n".to_vec(),
        ]);
        let summary: Vec<(String, Value)> = events
            .iter()
            .map(|(n, v)| {
                let detail = match n.as_str() {
                    "content_block_start" => json!([v["index"], v["content_block"]]),
                    "content_block_delta" => json!([v["index"], v["delta"]]),
                    "content_block_stop" => v["index"].clone(),
                    "message_delta" => v["delta"]["stop_reason"].clone(),
                    _ => Value::Null,
                };
                (n.clone(), detail)
            })
            .collect();
        let e = |n: &str, v: Value| (n.to_owned(), v);
        assert_eq!(
            summary,
            vec![
                e("message_start", Value::Null),
                e(
                    "content_block_start",
                    json!([0, {"type": "text", "text": ""}])
                ),
                e(
                    "content_block_delta",
                    json!([0, {"type": "text_delta", "text": "ok"}])
                ),
                e("content_block_stop", json!(0)),
                e(
                    "content_block_start",
                    json!([1, {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}])
                ),
                e(
                    "content_block_delta",
                    json!([1, {"type": "input_json_delta", "partial_json": "{\"q\":"}])
                ),
                e(
                    "content_block_delta",
                    json!([1, {"type": "input_json_delta", "partial_json": "\"x\"}"}])
                ),
                e("content_block_stop", json!(1)),
                e(
                    "content_block_start",
                    json!([2, {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}])
                ),
                e(
                    "content_block_delta",
                    json!([2, {"type": "input_json_delta", "partial_json": "{}"}])
                ),
                e("content_block_stop", json!(2)),
                e("message_delta", json!("tool_use")),
                e("message_stop", Value::Null),
            ]
        );
    }

    #[test]
    fn a_provider_error_event_ends_the_stream() {
        let events = render(&[
            chunk(
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "par"}}]}),
            ),
            chunk(
                json!({"error": {"message": "Overloaded", "type": "server_error", "code": "upstream_error"}}),
            ),
            b"data: [DONE]\n\n".to_vec(),
        ]);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            events[3].1,
            json!({"type": "error", "error": {"type": "api_error", "message": "Overloaded"}})
        );
    }

    #[test]
    fn reasoning_becomes_signed_thinking_blocks() {
        let events = render(&[
            chunk(
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"reasoning_content": "Let me "}}]}),
            ),
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "think."}}]}),
            ),
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"thinking_blocks": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig=="}]}}]}),
            ),
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}}]}),
            ),
            chunk(json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "Answer."}}]})),
            b"data: [DONE]\n\n".to_vec(),
        ]);
        let got: Vec<(String, Value)> = events
            .iter()
            .map(|(n, v)| {
                let detail = match n.as_str() {
                    "content_block_start" => json!([v["index"], v["content_block"]]),
                    "content_block_delta" => json!([v["index"], v["delta"]]),
                    "content_block_stop" => v["index"].clone(),
                    _ => Value::Null,
                };
                (n.clone(), detail)
            })
            .collect();
        let e = |n: &str, v: Value| (n.to_owned(), v);
        assert_eq!(
            got,
            vec![
                e("message_start", Value::Null),
                e(
                    "content_block_start",
                    json!([0, {"type": "thinking", "thinking": "", "signature": ""}])
                ),
                e(
                    "content_block_delta",
                    json!([0, {"type": "thinking_delta", "thinking": "Let me "}])
                ),
                e(
                    "content_block_delta",
                    json!([0, {"type": "thinking_delta", "thinking": "think."}])
                ),
                e(
                    "content_block_delta",
                    json!([0, {"type": "signature_delta", "signature": "sig=="}])
                ),
                e("content_block_stop", json!(0)),
                e(
                    "content_block_start",
                    json!([1, {"type": "redacted_thinking", "data": "opaque"}])
                ),
                e("content_block_stop", json!(1)),
                e(
                    "content_block_start",
                    json!([2, {"type": "text", "text": ""}])
                ),
                e(
                    "content_block_delta",
                    json!([2, {"type": "text_delta", "text": "Answer."}])
                ),
                e("content_block_stop", json!(2)),
                e("message_delta", Value::Null),
                e("message_stop", Value::Null),
            ]
        );
        let whole = json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "Answer.", "reasoning_content": "Let me think.",
            "thinking_blocks": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig=="}, {"type": "redacted_thinking", "data": "opaque"}],
        }}]});
        let out: Value =
            serde_json::from_slice(&message(whole.to_string().as_bytes(), "m").expect("a message"))
                .expect("json");
        assert_eq!(
            out["content"],
            json!([
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Answer."},
            ])
        );
    }

    #[test]
    fn provider_error_event_table() {
        for (err, want) in [
            (
                json!({"message": "m", "type": "server_error", "code": "provider_overloaded"}),
                "overloaded_error",
            ),
            (
                json!({"message": "m", "type": "server_error", "code": "provider_unavailable"}),
                "overloaded_error",
            ),
            (
                json!({"message": "m", "type": "server_error", "code": "upstream_timeout"}),
                "timeout_error",
            ),
            (
                json!({"message": "m", "type": "rate_limit_error", "code": "rate_limit_exceeded"}),
                "rate_limit_error",
            ),
            (
                json!({"message": "m", "type": "invalid_request_error", "code": "content_filter"}),
                "invalid_request_error",
            ),
            (
                json!({"message": "m", "type": "server_error", "code": "stream_interrupted"}),
                "api_error",
            ),
            (json!({"message": "m"}), "api_error"),
        ] {
            let events = render(&[
                chunk(
                    json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "a"}}]}),
                ),
                chunk(json!({"error": err.clone()})),
            ]);
            assert_eq!(
                events.last().map(|(_, v)| v["error"]["type"].clone()),
                Some(json!(want)),
                "{err}"
            );
        }
    }

    #[test]
    fn an_empty_stream_still_starts_and_stops() {
        let events = render(&[b"data: [DONE]\n\n".to_vec()]);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
        assert_eq!(events[0].1["message"]["model"], "asked");
    }
}
