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
    /// The client's own body (by reference count), sent as it is to Anthropic-kind targets.
    original: Bytes,
    /// The client's `anthropic-beta` flags, sent with its own body: fields in that body (say
    /// Claude Code's `context_management`) need them.
    beta: Option<String>,
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
pub fn request(body: &Bytes) -> Result<(Bytes, Render), GatewayError> {
    let (chat, facts) = request::translate(body, request::Mode::Create)?;
    Ok((
        chat,
        Render {
            facts,
            original: body.clone(),
            beta: None,
            stream: None,
        },
    ))
}

impl Render {
    /// Keeps the client's `anthropic-beta` header when it is a plain list of flags.
    pub fn set_beta(&mut self, header: Option<&[u8]>) {
        self.beta = header
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 1024
                    && h.iter().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b',' | b' ')
                    })
            })
            .map(|h| String::from_utf8_lossy(h).into_owned());
    }

    /// The request for an Anthropic-kind target: the client's own Messages body with the
    /// target's model, instead of the chat body translated back. What chat cannot say
    /// survives this way — `cache_control` (so prompt caching keeps working), the system
    /// blocks, `is_error` on tool results, `metadata`, `service_tier` — while the answer still
    /// comes back through the chat exchange, recorded, cached and judged like any other. The
    /// client's `anthropic-beta` flags go with it, since its fields may need them. `thinking`
    /// goes too: the signed thinking blocks come back (through chat's `thinking_blocks`) and
    /// render as `thinking` blocks the client sends back in its next turn, as Anthropic
    /// requires. `None` only when the body is not the object it was when accepted.
    pub fn native_request(
        &self,
        upstream_model: &str,
        opts: &crate::providers::translate::AnthropicOptions,
    ) -> Option<crate::providers::translate::UpstreamRequest> {
        use crate::providers::translate::{Endpoint, Kind, RequestState, UpstreamRequest};
        let mut body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&self.original).ok()?;
        body.insert("model".into(), serde_json::Value::from(upstream_model));
        let stream = self.facts.stream;
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("anthropic-version", opts.version.clone()),
        ];
        // The provider's configured flags, then the client's own.
        let mut beta: Vec<&str> = opts.beta.iter().map(String::as_str).collect();
        for flag in self.beta.iter().flat_map(|b| b.split(',')).map(str::trim) {
            if !flag.is_empty() && !beta.contains(&flag) {
                beta.push(flag);
            }
        }
        if !beta.is_empty() {
            headers.push(("anthropic-beta", beta.join(",")));
        }
        if stream {
            headers.push(("accept", "text/event-stream".to_owned()));
        }
        Some(UpstreamRequest {
            method: "POST",
            path_and_query: "/v1/messages".into(),
            headers,
            body: Bytes::from(serde_json::Value::Object(body).to_string()),
            stream,
            state: RequestState {
                kind: Kind::Anthropic,
                endpoint: Endpoint::Chat,
                stream,
                // The chat body this face made asks for usage (see `request`).
                include_usage: stream,
                upstream_model: upstream_model.to_owned(),
                json_tool: None,
                base64: false,
                inputs: 0,
            },
        })
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;

    fn json_of(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("json")
    }

    #[test]
    fn error_type_table() {
        for (status, want) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (405, "invalid_request_error"),
            (408, "invalid_request_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(error_type(status), want, "{status}");
        }
    }

    #[test]
    fn sluice_errors_in_the_messages_shape() {
        let (status, body) = error_json(&GatewayError::MissingKey);
        assert_eq!(status, 401);
        let v = json_of(&body);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("x-api-key"))
        );

        let limited = GatewayError::LimitExceeded {
            kind: sluice_policy::LimitKind::Requests,
            limit: 1,
            retry_after: Duration::from_secs(3),
        };
        let (status, body) = error_json(&limited);
        assert_eq!(
            (status, json_of(&body)["error"]["type"].clone()),
            (429, json!("rate_limit_error"))
        );
        let (status, body) = error_json(&GatewayError::BodyTooLarge { size: 9, limit: 1 });
        assert_eq!(
            (status, json_of(&body)["error"]["type"].clone()),
            (413, json!("request_too_large"))
        );

        let event = error_event(&GatewayError::StreamInterrupted {
            model: "m".into(),
            detail: "cut".into(),
        });
        let text = std::str::from_utf8(&event).expect("utf8");
        let data = text
            .strip_prefix("event: error\ndata: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .expect("one named event");
        assert_eq!(json_of(data.as_bytes())["error"]["type"], "api_error");
    }

    #[test]
    fn provider_errors_keep_their_message() {
        let openai = br#"{"error":{"message":"context too long","type":"invalid_request_error","param":null,"code":null}}"#;
        assert_eq!(
            json_of(&upstream_error(400, openai)),
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "context too long"}})
        );
        let anthropic = br#"{"type":"error","error":{"type":"permission_error","message":"no"}}"#;
        assert_eq!(
            json_of(&upstream_error(403, anthropic))["error"]["message"],
            "no"
        );
        assert_eq!(
            json_of(&upstream_error(422, b"<html>"))["error"]["message"],
            "the provider refused the request (HTTP 422)"
        );
    }

    #[test]
    fn anthropic_targets_get_the_clients_own_body() {
        let body = Bytes::from(
            json!({
                "model": "claude", "max_tokens": 9, "stream": true,
                "system": [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}],
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [{"role": "user", "content": "hi"}],
            })
            .to_string(),
        );
        let (_, mut render) = request(&body).expect("accepted");
        render.set_beta(Some(b"b2, b1"));
        let opts = crate::providers::translate::AnthropicOptions {
            beta: vec!["b1".into()],
            ..Default::default()
        };
        let up = render.native_request("claude-x-1", &opts).expect("native");
        assert!(up.headers.contains(&("anthropic-beta", "b1,b2".to_owned())));
        render.set_beta(Some(b"b2\r\nx-api-key: z"));
        let up = render.native_request("claude-x-1", &opts).expect("native");
        assert_eq!(up.path_and_query, "/v1/messages");
        assert!(up.stream && up.state.stream && up.state.include_usage);
        assert_eq!(up.state.upstream_model, "claude-x-1");
        assert!(up.headers.contains(&("anthropic-beta", "b1".to_owned())));
        assert!(
            up.headers
                .contains(&("accept", "text/event-stream".to_owned()))
        );
        assert_eq!(
            json_of(&up.body),
            json!({
                "model": "claude-x-1", "max_tokens": 9, "stream": true,
                "system": [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}],
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [{"role": "user", "content": "hi"}],
            })
        );
    }

    #[test]
    fn count_input_counts_tools_and_calls_too() {
        let plain = br#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#;
        let with_tools = br#"{"model":"m","messages":[{"role":"user","content":"hello there"},{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}"#;
        let a = count_input("m", plain);
        let b = count_input("m", with_tools);
        assert!(a > 0 && b > a + 10, "{a} {b}");
    }
}
