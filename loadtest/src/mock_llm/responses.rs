//! `POST {prefix}/responses`: OpenAI's Responses API, for Sluice's pass-through to OpenAI-kind
//! targets.
//!
//! There is one Responses encoder, Sluice's own face (`sluice_gateway::face::responses`): the
//! request is translated by it to a chat body, answered exactly as `POST /chat/completions`
//! answers that body (the same words, tool calls, usage and faults), and the chat answer is
//! rendered back by the face's renderer — a `response` object, or the typed events with their
//! `sequence_number`s, `usage` in `response.completed`. So every fault keeps its meaning: a
//! status fault is OpenAI's error body, `cut:K` ends the events without a terminal one,
//! `echo-key:mid-stream:K` becomes `response.failed` then `error`, `first-error` is a lone
//! `error` event, `stall:K` stalls.
//!
//! What OpenAI adds that chat cannot say: a request offering a `web_search` tool (any
//! `web_search*` type) gets a `web_search_call` item after the others, whole and streamed
//! (`response.output_item.added`, `response.web_search_call.completed`,
//! `response.output_item.done`, before the terminal event), so a test can see a built-in
//! tool's item came through.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use sluice_gateway::face::responses::{self, AnswerCtx, Echo, EventStream};
use sluice_gateway::providers::mock::{CREATED, Endpoint, MockTiming};

use super::Shared;
use super::body::ScriptBody;
use super::server::{answer as chat_answer, error_response};

type Resp = Response<ScriptBody>;

/// Used until the chat answer names the response (`resp_<chat id>`).
const FALLBACK_ID: &str = "resp_mock";

/// One Responses request, after counting, auth and runtime faults.
pub(super) async fn answer(
    shared: &Shared,
    timing: &MockTiming,
    headers: &http::HeaderMap,
    model: Option<&str>,
    body: &[u8],
) -> Result<Resp, io::Error> {
    let chat = match responses::request(body) {
        Ok(chat) => chat,
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                &e.to_string(),
                "invalid_request_error",
                None,
            ));
        }
    };
    let search = chat.echo.tools.iter().any(|t| {
        t.get("type")
            .and_then(Value::as_str)
            .is_some_and(|k| k.starts_with("web_search"))
    });
    let resp = chat_answer(
        shared,
        timing,
        Endpoint::ChatCompletions,
        headers,
        model,
        &chat.body,
    )
    .await?;
    if resp.status() != StatusCode::OK {
        // OpenAI's error body is also the Responses API's.
        return Ok(resp);
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let (parts, body) = resp.into_parts();
    let echo = chat.echo;
    let body = if content_type.starts_with(b"text/event-stream") {
        let mut stream = Streamed::new(echo, search);
        body.map_data(move |chunk| stream.push(&chunk))
    } else if content_type.starts_with(b"application/json") {
        body.map_data(|chat| whole(&chat, &echo, search))
    } else {
        body
    };
    Ok(Response::from_parts(parts, body))
}

/// A whole chat answer as a `response` object; what is not a chat answer (a fault's garbage,
/// half a body, an error object) goes out as it is.
fn whole(chat: &Bytes, echo: &Echo, search: bool) -> Bytes {
    let is_error = serde_json::from_slice::<Value>(chat)
        .ok()
        .is_some_and(|v| v.get("error").is_some());
    if is_error {
        return chat.clone();
    }
    let ctx = AnswerCtx {
        id: FALLBACK_ID,
        created_at: CREATED,
    };
    let Ok(rendered) = responses::response(chat, echo, &ctx) else {
        return chat.clone();
    };
    if !search {
        return rendered;
    }
    let mut v: Value = serde_json::from_slice(&rendered).unwrap_or_default();
    let id = search_item_id(&v);
    if let Some(output) = v.get_mut("output").and_then(Value::as_array_mut) {
        output.push(search_item(&id));
    }
    Bytes::from(v.to_string())
}

fn search_item_id(response: &Value) -> String {
    let id = response.get("id").and_then(Value::as_str).unwrap_or("mock");
    format!("ws_{}", id.strip_prefix("resp_").unwrap_or(id))
}

fn search_item(id: &str) -> Value {
    json!({
        "type": "web_search_call",
        "id": id,
        "status": "completed",
        "action": {"type": "search", "query": "mock-llm web search"},
    })
}

/// A chat stream rendered as typed events, chunk by chunk.
struct Streamed {
    events: EventStream,
    /// A `web_search_call` item is added before the terminal event.
    search: bool,
    /// Events added so far: every later `sequence_number` moves up by this many.
    added: u64,
    started: bool,
}

impl Streamed {
    fn new(echo: Echo, search: bool) -> Self {
        let ctx = AnswerCtx {
            id: FALLBACK_ID,
            created_at: CREATED,
        };
        Self {
            events: EventStream::new(echo, &ctx),
            search,
            added: 0,
            started: false,
        }
    }

    /// One step of the chat stream's script (one event, or a burst of them).
    fn push(&mut self, chat: &[u8]) -> Bytes {
        if !self.started {
            self.started = true;
            // An error before anything else: the Responses API's lone `error` event.
            if let Some(err) = opening_error(chat) {
                let mut out = BytesMut::new();
                frame("error", &err, &mut out);
                return out.freeze();
            }
        }
        let mut out = BytesMut::new();
        self.events.push_raw(chat, &mut out);
        if self.search {
            self.add_search(&out)
        } else {
            out.freeze()
        }
    }

    /// The rendered events with the search item's events before the terminal one, and every
    /// `sequence_number` from there on moved up.
    fn add_search(&mut self, rendered: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(rendered.len() + 512);
        for event in std::str::from_utf8(rendered)
            .unwrap_or_default()
            .split_terminator("\n\n")
        {
            let Some((name, data)) = event
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
            else {
                continue;
            };
            let Ok(mut v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            let seq = v["sequence_number"].as_u64().unwrap_or(0);
            if matches!(name, "response.completed" | "response.incomplete") {
                let id = search_item_id(&v["response"]);
                let index = v["response"]["output"].as_array().map_or(0, Vec::len);
                let item = search_item(&id);
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                let events = [
                    (
                        "response.output_item.added",
                        json!({"output_index": index, "item": added}),
                    ),
                    (
                        "response.web_search_call.completed",
                        json!({"output_index": index, "item_id": id}),
                    ),
                    (
                        "response.output_item.done",
                        json!({"output_index": index, "item": item.clone()}),
                    ),
                ];
                for (kind, mut body) in events {
                    body["type"] = json!(kind);
                    body["sequence_number"] = json!(seq + self.added);
                    self.added += 1;
                    frame(kind, &body, &mut out);
                }
                if let Some(output) = v["response"]["output"].as_array_mut() {
                    output.push(item);
                }
            }
            v["sequence_number"] = json!(seq + self.added);
            frame(name, &v, &mut out);
        }
        out.freeze()
    }
}

/// The error of a chat stream's first event, as the Responses API's `error` event data.
fn opening_error(chat: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(chat).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    let v: Value = serde_json::from_str(data).ok()?;
    let err = v.get("error")?;
    Some(json!({
        "type": "error",
        "sequence_number": 0,
        "code": err.get("code").cloned().unwrap_or(Value::Null),
        "message": err.get("message").cloned().unwrap_or(Value::Null),
        "param": null,
    }))
}

/// `event: <kind>\ndata: <json>\n\n`, as the face writes its events.
fn frame(kind: &str, data: &Value, out: &mut BytesMut) {
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
}
