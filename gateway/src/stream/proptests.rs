//! The scan of plain deltas ([`super::scan`]) must agree with the parse: a stream of generated
//! chunks (valid JSON, compact or spread over lines, with strings full of quotes, braces,
//! backslashes and the names Sluice looks for) leaves the same state and verdicts whether each
//! event is scanned or parsed.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use std::time::Duration;

use super::{StreamState, Verdict};
use crate::fuzz::{self, Budget};
use crate::sse::SseDecoder;

fn text() -> impl Strategy<Value = String> {
    let piece = select(vec![
        "a",
        " ",
        "\"",
        "\\",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "usage",
        "content",
        "\"content\":",
        "finish_reason",
        "null",
        "é",
        "\n",
        "\u{1F600}",
        "\t",
        "\u{1}",
    ]);
    vec(piece, 0..8).prop_map(|p| p.concat())
}

/// A value for a field Sluice reads: absent (`None`), null, or something.
fn maybe(v: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![2 => Just(None), 3 => Just(Some(Value::Null)), 2 => v.prop_map(Some)]
}

fn delta() -> impl Strategy<Value = Value> {
    let content = prop_oneof![8 => text().prop_map(Value::from), 1 => Just(json!(7))];
    let calls =
        Just(json!([{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]));
    (
        prop::option::of(Just("assistant")),
        maybe(content),
        prop::option::weighted(0.1, calls),
    )
        .prop_map(|(role, content, calls)| {
            let mut d = Map::new();
            if let Some(r) = role {
                d.insert("role".into(), r.into());
            }
            if let Some(c) = content {
                d.insert("content".into(), c);
            }
            if let Some(c) = calls {
                d.insert("tool_calls".into(), c);
            }
            Value::Object(d)
        })
}

fn choice() -> impl Strategy<Value = Value> {
    let reason = prop_oneof![Just(json!("stop")), Just(json!("length"))];
    let logprobs = Just(json!({"content": []}));
    (
        prop::option::weighted(0.9, delta()),
        maybe(reason),
        maybe(logprobs),
        prop::option::weighted(0.1, text()),
    )
        .prop_map(|(delta, reason, logprobs, legacy)| {
            let mut c = Map::new();
            c.insert("index".into(), 0.into());
            for (k, v) in [
                ("delta", delta),
                ("finish_reason", reason),
                ("logprobs", logprobs),
            ] {
                if let Some(v) = v {
                    c.insert(k.into(), v);
                }
            }
            if let Some(t) = legacy {
                c.insert("text".into(), t.into());
            }
            Value::Object(c)
        })
}

fn chunk() -> impl Strategy<Value = Value> {
    // The scan parses a `usage` object on its own: with details, with strings that hold
    // brackets, and values the parse refuses must come out as the whole parse has them.
    let usage = prop_oneof![
        4 => Just(json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})),
        1 => Just(json!({"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 1}, "x": "}]"})),
        1 => Just(json!({"prompt_tokens": "3"})),
        1 => Just(json!(5)),
        1 => Just(json!([])),
        1 => text().prop_map(|t| json!({ "completion_tokens": 1, "note": t })),
    ];
    (
        prop::option::of(text()),
        prop::option::weighted(0.95, vec(choice(), 0..3)),
        maybe(usage),
        prop::option::weighted(0.05, text()),
        prop::option::weighted(0.2, (text(), text())),
    )
        .prop_map(|(model, choices, usage, error, extra)| {
            let mut o = Map::new();
            o.insert("id".into(), "chatcmpl-1".into());
            if let Some(m) = model {
                o.insert("model".into(), m.into());
            }
            if let Some(c) = choices {
                o.insert("choices".into(), c.into());
            }
            if let Some(u) = usage {
                o.insert("usage".into(), u);
            }
            if let Some(e) = error {
                o.insert("error".into(), json!({ "message": e }));
            }
            if let Some((k, v)) = extra {
                o.insert(k, v.into());
            }
            Value::Object(o)
        })
}

/// An SSE stream: a first chunk, then generated ones, each compact or pretty-printed over
/// several `data:` lines.
#[derive(Debug, Clone)]
pub(crate) struct Chunks(Vec<u8>);

fn stream() -> impl Strategy<Value = Chunks> {
    prop_oneof![varied(), framed()]
}

/// Chunks of every shape, each its own.
fn varied() -> impl Strategy<Value = Chunks> {
    vec((chunk(), any::<bool>()), 1..8).prop_map(|chunks| {
        let mut out = b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n".to_vec();
        for (c, pretty) in chunks {
            let json = if pretty {
                serde_json::to_string_pretty(&c).expect("json")
            } else {
                c.to_string()
            };
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(json.replace('\n', "\ndata: ").as_bytes());
            out.extend_from_slice(b"\n\n");
        }
        Chunks(out)
    })
}

/// Chunks as providers write them: one frame (id, model, nulls) around each text, so the
/// template learned from one is tried on the next, with texts full of quotes, escapes and
/// braces, and now and then a chunk of another shape (spread over lines, a finish, usage).
fn framed() -> impl Strategy<Value = Chunks> {
    let frame = select(vec![
        (
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"#,
            r#"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        ),
        (r#"{"choices":[{"delta":{"content":"#, "}}]}"),
    ]);
    let other = select(vec![
        r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        "{\n\"choices\":[{\"delta\":{\"content\":\"x\"}}]}",
        r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}],"usage":null,"x":""}"#,
    ]);
    // What goes between the frame's two halves: a string literal (texts of every kind), or
    // bytes that only look like the end of one; or a chunk of another shape instead.
    let event = prop_oneof![
        6 => text().prop_map(|t| Value::from(t).to_string()),
        1 => Just(r#""a\"b""#.to_owned()),
        1 => Just(r#""q" , "content":"z""#.to_owned()),
        1 => Just(r#""q"},"finish_reason":"stop","x":{"y":"z""#.to_owned()),
        1 => Just("null".to_owned()),
        1 => Just("\"raw\u{1}\"".to_owned()),
        1 => other.prop_map(|o| format!("\u{0}{o}")),
    ];
    (frame, vec(event, 1..12)).prop_map(|((open, close), events)| {
        let mut out = b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n".to_vec();
        for e in events {
            let data = match e.strip_prefix('\u{0}') {
                Some(other) => other.to_owned(),
                None => format!("{open}{e}{close}"),
            };
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(data.replace('\n', "\ndata: ").as_bytes());
            out.extend_from_slice(b"\n\n");
        }
        Chunks(out)
    })
}

pub(crate) fn check_scan_agrees(c: &Chunks) -> Result<(), String> {
    for keep in [false, true] {
        let (mut scanned, mut parsed) = (StreamState::default(), StreamState::default());
        let mut dec = SseDecoder::new(1 << 20);
        dec.push(&c.0);
        while let Some(ev) = dec.next_event().map_err(|e| e.to_string())? {
            let a: Verdict = scanned.inspect_with(&ev, keep, true);
            let b: Verdict = parsed.inspect_with(&ev, keep, false);
            if a != b {
                return Err(format!(
                    "verdicts differ on {:?}: scan {a:?}, parse {b:?}",
                    ev.data
                ));
            }
        }
        // Only the scan learns a template; everything else must be the same.
        scanned.template = super::scan::Template::default();
        let (a, b) = (format!("{scanned:?}"), format!("{parsed:?}"));
        if a != b {
            return Err(format!("states differ:\n scan  {a}\n parse {b}"));
        }
    }
    Ok(())
}

#[test]
fn the_scan_agrees_with_the_parse() {
    let budget = Budget {
        cases: 3000,
        time: Duration::from_secs(6),
    };
    fuzz::run("stream-scan", budget, stream(), check_scan_agrees);
}
