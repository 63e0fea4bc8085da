//! The provider key never leaves the gateway, even when the provider quotes it back: mock-llm's
//! `echo-key` faults put the key Sluice sent in every place a provider might (an error status's
//! body, a 200 error body, a stream's first event, an event mid-stream), as is or JSON-escaped,
//! and placed across each length the gateway cuts provider text to; then the client's answers,
//! the log, the spans, the metrics and the admin views are searched for every prefix of the key
//! longer than 8 characters.
//!
//! The key here matches none of the span redactor's built-in key patterns, so only the
//! gateway's own redaction of provider text can keep it out.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use sluice_loadtest::mock_llm::echo::pad_to_straddle;
use sluice_loadtest::mock_llm::{MockLlm, MockLlmConfig};
use sluice_loadtest::otlp_sink::OtlpSink;

use crate::common::{self, TestGateway, chat, key_prefix_leak};

/// The provider key of this test: a `/` (which JSON may write as `\/`) and no `sk-` prefix.
const ECHO_KEY: &str = "zq7.Echo/Me+4b1e9d2c8a6f3e5d7c9b1a0f";
const ECHO_KEY_ENV: &str = "SLUICE_TEST_ECHO_KEY";
/// How much provider text a failure quotes (`exchange::failure::QUOTE_CHARS`).
const QUOTE_CHARS: usize = 200;
/// How much of an error body the gateway reads (`exchange::read::MAX_ERROR_BODY`).
const MAX_ERROR_BODY: usize = 64 << 10;

/// Where the key is echoed, and what the client gets for a (non-stream, stream) request.
const PLACES: [(&str, &str, u16, u16); 5] = [
    ("status400", "echo-key:400", 400, 400),
    ("status401", "echo-key:401", 502, 502),
    ("json200", "echo-key:200", 502, 502),
    ("first", "echo-key:first-event", 502, 502),
    ("mid", "echo-key:mid-stream:2", 502, 200),
];

/// How the key is written: (name, filler before it when the gateway passes the provider's
/// error on whole). Each name is also the model the faults are configured on.
fn spellings() -> Vec<(&'static str, Option<usize>)> {
    spelled().into_iter().map(|(n, pad, _)| (n, pad)).collect()
}

/// (name, filler passed on, extra faults)
fn spelled() -> Vec<(&'static str, Option<usize>, String)> {
    let quote = pad_to_straddle(QUOTE_CHARS, 12).expect("room before the quote limit");
    let body = pad_to_straddle(MAX_ERROR_BODY, 12).expect("room before the body limit");
    vec![
        ("raw", Some(0), String::new()),
        ("escaped", Some(0), ",key-escaped".to_owned()),
        ("cut-quote", Some(quote), format!(",key-pad:{quote}")),
        (
            "cut-quote-escaped",
            Some(quote),
            format!(",key-pad:{quote},key-escaped"),
        ),
        // Cut where the gateway stops reading an error body: never passed on whole.
        ("cut-body", None, format!(",key-pad:{body}")),
    ]
}

fn policy(sink: &OtlpSink) -> String {
    let mut models = String::new();
    let mut routes = String::new();
    for (place, fault, _, _) in PLACES {
        for (spelling, _, extra) in spelled() {
            let name = format!("{place}-{spelling}");
            models.push_str(&format!(
                "  {name}: {{ provider: up, upstream_model: \"{name}@{fault}{extra}\" }}\n"
            ));
            routes.push_str(&format!(
                "  - {{ name: {name}, match: {{ model: {name} }}, targets: [ {{ model: {name} }} ], retry: {{ max_attempts: 1 }} }}\n"
            ));
        }
    }
    format!(
        "telemetry:\n  otlp: {{ endpoint: \"{}\", protocol: grpc, export_interval: 200ms }}\n  sample: {{ head_ratio: 1.0 }}\n  capture_content: true\nproviders:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: {ECHO_KEY_ENV} }}\nmodels:\n{models}routes:\n{routes}",
        sink.endpoint()
    )
}

/// The `error.message` of a JSON body, or of the first SSE event with an `error` object.
fn error_message(body: &str) -> Option<String> {
    body.lines()
        .map(|l| l.strip_prefix("data: ").unwrap_or(l))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["error"]["message"].as_str().map(str::to_owned))
}

/// Every string a span carries (name, attributes, events, status), one per line.
fn span_text(spans: &[Span]) -> String {
    let mut out = format!("{spans:?}\n");
    let mut push = |v: Option<&Value>| {
        if let Some(Value::StringValue(s)) = v {
            out.push_str(s);
            out.push('\n');
        }
    };
    for s in spans {
        for kv in s
            .attributes
            .iter()
            .chain(s.events.iter().flat_map(|e| e.attributes.iter()))
        {
            push(kv.value.as_ref().and_then(|v| v.value.as_ref()));
        }
        if let Some(status) = &s.status {
            push(Some(&Value::StringValue(status.message.clone())));
        }
    }
    out
}

#[tokio::test]
async fn a_provider_quoting_the_key_back_never_leaks_it() {
    let mock = MockLlm::start(MockLlmConfig {
        api_key: Some(ECHO_KEY.to_owned()),
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts");
    let sink = OtlpSink::start().await.expect("otlp sink");
    let gw =
        TestGateway::start_with_env(&policy(&sink), &mock, "", &[(ECHO_KEY_ENV, ECHO_KEY)]).await;

    // Every leak is gathered before failing, so one run shows each place that lets it through.
    let mut leaks = Vec::new();
    let mut check = |place: &str, text: &str| leaks.extend(key_prefix_leak(place, text, ECHO_KEY));
    let mut requests = 0;
    let mut quoted = 0;
    for (place, _, status_plain, status_stream) in PLACES {
        for (spelling, pad) in spellings() {
            let model = format!("{place}-{spelling}");
            for (stream, want) in [(false, status_plain), (true, status_stream)] {
                let resp = gw
                    .post("/v1/chat/completions", chat(&model, stream))
                    .send()
                    .await
                    .expect("request");
                let status = resp.status().as_u16();
                let body = resp.text().await.expect("body");
                requests += 1;
                let case = format!("{model} stream={stream}");
                assert_eq!(status, want, "{case}: {body}");
                check(&format!("the answer to {case}"), &body);
                // The provider's own error reaches the client masked, not dropped: after a 4xx
                // status, and as an event mid-stream (unless its body was past the read limit).
                let passes_on = place == "status400" || (place == "mid" && stream);
                if let (true, Some(pad), None) =
                    (passes_on, pad, key_prefix_leak("", &body, ECHO_KEY))
                {
                    let message = error_message(&body)
                        .unwrap_or_else(|| panic!("{case}: no error object: {body}"));
                    assert_eq!(
                        message,
                        format!("Incorrect API key provided: {}***", "x".repeat(pad)),
                        "{case}"
                    );
                    quoted += 1;
                }
            }
        }
    }
    assert_eq!(
        mock.stats().requests,
        requests,
        "one upstream call per request"
    );

    let spans = common::eventually(async || {
        let spans = sink.spans();
        let servers = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count();
        (servers >= usize::try_from(requests).expect("fits")).then_some(spans)
    })
    .await
    .expect("a server span per request");
    check("the spans", &span_text(&spans));
    let metrics = gw
        .metrics_when(|m| m.contains("route=\"mid-cut-body\""))
        .await;
    check("the metrics", &metrics);
    for view in ["/admin/targets", "/admin/incidents", "/admin/judge/recent"] {
        let text = gw
            .admin(reqwest::Method::GET, view)
            .send()
            .await
            .expect("admin view")
            .text()
            .await
            .expect("text");
        check(view, &text);
    }
    let log = gw.log_text();
    assert!(
        log.contains("with an error"),
        "the failures are logged, so the log search means something:\n{log}"
    );
    for line in log.lines() {
        check("the gateway log", line);
    }
    assert!(
        leaks.is_empty(),
        "{} leaks; the first 40:\n{}",
        leaks.len(),
        leaks[..leaks.len().min(40)].join("\n")
    );
    assert_eq!(quoted, 4 * 2 + 4, "masked provider errors seen");
}
