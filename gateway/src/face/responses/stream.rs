//! A chat-completions chunk stream → the Responses API's typed events.
//!
//! [`EventStream`] is fed one chunk event at a time and writes each Responses event as it
//! can, so nothing is held back beyond the event being translated. Every event carries the
//! next `sequence_number` (from 0), in the order OpenAI sends them:
//!
//! ```text
//! response.created, response.in_progress,
//!   per item: response.output_item.added,
//!     message: response.content_part.added, response.output_text.delta…,
//!              response.output_text.done, response.content_part.done
//!     function_call: response.function_call_arguments.delta…, response.function_call_arguments.done
//!   response.output_item.done,
//! response.completed | response.incomplete          (clean end)
//! response.failed, error                            (a cut stream or a provider's error event)
//! ```
//!
//! An item stays open until another kind of item starts or the stream ends; function calls
//! stay open together (a provider may interleave their argument deltas) and close in order.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::{
    AnswerCtx, ChatUsage, Echo, Item, ItemJson, MsgPart, ReasoningPartJson, State, Status, item_id,
    response_json, status_of,
};
use crate::sse::SseDecoder;

/// The largest chunk event accepted from a replayed (already framed) stream.
const MAX_EVENT: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<ChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default)]
    error: Option<ChunkError>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// Text borrows from the event when it has no escapes: no copy per delta.
#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Vec<ToolDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    #[serde(default)]
    index: u64,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChunkError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// One event: `type` and `sequence_number` first, then the event's own members.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct LifecycleBody<'a> {
    response: super::ResponseJson<'a>,
}

#[derive(Serialize)]
struct ItemBody<'a> {
    output_index: usize,
    item: ItemJson<'a>,
}

#[derive(Serialize)]
struct PartBody<'a, P: Serialize> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: P,
}

#[derive(Serialize)]
struct TextDeltaBody<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct TextDoneBody<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    text: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct PlainDeltaBody<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct RefusalDoneBody<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    refusal: &'a str,
}

#[derive(Serialize)]
struct ReasoningDoneBody<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    text: &'a str,
}

#[derive(Serialize)]
struct ArgsDeltaBody<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct ArgsDoneBody<'a> {
    item_id: &'a str,
    output_index: usize,
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    param: Option<()>,
}

/// Which kind of content part the open message is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

/// Translates one chat chunk stream into Responses events. See the module doc.
pub struct EventStream {
    echo: Echo,
    id: String,
    created_at: u64,
    model: Option<String>,
    seq: u64,
    started: bool,
    ended: bool,
    items: Vec<Item>,
    /// Output index of the open message and whether its last part is still open.
    open_message: Option<(usize, Option<PartKind>)>,
    open_reasoning: Option<usize>,
    /// Open function calls: (chat tool-call index, output index).
    open_calls: Vec<(u64, usize)>,
    finish: Option<String>,
    usage: Option<ChatUsage>,
    /// For [`push_raw`](Self::push_raw) only.
    decoder: Option<SseDecoder>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("id", &self.id)
            .field("sequence_number", &self.seq)
            .field("items", &self.items.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// `ctx` gives the id and time used until the first chunk names its own (and for a stream
    /// that fails before any chunk).
    pub fn new(echo: Echo, ctx: &AnswerCtx<'_>) -> Self {
        Self {
            echo,
            id: ctx.id.to_owned(),
            created_at: ctx.created_at,
            model: None,
            seq: 0,
            started: false,
            ended: false,
            items: Vec::new(),
            open_message: None,
            open_reasoning: None,
            open_calls: Vec::new(),
            finish: None,
            usage: None,
            decoder: None,
        }
    }

    /// A stream a provider began in the Responses API's own events (passed through as they
    /// came), for Sluice to end: the next event is `next_seq`, and the response is `ctx.id`.
    pub fn resumed(echo: Echo, ctx: &AnswerCtx<'_>, model: Option<String>, next_seq: u64) -> Self {
        Self {
            model,
            seq: next_seq,
            started: true,
            ..Self::new(echo, ctx)
        }
    }

    /// True once a terminal event (`response.completed`/`incomplete`/`failed`) was written.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Usage as the provider reported it.
    pub fn usage(&self) -> Option<&ChatUsage> {
        self.usage.as_ref()
    }

    /// `response.created` and `response.in_progress`, once; the first chunk calls it anyway.
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            self.lifecycle(kind, Status::InProgress, None, None, out);
        }
    }

    /// One chat SSE event's `data` (a chunk, `[DONE]`, or an error object).
    pub fn chunk(&mut self, data: &[u8], out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if data == b"[DONE]" {
            self.start(out);
            self.complete(out);
            return;
        }
        let chunk: Chunk<'_> = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.start(out);
                let message = format!("the provider sent a stream event that is not a chunk: {e}");
                self.fail("stream_interrupted", &message, out);
                return;
            }
        };
        if !self.started {
            // The answer names the response: the same chat answer (a cache replay) gives the
            // same response id.
            if let Some(id) = chunk.id.as_deref().filter(|id| !id.is_empty()) {
                self.id = super::response_id(id);
            }
            if let Some(created) = chunk.created {
                self.created_at = created;
            }
        }
        if self.model.is_none() {
            self.model = chunk.model.as_deref().map(str::to_owned);
        }
        self.start(out);
        if let Some(err) = chunk.error {
            let code = match &err.code {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => err.kind.clone().unwrap_or_else(|| "server_error".into()),
            };
            let message = err
                .message
                .unwrap_or_else(|| "the provider reported an error mid-stream".into());
            self.fail(&code, &message, out);
            return;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        // Sluice never asks for `n`: choice 0 is the answer.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta.unwrap_or_default();
            if let Some(r) = delta.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
                self.reasoning(r, out);
            }
            if let Some(t) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(PartKind::Text, t, out);
            }
            if let Some(t) = delta.refusal.as_deref().filter(|t| !t.is_empty()) {
                self.text(PartKind::Refusal, t, out);
            }
            for call in delta.tool_calls {
                self.tool(call, out);
            }
            if let Some(f) = choice.finish_reason {
                self.finish = Some(f);
            }
        }
    }

    /// Raw SSE bytes of a chat stream, in any split (a cache replay).
    pub fn push_raw(&mut self, bytes: &[u8], out: &mut BytesMut) {
        let dec = self
            .decoder
            .get_or_insert_with(|| SseDecoder::new(MAX_EVENT));
        dec.push(bytes);
        loop {
            let next = match self.decoder.as_mut().map(SseDecoder::next_event) {
                Some(Ok(Some(ev))) => ev,
                Some(Ok(None)) | None => return,
                Some(Err(e)) => {
                    let message = e.to_string();
                    self.fail("stream_interrupted", &message, out);
                    return;
                }
            };
            if !next.has_data {
                continue;
            }
            if next.event.as_deref() == Some(b"error".as_slice()) {
                self.error_event(&next.data, out);
            } else {
                self.chunk(&next.data, out);
            }
        }
    }

    /// A named `error` event from an OpenAI-compatible server, in whatever shape it has.
    fn error_event(&mut self, data: &[u8], out: &mut BytesMut) {
        let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
        let text = |ptrs: &[&str]| {
            ptrs.iter()
                .find_map(|p| v.pointer(p).and_then(serde_json::Value::as_str))
                .map(str::to_owned)
        };
        let code = text(&["/error/code", "/error/type", "/code", "/type"])
            .unwrap_or_else(|| "server_error".into());
        let message = text(&["/error/message", "/message"])
            .unwrap_or_else(|| "the provider reported an error mid-stream".into());
        self.fail(&code, &message, out);
    }

    /// The chat stream ended: completed if it had finished, else failed (a cut stream).
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.start(out);
        if self.finish.is_some() {
            self.complete(out);
        } else {
            self.fail(
                "stream_interrupted",
                "the provider closed the stream before it finished",
                out,
            );
        }
    }

    /// Ends the stream with `response.failed` (the output so far, marked incomplete) and
    /// then the `error` event, so the last thing a client reads is the error.
    pub fn fail(&mut self, code: &str, message: &str, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.start(out);
        self.ended = true;
        for item in &mut self.items {
            match item {
                Item::Message { status, .. } | Item::FunctionCall { status, .. }
                    if *status == Status::InProgress =>
                {
                    *status = Status::Incomplete;
                }
                _ => {}
            }
        }
        self.lifecycle(
            "response.failed",
            Status::Failed,
            None,
            Some(("server_error", message)),
            out,
        );
        let body = ErrorBody {
            code,
            message,
            param: None,
        };
        self.emit("error", body, out);
    }

    // === items ===

    fn reasoning(&mut self, delta: &str, out: &mut BytesMut) {
        self.close_message(Status::Completed, out);
        self.close_calls(Status::Completed, out);
        let index = match self.open_reasoning {
            Some(i) => i,
            None => {
                let index = self.items.len();
                let id = item_id("rs", &self.id, index);
                let item = ItemJson::Reasoning {
                    id: &id,
                    summary: [],
                    content: vec![],
                };
                self.emit_item("response.output_item.added", index, item, out);
                let part = ReasoningPartJson {
                    kind: "reasoning_text",
                    text: "",
                };
                self.emit_part("response.content_part.added", &id, index, 0, part, out);
                self.items.push(Item::Reasoning {
                    id,
                    text: String::new(),
                });
                self.open_reasoning = Some(index);
                index
            }
        };
        let Some(Item::Reasoning { id, text }) = self.items.get_mut(index) else {
            return;
        };
        text.push_str(delta);
        let body = PlainDeltaBody {
            item_id: id,
            output_index: index,
            content_index: 0,
            delta,
        };
        // Deltas borrow the item's id rather than copy it: `seq` is a field apart.
        emit_at(&mut self.seq, "response.reasoning_text.delta", body, out);
    }

    fn close_reasoning(&mut self, out: &mut BytesMut) {
        let Some(index) = self.open_reasoning.take() else {
            return;
        };
        let Some(Item::Reasoning { id, text }) = self.items.get(index).cloned() else {
            return;
        };
        let body = ReasoningDoneBody {
            item_id: &id,
            output_index: index,
            content_index: 0,
            text: &text,
        };
        self.emit("response.reasoning_text.done", body, out);
        let part = ReasoningPartJson {
            kind: "reasoning_text",
            text: &text,
        };
        self.emit_part("response.content_part.done", &id, index, 0, part, out);
        let item = self.items[index].clone();
        self.emit_item("response.output_item.done", index, item.to_json(), out);
    }

    fn text(&mut self, kind: PartKind, delta: &str, out: &mut BytesMut) {
        self.close_reasoning(out);
        self.close_calls(Status::Completed, out);
        let index = match self.open_message {
            Some((i, _)) => i,
            None => {
                let index = self.items.len();
                let id = item_id("msg", &self.id, index);
                let item = ItemJson::Message {
                    id: &id,
                    status: Status::InProgress.as_str(),
                    role: "assistant",
                    content: vec![],
                };
                self.emit_item("response.output_item.added", index, item, out);
                self.items.push(Item::Message {
                    id,
                    parts: vec![],
                    status: Status::InProgress,
                });
                self.open_message = Some((index, None));
                index
            }
        };
        if self.open_message.and_then(|(_, p)| p) != Some(kind) {
            self.close_part(out);
            let id = self.items[index].id().to_owned();
            let Some(Item::Message { parts, .. }) = self.items.get_mut(index) else {
                return;
            };
            parts.push(match kind {
                PartKind::Text => MsgPart::Text(String::new()),
                PartKind::Refusal => MsgPart::Refusal(String::new()),
            });
            let content_index = parts.len() - 1;
            let part = parts[content_index].clone();
            self.emit_part(
                "response.content_part.added",
                &id,
                index,
                content_index,
                part.to_json(),
                out,
            );
            self.open_message = Some((index, Some(kind)));
        }
        let Some(Item::Message { id, parts, .. }) = self.items.get_mut(index) else {
            return;
        };
        let content_index = parts.len() - 1;
        if let Some(MsgPart::Text(t) | MsgPart::Refusal(t)) = parts.last_mut() {
            t.push_str(delta);
        }
        match kind {
            PartKind::Text => {
                let body = TextDeltaBody {
                    item_id: id,
                    output_index: index,
                    content_index,
                    delta,
                    logprobs: [],
                };
                emit_at(&mut self.seq, "response.output_text.delta", body, out);
            }
            PartKind::Refusal => {
                let body = PlainDeltaBody {
                    item_id: id,
                    output_index: index,
                    content_index,
                    delta,
                };
                emit_at(&mut self.seq, "response.refusal.delta", body, out);
            }
        }
    }

    /// Closes the open message's last part, if open.
    fn close_part(&mut self, out: &mut BytesMut) {
        let Some((index, Some(_))) = self.open_message else {
            return;
        };
        self.open_message = Some((index, None));
        let Some(Item::Message { id, parts, .. }) = self.items.get(index).cloned() else {
            return;
        };
        let content_index = parts.len() - 1;
        let part = &parts[content_index];
        match part {
            MsgPart::Text(text) => {
                let body = TextDoneBody {
                    item_id: &id,
                    output_index: index,
                    content_index,
                    text,
                    logprobs: [],
                };
                self.emit("response.output_text.done", body, out);
            }
            MsgPart::Refusal(refusal) => {
                let body = RefusalDoneBody {
                    item_id: &id,
                    output_index: index,
                    content_index,
                    refusal,
                };
                self.emit("response.refusal.done", body, out);
            }
        }
        self.emit_part(
            "response.content_part.done",
            &id,
            index,
            content_index,
            part.to_json(),
            out,
        );
    }

    fn close_message(&mut self, status: Status, out: &mut BytesMut) {
        if self.open_message.is_none() {
            return;
        }
        self.close_part(out);
        let Some((index, _)) = self.open_message.take() else {
            return;
        };
        if let Some(Item::Message { status: s, .. }) = self.items.get_mut(index) {
            *s = status;
        }
        let item = self.items[index].clone();
        self.emit_item("response.output_item.done", index, item.to_json(), out);
    }

    fn tool(&mut self, call: ToolDelta<'_>, out: &mut BytesMut) {
        self.close_reasoning(out);
        self.close_message(Status::Completed, out);
        let (name, args) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let index = match self.open_calls.iter().find(|(k, _)| *k == call.index) {
            Some((_, i)) => *i,
            None => {
                let index = self.items.len();
                let id = item_id("fc", &self.id, index);
                let call_id = call
                    .id
                    .clone()
                    .map_or_else(|| format!("call_{id}"), Cow::into_owned);
                let name = name.clone().map(Cow::into_owned).unwrap_or_default();
                let item = Item::FunctionCall {
                    id,
                    call_id,
                    name,
                    arguments: String::new(),
                    status: Status::InProgress,
                };
                self.emit_item("response.output_item.added", index, item.to_json(), out);
                self.items.push(item);
                self.open_calls.push((call.index, index));
                index
            }
        };
        let Some(fragment) = args.filter(|a| !a.is_empty()) else {
            return;
        };
        let Some(Item::FunctionCall { id, arguments, .. }) = self.items.get_mut(index) else {
            return;
        };
        arguments.push_str(&fragment);
        let body = ArgsDeltaBody {
            item_id: id,
            output_index: index,
            delta: &fragment,
        };
        emit_at(
            &mut self.seq,
            "response.function_call_arguments.delta",
            body,
            out,
        );
    }

    fn close_calls(&mut self, status: Status, out: &mut BytesMut) {
        let calls = std::mem::take(&mut self.open_calls);
        for (_, index) in calls {
            let Some(Item::FunctionCall {
                id,
                name,
                arguments,
                status: s,
                ..
            }) = self.items.get_mut(index)
            else {
                continue;
            };
            *s = status;
            let (id, name, arguments) = (id.clone(), name.clone(), arguments.clone());
            let body = ArgsDoneBody {
                item_id: &id,
                output_index: index,
                name: &name,
                arguments: &arguments,
            };
            self.emit("response.function_call_arguments.done", body, out);
            let item = self.items[index].clone();
            self.emit_item("response.output_item.done", index, item.to_json(), out);
        }
    }

    /// Closes every open item and writes `response.completed` (or `response.incomplete`).
    fn complete(&mut self, out: &mut BytesMut) {
        let (status, incomplete) = status_of(self.finish.as_deref());
        let item_status = match status {
            Status::Incomplete => Status::Incomplete,
            _ => Status::Completed,
        };
        self.close_reasoning(out);
        self.close_message(item_status, out);
        self.close_calls(item_status, out);
        self.ended = true;
        let kind = match status {
            Status::Incomplete => "response.incomplete",
            _ => "response.completed",
        };
        self.lifecycle(kind, status, incomplete, None, out);
    }

    // === writing ===

    fn lifecycle(
        &mut self,
        kind: &str,
        status: Status,
        incomplete: Option<&'static str>,
        error: Option<(&str, &str)>,
        out: &mut BytesMut,
    ) {
        let usage = match status {
            Status::InProgress => None,
            _ => self.usage.as_ref(),
        };
        let items: &[Item] = match status {
            Status::InProgress => &[],
            _ => &self.items,
        };
        let ctx = AnswerCtx {
            id: &self.id,
            created_at: self.created_at,
        };
        let state = State {
            ctx,
            model: self.model.as_deref().unwrap_or(&self.echo.model),
            status,
            incomplete,
            error,
            items,
            usage,
        };
        let body = LifecycleBody {
            response: response_json(&self.echo, &state),
        };
        frame(kind, self.seq, body, out);
        self.seq += 1;
    }

    fn emit_item(
        &mut self,
        kind: &str,
        output_index: usize,
        item: ItemJson<'_>,
        out: &mut BytesMut,
    ) {
        let body = ItemBody { output_index, item };
        self.emit(kind, body, out);
    }

    fn emit_part<P: Serialize>(
        &mut self,
        kind: &str,
        item_id: &str,
        output_index: usize,
        content_index: usize,
        part: P,
        out: &mut BytesMut,
    ) {
        let body = PartBody {
            item_id,
            output_index,
            content_index,
            part,
        };
        self.emit(kind, body, out);
    }

    fn emit<T: Serialize>(&mut self, kind: &str, body: T, out: &mut BytesMut) {
        emit_at(&mut self.seq, kind, body, out);
    }
}

/// Writes one event with the next sequence number.
fn emit_at<T: Serialize>(seq: &mut u64, kind: &str, body: T, out: &mut BytesMut) {
    frame(kind, *seq, body, out);
    *seq += 1;
}

/// Appends `event: <type>\ndata: <json>\n\n`.
fn frame<T: Serialize>(kind: &str, sequence_number: u64, body: T, out: &mut BytesMut) {
    let event = Event {
        kind,
        sequence_number,
        body,
    };
    out.reserve(128);
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\ndata: ");
    // Serializing plain structs of strings and numbers into memory cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), &event);
    out.put_slice(b"\n\n");
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Self::Message { id, .. }
            | Self::FunctionCall { id, .. }
            | Self::Reasoning { id, .. } => id,
        }
    }
}
