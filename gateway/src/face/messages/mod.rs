//! The Anthropic Messages face: `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! | direction | module |
//! |---|---|
//! | Messages request → chat-completions body | [`request`] |
//! | chat answer / chunks → `message` / named SSE events | [`Render`] |
//! | Sluice's errors, a provider's 4xx → `{"type":"error","error":{…}}` | this module |

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;
use sluice_policy::{KeyEntry, Policy};
use tokio::time::Instant;

use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::respond::{self, Delivered, Rejection};

pub mod render;
pub mod request;

/// The Messages error `type` for an HTTP status, per Anthropic's documented table.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        // 400, 405, 408, 409, 422 and any other client error.
        _ => "invalid_request_error",
    }
}

/// `{"type":"error","error":{"type":…,"message":…}}`.
fn error_body(status: u16, message: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "type": "error",
            "error": {"type": error_type(status), "message": message},
        })
        .to_string(),
    )
}

/// The message of a Sluice error as a Messages client reads it: the same words, but a missing
/// key names the headers the Anthropic SDKs send.
fn message_of(e: &GatewayError) -> String {
    match e {
        GatewayError::MissingKey => {
            "missing API key: send `x-api-key: <your Sluice key>` or `Authorization: Bearer <your Sluice key>`"
                .to_owned()
        }
        other => other.to_string(),
    }
}

/// Sluice's own error as a Messages error body, with its status.
pub fn error_json(e: &GatewayError) -> (u16, Bytes) {
    let status = e.status();
    (status, error_body(status, &message_of(e)))
}

/// Sluice's own error as the final `event: error` of a stream.
pub fn error_event(e: &GatewayError) -> Bytes {
    sse("error", &error_body(e.status(), &message_of(e)))
}

/// A provider's own 4xx: its message (OpenAI's and Anthropic's shapes both carry
/// `error.message`) under the Messages type for its status.
pub fn upstream_error(status: u16, body: &[u8]) -> Bytes {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("the provider refused the request (HTTP {status})"));
    error_body(status, &message)
}

/// One named SSE event.
fn sse(name: &str, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// What the Messages face remembers of one request to render its answer.
#[derive(Debug)]
pub struct Render {
    facts: request::Facts,
    /// Made at the stream's first event.
    stream: Option<render::StreamRender>,
}

impl Render {
    pub fn whole(&mut self, body: &Bytes) -> Bytes {
        render::message(body, &self.facts.model).unwrap_or_else(|| {
            // The exchange checked the answer before committing it; this is Sluice's bug.
            error_body(500, "the answer could not be rendered as a Messages answer")
        })
    }

    pub fn event(&mut self, raw: &[u8], out: &mut BytesMut) {
        self.stream
            .get_or_insert_with(|| render::StreamRender::new(self.facts.model.clone()))
            .event(raw, out);
    }
}

/// A Messages request as a chat-completions body.
pub fn request(body: &[u8]) -> Result<(Bytes, Render), GatewayError> {
    let (chat, facts) = request::translate(body, request::Mode::Create)?;
    Ok((
        chat,
        Render {
            facts,
            stream: None,
        },
    ))
}

/// `POST /v1/messages/count_tokens`: the request's input tokens, counted here with the
/// tokenizer Sluice uses for its own estimates; no provider is called and no limit is spent.
/// The model must be one the key may use, as for `/v1/messages`.
pub async fn count_tokens(
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    policy: &Policy,
    key: &KeyEntry,
) -> Result<Delivered, Rejection> {
    let body = crate::handler::read_body(
        ds,
        policy.server.max_body_bytes,
        Instant::now() + policy.server.body_timeout,
    )
    .await?;
    let (chat, facts) =
        request::translate(&body, request::Mode::CountTokens).map_err(Rejection::Error)?;
    let has = |name: &str, value: &str| {
        ds.get_header(name)
            .is_some_and(|v| v.as_bytes() == value.as_bytes())
    };
    let (route, public) = policy
        .find_route(&facts.model, has)
        .filter(|(route, _)| key.allows(&facts.model, &route.name))
        .ok_or_else(|| Rejection::Error(GatewayError::UnknownModel(facts.model.clone())))?;
    ctx.route = Some(Arc::clone(&route.name));
    ctx.request_model_label = Some(Arc::clone(public));
    ctx.request_model = Some(facts.model.clone());
    // The first count loads a tokenizer table (tens of MB): off the async workers.
    let model = facts.model;
    let n = tokio::task::spawn_blocking(move || count_input(&model, &chat))
        .await
        .map_err(|_| Rejection::Error(GatewayError::Internal("token count failed".into())))?;
    let out = Bytes::from(serde_json::json!({ "input_tokens": n }).to_string());
    if respond::write_json(ds, ctx, 200, out, &[]).await {
        ctx.end_ok(200);
        Ok(Delivered::Complete)
    } else {
        ctx.end_cancelled();
        Ok(Delivered::ClientGone)
    }
}

/// Input tokens of a chat body: Sluice's estimate of its messages, plus the tool definitions
/// and the calls in the history, which a model reads too.
pub fn count_input(model: &str, chat: &[u8]) -> u64 {
    use sluice_observability::tokens;
    let mut n = tokens::estimate_input(model, chat);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(chat) else {
        return n;
    };
    if let Some(tools) = v.get("tools") {
        n += tokens::count(model, &tools.to_string());
    }
    for m in v
        .get("messages")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        for call in m
            .get("tool_calls")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let f = call.get("function");
            for field in ["name", "arguments"] {
                if let Some(s) = f.and_then(|f| f.get(field)).and_then(|s| s.as_str()) {
                    n += tokens::count(model, s);
                }
            }
        }
    }
    n
}
