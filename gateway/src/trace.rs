//! W3C trace context at the edge: continue the caller's trace from `traceparent`, or start
//! one (the parsing and ids live in `sluice_observability::spans`).

use pingora::protocols::http::ServerSession;
use sluice_observability::TraceContext;
use sluice_observability::spans;

// Parsed once: a lookup by a string name parses the name every time.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const X_CONVERSATION_ID: http::HeaderName = http::HeaderName::from_static("x-conversation-id");

/// The request's trace: the caller's when a valid `traceparent` came in, else a new one.
pub fn incoming(ds: &ServerSession) -> TraceContext {
    let header = ds.get_header(&TRACEPARENT).and_then(|v| v.to_str().ok());
    spans::traceparent(header, spans::random_id)
}

/// The `traceparent` of Sluice's server span, returned to the client.
pub fn format(t: &TraceContext) -> String {
    spans::format_traceparent(t)
}

/// The longest `x-conversation-id` kept.
const MAX_CONVERSATION_ID: usize = 256;

/// `gen_ai.conversation.id` from the `x-conversation-id` header (the header agent frameworks
/// and LLM gateways use for a thread's id), when present, non-empty and at most 256 bytes.
pub fn conversation_id(ds: &ServerSession) -> Option<String> {
    ds.get_header(&X_CONVERSATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_CONVERSATION_ID)
        .map(str::to_owned)
}
