//! Synthetic request records shared by the span and export tests: a chat, a streaming chat
//! with time to first chunk, an embeddings request and a failed request with two attempts.
//! Every timestamp is explicit so tests can check them exactly.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_observability::{
    AttemptOutcome, AttemptRecord, CapturedContent, Endpoint, Outcome, RequestParams,
    RequestRecord, TokenUsage, TraceContext, UsageSource,
};

pub const CANARY_KEY: &str = "sk-CANARY-7f3a9c1e55d04b2b";
pub const CANARY_EMAIL: &str = "canary.user@example.com";

/// 2026-01-01T00:00:00Z plus `ms`.
pub fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) + Duration::from_millis(ms)
}

pub fn trace(n: u8) -> TraceContext {
    TraceContext {
        trace_id: [n; 16],
        parent_span_id: None,
        span_id: [n, 0, 0, 0, 0, 0, 0, 1],
        sampled: false,
    }
}

pub fn attempt(n: u8, i: u8, outcome: AttemptOutcome, start_ms: u64, ms: u64) -> AttemptRecord {
    AttemptRecord {
        provider: Arc::from("openai"),
        provider_kind: "openai",
        model: Arc::from("gpt-4o"),
        upstream_model: Arc::from("gpt-4o-2024-08-06"),
        server_address: Some("api.openai.com".into()),
        server_port: Some(443),
        span_id: [n, 0, 0, 0, 0, 0, 1, i + 1],
        start: at(start_ms),
        duration: Duration::from_millis(ms),
        outcome,
        status: match outcome {
            AttemptOutcome::Ok => Some(200),
            AttemptOutcome::ServerError => Some(503),
            AttemptOutcome::RateLimited => Some(429),
            _ => None,
        },
    }
}

/// A non-streaming chat answered by the first attempt.
pub fn chat(n: u8) -> RequestRecord {
    RequestRecord {
        request_id: format!("req-{n}"),
        trace: trace(n),
        start: at(0),
        duration: Duration::from_millis(250),
        route: Some(Arc::from("chat")),
        model: Some(Arc::from("gpt-4o")),
        request_model: Some("gpt-4o".into()),
        request_model_label: Some(Arc::from("gpt-4o")),
        tenant: Some(Arc::from("search")),
        stream: false,
        attempts: vec![attempt(n, 0, AttemptOutcome::Ok, 5, 240)],
        usage: Some(TokenUsage {
            input: 120,
            output: 40,
            cached_input: 64,
            cache_write_input: 0,
            reasoning: 0,
            source: UsageSource::Provider,
        }),
        cost_usd: Some(0.0007),
        response_id: Some(format!("chatcmpl-{n}")),
        response_model: Some("gpt-4o-2024-08-06".into()),
        finish_reasons: vec!["stop".into()],
        params: RequestParams {
            temperature: Some(0.2),
            top_p: Some(0.9),
            max_tokens: Some(256),
            tool_names: vec!["get_weather".into(), "search_docs".into()],
            conversation_id: Some("conv-1".into()),
            tool_call_ids: vec!["call_1".into()],
        },
        ..sluice_observability::testing::record(Outcome::Ok)
    }
}

/// A streaming chat with a time to first chunk and reasoning tokens.
pub fn streaming_chat(n: u8) -> RequestRecord {
    let mut r = chat(n);
    r.stream = true;
    r.time_to_first_chunk = Some(Duration::from_millis(180));
    r.chunks = 17;
    r.usage = Some(TokenUsage {
        input: 300,
        output: 90,
        cached_input: 0,
        cache_write_input: 0,
        reasoning: 30,
        source: UsageSource::Estimated,
    });
    r.finish_reasons = vec!["stop".into(), "length".into()];
    r
}

/// An embeddings request.
pub fn embeddings(n: u8) -> RequestRecord {
    let mut r = chat(n);
    r.endpoint = Endpoint::Embeddings;
    r.model = Some(Arc::from("text-embedding-3-small"));
    r.request_model = Some("text-embedding-3-small".into());
    r.request_model_label = Some(Arc::from("text-embedding-3-small"));
    r.route = Some(Arc::from("embed"));
    r.attempts = vec![AttemptRecord {
        model: Arc::from("text-embedding-3-small"),
        upstream_model: Arc::from("text-embedding-3-small"),
        ..attempt(n, 0, AttemptOutcome::Ok, 2, 30)
    }];
    r.duration = Duration::from_millis(35);
    r.usage = Some(TokenUsage {
        input: 12,
        output: 0,
        cached_input: 0,
        cache_write_input: 0,
        reasoning: 0,
        source: UsageSource::Provider,
    });
    r.response_id = None;
    r.response_model = Some("text-embedding-3-small".into());
    r.finish_reasons = Vec::new();
    r.params = RequestParams::default();
    r
}

/// Two attempts that both failed (503, then a timeout): a 504 to the client.
pub fn failed_twice(n: u8) -> RequestRecord {
    let mut r = chat(n);
    r.status = 504;
    r.outcome = Outcome::Timeout;
    r.error_type = Some(sluice_observability::ErrorKind::UpstreamTimeout);
    r.duration = Duration::from_millis(1_300);
    r.attempts = vec![
        attempt(n, 0, AttemptOutcome::ServerError, 5, 100),
        attempt(n, 1, AttemptOutcome::Timeout, 150, 1_000),
    ];
    r.usage = None;
    r.cost_usd = None;
    r.response_id = None;
    r.response_model = None;
    r.finish_reasons = Vec::new();
    r
}

/// Content holding a canary key and a canary e-mail address.
pub fn canary_content() -> CapturedContent {
    CapturedContent {
        input: format!(
            r#"[{{"role":"user","parts":[{{"type":"text","content":"my key is {CANARY_KEY}, mail {CANARY_EMAIL}, card 4111 1111 1111 1111"}}]}}]"#
        ),
        output: format!(
            r#"[{{"role":"assistant","parts":[{{"type":"text","content":"noted {CANARY_EMAIL}"}}],"finish_reason":"stop"}}]"#
        ),
    }
}
