//! Streams reassembled equal the non-stream answers, and mock answers rendered in each dialect
//! translate back to themselves.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::providers::translate::render::{self, Answer, AnswerToolCall, MOCK_SIGNATURE};
use crate::providers::translate::{ErrorClass, FinishReason, Kind, Usage, azure, error, response};

fn parse_args(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| json!(raw))
}

/// What a client ends up with, from a `chat.completion` body.
fn normalize_completion(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).expect("JSON answer");
    let choices: Vec<Value> = v["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .map(|c| {
            let m = &c["message"];
            let tools: Vec<Value> = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    json!({
                        "id": t["id"],
                        "name": t["function"]["name"],
                        "arguments": parse_args(t["function"]["arguments"].as_str().unwrap_or_default()),
                        "signature": t.pointer("/extra_content/google/thought_signature"),
                    })
                })
                .collect();
            json!({
                "content": m["content"].as_str().unwrap_or_default(),
                "reasoning": m["reasoning_content"].as_str().unwrap_or_default(),
                "thinking_blocks": m.get("thinking_blocks").cloned().unwrap_or(json!([])),
                "tool_calls": tools,
                "finish_reason": c["finish_reason"],
            })
        })
        .collect();
    json!({
        "id": v["id"],
        "model": v["model"],
        "choices": choices,
        "usage": usage_json(v.get("usage").and_then(azure::openai_usage)),
    })
}

#[derive(Default)]
struct Folded {
    content: String,
    reasoning: String,
    thinking: Vec<Value>,
    tools: BTreeMap<u64, (Value, Value, String, Value)>,
    finish: Value,
}

/// What a client ends up with, from a chunk stream (the OpenAI SDK's accumulation rules:
/// deltas appended, tool calls merged by index).
fn reassemble(chunks: &[Bytes]) -> Value {
    let mut id = Value::Null;
    let mut model = Value::Null;
    let mut usage = None;
    let mut choices: BTreeMap<u64, Folded> = BTreeMap::new();
    for chunk in chunks {
        let j = chunk_json(chunk);
        if j == "[DONE]" {
            continue;
        }
        if id.is_null() {
            id = j["id"].clone();
            model = j["model"].clone();
        }
        if let Some(u) = j.get("usage").and_then(azure::openai_usage) {
            usage = Some(u);
        }
        for c in j["choices"].as_array().into_iter().flatten() {
            let f = choices
                .entry(c["index"].as_u64().expect("index"))
                .or_default();
            let d = &c["delta"];
            f.content
                .push_str(d["content"].as_str().unwrap_or_default());
            f.reasoning
                .push_str(d["reasoning_content"].as_str().unwrap_or_default());
            f.thinking.extend(
                d["thinking_blocks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            for t in d["tool_calls"].as_array().into_iter().flatten() {
                let slot = f
                    .tools
                    .entry(t["index"].as_u64().expect("tool index"))
                    .or_insert((Value::Null, Value::Null, String::new(), Value::Null));
                if !t["id"].is_null() {
                    slot.0 = t["id"].clone();
                }
                if !t["function"]["name"].is_null() {
                    slot.1 = t["function"]["name"].clone();
                }
                slot.2
                    .push_str(t["function"]["arguments"].as_str().unwrap_or_default());
                if let Some(sig) = t.pointer("/extra_content/google/thought_signature") {
                    slot.3 = sig.clone();
                }
            }
            if !c["finish_reason"].is_null() {
                f.finish = c["finish_reason"].clone();
            }
        }
    }
    let choices: Vec<Value> = choices
        .into_values()
        .map(|f| {
            json!({
                "content": f.content,
                "reasoning": f.reasoning,
                "thinking_blocks": f.thinking,
                "tool_calls": f.tools.into_values().map(|(id, name, args, sig)| json!({
                    "id": id, "name": name, "arguments": parse_args(&args), "signature": sig,
                })).collect::<Vec<_>>(),
                "finish_reason": f.finish,
            })
        })
        .collect();
    json!({"id": id, "model": model, "choices": choices, "usage": usage_json(usage)})
}

#[test]
fn streamed_answers_reassemble_to_the_non_stream_answer() {
    let pairs: &[(&str, KindOptions, &str, &str, &str, &str)] = &[
        (
            "anthropic",
            anthropic_opts(),
            "claude-sonnet-4-5",
            "tools_auto",
            "tool_use.json",
            "tool_use.sse",
        ),
        (
            "anthropic",
            anthropic_opts(),
            "claude-sonnet-4-5",
            "plain",
            "refusal.json",
            "refusal.sse",
        ),
        (
            "gemini",
            gemini_opts(),
            "gemini-3-pro-preview",
            "tools_auto",
            "thought_signature.json",
            "tool_split_finish.sse",
        ),
        (
            "bedrock",
            bedrock_opts(),
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "tools_auto",
            "converse_tool_use.json",
            "tool_use.frames.json",
        ),
        (
            "bedrock",
            bedrock_opts(),
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "plain",
            "converse_cache_reasoning.json",
            "reasoning.frames.json",
        ),
    ];
    for (dir, opts, model, case, whole, stream) in pairs {
        let state = state_for(opts, case, model);
        let body = read(&format!("{dir}/responses/{whole}"));
        let t = response(&state, &CTX, 200, &[] as &[(&str, &str)], &body).expect(whole);
        let mut expected = normalize_completion(&t.body);
        let mut sstate = state.clone();
        sstate.stream = true;
        sstate.include_usage = true;
        let raw = if stream.ends_with(".frames.json") {
            encode_frames(&format!("{dir}/streams/{stream}"))
        } else {
            read(&format!("{dir}/streams/{stream}"))
        };
        let (chunks, err, _) = run_stream(&sstate, &raw, 3);
        assert!(err.is_none(), "{stream}: {err:?}");
        let mut got = reassemble(&chunks);
        // The provider's model string can differ between its two answers; the rest cannot.
        expected["model"] = Value::Null;
        got["model"] = Value::Null;
        assert_eq!(got, expected, "{dir}: {stream} vs {whole}");
    }
}

fn tool(id: &str, name: &str, args: &str) -> AnswerToolCall {
    AnswerToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
    }
}

fn answers() -> Vec<Answer> {
    let base = Answer {
        id: "msg_mock_1".into(),
        model: "mock-model".into(),
        content: vec![],
        reasoning: vec![],
        tool_calls: vec![],
        finish: FinishReason::Stop,
        usage: Usage {
            prompt_tokens: 11,
            completion_tokens: 6,
            ..Usage::default()
        },
    };
    vec![
        Answer {
            content: vec!["Hello".into(), " there".into(), "!".into()],
            ..base.clone()
        },
        Answer {
            reasoning: vec!["Let me think".into(), " hard.".into()],
            content: vec!["4".into(), "2".into()],
            usage: Usage {
                prompt_tokens: 120,
                completion_tokens: 30,
                cached_tokens: 100,
                cache_write_tokens: 15,
                reasoning_tokens: 25,
            },
            ..base.clone()
        },
        Answer {
            content: vec!["I'll check both.".into()],
            tool_calls: vec![
                tool(
                    "call_a",
                    "get_weather",
                    r#"{"location":"Paris","unit":"celsius"}"#,
                ),
                tool("call_b", "get_weather", r#"{"location":"Tōkyō"}"#),
                tool("call_c", "get_time", "{}"),
            ],
            finish: FinishReason::ToolCalls,
            ..base.clone()
        },
        Answer {
            tool_calls: vec![tool("call_only", "get_time", r#"{"zone":"UTC"}"#)],
            finish: FinishReason::ToolCalls,
            ..base.clone()
        },
        Answer {
            content: vec!["cut sho".into()],
            finish: FinishReason::Length,
            ..base.clone()
        },
        Answer {
            finish: FinishReason::ContentFilter,
            ..base
        },
    ]
}

/// The answer as a client should see it through `kind`, minus what that dialect cannot carry.
fn expected(a: &Answer, kind: Kind) -> Value {
    let mut u = a.usage;
    let keeps_reasoning_text = matches!(kind, Kind::Anthropic | Kind::Gemini | Kind::Bedrock);
    match kind {
        Kind::Gemini | Kind::Vertex | Kind::AzureOpenAi => u.cache_write_tokens = 0,
        Kind::Bedrock => u.reasoning_tokens = 0,
        Kind::Anthropic => {}
    }
    let signed = matches!(kind, Kind::Anthropic | Kind::Bedrock) && !a.reasoning.is_empty();
    json!({
        "id": if kind == Kind::Bedrock { CTX.fallback_id.to_owned() } else { a.id.clone() },
        "model": a.model,
        "choices": [{
            "content": a.text(),
            "reasoning": if keeps_reasoning_text { a.reasoning_text() } else { String::new() },
            "thinking_blocks": if signed {
                json!([{"type": "thinking", "thinking": a.reasoning_text(), "signature": MOCK_SIGNATURE}])
            } else {
                json!([])
            },
            "tool_calls": a.tool_calls.iter().map(|t| json!({
                "id": t.id, "name": t.name, "arguments": parse_args(&t.arguments), "signature": null,
            })).collect::<Vec<_>>(),
            "finish_reason": a.finish.as_str(),
        }],
        "usage": usage_json(Some(u)),
    })
}

fn rendered(kind: Kind, a: &Answer, stream: bool) -> Vec<u8> {
    let parts: Vec<Bytes> = match (kind, stream) {
        (Kind::Anthropic, false) => vec![render::anthropic_message(a)],
        (Kind::Anthropic, true) => render::anthropic_events(a),
        (Kind::Gemini | Kind::Vertex, false) => vec![render::gemini_response(a)],
        (Kind::Gemini | Kind::Vertex, true) => render::gemini_events(a),
        (Kind::Bedrock, false) => vec![render::bedrock_converse(a)],
        (Kind::Bedrock, true) => render::bedrock_frames(a),
        (Kind::AzureOpenAi, false) => vec![render::azure_completion(a)],
        (Kind::AzureOpenAi, true) => render::azure_events(a, true),
    };
    parts.concat()
}

#[test]
fn rendered_mock_answers_translate_back_to_themselves() {
    let kinds = [
        (Kind::Anthropic, anthropic_opts()),
        (Kind::Gemini, gemini_opts()),
        (Kind::AzureOpenAi, azure_opts()),
        (Kind::Bedrock, bedrock_opts()),
    ];
    for (kind, opts) in &kinds {
        for a in answers() {
            let state = state_for(opts, "tools_auto", &a.model);
            let want = expected(&a, *kind);
            let body = rendered(*kind, &a, false);
            let t = response(&state, &CTX, 200, &[] as &[(&str, &str)], &body)
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(normalize_completion(&t.body), want, "{kind:?} whole: {a:?}");
            assert_eq!(usage_json(t.usage), want["usage"], "{kind:?} usage: {a:?}");

            let mut sstate = state.clone();
            sstate.stream = true;
            sstate.include_usage = true;
            let raw = rendered(*kind, &a, true);
            for piece in [0, 1, 5] {
                let (chunks, err, tr) = run_stream(&sstate, &raw, piece);
                assert!(err.is_none(), "{kind:?} stream: {err:?}");
                assert!(tr.is_finished(), "{kind:?} stream finished");
                assert_eq!(
                    reassemble(&chunks),
                    want,
                    "{kind:?} stream ({piece}): {a:?}"
                );
            }
        }
    }
}

#[test]
fn json_mode_emulation_answers_with_content() {
    let json_answer = Answer {
        id: "msg_json".into(),
        model: "mock-model".into(),
        content: vec![],
        reasoning: vec![],
        tool_calls: vec![tool(
            "toolu_json",
            "json_response",
            r#"{"colours":["red","green","blue"]}"#,
        )],
        finish: FinishReason::ToolCalls,
        usage: Usage {
            prompt_tokens: 30,
            completion_tokens: 20,
            ..Usage::default()
        },
    };
    for (kind, opts) in [
        (Kind::Anthropic, anthropic_opts()),
        (Kind::Bedrock, bedrock_opts()),
    ] {
        let state = state_for(&opts, "json_object", "mock-model");
        assert_eq!(state.json_tool.as_deref(), Some("json_response"));
        let t = response(
            &state,
            &CTX,
            200,
            &[] as &[(&str, &str)],
            &rendered(kind, &json_answer, false),
        )
        .expect("answer");
        let whole = normalize_completion(&t.body);
        let mut sstate = state.clone();
        sstate.stream = true;
        let (chunks, err, _) = run_stream(&sstate, &rendered(kind, &json_answer, true), 2);
        assert!(err.is_none(), "{err:?}");
        for got in [&whole, &reassemble(&chunks)] {
            let choice = &got["choices"][0];
            assert_eq!(choice["tool_calls"], json!([]), "{kind:?}");
            assert_eq!(choice["finish_reason"], "stop", "{kind:?}");
            let content: Value =
                serde_json::from_str(choice["content"].as_str().expect("content")).expect("JSON");
            assert_eq!(
                content,
                json!({"colours": ["red", "green", "blue"]}),
                "{kind:?}"
            );
        }
    }
}

#[test]
fn rendered_errors_classify_back() {
    for kind in [
        Kind::Anthropic,
        Kind::Gemini,
        Kind::AzureOpenAi,
        Kind::Bedrock,
    ] {
        for (class, want_class, want_status) in [
            (ErrorClass::RateLimited, ErrorClass::RateLimited, 429),
            (
                ErrorClass::Overloaded,
                if kind == Kind::Anthropic {
                    ErrorClass::Overloaded
                } else {
                    ErrorClass::Unavailable
                },
                503,
            ),
            (ErrorClass::ServerError, ErrorClass::ServerError, 502),
            (ErrorClass::InvalidRequest, ErrorClass::InvalidRequest, 400),
            (ErrorClass::Authentication, ErrorClass::Authentication, 502),
            (ErrorClass::Timeout, ErrorClass::Timeout, 504),
        ] {
            let (status, headers, body) = render::error_response(kind, class);
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let e = error(kind, status, headers.as_slice(), &body);
            assert_eq!(e.class, want_class, "{kind:?} {class:?}");
            assert_eq!(e.status_for_client, want_status, "{kind:?} {class:?}");
            if class == ErrorClass::RateLimited && kind != Kind::Bedrock {
                assert_eq!(
                    e.retry_after,
                    Some(std::time::Duration::from_secs(1)),
                    "{kind:?}"
                );
            }

            // The same error in the middle of a stream.
            let state = {
                let mut s = state_for(
                    &match kind {
                        Kind::Anthropic => anthropic_opts(),
                        Kind::Gemini | Kind::Vertex => gemini_opts(),
                        Kind::AzureOpenAi => azure_opts(),
                        Kind::Bedrock => bedrock_opts(),
                    },
                    "plain",
                    "mock-model",
                );
                s.stream = true;
                s
            };
            let a = Answer {
                id: "msg_err".into(),
                model: "mock-model".into(),
                content: vec!["partial".into()],
                reasoning: vec![],
                tool_calls: vec![],
                finish: FinishReason::Stop,
                usage: Usage::default(),
            };
            // The first event(s) of a good stream, then the error event.
            let mut raw = match kind {
                Kind::Anthropic => render::anthropic_events(&a)[..2].concat(),
                Kind::Gemini | Kind::Vertex => render::gemini_events(&a)[..1].concat(),
                Kind::AzureOpenAi => render::azure_events(&a, false)[..2].concat(),
                Kind::Bedrock => render::bedrock_frames(&a)[..2].concat(),
            };
            raw.extend_from_slice(&render::stream_error_event(kind, class));
            let (_, err, t) = run_stream(&state, &raw, 1);
            let err = err.expect("mid-stream error");
            assert_eq!(err.class, want_class, "{kind:?} {class:?} mid-stream");
            assert_eq!(err.provider_status, None);
            assert!(!t.is_finished());
            assert!(err.to_sse_event().starts_with(b"data: {\"error\""));
        }
    }
}

#[test]
fn rendered_embeddings_translate_back() {
    use base64::Engine as _;
    let vectors = vec![vec![0.25f32, -0.5, 1.0], vec![0.125, 0.0, -1.0]];
    let cases: Vec<(KindOptions, &str, &str, Bytes, Option<u64>)> = vec![
        (
            gemini_opts(),
            "gemini-embedding-001",
            "embed_batch",
            render::gemini_embeddings(&vectors, false, 0),
            None,
        ),
        (
            vertex_opts(),
            "text-embedding-005",
            "embed_pair",
            render::gemini_embeddings(&vectors, true, 4),
            Some(8),
        ),
        (
            bedrock_opts(),
            "cohere.embed-english-v3",
            "embed_pair",
            render::bedrock_embeddings(&vectors, false, 0),
            None,
        ),
        (
            bedrock_opts(),
            "amazon.titan-embed-text-v2:0",
            "embed_single",
            render::bedrock_embeddings(&vectors[..1], true, 9),
            Some(9),
        ),
    ];
    for (opts, model, case, body, prompt) in cases {
        let state = state_for(&opts, case, model);
        let t = response(&state, &CTX, 200, &[] as &[(&str, &str)], &body).expect(model);
        let v: Value = serde_json::from_slice(&t.body).expect("json");
        assert_eq!(t.usage.map(|u| u.prompt_tokens), prompt, "{model}");
        let data = v["data"].as_array().expect("data");
        assert_eq!(data.len(), state.inputs, "{model}");
        for (i, d) in data.iter().enumerate() {
            let got: Vec<f32> = if state.base64 {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(d["embedding"].as_str().expect("base64"))
                    .expect("decodes");
                bytes
                    .chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect()
            } else {
                d["embedding"]
                    .as_array()
                    .expect("floats")
                    .iter()
                    .map(|x| x.as_f64().expect("number") as f32)
                    .collect()
            };
            assert_eq!(got, vectors[i], "{model} #{i}");
            assert_eq!(d["index"], i, "{model}");
        }
    }
    // Fewer vectors than inputs is a broken answer, not a short list.
    let state = state_for(&gemini_opts(), "embed_pair", "gemini-embedding-001");
    let body = render::gemini_embeddings(&vectors[..1], false, 0);
    let e = response(&state, &CTX, 200, &[] as &[(&str, &str)], &body).expect_err("short");
    assert_eq!(e.class, ErrorClass::BadResponse);
}
