use serde_json::json;

use super::*;

fn conversation(body: serde_json::Value, max: usize) -> Conversation {
    Conversation::from_request(body.to_string().as_bytes(), max).expect("a conversation")
}

fn msg(role: Role, content: &str) -> Message {
    Message {
        role,
        content: content.to_owned(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

#[test]
fn chat_request_with_every_role_tool_calls_and_images() {
    let body = json!({
        "model": "gpt-4o",
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {}}},
            {"type": "custom", "custom": {"name": "sql"}}
        ],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                {"type": "file", "file": {"file_data": "JVBE"}},
                {"type": "mystery"}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21}"},
            {"role": "assistant", "content": "It is 21 °C.", "refusal": null},
            {"role": "function", "name": "legacy_fn", "content": "42"},
            {"role": "narrator", "content": "?"},
            "not a message"
        ]
    });
    let c = conversation(body, 64 * 1024);
    assert_eq!(c.tools, vec!["get_weather", "sql"]);
    assert_eq!(c.omitted_messages, 0);
    let roles: Vec<Role> = c.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![
            Role::System,
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::Other,
            Role::Other
        ]
    );
    assert_eq!(c.messages[1].content, "Use metric units.");
    assert_eq!(
        c.messages[2].content,
        "What is this?\n[image]\n[audio]\n[file]\n[attachment]"
    );
    assert!(!format!("{c:?}").contains("base64"), "no attachment bytes");
    assert_eq!(
        c.messages[3].tool_calls,
        vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into()
        }]
    );
    assert_eq!(c.messages[4].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(c.messages[4].content, r#"{"temp":21}"#);
    assert_eq!(c.messages[6].tool_call_id.as_deref(), Some("legacy_fn"));
    assert_eq!(c.messages[8].content, UNREADABLE);
}

#[test]
fn legacy_completion_prompts() {
    let c = conversation(json!({"model": "m", "prompt": "Say hi"}), 1024);
    assert_eq!(c.messages, vec![msg(Role::User, "Say hi")]);
    let c = conversation(json!({"prompt": ["first", "second"]}), 1024);
    assert_eq!(c.messages[0].content, "first", "choice 0 answers prompt 0");
    let c = conversation(json!({"prompt": [[1, 2, 3]]}), 1024);
    assert_eq!(c.messages[0].content, TOKEN_IDS);
}

#[test]
fn what_is_not_a_conversation() {
    assert_eq!(
        Conversation::from_request(b"{nope", 1024),
        Err(Error::NotJson)
    );
    assert_eq!(
        Conversation::from_request(br#"{"input": "embed me"}"#, 1024),
        Err(Error::NoConversation)
    );
    assert_eq!(
        Conversation::from_request(br#"{"messages": 3}"#, 1024),
        Err(Error::NotJson)
    );
}

#[test]
fn water_fill_shares_fairly() {
    let table: [(&[usize], usize, &[usize]); 7] = [
        (&[10, 10], 100, &[10, 10]),
        (&[10, 100], 60, &[10, 50]),
        (&[100, 100], 60, &[30, 30]),
        (&[5, 100, 40], 60, &[5, 28, 27]),
        (&[], 10, &[]),
        (&[7], 0, &[0]),
        (&[3, 3, 3], 7, &[2, 2, 3]),
    ];
    for (sizes, budget, expected) in table {
        let got = water_fill(sizes, budget);
        assert_eq!(got, expected, "{sizes:?} in {budget}");
        assert!(got.iter().sum::<usize>() <= budget);
    }
}

#[test]
fn plan_keeps_instructions_and_the_newest_messages() {
    // (sizes, leading instructions, budget) → (head_end, tail_start, allowances)
    type Case = (
        &'static [usize],
        usize,
        usize,
        usize,
        usize,
        &'static [usize],
    );
    let table: [Case; 6] = [
        // Fits: everything whole.
        (&[10, 20, 30], 1, 100, 3, 3, &[10, 20, 30]),
        // Middle dropped: system 10, newest two (30 + 30) fit in 90 - 10.
        (&[10, 40, 30, 30], 1, 90, 1, 2, &[10, 30, 30]),
        // A huge system prompt gets at most half; the newest message keeps the rest.
        (&[1000, 10, 20], 1, 100, 1, 1, &[70, 10, 20]),
        // The newest message alone is too large: it is kept, shortened.
        (&[10, 20, 500], 1, 100, 1, 2, &[10, 90]),
        // Only instructions: they share the whole budget.
        (&[300, 300], 2, 100, 2, 2, &[50, 50]),
        // No instructions: newest first, whole messages.
        (&[50, 50, 50], 0, 120, 0, 1, &[50, 50]),
    ];
    for (sizes, head, budget, head_end, tail_start, allowances) in table {
        let p = plan(sizes, head, budget);
        assert_eq!(
            p,
            Plan {
                head_end,
                tail_start,
                allowances: allowances.to_vec()
            },
            "{sizes:?} head {head} in {budget}"
        );
        assert!(p.allowances.iter().sum::<usize>() <= budget);
    }
}

#[test]
fn a_long_conversation_keeps_its_start_and_its_end() {
    let mut messages = vec![json!({"role": "system", "content": "You answer from the context."})];
    for i in 0..50 {
        messages
            .push(json!({"role": "user", "content": format!("question {i} {}", "x".repeat(100))}));
        messages.push(json!({"role": "assistant", "content": format!("answer {i}")}));
    }
    messages.push(json!({"role": "user", "content": "the final question"}));
    let c = conversation(json!({"messages": messages}), 1024);
    assert!(c.text_len() <= 1024, "{}", c.text_len());
    assert_eq!(c.messages[0].content, "You answer from the context.");
    assert_eq!(
        c.messages.last().map(|m| m.content.as_str()),
        Some("the final question")
    );
    assert_eq!(c.omitted_messages + c.messages.len(), 102);
    assert!(c.omitted_messages > 80, "{}", c.omitted_messages);
    // Fitting again to a smaller bound adds to the count, never loses the newest message.
    let mut smaller = c.clone();
    smaller.fit(300);
    assert!(smaller.text_len() <= 300);
    assert!(smaller.omitted_messages > c.omitted_messages);
    assert_eq!(smaller.messages.last(), c.messages.last());
}

#[test]
fn a_long_message_keeps_both_ends_on_char_boundaries() {
    let document = "é".repeat(2000);
    let body = json!({"messages": [
        {"role": "user", "content": format!("START {document} what does it say? END")}
    ]});
    let c = conversation(body, 500);
    let text = &c.messages[0].content;
    assert!(text.len() <= 500, "{}", text.len());
    assert!(text.starts_with("START "), "{text:.40}");
    assert!(text.ends_with("what does it say? END"));
    assert!(text.contains(" bytes cut]…"));
}

#[test]
fn cut_middle_bounds() {
    assert_eq!(cut_middle("short", 10), "short");
    let s = "abcdefghij".repeat(20);
    let cut = cut_middle(&s, 60);
    assert!(cut.len() <= 60, "{}", cut.len());
    assert!(cut.starts_with("abc") && cut.ends_with("hij"), "{cut}");
    assert_eq!(
        cut_middle(&s, 10),
        "abcdefghij",
        "too small for a marker: a prefix"
    );
    // Every bound, over multi-byte text: never over, always valid UTF-8 (slicing would panic).
    let mixed = "aé€😀".repeat(30);
    for max in 0..=mixed.len() + 1 {
        assert!(cut_middle(&mixed, max).len() <= max);
    }
}

#[test]
fn tool_names_get_at_most_an_eighth() {
    let tools: Vec<_> = (0..100)
        .map(|i| json!({"type": "function", "function": {"name": format!("tool_number_{i:03}")}}))
        .collect();
    let body = json!({"tools": tools, "messages": [{"role": "user", "content": "hi"}]});
    let c = conversation(body, 1024);
    assert!(c.tools.iter().map(String::len).sum::<usize>() <= 128);
    assert!(!c.tools.is_empty());
    assert_eq!(c.messages[0].content, "hi");
}

#[test]
fn assembles_a_streamed_chat_answer_with_tool_calls() {
    let chunks = [
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"Let me "}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"check."}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
        r#"{"choices":[{"index":1,"delta":{"content":"another choice"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#,
        "[DONE]",
    ];
    let mut a = AnswerAssembler::new(4096);
    for c in chunks {
        a.push_chunk(c.as_bytes()).expect("a chunk");
    }
    let answer = a.finish();
    assert_eq!(answer.content, "Let me check.");
    assert_eq!(
        answer.tool_calls,
        vec![
            ToolCall {
                id: "call_a".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            },
            ToolCall {
                id: "call_b".into(),
                name: "get_time".into(),
                arguments: "{}".into()
            },
        ]
    );
    assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
    assert!(!answer.truncated);
}

#[test]
fn assembles_whole_bodies_and_legacy_text() {
    let mut a = AnswerAssembler::new(4096);
    a.push_body(
        br#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","refusal":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"stop"}]}"#,
    )
    .expect("a body");
    let answer = a.finish();
    assert_eq!(answer.content, "Hi there");
    assert_eq!(answer.tool_calls[0].name, "f");
    assert_eq!(answer.tool_calls[0].arguments, r#"{"a":1}"#);
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));

    let mut a = AnswerAssembler::new(4096);
    a.push_body(br#"{"object":"text_completion","choices":[{"index":0,"text":"Once upon","finish_reason":"length"}]}"#)
        .expect("a body");
    let answer = a.finish();
    assert_eq!(answer.content, "Once upon");
    assert_eq!(answer.finish_reason.as_deref(), Some("length"));

    let mut a = AnswerAssembler::new(4096);
    for c in [
        r#"{"object":"text_completion","choices":[{"index":0,"text":"Once"}]}"#,
        r#"{"object":"text_completion","choices":[{"index":0,"text":" upon","finish_reason":"stop"}]}"#,
    ] {
        a.push_chunk(c.as_bytes()).expect("a chunk");
    }
    assert_eq!(a.finish().content, "Once upon");

    let mut a = AnswerAssembler::new(4096);
    a.push_body(br#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#)
        .expect("a body");
    let answer = a.finish();
    assert_eq!(answer.refusal, "I can't help with that.");
    assert!(!answer.is_empty());
}

#[test]
fn assembler_refuses_errors_and_garbage() {
    let mut a = AnswerAssembler::new(64);
    assert_eq!(a.push_chunk(b"{not json"), Err(Error::NotJson));
    assert_eq!(
        a.push_chunk(br#"{"error":{"message":"overloaded"}}"#),
        Err(Error::ErrorObject)
    );
    assert_eq!(
        a.push_body(br#"{"error":{"message":"bad"}}"#),
        Err(Error::ErrorObject)
    );
    assert!(a.finish().is_empty());
}

#[test]
fn the_answer_is_bounded_on_char_boundaries() {
    let mut a = AnswerAssembler::new(10);
    for piece in ["ab", "cdé", "fgh€", "ijk"] {
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": piece}}]});
        a.push_chunk(chunk.to_string().as_bytes()).expect("a chunk");
    }
    let tool = json!({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_x", "function": {"name": "f", "arguments": "{}"}}
    ]}}]});
    a.push_chunk(tool.to_string().as_bytes()).expect("a chunk");
    let answer = a.finish();
    // "ab" + "cdé" + "fgh" is 9 bytes; "€" (3 bytes) would cross 10, so the cut falls before
    // it, and nothing after the cut is taken.
    assert_eq!(answer.content, "abcdéfgh");
    assert!(answer.text_len() <= 10, "{}", answer.text_len());
    assert!(answer.tool_calls.is_empty(), "no room left for a tool call");
    assert!(answer.truncated);
}

#[test]
fn fit_pair_gives_the_shorter_side_what_it_has() {
    let mut c = Conversation {
        messages: vec![msg(Role::User, &"q".repeat(1000))],
        ..Conversation::default()
    };
    let mut a = Answer {
        content: "short answer".into(),
        ..Answer::default()
    };
    fit_pair(&mut c, &mut a, 400);
    assert_eq!(a.content, "short answer");
    assert!(!a.truncated);
    let room = 400 - a.text_len();
    assert!(
        c.text_len() <= room && c.text_len() > room - 4,
        "{}",
        c.text_len()
    );

    let mut c = Conversation {
        messages: vec![msg(Role::User, &"q".repeat(1000))],
        ..Conversation::default()
    };
    let mut a = Answer {
        content: "a".repeat(1000),
        ..Answer::default()
    };
    fit_pair(&mut c, &mut a, 400);
    assert!(a.truncated);
    assert!(a.text_len() <= 200 && c.text_len() <= 200);
}
