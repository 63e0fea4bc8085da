//! Content capture for spans (`capture_content: true` only): the prompt and the answer in the
//! GenAI conventions' message shape. The span sink redacts and truncates them, after its
//! sampling decision, so requests whose spans are dropped never pay for redaction.

use serde_json::{Value, json};
use sluice_observability::CapturedContent;

use crate::stream::AnswerInfo;

/// `gen_ai.input.messages`: `[{"role", "parts": [{"type": "text", "content"}, …]}]` from a
/// chat request's `messages`, or one user message for `prompt` / `input`.
pub fn input_messages(body: &[u8]) -> Value {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return json!([]);
    };
    if let Some(messages) = v.get("messages").and_then(Value::as_array) {
        return Value::Array(messages.iter().map(message).collect());
    }
    let text = |x: &Value| -> Vec<Value> {
        match x {
            Value::String(s) => vec![json!({"type": "text", "content": s})],
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| json!({"type": "text", "content": s}))
                .collect(),
            _ => Vec::new(),
        }
    };
    let parts = v
        .get("prompt")
        .or_else(|| v.get("input"))
        .map(text)
        .unwrap_or_default();
    json!([{"role": "user", "parts": parts}])
}

fn message(m: &Value) -> Value {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
    let mut parts = Vec::new();
    match m.get("content") {
        Some(Value::String(s)) => parts.push(json!({"type": "text", "content": s})),
        Some(Value::Array(items)) => {
            for p in items {
                match p.get("text").and_then(Value::as_str) {
                    Some(t) => parts.push(json!({"type": "text", "content": t})),
                    // Images and audio are not copied into spans; their kind is.
                    None => {
                        parts.push(json!({"type": p.get("type").cloned().unwrap_or(Value::Null)}))
                    }
                }
            }
        }
        _ => {}
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        parts.push(json!({
            "type": "tool_call",
            "id": call.get("id"),
            "name": call.pointer("/function/name"),
            "arguments": call.pointer("/function/arguments"),
        }));
    }
    json!({"role": role, "parts": parts})
}

/// `gen_ai.output.messages` from the answer's text and finish reason.
pub fn output_messages(answer: &AnswerInfo) -> Value {
    json!([{
        "role": "assistant",
        "parts": [{"type": "text", "content": answer.text}],
        "finish_reason": answer.finish_reasons.first(),
    }])
}

/// Both sides, as JSON text for the span sink.
pub fn capture(body: &[u8], answer: &AnswerInfo) -> CapturedContent {
    CapturedContent {
        input: input_messages(body).to_string(),
        output: output_messages(answer).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_messages_become_parts() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:..."}}]}]}"#;
        let v = input_messages(body);
        assert_eq!(v[0]["role"], "system");
        assert_eq!(v[0]["parts"][0]["content"], "be brief");
        assert_eq!(v[1]["parts"][0]["content"], "hi");
        assert_eq!(
            v[1]["parts"][1],
            json!({"type": "image_url"}),
            "no image bytes in spans"
        );
        let v = input_messages(br#"{"model":"e","input":["a","b"]}"#);
        assert_eq!(v[0]["parts"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn capture_keeps_both_sides_as_json() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let answer = AnswerInfo {
            text: "hello".into(),
            finish_reasons: vec!["stop".into()],
            ..AnswerInfo::default()
        };
        let c = capture(body, &answer);
        let out: Value = serde_json::from_str(&c.output).expect("valid JSON");
        assert_eq!(out[0]["parts"][0]["content"], "hello");
        assert_eq!(out[0]["finish_reason"], "stop");
        assert!(c.input.contains("\"hi\""));
    }
}
