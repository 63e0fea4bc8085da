//! The Responses face end to end: the real binary, mock-llm speaking OpenAI (an OpenAI-kind
//! target; its Azure OpenAI dialect for tool calls in chat's own shape) and Anthropic (an
//! Anthropic-kind target, translated twice). Checked: plain answers,
//! streamed events in order with `sequence_number` event by event, a function tool round trip,
//! failover across providers, a cut stream ending with `response.failed` and the `error`
//! event, the 400s for built-in tools on a non-OpenAI target, `store` and
//! `previous_response_id`, and the `endpoint="responses"` label. OpenAI-kind targets get the
//! client's own body and their answer passes through (`responses_native` checks that part).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::{self, TestGateway, assert_no_canary};

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
  openai-terse: {{ provider: openai, upstream_model: \"m-openai@words:3\" }}
  anthropic-chat: {{ provider: anthropic, upstream_model: m-anthropic, pricing: {{ input: 1, output: 2, cached_input: 0.5 }} }}
  anthropic-e529: {{ provider: anthropic, upstream_model: \"m-anthropic@529\" }}
  anthropic-cut: {{ provider: anthropic, upstream_model: \"m-anthropic@cut:3\" }}
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
  - name: scored
    match: {{ model: scored }}
    targets: [ {{ model: openai-chat }} ]
    slos: [ {{ name: quality, objective: 90, sli: {{ judge_score_at_least: 0.7 }}, min_events: 1 }} ]
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

async fn post(gw: &TestGateway, body: &Value) -> reqwest::Response {
    gw.post("/v1/responses", body.to_string())
        .send()
        .await
        .expect("request")
}

fn ask(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "instructions": "Be brief.",
        "input": "Say something deterministic about rivers and stones.",
        "max_output_tokens": 200,
        "stream": stream,
    })
}

fn weather_tools() -> Value {
    json!([{
        "type": "function", "name": "get_weather", "description": "Weather for a place",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }])
}

/// A stream's events (the data of each), checking each is named by its `type`.
async fn events(resp: reqwest::Response) -> Vec<Value> {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.expect("stream body");
    assert_no_canary(&text);
    assert!(!text.contains("[DONE]"), "Responses streams have no [DONE]");
    common::named_events(&text)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// An output item as the stream built it.
#[derive(Debug, Default, Clone)]
struct Built {
    kind: String,
    id: String,
    text: String,
    name: String,
    call_id: String,
    arguments: String,
    done: bool,
}

/// What a well-formed stream said, checked event by event: `sequence_number` counts from 0
/// with no gap; `response.created` then `response.in_progress` open it; each item is added at
/// the next `output_index`, gets deltas of its own kind only while open, and its `.done`
/// events repeat exactly what the deltas said; a terminal event ends it and nothing follows.
#[derive(Debug)]
struct Streamed {
    items: Vec<Built>,
    /// The terminal event's type and its `response`.
    end: String,
    response: Value,
    /// The last event, when it is `error`.
    error: Option<Value>,
}

fn check_order(events: &[Value]) -> Streamed {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64, "event {i}: {events:#?}");
    }
    assert_eq!(events[0]["type"], "response.created", "{events:#?}");
    assert_eq!(events[1]["type"], "response.in_progress");
    let id = events[0]["response"]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(events[0]["response"]["object"], "response");
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["output"], json!([]));
    let mut items: Vec<Built> = Vec::new();
    // Open content parts per item: output_index -> content_index.
    let mut parts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut end: Option<(String, Value)> = None;
    let mut error = None;
    for e in &events[2..] {
        let ty = e["type"].as_str().expect("type");
        assert!(
            error.is_none(),
            "nothing after the error event: {events:#?}"
        );
        if let Some((end_ty, _)) = &end {
            assert!(
                ty == "error" && end_ty == "response.failed",
                "only an error follows response.failed, nothing follows {end_ty}: {events:#?}"
            );
        }
        let index = e["output_index"].as_u64().map(|i| i as usize);
        let item = |items: &mut Vec<Built>| -> usize {
            let i = index.expect("output_index");
            assert!(i < items.len(), "an event for an item never added: {e}");
            assert!(!items[i].done, "an event for a finished item: {e}");
            if let Some(item_id) = e["item_id"].as_str() {
                assert_eq!(item_id, items[i].id, "{e}");
            }
            i
        };
        match ty {
            "response.output_item.added" => {
                assert_eq!(index, Some(items.len()), "items are added in order: {e}");
                let it = &e["item"];
                assert_eq!(it["status"], "in_progress", "{e}");
                items.push(Built {
                    kind: it["type"].as_str().expect("item type").to_owned(),
                    id: it["id"].as_str().expect("item id").to_owned(),
                    name: it["name"].as_str().unwrap_or_default().to_owned(),
                    call_id: it["call_id"].as_str().unwrap_or_default().to_owned(),
                    ..Built::default()
                });
            }
            "response.content_part.added" => {
                let i = item(&mut items);
                assert_eq!(items[i].kind, "message");
                assert!(!parts.contains_key(&i), "one open part at a time");
                parts.insert(i, e["content_index"].as_u64().expect("ci") as usize);
                assert_eq!(e["part"]["type"], "output_text");
                assert_eq!(e["part"]["text"], "");
            }
            "response.output_text.delta" => {
                let i = item(&mut items);
                assert_eq!(
                    parts.get(&i).copied(),
                    e["content_index"].as_u64().map(|c| c as usize)
                );
                items[i].text.push_str(e["delta"].as_str().expect("delta"));
            }
            "response.output_text.done" => {
                let i = item(&mut items);
                assert_eq!(e["text"].as_str(), Some(items[i].text.as_str()), "{e}");
            }
            "response.content_part.done" => {
                let i = item(&mut items);
                assert!(parts.remove(&i).is_some(), "closes an open part: {e}");
                assert_eq!(e["part"]["text"].as_str(), Some(items[i].text.as_str()));
            }
            "response.function_call_arguments.delta" => {
                let i = item(&mut items);
                assert_eq!(items[i].kind, "function_call");
                items[i]
                    .arguments
                    .push_str(e["delta"].as_str().expect("delta"));
            }
            "response.function_call_arguments.done" => {
                let i = item(&mut items);
                assert_eq!(e["arguments"].as_str(), Some(items[i].arguments.as_str()));
                assert_eq!(e["name"].as_str(), Some(items[i].name.as_str()));
            }
            "response.output_item.done" => {
                let i = item(&mut items);
                assert!(!parts.contains_key(&i), "its parts closed first: {e}");
                let it = &e["item"];
                assert_eq!(it["id"].as_str(), Some(items[i].id.as_str()));
                match items[i].kind.as_str() {
                    "message" => {
                        assert_eq!(
                            it["content"][0]["text"].as_str(),
                            Some(items[i].text.as_str())
                        );
                    }
                    "function_call" => {
                        assert_eq!(it["arguments"].as_str(), Some(items[i].arguments.as_str()));
                        assert_eq!(it["call_id"].as_str(), Some(items[i].call_id.as_str()));
                    }
                    other => panic!("unexpected item kind {other}"),
                }
                items[i].done = true;
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                assert_eq!(e["response"]["id"].as_str(), Some(id.as_str()));
                if ty != "response.failed" {
                    assert!(
                        items.iter().all(|i| i.done),
                        "every item closed: {events:#?}"
                    );
                    let out = e["response"]["output"].as_array().expect("output");
                    assert_eq!(out.len(), items.len());
                    for (o, b) in out.iter().zip(&items) {
                        assert_eq!(o["id"].as_str(), Some(b.id.as_str()));
                    }
                }
                end = Some((ty.to_owned(), e["response"].clone()));
            }
            "error" => {
                assert!(e["message"].is_string(), "{e}");
                error = Some(e.clone());
            }
            other => panic!("unexpected event {other}: {events:#?}"),
        }
    }
    let (end, response) = end.expect("a terminal event");
    Streamed {
        items,
        end,
        response,
        error,
    }
}

fn output_text(body: &Value) -> String {
    body["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|o| o["type"] == "message")
        .flat_map(|o| o["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn plain_and_streamed_responses_on_openai_and_anthropic_targets() {
    let (mock, gw) = start().await;
    for model in ["openai-chat", "anthropic-chat"] {
        let resp = post(&gw, &ask(model, false)).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert!(resp.headers().contains_key("x-request-id"));
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["object"], "response", "{model}: {body}");
        assert!(body["id"].as_str().is_some_and(|i| i.starts_with("resp_")));
        assert_eq!(body["status"], "completed", "{model}: {body}");
        assert_eq!(body["instructions"], "Be brief.");
        assert_eq!(body["max_output_tokens"], 200);
        assert_eq!(body["store"], false);
        assert_eq!(body["output"][0]["type"], "message", "{model}: {body}");
        assert_eq!(body["output"][0]["role"], "assistant");
        assert_eq!(body["output"][0]["content"][0]["type"], "output_text");
        let text = output_text(&body);
        assert!(text.split(' ').count() >= 8, "{model}: {text}");
        let u = &body["usage"];
        let input = u["input_tokens"].as_u64().expect("input tokens");
        let output = u["output_tokens"].as_u64().expect("output tokens");
        assert!(input > 0 && output > 0, "{model}: {u}");
        assert_eq!(u["total_tokens"].as_u64(), Some(input + output), "{u}");
        let cached = u["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("cached");
        assert!(
            u["output_tokens_details"]["reasoning_tokens"].is_u64(),
            "{u}"
        );
        if model == "anthropic-chat" {
            // mock-llm reports a quarter of the prompt as read from Anthropic's cache.
            assert!(cached > 0, "{u}");
        }

        let streamed = check_order(&events(post(&gw, &ask(model, true)).await).await);
        assert_eq!(streamed.end, "response.completed", "{model}");
        assert_eq!(streamed.items.len(), 1);
        assert_eq!(
            streamed.items[0].text, text,
            "{model}: the stream says what the answer said"
        );
        assert_eq!(streamed.response["status"], "completed");
        assert_eq!(streamed.response["usage"], body["usage"], "{model}");
        assert!(streamed.error.is_none());
    }
    assert_eq!(mock.requests_for("m-openai"), 2);
    assert_eq!(mock.requests_for("m-anthropic"), 2);
    assert_eq!(mock.stats().unauthorized, 0);

    // Cut short by the output limit: incomplete, with the reason, whole and streamed.
    let body: Value = post(&gw, &ask("openai-terse", false))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["status"], "incomplete", "{body}");
    assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
    let streamed = check_order(&events(post(&gw, &ask("openai-terse", true)).await).await);
    assert_eq!(streamed.end, "response.incomplete");
    assert_eq!(
        streamed.response["incomplete_details"]["reason"],
        "max_output_tokens"
    );

    let metrics = gw
        .metrics_when(|m| {
            m.lines().any(|l| {
                l.starts_with("sluice_requests_total")
                    && l.contains("endpoint=\"responses\"")
                    && l.contains("model=\"anthropic-chat\"")
                    && l.contains("outcome=\"ok\"")
                    && l.ends_with(" 2")
            }) && m.lines().any(|l| {
                l.starts_with("sluice_cost_usd_total") && l.contains("model=\"openai-chat\"")
            })
        })
        .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_requests_total")
                && l.contains("endpoint=\"responses\"")
                && l.contains("model=\"openai-chat\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("sluice_requests_total") && l.contains("chat_completions")),
        "Responses requests are not counted as chat completions"
    );

    // The access log: a line per request under the `responses` endpoint, with its usage.
    let logged = common::access_log_lines(&gw, "responses", 6).await;
    let streamed = logged
        .iter()
        .find(|l| l["model"] == "anthropic-chat" && l["stream"] == true)
        .expect("the streamed Anthropic request");
    assert_eq!(streamed["outcome"], "ok", "{streamed}");
    assert!(
        streamed["output_tokens"].as_u64().is_some_and(|n| n > 0),
        "{streamed}"
    );
    assert!(streamed["time_to_first_chunk_ms"].is_number(), "{streamed}");
}

/// mock-llm's plain OpenAI path answers every request in text; its Azure OpenAI dialect (chat
/// completions' own shape) answers tool offers with tool calls, so it stands for the
/// OpenAI-shaped target here.
#[tokio::test]
async fn a_function_tool_round_trip_on_openai_shaped_and_anthropic_targets() {
    let (_mock, gw) = start().await;
    for model in ["openai-chat", "azure-chat", "anthropic-chat"] {
        let mut req = ask(model, false);
        req["input"] = json!("What is the weather in Paris?");
        req["tools"] = weather_tools();
        req["tool_choice"] = json!("auto");
        let body: Value = post(&gw, &req).await.json().await.expect("json");
        assert_eq!(body["status"], "completed", "{model}: {body}");
        assert_eq!(body["tools"], weather_tools(), "the tools are echoed");
        let call = body["output"]
            .as_array()
            .expect("output")
            .iter()
            .find(|o| o["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: a function_call item: {body}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["status"], "completed");
        assert!(call["id"].as_str().is_some_and(|i| i.starts_with("fc_")));
        let args: Value =
            serde_json::from_str(call["arguments"].as_str().expect("arguments")).expect("JSON");
        assert!(args["query"].is_string(), "{model}: {call}");

        // Streamed: the same call, its arguments reassembled from the deltas.
        req["stream"] = json!(true);
        let streamed = check_order(&events(post(&gw, &req).await).await);
        assert_eq!(streamed.end, "response.completed");
        let calls: Vec<&Built> = streamed
            .items
            .iter()
            .filter(|i| i.kind == "function_call")
            .collect();
        assert_eq!(calls.len(), 1, "{model}: {:?}", streamed.items);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].arguments).expect("JSON"),
            args,
            "{model}"
        );

        // The output goes back as input with the call's result; no tools wanted this time.
        let mut input = vec![json!({"role": "user", "content": "What is the weather in Paris?"})];
        input.extend(body["output"].as_array().cloned().unwrap_or_default());
        input.push(
            json!({"type": "function_call_output", "call_id": call["call_id"],
                          "output": "sunny, 21C"}),
        );
        let follow = json!({"model": model, "input": input, "tools": weather_tools(),
                            "tool_choice": "none"});
        let resp = post(&gw, &follow).await;
        assert_eq!(resp.status(), 200, "{model}");
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(answer["status"], "completed", "{model}: {answer}");
        assert_eq!(answer["output"][0]["type"], "message", "{model}: {answer}");
        assert!(!output_text(&answer).is_empty());
    }
}

#[tokio::test]
async fn failover_across_providers_keeps_the_responses_shape() {
    let (mock, gw) = start().await;
    for model in ["claude", "gpt"] {
        let resp = post(&gw, &ask(model, false)).await;
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["object"], "response", "{model}: {body}");
        assert_eq!(body["status"], "completed");
        let streamed = check_order(&events(post(&gw, &ask(model, true)).await).await);
        assert_eq!(streamed.end, "response.completed", "{model}");
        assert!(!streamed.items[0].text.is_empty(), "{model}");
    }
    // Anthropic's 529 failed over to OpenAI; OpenAI's 500 to Anthropic.
    assert_eq!(mock.requests_for("m-anthropic@529"), 2);
    assert_eq!(mock.requests_for("m-openai"), 2);
    assert!(mock.requests_for("m-openai@500") >= 2);
    assert_eq!(mock.requests_for("m-anthropic"), 2);
}

#[tokio::test]
async fn a_cut_stream_ends_with_response_failed_and_the_error_event() {
    let (_mock, gw) = start().await;
    for model in ["openai-cut", "anthropic-cut"] {
        let evs = events(post(&gw, &ask(model, true)).await).await;
        let streamed = check_order(&evs);
        assert_eq!(streamed.end, "response.failed", "{model}: {evs:#?}");
        assert_eq!(streamed.response["status"], "failed");
        assert!(streamed.response["error"]["message"].is_string());
        let err = streamed
            .error
            .unwrap_or_else(|| panic!("{model}: ends with error"));
        assert_eq!(evs.last(), Some(&err), "the error event is the last");
        assert_eq!(err["code"], "stream_interrupted", "{model}: {err}");
        assert!(
            err["message"]
                .as_str()
                .is_some_and(|m| m.contains("broke off")),
            "{model}: {err}"
        );
        assert!(
            evs.iter()
                .any(|e| e["type"] == "response.output_text.delta"),
            "{model}: the answer began"
        );
        assert!(!evs.iter().any(|e| e["type"] == "response.completed"));
    }
    let truncated = |m: &str, model: &str| {
        m.lines().any(|l| {
            l.starts_with("sluice_requests_total")
                && l.contains("endpoint=\"responses\"")
                && l.contains(&format!("model=\"{model}\""))
                && l.contains("outcome=\"truncated\"")
        })
    };
    let metrics = gw
        .metrics_when(|m| truncated(m, "openai-cut") && truncated(m, "anthropic-cut"))
        .await;
    assert!(
        truncated(&metrics, "openai-cut") && truncated(&metrics, "anthropic-cut"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_requests_get_a_clear_400_in_the_openai_error_shape() {
    let (mock, gw) = start().await;
    let before = mock.stats().requests;
    // An Anthropic-kind target: built-in tools run only on OpenAI-kind ones (see
    // `responses_native`, where they pass through).
    let with = |extra: Value| {
        let mut req = ask("anthropic-chat", false);
        for (k, v) in extra.as_object().expect("object") {
            req[k] = v.clone();
        }
        req
    };
    // (request, what the message names, the `param`)
    let cases = [
        (
            with(json!({"tools": [{"type": "web_search"}]})),
            "web_search",
            "tools",
        ),
        (
            with(json!({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]})),
            "file_search",
            "tools",
        ),
        (
            with(json!({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]})),
            "code_interpreter",
            "tools",
        ),
        (with(json!({"store": true})), "store", "store"),
        (
            with(json!({"previous_response_id": "resp_123"})),
            "previous_response_id",
            "previous_response_id",
        ),
        (
            with(json!({"input": [{"type": "item_reference", "id": "msg_1"}]})),
            "item_reference",
            "input",
        ),
    ];
    for (req, needle, param) in cases {
        let resp = post(&gw, &req).await;
        assert_eq!(resp.status(), 400, "{req}");
        let b: Value = resp.json().await.expect("json");
        assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
        assert_eq!(b["error"]["code"], "invalid_request", "{b}");
        assert_eq!(b["error"]["param"], param, "{b}");
        let message = b["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "{message} names {needle}");
    }
    assert_eq!(
        mock.stats().requests,
        before,
        "nothing refused reached a provider"
    );

    // Sluice's other errors keep OpenAI's shape and status on this path too.
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/responses"))
        .body(ask("openai-chat", false).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["error"]["type"], "authentication_error");
    let resp = post(&gw, &ask("no-such-model", false)).await;
    assert_eq!(resp.status(), 404);
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["error"]["code"], "model_not_found");
    let resp = post(&gw, &json!("just a string")).await;
    assert_eq!(resp.status(), 400);
    gw.metrics_when(|m| {
        m.lines().any(|l| {
            l.starts_with("sluice_requests_total")
                && l.contains("endpoint=\"responses\"")
                && l.contains("outcome=\"client_error\"")
        })
    })
    .await
    .contains("endpoint=\"responses\"")
    .then_some(())
    .expect("refusals are counted under the responses label");
}

#[tokio::test]
async fn cache_hits_replay_as_responses() {
    let (mock, gw) = start().await;
    // One client, so the second request rides the first's connection: Sluice stores an answer
    // before it reads the next request on that connection.
    let client = reqwest::Client::new();
    let post = async |req: &Value| {
        client
            .post(gw.url("/v1/responses"))
            .bearer_auth(common::KEY)
            .header("content-type", "application/json")
            .body(req.to_string())
            .send()
            .await
            .expect("request")
    };
    for stream in [false, true] {
        let mut req = ask("cached", stream);
        req["temperature"] = json!(0);
        // A stream is stored when it ends: read the first answer in full before asking again.
        let first = post(&req).await;
        assert_eq!(first.headers()["x-sluice-cache"], "miss");
        if stream {
            let a = check_order(&events(first).await);
            let second = post(&req).await;
            assert_eq!(second.headers()["x-sluice-cache"], "hit");
            let b = check_order(&events(second).await);
            assert_eq!(b.end, "response.completed");
            assert_eq!(a.items[0].text, b.items[0].text);
            assert_eq!(
                a.response, b.response,
                "the same answer, the same response id"
            );
        } else {
            let a: Value = first.json().await.expect("json");
            let second = post(&req).await;
            assert_eq!(second.headers()["x-sluice-cache"], "hit");
            let b: Value = second.json().await.expect("json");
            assert_eq!(a["object"], "response");
            assert_eq!(a, b);
        }
    }
    assert_eq!(mock.requests_for("m-anthropic"), 2, "one call per shape");
}

#[tokio::test]
async fn apps_score_responses_by_their_response_id() {
    let (_mock, gw) = start().await;
    let body: Value = post(&gw, &ask("scored", false))
        .await
        .json()
        .await
        .expect("json");
    let id = body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    // The recorder remembers answers shortly after they end.
    let scored = common::eventually(async || {
        let r = gw
            .post(
                "/v1/feedback",
                json!({"response_id": id, "score": 0.9}).to_string(),
            )
            .send()
            .await
            .expect("feedback");
        (r.status() == 200).then_some(r)
    })
    .await
    .expect("the response can be scored");
    let v: Value = scored.json().await.expect("json");
    assert_eq!(v["route"], "scored", "{v}");
    assert_eq!(v["counted"], true, "{v}");
}
