//! The OpenAI request view and the answer builders.

use base64::Engine as _;
use serde_json::Value;

use crate::providers::translate::FinishReason;
use crate::providers::translate::TranslateError;
use crate::providers::translate::openai::*;

fn field(e: TranslateError) -> String {
    e.field().to_owned()
}

#[test]
fn parses_a_full_request() {
    let body = br#"{
      "model":"m","stream":true,"stream_options":{"include_usage":true},
      "messages":[
        {"role":"system","content":"be brief"},
        {"role":"developer","content":[{"type":"text","text":"use metric"}]},
        {"role":"user","content":[{"type":"text","text":"hi"},
          {"type":"image_url","image_url":{"url":"data:image/PNG;base64,iVBOR"}},
          {"type":"image_url","image_url":{"url":"https://x.test/a.jpg","detail":"low"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
          "function":{"name":"f","arguments":"{\"a\":1}"},
          "extra_content":{"google":{"thought_signature":"sig"}}}]},
        {"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"ok"}]}
      ],
      "temperature":0.5,"top_p":0.9,"max_tokens":10,"max_completion_tokens":20,
      "stop":["x",""],"n":2,"seed":7,"user":"u1","store":true,
      "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
      "tool_choice":{"type":"function","function":{"name":"f"}},
      "parallel_tool_calls":false,
      "response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}},
      "reasoning_effort":"low","logprobs":false,"logit_bias":{}
    }"#;
    let r = parse_chat(body).expect("parses");
    assert_eq!(r.system, vec!["be brief", "use metric"]);
    assert_eq!(r.max_tokens, Some(20), "max_completion_tokens wins");
    assert_eq!(r.stop, vec!["x"]);
    assert_eq!(r.n, 2);
    assert!(r.stream && r.include_usage);
    assert_eq!(r.tool_choice, Some(ToolChoice::Function("f".into())));
    assert_eq!(r.reasoning_effort, Some(ReasoningEffort::Low));
    let Turn::User { parts, .. } = &r.turns[0] else {
        panic!("user first")
    };
    assert_eq!(
        parts[1],
        Part::Image {
            url: ImageUrl::Data {
                media_type: "image/png".into(),
                data: "iVBOR".into()
            },
            path: "messages[2].content[1]".into()
        }
    );
    let Turn::Assistant { tool_calls, .. } = &r.turns[1] else {
        panic!("assistant second")
    };
    assert_eq!(tool_calls[0].arguments["a"], 1);
    assert_eq!(tool_calls[0].thought_signature.as_deref(), Some("sig"));
    assert_eq!(
        r.turns[2],
        Turn::Tool {
            index: 4,
            tool_call_id: "c1".into(),
            content: "ok".into()
        }
    );
}

#[test]
fn refusals_and_errors_name_the_field() {
    let cases: &[(&[u8], &str)] = &[
        (br#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#, "logprobs"),
        (br#"{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}"#, "top_logprobs"),
        (br#"{"messages":[{"role":"user","content":"x"}],"logit_bias":{"1":2}}"#, "logit_bias"),
        (br#"{"messages":[{"role":"user","content":"x"}],"functions":[]}"#, "functions"),
        (br#"{"messages":[{"role":"user","content":"x"}],"audio":{}}"#, "audio"),
        (br#"{"messages":[{"role":"user","content":"x"}],"modalities":["text","audio"]}"#, "modalities"),
        (br#"{"messages":[{"role":"user","content":"x"}],"prediction":{}}"#, "prediction"),
        (br#"{"messages":[{"role":"user","content":"x"}],"bogus":1}"#, "bogus"),
        (br#"{"messages":[{"role":"user","content":"x"}],"n":0}"#, "n"),
        (br#"{"messages":[]}"#, "messages"),
        (br#"{"model":"m"}"#, "messages"),
        (br#"{"messages":null}"#, "messages"),
        (br#"{"messages":[{"role":"user","content":[{"type":"file","file":{}}]}]}"#, "messages[0].content[0].type"),
        (br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}"#, "messages[0].content[0].image_url.url"),
        (br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{nope"}}]}]}"#, "messages[0].tool_calls[0].function.arguments"),
        (br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}"#, "messages[0].tool_calls[0].function.arguments"),
        (br#"{"messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
        (br#"{"messages":[{"role":"function","name":"f","content":"x"}]}"#, "messages[0].role"),
        (br#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{}}]}"#, "tools[0].type"),
        (br#"{"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"allowed_tools"}}"#, "tool_choice.type"),
        (br#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"grammar"}}"#, "response_format.type"),
    ];
    for (body, want) in cases {
        let e = parse_chat(body).expect_err(std::str::from_utf8(body).expect("utf8"));
        assert_eq!(
            field(e),
            *want,
            "{}",
            std::str::from_utf8(body).expect("utf8")
        );
    }
}

#[test]
fn empty_arguments_are_an_empty_object_and_nulls_are_absent() {
    let r = parse_chat(
        br#"{"messages":[{"role":"assistant","content":"","tool_calls":[{"id":"a","function":{"name":"f","arguments":""}}]}],"temperature":null,"modalities":["text"]}"#,
    )
    .expect("parses");
    let Turn::Assistant { tool_calls, .. } = &r.turns[0] else {
        panic!("assistant")
    };
    assert!(tool_calls[0].arguments.is_empty());
    assert_eq!(r.temperature, None);
}

#[test]
fn embeddings_requests() {
    let r = parse_embeddings(
        br#"{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":8}"#,
    )
    .expect("parses");
    assert_eq!(r.inputs, vec!["a", "b"]);
    assert!(r.base64);
    assert_eq!(r.dimensions, Some(8));
    assert_eq!(
        field(parse_embeddings(br#"{"input":[[1,2]]}"#).expect_err("tokens")),
        "input[0]"
    );
    assert_eq!(
        field(parse_embeddings(br#"{"input":[]}"#).expect_err("empty")),
        "input"
    );
}

#[test]
fn base64_embeddings_are_little_endian_f32() {
    let body = embeddings_list("e", vec![vec![1.0, -2.5]], true, None);
    let v: Value = serde_json::from_slice(&body).expect("json");
    let b64 = v["data"][0]["embedding"].as_str().expect("string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(floats, vec![1.0, -2.5]);
}

#[test]
fn chunk_writer_keeps_openai_invariants() {
    let mut w = ChunkWriter::new("id".into(), 1, "m".into(), true);
    let mut out = vec![];
    w.content(0, "", &mut out);
    assert!(out.is_empty(), "empty deltas are not sent");
    w.content(0, "Hi", &mut out);
    let a = w.tool_start(0, "c1", "f", "", None, &mut out);
    w.tool_args(0, a, "{}", &mut out);
    let b = w.tool_start(0, "c2", "g", "{}", None, &mut out);
    w.finish(0, FinishReason::ToolCalls, &mut out);
    w.finish(0, FinishReason::Stop, &mut out);
    let usage = Usage {
        prompt_tokens: 3,
        completion_tokens: 4,
        ..Usage::default()
    };
    w.end(Some(&usage), &mut out);
    w.end(Some(&usage), &mut out);
    assert_eq!((a, b), (0, 1));
    let texts: Vec<Value> = out[..out.len() - 1]
        .iter()
        .map(|b| serde_json::from_slice(b).expect("json"))
        .collect();
    assert_eq!(texts[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(texts[0]["usage"], Value::Null);
    assert!(texts[0].as_object().expect("obj").contains_key("usage"));
    assert_eq!(texts[5]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(texts.len(), 7, "one finish chunk, one usage chunk");
    assert_eq!(texts[6]["choices"], serde_json::json!([]));
    assert_eq!(texts[6]["usage"]["total_tokens"], 7);
    assert_eq!(out.last().map(|b| &b[..]), Some(DONE));
}
