//! Test support (this crate's tests, and the gateway's with the `test-util` feature): a plain
//! request record, a chat request that says nothing else; each test sets the fields it is
//! about with struct update syntax.

use std::time::{Duration, SystemTime};

use crate::record::{Endpoint, Outcome, RequestParams, RequestRecord, TraceContext};

/// A chat request with this outcome: status 200, streamed, 100 ms from the Unix epoch, no
/// route, model, tenant, attempts or usage.
pub fn record(outcome: Outcome) -> RequestRecord {
    RequestRecord {
        request_id: "req_1".into(),
        trace: TraceContext {
            trace_id: [1; 16],
            parent_span_id: None,
            span_id: [2; 8],
            sampled: false,
        },
        start: SystemTime::UNIX_EPOCH,
        duration: Duration::from_millis(100),
        endpoint: Endpoint::ChatCompletions,
        route: None,
        model: None,
        request_model: None,
        request_model_label: None,
        tenant: None,
        stream: true,
        status: 200,
        outcome,
        error_type: None,
        attempts: Vec::new(),
        usage: None,
        cost_usd: None,
        time_to_first_chunk: None,
        chunks: 0,
        response_id: None,
        response_model: None,
        finish_reasons: Vec::new(),
        params: RequestParams::default(),
        rate_limited: None,
        cache: None,
        content: None,
        decision: None,
        remediation: Vec::new(),
        tool_calls: Vec::new(),
    }
}
