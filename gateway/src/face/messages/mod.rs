//! The Anthropic Messages face: `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! | direction | module |
//! |---|---|
//! | Messages request → chat-completions body | [`request`] |
//! | chat answer / chunks → `message` / named SSE events | [`Render`] |
//! | Sluice's errors, a provider's 4xx → `{"type":"error","error":{…}}` | this module |

use bytes::{Bytes, BytesMut};

use crate::error::GatewayError;

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
#[derive(Debug, Default)]
pub struct Render {}

impl Render {
    pub fn whole(&mut self, body: &Bytes) -> Bytes {
        body.clone()
    }

    pub fn event(&mut self, raw: &[u8], out: &mut BytesMut) {
        out.extend_from_slice(raw);
    }
}

/// A Messages request as a chat-completions body.
pub fn request(_body: &[u8]) -> Result<(Bytes, Render), GatewayError> {
    Err(GatewayError::invalid(
        "POST /v1/messages is not wired yet",
        None,
    ))
}
