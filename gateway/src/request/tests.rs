use super::*;

fn parse(endpoint: Endpoint, body: &str) -> Result<OpenAiRequest, GatewayError> {
    OpenAiRequest::parse(endpoint, Bytes::from(body.to_owned()), 128)
}

fn chat(body: &str) -> OpenAiRequest {
    parse(Endpoint::ChatCompletions, body).expect("valid request")
}

fn json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b).expect("upstream body is JSON")
}

#[test]
fn unchanged_body_is_forwarded_without_a_copy() {
    let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    let up = r.upstream_body("m");
    assert_eq!(up.as_ptr(), r.body.as_ptr());
}

#[test]
fn model_is_rewritten_and_everything_else_kept_verbatim() {
    let body = r#"{"temperature":0.5, "model" : "alias", "messages":[{"role":"user","content":"h\u00e9"}],"tools":[]}"#;
    let up = chat(body).upstream_body("real-model");
    let s = std::str::from_utf8(&up).expect("utf8");
    assert_eq!(
        s,
        r#"{"temperature":0.5, "model" : "real-model", "messages":[{"role":"user","content":"h\u00e9"}],"tools":[]}"#
    );
}

#[test]
fn include_usage_is_injected_for_streams_and_remembered() {
    let r = chat(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#);
    assert!(!r.client_wants_usage);
    let v = json(&r.upstream_body("m"));
    assert_eq!(v["stream_options"]["include_usage"], true);

    let r = chat(
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false},"messages":[1]}"#,
    );
    assert!(
        !r.client_wants_usage,
        "an explicit false is the client's choice"
    );
    let v = json(&r.upstream_body("u"));
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["stream_options"]["include_obfuscation"], false);
    assert_eq!(v["model"], "u");

    let r = chat(
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[1]}"#,
    );
    assert!(r.client_wants_usage);
    assert_eq!(r.upstream_body("m").as_ptr(), r.body.as_ptr());
}

#[test]
fn both_edits_are_spliced_in_body_order_whichever_comes_first() {
    for (body, want) in [
        (
            r#"{"stream":true,"stream_options":{"include_usage":false,"x":1},"model":"m","messages":[1]}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true,"x":1},"model":"u\"v","messages":[1]}"#,
        ),
        (
            r#"{"model":"m","stream":true,"stream_options":{"x":1},"messages":[1]}"#,
            r#"{"model":"u\"v","stream":true,"stream_options":{"include_usage":true,"x":1},"messages":[1]}"#,
        ),
        (
            r#"{"model":"m","stream":true,"messages":[1]}"#,
            r#"{"model":"u\"v","stream":true,"messages":[1],"stream_options":{"include_usage":true}}"#,
        ),
    ] {
        let up = chat(body).upstream_body("u\"v");
        assert_eq!(std::str::from_utf8(&up).expect("utf8"), want, "{body}");
    }
}

#[test]
fn bad_requests_name_the_problem() {
    let cases = [
        (
            "{",
            "the request body is not a valid JSON object: EOF while parsing an object at line 1 column 1",
        ),
        (
            "[1]",
            "the request body is not a valid JSON object: invalid type: sequence, expected a JSON object",
        ),
        (r#"{"messages":[1]}"#, "`model` is required"),
        (r#"{"model":3,"messages":[1]}"#, "`model` must be a string"),
        (
            r#"{"model":"m"}"#,
            "`messages` must be a non-empty array of messages",
        ),
        (
            r#"{"model":"m","messages":[ ]}"#,
            "`messages` must be a non-empty array of messages",
        ),
        (
            r#"{"model":"m","messages":{}}"#,
            "`messages` must be a non-empty array of messages",
        ),
        (
            r#"{"model":"m","messages":[]}"#,
            "`messages` must be a non-empty array of messages",
        ),
        (
            r#"{"model":"m","messages":[1],"stream":"yes"}"#,
            "`stream` must be a boolean",
        ),
        (
            r#"{"model":"m","model":"n","messages":[1]}"#,
            "the request body is not a valid JSON object: duplicate field `model` at line 1 column 24",
        ),
        (
            r#"{"model":"m","messages":[1],"api_base":"http://evil"}"#,
            "`api_base` is not accepted: Sluice chooses the provider from its routing policy",
        ),
    ];
    for (body, want) in cases {
        let err = parse(Endpoint::ChatCompletions, body).expect_err(body);
        assert_eq!(err.to_string(), want, "body: {body}");
        assert_eq!(err.status(), 400);
    }
    let err = parse(
        Endpoint::Embeddings,
        r#"{"model":"e","input":"x","stream":true}"#,
    )
    .expect_err("no");
    assert_eq!(err.to_string(), "embeddings cannot be streamed");
    assert!(parse(Endpoint::Completions, r#"{"model":"c","prompt":"x"}"#).is_ok());
}

#[test]
fn escaped_member_names_are_understood() {
    let r = chat(r#"{"\u006dodel":"m","messages":[{"role":"user","content":"x"}]}"#);
    assert_eq!(r.model, "m");
    let up = json(&r.upstream_body("n"));
    assert_eq!(up["model"], "n");
}

#[test]
fn nesting_and_escapes_are_bounded() {
    let deep = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}],\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = parse(Endpoint::ChatCompletions, &deep).expect_err("too deep");
    assert!(e.to_string().contains("deeper than 128 levels"), "{e}");
    // Right at the limit is fine: the object itself is level 1.
    let ok = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}],\"x\":{}{}}}",
        "[".repeat(127),
        "]".repeat(127)
    );
    parse(Endpoint::ChatCompletions, &ok).expect("127 + 1 levels");

    let body = |content: &str| {
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{content}"}}]}}"#)
    };
    for lone in [
        r"\ud800",
        r"\udc00",
        r"a\ud83dz",
        r"\ud83d\u0041",
        r"\ud83d",
    ] {
        let e = parse(Endpoint::ChatCompletions, &body(lone)).expect_err(lone);
        assert!(
            e.to_string().contains("lone UTF-16 surrogate"),
            "{lone}: {e}"
        );
        assert_eq!(e.status(), 400);
    }
    for fine in [r"\ud83d\ude00", r"\u00e9", r"\\ud800", r#"\"\\"#, "plain"] {
        parse(Endpoint::ChatCompletions, &body(fine)).expect(fine);
    }
    let e = parse(Endpoint::ChatCompletions, &body(r"\u12")).expect_err("short escape");
    assert_eq!(e.status(), 400);
}

#[test]
fn conversation_id_comes_from_metadata() {
    let cases = [
        (r#"{"conversation_id":"c-1","session_id":"s"}"#, Some("c-1")),
        (r#"{"session_id":" s-2 "}"#, Some("s-2")),
        (r#"{"conversation_id":""}"#, None),
        (r#"{"other":"x"}"#, None),
        (r#"{"conversation_id":7}"#, None),
        (r#""not an object""#, None),
    ];
    for (metadata, want) in cases {
        assert_eq!(
            conversation_id(metadata.as_bytes()).as_deref(),
            want,
            "{metadata}"
        );
    }
    let long = format!(r#"{{"conversation_id":"{}"}}"#, "x".repeat(300));
    assert_eq!(
        conversation_id(long.as_bytes()),
        None,
        "too long to be an id"
    );
    let r = chat(
        r#"{"model":"m","metadata":{"conversation_id":"thread-9"},"messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!(r.params.conversation_id.as_deref(), Some("thread-9"));
}

#[test]
fn tool_call_ids_are_the_tool_results_in_the_request_bounded() {
    let r = chat(
        r#"{"model":"m","messages":[
            {"role":"user","content":"x"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_a","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"call_a","content":"r"},
            {"role":"tool","tool_call_id":"","content":"r"}
        ]}"#,
    );
    assert_eq!(r.params.tool_call_ids, vec!["call_a".to_owned()]);
    assert!(
        chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
            .params
            .tool_call_ids
            .is_empty()
    );
    let many: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"role":"tool","tool_call_id":"call_{i}","content":"r"}}"#))
        .collect();
    let r = chat(&format!(
        r#"{{"model":"m","messages":[{}]}}"#,
        many.join(",")
    ));
    assert_eq!(
        r.params.tool_call_ids.len(),
        sluice_observability::MAX_TOOL_CALL_IDS
    );
    assert_eq!(
        r.params.tool_call_ids.last().map(String::as_str),
        Some("call_49"),
        "the latest kept"
    );
}

#[test]
fn compat_changes_only_what_the_server_needs() {
    use serde_json::json;
    use sluice_config::{MaxTokensField, OpenAiCompat};
    let base = OpenAiCompat::default();
    let dev = r#"{"model":"a","messages":[{"role":"developer","content":"d"},{"role":"user","content":"u"}],"max_completion_tokens":5,"parallel_tool_calls":false"#;
    // (body, compat, expected upstream JSON)
    let cases: Vec<(String, OpenAiCompat, serde_json::Value)> = vec![
        (
            format!("{dev},\"stream\":true}}"),
            OpenAiCompat { max_tokens_field: Some(MaxTokensField::MaxTokens), ..base.clone() },
            json!({"model":"up","messages":[{"role":"developer","content":"d"},{"role":"user","content":"u"}],
                   "max_tokens":5,"parallel_tool_calls":false,"stream":true,"stream_options":{"include_usage":true}}),
        ),
        (
            format!("{dev},\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}"),
            OpenAiCompat { stream_usage: false, developer_as_system: true,
                drop_fields: vec!["parallel_tool_calls".into()], ..base.clone() },
            json!({"model":"up","messages":[{"role":"system","content":"d"},{"role":"user","content":"u"}],
                   "max_completion_tokens":5,"stream":true}),
        ),
        (
            r#"{"model":"a","messages":[{"role":"user","content":"u"}],"max_tokens":7,"max_completion_tokens":9}"#.to_owned(),
            OpenAiCompat { max_tokens_field: Some(MaxTokensField::MaxCompletionTokens), ..base.clone() },
            json!({"model":"up","messages":[{"role":"user","content":"u"}],"max_completion_tokens":9}),
        ),
        (
            r#"{"model":"a","messages":[{"role":"user","content":"u"}],"max_tokens":7}"#.to_owned(),
            OpenAiCompat { max_tokens_field: Some(MaxTokensField::MaxCompletionTokens), ..base.clone() },
            json!({"model":"up","messages":[{"role":"user","content":"u"}],"max_completion_tokens":7}),
        ),
    ];
    for (body, compat, want) in cases {
        assert!(!compat.is_identity());
        assert_eq!(
            json(&chat(&body).compat_body("up", &compat)),
            want,
            "{body}"
        );
    }
    assert!(base.is_identity());
}
