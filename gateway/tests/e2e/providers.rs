//! The translated provider kinds end to end: the real binary in front of mock-llm speaking
//! Anthropic, Gemini (API and Vertex AI), Azure OpenAI (classic and v1) and Bedrock (SigV4),
//! each checked for plain and streamed chat, tools (streamed deltas reassembled equal the
//! whole answer), JSON mode, images, usage with cache tokens, errors before and after the
//! first byte, a cut stream, cross-provider failover on Anthropic's 529, and embeddings
//! (Gemini API, Vertex AI, Azure OpenAI, Bedrock Titan and Cohere) against the OpenAI mock's
//! vectors.

use serde_json::{Value, json};

use crate::common::{self, TestGateway, assert_no_canary, sse_data, stream_text};

/// (catalog prefix, provider) for every translated flavour.
const KINDS: [&str; 6] = [
    "anthropic",
    "gemini",
    "vertex",
    "azure",
    "azurev1",
    "bedrock",
];

/// The fault suffixes each kind gets a catalog model for.
const FAULTS: [(&str, &str); 10] = [
    ("chat", ""),
    ("e403", "@403"),
    ("e504", "@504"),
    ("slow", "@ttft:3000"),
    ("e500", "@500"),
    ("e529", "@529"),
    ("e429", "@429:2"),
    ("e400", "@400"),
    ("mid", "@echo-key:mid-stream:3"),
    ("cut", "@cut:3"),
];

/// (catalog name, provider, upstream model) of every translated embeddings flavour.
const EMBEDDERS: [(&str, &str, &str); 6] = [
    ("gemini-embed", "gemini", "text-embedding-004"),
    ("vertex-embed", "vertex", "text-embedding-005"),
    ("azure-embed", "azure", "emb-deployment"),
    ("azurev1-embed", "azurev1", "text-embedding-3-small"),
    ("bedrock-titan", "bedrock", "amazon.titan-embed-text-v2:0"),
    ("bedrock-cohere", "bedrock", "cohere.embed-english-v3"),
];

/// A provider key (or AWS access key id) mock-llm refuses.
const WRONG_KEY_ENV: &str = "TEST_WRONG_PROVIDER_KEY";
const WRONG_KEY: &str = "wrong-provider-key-for-tests";

fn policy(mock: &sluice_loadtest::MockLlm) -> String {
    let root = format!("http://{}", mock.addr());
    let env = common::CANARY_ENV;
    let mut models = String::new();
    for kind in KINDS {
        for (name, suffix) in FAULTS {
            models.push_str(&format!(
                "  {kind}-{name}: {{ provider: {kind}, upstream_model: \"m-{kind}{suffix}\", pricing: {{ input: 1, output: 2, cached_input: 0.5 }} }}\n"
            ));
        }
    }
    // Embedding models: one per flavour, and Bedrock's two families (Titan, Cohere).
    for (name, provider, upstream) in EMBEDDERS {
        models.push_str(&format!(
            "  {name}: {{ provider: {provider}, upstream_model: \"{upstream}\", kind: embedding, pricing: {{ input: 1, output: 0 }} }}\n"
        ));
    }
    models.push_str(
        "  openai-embed: { provider: openai, upstream_model: e-openai, kind: embedding }\n",
    );
    // The same providers holding a key mock-llm refuses.
    for kind in KINDS {
        models.push_str(&format!(
            "  {kind}-badkey: {{ provider: {kind}-bad, upstream_model: m-{kind} }}\n"
        ));
    }
    // A route per kind whose provider answers later than the route's time to first token.
    let slow: String = KINDS
        .iter()
        .map(|kind| {
            format!(
                "  - {{ name: slow-{kind}, match: {{ model: timeout-{kind} }}, targets: [ {{ model: {kind}-slow }} ], retry: {{ max_attempts: 1 }}, timeouts: {{ ttft: 300ms, total: 5s }} }}\n"
            )
        })
        .collect();
    format!(
        "providers:
  openai: {{ kind: openai, base_url: \"{root}/v1\", api_key_env: {env} }}
  anthropic: {{ kind: anthropic, base_url: \"{root}\", api_key_env: {env}, connect_timeout: 1s }}
  gemini: {{ kind: gemini, base_url: \"{root}\", api_key_env: {env} }}
  vertex: {{ kind: gemini, base_url: \"{root}\", api_key_env: {env}, project: acme, location: us-central1 }}
  azure: {{ kind: azure_openai, base_url: \"{root}\", api_key_env: {env}, api_version: 2024-10-21 }}
  azurev1: {{ kind: azure_openai, base_url: \"{root}\", api_key_env: {env} }}
  bedrock: {{ kind: bedrock, base_url: \"{root}\", region: us-east-1, aws_access_key_id_env: {env}, aws_secret_access_key_env: TEST_AWS_SECRET }}
  anthropic-bad: {{ kind: anthropic, base_url: \"{root}\", api_key_env: {WRONG_KEY_ENV} }}
  gemini-bad: {{ kind: gemini, base_url: \"{root}\", api_key_env: {WRONG_KEY_ENV} }}
  vertex-bad: {{ kind: gemini, base_url: \"{root}\", api_key_env: {WRONG_KEY_ENV}, project: acme, location: us-central1 }}
  azure-bad: {{ kind: azure_openai, base_url: \"{root}\", api_key_env: {WRONG_KEY_ENV}, api_version: 2024-10-21 }}
  azurev1-bad: {{ kind: azure_openai, base_url: \"{root}\", api_key_env: {WRONG_KEY_ENV} }}
  bedrock-bad: {{ kind: bedrock, base_url: \"{root}\", region: us-east-1, aws_access_key_id_env: {WRONG_KEY_ENV}, aws_secret_access_key_env: TEST_AWS_SECRET }}
models:
{models}routes:
  - name: cross
    match: {{ model: cross }}
    targets: [ {{ model: anthropic-e529 }} ]
    fallbacks: [ gemini-chat ]
    timeouts: {{ ttft: 2s, idle: 2s, total: 10s }}
{slow}"
    )
}

async fn start() -> (sluice_loadtest::MockLlm, TestGateway) {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start_with_env(
        &policy(&mock),
        &mock,
        "",
        &[
            ("TEST_AWS_SECRET", "aws-secret-for-tests"),
            (WRONG_KEY_ENV, WRONG_KEY),
        ],
    )
    .await;
    (mock, gw)
}

async fn post(gw: &TestGateway, body: &Value) -> reqwest::Response {
    gw.post("/v1/chat/completions", body.to_string())
        .send()
        .await
        .expect("request")
}

fn ask(model: &str, stream: bool) -> Value {
    let mut v = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say something deterministic about rivers and stones."}
        ],
        "max_tokens": 200,
    });
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

/// The tool calls of a stream, reassembled by index: (id, name, arguments).
fn streamed_tool_calls(events: &[String]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for e in events {
        let Ok(v) = serde_json::from_str::<Value>(e) else {
            continue;
        };
        for d in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = usize::try_from(d["index"].as_u64().expect("every delta has its index"))
                .expect("small");
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            if let Some(id) = d["id"].as_str() {
                calls[i].0 = id.to_owned();
            }
            if let Some(n) = d["function"]["name"].as_str() {
                calls[i].1.push_str(n);
            }
            if let Some(a) = d["function"]["arguments"].as_str() {
                calls[i].2.push_str(a);
            }
        }
    }
    calls
}

fn finish_reasons(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["choices"][0]["finish_reason"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn plain_and_streamed_chat_with_usage_in_every_dialect() {
    let (mock, gw) = start().await;
    for kind in KINDS {
        let model = format!("{kind}-chat");
        let resp = post(&gw, &ask(&model, false)).await;
        assert_eq!(resp.status(), 200, "{kind}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["object"], "chat.completion", "{kind}: {body}");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            body["choices"][0]["finish_reason"], "stop",
            "{kind}: {body}"
        );
        let text = body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_owned();
        assert!(text.split(' ').count() >= 8, "{kind}: {text}");
        let u = &body["usage"];
        let prompt = u["prompt_tokens"].as_u64().expect("prompt tokens");
        let completion = u["completion_tokens"].as_u64().expect("completion tokens");
        assert_eq!(
            u["total_tokens"].as_u64(),
            Some(prompt + completion),
            "{kind}"
        );
        assert!(prompt >= 8, "{kind}: {u}");
        // Cache reads are part of the prompt, and reported where the dialect can say them.
        assert_eq!(
            u["prompt_tokens_details"]["cached_tokens"].as_u64(),
            Some(prompt / 4),
            "{kind}: {u}"
        );

        let resp = post(&gw, &ask(&model, true)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = sse_data(resp).await;
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{kind}: {events:?}"
        );
        assert!(
            events[0].contains("\"role\":\"assistant\""),
            "{kind}: {events:?}"
        );
        assert_eq!(
            stream_text(&events),
            text,
            "{kind}: the stream says what the answer said"
        );
        assert_eq!(
            finish_reasons(&events),
            ["stop"],
            "{kind}: once, at the end"
        );
        let usage: Value = events
            .iter()
            .rev()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find(|v| v["usage"].is_object())
            .map(|v| v["usage"].clone())
            .expect("a usage chunk, since the client asked");
        assert_eq!(usage["prompt_tokens"].as_u64(), Some(prompt), "{kind}");
        assert_eq!(
            usage["completion_tokens"].as_u64(),
            Some(completion),
            "{kind}"
        );
        for e in &events {
            assert_no_canary(e);
        }
    }
    // Each kind reached the mock on its own path, with its own credential.
    assert_eq!(mock.stats().unauthorized, 0);
    assert_eq!(mock.requests_for("m-anthropic"), 2);
    assert_eq!(mock.requests_for("m-bedrock"), 2);

    // Spans and metrics name the real provider and model; cost is priced for every kind.
    // Cost is counted by the recorder, after the answer: wait for every kind's cost line, not
    // only for the first metric that names the model.
    let metrics = gw
        .metrics_when(|m| {
            KINDS.iter().all(|k| {
                m.lines().any(|l| {
                    l.starts_with("sluice_cost_usd_total")
                        && l.contains(&format!("model=\"{k}-chat\""))
                })
            })
        })
        .await;
    for kind in KINDS {
        let cost = metrics
            .lines()
            .find(|l| {
                l.starts_with("sluice_cost_usd_total")
                    && l.contains(&format!("model=\"{kind}-chat\""))
            })
            .unwrap_or_else(|| panic!("{kind}: no cost line"));
        let usd: f64 = cost
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!(usd > 0.0, "{kind}: {cost}");
        assert!(
            metrics.contains(&format!("provider=\"{kind}\"")),
            "{kind}: the provider label"
        );
    }
}

#[tokio::test]
async fn tools_json_mode_and_images_translate_both_ways() {
    let (_mock, gw) = start().await;
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
        {"type": "function", "function": {"name": "get_time",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}
    ]);
    for kind in KINDS {
        let model = format!("{kind}-chat");
        // Tools: two parallel calls; the streamed deltas reassemble to the whole answer.
        let mut req = ask(&model, false);
        req["tools"] = tools.clone();
        let body: Value = post(&gw, &req).await.json().await.expect("json");
        assert_eq!(
            body["choices"][0]["finish_reason"], "tool_calls",
            "{kind}: {body}"
        );
        let whole: Vec<(String, String, String)> = body["choices"][0]["message"]["tool_calls"]
            .as_array()
            .expect("tool calls")
            .iter()
            .map(|c| {
                assert_eq!(c["type"], "function");
                (
                    c["id"].as_str().expect("id").to_owned(),
                    c["function"]["name"].as_str().expect("name").to_owned(),
                    c["function"]["arguments"]
                        .as_str()
                        .expect("args")
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(whole.len(), 2, "{kind}: {body}");
        assert_eq!(
            (whole[0].1.as_str(), whole[1].1.as_str()),
            ("get_weather", "get_time")
        );
        let args: Value = serde_json::from_str(&whole[0].2).expect("arguments are JSON");
        assert!(args["query"].is_string(), "{kind}: {args}");
        req["stream"] = json!(true);
        let events = sse_data(post(&gw, &req).await).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{kind}");
        assert_eq!(streamed_tool_calls(&events), whole, "{kind}: {events:?}");
        assert_eq!(finish_reasons(&events), ["tool_calls"], "{kind}");

        // JSON mode with a schema: an object with the required fields.
        let mut req = ask(&model, false);
        req["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "city",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
                "required": ["city", "population"], "additionalProperties": false}}});
        let body: Value = post(&gw, &req).await.json().await.expect("json");
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        let obj: Value = serde_json::from_str(content).expect("JSON content");
        assert!(
            obj["city"].is_string() && obj["population"].is_number(),
            "{kind}: {obj}"
        );

        // Plain JSON mode (a forced tool on Anthropic and Bedrock, turned back into content).
        let mut req = ask(&model, true);
        req["response_format"] = json!({"type": "json_object"});
        let events = sse_data(post(&gw, &req).await).await;
        let text = stream_text(&events);
        let obj: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{kind}: streamed JSON mode is JSON ({e}): {text}"));
        assert!(obj.is_object(), "{kind}: {obj}");
        assert_eq!(finish_reasons(&events), ["stop"], "{kind}");

        // Images: a data: URL (every kind takes it).
        let mut req = ask(&model, false);
        req["messages"][1]["content"] = json!([
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="}}
        ]);
        let resp = post(&gw, &req).await;
        assert_eq!(resp.status(), 200, "{kind}");
        let body: Value = resp.json().await.expect("json");
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        assert!(content.starts_with("I see 1 images."), "{kind}: {content}");
    }
}

#[tokio::test]
async fn errors_map_to_openai_statuses_before_and_after_the_first_byte() {
    let (mock, gw) = start().await;
    for kind in KINDS {
        // Overloaded (Anthropic's 529; 503 elsewhere) is a 503 once no target is left.
        let resp = post(&gw, &ask(&format!("{kind}-e529"), false)).await;
        assert_eq!(resp.status(), 503, "{kind}");
        let body: Value = resp.json().await.expect("json");
        assert!(body["error"]["message"].is_string(), "{kind}: {body}");
        // Rate limited: 429 with the provider's wait.
        let resp = post(&gw, &ask(&format!("{kind}-e429"), false)).await;
        assert_eq!(resp.status(), 429, "{kind}");
        assert!(resp.headers().contains_key("retry-after"), "{kind}");
        // The provider refused the request: its 400, in OpenAI's shape.
        let resp = post(&gw, &ask(&format!("{kind}-e400"), false)).await;
        assert_eq!(resp.status(), 400, "{kind}");
        let text = resp.text().await.expect("body");
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            body["error"]["type"], "invalid_request_error",
            "{kind}: {body}"
        );
        assert_no_canary(&text);

        // After the first byte: the provider's error ends the stream as an OpenAI error event.
        let events = sse_data(post(&gw, &ask(&format!("{kind}-mid"), true)).await).await;
        let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
        assert!(last["error"].is_object(), "{kind}: {events:?}");
        assert!(
            !events.iter().any(|e| e == "[DONE]"),
            "{kind}: no clean end"
        );
        assert!(
            !stream_text(&events).is_empty(),
            "{kind}: the answer began: {events:?}"
        );
        // A cut stream is reported, never finished cleanly.
        let events = sse_data(post(&gw, &ask(&format!("{kind}-cut"), true)).await).await;
        let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
        assert!(last["error"].is_object(), "{kind}: {events:?}");
        assert!(!events.iter().any(|e| e == "[DONE]"), "{kind}");
    }
    // A provider's own server error, and credentials the provider refuses (mock-llm's own
    // check in each dialect's header or SigV4 scope): 502s in OpenAI's shape, never echoing
    // the key Sluice sent.
    let refused_before = mock.stats().unauthorized;
    for kind in KINDS {
        let resp = post(&gw, &ask(&format!("{kind}-e500"), false)).await;
        assert_eq!(resp.status(), 502, "{kind}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["type"], "server_error", "{kind}: {body}");
        let resp = post(&gw, &ask(&format!("{kind}-badkey"), false)).await;
        assert_eq!(resp.status(), 502, "{kind}");
        let text = resp.text().await.expect("body");
        assert!(!text.contains(WRONG_KEY), "{kind}: {text}");
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["error"]["type"], "server_error", "{kind}: {body}");
    }
    assert!(
        mock.stats().unauthorized >= refused_before + KINDS.len() as u64,
        "every dialect's credential check refused the wrong key"
    );
    // A request the target cannot do is a 400 naming the field; nothing is sent.
    let mut req = ask("anthropic-chat", false);
    req["n"] = json!(3);
    let resp = post(&gw, &req).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["param"], "n", "{body}");
}

#[tokio::test]
async fn anthropic_overloaded_fails_over_to_another_provider() {
    let (mock, gw) = start().await;
    for stream in [false, true] {
        let resp = post(&gw, &ask("cross", stream)).await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        if stream {
            let events = sse_data(resp).await;
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            assert!(!stream_text(&events).is_empty());
        } else {
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["object"], "chat.completion");
        }
    }
    assert_eq!(mock.requests_for("m-anthropic@529"), 2);
    assert_eq!(mock.requests_for("m-gemini"), 2);
}

/// The vectors of an OpenAI embeddings list, in `index` order.
fn vectors(body: &Value) -> Vec<Vec<f64>> {
    let data = body["data"].as_array().expect("data");
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i, "{body}");
        assert_eq!(d["object"], "embedding", "{body}");
    }
    data.iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .expect("float vector")
                .iter()
                .map(|x| x.as_f64().expect("float"))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn embeddings_translate_for_gemini_vertex_azure_and_bedrock() {
    let (_mock, gw) = start().await;
    let embed = |model: &str, input: Value, dims: Option<u32>| {
        let mut req = json!({"model": model, "input": input});
        if let Some(d) = dims {
            req["dimensions"] = json!(d);
        }
        gw.post("/v1/embeddings", req.to_string()).send()
    };
    // mock-llm derives every dialect's vectors from the same inputs, so the OpenAI answer is
    // the reference: a translation that loses, reorders or rounds a number shows here.
    let two = json!(["rivers carry stones", "to the sea"]);
    let reference = |input: &Value, dims: Option<u32>| {
        let input = input.clone();
        async move {
            let resp = embed("openai-embed", input, dims).await.expect("request");
            assert_eq!(resp.status(), 200);
            vectors(&resp.json().await.expect("json"))
        }
    };
    let want_two = reference(&two, Some(8)).await;
    let want_two_default = reference(&two, None).await;
    let one = json!("rivers carry stones");
    let want_one = reference(&json!([one.clone()]), Some(8)).await;
    for (name, _, _) in EMBEDDERS {
        let (input, dims, want) = match name {
            "bedrock-titan" => (one.clone(), Some(8), &want_one),
            "bedrock-cohere" => (two.clone(), None, &want_two_default),
            _ => (two.clone(), Some(8), &want_two),
        };
        let resp = embed(name, input, dims).await.expect("request");
        assert_eq!(resp.status(), 200, "{name}");
        let text = resp.text().await.expect("body");
        assert_no_canary(&text);
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["object"], "list", "{name}: {body}");
        let got = vectors(&body);
        assert_eq!(got.len(), want.len(), "{name}: one vector per input");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.len(), w.len(), "{name}: the asked width");
            assert!(
                g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-6),
                "{name}: {g:?} != {w:?}"
            );
        }
        // Every kind but the Gemini API reports the tokens it embedded.
        if name != "gemini-embed" {
            assert!(
                body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
                "{name}: {body}"
            );
        }
    }
    // Titan embeds one input per request: more is the client's 400, naming the field.
    let resp = embed("bedrock-titan", two.clone(), None)
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["param"], "input", "{body}");
    // base64 vectors are encoded by Sluice, as OpenAI sends them.
    let mut req = json!({"model": "vertex-embed", "input": two, "encoding_format": "base64"});
    req["dimensions"] = json!(8);
    let resp = gw
        .post("/v1/embeddings", req.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["data"][0]["embedding"]
            .as_str()
            .is_some_and(|b| b.len() == 44),
        "8 f32s are 32 bytes, 44 in base64: {body}"
    );
}

/// `compat` on an OpenAI-compatible provider: an older server (mock-llm's `legacy` fault)
/// refuses `stream_options`, `max_completion_tokens`, `developer` messages and
/// `parallel_tool_calls`; without options every such request fails with its 400, with them the
/// same requests are served, streamed and not, and a stream's tokens are counted by Sluice.
#[tokio::test]
async fn compat_options_let_an_older_openai_compatible_server_serve() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  strict: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\n  vllm:\n    kind: openai\n    base_url: \"{mock}\"\n    api_key_env: SLUICE_TEST_PROVIDER_KEY\n    compat: { stream_usage: false, max_tokens_field: max_tokens, developer_as_system: true, drop_fields: [parallel_tool_calls] }\nmodels:\n  plain: { provider: strict, upstream_model: \"m@legacy\" }\n  quirky: { provider: vllm, upstream_model: \"m@legacy\" }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let body = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream, "max_completion_tokens": 4,
            "parallel_tool_calls": false,
            "messages": [{"role": "developer", "content": "Be terse."},
                         {"role": "user", "content": "Name a river."}]})
        .to_string()
    };
    for stream in [false, true] {
        let resp = gw
            .post("/v1/chat/completions", body("plain", stream))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 400, "stream={stream}");
        let err: Value = resp.json().await.expect("error json");
        assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");

        let resp = gw
            .post("/v1/chat/completions", body("quirky", stream))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "stream={stream}");
        if stream {
            let events = sse_data(resp).await;
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            // The cap reached the server under its old name: four words.
            assert_eq!(stream_text(&events).split(' ').count(), 4, "{events:?}");
        } else {
            let v: Value = resp.json().await.expect("json");
            assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
            assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
        }
    }
    // Without `stream_options` the server reports no usage in the stream: Sluice counts it.
    let m = gw
        .metrics_when(|m| m.contains("usage_source=\"estimated\""))
        .await;
    assert!(
        m.contains("usage_source=\"provider\""),
        "the whole answer's usage is the server's: {m}"
    );
    assert_no_canary(&gw.log_text());
}

/// The rest of the error classes, per dialect and streamed or not: a provider refusing
/// Sluice's permissions (403) is Sluice's problem, a 502 that never echoes the key; a
/// provider's gateway timeout is a 504; a provider slower than the route's time to first
/// token is a 504 `upstream_timeout`.
#[tokio::test]
async fn forbidden_gateway_timeout_and_ttft_timeout_map_per_dialect() {
    let (_mock, gw) = start().await;
    for kind in KINDS {
        for stream in [false, true] {
            let cases = [
                (format!("{kind}-e403"), 502, "upstream_error"),
                (format!("{kind}-e504"), 504, "upstream_error"),
                (format!("timeout-{kind}"), 504, "upstream_timeout"),
            ];
            for (model, status, code) in cases {
                let resp = post(&gw, &ask(&model, stream)).await;
                assert_eq!(resp.status(), status, "{model} stream={stream}");
                let text = resp.text().await.expect("body");
                assert_no_canary(&text);
                let body: Value = serde_json::from_str(&text).expect("json");
                assert_eq!(body["error"]["type"], "server_error", "{model}: {body}");
                assert_eq!(body["error"]["code"], code, "{model}: {body}");
            }
        }
    }
}
