//! Inbound faces: client APIs other than OpenAI Chat Completions, served through the one chat
//! exchange by translating at the edges only.
//!
//! Routing, limits, the cache, retries, failover, recording, SLOs and the judge are all written
//! against Chat Completions shapes; a face changes two things and nothing else:
//!
//! 1. **the request**: [`request`] turns the face's body into a chat-completions body before
//!    [`crate::request::OpenAiRequest::parse`] sees it (a 400 in the face's own shape for
//!    anything that cannot be said in chat terms);
//! 2. **the answer**: everything [`crate::respond`] and the exchange write to the client passes
//!    through [`Render`]: a whole chat answer ([`whole`]), each stream batch's events
//!    ([`Render::events`], stateful, one event in, zero or more out, no buffering beyond the
//!    event), Sluice's own errors ([`error_json`], [`error_event`]), a provider's own 4xx
//!    ([`upstream_error`]) and cache replays ([`replay`]).
//!
//! The taps (cache fill, judge) keep the *chat* bytes, so a cached answer replays through any
//! face and the judge reads one format. [`Face::Chat`] is the identity everywhere: a match on
//! an enum, no parse, no allocation.
//!
//! Each face also has a **native path**, chosen per attempt in `exchange::dispatch` when the
//! target speaks the face's own API: the client's own body goes to the provider, so what chat
//! cannot say survives.
//! - Messages → an Anthropic-kind target ([`messages::Render::native_request`]): the answer
//!   still comes back through the Anthropic adapter as chat, and is rendered like any other.
//! - Responses → an OpenAI-kind target ([`responses::Render::native_body`], to the provider's
//!   `/responses`): the answer **passes through as it came** (the Responses JSON, the typed
//!   events); the exchange reads what it needs from it with borrowed probes
//!   (`crate::stream`), the taps keep those native bytes (marked as such: the cache replays
//!   them unrendered, the judge reads their text), and Sluice's own end of a cut stream
//!   continues the provider's `sequence_number`s ([`responses::Render::resume_native`]).
//!
//! | face | path | module |
//! |---|---|---|
//! | Chat | `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` | (identity) |
//! | Messages | `/v1/messages`, `/v1/messages/count_tokens` | [`messages`] |
//! | Responses | `/v1/responses` | [`responses`] |

pub mod messages;
pub mod responses;

use bytes::{Bytes, BytesMut};
use sluice_observability::Endpoint;

use crate::error::GatewayError;

/// The client API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// OpenAI Chat Completions (and the other OpenAI endpoints): nothing to translate.
    Chat,
    /// Anthropic Messages.
    Messages,
    /// OpenAI Responses.
    Responses,
}

impl Face {
    pub fn of(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Messages | Endpoint::MessagesCountTokens => Self::Messages,
            Endpoint::Responses => Self::Responses,
            Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::Models
            | Endpoint::Feedback
            | Endpoint::Other => Self::Chat,
        }
    }

    /// The endpoint the exchange serves a request of this face as.
    pub fn exchange_endpoint(self, endpoint: Endpoint) -> Endpoint {
        match self {
            Self::Chat => endpoint,
            Self::Messages | Self::Responses => Endpoint::ChatCompletions,
        }
    }
}

/// One request's answer rendering: what a face must remember between the request and the
/// answer, and between stream events.
#[derive(Debug, Default)]
pub enum Render {
    #[default]
    Chat,
    Messages(Box<messages::Render>),
    Responses(Box<responses::Render>),
}

impl Render {
    pub fn is_chat(&self) -> bool {
        matches!(self, Self::Chat)
    }

    /// The answer goes to the client as the provider sent it: a chat request, or a Responses
    /// request whose attempt went to an OpenAI-kind target.
    pub fn passes_through(&self) -> bool {
        match self {
            Self::Chat => true,
            Self::Responses(r) => r.is_native(),
            Self::Messages(_) => false,
        }
    }

    /// The answer is in the Responses API's own shape (see [`Self::passes_through`]).
    pub fn is_native_responses(&self) -> bool {
        matches!(self, Self::Responses(r) if r.is_native())
    }

    /// Translates one complete chat SSE event (as forwarded: `data: …\n\n`) into the face's
    /// events, appended to `out`. Never called for [`Render::Chat`], whose events go out as
    /// they came.
    pub fn events(&mut self, raw: &[u8], out: &mut BytesMut) {
        match self {
            Self::Chat => out.extend_from_slice(raw),
            Self::Messages(r) => r.event(raw, out),
            Self::Responses(r) => r.event(raw, out),
        }
    }
}

/// The request's body in chat-completions terms, with the face's render state set on `render`.
pub fn request(face: Face, body: Bytes, render: &mut Render) -> Result<Bytes, GatewayError> {
    match face {
        Face::Chat => Ok(body),
        Face::Messages => {
            let (chat, state) = messages::request(&body)?;
            *render = Render::Messages(Box::new(state));
            Ok(chat)
        }
        Face::Responses => {
            let (chat, state) = responses::start(&body, unix_now())?;
            *render = Render::Responses(Box::new(state));
            Ok(chat)
        }
    }
}

/// A whole (non-streamed) chat answer in the face's shape.
pub fn whole(render: &mut Render, body: Bytes) -> Bytes {
    match render {
        Render::Chat => body,
        Render::Messages(r) => r.whole(&body),
        Render::Responses(r) => r.whole(&body),
    }
}

/// Sluice's own error as the face's JSON body, with the status to send.
pub fn error_json(face: Face, e: &GatewayError) -> (u16, Bytes) {
    match face {
        Face::Chat | Face::Responses => (e.status(), e.to_json()),
        Face::Messages => messages::error_json(e),
    }
}

/// Sluice's own error as the face's final stream event(s). `render` carries what the stream
/// already said (the Responses face continues its `sequence_number`s).
pub fn error_event(face: Face, render: &mut Render, e: &GatewayError) -> Bytes {
    match (face, render) {
        (Face::Responses, Render::Responses(r)) => r.error_event(e),
        (Face::Chat | Face::Responses, _) => e.to_sse_event(),
        (Face::Messages, _) => messages::error_event(e),
    }
}

/// Unix seconds now, for the `created_at` of an answer that carries no time of its own.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A provider's own 4xx (OpenAI-shaped, or the provider's when passed through) in the face's
/// shape.
pub fn upstream_error(face: Face, status: u16, body: Bytes) -> Bytes {
    match face {
        Face::Chat | Face::Responses => body,
        Face::Messages => messages::upstream_error(status, &body),
    }
}

/// A cached answer (a whole body, or a stream's bytes) as this face answers it. `native`: the
/// entry holds a Responses answer as an OpenAI-kind target sent it; only Responses requests
/// can find those (the cache key names the endpoint), and they go out as stored.
pub fn replay(render: &mut Render, body: &Bytes, stream: bool, native: bool) -> Bytes {
    if render.is_chat() || native {
        return body.clone();
    }
    // A stale entry may answer after a passed-through attempt failed: this answer is chat.
    if let Render::Responses(r) = render {
        r.set_native(false);
    }
    if !stream {
        return whole(render, body.clone());
    }
    // The stored stream is Sluice's own output: complete events, one after another.
    let mut out = BytesMut::with_capacity(body.len() * 2);
    let mut dec = crate::sse::SseDecoder::new(body.len().max(1));
    dec.push(body);
    while let Ok(Some(ev)) = dec.next_event() {
        render.events(&ev.raw, &mut out);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_render_chat_entries_and_send_native_ones_as_stored() {
        let mut render = Render::default();
        let req = Bytes::from_static(br#"{"model":"m","input":"hi"}"#);
        request(Face::Responses, req, &mut render).expect("accepted");
        let chat = Bytes::from_static(
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}"#,
        );
        let native = Bytes::from_static(br#"{"id":"resp_x","object":"response","output":[]}"#);
        // After a passed-through attempt failed, a stale chat entry still renders.
        if let Render::Responses(r) = &mut render {
            r.set_native(true);
        }
        for _ in 0..2 {
            let out = replay(&mut render, &chat, false, false);
            let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
            assert_eq!(v["object"], "response", "{v}");
            assert_eq!(v["id"], "resp_chatcmpl-1");
            assert_eq!(replay(&mut render, &native, false, true), native);
        }
        let mut chat_render = Render::Chat;
        assert_eq!(replay(&mut chat_render, &chat, false, false), chat);
    }
}
