//! The reverse direction, for the mock provider: one OpenAI-shaped synthetic [`Answer`]
//! rendered as each provider would send it (whole bodies, SSE event sequences, Bedrock
//! event-stream frames) and each provider's error bodies, so `mock-llm` can stand in for any
//! kind and the translators can be tested by round trip (render → translate → the same answer).
//!
//! Usage is rendered with each provider's own accounting, the inverse of the translators':
//! Anthropic and Bedrock report input *without* cache tokens; Gemini reports candidates
//! *without* thoughts. What a provider cannot express is left out (Gemini has no cache
//! writes; Bedrock no reasoning count; Azure no thinking signatures). Streamed tool
//! arguments are cut into a few pieces, so reassembly is exercised.

use bytes::Bytes;
use serde_json::{Value, json};

use super::eventstream::{self, Header};
use super::{ErrorClass, FinishReason, Kind, Usage};

/// A synthetic answer in OpenAI's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: String,
    pub model: String,
    /// Content pieces: one stream delta each; the message content is their concatenation.
    pub content: Vec<String>,
    /// Reasoning pieces (empty for none).
    pub reasoning: Vec<String>,
    pub tool_calls: Vec<AnswerToolCall>,
    pub finish: FinishReason,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerToolCall {
    pub id: String,
    pub name: String,
    /// A JSON object, as text.
    pub arguments: String,
}

/// The signature rendered on mock reasoning blocks.
pub const MOCK_SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

impl Answer {
    pub fn text(&self) -> String {
        self.content.concat()
    }

    pub fn reasoning_text(&self) -> String {
        self.reasoning.concat()
    }
}

fn args_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

/// Up to three pieces of `s`, cut at char boundaries.
pub(crate) fn pieces(s: &str) -> Vec<&str> {
    let n = s.chars().count();
    if n < 3 {
        return vec![s];
    }
    let cut = |k: usize| s.char_indices().nth(k).map_or(s.len(), |(i, _)| i);
    let (a, b) = (cut(n / 3), cut(2 * n / 3));
    vec![&s[..a], &s[a..b], &s[b..]]
}

fn sse(event: Option<&str>, data: &Value) -> Bytes {
    let mut s = String::new();
    if let Some(e) = event {
        s.push_str("event: ");
        s.push_str(e);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(&data.to_string());
    s.push_str("\n\n");
    Bytes::from(s)
}

// === Anthropic ===

fn anthropic_usage(u: &Usage) -> Value {
    let mut v = json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.completion_tokens,
    });
    if u.reasoning_tokens > 0 {
        v["output_tokens_details"] = json!({"thinking_tokens": u.reasoning_tokens});
    }
    v
}

/// A Messages API response.
pub fn anthropic_message(a: &Answer) -> Bytes {
    let mut content = vec![];
    if !a.reasoning.is_empty() {
        content.push(
            json!({"type": "thinking", "thinking": a.reasoning_text(), "signature": MOCK_SIGNATURE}),
        );
    }
    if !a.content.is_empty() {
        content.push(json!({"type": "text", "text": a.text()}));
    }
    for t in &a.tool_calls {
        content.push(
            json!({"type": "tool_use", "id": t.id, "name": t.name, "input": args_value(&t.arguments)}),
        );
    }
    Bytes::from(
        json!({
            "id": a.id, "type": "message", "role": "assistant", "model": a.model,
            "content": content, "stop_reason": a.finish.to_anthropic(), "stop_sequence": null,
            "usage": anthropic_usage(&a.usage),
        })
        .to_string(),
    )
}

/// The named SSE events of a streamed Messages answer, one whole event per item.
pub fn anthropic_events(a: &Answer) -> Vec<Bytes> {
    let mut start_usage = anthropic_usage(&a.usage);
    start_usage["output_tokens"] = json!(1);
    if let Some(o) = start_usage.as_object_mut() {
        o.remove("output_tokens_details");
    }
    let mut out = vec![sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": a.id, "type": "message", "role": "assistant", "model": a.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    )];
    out.push(sse(Some("ping"), &json!({"type": "ping"})));
    let mut index = 0;
    let mut block = |out: &mut Vec<Bytes>, start: Value, deltas: Vec<Value>| {
        out.push(sse(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for d in deltas {
            out.push(sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        out.push(sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    };
    if !a.reasoning.is_empty() {
        let mut deltas: Vec<Value> = a
            .reasoning
            .iter()
            .map(|r| json!({"type": "thinking_delta", "thinking": r}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": MOCK_SIGNATURE}));
        block(
            &mut out,
            json!({"type": "thinking", "thinking": ""}),
            deltas,
        );
    }
    if !a.content.is_empty() {
        let deltas = a
            .content
            .iter()
            .map(|c| json!({"type": "text_delta", "text": c}))
            .collect();
        block(&mut out, json!({"type": "text", "text": ""}), deltas);
    }
    for t in &a.tool_calls {
        let mut deltas = vec![json!({"type": "input_json_delta", "partial_json": ""})];
        deltas.extend(
            pieces(&t.arguments)
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p})),
        );
        block(
            &mut out,
            json!({"type": "tool_use", "id": t.id, "name": t.name, "input": {}}),
            deltas,
        );
    }
    let mut delta_usage = json!({"output_tokens": a.usage.completion_tokens});
    if a.usage.reasoning_tokens > 0 {
        delta_usage["output_tokens_details"] = json!({"thinking_tokens": a.usage.reasoning_tokens});
    }
    out.push(sse(
        Some("message_delta"),
        &json!({"type": "message_delta",
            "delta": {"stop_reason": a.finish.to_anthropic(), "stop_sequence": null},
            "usage": delta_usage}),
    ));
    out.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
    out
}

// === Gemini ===

fn gemini_usage(u: &Usage) -> Value {
    let mut v = json!({
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.completion_tokens.saturating_sub(u.reasoning_tokens),
        "totalTokenCount": u.total_tokens(),
    });
    if u.cached_tokens > 0 {
        v["cachedContentTokenCount"] = json!(u.cached_tokens);
    }
    if u.reasoning_tokens > 0 {
        v["thoughtsTokenCount"] = json!(u.reasoning_tokens);
    }
    v
}

fn gemini_call_part(t: &AnswerToolCall) -> Value {
    json!({"functionCall": {"id": t.id, "name": t.name, "args": args_value(&t.arguments)}})
}

/// A `generateContent` response (one candidate).
pub fn gemini_response(a: &Answer) -> Bytes {
    let mut parts = vec![];
    if !a.reasoning.is_empty() {
        parts.push(json!({"text": a.reasoning_text(), "thought": true}));
    }
    if !a.content.is_empty() {
        parts.push(json!({"text": a.text()}));
    }
    parts.extend(a.tool_calls.iter().map(gemini_call_part));
    Bytes::from(
        json!({
            "candidates": [{"content": {"role": "model", "parts": parts},
                "finishReason": a.finish.to_gemini(), "index": 0}],
            "usageMetadata": gemini_usage(&a.usage),
            "modelVersion": a.model,
            "responseId": a.id,
        })
        .to_string(),
    )
}

/// The `?alt=sse` events of a streamed answer: one response per piece, the finish reason and
/// usage on the last (CRLF line ends, which SSE allows and Gemini is reported to use).
pub fn gemini_events(a: &Answer) -> Vec<Bytes> {
    let event = |parts: Vec<Value>, last: bool| {
        let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        let mut v = json!({"modelVersion": a.model, "responseId": a.id});
        if last {
            cand["finishReason"] = json!(a.finish.to_gemini());
            v["usageMetadata"] = gemini_usage(&a.usage);
        }
        v["candidates"] = json!([cand]);
        Bytes::from(format!("data: {v}\r\n\r\n"))
    };
    let mut out: Vec<Bytes> = a
        .reasoning
        .iter()
        .map(|r| event(vec![json!({"text": r, "thought": true})], false))
        .collect();
    out.extend(
        a.content
            .iter()
            .map(|c| event(vec![json!({"text": c})], false)),
    );
    if !a.tool_calls.is_empty() {
        out.push(event(
            a.tool_calls.iter().map(gemini_call_part).collect(),
            false,
        ));
    }
    // Newer models close with an empty text part carrying the finish reason.
    out.push(event(vec![json!({"text": ""})], true));
    out
}

/// A `batchEmbedContents` (Gemini API) or `predict` (Vertex) response.
pub fn gemini_embeddings(vectors: &[Vec<f32>], vertex: bool, tokens_each: u64) -> Bytes {
    let v = if vertex {
        json!({"predictions": vectors.iter().map(|v| json!({"embeddings": {
            "values": v, "statistics": {"token_count": tokens_each, "truncated": false}}}))
            .collect::<Vec<_>>()})
    } else {
        json!({"embeddings": vectors.iter().map(|v| json!({"values": v})).collect::<Vec<_>>()})
    };
    Bytes::from(v.to_string())
}

// === Bedrock ===

fn bedrock_usage(u: &Usage) -> Value {
    let mut v = json!({
        "inputTokens": u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens),
        "outputTokens": u.completion_tokens,
        "totalTokens": u.total_tokens(),
    });
    if u.cached_tokens > 0 {
        v["cacheReadInputTokens"] = json!(u.cached_tokens);
    }
    if u.cache_write_tokens > 0 {
        v["cacheWriteInputTokens"] = json!(u.cache_write_tokens);
    }
    v
}

/// A Converse response (it carries no id and no model).
pub fn bedrock_converse(a: &Answer) -> Bytes {
    let mut content = vec![];
    if !a.reasoning.is_empty() {
        content.push(json!({"reasoningContent": {"reasoningText": {
            "text": a.reasoning_text(), "signature": MOCK_SIGNATURE}}}));
    }
    if !a.content.is_empty() {
        content.push(json!({"text": a.text()}));
    }
    for t in &a.tool_calls {
        content.push(
            json!({"toolUse": {"toolUseId": t.id, "name": t.name, "input": args_value(&t.arguments)}}),
        );
    }
    Bytes::from(
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": a.finish.to_bedrock(),
            "usage": bedrock_usage(&a.usage),
            "metrics": {"latencyMs": 100},
        })
        .to_string(),
    )
}

fn bedrock_event(event: &str, payload: &Value) -> Bytes {
    eventstream::encode(
        &[
            Header::string(":event-type", event),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// The event-stream frames of a ConverseStream answer. Text blocks come without
/// `contentBlockStart` (only tool blocks have one), as Bedrock sends them.
pub fn bedrock_frames(a: &Answer) -> Vec<Bytes> {
    let mut out = vec![bedrock_event("messageStart", &json!({"role": "assistant"}))];
    let mut index = 0;
    if !a.reasoning.is_empty() {
        for r in &a.reasoning {
            out.push(bedrock_event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"text": r}}}),
            ));
        }
        out.push(bedrock_event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": index,
                "delta": {"reasoningContent": {"signature": MOCK_SIGNATURE}}}),
        ));
        out.push(bedrock_event(
            "contentBlockStop",
            &json!({"contentBlockIndex": index}),
        ));
        index += 1;
    }
    if !a.content.is_empty() {
        for c in &a.content {
            out.push(bedrock_event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"text": c}, "p": "abcd"}),
            ));
        }
        out.push(bedrock_event(
            "contentBlockStop",
            &json!({"contentBlockIndex": index}),
        ));
        index += 1;
    }
    for t in &a.tool_calls {
        out.push(bedrock_event(
            "contentBlockStart",
            &json!({"contentBlockIndex": index,
                "start": {"toolUse": {"toolUseId": t.id, "name": t.name}}}),
        ));
        for p in pieces(&t.arguments) {
            out.push(bedrock_event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": p}}}),
            ));
        }
        out.push(bedrock_event(
            "contentBlockStop",
            &json!({"contentBlockIndex": index}),
        ));
        index += 1;
    }
    out.push(bedrock_event(
        "messageStop",
        &json!({"stopReason": a.finish.to_bedrock()}),
    ));
    out.push(bedrock_event(
        "metadata",
        &json!({"usage": bedrock_usage(&a.usage), "metrics": {"latencyMs": 100}}),
    ));
    out
}

/// An InvokeModel embeddings response: Titan (one vector) or Cohere (several).
pub fn bedrock_embeddings(vectors: &[Vec<f32>], titan: bool, input_tokens: u64) -> Bytes {
    let v = if titan {
        json!({"embedding": vectors.first(), "inputTextTokenCount": input_tokens})
    } else {
        json!({"id": "mock", "embeddings": vectors, "response_type": "embeddings_floats"})
    };
    Bytes::from(v.to_string())
}

// === Azure OpenAI ===

fn filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

fn openai_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

fn openai_tool_calls(a: &Answer) -> Vec<Value> {
    a.tool_calls
        .iter()
        .map(|t| {
            json!({"id": t.id, "type": "function",
            "function": {"name": t.name, "arguments": t.arguments}})
        })
        .collect()
}

/// A chat completion as Azure sends it: OpenAI's shape with filter results.
pub fn azure_completion(a: &Answer) -> Bytes {
    let mut message = json!({"role": "assistant", "content": a.text(), "refusal": null});
    if !a.tool_calls.is_empty() {
        message["tool_calls"] = json!(openai_tool_calls(a));
        if a.content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    Bytes::from(
        json!({
            "id": a.id, "object": "chat.completion", "created": 1_700_000_000, "model": a.model,
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter_results()}],
            "choices": [{"index": 0, "message": message, "logprobs": null,
                "finish_reason": a.finish.as_str(), "content_filter_results": filter_results()}],
            "usage": openai_usage(&a.usage),
        })
        .to_string(),
    )
}

/// An Azure stream: the prompt-filter chunk first (empty id and choices), chunks with filter
/// results, a `content_filter_offsets` annotation without a delta, the usage chunk when asked
/// for, `[DONE]`.
pub fn azure_events(a: &Answer, include_usage: bool) -> Vec<Bytes> {
    let data = |v: &Value| Bytes::from(format!("data: {v}\n\n"));
    let chunk = |delta: Value, finish: Option<&str>| {
        data(
            &json!({"id": a.id, "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": a.model, "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish,
                "content_filter_results": filter_results()}]}),
        )
    };
    let mut out = vec![data(
        &json!({"id": "", "object": "", "created": 0, "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter_results()}]}),
    )];
    out.push(chunk(json!({"role": "assistant", "content": ""}), None));
    out.extend(a.content.iter().map(|c| chunk(json!({"content": c}), None)));
    for (k, t) in a.tool_calls.iter().enumerate() {
        out.push(chunk(
            json!({"tool_calls": [{"index": k, "id": t.id, "type": "function",
                "function": {"name": t.name, "arguments": ""}}]}),
            None,
        ));
        for p in pieces(&t.arguments) {
            out.push(chunk(
                json!({"tool_calls": [{"index": k, "function": {"arguments": p}}]}),
                None,
            ));
        }
    }
    out.push(data(
        &json!({"id": "", "object": "", "created": 0, "model": "",
        "choices": [{"index": 0, "finish_reason": null,
            "content_filter_offsets": {"check_offset": 0, "start_offset": 0, "end_offset": 10},
            "content_filter_results": filter_results()}]}),
    ));
    out.push(chunk(json!({}), Some(a.finish.as_str())));
    if include_usage {
        out.push(data(&json!({"id": a.id, "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": a.model, "choices": [],
            "usage": openai_usage(&a.usage)})));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

// === errors ===

/// A provider's error answer for `class`: status, headers and body as that provider sends them.
pub fn error_response(kind: Kind, class: ErrorClass) -> (u16, Vec<(&'static str, String)>, Bytes) {
    let (status, anthropic_type, google_status, aws_name, message) = match class {
        ErrorClass::RateLimited => (
            429,
            "rate_limit_error",
            "RESOURCE_EXHAUSTED",
            "ThrottlingException",
            "Rate limit exceeded",
        ),
        ErrorClass::Overloaded => (
            529,
            "overloaded_error",
            "UNAVAILABLE",
            "ServiceUnavailableException",
            "Overloaded",
        ),
        ErrorClass::Unavailable => (
            503,
            "api_error",
            "UNAVAILABLE",
            "ServiceUnavailableException",
            "Service unavailable",
        ),
        ErrorClass::Authentication => (
            401,
            "authentication_error",
            "UNAUTHENTICATED",
            "UnrecognizedClientException",
            "Invalid credentials",
        ),
        ErrorClass::InvalidRequest | ErrorClass::ContentFilter => (
            400,
            "invalid_request_error",
            "INVALID_ARGUMENT",
            "ValidationException",
            "Invalid request",
        ),
        ErrorClass::Timeout => (
            504,
            "timeout_error",
            "DEADLINE_EXCEEDED",
            "ModelTimeoutException",
            "Timed out",
        ),
        _ => (
            500,
            "api_error",
            "INTERNAL",
            "InternalServerException",
            "Internal error",
        ),
    };
    let mut headers = vec![("content-type", "application/json".to_owned())];
    let retry = class == ErrorClass::RateLimited;
    let (status, body) = match kind {
        Kind::Anthropic => {
            if retry {
                headers.push(("retry-after", "1".into()));
            }
            (
                status,
                json!({"type": "error", "error": {"type": anthropic_type, "message": message},
                    "request_id": "req_mock"}),
            )
        }
        Kind::Gemini | Kind::Vertex => {
            let status = if status == 529 { 503 } else { status };
            let mut e = json!({"code": status, "message": message, "status": google_status});
            if retry {
                e["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "1s"}]);
            }
            (status, json!({ "error": e }))
        }
        Kind::AzureOpenAi => {
            let status = if status == 529 { 503 } else { status };
            if retry {
                headers.push(("retry-after-ms", "1000".into()));
                headers.push(("retry-after", "1".into()));
            }
            let code = if class == ErrorClass::ContentFilter {
                "content_filter".to_owned()
            } else {
                status.to_string()
            };
            (status, json!({"error": {"code": code, "message": message}}))
        }
        Kind::Bedrock => {
            let status = match status {
                529 => 503,
                401 => 403,
                s => s,
            };
            headers.push((
                "x-amzn-errortype",
                format!("{aws_name}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ));
            headers.push(("x-amzn-requestid", "mock-request-id".into()));
            (status, json!({ "message": message }))
        }
    };
    (status, headers, Bytes::from(body.to_string()))
}

/// An error in the middle of a 200 stream, as `kind` sends it: an Anthropic `error` event, a
/// Google or Azure `{"error":…}` event, or a Bedrock exception frame.
pub fn stream_error_event(kind: Kind, class: ErrorClass) -> Bytes {
    let (_, headers, body) = error_response(kind, class);
    match kind {
        Kind::Anthropic => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            sse(Some("error"), &v)
        }
        Kind::Gemini | Kind::Vertex | Kind::AzureOpenAi => {
            Bytes::from(format!("data: {}\n\n", String::from_utf8_lossy(&body)))
        }
        Kind::Bedrock => {
            let name = headers
                .iter()
                .find(|(n, _)| *n == "x-amzn-errortype")
                .and_then(|(_, v)| v.split(':').next())
                .unwrap_or("InternalServerException");
            // Exception members are the camelCase shape names.
            let member = {
                let mut c = name.chars();
                c.next()
                    .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                    .unwrap_or_default()
            };
            eventstream::encode(
                &[
                    Header::string(":exception-type", &member),
                    Header::string(":content-type", "application/json"),
                    Header::string(":message-type", "exception"),
                ],
                &body,
            )
        }
    }
}
