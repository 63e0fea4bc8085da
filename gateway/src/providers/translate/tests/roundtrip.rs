//! Streams reassembled equal the non-stream answers.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::providers::translate::{azure, response};

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
