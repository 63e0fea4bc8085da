//! Table tests of the Responses face: requests → chat bodies (and the 400s), chat answers →
//! response objects, chunk streams → typed events.

use bytes::BytesMut;
use serde_json::{Value, json};

use super::*;

const CTX: AnswerCtx<'static> = AnswerCtx {
    id: "resp_abc123",
    created_at: 1_700_000_000,
};

fn chat_of(req: Value) -> Value {
    let out = request(req.to_string().as_bytes()).expect("translates");
    serde_json::from_slice(&out.body).expect("JSON")
}

#[test]
fn requests_translate_to_chat_bodies() {
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "string input",
            json!({"model": "m", "input": "hi"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "instructions, sampling, limits, hints",
            json!({
                "model": "m", "input": "hi", "instructions": "be brief",
                "temperature": 0.5, "top_p": 0.9, "max_output_tokens": 100,
                "user": "u1", "metadata": {"k": "v"}, "store": false,
                "parallel_tool_calls": false, "reasoning": {"effort": "low", "summary": "auto"},
                "truncation": "disabled", "include": ["reasoning.encrypted_content"],
                "service_tier": "auto", "prompt_cache_key": "pk",
            }),
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                ],
                "temperature": 0.5, "top_p": 0.9, "max_completion_tokens": 100,
                "user": "u1", "parallel_tool_calls": false, "reasoning_effort": "low",
                "service_tier": "auto", "prompt_cache_key": "pk",
            }),
        ),
        (
            "stream asks for usage",
            json!({"model": "m", "input": "hi", "stream": true}),
            json!({
                "model": "m", "messages": [{"role": "user", "content": "hi"}],
                "stream": true, "stream_options": {"include_usage": true},
            }),
        ),
        (
            "items: images, a tool round trip, developer and assistant messages",
            json!({
                "model": "m",
                "input": [
                    {"role": "developer", "content": "use tools"},
                    {"type": "message", "role": "user", "content": [
                        {"type": "input_text", "text": "what is here?"},
                        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                    ]},
                    {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                     "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
                    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                     "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
                    {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                    {"type": "function_call_output", "call_id": "call_2",
                     "output": [{"type": "input_text", "text": "noon"}]},
                    {"role": "user", "content": "thanks"},
                ],
                "tools": [{"type": "function", "name": "get_weather", "description": "weather",
                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                           "strict": true}],
                "tool_choice": {"type": "function", "name": "get_weather"},
            }),
            json!({
                "model": "m",
                "messages": [
                    {"role": "developer", "content": "use tools"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "what is here?"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ]},
                    {"role": "assistant", "content": [{"type": "text", "text": "let me look"}],
                     "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "call_2", "type": "function",
                         "function": {"name": "get_time", "arguments": "{}"}},
                     ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                    {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
                    {"role": "user", "content": "thanks"},
                ],
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            }),
        ),
        (
            "a function call with no message before it",
            json!({"model": "m", "input": [
                {"role": "user", "content": "weather?"},
                {"type": "function_call", "call_id": "c", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "rain"},
            ], "tool_choice": "required"}),
            json!({"model": "m", "tool_choice": "required", "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "rain"},
            ]}),
        ),
        (
            "json schema",
            json!({"model": "m", "input": "x", "text": {"format": {
                "type": "json_schema", "name": "person", "strict": true,
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "person", "strict": true,
                    "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
        ),
        (
            "json object and verbosity",
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}, "verbosity": "low"}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"}, "verbosity": "low"}),
        ),
        (
            "text format sends nothing",
            json!({"model": "m", "input": "x", "text": {"format": {"type": "text"}}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(chat_of(req), want, "{name}");
    }
}

#[test]
fn request_echo_keeps_what_the_answer_repeats() {
    let out = request(
        json!({
            "model": "m", "input": "hi", "instructions": "sys", "stream": true,
            "tools": [{"type": "function", "name": "f"}], "tool_choice": "auto",
            "metadata": {"a": "b"}, "max_output_tokens": 7, "temperature": 1.0,
            "text": {"format": {"type": "json_object"}},
        })
        .to_string()
        .as_bytes(),
    )
    .expect("translates");
    assert!(out.stream);
    let e = out.echo;
    assert_eq!(e.model, "m");
    assert_eq!(e.instructions.as_deref(), Some("sys"));
    assert_eq!(e.tools, vec![json!({"type": "function", "name": "f"})]);
    assert_eq!(e.metadata, json!({"a": "b"}));
    assert_eq!(e.max_output_tokens, Some(7));
    assert_eq!(e.temperature, Some(1.0));
    assert_eq!(e.text, json!({"format": {"type": "json_object"}}));
    assert!(e.parallel_tool_calls);
}

#[test]
fn built_in_tools_are_noted_and_left_out_of_the_chat_body() {
    /// The built-in noted: its type and the field it is in.
    type Noted = Option<(&'static str, &'static str)>;
    // (request, the built-in noted, the chat body's tools and tool choice)
    let cases: Vec<(Value, Noted, Value, Value)> = vec![
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            Some(("web_search", "tools")),
            Value::Null,
            Value::Null,
        ),
        (
            json!({"model": "m", "input": "x", "tools": [
                {"type": "function", "name": "f"},
                {"type": "file_search", "vector_store_ids": ["vs"]},
                {"type": "code_interpreter", "container": {"type": "auto"}}]}),
            Some(("file_search", "tools")),
            json!([{"type": "function", "function": {"name": "f"}}]),
            Value::Null,
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
            Some(("web_search_preview", "tool_choice")),
            Value::Null,
            Value::Null,
        ),
        // An agent sending an earlier answer's output back: its reasoning item is left out
        // of the chat body (and needs no OpenAI target), a built-in call item is noted.
        (
            json!({"model": "m", "input": [
                {"role": "user", "content": "find it"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed",
                 "action": {"type": "search", "query": "q"}},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "found"}]},
                {"role": "user", "content": "thanks"}]}),
            Some(("web_search_call", "input")),
            Value::Null,
            Value::Null,
        ),
        (
            json!({"model": "m", "input": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"role": "user", "content": "x"}]}),
            None,
            Value::Null,
            Value::Null,
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}],
                   "tool_choice": "required"}),
            None,
            json!([{"type": "function", "function": {"name": "f"}}]),
            json!("required"),
        ),
    ];
    for (req, builtin, tools, choice) in cases {
        let out = request(req.to_string().as_bytes()).expect("accepted");
        assert_eq!(
            out.builtin.as_ref().map(|b| (b.kind.as_str(), b.param)),
            builtin,
            "{req}"
        );
        let chat: Value = serde_json::from_slice(&out.body).expect("JSON");
        assert_eq!(chat["tools"], tools, "{req}");
        assert_eq!(chat["tool_choice"], choice, "{req}");
        assert_eq!(
            out.echo.tools,
            req["tools"].as_array().cloned().unwrap_or_default()
        );
    }
    // What is left of the agent's conversation in chat terms: the messages, in order.
    let agent = json!({"model": "m", "input": [
        {"role": "user", "content": "find it"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "found"}]},
        {"role": "user", "content": "thanks"}]});
    let out = request(agent.to_string().as_bytes()).expect("accepted");
    let chat: Value = serde_json::from_slice(&out.body).expect("JSON");
    let said: Vec<(&str, &str)> = chat["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().expect("role"),
                m["content"]
                    .as_str()
                    .or_else(|| m["content"][0]["text"].as_str())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            ("user", "find it"),
            ("assistant", "found"),
            ("user", "thanks")
        ]
    );
}

#[test]
fn openai_targets_get_the_clients_own_body_with_store_off() {
    let body = json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}],
                      "include": ["web_search_call.action.sources"], "truncation": "disabled",
                      "reasoning": {"effort": "low", "summary": "auto"}, "metadata": {"a": "b"}});
    let (_, r) = start(&Bytes::from(body.to_string()), 0).expect("accepted");
    let native: Value =
        serde_json::from_slice(&r.native_body("gpt-x").expect("native")).expect("JSON");
    let mut want = body.clone();
    want["model"] = json!("gpt-x");
    want["store"] = json!(false);
    assert_eq!(native, want);
}

#[test]
fn refusals_name_the_field() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"model": "m", "input": "x", "store": true}),
            "store",
            "keeps no responses",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
            "keeps no responses",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
            "keeps no conversations",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
            "stored state",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].type",
            "item_reference",
        ),
        (
            json!({"model": "m", "input": [{"type": "mesage", "role": "user", "content": "x"}]}),
            "input[0].type",
            "`mesage` is not an input item type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
            "`input_file` parts",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
            "input[0].content[0].file_id",
            "files uploaded to OpenAI",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c",
                "output": [{"type": "input_image", "image_url": "https://x.test/a.png"}]}]}),
            "input[0].output[0].type",
            "tool result",
        ),
        (
            json!({"model": "m", "input": "x", "truncation": "auto"}),
            "truncation",
            "only `disabled`",
        ),
        (
            json!({"model": "m", "input": "x", "frobnicate": 1}),
            "frobnicate",
            "not a field",
        ),
        (json!({"input": "x"}), "model", "is required"),
        (json!({"model": "m"}), "input", "is required"),
        (
            json!({"model": "m", "input": []}),
            "input",
            "must not be empty",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": -1}),
            "max_output_tokens",
            "positive integer",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}),
            "text.format.name",
            "is required",
        ),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
            "unknown role",
        ),
        (
            json!({"model": "m", "input": "x", "metadata": {"n": 1}}),
            "metadata.n",
            "must be a string",
        ),
    ];
    for (req, field, needle) in cases {
        let err = request(req.to_string().as_bytes()).expect_err(&req.to_string());
        assert_eq!(err.field(), field, "{req}");
        assert!(
            err.to_string().contains(needle),
            "{req}: {err} lacks {needle:?}"
        );
        // The Responses API's error body is OpenAI's.
        let body: Value = serde_json::from_slice(&err.to_openai_json()).expect("JSON");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], field);
    }
    let err = request(b"[1]").expect_err("not an object");
    assert!(err.to_string().contains("JSON object"), "{err}");
}

fn echo_for(req: Value) -> Echo {
    request(req.to_string().as_bytes())
        .expect("translates")
        .echo
}

fn answer(chat: Value, echo: &Echo) -> Value {
    let body = response(chat.to_string().as_bytes(), echo, &CTX).expect("renders");
    serde_json::from_slice(&body).expect("JSON")
}

#[test]
fn a_text_answer_becomes_a_response_object() {
    let echo = echo_for(json!({
        "model": "fast", "input": "hi", "instructions": "sys", "metadata": {"k": "v"},
        "temperature": 0.2, "user": "u",
    }));
    let got = answer(
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_123, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                      "prompt_tokens_details": {"cached_tokens": 4},
                      "completion_tokens_details": {"reasoning_tokens": 1}},
        }),
        &echo,
    );
    assert_eq!(
        got,
        json!({
            "id": "resp_chatcmpl-1", "object": "response", "created_at": 1_700_000_123,
            "status": "completed", "background": false, "error": null,
            "incomplete_details": null, "instructions": "sys", "max_output_tokens": null,
            "model": "gpt-4o-mini",
            "output": [{"type": "message", "id": "msg_chatcmpl-1_0", "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello!",
                                     "annotations": [], "logprobs": []}]}],
            "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "service_tier": null,
            "store": false, "temperature": 0.2, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": null, "truncation": "disabled",
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
                      "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 1},
                      "total_tokens": 13},
            "user": "u", "metadata": {"k": "v"},
        })
    );
}

#[test]
fn answers_table() {
    let echo = echo_for(json!({"model": "m", "input": "x"}));
    // (case, chat answer, status, incomplete reason, output items)
    let cases: Vec<(&str, Value, &str, Value, Value)> = vec![
        (
            "tool calls",
            json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": null,
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
                "finish_reason": "tool_calls"}]}),
            "completed",
            Value::Null,
            json!([
                {"type": "function_call", "id": "fc_abc123_0", "call_id": "call_a", "name": "f",
                 "arguments": "{\"x\":1}", "status": "completed"},
                {"type": "function_call", "id": "fc_abc123_1", "call_id": "call_b", "name": "g",
                 "arguments": "{}", "status": "completed"},
            ]),
        ),
        (
            "text and a tool call",
            json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                "finish_reason": "tool_calls"}]}),
            "completed",
            Value::Null,
            json!([
                {"type": "message", "id": "msg_abc123_0", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
                {"type": "function_call", "id": "fc_abc123_1", "call_id": "call_a", "name": "f",
                 "arguments": "{}", "status": "completed"},
            ]),
        ),
        (
            "length",
            json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": "Once upon"},
                "finish_reason": "length"}]}),
            "incomplete",
            json!({"reason": "max_output_tokens"}),
            json!([{"type": "message", "id": "msg_abc123_0", "status": "incomplete", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Once upon", "annotations": [], "logprobs": []}]}]),
        ),
        (
            "content filter and a refusal",
            json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": null,
                "refusal": "I can't help with that."}, "finish_reason": "content_filter"}]}),
            "incomplete",
            json!({"reason": "content_filter"}),
            json!([{"type": "message", "id": "msg_abc123_0", "status": "incomplete", "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]),
        ),
        (
            "reasoning before the text",
            json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": "4",
                "reasoning_content": "2+2"}, "finish_reason": "stop"}]}),
            "completed",
            Value::Null,
            json!([
                {"type": "reasoning", "id": "rs_abc123_0", "summary": [],
                 "content": [{"type": "reasoning_text", "text": "2+2"}]},
                {"type": "message", "id": "msg_abc123_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "4", "annotations": [], "logprobs": []}]},
            ]),
        ),
    ];
    for (name, chat, status, incomplete, output) in cases {
        let got = answer(chat, &echo);
        assert_eq!(got["status"], status, "{name}");
        assert_eq!(got["incomplete_details"], incomplete, "{name}");
        assert_eq!(got["output"], output, "{name}");
        assert_eq!(got["usage"], Value::Null, "{name}: no usage reported");
    }
    assert!(response(b"{\"choices\": 3}", &echo, &CTX).is_err());
}

// === streams ===

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "abc123", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

fn usage_chunk() -> String {
    json!({"id": "abc123", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
           "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
    .to_string()
}

/// Parses framed events back into their data, checking the framing (JSON never holds a raw
/// blank line, so events split at one).
fn parse(events: &[u8]) -> Vec<Value> {
    let s = std::str::from_utf8(events).expect("utf8");
    let body = s.strip_suffix("\n\n").expect("ends with a blank line");
    body.split("\n\n")
        .map(|ev| {
            let rest = ev.strip_prefix("event: ").expect("event line");
            let (name, data) = rest.split_once("\ndata: ").expect("data line");
            let v: Value = serde_json::from_str(data).expect("JSON");
            assert_eq!(v["type"], name, "event name matches its type");
            v
        })
        .collect()
}

fn run(chunks: &[String], end: End) -> Vec<Value> {
    let echo = echo_for(json!({"model": "alias", "input": "x", "stream": true}));
    let mut s = EventStream::new(echo, &CTX);
    let mut out = BytesMut::new();
    for c in chunks {
        s.chunk(c.as_bytes(), &mut out);
    }
    match end {
        End::Done => s.chunk(b"[DONE]", &mut out),
        End::Eof => s.finish(&mut out),
        End::Cut(code, message) => s.fail(code, message, &mut out),
    }
    assert!(s.is_ended());
    let events = parse(&out);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["sequence_number"], i as u64,
            "sequence number of event {i}"
        );
    }
    events
}

#[derive(Clone, Copy)]
enum End {
    Done,
    Eof,
    Cut(&'static str, &'static str),
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect()
}

#[test]
fn a_text_stream_gives_the_typed_events_in_order() {
    let events = run(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(),
        ],
        End::Done,
    );
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["output"], json!([]));
    assert_eq!(events[0]["response"]["model"], "up-model");
    assert_eq!(events[0]["response"]["id"], "resp_abc123");
    assert_eq!(
        events[2]["item"],
        json!({"type": "message", "id": "msg_abc123_0", "status": "in_progress",
               "role": "assistant", "content": []})
    );
    assert_eq!(
        events[3],
        json!({"type": "response.content_part.added", "sequence_number": 3,
               "item_id": "msg_abc123_0", "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
    );
    assert_eq!(
        events[4],
        json!({"type": "response.output_text.delta", "sequence_number": 4,
               "item_id": "msg_abc123_0", "output_index": 0, "content_index": 0,
               "delta": "Hel", "logprobs": []})
    );
    assert_eq!(events[6]["text"], "Hello");
    assert_eq!(events[7]["part"]["text"], "Hello");
    assert_eq!(events[8]["item"]["status"], "completed");
    let done = &events[9]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(
        done["usage"],
        json!({"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 7})
    );
}

#[test]
fn a_tool_stream_gives_function_call_events() {
    let events = run(
        &[
            chunk(json!({"content": "Let me check."}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(),
        ],
        End::Done,
    );
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        events[8]["item"],
        json!({"type": "function_call", "id": "fc_abc123_1", "call_id": "call_a",
               "name": "get_weather", "arguments": "", "status": "in_progress"})
    );
    assert_eq!(events[9]["delta"], "{\"city\":");
    assert_eq!(events[9]["item_id"], "fc_abc123_1");
    assert_eq!(events[9]["output_index"], 1);
    assert_eq!(
        events[13],
        json!({"type": "response.function_call_arguments.done", "sequence_number": 13,
               "item_id": "fc_abc123_1", "output_index": 1, "name": "get_weather",
               "arguments": "{\"city\":\"Paris\"}"})
    );
    assert_eq!(events[14]["item"]["status"], "completed");
    assert_eq!(events[15]["output_index"], 2);
    let out = &events[17]["response"]["output"];
    assert_eq!(out.as_array().map(Vec::len), Some(3));
    assert_eq!(out[1]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(out[2]["call_id"], "call_b");
}

#[test]
fn length_ends_incomplete_and_eof_after_finish_completes() {
    let events = run(
        &[
            chunk(json!({"content": "Once"}), None),
            chunk(json!({}), Some("length")),
        ],
        End::Eof,
    );
    let last = events.last().expect("events");
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
}

#[test]
fn a_cut_stream_ends_with_failed_then_error() {
    let cases = [
        (
            vec![chunk(json!({"content": "Hel"}), None)],
            End::Eof,
            "stream_interrupted",
            "closed the stream before it finished",
        ),
        (
            vec![chunk(json!({"content": "Hel"}), None)],
            End::Cut("stream_interrupted", "the stream broke off"),
            "stream_interrupted",
            "broke off",
        ),
        (
            vec![
                chunk(json!({"content": "Hel"}), None),
                json!({"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}})
                    .to_string(),
            ],
            End::Done,
            "overloaded",
            "overloaded",
        ),
        (vec![], End::Eof, "stream_interrupted", "before it finished"),
    ];
    for (chunks, end, code, message) in cases {
        let events = run(&chunks, end);
        let n = events.len();
        assert_eq!(events[n - 2]["type"], "response.failed");
        assert_eq!(events[n - 2]["response"]["status"], "failed");
        assert_eq!(events[n - 2]["response"]["error"]["code"], "server_error");
        let err = &events[n - 1];
        assert_eq!(err["type"], "error");
        assert_eq!(err["code"], code);
        assert!(
            err["message"].as_str().is_some_and(|m| m.contains(message)),
            "{err}"
        );
        assert_eq!(err["param"], Value::Null);
        if !chunks.is_empty() {
            let out = &events[n - 2]["response"]["output"];
            assert_eq!(
                out[0]["status"], "incomplete",
                "the partial message is kept"
            );
            assert_eq!(out[0]["content"][0]["text"], "Hel");
        }
    }
}

#[test]
fn raw_bytes_in_any_split_give_the_same_events() {
    let mut body = String::new();
    for c in [
        chunk(json!({"content": "Hi"}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
    ] {
        body.push_str("data: ");
        body.push_str(&c);
        body.push_str("\n\n");
    }
    body.push_str("data: [DONE]\n\n");
    let echo = echo_for(json!({"model": "alias", "input": "x", "stream": true}));
    let render = |pieces: usize| {
        let mut s = EventStream::new(echo.clone(), &CTX);
        let mut out = BytesMut::new();
        for piece in body.as_bytes().chunks(pieces) {
            s.push_raw(piece, &mut out);
        }
        assert!(s.is_ended());
        out
    };
    let whole = render(body.len());
    assert_eq!(render(1), whole);
    assert_eq!(render(7), whole);
    assert_eq!(
        parse(&whole).last().expect("events")["type"],
        "response.completed"
    );
}

#[test]
fn reasoning_and_refusal_deltas_get_their_own_parts() {
    let events = run(
        &[
            chunk(json!({"reasoning_content": "think"}), None),
            chunk(json!({"content": "no"}), None),
            chunk(json!({"refusal": "sorry"}), None),
            chunk(json!({}), Some("stop")),
        ],
        End::Done,
    );
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[13]["content_index"], 1);
    let out = &events[18]["response"]["output"];
    assert_eq!(out[0]["type"], "reasoning");
    assert_eq!(
        out[1]["content"],
        json!([{"type": "output_text", "text": "no", "annotations": [], "logprobs": []},
               {"type": "refusal", "refusal": "sorry"}])
    );
}

#[test]
fn response_ids_are_made_from_a_seed() {
    assert_eq!(response_id("chatcmpl-01JABC"), "resp_chatcmpl-01JABC");
}

#[test]
fn errors_name_the_top_level_param() {
    let param = |req: Value| match start(&Bytes::from(req.to_string()), 0) {
        Err(GatewayError::InvalidRequest { param, message }) => (param, message),
        other => panic!("{req}: {other:?}"),
    };
    let (p, m) = param(
        json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "function"}]}),
    );
    assert_eq!(p, Some("tools"));
    assert!(m.contains("`tools[1].name`"), "{m}");
    assert_eq!(
        param(json!({"model": "m", "input": "x", "store": true})).0,
        Some("store")
    );
    assert_eq!(
        param(json!({"model": "m", "input": [{"type": "item_reference"}]})).0,
        Some("input")
    );
    // An unknown field is named in the message only.
    let (p, m) = param(json!({"model": "m", "input": "x", "frobnicate": 1}));
    assert_eq!(p, None);
    assert!(m.contains("frobnicate"), "{m}");
}

#[test]
fn the_render_answers_whole_and_streamed() {
    let (chat, mut r) = start(
        &Bytes::from_static(br#"{"model":"m","input":"hi","stream":true}"#),
        1_700_000_000,
    )
    .expect("starts");
    let chat: Value = serde_json::from_slice(&chat).expect("JSON");
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    let mut out = BytesMut::new();
    r.event(
        format!("data: {}\n\n", chunk(json!({"content": "a"}), None)).as_bytes(),
        &mut out,
    );
    // A multi-line event goes through the decoder.
    r.event(b"event: x\ndata: [DONE]\n\n", &mut out);
    let events = parse(&out);
    assert_eq!(events.last().expect("events")["type"], "response.completed");
    let mut e = r.error_event(&GatewayError::Draining);
    assert!(e.is_empty(), "nothing after the end");
    let (_, mut r) = start(
        &Bytes::from_static(br#"{"model":"m","input":"hi","stream":true}"#),
        1,
    )
    .expect("starts");
    e = r.error_event(&GatewayError::Draining);
    let events = parse(&e);
    assert_eq!(events[0]["sequence_number"], 0);
    assert_eq!(events.last().expect("events")["code"], "draining");

    let (_, mut r) =
        start(&Bytes::from_static(br#"{"model":"m","input":"hi"}"#), 7).expect("starts");
    let bad: Value =
        serde_json::from_slice(&r.whole(&Bytes::from_static(b"{\"choices\": 3}"))).expect("JSON");
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["created_at"], 7);
    assert!(
        bad["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("resp_sluice"))
    );
}

#[test]
fn a_named_error_event_fails_the_stream() {
    for raw in [
        "event: error\ndata: {\"type\":\"overloaded_error\",\"message\":\"busy\"}\n\n",
        "event: error\ndata: {\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n",
    ] {
        let (_, mut r) = start(
            &Bytes::from_static(br#"{"model":"m","input":"hi","stream":true}"#),
            1,
        )
        .expect("starts");
        let mut out = BytesMut::new();
        r.event(
            format!("data: {}\n\n", chunk(json!({"content": "a"}), None)).as_bytes(),
            &mut out,
        );
        r.event(raw.as_bytes(), &mut out);
        let events = parse(&out);
        let n = events.len();
        assert_eq!(events[n - 2]["type"], "response.failed", "{raw}");
        assert_eq!(events[n - 1]["type"], "error");
        assert_eq!(events[n - 1]["code"], "overloaded_error");
        assert_eq!(events[n - 1]["message"], "busy");
    }
}
