//! Spans from a finished [`RequestRecord`]: built once, at the end of the request, with the
//! record's own timestamps, so nothing is held open while the request runs.
//!
//! Per request:
//! - one **SERVER** span, `"{operation} {requested model}"`, Sluice's own: it covers the
//!   whole request as the client saw it, is the child of the caller's `traceparent` (when one
//!   came in) and the parent of the attempts. DESIGN §5 says "kind CLIENT": that is the
//!   GenAI convention for the span of a *call to a model*, which here is each upstream
//!   attempt. The request itself is served by Sluice, and the caller's own CLIENT span (from
//!   its OpenAI SDK instrumentation) already describes the call from the other side; a
//!   CLIENT span for it would make Sluice look like the caller, and backends that build
//!   service graphs from CLIENT→SERVER pairs would draw the edges wrong. So the request span
//!   is SERVER, and it carries the GenAI attributes too (the request as asked, the answer as
//!   given), which is what dashboards of the gateway filter on.
//! - one **CLIENT** span per upstream attempt, `"{operation} {upstream model}"`, the GenAI
//!   inference (or embeddings) client span: provider, `server.address`/`server.port`, the
//!   model name sent upstream, `error.type` and status Error when the attempt failed. The
//!   answer (`gen_ai.response.*`, usage, time to first chunk) is on the last attempt, the one
//!   that produced it.
//!
//! Attribute names are in [`crate::semconv`]. `error.type` values are Sluice's outcome
//! names ([`Outcome::as_str`], [`AttemptOutcome::as_str`], or the record's `error_type`).
//!
//! Also here: W3C `traceparent` parsing and formatting, and fast random ids.

use std::borrow::Cow;
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::record::{
    AttemptOutcome, AttemptRecord, CapturedContent, Endpoint, ErrorKind, Outcome, RequestRecord,
    TraceContext, UsageSource,
};
use crate::semconv as sc;

static SCOPE: LazyLock<InstrumentationScope> = LazyLock::new(|| {
    InstrumentationScope::builder(sc::SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(sc::SCHEMA_URL)
        .build()
});

/// The spans of one request: the SERVER span first, then one CLIENT span per attempt in
/// order.
///
/// `content` is put on the spans as `gen_ai.input.messages` / `gen_ai.output.messages`
/// exactly as given: pass `None` unless `capture_content` is on, and pass it redacted and
/// truncated ([`crate::redact::Redactor::redact_json`]; [`crate::SpanSink`] does both). It
/// goes on the span of the attempt that answered (the last), or on the server span when
/// there was no attempt.
pub fn build_spans(r: &RequestRecord, content: Option<&CapturedContent>) -> Vec<SpanData> {
    let mut spans = Vec::with_capacity(1 + r.attempts.len());
    spans.push(server_span(r, content.filter(|_| r.attempts.is_empty())));
    let last = r.attempts.len().saturating_sub(1);
    for (i, a) in r.attempts.iter().enumerate() {
        let content = content.filter(|_| i == last);
        spans.push(client_span(r, i, a, i == last, content));
    }
    spans
}

fn server_span(r: &RequestRecord, content: Option<&CapturedContent>) -> SpanData {
    let operation = r.endpoint.operation();
    let provider = r
        .attempts
        .last()
        .map_or(sc::PROVIDER_SLUICE, |a| sc::provider_name(a.provider_kind));
    let mut attrs = Vec::with_capacity(32);
    attrs.push(kv(sc::GEN_AI_OPERATION_NAME, operation));
    attrs.push(kv(sc::GEN_AI_PROVIDER_NAME, provider.to_owned()));
    if let Some(model) = &r.request_model {
        attrs.push(kv(sc::GEN_AI_REQUEST_MODEL, model.clone()));
    }
    request_attributes(r, &mut attrs);
    response_attributes(r, r.time_to_first_chunk, &mut attrs);
    if r.outcome != Outcome::Ok {
        let error_type = r.error_type.map_or(r.outcome.as_str(), ErrorKind::as_str);
        attrs.push(kv(sc::ERROR_TYPE, error_type));
    }
    attrs.push(kv(sc::HTTP_RESPONSE_STATUS_CODE, i64::from(r.status)));
    if let Some(route) = http_route(r.endpoint) {
        attrs.push(kv(sc::HTTP_ROUTE, route));
    }
    attrs.push(kv(sc::SLUICE_REQUEST_ID, r.request_id.clone()));
    if let Some(route) = &r.route {
        attrs.push(kv(sc::SLUICE_ROUTE, route.clone()));
    }
    if let Some(tenant) = &r.tenant {
        attrs.push(kv(sc::SLUICE_TENANT, tenant.clone()));
    }
    if let Some(model) = &r.model {
        attrs.push(kv(sc::SLUICE_MODEL, model.clone()));
    }
    attrs.push(kv(sc::SLUICE_ATTEMPTS, count(r.attempts.len())));
    attrs.push(kv(sc::SLUICE_OUTCOME, r.outcome.as_str()));
    if let Some(usage) = &r.usage {
        attrs.push(kv(
            sc::SLUICE_USAGE_ESTIMATED,
            usage.source == UsageSource::Estimated,
        ));
    }
    if let Some(cost) = r.cost_usd {
        attrs.push(kv(sc::SLUICE_COST_USD, cost));
    }
    if let Some(result) = r.cache {
        attrs.push(kv(sc::SLUICE_CACHE_HIT, result == "hit"));
        attrs.push(kv(sc::SLUICE_CACHE_RESULT, result));
    }
    if let Some(line) = r.decision_line() {
        attrs.push(kv(sc::SLUICE_ROUTE_DECISION, line));
    }
    if let Some(line) = r.remediation_line() {
        attrs.push(kv(sc::SLUICE_REMEDIATION, line));
    }
    if r.decision.as_ref().is_some_and(|d| d.panic) {
        attrs.push(kv(sc::SLUICE_ROUTE_PANIC, true));
    }
    if r.stream {
        attrs.push(kv(sc::SLUICE_CHUNKS, i64::from(r.chunks)));
    }
    attrs.push(kv(sc::SLUICE_OVERHEAD, r.overhead().as_secs_f64()));
    content_attributes(content, &mut attrs);

    let status = if r.is_error() {
        Status::error(r.error_type.map_or(r.outcome.as_str(), ErrorKind::as_str))
    } else {
        Status::Unset
    };
    let mut data = span(SpanParts {
        trace: &r.trace,
        span_id: r.trace.span_id,
        parent: r.trace.parent_span_id,
        parent_is_remote: r.trace.parent_span_id.is_some(),
        kind: SpanKind::Server,
        name: sc::span_name(operation, r.request_model.as_deref()),
        start: r.start,
        duration: r.duration,
        attrs,
        status,
    });
    // One event per tool result the request carries, so an agent's step shows which of the
    // previous answer's tool calls it answers.
    for id in &r.params.tool_call_ids {
        data.events.events.push(opentelemetry::trace::Event::new(
            sc::GEN_AI_TOOL_MESSAGE,
            r.start,
            vec![kv(sc::GEN_AI_TOOL_CALL_ID, id.clone())],
            0,
        ));
    }
    // And one per tool call the answer made, at the end: what the agent's next step answers.
    for call in &r.tool_calls {
        data.events.events.push(opentelemetry::trace::Event::new(
            sc::GEN_AI_TOOL_CALL,
            r.start + r.duration,
            vec![
                kv(sc::GEN_AI_TOOL_CALL_ID, call.id.clone()),
                kv(sc::GEN_AI_TOOL_NAME, call.name.clone()),
            ],
            0,
        ));
    }
    data
}

fn client_span(
    r: &RequestRecord,
    index: usize,
    a: &AttemptRecord,
    answered: bool,
    content: Option<&CapturedContent>,
) -> SpanData {
    let operation = r.endpoint.operation();
    let mut attrs = Vec::with_capacity(32);
    attrs.push(kv(sc::GEN_AI_OPERATION_NAME, operation));
    attrs.push(kv(
        sc::GEN_AI_PROVIDER_NAME,
        sc::provider_name(a.provider_kind).to_owned(),
    ));
    attrs.push(kv(sc::GEN_AI_REQUEST_MODEL, a.upstream_model.clone()));
    request_attributes(r, &mut attrs);
    if let Some(address) = &a.server_address {
        attrs.push(kv(sc::SERVER_ADDRESS, address.clone()));
        if let Some(port) = a.server_port {
            attrs.push(kv(sc::SERVER_PORT, i64::from(port)));
        }
    }
    if answered {
        // Time to first chunk from this attempt's own start, as the convention measures it.
        let ttft = r.time_to_first_chunk.map(|t| {
            let offset = a.start.duration_since(r.start).unwrap_or_default();
            t.saturating_sub(offset)
        });
        response_attributes(r, ttft, &mut attrs);
    }
    if a.outcome != AttemptOutcome::Ok {
        attrs.push(kv(sc::ERROR_TYPE, a.outcome.as_str()));
    }
    if let Some(status) = a.status {
        attrs.push(kv(sc::HTTP_RESPONSE_STATUS_CODE, i64::from(status)));
    }
    attrs.push(kv(sc::SLUICE_REQUEST_ID, r.request_id.clone()));
    if let Some(route) = &r.route {
        attrs.push(kv(sc::SLUICE_ROUTE, route.clone()));
    }
    if let Some(tenant) = &r.tenant {
        attrs.push(kv(sc::SLUICE_TENANT, tenant.clone()));
    }
    attrs.push(kv(sc::SLUICE_PROVIDER, a.provider.clone()));
    attrs.push(kv(sc::SLUICE_MODEL, a.model.clone()));
    attrs.push(kv(sc::SLUICE_ATTEMPT, count(index)));
    attrs.push(kv(sc::SLUICE_OUTCOME, a.outcome.as_str()));
    content_attributes(content, &mut attrs);

    // A client that went away is not the attempt's failure.
    let status = match a.outcome {
        AttemptOutcome::Ok | AttemptOutcome::Cancelled => Status::Unset,
        other => Status::error(other.as_str()),
    };
    span(SpanParts {
        trace: &r.trace,
        span_id: a.span_id,
        parent: Some(r.trace.span_id),
        parent_is_remote: false,
        kind: SpanKind::Client,
        name: sc::span_name(operation, Some(&a.upstream_model)),
        start: a.start,
        duration: a.duration,
        attrs,
        status,
    })
}

/// `gen_ai.request.*` other than the model, and the tool names.
fn request_attributes(r: &RequestRecord, attrs: &mut Vec<KeyValue>) {
    let p = &r.params;
    if r.stream {
        attrs.push(kv(sc::GEN_AI_REQUEST_STREAM, true));
    }
    if let Some(t) = p.temperature {
        attrs.push(kv(sc::GEN_AI_REQUEST_TEMPERATURE, t));
    }
    if let Some(t) = p.top_p {
        attrs.push(kv(sc::GEN_AI_REQUEST_TOP_P, t));
    }
    if let Some(m) = p.max_tokens {
        attrs.push(kv(sc::GEN_AI_REQUEST_MAX_TOKENS, saturating_i64(m)));
    }
    if let Some(id) = &p.conversation_id {
        attrs.push(kv(sc::GEN_AI_CONVERSATION_ID, id.clone()));
    }
    if !p.tool_names.is_empty() {
        let tools: Vec<serde_json::Value> = p
            .tool_names
            .iter()
            .map(|name| serde_json::json!({ "type": "function", "name": name }))
            .collect();
        attrs.push(kv(
            sc::GEN_AI_TOOL_DEFINITIONS,
            serde_json::Value::Array(tools).to_string(),
        ));
    }
}

/// `gen_ai.response.*`, usage and time to first chunk: what the answer said.
fn response_attributes(r: &RequestRecord, ttft: Option<Duration>, attrs: &mut Vec<KeyValue>) {
    if let Some(id) = &r.response_id {
        attrs.push(kv(sc::GEN_AI_RESPONSE_ID, id.clone()));
    }
    if let Some(model) = &r.response_model {
        attrs.push(kv(sc::GEN_AI_RESPONSE_MODEL, model.clone()));
    }
    if !r.finish_reasons.is_empty() {
        let reasons: Vec<StringValue> = r
            .finish_reasons
            .iter()
            .map(|f| StringValue::from(f.clone()))
            .collect();
        attrs.push(KeyValue::new(
            sc::GEN_AI_RESPONSE_FINISH_REASONS,
            Value::Array(Array::String(reasons)),
        ));
    }
    if let Some(u) = &r.usage {
        attrs.push(kv(sc::GEN_AI_USAGE_INPUT_TOKENS, saturating_i64(u.input)));
        if r.endpoint != Endpoint::Embeddings {
            attrs.push(kv(sc::GEN_AI_USAGE_OUTPUT_TOKENS, saturating_i64(u.output)));
            attrs.push(kv(
                sc::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                saturating_i64(u.cached_input),
            ));
            if u.reasoning > 0 {
                attrs.push(kv(
                    sc::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
                    saturating_i64(u.reasoning),
                ));
            }
        }
    }
    if r.stream
        && let Some(t) = ttft
    {
        attrs.push(kv(sc::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, t.as_secs_f64()));
    }
}

fn content_attributes(content: Option<&CapturedContent>, attrs: &mut Vec<KeyValue>) {
    if let Some(c) = content {
        attrs.push(kv(sc::GEN_AI_INPUT_MESSAGES, c.input.clone()));
        attrs.push(kv(sc::GEN_AI_OUTPUT_MESSAGES, c.output.clone()));
    }
}

fn http_route(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::ChatCompletions => Some("/v1/chat/completions"),
        Endpoint::Completions => Some("/v1/completions"),
        Endpoint::Embeddings => Some("/v1/embeddings"),
        Endpoint::Models => Some("/v1/models"),
        Endpoint::Feedback => Some("/v1/feedback"),
        Endpoint::Responses => Some("/v1/responses"),
        Endpoint::Messages => Some("/v1/messages"),
        Endpoint::MessagesCountTokens => Some("/v1/messages/count_tokens"),
        Endpoint::Other => None,
    }
}

fn kv(key: &'static str, value: impl Into<Value>) -> KeyValue {
    KeyValue::new(key, value)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

struct SpanParts<'a> {
    trace: &'a TraceContext,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    parent_is_remote: bool,
    kind: SpanKind,
    name: String,
    start: std::time::SystemTime,
    duration: Duration,
    attrs: Vec<KeyValue>,
    status: Status,
}

fn span(p: SpanParts<'_>) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(p.trace.trace_id),
            SpanId::from_bytes(p.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: p.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: p.parent_is_remote,
        span_kind: p.kind,
        name: Cow::Owned(p.name),
        start_time: p.start,
        end_time: p.start + p.duration,
        attributes: p.attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: p.status,
        instrumentation_scope: SCOPE.clone(),
    }
}

// === evaluations ===

/// A judge's verdict on one answer, as a span under the judged request's server span.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The judged request's trace, and its server span (the parent).
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
    /// The rubric's name (`gen_ai.evaluation.name`).
    pub name: String,
    /// `scored`, `invalid`, `failed`, `over_budget`.
    pub outcome: &'static str,
    pub score: Option<f64>,
    pub label: Option<String>,
    /// Only with content capture: it usually quotes the answer.
    pub explanation: Option<String>,
    /// The judged answer's id.
    pub response_id: Option<String>,
    pub route: Option<String>,
    /// The catalog model that judged.
    pub judge_model: String,
    pub start: std::time::SystemTime,
    pub duration: Duration,
}

/// An INTERNAL span `evaluate {rubric}` whose parent is the judged request's server span,
/// carrying one `gen_ai.evaluation.result` event with the score. The judged span has ended by
/// the time a verdict exists, so the event cannot go on it; a child span keeps the verdict in
/// the request's trace, which is what a trace view needs.
pub fn evaluation_span(e: &Evaluation) -> SpanData {
    let trace = crate::record::TraceContext {
        trace_id: e.trace_id,
        parent_span_id: Some(e.parent_span_id),
        span_id: new_span_id(),
        sampled: true,
    };
    let mut event_attrs = vec![kv(sc::GEN_AI_EVALUATION_NAME, e.name.clone())];
    if let Some(score) = e.score {
        event_attrs.push(kv(sc::GEN_AI_EVALUATION_SCORE_VALUE, score));
    }
    if let Some(label) = &e.label {
        event_attrs.push(kv(sc::GEN_AI_EVALUATION_SCORE_LABEL, label.clone()));
    }
    if let Some(x) = &e.explanation {
        event_attrs.push(kv(sc::GEN_AI_EVALUATION_EXPLANATION, x.clone()));
    }
    if let Some(id) = &e.response_id {
        event_attrs.push(kv(sc::GEN_AI_RESPONSE_ID, id.clone()));
    }
    let mut attrs = vec![
        kv(sc::GEN_AI_OPERATION_NAME, "evaluate"),
        kv(sc::GEN_AI_EVALUATION_NAME, e.name.clone()),
        kv(sc::GEN_AI_REQUEST_MODEL, e.judge_model.clone()),
        kv(sc::SLUICE_OUTCOME, e.outcome),
    ];
    if let Some(route) = &e.route {
        attrs.push(kv(sc::SLUICE_ROUTE, route.clone()));
    }
    let status = if e.outcome == "scored" {
        Status::Unset
    } else {
        Status::error(e.outcome)
    };
    let mut data = span(SpanParts {
        trace: &trace,
        span_id: trace.span_id,
        parent: Some(e.parent_span_id),
        parent_is_remote: false,
        kind: SpanKind::Internal,
        name: format!("evaluate {}", e.name),
        start: e.start,
        duration: e.duration,
        attrs,
        status,
    });
    if e.outcome == "scored" {
        data.events.events.push(opentelemetry::trace::Event::new(
            sc::GEN_AI_EVALUATION_RESULT,
            e.start + e.duration,
            event_attrs,
            0,
        ));
    }
    data
}

// === trace context ===

/// The request's trace context: the caller's, from a valid W3C `traceparent` header, or a new
/// trace. Either way Sluice's server span gets a new span id from `new_id` (pass
/// [`random_id`]; tests pass a counter).
///
/// Accepted: `{version}-{trace-id}-{parent-id}-{flags}` in lowercase hex with version `00`
/// (exactly 55 characters), or a later version (not `ff`) whose first four fields have the
/// version-00 shape, followed by nothing or `-…`. All-zero ids, uppercase or bad hex and bad
/// lengths start a new trace instead (the spec's "restart the trace").
pub fn traceparent(header: Option<&str>, mut new_id: impl FnMut() -> u128) -> TraceContext {
    let span_id = non_zero_span_id(&mut new_id);
    match header.and_then(parse_traceparent) {
        Some((trace_id, parent, sampled)) => TraceContext {
            trace_id,
            parent_span_id: Some(parent),
            span_id,
            sampled,
        },
        None => {
            let mut id = new_id();
            while id == 0 {
                id = new_id();
            }
            TraceContext {
                trace_id: id.to_be_bytes(),
                parent_span_id: None,
                span_id,
                sampled: false,
            }
        }
    }
}

fn non_zero_span_id(new_id: &mut impl FnMut() -> u128) -> [u8; 8] {
    loop {
        // The low 64 bits; a u128 always has them.
        let low = new_id() as u64;
        if low != 0 {
            return low.to_be_bytes();
        }
    }
}

fn parse_traceparent(h: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let h = h.trim_matches([' ', '\t']);
    let b = h.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = hex_bytes::<1>(&h[0..2])?[0];
    match version {
        0xff => return None,
        0 if b.len() != 55 => return None,
        _ if b.len() > 55 && b[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = hex_bytes::<16>(&h[3..35])?;
    let parent = hex_bytes::<8>(&h[36..52])?;
    let flags = hex_bytes::<1>(&h[53..55])?[0];
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags & 1 == 1))
}

/// Lowercase hex only, as the spec requires.
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// `00-{trace-id}-{span-id}-01` naming Sluice's server span, for a response header (so a
/// client can find its request's trace) or to propagate upstream. The flag is always
/// `01`: whether the trace is kept is only known at the end, and errors, the case a client
/// most wants to look up, are always kept.
pub fn format_traceparent(ctx: &TraceContext) -> String {
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    push_hex(&mut s, &ctx.trace_id);
    s.push('-');
    push_hex(&mut s, &ctx.span_id);
    s.push_str("-01");
    s
}

/// The trace id as 32 lowercase hex characters (for logs and exemplars).
pub fn trace_id_hex(ctx: &TraceContext) -> String {
    let mut s = String::with_capacity(32);
    push_hex(&mut s, &ctx.trace_id);
    s
}

/// Appends `bytes` as lowercase hex, two digits each.
pub fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

thread_local! {
    static RNG: Cell<(u64, u64)> = Cell::new(seed());
}

fn seed() -> (u64, u64) {
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(0x5eed);
    let mut b = state.build_hasher();
    b.write_u64(0xfeed);
    let (a, b) = (a.finish(), b.finish());
    // xorshift128+ must not start from all zeros.
    if a | b == 0 { (1, 2) } else { (a, b) }
}

/// A random, non-zero 128-bit id from a thread-local xorshift128+ seeded from the OS (via
/// `RandomState`). Fast and unpredictable enough for trace and span ids; not for secrets.
pub fn random_id() -> u128 {
    RNG.with(|rng| {
        let next = || {
            let (mut s1, s0) = rng.get();
            let result = s0.wrapping_add(s1);
            s1 ^= s1 << 23;
            rng.set((s0, s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26)));
            result
        };
        loop {
            let id = (u128::from(next()) << 64) | u128::from(next());
            if id != 0 {
                return id;
            }
        }
    })
}

/// A random, non-zero span id (for [`AttemptRecord::span_id`]).
pub fn new_span_id() -> [u8; 8] {
    non_zero_span_id(&mut random_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> u128 {
        let mut n = 0u128;
        move || {
            n += 1;
            (n << 64) | n
        }
    }

    #[test]
    fn parses_valid_traceparents() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = traceparent(Some(h), counter());
        assert_eq!(trace_id_hex(&ctx), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.parent_span_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert!(ctx.sampled);
        assert_eq!(ctx.span_id, 1u64.to_be_bytes(), "our own span id is new");
        assert_eq!(
            format_traceparent(&ctx),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-01"
        );

        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!traceparent(Some(unsampled), counter()).sampled);
        // Other flag bits are ignored; a future version may add fields.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-ever";
        let ctx = traceparent(Some(future), counter());
        assert!(ctx.parent_span_id.is_some() && ctx.sampled);
        let padded = " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t";
        assert!(
            traceparent(Some(padded), counter())
                .parent_span_id
                .is_some()
        );
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        let bad = [
            "",
            "garbage",
            // all-zero trace id, all-zero parent id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // uppercase, non-hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
            // version ff, version 00 with extra fields, short ids, wrong separators
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
        ];
        for h in bad {
            let ctx = traceparent(Some(h), counter());
            assert_eq!(ctx.parent_span_id, None, "{h:?}");
            assert!(!ctx.sampled, "{h:?}");
            // First id is the span id, second the new trace id.
            assert_eq!(ctx.trace_id, ((2u128 << 64) | 2).to_be_bytes(), "{h:?}");
        }
        let fresh = traceparent(None, counter());
        assert_eq!(fresh.parent_span_id, None);
    }

    #[test]
    fn ids_are_never_zero_and_do_not_repeat() {
        let mut zeros_then_one = [0u128, 0, 0, 5, 0, 7].into_iter();
        let ctx = traceparent(None, move || zeros_then_one.next().unwrap_or(9));
        assert_eq!(ctx.span_id, 5u64.to_be_bytes());
        assert_eq!(ctx.trace_id, 7u128.to_be_bytes());

        let ids: std::collections::HashSet<u128> = (0..10_000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert_ne!(new_span_id(), [0; 8]);
        let other = std::thread::spawn(random_id).join().expect("thread");
        assert!(!ids.contains(&other), "threads are seeded apart");
    }
}
