//! Streaming behaviour seen by a client: usage chunk handling, event-by-event delivery and
//! client disconnects cancelling the upstream request.

use std::time::Duration;

use crate::common::{self, TestGateway, chat, sse_data};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\n  local: { kind: mock, ttft_ms: 0, tokens_per_s: 1000 }\nmodels:\n  m: { provider: up, upstream_model: m }\n  slow: { provider: up, upstream_model: \"slow@delay:150\" }\n  nousage: { provider: up, upstream_model: \"n@nousage\" }\n  inproc: { provider: local }\n";

fn with_options(model: &str, options: Option<serde_json::Value>) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&chat(model, true)).expect("json");
    if let Some(o) = options {
        v["stream_options"] = o;
    }
    v.to_string()
}

fn usage_chunks(events: &[String]) -> Vec<serde_json::Value> {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter(|v| v["choices"].as_array().is_some_and(Vec::is_empty) && v["usage"].is_object())
        .collect()
}

#[tokio::test]
async fn usage_chunk_is_kept_only_when_the_client_asked_for_it() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(POLICY, &mock).await;

    for model in ["m", "inproc"] {
        let non_stream: serde_json::Value = gw
            .post("/v1/chat/completions", chat(model, false))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let cases = [
            (None, false),
            (Some(serde_json::json!({"include_usage": false})), false),
            (Some(serde_json::json!({"include_usage": true})), true),
        ];
        for (options, wants) in cases {
            let resp = gw
                .post("/v1/chat/completions", with_options(model, options.clone()))
                .send()
                .await
                .expect("request");
            let events = sse_data(resp).await;
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            let usage = usage_chunks(&events);
            if wants {
                assert_eq!(usage.len(), 1, "{model} {options:?}: {events:?}");
                assert_eq!(
                    usage[0]["usage"], non_stream["usage"],
                    "stream and non-stream usage agree"
                );
            } else {
                assert!(
                    usage.is_empty(),
                    "{model} {options:?}: usage chunk leaked: {events:?}"
                );
            }
        }
    }
    // A provider that sends no usage at all still streams normally.
    let events = sse_data(
        gw.post(
            "/v1/chat/completions",
            with_options("nousage", Some(serde_json::json!({"include_usage": true}))),
        )
        .send()
        .await
        .expect("request"),
    )
    .await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(usage_chunks(&events).is_empty());
}

#[tokio::test]
async fn events_are_delivered_one_by_one_and_a_leaving_client_cancels_upstream() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(POLICY, &mock).await;

    // 16 content events 150 ms apart: the first must arrive long before the last is written.
    let started = tokio::time::Instant::now();
    let mut resp = gw
        .post("/v1/chat/completions", chat("slow", true))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let mut first_content = None;
    let mut seen = String::new();
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("\"content\":\"") && !seen.contains("\"content\":\"\"}") {
            first_content = Some(started.elapsed());
            break;
        }
        if first_content.is_none() && seen.matches("data: ").count() >= 2 {
            first_content = Some(started.elapsed());
            break;
        }
    }
    let first = first_content.expect("a content event arrived");
    assert!(
        first < Duration::from_millis(1000),
        "first event took {first:?}: buffered?"
    );

    // Leave mid-stream; the gateway must notice and close its upstream connection.
    drop(resp);
    let mut cancelled = false;
    for _ in 0..100 {
        let metrics = gw.metrics().await;
        if metrics.contains("outcome=\"cancelled\"") {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cancelled, "the gateway recorded the cancel");
    let mut upstream_saw_it = false;
    for _ in 0..100 {
        if mock.stats().streams_aborted >= 1 {
            upstream_saw_it = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        upstream_saw_it,
        "mock-llm saw its stream cut: {:?}",
        mock.stats()
    );
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "well before the 2.4 s stream would end"
    );
}
