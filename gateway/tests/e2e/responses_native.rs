//! The Responses API passed through to OpenAI-kind targets: the client's own body goes to the
//! provider's `/v1/responses` and its answer comes back byte for byte, whole and streamed, while
//! Sluice still records usage, caches, fails over and ends a cut stream itself. mock-llm serves
//! `/v1/responses` and counts requests per path, which proves which API each attempt called.

use serde_json::{Value, json};

use crate::common::{self, CANARY, TestGateway, assert_no_canary};

fn policy(mock: &sluice_loadtest::MockLlm) -> String {
    let root = format!("http://{}", mock.addr());
    let env = common::CANARY_ENV;
    format!(
        "providers:
  openai: {{ kind: openai, base_url: \"{root}/v1\", api_key_env: {env} }}
  anthropic: {{ kind: anthropic, base_url: \"{root}\", api_key_env: {env} }}
models:
  openai-chat: {{ provider: openai, upstream_model: m-openai, pricing: {{ input: 1, output: 2 }} }}
  openai-e500: {{ provider: openai, upstream_model: \"m-openai@500\" }}
  openai-cut: {{ provider: openai, upstream_model: \"m-openai@cut:3\" }}
  openai-midstream: {{ provider: openai, upstream_model: \"m-openai@echo-key:mid-stream:2\" }}
  openai-early-fail: {{ provider: openai, upstream_model: \"m-openai@echo-key:mid-stream:1\" }}
  anthropic-chat: {{ provider: anthropic, upstream_model: m-anthropic }}
  judge-model: {{ provider: openai, upstream_model: m-judge }}
routes:
  - name: openai-then-anthropic
    match: {{ model: gpt }}
    targets: [ {{ model: openai-e500 }} ]
    fallbacks: [ anthropic-chat ]
    timeouts: {{ ttft: 2s, idle: 2s, total: 10s }}
  - name: fails-before-content
    match: {{ model: early }}
    targets: [ {{ model: openai-early-fail }} ]
    fallbacks: [ anthropic-chat ]
  - name: cached
    match: {{ model: cached }}
    targets: [ {{ model: openai-chat }} ]
    cache: {{ ttl: 1h }}
  - name: judged
    match: {{ model: judged }}
    targets: [ {{ model: openai-chat }} ]
    judge: {{ model: judge-model, sample: 1.0, rubric: helpfulness }}
"
    )
}

async fn start() -> (sluice_loadtest::MockLlm, TestGateway) {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&policy(&mock), &mock).await;
    (mock, gw)
}

fn ask(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "instructions": "Be brief.",
        "input": "Say something deterministic about rivers and stones.",
        "max_output_tokens": 200,
        "stream": stream,
        // Fields chat cannot say travel with the client's own body.
        "include": ["reasoning.encrypted_content"],
        "metadata": {"ticket": "T-1"},
    })
}

async fn post(gw: &TestGateway, body: &Value) -> reqwest::Response {
    gw.post("/v1/responses", body.to_string())
        .send()
        .await
        .expect("request")
}

/// The same request sent straight to mock-llm, as Sluice sends it: the target's model, and
/// `store: false`.
async fn direct(mock: &sluice_loadtest::MockLlm, body: &Value, upstream_model: &str) -> String {
    let mut body = body.clone();
    body["model"] = json!(upstream_model);
    body["store"] = json!(false);
    reqwest::Client::new()
        .post(format!("http://{}/v1/responses", mock.addr()))
        .bearer_auth(CANARY)
        .body(body.to_string())
        .send()
        .await
        .expect("direct request")
        .text()
        .await
        .expect("direct body")
}

/// A stream's events (`event:` name, data), checking each names its data's `type` and the
/// `sequence_number`s count up from 0 without a gap.
fn events(text: &str) -> Vec<Value> {
    let evs: Vec<Value> = common::named_events(text)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "event {i}: {e}");
    }
    evs
}

fn output_types(response: &Value) -> Vec<String> {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .map(|o| o["type"].as_str().expect("type").to_owned())
        .collect()
}

#[tokio::test]
async fn answers_pass_through_byte_for_byte_with_a_built_in_tools_item() {
    let (mock, gw) = start().await;
    let mut with_search = ask("openai-chat", false);
    with_search["tools"] = json!([{"type": "web_search"}]);
    for (req, search) in [(ask("openai-chat", false), false), (with_search, true)] {
        for stream in [false, true] {
            let mut req = req.clone();
            req["stream"] = json!(stream);
            let resp = post(&gw, &req).await;
            assert_eq!(resp.status(), 200, "{req}");
            let ct = resp.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .to_owned();
            let got = resp.text().await.expect("body");
            assert_no_canary(&got);
            assert_eq!(
                got,
                direct(&mock, &req, "m-openai").await,
                "the provider's own bytes: {req}"
            );
            let response = if stream {
                assert_eq!(ct, "text/event-stream");
                let evs = events(&got);
                assert_eq!(evs[0]["type"], "response.created");
                let last = evs.last().expect("events");
                assert_eq!(last["type"], "response.completed");
                assert_eq!(
                    evs.iter().any(|e| e["type"] == "response.output_item.added"
                        && e["item"]["type"] == "web_search_call"),
                    search
                );
                last["response"].clone()
            } else {
                serde_json::from_str(&got).expect("JSON")
            };
            assert_eq!(response["object"], "response");
            assert_eq!(response["metadata"], json!({"ticket": "T-1"}));
            let want = if search {
                vec!["message", "web_search_call"]
            } else {
                vec!["message"]
            };
            assert_eq!(output_types(&response), want, "{response}");
            assert!(
                response["usage"]["output_tokens"]
                    .as_u64()
                    .is_some_and(|n| n > 0)
            );
        }
    }
    assert_eq!(
        mock.requests_to("/v1/responses"),
        8,
        "4 through Sluice, 4 direct"
    );
    assert_eq!(mock.requests_to("/v1/chat/completions"), 0);

    // Recorded like a translated request: the `responses` endpoint, the provider's usage,
    // cost, time to first token.
    let metrics = gw
        .metrics_when(|m| {
            m.lines().any(|l| {
                l.starts_with("sluice_requests_total")
                    && l.contains("endpoint=\"responses\"")
                    && l.contains("model=\"openai-chat\"")
                    && l.contains("outcome=\"ok\"")
                    && l.ends_with(" 4")
            })
        })
        .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_cost_usd_total") && l.contains("model=\"openai-chat\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_usage_tokens_total")
                && l.contains("model=\"openai-chat\"")
                && l.contains("token_type=\"output\"")
                && l.contains("usage_source=\"provider\"")),
        "{metrics}"
    );
    let logged = common::access_log_lines(&gw, "responses", 4).await;
    for line in &logged {
        assert_eq!(line["outcome"], "ok", "{line}");
        assert!(
            line["input_tokens"].as_u64().is_some_and(|n| n > 0),
            "{line}"
        );
        assert!(
            line["output_tokens"].as_u64().is_some_and(|n| n > 0),
            "{line}"
        );
        if line["stream"] == true {
            assert!(line["time_to_first_chunk_ms"].is_number(), "{line}");
        }
    }
}

#[tokio::test]
async fn a_cut_stream_ends_with_response_failed_and_error_continuing_the_sequence() {
    let (mock, gw) = start().await;
    let resp = post(&gw, &ask("openai-cut", true)).await;
    assert_eq!(resp.status(), 200);
    let evs = events(&resp.text().await.expect("body"));
    assert_eq!(mock.requests_to("/v1/responses"), 1);
    assert!(
        evs.iter()
            .any(|e| e["type"] == "response.output_text.delta"),
        "the answer began: {evs:#?}"
    );
    assert!(!evs.iter().any(|e| e["type"] == "response.completed"));
    let n = evs.len();
    let (failed, error) = (&evs[n - 2], &evs[n - 1]);
    assert_eq!(failed["type"], "response.failed", "{evs:#?}");
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(
        failed["response"]["id"], evs[0]["response"]["id"],
        "Sluice ends the provider's response, under its id"
    );
    assert!(failed["response"]["error"]["message"].is_string());
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "stream_interrupted", "{error}");
    let truncated = |m: &str| {
        m.lines().any(|l| {
            l.starts_with("sluice_requests_total")
                && l.contains("endpoint=\"responses\"")
                && l.contains("model=\"openai-cut\"")
                && l.contains("outcome=\"truncated\"")
        })
    };
    assert!(truncated(&gw.metrics_when(truncated).await));

    // The provider's own failure mid-stream reaches the client as it sent it (its key,
    // quoted back, redacted), and ends the stream.
    let resp = post(&gw, &ask("openai-midstream", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert_no_canary(&text);
    let evs = events(&text);
    assert!(
        evs.iter()
            .any(|e| e["type"] == "response.output_text.delta")
    );
    let last = evs.last().expect("events");
    assert_eq!(last["type"], "response.failed", "{evs:#?}");
    assert!(!evs.iter().any(|e| e["type"] == "response.completed"));
    assert_eq!(
        mock.requests_to("/v1/responses"),
        2,
        "no failover once committed"
    );
}

#[tokio::test]
async fn a_cache_hit_replays_the_native_answer() {
    let (mock, gw) = start().await;
    // One client: Sluice stores an answer before it reads the next request on the connection.
    let client = reqwest::Client::new();
    let post = async |req: &Value| {
        client
            .post(gw.url("/v1/responses"))
            .bearer_auth(common::KEY)
            .body(req.to_string())
            .send()
            .await
            .expect("request")
    };
    for stream in [false, true] {
        let mut req = ask("cached", stream);
        req["temperature"] = json!(0);
        let first = post(&req).await;
        assert_eq!(first.headers()["x-sluice-cache"], "miss");
        let first = first.text().await.expect("body");
        let second = post(&req).await;
        assert_eq!(second.headers()["x-sluice-cache"], "hit");
        assert_eq!(
            second.text().await.expect("body"),
            first,
            "stream: {stream}"
        );
        // A built-in tool makes it another request (the chat body alone would not tell).
        req["tools"] = json!([{"type": "web_search_preview"}]);
        let other = post(&req).await;
        assert_eq!(other.headers()["x-sluice-cache"], "miss");
        let other = other.text().await.expect("body");
        assert!(other.contains("web_search_call"), "{other}");
    }
    assert_eq!(
        mock.requests_to("/v1/responses"),
        4,
        "one call per shape and tool set"
    );
    // The same chat request body never finds a Responses entry.
    let chat = json!({"model": "cached", "temperature": 0, "max_completion_tokens": 200,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Say something deterministic about rivers and stones."}]});
    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(common::KEY)
        .body(chat.to_string())
        .send()
        .await
        .expect("chat");
    assert_eq!(resp.headers()["x-sluice-cache"], "miss");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
}

#[tokio::test]
async fn failover_from_openai_to_anthropic_translates_and_built_in_tools_stop_there() {
    let (mock, gw) = start().await;
    for stream in [false, true] {
        let resp = post(&gw, &ask("gpt", stream)).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.expect("body");
        let response = if stream {
            let evs = events(&text);
            evs.last().expect("events")["response"].clone()
        } else {
            serde_json::from_str(&text).expect("JSON")
        };
        assert_eq!(response["status"], "completed", "{response}");
        assert_eq!(output_types(&response), ["message"]);
        assert_eq!(
            response["metadata"],
            json!({"ticket": "T-1"}),
            "the translated answer echoes it"
        );
    }
    assert!(
        mock.requests_to("/v1/responses") >= 2,
        "OpenAI was tried first"
    );
    assert_eq!(
        mock.requests_to("/v1/messages"),
        2,
        "then Anthropic, translated"
    );

    // OpenAI fails, and Anthropic cannot run the built-in tool: a final 400, nothing sent
    // to Anthropic.
    let mut req = ask("gpt", false);
    req["tools"] = json!([{"type": "function", "name": "f"}, {"type": "web_search"}]);
    let resp = post(&gw, &req).await;
    assert_eq!(resp.status(), 400);
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
    assert_eq!(b["error"]["param"], "tools", "{b}");
    let message = b["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("`web_search`") && message.contains("OpenAI-kind"),
        "{message}"
    );
    assert_eq!(mock.requests_to("/v1/messages"), 2);

    // Straight to an Anthropic target: the same 400, no provider called at all.
    let before = mock.stats().requests;
    let mut req = ask("anthropic-chat", true);
    req["tool_choice"] = json!({"type": "web_search_preview"});
    let resp = post(&gw, &req).await;
    assert_eq!(resp.status(), 400);
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["error"]["param"], "tools", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`web_search_preview`")),
        "{b}"
    );
    assert_eq!(mock.stats().requests, before);
}

#[tokio::test]
async fn the_judge_reads_a_passed_through_answers_text() {
    let (mock, gw) = start().await;
    for stream in [false, true] {
        let resp = post(&gw, &ask("judged", stream)).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.text().await.expect("body");
    }
    assert_eq!(mock.requests_to("/v1/responses"), 2);
    let series = |m: &str, prefix: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let scored = r#"sluice_judge_samples_total{route="judged",outcome="scored"}"#;
    let m = gw.metrics_when(|m| series(m, scored) >= 2.0).await;
    assert_eq!(series(&m, scored), 2.0, "{m}");
    // The scripted judge scores an empty answer 0: these were read as the text they carry.
    let sum = series(&m, r#"sluice_judge_score_sum{route="judged""#);
    assert!(sum > 0.5, "{sum}: {m}");
}

#[tokio::test]
async fn an_agent_sends_an_answers_output_back_as_its_next_input() {
    let (mock, gw) = start().await;
    // Turn one, with a built-in tool, on the OpenAI-kind target.
    let mut first = ask("openai-chat", false);
    first["tools"] = json!([{"type": "web_search"}]);
    let resp = post(&gw, &first).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    let output = answer["output"].as_array().expect("output").clone();
    assert!(
        output.iter().any(|o| o["type"] == "web_search_call"),
        "{answer}"
    );

    // Turn two, as agents write it: the conversation so far, a reasoning model's opaque
    // reasoning item, the answer's own output items, and the next question.
    let mut input = vec![
        json!({"role": "user", "content": "Find something about rivers."}),
        json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"}),
    ];
    input.extend(output.iter().cloned());
    input.push(json!({"role": "user", "content": "And about stones?"}));
    let second = json!({"model": "openai-chat", "input": input, "tools": [{"type": "web_search"}]});
    let before = mock.requests_to("/v1/responses");
    let resp = post(&gw, &second).await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(
        mock.requests_to("/v1/responses"),
        before + 1,
        "passed through"
    );

    // The same conversation to an Anthropic-kind target: the built-in call item cannot be said
    // there, a 400 naming it, and nothing is sent.
    let mut to_claude = second.clone();
    to_claude["model"] = json!("anthropic-chat");
    to_claude.as_object_mut().expect("object").remove("tools");
    let sent = mock.stats().requests;
    let resp = post(&gw, &to_claude).await;
    assert_eq!(resp.status(), 400);
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["error"]["param"], "input", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`web_search_call` item in `input`")),
        "{b}"
    );
    assert_eq!(mock.stats().requests, sent);

    // Without it, the conversation is translated; the reasoning item, opaque to Anthropic, is
    // left out rather than refused.
    let kept: Vec<Value> = to_claude["input"]
        .as_array()
        .expect("input")
        .iter()
        .filter(|i| i["type"] != "web_search_call")
        .cloned()
        .collect();
    to_claude["input"] = Value::Array(kept);
    let before = mock.requests_to("/v1/messages");
    let resp = post(&gw, &to_claude).await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(mock.requests_to("/v1/messages"), before + 1);
}

#[tokio::test]
async fn a_response_that_fails_before_any_content_fails_over() {
    let (mock, gw) = start().await;
    // OpenAI opens the stream (`response.created`, `in_progress`) and then fails it before a
    // token: nothing was committed, so the route's fallback answers, translated.
    let resp = post(&gw, &ask("early", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert_no_canary(&text);
    let evs = events(&text);
    let last = evs.last().expect("events");
    assert_eq!(last["type"], "response.completed", "{text}");
    assert!(
        !evs.iter()
            .any(|e| e["type"] == "response.failed" || e["type"] == "error"),
        "{text}"
    );
    assert_eq!(mock.requests_to("/v1/responses"), 1, "OpenAI was tried");
    assert_eq!(
        mock.requests_to("/v1/messages"),
        1,
        "then Anthropic answered"
    );
    let metrics = gw
        .metrics_when(|m| m.contains("sluice_upstream_attempts_total"))
        .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_upstream_attempts_total")
                && l.contains("model=\"openai-early-fail\"")
                && !l.contains("outcome=\"ok\"")),
        "the OpenAI attempt counted as failed: {metrics}"
    );
}

#[tokio::test]
async fn an_openai_compatible_server_without_the_responses_api_is_translated() {
    use crate::rawup::{self, RawUpstream, Reply};
    // A server of kind `openai` (vLLM, Ollama, …) that has chat completions but no
    // `/responses`: it answers 404 there.
    let up = RawUpstream::start(|seen| {
        if seen.head.starts_with("POST /v1/responses") {
            let body = r#"{"error":{"message":"Not Found","type":"invalid_request_error","param":null,"code":null}}"#;
            Reply::Writes(vec![format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()])
        } else {
            Reply::Writes(vec![rawup::whole_json()])
        }
    })
    .await;
    let mock = common::mock_llm().await;
    let policy = format!(
        "providers:\n  compatible: {{ kind: openai, base_url: \"{}\" }}\nmodels:\n  local: {{ provider: compatible, upstream_model: m }}\n",
        up.base_url()
    );
    let gw = TestGateway::start(&policy, &mock).await;
    let ask = json!({"model": "local", "input": "hi"});
    for _ in 0..2 {
        let resp = post(&gw, &ask).await;
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(answer["object"], "response", "{answer}");
        assert_eq!(answer["output"][0]["content"][0]["text"], "hi", "{answer}");
    }
    // The first request found the 404 and went again translated; the second was translated
    // straight away.
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "404, then chat, then chat"
    );
    // A built-in tool cannot be run there: a 400 that says why, nothing sent.
    let mut tool = ask.clone();
    tool["tools"] = json!([{"type": "web_search"}]);
    let resp = post(&gw, &tool).await;
    assert_eq!(resp.status(), 400);
    let b: Value = resp.json().await.expect("json");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not serve it")),
        "{b}"
    );
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
}
