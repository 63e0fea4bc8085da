//! The access log's line: one JSON object per request, with no content and no secret (names
//! from the policy, numbers, ids). The recorder writes the lines to standard output.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use sluice_observability::{ErrorKind, RequestRecord};

#[derive(Serialize)]
struct Line<'a> {
    ts: f64,
    request_id: &'a str,
    trace_id: String,
    endpoint: &'static str,
    route: Option<&'a str>,
    model: Option<&'a str>,
    tenant: Option<&'a str>,
    stream: bool,
    status: u16,
    outcome: &'static str,
    error_type: Option<&'static str>,
    duration_ms: f64,
    time_to_first_chunk_ms: Option<f64>,
    overhead_ms: f64,
    attempts: usize,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    usage_source: Option<&'static str>,
    cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limited: Option<&'static str>,
    /// How it was routed and how each attempt ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    route_decision: Option<String>,
    /// Remediation actions that changed how it was served.
    #[serde(skip_serializing_if = "Option::is_none")]
    remediation: Option<String>,
}

/// Appends the request's line (and its newline) to `out`.
pub fn write_line(out: &mut Vec<u8>, r: &RequestRecord) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let line = Line {
        ts: r
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        request_id: &r.request_id,
        trace_id: sluice_observability::spans::trace_id_hex(&r.trace),
        endpoint: r.endpoint.as_str(),
        route: r.route.as_deref(),
        model: r.model.as_deref(),
        tenant: r.tenant.as_deref(),
        stream: r.stream,
        status: r.status,
        outcome: r.outcome.as_str(),
        error_type: r.error_type.map(ErrorKind::as_str),
        duration_ms: ms(r.duration),
        time_to_first_chunk_ms: r.time_to_first_chunk.map(ms),
        overhead_ms: ms(r.overhead()),
        attempts: r.attempts.len(),
        input_tokens: r.usage.map(|u| u.input),
        output_tokens: r.usage.map(|u| u.output),
        usage_source: r.usage.map(|u| u.source.as_str()),
        cost_usd: r.cost_usd,
        cache: r.cache,
        rate_limited: r.rate_limited,
        route_decision: r.decision_line(),
        remediation: r.remediation_line(),
    };
    let len = out.len();
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    } else {
        // A half-written line would break every parser downstream.
        out.truncate(len);
    }
}
