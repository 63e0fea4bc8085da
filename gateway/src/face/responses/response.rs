//! A whole `chat.completion` → a Responses `response` object.

use bytes::Bytes;
use serde::Deserialize;

use super::{
    AnswerCtx, ChatUsage, Echo, Item, MsgPart, State, Status, item_id, response_json, status_of,
};

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    /// Sluice's extension for translated providers' reasoning (and DeepSeek's field).
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize)]
struct ToolCall {
    id: String,
    function: Function,
}

#[derive(Deserialize)]
struct Function {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// Renders the answer. `Err` names what made the chat answer unreadable (the exchange already
/// checked it is a JSON object without `error`, so this is a provider's malformed answer).
pub fn response(chat: &[u8], echo: &Echo, ctx: &AnswerCtx<'_>) -> Result<Bytes, String> {
    let c: Completion = serde_json::from_slice(chat)
        .map_err(|e| format!("the provider's answer is not a chat completion: {e}"))?;
    // The answer names the response: a cached answer replays under the same id.
    let id = match c.id.as_deref().filter(|id| !id.is_empty()) {
        Some(chat_id) => super::response_id(chat_id),
        None => ctx.id.to_owned(),
    };
    // Sluice never asks for `n`, so the first choice is the answer.
    let choice = c.choices.into_iter().next();
    let finish = choice.as_ref().and_then(|ch| ch.finish_reason.clone());
    let (status, incomplete) = status_of(finish.as_deref());
    let item_status = match status {
        Status::Incomplete => Status::Incomplete,
        _ => Status::Completed,
    };
    let mut items = Vec::new();
    if let Some(m) = choice.and_then(|ch| ch.message) {
        if let Some(r) = m.reasoning_content.filter(|r| !r.is_empty()) {
            items.push(Item::Reasoning {
                id: item_id("rs", &id, items.len()),
                text: r,
            });
        }
        let text = m.content.unwrap_or_default();
        let mut parts = Vec::with_capacity(1);
        if !text.is_empty() || (m.refusal.is_none() && m.tool_calls.is_empty()) {
            parts.push(MsgPart::Text(text));
        }
        if let Some(r) = m.refusal {
            parts.push(MsgPart::Refusal(r));
        }
        if !parts.is_empty() {
            items.push(Item::Message {
                id: item_id("msg", &id, items.len()),
                parts,
                status: item_status,
            });
        }
        for call in m.tool_calls {
            items.push(Item::FunctionCall {
                id: item_id("fc", &id, items.len()),
                call_id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
                status: item_status,
            });
        }
    }
    let model = c.model.as_deref().unwrap_or(&echo.model);
    let ctx = AnswerCtx {
        id: &id,
        created_at: c.created.unwrap_or(ctx.created_at),
    };
    let json = response_json(
        echo,
        &State {
            ctx,
            model,
            status,
            incomplete,
            error: None,
            items: &items,
            usage: c.usage.as_ref(),
        },
    );
    serde_json::to_vec(&json)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}
