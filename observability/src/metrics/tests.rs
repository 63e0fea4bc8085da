use std::time::{Duration, SystemTime};

use super::*;
use crate::record::{AttemptRecord, TokenUsage, TraceContext};

pub(crate) fn record(outcome: Outcome, usage: Option<TokenUsage>) -> RequestRecord {
    let start = SystemTime::now();
    let plain = crate::testing::record(outcome);
    RequestRecord {
        trace: TraceContext {
            trace_id: [0xab; 16],
            span_id: [1; 8],
            sampled: true,
            ..plain.trace
        },
        start,
        duration: Duration::from_millis(120),
        route: Some(Arc::from("chat")),
        model: Some(Arc::from("gpt-4o")),
        request_model: Some("gpt-4o".into()),
        request_model_label: Some(Arc::from("gpt-4o")),
        tenant: Some(Arc::from("search")),
        attempts: vec![AttemptRecord {
            provider: Arc::from("openai"),
            provider_kind: "openai",
            model: Arc::from("gpt-4o"),
            upstream_model: Arc::from("gpt-4o-2024-08-06"),
            server_address: Some("api.openai.com".into()),
            server_port: Some(443),
            span_id: [2; 8],
            start,
            duration: Duration::from_millis(100),
            outcome: AttemptOutcome::Ok,
            status: Some(200),
        }],
        usage,
        cost_usd: Some(0.0125),
        time_to_first_chunk: Some(Duration::from_millis(40)),
        chunks: 9,
        response_id: Some("chatcmpl-1".into()),
        response_model: Some("gpt-4o-2024-08-06".into()),
        finish_reasons: vec!["stop".into()],
        ..plain
    }
}

fn exposition(reg: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, reg).expect("encodes");
    out
}

#[test]
fn a_request_records_every_series_with_closed_labels() {
    let mut reg = Registry::default();
    let m = Metrics::register(&mut reg);
    let usage = TokenUsage {
        input: 100,
        output: 20,
        cached_input: 40,
        cache_write_input: 0,
        reasoning: 5,
        source: UsageSource::Provider,
    };
    m.record_request(&record(Outcome::Ok, Some(usage)));
    let out = exposition(&reg);
    for want in [
        r#"sluice_requests_total{endpoint="chat_completions",route="chat",model="gpt-4o",tenant="search",outcome="ok",status="200"} 1"#,
        r#"sluice_usage_tokens_total{route="chat",model="gpt-4o",tenant="search",token_type="input",usage_source="provider"} 100"#,
        r#"sluice_usage_tokens_total{route="chat",model="gpt-4o",tenant="search",token_type="cached_input",usage_source="provider"} 40"#,
        r#"sluice_usage_tokens_total{route="chat",model="gpt-4o",tenant="search",token_type="reasoning",usage_source="provider"} 5"#,
        r#"sluice_cost_usd_total{route="chat",model="gpt-4o",tenant="search"} 0.0125"#,
        r#"sluice_upstream_attempts_total{provider="openai",model="gpt-4o",outcome="ok"} 1"#,
        r#"gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",route="chat",error_type=""} 1"#,
        r#"gen_ai_client_token_usage_tokens_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",route="chat",gen_ai_token_type="output"} 1"#,
        r#"gen_ai_client_operation_time_to_first_chunk_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",route="chat"} 1"#,
        r#"gen_ai_client_operation_time_per_output_chunk_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",route="chat"} 1"#,
        r#"sluice_overhead_seconds_count{route="chat"} 1"#,
        "trace_id=\"abababababababababababababababab\"",
    ] {
        assert!(out.contains(want), "missing {want}\n{out}");
    }
    // Every metric has help text.
    for line in out.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).expect("name");
        assert!(
            out.contains(&format!("# HELP {name} ")),
            "no help for {name}"
        );
    }
}

#[test]
fn kept_series_count_where_a_fresh_lookup_would() {
    let mut reg = Registry::default();
    let m = Metrics::register(&mut reg);
    let usage = |cached_input| TokenUsage {
        input: 10,
        output: 2,
        cached_input,
        cache_write_input: 0,
        reasoning: 0,
        source: UsageSource::Provider,
    };
    // The same labels from strings allocated anew each time (as after a policy reload).
    for cached in [0, 0, 7] {
        let mut r = record(Outcome::Ok, Some(usage(cached)));
        r.tenant = Some(Arc::from(String::from("search").as_str()));
        m.record_request(&r);
    }
    let mut other = record(Outcome::Ok, Some(usage(0)));
    other.tenant = Some(Arc::from("ads"));
    m.record_request(&other);
    let mut failed = record(Outcome::UpstreamError, None);
    failed.status = 502;
    m.record_request(&failed);
    // Past the cache's bound it starts over; counts go on in the same series.
    for i in 0..MAX_CACHED_SERIES + 3 {
        let mut r = record(Outcome::Ok, None);
        r.tenant = Some(Arc::from(format!("t{i}").as_str()));
        m.record_request(&r);
    }
    m.record_request(&record(Outcome::Ok, Some(usage(0))));
    let out = exposition(&reg);
    for want in [
        r#"sluice_requests_total{endpoint="chat_completions",route="chat",model="gpt-4o",tenant="search",outcome="ok",status="200"} 4"#,
        r#"sluice_requests_total{endpoint="chat_completions",route="chat",model="gpt-4o",tenant="ads",outcome="ok",status="200"} 1"#,
        r#"sluice_requests_total{endpoint="chat_completions",route="chat",model="gpt-4o",tenant="search",outcome="upstream_error",status="502"} 1"#,
        r#"sluice_requests_total{endpoint="chat_completions",route="chat",model="gpt-4o",tenant="t0",outcome="ok",status="200"} 1"#,
        r#"sluice_usage_tokens_total{route="chat",model="gpt-4o",tenant="search",token_type="input",usage_source="provider"} 40"#,
        r#"sluice_usage_tokens_total{route="chat",model="gpt-4o",tenant="search",token_type="cached_input",usage_source="provider"} 7"#,
        r#"sluice_usage_tokens_total{route="chat",model="gpt-4o",tenant="ads",token_type="input",usage_source="provider"} 10"#,
        r#"sluice_cost_usd_total{route="chat",model="gpt-4o",tenant="ads"} 0.0125"#,
        r#"gen_ai_client_token_usage_tokens_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",route="chat",gen_ai_token_type="input"} 5"#,
        r#"sluice_overhead_seconds_count{route="chat"} 4105"#,
    ] {
        assert!(out.contains(want), "missing {want}");
    }
    assert!(
        !out.contains(r#"tenant="ads",token_type="cached_input""#),
        "a token type never counted has no series"
    );
}

#[test]
fn requests_that_never_routed_use_none_labels_and_skip_genai_series() {
    let mut reg = Registry::default();
    let m = Metrics::register(&mut reg);
    let mut r = record(Outcome::ClientError, None);
    r.route = None;
    r.model = None;
    r.tenant = None;
    r.attempts.clear();
    r.status = 401;
    m.record_request(&r);
    let out = exposition(&reg);
    assert!(
        out.contains(
            r#"route="none",model="none",tenant="none",outcome="client_error",status="401"} 1"#
        ),
        "{out}"
    );
    assert!(
        !out.contains("gen_ai_client_operation_duration_seconds_count"),
        "{out}"
    );
}
