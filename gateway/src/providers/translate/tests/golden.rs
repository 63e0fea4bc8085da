//! Golden tests: requests per kind, responses and streams per provider fixture, and the 400s.

use serde_json::{Map, Value, json};

use super::*;
use crate::providers::translate::{Kind, TranslateError, response};

fn request_json(r: &Result<UpstreamRequest, TranslateError>) -> Value {
    match r {
        Ok(req) => {
            let headers: Map<String, Value> = req
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), json!(v)))
                .collect();
            json!({
                "method": req.method,
                "path_and_query": req.path_and_query,
                "headers": headers,
                "stream": req.stream,
                "body": serde_json::from_slice::<Value>(&req.body).expect("JSON body"),
                "state": {
                    "include_usage": req.state.include_usage,
                    "json_tool": req.state.json_tool,
                    "base64": req.state.base64,
                    "inputs": req.state.inputs,
                },
            })
        }
        Err(e) => json!({"refused": {
            "kind": match e {
                TranslateError::Unsupported { .. } => "unsupported",
                TranslateError::Invalid { .. } => "invalid",
            },
            "field": e.field(),
            "message": e.to_string(),
        }}),
    }
}

#[test]
fn every_request_case_for_every_kind() {
    let mut diffs = vec![];
    for k in kinds() {
        let mut out = Map::new();
        for case in request_cases() {
            let model = match endpoint_of(&case) {
                Endpoint::Chat => k.chat_model,
                Endpoint::Embeddings => k.embed_model,
            };
            let Some(model) = model else { continue };
            out.insert(case.clone(), request_json(&build(&k.opts, &case, model)));
        }
        diffs.push(golden_diff(
            &format!("{}/{}.golden.json", k.dir, k.golden),
            &Value::Object(out),
        ));
    }
    assert_goldens(diffs);
}

/// The 400s, spelled out (the golden matrix has them too; this is the intent in code).
#[test]
fn refusals_name_the_field() {
    let anthropic = anthropic_opts();
    let gemini = gemini_opts();
    let bedrock = bedrock_opts();
    let sonnet = "claude-sonnet-4-5";
    let claude_bedrock = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    let titan = "amazon.titan-embed-text-v2:0";
    let cases: &[(&KindOptions, &str, &str, &str)] = &[
        (&anthropic, sonnet, "n2", "n"),
        (&anthropic, sonnet, "temperature_high", "temperature"),
        (&anthropic, sonnet, "penalties", "presence_penalty"),
        (
            &anthropic,
            sonnet,
            "s3_image",
            "messages[0].content[0].image_url.url",
        ),
        (
            &anthropic,
            sonnet,
            "audio_input",
            "messages[0].content[1].type",
        ),
        (&anthropic, sonnet, "logprobs", "logprobs"),
        (&anthropic, sonnet, "embed_single", "model"),
        (&gemini, "gemini-2.5-flash", "logprobs", "logprobs"),
        (&bedrock, claude_bedrock, "n2", "n"),
        (&bedrock, claude_bedrock, "temperature_high", "temperature"),
        (&bedrock, claude_bedrock, "top_k", "top_k"),
        (&bedrock, claude_bedrock, "reasoning", "reasoning_effort"),
        (
            &bedrock,
            claude_bedrock,
            "audio_input",
            "messages[0].content[1].type",
        ),
        (
            &bedrock,
            claude_bedrock,
            "multipart_images",
            "messages[0].content[2].image_url.url",
        ),
        (
            &bedrock,
            claude_bedrock,
            "tool_history_without_tools",
            "tools",
        ),
        (&bedrock, titan, "embed_batch", "input"),
        (
            &bedrock,
            "cohere.embed-english-v3",
            "embed_batch",
            "dimensions",
        ),
        (
            &bedrock,
            "meta.llama3-8b-instruct-v1:0",
            "embed_single",
            "model",
        ),
    ];
    for (opts, model, case, field) in cases {
        let e = build(opts, case, model).expect_err(case);
        assert_eq!(e.field(), *field, "{case} on {:?}", opts.kind());
        let json: Value = serde_json::from_slice(&e.to_openai_json()).expect("json");
        assert_eq!(json["error"]["param"], *field);
        assert_eq!(json["error"]["type"], "invalid_request_error");
    }

    // Inline cases that need a specific history.
    let body = br#"{"messages":[{"role":"user","content":"hi"},
        {"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"a","content":"x"}],
        "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}"#;
    let e = crate::providers::translate::request(body, Endpoint::Chat, claude_bedrock, &bedrock)
        .expect_err("no `none` with tool history");
    assert_eq!(e.field(), "tool_choice");
    let body = br#"{"messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}"#;
    let e = crate::providers::translate::request(body, Endpoint::Chat, "gemini-2.5-flash", &gemini)
        .expect_err("unknown tool call id");
    assert_eq!(e.field(), "messages[0].tool_call_id");
    let body = br#"{"messages":[{"role":"system","content":"only a system prompt"}]}"#;
    for opts in [&anthropic, &gemini, &bedrock] {
        let e = crate::providers::translate::request(body, Endpoint::Chat, "m", opts)
            .expect_err("no turns");
        assert_eq!(e.field(), "messages");
    }
    let body =
        br#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},
        "tools":[{"type":"function","function":{"name":"f"}}]}"#;
    for (opts, model) in [(&anthropic, sonnet), (&bedrock, claude_bedrock)] {
        let e = crate::providers::translate::request(body, Endpoint::Chat, model, opts)
            .expect_err("json mode with tools");
        assert_eq!(e.field(), "response_format");
    }
    let body = br#"{"messages":[{"role":"user","content":"x"}],"reasoning_effort":"high","max_tokens":1000}"#;
    let e = crate::providers::translate::request(body, Endpoint::Chat, sonnet, &anthropic)
        .expect_err("budget above max_tokens");
    assert_eq!(e.field(), "reasoning_effort");
}

struct ResponseCase {
    fixture: &'static str,
    opts: KindOptions,
    model: &'static str,
    /// The OpenAI request whose answer this is (it sets the response side's state).
    case: &'static str,
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
}

fn rc(
    fixture: &'static str,
    opts: KindOptions,
    model: &'static str,
    case: &'static str,
) -> ResponseCase {
    ResponseCase {
        fixture,
        opts,
        model,
        case,
        status: 200,
        headers: vec![],
    }
}

fn response_cases() -> Vec<(&'static str, Vec<ResponseCase>)> {
    let sonnet = "claude-sonnet-4-5";
    let flash = "gemini-2.5-flash";
    let claude = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    vec![
        (
            "anthropic",
            vec![
                rc("text.json", anthropic_opts(), sonnet, "plain"),
                rc("tool_use.json", anthropic_opts(), sonnet, "tools_auto"),
                rc(
                    "parallel_tools.json",
                    anthropic_opts(),
                    sonnet,
                    "tools_auto",
                ),
                rc("cache_usage.json", anthropic_opts(), sonnet, "plain"),
                rc("thinking.json", anthropic_opts(), sonnet, "reasoning"),
                rc("refusal.json", anthropic_opts(), sonnet, "plain"),
                rc("json_tool.json", anthropic_opts(), sonnet, "json_object"),
                ResponseCase {
                    status: 529,
                    headers: vec![("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")],
                    ..rc("overloaded_error.json", anthropic_opts(), sonnet, "plain")
                },
            ],
        ),
        (
            "gemini",
            vec![
                rc("text.json", gemini_opts(), "gemini-2.0-flash", "plain"),
                rc("function_call.json", gemini_opts(), flash, "tools_auto"),
                rc(
                    "thought_signature.json",
                    gemini_opts(),
                    "gemini-3-pro-preview",
                    "tools_auto",
                ),
                rc(
                    "max_tokens_no_content.json",
                    vertex_opts(),
                    "gemini-2.5-pro",
                    "plain",
                ),
                rc("blocked_prompt.json", gemini_opts(), flash, "plain"),
                rc("two_candidates.json", gemini_opts(), flash, "n2"),
                rc("safety.json", gemini_opts(), flash, "plain"),
                rc(
                    "batch_embed.json",
                    gemini_opts(),
                    "gemini-embedding-001",
                    "embed_batch",
                ),
                rc(
                    "vertex_predict.json",
                    vertex_opts(),
                    "text-embedding-005",
                    "embed_pair",
                ),
                ResponseCase {
                    status: 429,
                    ..rc("resource_exhausted.json", gemini_opts(), flash, "plain")
                },
            ],
        ),
        (
            "azure_openai",
            vec![
                rc("chat.json", azure_opts(), "gpt-4o-prod", "plain"),
                rc(
                    "content_filtered.json",
                    azure_opts(),
                    "gpt-4o-prod",
                    "plain",
                ),
                ResponseCase {
                    status: 400,
                    ..rc(
                        "prompt_filtered_400.json",
                        azure_opts(),
                        "gpt-4o-prod",
                        "plain",
                    )
                },
            ],
        ),
        (
            "bedrock",
            vec![
                ResponseCase {
                    headers: vec![("x-amzn-RequestId", "7c2a2d2e-0000-4a4a-9b9b-000000000001")],
                    ..rc("converse_text.json", bedrock_opts(), claude, "plain")
                },
                rc(
                    "converse_tool_use.json",
                    bedrock_opts(),
                    claude,
                    "tools_auto",
                ),
                rc(
                    "converse_cache_reasoning.json",
                    bedrock_opts(),
                    claude,
                    "plain",
                ),
                rc("guardrail.json", bedrock_opts(), claude, "plain"),
                rc("no_output.json", bedrock_opts(), claude, "plain"),
                rc(
                    "titan_embed.json",
                    bedrock_opts(),
                    "amazon.titan-embed-text-v2:0",
                    "embed_single",
                ),
                ResponseCase {
                    headers: vec![("X-Amzn-Bedrock-Input-Token-Count", "6")],
                    ..rc(
                        "cohere_embed.json",
                        bedrock_opts(),
                        "cohere.embed-english-v3",
                        "embed_pair",
                    )
                },
            ],
        ),
    ]
}

#[test]
fn provider_responses_translate_to_openai() {
    let mut diffs = vec![];
    for (dir, cases) in response_cases() {
        let mut out = Map::new();
        for c in cases {
            let state = state_for(&c.opts, c.case, c.model);
            let body = read(&format!("{dir}/responses/{}", c.fixture));
            let entry = match response(&state, &CTX, c.status, c.headers.as_slice(), &body) {
                Ok(t) => json!({
                    "body": serde_json::from_slice::<Value>(&t.body).expect("JSON answer"),
                    "usage": usage_json(t.usage),
                    "finish_reasons": t.finish_reasons.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                    "provider_finish_reasons": t.provider_finish_reasons,
                    "id": t.id,
                    "model": t.model,
                }),
                Err(e) => json!({ "error": error_json(&e) }),
            };
            out.insert(c.fixture.to_owned(), entry);
        }
        diffs.push(golden_diff(
            &format!("{dir}/responses.golden.json"),
            &Value::Object(out),
        ));
    }
    assert_goldens(diffs);
}

struct StreamCase {
    /// The entry's name in the golden file.
    name: &'static str,
    body: Vec<u8>,
    state: RequestState,
}

fn stream_state(opts: &KindOptions, case: &str, model: &str, include_usage: bool) -> RequestState {
    let mut state = state_for(opts, case, model);
    state.stream = true;
    state.include_usage = include_usage;
    state
}

fn sc(dir: &str, name: &'static str, opts: &KindOptions, model: &str, case: &str) -> StreamCase {
    let body = if name.ends_with(".frames.json") {
        encode_frames(&format!("{dir}/streams/{name}"))
    } else {
        read(&format!("{dir}/streams/{name}"))
    };
    StreamCase {
        name,
        body,
        state: stream_state(opts, case, model, true),
    }
}

fn stream_cases() -> Vec<(&'static str, Vec<StreamCase>)> {
    let a = anthropic_opts();
    let g = gemini_opts();
    let z = azure_opts();
    let b = bedrock_opts();
    let sonnet = "claude-sonnet-4-5";
    let claude = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    let mut basic_no_usage = sc("anthropic", "basic.sse", &a, sonnet, "plain");
    basic_no_usage.name = "basic.sse without include_usage";
    basic_no_usage.state.include_usage = false;
    let mut azure_no_usage = sc("azure_openai", "chat.sse", &z, "gpt-4o-prod", "plain");
    azure_no_usage.name = "chat.sse without include_usage";
    azure_no_usage.state.include_usage = false;
    let mut bedrock_torn = sc("bedrock", "tool_use.frames.json", &b, claude, "tools_auto");
    bedrock_torn.name = "tool_use.frames.json torn mid-frame";
    bedrock_torn.body.truncate(bedrock_torn.body.len() - 5);
    vec![
        (
            "anthropic",
            vec![
                sc("anthropic", "basic.sse", &a, sonnet, "plain"),
                basic_no_usage,
                sc("anthropic", "tool_use.sse", &a, sonnet, "tools_auto"),
                sc("anthropic", "refusal.sse", &a, sonnet, "plain"),
                sc(
                    "anthropic",
                    "incomplete_partial_json.sse",
                    &a,
                    sonnet,
                    "tools_auto",
                ),
                sc("anthropic", "message_delta_fields.sse", &a, sonnet, "plain"),
                sc(
                    "anthropic",
                    "usage_omitted_with_optional_fields.sse",
                    &a,
                    sonnet,
                    "plain",
                ),
                sc("anthropic", "thinking.sse", &a, sonnet, "reasoning"),
                sc("anthropic", "error_overloaded.sse", &a, sonnet, "plain"),
                sc("anthropic", "cut.sse", &a, sonnet, "plain"),
            ],
        ),
        (
            "gemini",
            vec![
                sc("gemini", "text.sse", &g, "gemini-2.0-flash", "plain"),
                sc(
                    "gemini",
                    "tool_split_finish.sse",
                    &g,
                    "gemini-3-pro-preview",
                    "tools_auto",
                ),
                sc(
                    "gemini",
                    "stop_every_chunk.sse",
                    &g,
                    "gemini-2.5-flash",
                    "plain",
                ),
                sc(
                    "gemini",
                    "parallel_calls.sse",
                    &g,
                    "gemini-2.5-flash",
                    "tools_auto",
                ),
                sc(
                    "gemini",
                    "error_midstream.sse",
                    &g,
                    "gemini-2.5-flash",
                    "plain",
                ),
                sc("gemini", "cut.sse", &g, "gemini-2.5-flash", "plain"),
            ],
        ),
        (
            "azure_openai",
            vec![
                sc("azure_openai", "chat.sse", &z, "gpt-4o-prod", "plain"),
                azure_no_usage,
                sc("azure_openai", "no_done.sse", &z, "gpt-4o-prod", "plain"),
                sc(
                    "azure_openai",
                    "error_midstream.sse",
                    &z,
                    "gpt-4o-prod",
                    "plain",
                ),
                sc("azure_openai", "cut.sse", &z, "gpt-4o-prod", "plain"),
            ],
        ),
        (
            "bedrock",
            vec![
                sc("bedrock", "tool_use.frames.json", &b, claude, "tools_auto"),
                sc("bedrock", "reasoning.frames.json", &b, claude, "plain"),
                sc("bedrock", "throttled.frames.json", &b, claude, "plain"),
                sc("bedrock", "no_metadata.frames.json", &b, claude, "plain"),
                sc("bedrock", "cut.frames.json", &b, claude, "plain"),
                bedrock_torn,
            ],
        ),
    ]
}

#[test]
fn provider_streams_translate_to_openai_chunks_at_any_split() {
    let mut diffs = vec![];
    for (dir, cases) in stream_cases() {
        let mut out = Map::new();
        for c in cases {
            let (chunks, error, t) = run_stream(&c.state, &c.body, 0);
            for piece in [1, 7] {
                let (again, again_error, _) = run_stream(&c.state, &c.body, piece);
                assert_eq!(again, chunks, "{dir}/{}: pieces of {piece} bytes", c.name);
                assert_eq!(
                    again_error.as_ref().map(error_json),
                    error.as_ref().map(error_json),
                    "{dir}/{}: pieces of {piece} bytes",
                    c.name
                );
            }
            assert_eq!(
                t.is_finished(),
                error.is_none(),
                "{dir}/{}: a stream is finished exactly when it ended without error",
                c.name
            );
            out.insert(
                c.name.to_owned(),
                json!({
                    "chunks": chunks.iter().map(chunk_json).collect::<Vec<_>>(),
                    "error": error.as_ref().map(error_json),
                    "finished": t.is_finished(),
                    "usage": usage_json(t.usage()),
                    "finish_reasons": t.finish_reasons().iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                    "provider_finish_reasons": t.provider_finish_reasons(),
                    "id": t.id(),
                    "model": t.model(),
                }),
            );
        }
        diffs.push(golden_diff(
            &format!("{dir}/streams.golden.json"),
            &Value::Object(out),
        ));
    }
    assert_goldens(diffs);
}

#[test]
fn streams_keep_openai_invariants() {
    for (dir, cases) in stream_cases() {
        for c in cases {
            let (chunks, _, _) = run_stream(&c.state, &c.body, 0);
            let json: Vec<Value> = chunks.iter().map(chunk_json).collect();
            let name = format!("{dir}/{}", c.name);
            if c.state.kind == Kind::AzureOpenAi {
                // Azure's own chunks pass through; only the filter annotations must be gone.
                assert!(
                    json.iter().all(|j| j == "[DONE]" || j["id"] != ""),
                    "{name}: an Azure filter chunk leaked"
                );
                continue;
            }
            let mut finishes = std::collections::HashMap::new();
            let mut seen_role = std::collections::HashSet::new();
            for (i, j) in json.iter().enumerate() {
                if j == "[DONE]" {
                    assert_eq!(i, json.len() - 1, "{name}: [DONE] is last");
                    continue;
                }
                assert_eq!(j["object"], "chat.completion.chunk", "{name}");
                assert_eq!(
                    j.as_object().expect("object").contains_key("usage"),
                    c.state.include_usage,
                    "{name}: `usage` key only with include_usage"
                );
                let choices = j["choices"].as_array().expect("choices");
                if choices.is_empty() {
                    assert!(
                        j["usage"].is_object(),
                        "{name}: only the usage chunk has no choices"
                    );
                    assert!(
                        json.get(i + 1).is_some_and(|n| n == "[DONE]"),
                        "{name}: the usage chunk comes right before [DONE]"
                    );
                    continue;
                }
                for ch in choices {
                    let index = ch["index"].as_u64().expect("index");
                    if seen_role.insert(index) {
                        assert_eq!(ch["delta"]["role"], "assistant", "{name}: role first");
                    }
                    if let Some(f) = ch["finish_reason"].as_str() {
                        assert!(
                            ["stop", "length", "tool_calls", "content_filter"].contains(&f),
                            "{name}: {f}"
                        );
                        assert!(
                            finishes.insert(index, f).is_none(),
                            "{name}: one finish per choice"
                        );
                    }
                    for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                        assert!(
                            tc["index"].is_u64(),
                            "{name}: every tool delta has an index"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn assistant_reasoning_blocks_travel_back_to_bedrock_and_anthropic() {
    let body = br#"{"messages":[
        {"role":"user","content":"Weather in Paris?"},
        {"role":"assistant","content":null,
         "reasoning_content":"I should call the tool.",
         "thinking_blocks":[{"type":"thinking","thinking":"I should call the tool.","signature":"c2ln"},
                            {"type":"redacted_thinking","data":"cmVkYWN0ZWQ="}],
         "tool_calls":[{"id":"t1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},
        {"role":"tool","tool_call_id":"t1","content":"18C"}],
        "tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;
    let req = crate::providers::translate::request(
        body,
        Endpoint::Chat,
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        &bedrock_opts(),
    )
    .expect("bedrock");
    let v: Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(
        v["messages"][1]["content"],
        json!([
            {"reasoningContent": {"reasoningText": {"text": "I should call the tool.", "signature": "c2ln"}}},
            {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"location": "Paris"}}},
        ])
    );
    let req = crate::providers::translate::request(
        body,
        Endpoint::Chat,
        "claude-sonnet-4-5",
        &anthropic_opts(),
    )
    .expect("anthropic");
    let v: Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(v["messages"][1]["content"][0]["type"], "thinking");
    assert_eq!(v["messages"][1]["content"][1]["type"], "redacted_thinking");
    assert_eq!(v["messages"][1]["content"][2]["type"], "tool_use");
}
