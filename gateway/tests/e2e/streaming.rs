//! Streaming behaviour seen by a client: usage chunk handling, event-by-event delivery and
//! client disconnects cancelling the upstream request.

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

    // 16 content events 150 ms apart: the first must reach the client on its own, while the
    // provider is still writing the rest (a buffering gateway would hand them over together).
    let mut resp = gw
        .post("/v1/chat/completions", chat("slow", true))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    let mut got_content = false;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        let content = seen.contains("\"content\":\"") && !seen.contains("\"content\":\"\"}");
        if content || seen.matches("data: ").count() >= 2 {
            got_content = true;
            break;
        }
    }
    assert!(got_content, "a content event arrived");
    assert!(
        !seen.contains("finish_reason\":\"") && !seen.contains("[DONE]"),
        "the first content event came with the end of the stream: buffered? {seen}"
    );

    // Leave mid-stream; the gateway must notice and close its upstream connection.
    drop(resp);
    let metrics = gw
        .metrics_when(|m| m.contains("outcome=\"cancelled\""))
        .await;
    assert!(
        metrics.contains("outcome=\"cancelled\""),
        "the gateway recorded the cancel"
    );
    let aborted =
        common::eventually(async || (mock.stats().streams_aborted >= 1).then_some(())).await;
    // mock-llm counts a stream as aborted only when its connection closed before the stream's
    // end: had the gateway not cancelled, it would have written all 16 events.
    assert!(
        aborted.is_some(),
        "mock-llm saw its stream cut: {:?}",
        mock.stats()
    );
}

/// A provider that finishes its stream (a `finish_reason`, the usage) but never sends `[DONE]`:
/// the client still gets `[DONE]`, once, at the end, because SDKs wait for it.
#[tokio::test]
async fn a_finished_stream_without_done_gets_one() {
    let whole = crate::rawup::whole_stream("m");
    let done = b"e\r\ndata: [DONE]\n\n\r\n";
    let at = whole
        .windows(done.len())
        .position(|w| w == done)
        .expect("the raw stream has a [DONE] chunk");
    let without_done = [&whole[..at], &whole[at + done.len()..]].concat();
    let up = crate::rawup::RawUpstream::start(move |_| {
        crate::rawup::Reply::Writes(vec![without_done.clone()])
    })
    .await;
    let mock = common::mock_llm().await;
    let policy = format!(
        "providers:\n  raw: {{ kind: openai, base_url: \"{}\" }}\nmodels:\n  m: {{ provider: raw }}\nroutes:\n  - {{ name: chat, match: {{ model: chat }}, targets: [ {{ model: m }} ], retry: {{ max_attempts: 1 }} }}\n",
        up.base_url()
    );
    let gw = TestGateway::start(&policy, &mock).await;
    let resp = gw
        .post("/v1/chat/completions", chat("chat", true))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    assert!(
        !events.iter().any(|e| e.contains("\"error\"")),
        "{events:?}"
    );
    assert_eq!(common::stream_text(&events), "Hello there, how are you?");
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// `timeouts.total` bounds a stream that is still sending: events arrive within the idle limit
/// but the whole would take far longer, so the stream ends at the total limit with an error
/// event and no `[DONE]`.
#[tokio::test]
async fn the_total_timeout_ends_a_stream_that_is_still_sending() {
    let mock = common::mock_llm().await;
    // 16 content events a second apart: about 16 s in all, each well within the idle limit.
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  slow: { provider: up, upstream_model: \"slow@delay:1000\" }\nroutes:\n  - name: bounded\n    match: { model: bounded }\n    targets: [ { model: slow } ]\n    retry: { max_attempts: 1 }\n    timeouts: { ttft: 5s, idle: 10s, total: 2500ms }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let started = tokio::time::Instant::now();
    let resp = gw
        .post("/v1/chat/completions", chat("bounded", true))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    let elapsed = started.elapsed();
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "a stream cut by the total limit has no [DONE]: {events:?}"
    );
    let error: serde_json::Value = events
        .last()
        .and_then(|e| serde_json::from_str(e).ok())
        .expect("the last event is JSON");
    assert_eq!(error["error"]["code"], "stream_interrupted", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("total time limit")),
        "{error}"
    );
    let text = common::stream_text(&events);
    assert!(!text.is_empty(), "content came before the limit");
    // It ended at the limit, not after the whole answer (about 16 s).
    assert!(
        elapsed >= std::time::Duration::from_millis(2500),
        "{elapsed:?}"
    );
    assert!(elapsed < std::time::Duration::from_secs(12), "{elapsed:?}");
    assert_eq!(mock.requests_for("slow@delay:1000"), 1);
    let metrics = gw
        .metrics_when(|m| m.contains("outcome=\"truncated\""))
        .await;
    assert!(metrics.contains("outcome=\"truncated\""), "{metrics}");
}

/// Content, tool calls `(id, name, arguments)` and finish reason of each choice of a streamed
/// chat answer, reassembled from its deltas.
type Choice = (String, Vec<(String, String, String)>, String);

fn reassemble(events: &[String]) -> Vec<Choice> {
    let mut out: Vec<Choice> = Vec::new();
    for e in events.iter().filter(|e| e.as_str() != "[DONE]") {
        let v: serde_json::Value = serde_json::from_str(e).expect("chunk json");
        for c in v["choices"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().expect("index") as usize;
            if out.len() <= i {
                out.resize(i + 1, Default::default());
            }
            if let Some(t) = c["delta"]["content"].as_str() {
                out[i].0.push_str(t);
            }
            for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let k = tc["index"].as_u64().expect("call index") as usize;
                if let Some(id) = tc["id"].as_str() {
                    let name = tc["function"]["name"].as_str().expect("name").to_owned();
                    out[i].1.push((id.to_owned(), name, String::new()));
                }
                out[i].1[k]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().expect("args"));
            }
            if let Some(f) = c["finish_reason"].as_str() {
                out[i].2 = f.to_owned();
            }
        }
    }
    out
}

fn choices_of(v: &serde_json::Value) -> Vec<Choice> {
    v["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .map(|c| {
            let calls = c["message"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let s = |p: &str| t.pointer(p).and_then(|x| x.as_str()).expect(p).to_owned();
                    (s("/id"), s("/function/name"), s("/function/arguments"))
                })
                .collect();
            let content = c["message"]["content"].as_str().unwrap_or_default();
            let finish = c["finish_reason"].as_str().expect("finish");
            (content.to_owned(), calls, finish.to_owned())
        })
        .collect()
}

/// The quickstart's built-in mock and mock-llm answer tools with tool calls, JSON mode with
/// JSON, and `n` with that many choices — streamed and whole alike, through Sluice.
#[tokio::test]
async fn both_mocks_answer_tools_json_mode_and_n_through_sluice() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(POLICY, &mock).await;
    let tools = serde_json::json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]);
    let schema = serde_json::json!({"type": "json_schema", "json_schema": {"name": "city",
        "schema": {"type": "object", "properties": {"city": {"type": "string"},
        "population": {"type": "integer"}}, "required": ["city", "population"]}}});
    for model in ["m", "inproc"] {
        let cases = [
            ("tools", serde_json::json!({"tools": tools})),
            ("json", serde_json::json!({"response_format": schema})),
            ("n", serde_json::json!({"n": 2})),
        ];
        for (what, extra) in cases {
            let body = |stream: bool| {
                let mut v: serde_json::Value =
                    serde_json::from_str(&chat(model, stream)).expect("json");
                for (k, x) in extra.as_object().expect("object") {
                    v[k] = x.clone();
                }
                v.to_string()
            };
            let resp = gw
                .post("/v1/chat/completions", body(false))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 200, "{model} {what}");
            let whole = choices_of(&resp.json().await.expect("json"));
            let resp = gw
                .post("/v1/chat/completions", body(true))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 200, "{model} {what}");
            let streamed = reassemble(&sse_data(resp).await);
            assert_eq!(
                streamed, whole,
                "{model} {what}: the stream says what the answer says"
            );
            match what {
                "tools" => {
                    assert_eq!(whole.len(), 1);
                    assert_eq!(whole[0].2, "tool_calls", "{model}");
                    assert_eq!(whole[0].1.len(), 1, "{model}");
                    assert_eq!(whole[0].1[0].1, "get_weather");
                    let args: serde_json::Value =
                        serde_json::from_str(&whole[0].1[0].2).expect("args");
                    assert!(args["query"].is_string(), "{model}: {args}");
                }
                "json" => {
                    let v: serde_json::Value =
                        serde_json::from_str(&whole[0].0).expect("json content");
                    assert!(
                        v["city"].is_string() && v["population"].is_i64(),
                        "{model}: {v}"
                    );
                }
                _ => {
                    assert_eq!(whole.len(), 2, "{model}");
                    assert_ne!(whole[0].0, whole[1].0, "{model}: the choices differ");
                }
            }
        }
    }
}
