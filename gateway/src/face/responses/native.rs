//! Reading a Responses answer that passes through untouched (an OpenAI-kind target's own
//! `response` object or typed events): what the exchange records, read with borrowed probes
//! that skip everything else, and the text the judge reads.
//!
//! | the provider sent | Sluice learns |
//! |---|---|
//! | `response` object | id, model, status → finish reason, `usage`, an `error`, `function_call` items, the `output_text` (when kept) |
//! | `response.created` | id, model |
//! | `response.*.delta` | a content event (the first is the time to first token); `output_text` deltas' text (when kept) |
//! | `response.output_item.added` of a `function_call` | the call's id and name |
//! | `response.completed`, `response.incomplete` | the end: usage, finish reason |
//! | `response.failed`, `error` | a provider error mid-stream |

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::stream::{AnswerInfo, AnswerProblem, CompletionDetails, PromptDetails, Usage};

/// What one passed-through stream event is to the exchange.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventFacts<'a> {
    pub kind: Kind,
    pub sequence_number: Option<u64>,
    /// The text of an `output_text` delta.
    pub text: Option<Cow<'a, str>>,
    /// `response.created` / the terminal response: its id and model.
    pub id: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    /// The terminal response's usage (in chat terms) and finish reason.
    pub usage: Option<Usage>,
    pub finish: Option<&'static str>,
    /// A `function_call` item opened.
    pub call: Option<Call<'a>>,
}

/// A function call's id (`call_id`) and name, as its item names them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Call<'a> {
    pub id: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Lifecycle and item bookkeeping: forwarded, nothing to count.
    #[default]
    Other,
    /// A `response.*.delta` event.
    Content,
    /// `response.completed` or `response.incomplete`.
    End,
    /// `response.failed` or `error`.
    Error,
    /// Not a Responses event (not JSON, or no `type`).
    Unknown,
}

/// Reads one stream event's data.
pub fn event(data: &[u8]) -> EventFacts<'_> {
    let Ok(p) = serde_json::from_slice::<EventProbe<'_>>(data) else {
        return EventFacts {
            kind: Kind::Unknown,
            ..EventFacts::default()
        };
    };
    let mut facts = EventFacts {
        sequence_number: p.sequence_number,
        ..EventFacts::default()
    };
    let Some(kind) = p.kind else {
        facts.kind = Kind::Unknown;
        return facts;
    };
    match kind.as_ref() {
        "error" | "response.failed" => facts.kind = Kind::Error,
        "response.completed" | "response.incomplete" => {
            facts.kind = Kind::End;
            if let Some(r) = p.response {
                facts.finish = Some(finish_of(&r));
                facts.usage = r.usage.map(|u| u.chat());
                facts.id = r.id;
                facts.model = r.model;
            }
        }
        "response.created" => {
            if let Some(r) = p.response {
                facts.id = r.id;
                facts.model = r.model;
            }
        }
        "response.output_item.added" => {
            if let Some(item) = p
                .item
                .filter(|i| i.kind.as_deref() == Some("function_call"))
            {
                facts.call = Some(Call {
                    id: item.call_id,
                    name: item.name,
                });
            }
        }
        k if k.starts_with("response.") && k.ends_with(".delta") => {
            facts.kind = Kind::Content;
            if k == "response.output_text.delta" {
                facts.text = p.delta.0;
            }
        }
        _ => {}
    }
    facts
}

/// Reads a whole `response` object: one parse gives the check and the facts. The answer's
/// text is copied only when `keep_text` (content capture) or when there is no usage.
pub fn answer_info(
    body: &[u8],
    keep_text: bool,
) -> Result<(AnswerInfo, Option<Usage>), AnswerProblem> {
    let r =
        serde_json::from_slice::<ResponseProbe<'_>>(body).map_err(|_| AnswerProblem::NotJson)?;
    if r.error.is_some() || r.status.as_deref() == Some("failed") {
        return Err(AnswerProblem::ErrorObject);
    }
    let mut info = AnswerInfo::default();
    let finish = finish_of(&r);
    let usage = r.usage.as_ref().map(UsageProbe::chat);
    info.note_ids(r.id, r.model);
    info.note_finish(finish);
    for item in r.output.into_iter().flatten() {
        match item.kind.as_deref() {
            Some("function_call") => {
                info.note_tool_call(None, item.call_id.as_deref(), item.name.as_deref());
            }
            Some("message") if keep_text || usage.is_none() => {
                for part in item.content.0.into_iter().flatten() {
                    if part.kind.as_deref() == Some("output_text")
                        && let Some(t) = part.text.0
                    {
                        info.note_text(&t);
                    }
                }
            }
            _ => {}
        }
    }
    Ok((info, usage))
}

/// The chat finish reason a response's end stands for, as the translated path records it.
fn finish_of(r: &ResponseProbe<'_>) -> &'static str {
    match (r.status.as_deref(), r.incomplete_reason()) {
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) => "length",
        _ if r.calls_a_function() => "tool_calls",
        _ => "stop",
    }
}

/// A whole answer as the chat completion the judge reads: the `output_text` of its `message`
/// items. `None` when it is not a `response` object.
pub fn judge_body(body: &[u8]) -> Option<Bytes> {
    let r = serde_json::from_slice::<ResponseProbe<'_>>(body).ok()?;
    let mut text = String::new();
    for item in r.output.into_iter().flatten() {
        if item.kind.as_deref() == Some("message") {
            for part in item.content.0.into_iter().flatten() {
                if part.kind.as_deref() == Some("output_text")
                    && let Some(t) = part.text.0
                {
                    text.push_str(&t);
                }
            }
        }
    }
    let chat = serde_json::json!({
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    });
    serde_json::to_vec(&chat).ok().map(Bytes::from)
}

/// A stream event as the chat chunk the judge reads: an `output_text` delta's text; `None`
/// for every other event.
pub fn judge_chunk(data: &[u8]) -> Option<Bytes> {
    let text = event(data).text?;
    let chunk = serde_json::json!({
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    });
    serde_json::to_vec(&chunk).ok().map(Bytes::from)
}

// === probes ===

#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(default, borrow)]
    delta: LenientStr<'a>,
    #[serde(default, borrow)]
    response: Option<ResponseProbe<'a>>,
    #[serde(default, borrow)]
    item: Option<ItemProbe<'a>>,
}

#[derive(Deserialize)]
struct ResponseProbe<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<UsageProbe>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default, borrow)]
    incomplete_details: Option<IncompleteProbe<'a>>,
    #[serde(default, borrow)]
    output: Option<Vec<ItemProbe<'a>>>,
}

impl ResponseProbe<'_> {
    fn incomplete_reason(&self) -> Option<&str> {
        self.incomplete_details.as_ref()?.reason.as_deref()
    }

    fn calls_a_function(&self) -> bool {
        self.output
            .iter()
            .flatten()
            .any(|i| i.kind.as_deref() == Some("function_call"))
    }
}

#[derive(Deserialize)]
struct IncompleteProbe<'a> {
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ItemProbe<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    call_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: LenientList<PartProbe<'a>>,
}

#[derive(Deserialize)]
struct PartProbe<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: LenientStr<'a>,
}

#[derive(Deserialize)]
struct UsageProbe {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl UsageProbe {
    /// The same usage in chat's terms, which every record, metric and price reads.
    fn chat(&self) -> Usage {
        Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self.total_tokens,
            prompt_tokens_details: self.input_tokens_details.as_ref().map(|d| PromptDetails {
                cached_tokens: d.cached_tokens,
                cache_write_tokens: None,
            }),
            completion_tokens_details: self.output_tokens_details.as_ref().map(|d| {
                CompletionDetails {
                    reasoning_tokens: d.reasoning_tokens,
                }
            }),
        }
    }
}

/// A string where one is expected, and nothing (without failing the whole probe) when the
/// member holds something else: item and event shapes grow, and a new shape must not make an
/// answer unreadable.
#[derive(Default)]
struct LenientStr<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list where one is expected, and nothing when the member holds something else (see
/// [`LenientStr`]).
struct LenientList<T>(Option<Vec<T>>);

impl<T> Default for LenientList<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LenientList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LenientList<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element::<T>()? {
                    out.push(x);
                }
                Ok(LenientList(Some(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientList(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(LenientList(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LenientList(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientList(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientList(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientList(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientList(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientList(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn calls(info: &AnswerInfo) -> Vec<(String, String)> {
        info.tool_calls
            .iter()
            .flat_map(|c| c.0.iter())
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect()
    }

    fn response(status: &str, output: serde_json::Value) -> Vec<u8> {
        json!({
            "id": "resp_1", "object": "response", "status": status, "model": "gpt-x",
            "error": null,
            "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { json!(null) },
            "output": output,
            "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4},
                      "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
                      "total_tokens": 14},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_whole_answer_gives_its_facts() {
        let message = json!({"type": "message", "id": "m", "role": "assistant",
            "content": [{"type": "output_text", "text": "hello ", "annotations": []},
                        {"type": "output_text", "text": "there"}]});
        let search = json!({"type": "web_search_call", "id": "ws", "status": "completed",
            "action": {"type": "search", "query": "q"}, "content": "not a list"});
        let call = json!({"type": "function_call", "id": "fc", "call_id": "call_1",
            "name": "get_weather", "arguments": "{}"});
        // (status, output, finish reason, tool calls)
        let cases = [
            ("completed", json!([search, message]), "stop", vec![]),
            (
                "completed",
                json!([call]),
                "tool_calls",
                vec![("call_1".to_owned(), "get_weather".to_owned())],
            ),
            ("incomplete", json!([message]), "length", vec![]),
        ];
        for (status, output, finish, want_calls) in cases {
            let body = response(status, output);
            let (info, usage) = answer_info(&body, true).expect("an answer");
            assert_eq!(info.id.as_deref(), Some("resp_1"));
            assert_eq!(info.model.as_deref(), Some("gpt-x"));
            assert_eq!(info.finish_reasons, [finish], "{status}");
            assert_eq!(calls(&info), want_calls);
            let u = usage.expect("usage");
            assert_eq!(
                (u.prompt_tokens, u.completion_tokens, u.total_tokens),
                (9, 5, 14)
            );
            assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (4, 2));
        }
        let (info, _) = answer_info(&response("completed", json!([message])), true).expect("ok");
        assert_eq!(info.text, "hello there");
        let (info, _) = answer_info(&response("completed", json!([message])), false).expect("ok");
        assert_eq!(
            info.text, "",
            "no copy of the text without capture when usage is known"
        );

        assert_eq!(
            answer_info(&response("failed", json!([])), false).err(),
            Some(AnswerProblem::ErrorObject)
        );
        assert_eq!(
            answer_info(br#"{"error":{"message":"no"}}"#, false).err(),
            Some(AnswerProblem::ErrorObject)
        );
        assert_eq!(
            answer_info(b"<html>", false).err(),
            Some(AnswerProblem::NotJson)
        );
    }

    #[test]
    fn stream_events_are_classified() {
        let ev = |v: serde_json::Value| v.to_string();
        let created = ev(json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_1", "model": "gpt-x", "status": "in_progress", "output": []}}));
        let f = event(created.as_bytes());
        assert_eq!((f.kind, f.sequence_number), (Kind::Other, Some(0)));
        assert_eq!(
            (f.id.as_deref(), f.model.as_deref()),
            (Some("resp_1"), Some("gpt-x"))
        );

        let delta = ev(
            json!({"type": "response.output_text.delta", "sequence_number": 4,
            "item_id": "m", "output_index": 0, "content_index": 0, "delta": "hi"}),
        );
        let f = event(delta.as_bytes());
        assert_eq!((f.kind, f.text.as_deref()), (Kind::Content, Some("hi")));
        let args = ev(json!({"type": "response.function_call_arguments.delta",
            "sequence_number": 5, "delta": "{\""}));
        let f = event(args.as_bytes());
        assert_eq!((f.kind, f.text), (Kind::Content, None));

        let added = ev(
            json!({"type": "response.output_item.added", "sequence_number": 2,
            "output_index": 0, "item": {"type": "function_call", "call_id": "call_1",
            "name": "f", "arguments": ""}}),
        );
        let f = event(added.as_bytes());
        assert_eq!(
            f.call
                .map(|c| (c.id.map(Cow::into_owned), c.name.map(Cow::into_owned))),
            Some((Some("call_1".to_owned()), Some("f".to_owned())))
        );

        let done = ev(json!({"type": "response.incomplete", "sequence_number": 9,
            "response": {"id": "resp_1", "status": "incomplete",
                "incomplete_details": {"reason": "content_filter"},
                "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}}}));
        let f = event(done.as_bytes());
        assert_eq!((f.kind, f.finish), (Kind::End, Some("content_filter")));
        assert_eq!(f.usage.map(|u| u.total_tokens), Some(4));

        for failed in [
            ev(
                json!({"type": "response.failed", "sequence_number": 3, "response": {"status": "failed"}}),
            ),
            ev(
                json!({"type": "error", "sequence_number": 3, "code": "server_error", "message": "x"}),
            ),
        ] {
            assert_eq!(event(failed.as_bytes()).kind, Kind::Error);
        }
        assert_eq!(event(b"not json").kind, Kind::Unknown);
        assert_eq!(event(b"{\"choices\":[]}").kind, Kind::Unknown);
    }

    #[test]
    fn the_judge_reads_the_text_as_chat() {
        let body = response(
            "completed",
            json!([{"type": "web_search_call", "id": "ws"},
                   {"type": "message", "content": [{"type": "output_text", "text": "an answer"}]}]),
        );
        let chat: serde_json::Value =
            serde_json::from_slice(&judge_body(&body).expect("chat")).expect("JSON");
        assert_eq!(chat["choices"][0]["message"]["content"], "an answer");
        let delta = br#"{"type":"response.output_text.delta","sequence_number":4,"delta":"an"}"#;
        let chunk: serde_json::Value =
            serde_json::from_slice(&judge_chunk(delta).expect("chunk")).expect("JSON");
        assert_eq!(chunk["choices"][0]["delta"]["content"], "an");
        assert!(judge_chunk(br#"{"type":"response.created","sequence_number":0}"#).is_none());
    }
}
