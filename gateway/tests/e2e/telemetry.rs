//! Reconciliation: N mixed requests (non-stream, stream, errors, a client cancel) give exactly
//! N in the request counter, the provider's token counts in the token counters, and N server
//! spans at a real OTLP receiver — with no key and no prompt text in any span.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use sluice_loadtest::otlp_sink::OtlpSink;

use crate::common::{self, TestGateway, chat, sse_data};

fn sum_series(metrics: &str, prefix: &str, must_contain: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && must_contain.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The `telemetry` section exporting every request's spans to `sink`, plus the provider.
fn telemetry_policy(sink: &OtlpSink, extra: &str, models: &str) -> String {
    format!(
        "telemetry:\n  otlp: {{ endpoint: \"{}\", protocol: grpc, export_interval: 200ms }}\n  sample: {{ head_ratio: 1.0 }}\n{extra}providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n{models}",
        sink.endpoint()
    )
}

/// Spans received once `servers` server spans arrived (bounded wait).
async fn spans_after(sink: &OtlpSink, servers: usize) -> Vec<Span> {
    let mut spans = Vec::new();
    for _ in 0..150 {
        spans = sink.spans();
        if spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count()
            >= servers
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    spans
}

#[tokio::test]
async fn requests_tokens_and_spans_reconcile() {
    let mock = common::mock_llm().await;
    let sink = OtlpSink::start().await.expect("otlp sink");
    let policy = telemetry_policy(
        &sink,
        "",
        "  m: { provider: up, pricing: { input: 1.0, output: 2.0 } }
  slow: { provider: up, upstream_model: \"slow@delay:200\", pricing: { input: 1.0, output: 2.0 } }
  broken: { provider: up, upstream_model: \"b@500\" }
",
    );
    let gw = TestGateway::start(&policy, &mock).await;
    let secret_prompt = "my email is pii.canary@example.com";
    let with_pii =
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": secret_prompt}]})
            .to_string();

    let mut usages: Vec<serde_json::Value> = Vec::new();
    for _ in 0..3 {
        let v: serde_json::Value = gw
            .post("/v1/chat/completions", chat("m", false))
            .send()
            .await
            .expect("req")
            .json()
            .await
            .expect("json");
        usages.push(v["usage"].clone());
    }
    let v: serde_json::Value = gw
        .post("/v1/chat/completions", with_pii.clone())
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    usages.push(v["usage"].clone());
    for include in [true, true, false] {
        let mut body: serde_json::Value = serde_json::from_str(&chat("m", true)).expect("json");
        if include {
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        let events = sse_data(
            gw.post("/v1/chat/completions", body.to_string())
                .send()
                .await
                .expect("req"),
        )
        .await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        if include {
            let usage = events
                .iter()
                .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
                .find(|e| e["usage"].is_object())
                .expect("usage chunk");
            usages.push(usage["usage"].clone());
        } else {
            // The same prompt gives the same usage; the gateway saw it even though the client did not.
            usages.push(usages[0].clone());
        }
    }
    assert_eq!(
        gw.post("/v1/chat/completions", chat("nope", false))
            .send()
            .await
            .expect("req")
            .status(),
        404
    );
    assert_eq!(
        gw.post("/v1/chat/completions", chat("broken", false))
            .send()
            .await
            .expect("req")
            .status(),
        502
    );
    // A client that leaves mid-stream.
    let mut resp = gw
        .post("/v1/chat/completions", chat("slow", true))
        .send()
        .await
        .expect("req");
    let mut seen = String::new();
    while let Some(c) = resp.chunk().await.expect("chunk") {
        seen.push_str(&String::from_utf8_lossy(&c));
        if seen.matches("data: ").count() >= 3 {
            break;
        }
    }
    drop(resp);
    let n = 10.0;

    // Requests are counted on their own path; tokens (an estimate's count above all) by the
    // recorder on its tick, which a loaded machine can delay: wait for both.
    let metrics = gw
        .metrics_when(|m| {
            sum_series(m, "sluice_requests_total", &[]) >= n
                && sum_series(
                    m,
                    "sluice_usage_tokens_total",
                    &["token_type=\"output\"", "usage_source=\"estimated\""],
                ) >= 1.0
        })
        .await;
    assert_eq!(
        sum_series(&metrics, "sluice_requests_total", &[]),
        n,
        "{metrics}"
    );
    assert_eq!(
        sum_series(
            &metrics,
            "sluice_requests_total",
            &["outcome=\"cancelled\""]
        ),
        1.0
    );
    let sum = |k: &str| {
        usages
            .iter()
            .map(|u| u[k].as_f64().expect("usage number"))
            .sum::<f64>()
    };
    let provider = "usage_source=\"provider\"";
    assert_eq!(
        sum_series(
            &metrics,
            "sluice_usage_tokens_total",
            &["token_type=\"input\"", provider]
        ),
        sum("prompt_tokens")
    );
    assert_eq!(
        sum_series(
            &metrics,
            "sluice_usage_tokens_total",
            &["token_type=\"output\"", provider]
        ),
        sum("completion_tokens")
    );
    // The cancelled stream still counts what was delivered, as an estimate.
    let estimated = "usage_source=\"estimated\"";
    assert!(
        sum_series(
            &metrics,
            "sluice_usage_tokens_total",
            &["token_type=\"output\"", estimated]
        ) >= 1.0,
        "{metrics}"
    );
    let cost = sum_series(&metrics, "sluice_cost_usd_total", &["model=\"m\""]);
    let want = (sum("prompt_tokens") * 1.0 + sum("completion_tokens") * 2.0) / 1e6;
    assert!((cost - want).abs() < 1e-9, "cost {cost} want {want}");

    // Spans: one server span per request, one client span per upstream attempt.
    let spans = spans_after(&sink, 10).await;
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(servers.len(), 10, "{} spans", spans.len());
    // 7 answered, 3 for the failing model (its implicit route retries twice), 1 cancelled.
    assert_eq!(clients.len(), 11);
    assert_eq!(mock.requests_for("b@500"), 3);
    for c in &clients {
        assert!(
            servers
                .iter()
                .any(|s| s.span_id == c.parent_span_id && s.trace_id == c.trace_id)
        );
        assert!(attr(c, "gen_ai.provider.name").is_some());
        assert!(attr(c, "gen_ai.system").is_none(), "deprecated attribute");
    }
    let everything = format!("{spans:?}");
    common::assert_no_canary(&everything);
    assert!(
        !everything.contains("pii.canary@example.com"),
        "content capture is off"
    );
    assert!(!everything.contains(common::KEY));
    let metrics = gw
        .metrics_when(|m| sum_series(m, "sluice_spans_total", &["result=\"exported\""]) >= 21.0)
        .await;
    assert!(
        sum_series(&metrics, "sluice_spans_total", &["result=\"exported\""]) >= 21.0,
        "{metrics}"
    );
    common::assert_no_canary(&metrics);
    assert!(!metrics.contains("pii.canary"), "no prompt text in metrics");

    // The access log: one JSON line per request, with its trace id, and no content. The
    // writer flushes every 50 ms: wait for it, bounded.
    let access_lines = || -> Vec<serde_json::Value> {
        gw.log_text()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let mut lines = access_lines();
    for _ in 0..50 {
        if lines.len() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        lines = access_lines();
    }
    assert_eq!(lines.len(), 10, "one access-log line per request");
    for line in &lines {
        let trace = line["trace_id"].as_str().expect("trace id");
        assert_eq!(trace.len(), 32, "{line}");
        assert!(
            servers.iter().any(|s| hex(&s.trace_id) == trace),
            "the log line's trace is exported: {line}"
        );
        assert!(line["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(line.get("messages").is_none() && line.get("content").is_none());
    }
    let log = gw.log_text();
    assert!(!log.contains("pii.canary"), "no prompt text in logs");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn captured_content_is_redacted_and_off_by_default_elsewhere() {
    let mock = common::mock_llm().await;
    let sink = OtlpSink::start().await.expect("otlp sink");
    let policy = telemetry_policy(
        &sink,
        "  capture_content: true
",
        "  m: { provider: up }
",
    );
    let gw = TestGateway::start(&policy, &mock).await;
    let prompt = format!(
        "email pii.canary@example.com, card 4111 1111 1111 1111, key {}",
        common::CANARY
    );
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]})
        .to_string();
    assert_eq!(
        gw.post("/v1/chat/completions", body)
            .send()
            .await
            .expect("req")
            .status(),
        200
    );

    let spans = spans_after(&sink, 1).await;
    let input = spans
        .iter()
        .find_map(|s| match attr(s, "gen_ai.input.messages") {
            Some(Value::StringValue(v)) => Some(v.clone()),
            _ => None,
        })
        .expect("input messages captured");
    serde_json::from_str::<serde_json::Value>(&input).expect("captured content is valid JSON");
    assert!(
        input.contains("email"),
        "the rest of the prompt is kept: {input}"
    );
    let everything = format!("{spans:?}");
    for secret in [
        "pii.canary@example.com",
        "4111 1111 1111 1111",
        common::CANARY,
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked into spans: {input}"
        );
    }
}
