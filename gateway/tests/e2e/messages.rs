//! The Anthropic Messages face end to end: the real binary, mock-llm speaking Anthropic
//! (an Anthropic-kind target, translated twice) and OpenAI (an OpenAI-kind target), and Azure
//! OpenAI for tool calls in chat's own shape. Checked: plain answers, streamed events in order
//! event by event, a tool round trip, failover across providers, a cut stream ending with an
//! Anthropic `error` event, error shapes and statuses, `count_tokens`, cache replays through
//! the face, and the `endpoint` label.

use serde_json::{Value, json};

use crate::common::{self, KEY, TestGateway, assert_no_canary};

fn policy(mock: &sluice_loadtest::MockLlm) -> String {
    let root = format!("http://{}", mock.addr());
    let env = common::CANARY_ENV;
    format!(
        "providers:
  openai: {{ kind: openai, base_url: \"{root}/v1\", api_key_env: {env} }}
  anthropic: {{ kind: anthropic, base_url: \"{root}\", api_key_env: {env} }}
  azure: {{ kind: azure_openai, base_url: \"{root}\", api_key_env: {env}, api_version: 2024-10-21 }}
models:
  openai-chat: {{ provider: openai, upstream_model: m-openai, pricing: {{ input: 1, output: 2 }} }}
  openai-e500: {{ provider: openai, upstream_model: \"m-openai@500\" }}
  openai-cut: {{ provider: openai, upstream_model: \"m-openai@cut:3\" }}
  anthropic-chat: {{ provider: anthropic, upstream_model: m-anthropic, pricing: {{ input: 1, output: 2, cached_input: 0.5 }} }}
  anthropic-e529: {{ provider: anthropic, upstream_model: \"m-anthropic@529\" }}
  anthropic-e400: {{ provider: anthropic, upstream_model: \"m-anthropic@400\" }}
  anthropic-cut: {{ provider: anthropic, upstream_model: \"m-anthropic@cut:3\" }}
  anthropic-mid: {{ provider: anthropic, upstream_model: \"m-anthropic@echo-key:mid-stream:3\" }}
  azure-chat: {{ provider: azure, upstream_model: m-azure }}
routes:
  - name: to-anthropic
    match: {{ model: claude }}
    targets: [ {{ model: anthropic-e529 }} ]
    fallbacks: [ openai-chat ]
    timeouts: {{ ttft: 2s, idle: 2s, total: 10s }}
  - name: to-openai
    match: {{ model: gpt }}
    targets: [ {{ model: openai-e500 }} ]
    fallbacks: [ anthropic-chat ]
    timeouts: {{ ttft: 2s, idle: 2s, total: 10s }}
  - name: only-overloaded
    match: {{ model: overloaded }}
    targets: [ {{ model: anthropic-e529 }} ]
    retry: {{ max_attempts: 1 }}
  - name: cached
    match: {{ model: cached }}
    targets: [ {{ model: anthropic-chat }} ]
    cache: {{ ttl: 1h }}
"
    )
}

async fn start() -> (sluice_loadtest::MockLlm, TestGateway) {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&policy(&mock), &mock).await;
    (mock, gw)
}

/// A Messages request sent as the Anthropic SDK does: `x-api-key`, `anthropic-version`.
async fn post(gw: &TestGateway, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request")
}

fn ask(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 200,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say something deterministic about rivers and stones."}],
        "stream": stream,
    })
}

/// A stream's `(event name, data)` pairs, in order.
async fn events(resp: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.expect("stream body");
    assert_no_canary(&text);
    common::named_events(&text)
}

/// What a well-formed Messages stream says, checked event by event against the order the API
/// promises: `message_start`, then blocks (start, deltas of the block's own kind, stop) with
/// indexes 0, 1, …, then `message_delta` and `message_stop`; `ping` anywhere in between.
#[derive(Debug, Default)]
struct Streamed {
    id: String,
    text: String,
    /// (id, name, input) of each tool_use block.
    tools: Vec<(String, String, Value)>,
    stop_reason: String,
    usage: Value,
}

fn check_order(events: &[(String, Value)]) -> Streamed {
    let mut out = Streamed::default();
    let mut it = events.iter().filter(|(n, _)| n != "ping");
    let (first, start) = it.next().expect("events");
    assert_eq!(first, "message_start", "{events:?}");
    assert_eq!(start["message"]["role"], "assistant");
    assert_eq!(start["message"]["content"], json!([]));
    out.id = start["message"]["id"].as_str().expect("id").to_owned();
    let mut index = 0;
    let mut open: Option<(String, String)> = None; // (block type, tool json so far)
    let mut tail = Vec::new();
    for (name, v) in it {
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "a block opened inside another: {events:?}");
                assert_eq!(v["index"], index, "{events:?}");
                let kind = v["content_block"]["type"]
                    .as_str()
                    .expect("type")
                    .to_owned();
                if kind == "tool_use" {
                    out.tools.push((
                        v["content_block"]["id"].as_str().expect("id").to_owned(),
                        v["content_block"]["name"]
                            .as_str()
                            .expect("name")
                            .to_owned(),
                        Value::Null,
                    ));
                }
                open = Some((kind, String::new()));
            }
            "content_block_delta" => {
                let (kind, json) = open.as_mut().expect("a delta inside a block");
                assert_eq!(v["index"], index);
                match (kind.as_str(), v["delta"]["type"].as_str()) {
                    ("text", Some("text_delta")) => {
                        out.text
                            .push_str(v["delta"]["text"].as_str().expect("text"));
                    }
                    ("tool_use", Some("input_json_delta")) => {
                        json.push_str(v["delta"]["partial_json"].as_str().expect("partial"));
                    }
                    other => panic!("a delta of the wrong kind {other:?}: {events:?}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(v["index"], index);
                let (kind, json) = open.take().expect("a stop closes an open block");
                if kind == "tool_use" {
                    let input: Value = serde_json::from_str(&json).expect("the input is JSON");
                    out.tools.last_mut().expect("the block's tool").2 = input;
                }
                index += 1;
            }
            "message_delta" | "message_stop" => tail.push((name.clone(), v.clone())),
            other => panic!("unexpected event {other}: {events:?}"),
        }
        if name != "message_delta" && name != "message_stop" {
            assert!(tail.is_empty(), "content after message_delta: {events:?}");
        }
    }
    assert!(open.is_none(), "every block is closed");
    let names: Vec<&str> = tail.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["message_delta", "message_stop"], "{events:?}");
    out.stop_reason = tail[0].1["delta"]["stop_reason"]
        .as_str()
        .expect("stop reason")
        .to_owned();
    out.usage = tail[0].1["usage"].clone();
    out
}

#[tokio::test]
async fn plain_and_streamed_messages_on_anthropic_and_openai_targets() {
    let (mock, gw) = start().await;
    for model in ["anthropic-chat", "openai-chat"] {
        let resp = post(&gw, "/v1/messages", &ask(model, false)).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert!(resp.headers().contains_key("x-request-id"));
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["type"], "message", "{model}: {body}");
        assert_eq!(body["role"], "assistant");
        assert_eq!(body["stop_reason"], "end_turn", "{model}: {body}");
        assert_eq!(body["stop_sequence"], Value::Null);
        assert_eq!(body["content"][0]["type"], "text", "{model}: {body}");
        let text = body["content"][0]["text"]
            .as_str()
            .expect("text")
            .to_owned();
        assert!(text.split(' ').count() >= 8, "{model}: {text}");
        let u = &body["usage"];
        let input = u["input_tokens"].as_u64().expect("input tokens");
        let output = u["output_tokens"].as_u64().expect("output tokens");
        assert!(input > 0 && output > 0, "{model}: {u}");
        let read = u["cache_read_input_tokens"].as_u64().expect("cache reads");
        assert!(u["cache_creation_input_tokens"].is_u64(), "{model}: {u}");
        if model == "anthropic-chat" {
            // mock-llm reports a quarter of the prompt as read from the cache.
            assert!(read > 0, "{u}");
        }

        let streamed =
            check_order(&events(post(&gw, "/v1/messages", &ask(model, true)).await).await);
        assert_eq!(
            streamed.text, text,
            "{model}: the stream says what the answer said"
        );
        assert_eq!(streamed.stop_reason, "end_turn");
        assert!(streamed.tools.is_empty());
        assert_eq!(
            streamed.usage["output_tokens"].as_u64(),
            Some(output),
            "{model}"
        );
        assert_eq!(
            streamed.usage["input_tokens"].as_u64(),
            Some(input),
            "{model}"
        );
        assert_eq!(
            streamed.usage["cache_read_input_tokens"].as_u64(),
            Some(read),
            "{model}"
        );
    }
    assert_eq!(mock.requests_for("m-anthropic"), 2);
    assert_eq!(mock.requests_for("m-openai"), 2);
    assert_eq!(mock.stats().unauthorized, 0);

    // Bearer auth works too (Claude Code's ANTHROPIC_AUTH_TOKEN).
    let resp = gw
        .post("/v1/messages", ask("openai-chat", false).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);

    // Recorded under its own endpoint label, with the route, model and cost.
    let metrics = gw
        .metrics_when(|m| {
            m.lines().any(|l| {
                l.starts_with("sluice_requests_total")
                    && l.contains("endpoint=\"messages\"")
                    && l.contains("model=\"openai-chat\"")
                    && l.ends_with(" 3")
            }) && m.lines().any(|l| {
                l.starts_with("sluice_cost_usd_total") && l.contains("model=\"anthropic-chat\"")
            })
        })
        .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_requests_total")
                && l.contains("endpoint=\"messages\"")
                && l.contains("model=\"anthropic-chat\"")
                && l.contains("outcome=\"ok\"")),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("sluice_requests_total") && l.contains("chat_completions")),
        "Messages requests are not counted as chat completions"
    );
    // The access log names the endpoint too (its writer flushes on a timer: wait, bounded).
    let logged = common::eventually(async || {
        let n = gw
            .log_text()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["endpoint"] == "messages" && v["route"].is_string())
            .count();
        (n == 5).then_some(n)
    })
    .await;
    assert_eq!(logged, Some(5), "one access-log line per Messages request");
}

#[tokio::test]
async fn anthropic_targets_receive_the_clients_own_body() {
    let (mock, gw) = start().await;
    let req = json!({
        "model": "anthropic-chat", "max_tokens": 100,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Say something deterministic.", "cache_control": {"type": "ephemeral"}}
        ]}],
        "metadata": {"user_id": "u-42"},
        "thinking": {"type": "disabled"},
    });
    let resp = post(&gw, "/v1/messages", &req).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["type"], "message", "{body}");
    // What mock-llm received is the client's body with the target's model, byte for byte
    // in length: not a chat body translated back.
    let mut sent = req.clone();
    sent["model"] = json!("m-anthropic");
    assert_eq!(
        mock.stats().last_body_len,
        sent.to_string().len() as u64,
        "the native body went out"
    );
    // An OpenAI-kind target gets the translation.
    let mut req = req;
    req["model"] = json!("openai-chat");
    let resp = post(&gw, "/v1/messages", &req).await;
    assert_eq!(resp.status(), 200);
    assert_ne!(mock.stats().last_body_len, {
        let mut s = req.clone();
        s["model"] = json!("m-openai");
        s.to_string().len() as u64
    });
}

#[tokio::test]
async fn tools_round_trip_on_anthropic_openai_and_azure_targets() {
    let (_mock, gw) = start().await;
    let tools = json!([
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
    ]);
    for model in ["anthropic-chat", "openai-chat", "azure-chat"] {
        let mut req = ask(model, false);
        req["tools"] = tools.clone();
        req["tool_choice"] = json!({"type": "auto"});
        let body: Value = post(&gw, "/v1/messages", &req)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body["stop_reason"], "tool_use", "{model}: {body}");
        let call = body["content"]
            .as_array()
            .expect("content")
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{model}: a tool_use block: {body}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert!(call["input"]["query"].is_string(), "{model}: {call}");
        let id = call["id"].as_str().expect("id").to_owned();

        // Streamed: the same call, its input reassembled from the JSON deltas.
        req["stream"] = json!(true);
        let streamed = check_order(&events(post(&gw, "/v1/messages", &req).await).await);
        assert_eq!(streamed.stop_reason, "tool_use", "{model}");
        assert_eq!(streamed.tools.len(), 1, "{model}: {:?}", streamed.tools);
        assert_eq!(streamed.tools[0].1, "get_weather");
        assert_eq!(streamed.tools[0].2, call["input"], "{model}");

        // The result goes back; with tool_choice none the model answers in text.
        let follow = json!({
            "model": model, "max_tokens": 200,
            "messages": [
                {"role": "user", "content": "What is the weather?"},
                {"role": "assistant", "content": body["content"].clone()},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "sunny, 21C"}]}
                ]},
            ],
            "tools": tools.clone(),
            "tool_choice": {"type": "none"},
        });
        let resp = post(&gw, "/v1/messages", &follow).await;
        assert_eq!(resp.status(), 200, "{model}");
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(answer["stop_reason"], "end_turn", "{model}: {answer}");
        assert_eq!(answer["content"][0]["type"], "text", "{model}: {answer}");
    }
}

#[tokio::test]
async fn failover_across_providers_keeps_the_messages_shape() {
    let (mock, gw) = start().await;
    for model in ["claude", "gpt"] {
        let resp = post(&gw, "/v1/messages", &ask(model, false)).await;
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["type"], "message", "{model}: {body}");
        let streamed =
            check_order(&events(post(&gw, "/v1/messages", &ask(model, true)).await).await);
        assert!(!streamed.text.is_empty(), "{model}");
        assert_eq!(streamed.stop_reason, "end_turn");
    }
    // Anthropic's 529 failed over to OpenAI; OpenAI's 500 to Anthropic.
    assert_eq!(mock.requests_for("m-anthropic@529"), 2);
    assert_eq!(mock.requests_for("m-openai"), 2);
    assert!(mock.requests_for("m-openai@500") >= 2);
    assert_eq!(mock.requests_for("m-anthropic"), 2);
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_anthropic_error_event() {
    let (_mock, gw) = start().await;
    for model in ["anthropic-cut", "openai-cut"] {
        let events = events(post(&gw, "/v1/messages", &ask(model, true)).await).await;
        assert_eq!(events[0].0, "message_start", "{model}: {events:?}");
        let (name, last) = events.last().expect("events");
        assert_eq!(name, "error", "{model}: {events:?}");
        assert_eq!(last["error"]["type"], "api_error", "{model}: {last}");
        assert!(
            last["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("broke off")),
            "{model}: {last}"
        );
        assert!(
            !events.iter().any(|(n, _)| n == "message_stop"),
            "{model}: never a clean end"
        );
        assert!(
            events.iter().any(|(n, _)| n == "content_block_delta"),
            "{model}: the answer began"
        );
    }
    // The provider's own overloaded error after the answer began keeps its kind.
    let events = events(post(&gw, "/v1/messages", &ask("anthropic-mid", true)).await).await;
    let (name, last) = events.last().expect("events");
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(last["error"]["type"], "overloaded_error", "{last}");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
    // One line per model, each counting its one truncated request.
    let truncated = |m: &str| {
        m.lines()
            .filter(|l| {
                l.starts_with("sluice_requests_total")
                    && l.contains("endpoint=\"messages\"")
                    && l.contains("outcome=\"truncated\"")
                    && l.ends_with(" 1")
            })
            .count()
    };
    let metrics = gw.metrics_when(|m| truncated(m) == 3).await;
    assert_eq!(truncated(&metrics), 3, "{metrics}");
}

const LIMITED_KEY: &str = "sk-sluice-test-messages-limited";

fn error_of(status: u16, body: &Value) -> String {
    assert_eq!(body["type"], "error", "{status}: {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["type"]
        .as_str()
        .expect("error type")
        .to_owned()
}

#[tokio::test]
async fn errors_come_back_in_the_messages_shape_with_their_status() {
    let mock = common::mock_llm().await;
    // A second key that may send one request a minute.
    let limited = format!(
        "{}, limits: {{ rpm: 1 }}",
        common::more_keys(&[("limited", LIMITED_KEY, "lim")])
    );
    let gw = TestGateway::start_full(
        &policy(&mock),
        &mock,
        "  max_body_bytes: 1048576\n",
        &limited,
    )
    .await;
    let client = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json error");
        (status, body)
    };
    let body = ask("openai-chat", false).to_string();

    let (status, b) = send(client.post(gw.url("/v1/messages")).body(body.clone())).await;
    assert_eq!(
        (status, error_of(status, &b).as_str()),
        (401, "authentication_error")
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("x-api-key"))
    );
    let (status, b) = send(
        client
            .post(gw.url("/v1/messages"))
            .header("x-api-key", "sk-not-a-key")
            .body(body.clone()),
    )
    .await;
    assert_eq!(
        (status, error_of(status, &b).as_str()),
        (401, "authentication_error")
    );
    assert!(!b.to_string().contains("sk-not-a-key"));

    let cases = [
        (ask("no-such-model", false), 404, "not_found_error"),
        (
            json!({"model": "openai-chat", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "openai-chat", "max_tokens": 5, "top_k": 3, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (ask("overloaded", false), 503, "overloaded_error"),
    ];
    for (req, want_status, want_type) in cases {
        let resp = post(&gw, "/v1/messages", &req).await;
        let status = resp.status().as_u16();
        let b: Value = resp.json().await.expect("json");
        assert_eq!(
            (status, error_of(status, &b).as_str()),
            (want_status, want_type),
            "{req}"
        );
    }
    // The key's rate limit: 429 with retry-after, as the SDKs expect.
    let limited = |c: &reqwest::Client| {
        c.post(gw.url("/v1/messages"))
            .header("x-api-key", LIMITED_KEY)
            .body(ask("openai-chat", false).to_string())
    };
    let (status, _) = send(limited(&client)).await;
    assert_eq!(status, 200);
    let resp = limited(&client).send().await.expect("request");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let b: Value = resp.json().await.expect("json");
    assert_eq!(error_of(429, &b), "rate_limit_error");
    // A provider's own 400 keeps its status, in the Messages shape.
    let resp = post(&gw, "/v1/messages", &ask("anthropic-e400", false)).await;
    let status = resp.status().as_u16();
    let b: Value = resp.json().await.expect("json");
    assert_eq!(
        (status, error_of(status, &b).as_str()),
        (400, "invalid_request_error"),
        "{b}"
    );
    // Not JSON at all.
    let resp = post(&gw, "/v1/messages", &json!("just a string")).await;
    let status = resp.status().as_u16();
    let b: Value = resp.json().await.expect("json");
    assert_eq!(
        (status, error_of(status, &b).as_str()),
        (400, "invalid_request_error")
    );
    // The wrong method.
    let (status, b) = send(client.get(gw.url("/v1/messages")).header("x-api-key", KEY)).await;
    assert_eq!(
        (status, error_of(status, &b).as_str()),
        (405, "invalid_request_error")
    );
    // Too large: refused before the body is read.
    let big = json!({"model": "openai-chat", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x".repeat(2 * 1024 * 1024)}]});
    let resp = post(&gw, "/v1/messages", &big).await;
    let status = resp.status().as_u16();
    let b: Value = resp.json().await.expect("json");
    assert_eq!(
        (status, error_of(status, &b).as_str()),
        (413, "request_too_large")
    );
    // The chat endpoint still answers in OpenAI's shape.
    let resp = gw
        .post("/v1/chat/completions", "{}")
        .send()
        .await
        .expect("request");
    let b: Value = resp.json().await.expect("json");
    assert!(b["error"]["code"].is_string(), "{b}");
}

#[tokio::test]
async fn count_tokens_counts_locally_behind_the_key() {
    let (mock, gw) = start().await;
    let before = mock.stats();
    let short = json!({"model": "anthropic-chat", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&gw, "/v1/messages/count_tokens", &short).await;
    assert_eq!(resp.status(), 200);
    let small: Value = resp.json().await.expect("json");
    let small = small["input_tokens"].as_u64().expect("input_tokens");
    assert!(small > 0);
    let long = json!({"model": "anthropic-chat", "system": "You are a careful assistant.",
        "messages": [{"role": "user", "content": "Tell me about rivers, stones, and the long patience of water."}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]});
    let big: Value = post(&gw, "/v1/messages/count_tokens", &long)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(big.as_object().map(|o| o.len()), Some(1), "{big}");
    assert!(
        big["input_tokens"].as_u64().expect("n") > small + 10,
        "{big}"
    );
    // No provider was asked.
    assert_eq!(mock.stats().requests, before.requests);

    let resp = reqwest::Client::new()
        .post(gw.url("/v1/messages/count_tokens"))
        .body(short.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let b: Value = resp.json().await.expect("json");
    assert_eq!(error_of(401, &b), "authentication_error");
    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    gw.metrics_when(|m| m.contains("endpoint=\"messages_count_tokens\""))
        .await
        .contains("endpoint=\"messages_count_tokens\"")
        .then_some(())
        .expect("count_tokens has its own endpoint label");
}

#[tokio::test]
async fn cache_hits_replay_through_the_face() {
    let (mock, gw) = start().await;
    for stream in [false, true] {
        let mut req = ask("cached", stream);
        req["temperature"] = json!(0);
        // Each answer is read in full before the next request: a stream is stored when it ends.
        let first = post(&gw, "/v1/messages", &req).await;
        assert_eq!(first.headers()["x-sluice-cache"], "miss");
        if stream {
            let a = check_order(&events(first).await);
            gw.metrics_when(|m| {
                m.lines()
                    .any(|l| l.contains("result=\"miss\"") && l.ends_with(" 2"))
            })
            .await;
            let second = post(&gw, "/v1/messages", &req).await;
            assert_eq!(second.headers()["x-sluice-cache"], "hit", "stream={stream}");
            let b = check_order(&events(second).await);
            assert_eq!(a.text, b.text);
            assert_eq!(a.usage, b.usage);
        } else {
            let a: Value = first.json().await.expect("json");
            // Stored when the request is recorded, just after its last byte: the next request
            // may come on another connection before that.
            gw.metrics_when(|m| m.contains("result=\"miss\"")).await;
            let second = post(&gw, "/v1/messages", &req).await;
            assert_eq!(second.headers()["x-sluice-cache"], "hit", "stream={stream}");
            let b: Value = second.json().await.expect("json");
            assert_eq!(a["type"], "message");
            assert_eq!(a, b);
        }
    }
    assert_eq!(mock.requests_for("m-anthropic"), 2, "one call per shape");
    // The same question on the chat endpoint is its own cache entry, answered as chat.
    let chat = json!({"model": "cached", "max_tokens": 200, "temperature": 0,
        "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say something deterministic about rivers and stones."}]});
    let resp = gw
        .post("/v1/chat/completions", chat.to_string())
        .send()
        .await
        .expect("request");
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["object"], "chat.completion", "{b}");
}
