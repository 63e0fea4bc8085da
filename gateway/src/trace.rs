//! W3C trace context at the edge: continue the caller's trace from `traceparent`, or start
//! one (the parsing and ids live in `sluice_observability::spans`).

use pingora::protocols::http::ServerSession;
use sluice_observability::TraceContext;
use sluice_observability::spans;

/// The request's trace: the caller's when a valid `traceparent` came in, else a new one.
pub fn incoming(ds: &ServerSession) -> TraceContext {
    let header = ds.get_header("traceparent").and_then(|v| v.to_str().ok());
    spans::traceparent(header, spans::random_id)
}

/// The `traceparent` of Sluice's server span, returned to the client.
pub fn format(t: &TraceContext) -> String {
    spans::format_traceparent(t)
}
