//! Fuzz target for the OpenAI request parser (issue 14): [`OpenAiRequest::parse`] and
//! [`OpenAiRequest::upstream_body`] against an oracle built on `serde_json::Value`.
//!
//! Bodies are generated as requests (a JSON tree written out by hand, so it can hold escapes
//! `serde_json` would never write: lone UTF-16 surrogates, escaped member names, odd
//! whitespace), as such requests with a few bytes mutated, or as arbitrary bytes.
//!
//! [`check_request`] asserts: parsing never panics and refuses only with a 400; it accepts a
//! body exactly when the oracle does ([`oracle`]: the body is one JSON object that
//! `serde_json` reads in full — so no lone surrogate, no invalid UTF-8, nothing after it —,
//! nests no deeper than `max_depth`, has no top-level member twice and none of the forbidden
//! ones, and follows the endpoint's rules for `model`, `messages`, `prompt`, `input`, `stream`
//! and `stream_options`); what it reads matches the oracle; and, for the request's own model
//! and another name, `upstream_body` is JSON with that `model`, with
//! `stream_options.include_usage: true` added for a stream (the other `stream_options`
//! members kept), every other member equal to the client's, the original bytes when nothing
//! changes, and a body that parses again to the same request. A body with a number beyond
//! `f64` is valid JSON that `serde_json::Value` cannot hold, so for it only the first promise
//! is checked.

use std::fmt::Write as _;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::string::string_regex;
use serde_json::{Map, Value};

use super::*;
use crate::fuzz::{self, Budget, Shown};

// === inputs ===

/// Part of a JSON string as written: literal text (escaped as needed when written) or an
/// escape sequence written verbatim, valid or not.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Escape(String),
}

/// A JSON value as written, so that strings can hold any escape.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Number(&'static str),
    Str(Vec<Piece>),
    Array(Vec<J>),
    Object(Vec<(Vec<Piece>, J)>),
}

/// A request body: members in order, the whitespace to write between tokens (used in turn),
/// and what follows the closing brace.
#[derive(Debug, Clone)]
struct Doc {
    members: Vec<(Vec<Piece>, J)>,
    ws: Vec<&'static str>,
    after: &'static str,
}

#[derive(Debug, Clone)]
enum Body {
    Doc(Doc),
    /// A doc's bytes with (offset modulo length, new byte or `None` to delete) edits.
    Mutated(Doc, Vec<(usize, Option<u8>)>),
    Bytes(Vec<u8>),
    /// A seed: fixed bytes and, where the issue names the answer, whether they must be
    /// accepted (checked on top of the oracle).
    Seed(Vec<u8>, Option<bool>),
}

#[derive(Clone)]
pub(crate) struct RequestCase {
    body: Body,
    endpoint: Endpoint,
    max_depth: usize,
    /// The target's upstream model name, tried besides the request's own.
    upstream: String,
}

impl std::fmt::Debug for RequestCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCase")
            .field("body", &Shown(&self.bytes()))
            .field("endpoint", &self.endpoint)
            .field("max_depth", &self.max_depth)
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl RequestCase {
    fn bytes(&self) -> Vec<u8> {
        match &self.body {
            Body::Doc(doc) => write_doc(doc),
            Body::Mutated(doc, edits) => {
                let mut b = write_doc(doc);
                for (at, byte) in edits {
                    let at = at % (b.len() + 1);
                    match byte {
                        Some(x) if at < b.len() && at.is_multiple_of(2) => b[at] = *x,
                        Some(x) => b.insert(at, *x),
                        None if at < b.len() => {
                            b.remove(at);
                        }
                        None => {}
                    }
                }
                b
            }
            Body::Bytes(b) | Body::Seed(b, _) => b.clone(),
        }
    }
}

struct Writer<'a> {
    out: String,
    ws: &'a [&'static str],
    next: usize,
}

impl Writer<'_> {
    fn ws(&mut self) {
        if !self.ws.is_empty() {
            self.out.push_str(self.ws[self.next % self.ws.len()]);
            self.next += 1;
        }
    }

    fn string(&mut self, pieces: &[Piece]) {
        self.out.push('"');
        for piece in pieces {
            match piece {
                Piece::Escape(e) => self.out.push_str(e),
                Piece::Text(t) => {
                    for c in t.chars() {
                        match c {
                            '"' => self.out.push_str("\\\""),
                            '\\' => self.out.push_str("\\\\"),
                            c if c < ' ' => {
                                let _ = write!(self.out, "\\u{:04x}", u32::from(c));
                            }
                            c => self.out.push(c),
                        }
                    }
                }
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &J) {
        match v {
            J::Null => self.out.push_str("null"),
            J::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            J::Number(n) => self.out.push_str(n),
            J::Str(s) => self.string(s),
            J::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.ws();
                    self.value(item);
                }
                self.ws();
                self.out.push(']');
            }
            J::Object(members) => self.members(members),
        }
    }

    fn members(&mut self, members: &[(Vec<Piece>, J)]) {
        self.out.push('{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.ws();
            self.string(k);
            self.ws();
            self.out.push(':');
            self.ws();
            self.value(v);
        }
        self.ws();
        self.out.push('}');
    }
}

fn write_doc(doc: &Doc) -> Vec<u8> {
    let mut w = Writer {
        out: String::new(),
        ws: &doc.ws,
        next: 0,
    };
    w.ws();
    w.members(&doc.members);
    w.out.push_str(doc.after);
    w.out.into_bytes()
}

// === the oracle ===

/// What the parser must do with a body.
#[derive(Debug)]
enum Verdict {
    Accept(Map<String, Value>),
    Refuse(String),
    /// Valid JSON that `serde_json::Value` cannot hold (a number beyond `f64`, or nesting
    /// beyond its own limit of 128 when `max_depth` allows that much).
    Unknown,
}

/// How deep the body nests, read by serde from the text: `Value` cannot tell, as it keeps only
/// the last of two members with the same name (`{"a":[[1]],"a":0}`).
fn nesting(body: &[u8]) -> Option<usize> {
    struct Depth;
    impl<'de> de::DeserializeSeed<'de> for Depth {
        type Value = usize;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Depth {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut deepest = 0;
            while let Some(d) = seq.next_element_seed(Depth)? {
                deepest = deepest.max(d);
            }
            Ok(1 + deepest)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut deepest = 0;
            while map.next_key::<de::IgnoredAny>()?.is_some() {
                deepest = deepest.max(map.next_value_seed(Depth)?);
            }
            Ok(1 + deepest)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de::DeserializeSeed::deserialize(Depth, &mut de).ok()
}

/// The top-level member names in order, duplicates kept (`Value` keeps only the last).
fn top_level_names(body: &[u8]) -> Option<Vec<String>> {
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                map.next_value::<de::IgnoredAny>()?;
                names.push(name);
            }
            Ok(names)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de::Deserializer::deserialize_map(&mut de, Names).ok()
}

fn oracle(endpoint: Endpoint, body: &[u8], max_depth: usize) -> Verdict {
    let refuse = |why: &str| Verdict::Refuse(why.to_owned());
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("number out of range") => return Verdict::Unknown,
        Err(e) if e.to_string().contains("recursion limit") && max_depth >= 127 => {
            return Verdict::Unknown;
        }
        Err(e) => return Verdict::Refuse(format!("serde_json: {e}")),
    };
    let Value::Object(map) = value else {
        return refuse("not an object");
    };
    if nesting(body).is_none_or(|d| d > max_depth) {
        return refuse("too deep");
    }
    let names = top_level_names(body).unwrap_or_default();
    if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
        return refuse("a member twice");
    }
    if FORBIDDEN_FIELDS.iter().any(|f| map.contains_key(*f)) {
        return refuse("a forbidden member");
    }
    if map
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return refuse("no model");
    }
    let stream = match map.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return refuse("stream not a boolean"),
    };
    let endpoint_ok = match endpoint {
        Endpoint::ChatCompletions => map
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty()),
        Endpoint::Completions => map.contains_key("prompt"),
        Endpoint::Embeddings => map.get("input").is_some_and(|i| !i.is_null()) && !stream,
        Endpoint::Models
        | Endpoint::Feedback
        | Endpoint::Other
        | Endpoint::Responses
        | Endpoint::Messages
        | Endpoint::MessagesCountTokens => true,
    };
    if !endpoint_ok {
        return refuse("the endpoint's rules");
    }
    match map.get("stream_options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(opts)) => {
            if !matches!(
                opts.get("include_usage"),
                None | Some(Value::Null | Value::Bool(_))
            ) {
                return refuse("include_usage not a boolean");
            }
        }
        Some(_) => return refuse("stream_options not an object"),
    }
    Verdict::Accept(map)
}

// === the property ===

pub(crate) fn check_request(case: &RequestCase) -> Result<(), String> {
    let body = Bytes::from(case.bytes());
    let parsed = OpenAiRequest::parse(case.endpoint, body.clone(), case.max_depth);
    if let Err(e) = &parsed
        && e.status() != 400
    {
        return Err(format!("refused with {}: {e}", e.status()));
    }
    if let Body::Seed(_, Some(must_accept)) = &case.body
        && parsed.is_ok() != *must_accept
    {
        return Err(format!(
            "must {}: {:?}",
            if *must_accept { "accept" } else { "refuse" },
            parsed.as_ref().map(|r| &r.model)
        ));
    }
    match (oracle(case.endpoint, &body, case.max_depth), parsed) {
        (Verdict::Unknown, _) | (Verdict::Refuse(_), Err(_)) => Ok(()),
        (Verdict::Refuse(why), Ok(r)) => Err(format!(
            "accepted (model {:?}) what must be refused: {why}",
            r.model
        )),
        (Verdict::Accept(_), Err(e)) => Err(format!("refused a valid request: {e}")),
        (Verdict::Accept(map), Ok(r)) => {
            check_accepted(&map, &r)?;
            check_upstream(case, &map, &r, &r.model)?;
            check_upstream(case, &map, &r, &case.upstream)
        }
    }
}

fn check_accepted(map: &Map<String, Value>, r: &OpenAiRequest) -> Result<(), String> {
    let wants_usage = map
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));
    let got = (r.model.as_str(), r.stream, r.client_wants_usage);
    let want = (
        map["model"].as_str().unwrap_or_default(),
        map.get("stream") == Some(&Value::Bool(true)),
        wants_usage,
    );
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "read (model, stream, wants usage) {got:?}, the body says {want:?}"
        ))
    }
}

fn check_upstream(
    case: &RequestCase,
    map: &Map<String, Value>,
    r: &OpenAiRequest,
    model: &str,
) -> Result<(), String> {
    let up = r.upstream_body(model);
    let inject = r.stream && !r.client_wants_usage;
    let fail = |why: String| {
        Err(format!(
            "upstream_body({model:?}) = {:?}: {why}",
            Shown(&up)
        ))
    };
    if model == r.model && !inject && up != r.body {
        return fail("changed a body that needed no change".into());
    }
    let Ok(Value::Object(sent)) = serde_json::from_slice::<Value>(&up) else {
        return fail("not a JSON object".into());
    };
    if sent.get("model").and_then(Value::as_str) != Some(model) {
        return fail("wrong model".into());
    }
    for (k, v) in map {
        if k != "model" && k != "stream_options" && sent.get(k) != Some(v) {
            return fail(format!("member `{k}` changed"));
        }
    }
    let extra = sent
        .keys()
        .find(|k| !(map.contains_key(*k) || inject && *k == "stream_options"));
    if let Some(k) = extra {
        return fail(format!("member `{k}` added"));
    }
    let client_opts = map.get("stream_options");
    if inject {
        let mut want = client_opts
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        want.insert("include_usage".into(), Value::Bool(true));
        if sent.get("stream_options") != Some(&Value::Object(want)) {
            return fail("stream_options is not the client's plus include_usage: true".into());
        }
    } else if sent.get("stream_options") != client_opts {
        return fail("stream_options changed".into());
    }
    match OpenAiRequest::parse(case.endpoint, up.clone(), case.max_depth) {
        Ok(again) if again.model == model && again.stream == r.stream => {
            if r.stream && !again.client_wants_usage {
                return fail("a stream that does not ask for usage".into());
            }
            Ok(())
        }
        Ok(again) => fail(format!(
            "parses again as model {:?}, stream {}",
            again.model, again.stream
        )),
        Err(e) => fail(format!("does not parse again: {e}")),
    }
}

// === generators ===

fn text() -> BoxedStrategy<Piece> {
    // Compiled once: a `&str` strategy parses its regex on every value, deep in the recursion
    // of `value()`, and that overflowed the test thread's stack in a debug build.
    string_regex("[a-z0-9 é日🦀{}\\[\\]:,\"\\\\\n\t]{0,8}")
        .expect("a valid regex")
        .prop_map(Piece::Text)
        .boxed()
}

fn escape() -> BoxedStrategy<Piece> {
    let unit = |u: u32| format!("\\u{u:04x}");
    prop_oneof![
        40 => select(vec![
            "\\n", "\\\"", "\\\\", "\\/", "\\b", "\\u00e9", "\\u0041", "\\ud83e\\udd80",
            "\\uD83D\\uDE00", "\\u0000", "\\uffff",
        ])
        .prop_map(str::to_owned),
        // Any pair of a high and a low surrogate, in either case: a valid character.
        4 => (0xD800u32..0xDC00, 0xDC00u32..0xE000, any::<bool>()).prop_map(move |(h, l, upper)| {
            let pair = format!("{}{}", unit(h), unit(l));
            if upper { pair.to_uppercase().replace("\\U", "\\u") } else { pair }
        }),
        // Any code unit: a lone surrogate about once in 32.
        2 => any::<u16>().prop_map(move |u| unit(u32::from(u))),
        // A lone surrogate of any value, or a high one followed by something else.
        1 => (0xD800u32..0xE000).prop_map(unit),
        1 => (0xD800u32..0xDC00, any::<u16>()).prop_map(move |(h, next)| {
            format!("{}{}", unit(h), unit(u32::from(next)))
        }),
        1 => select(vec![
            "\\ud800", "\\udc00", "\\uDBFF", "\\ud800\\u0041", "\\ud800\\ud800", "\\udfff\\ud800",
            "\\ud800\\", "\\u12", "\\uZZZZ", "\\x", "\\ud83e\\udd8",
        ])
        .prop_map(str::to_owned),
    ]
    .prop_map(Piece::Escape)
    .boxed()
}

fn string() -> BoxedStrategy<Vec<Piece>> {
    vec(prop_oneof![4 => text(), 1 => escape()], 0..4).boxed()
}

fn leaf() -> BoxedStrategy<J> {
    prop_oneof![
        1 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        2 => prop_oneof![
            60 => select(vec!["0", "-1", "1.5", "1e3", "-0.0", "12345678901234567890", "1E-7", "0.7"]),
            1 => Just("1e400"),
        ]
        .prop_map(J::Number),
        3 => string().prop_map(J::Str),
    ]
        .boxed()
}

fn value() -> BoxedStrategy<J> {
    leaf()
        .prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(J::Array),
                vec((string(), inner), 0..4).prop_map(J::Object),
            ]
        })
        .boxed()
}

fn plain(s: &str) -> Vec<Piece> {
    vec![Piece::Text(s.to_owned())]
}

/// A member name, sometimes written with escapes that decode to the plain one.
fn name(plain_name: &'static str, escaped: &'static str) -> impl Strategy<Value = Vec<Piece>> {
    prop_oneof![
        6 => Just(plain(plain_name)),
        1 => Just(vec![Piece::Escape(escaped.to_owned())]),
    ]
}

fn message() -> J {
    J::Object(vec![
        (plain("role"), J::Str(plain("user"))),
        (plain("content"), J::Str(plain("hi"))),
    ])
}

/// A request: the usual members, mostly well-formed, plus any others, in any order.
fn doc() -> BoxedStrategy<Doc> {
    let model = prop::option::weighted(
        0.95,
        (
            name("model", "mo\\u0064el"),
            prop_oneof![
                16 => vec(prop_oneof![4 => text(), 1 => escape()], 1..3).prop_map(J::Str),
                1 => Just(J::Str(Vec::new())),
                1 => leaf(),
            ],
        ),
    )
    .boxed();
    let messages = prop::option::weighted(
        0.9,
        (
            name("messages", "m\\u0065ssages"),
            prop_oneof![
                16 => vec(prop_oneof![3 => Just(message()), 1 => value()], 1..3).prop_map(J::Array),
                1 => Just(J::Array(Vec::new())),
                1 => value(),
            ],
        ),
    )
    .boxed();
    let stream = prop::option::weighted(
        0.6,
        (
            name("stream", "str\\u0065am"),
            prop_oneof![8 => any::<bool>().prop_map(J::Bool), 1 => Just(J::Null), 1 => leaf()],
        ),
    )
    .boxed();
    let include_usage = prop::option::of(prop_oneof![
        8 => any::<bool>().prop_map(J::Bool),
        1 => Just(J::Null),
        1 => leaf(),
    ]);
    let options = (include_usage, vec((string(), value()), 0..3)).prop_map(|(usage, rest)| {
        let mut members: Vec<(Vec<Piece>, J)> = rest;
        members.extend(usage.map(|u| (plain("include_usage"), u)));
        J::Object(members)
    });
    let stream_options = prop::option::weighted(
        0.4,
        (
            name("stream_options", "stream_\\u006fptions"),
            prop_oneof![12 => options, 1 => Just(J::Null), 1 => value()],
        ),
    )
    .boxed();
    // What the completions and embeddings endpoints require; chat ignores them.
    let prompt = prop::option::weighted(0.5, value().prop_map(|v| (plain("prompt"), v))).boxed();
    let input = prop::option::weighted(0.5, value().prop_map(|v| (plain("input"), v))).boxed();
    let known = prop_oneof![
        16 => select(vec![
            "temperature", "top_p", "max_tokens", "max_completion_tokens", "tools", "user", "n",
        ]),
        1 => select(FORBIDDEN_FIELDS.to_vec()),
    ];
    let others = vec(
        (
            prop_oneof![3 => known.prop_map(plain), 1 => string()],
            value(),
        ),
        0..4,
    )
    .boxed();
    let ws = prop_oneof![
        3 => Just(Vec::new()),
        1 => vec(select(vec!["", " ", "\n", "\t", "\r\n  "]), 1..4),
    ];
    let after = prop_oneof![
        20 => select(vec!["", " \n", "\t"]),
        1 => select(vec!["}", " x", "{}"]),
    ];
    (
        (model, messages, stream, stream_options, prompt, input),
        others,
        prop::option::weighted(0.05, any::<prop::sample::Index>()),
        ws,
        after,
    )
        .prop_flat_map(
            |((model, messages, stream, opts, prompt, input), others, twice, ws, after)| {
                let mut members: Vec<(Vec<Piece>, J)> =
                    [model, messages, stream, opts, prompt, input]
                        .into_iter()
                        .flatten()
                        .chain(others)
                        .collect();
                if let Some(i) = twice.filter(|_| !members.is_empty()) {
                    let m = members[i.index(members.len())].clone();
                    members.push(m);
                }
                (Just(members).prop_shuffle(), Just(ws), Just(after))
            },
        )
        .prop_map(|(members, ws, after)| Doc { members, ws, after })
        .boxed()
}

fn body() -> BoxedStrategy<Body> {
    let byte = prop_oneof![
        1 => any::<u8>(),
        3 => select(b"{}[]\":,\\u0dD8ae ".to_vec()),
    ];
    prop_oneof![
        8 => doc().prop_map(Body::Doc),
        2 => (doc(), vec((0usize..4096, prop::option::of(byte.clone())), 1..4))
            .prop_map(|(d, e)| Body::Mutated(d, e)),
        1 => vec(byte, 0..64).prop_map(Body::Bytes),
    ]
    .boxed()
}

fn case() -> BoxedStrategy<RequestCase> {
    let endpoint = select(vec![
        Endpoint::ChatCompletions,
        Endpoint::ChatCompletions,
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Other,
    ]);
    let max_depth = prop_oneof![1 => 2usize..=4, 3 => 5usize..=100];
    let upstream = string_regex("[a-zA-Z0-9./:é\"\\\\-]{1,16}").expect("a valid regex");
    (body(), endpoint, max_depth, upstream)
        .prop_map(|(body, endpoint, max_depth, upstream)| RequestCase {
            body,
            endpoint,
            max_depth,
            upstream,
        })
        .boxed()
}

// === seeds and runs ===

fn seeds() -> Vec<(&'static str, RequestCase)> {
    fn chat(body: impl Into<Vec<u8>>, must: Option<bool>, max_depth: usize) -> RequestCase {
        RequestCase {
            body: Body::Seed(body.into(), must),
            endpoint: Endpoint::ChatCompletions,
            max_depth,
            upstream: "gpt-4o-2024-08-06".into(),
        }
    }
    let with = |extra: &str| {
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
    };
    let content = |s: &str| with(&format!(r#","x":"{s}""#));
    let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
    let big = "é".repeat(512 * 1024);
    vec![
        (
            "100k-deep array as the body",
            chat(deep(100_000), Some(false), 128),
        ),
        (
            "100k-deep array in a member",
            chat(with(&format!(",\"x\":{}", deep(100_000))), Some(false), 128),
        ),
        (
            "100k-deep objects",
            chat(
                with(&format!(
                    ",\"x\":{}1{}",
                    "{\"a\":".repeat(100_000),
                    "}".repeat(100_000)
                )),
                Some(false),
                4096,
            ),
        ),
        (
            "nesting at max_depth",
            chat(with(&format!(",\"x\":{}", deep(127))), Some(true), 128),
        ),
        (
            "nesting one over max_depth",
            chat(with(&format!(",\"x\":{}", deep(128))), Some(false), 128),
        ),
        (
            "4096 deep within max_depth 4096",
            chat(with(&format!(",\"x\":{}", deep(4000))), Some(true), 4096),
        ),
        (
            "lone high surrogate in a value",
            chat(content("\\ud800"), Some(false), 128),
        ),
        (
            "lone low surrogate in a value",
            chat(content("\\udc00"), Some(false), 128),
        ),
        (
            "high surrogate then a letter",
            chat(content("\\ud83d\\u0041"), Some(false), 128),
        ),
        (
            "high surrogate at the end of a string",
            chat(content("a\\ud83d"), Some(false), 128),
        ),
        (
            "two high surrogates",
            chat(content("\\ud800\\ud800"), Some(false), 128),
        ),
        (
            "lone surrogate in a member name",
            chat(with(",\"\\udc00\":1"), Some(false), 128),
        ),
        (
            "lone surrogate in the model",
            chat(r#"{"model":"m\ud800","messages":[1]}"#, Some(false), 128),
        ),
        (
            "lone surrogate deep inside",
            chat(with(r#","x":[{"y":["\udfff"]}]"#), Some(false), 128),
        ),
        (
            "valid surrogate pair",
            chat(content("\\ud83e\\udd80"), Some(true), 128),
        ),
        (
            "valid pair in upper case",
            chat(content("\\uD83D\\uDE00"), Some(true), 128),
        ),
        (
            "an escaped backslash before u",
            chat(content("\\\\ud800"), Some(true), 128),
        ),
        (
            "duplicate model",
            chat(
                r#"{"model":"a","model":"b","messages":[1]}"#,
                Some(false),
                128,
            ),
        ),
        (
            "duplicate through an escape",
            chat(
                r#"{"model":"a","mo\u0064el":"b","messages":[1]}"#,
                Some(false),
                128,
            ),
        ),
        (
            "duplicate key nested (allowed)",
            chat(with(r#","x":{"a":1,"a":2}"#), Some(true), 128),
        ),
        (
            "escaped member names",
            chat(
                r#"{"\u006dodel":"m","m\u0065ssages":[1],"str\u0065am":true}"#,
                Some(true),
                128,
            ),
        ),
        (
            "stream without stream_options",
            chat(with(r#","stream":true"#), Some(true), 128),
        ),
        (
            "stream_options null",
            chat(
                with(r#","stream":true,"stream_options":null"#),
                Some(true),
                128,
            ),
        ),
        (
            "include_usage false",
            chat(
                with(r#","stream":true,"stream_options":{"include_usage":false,"x":[1]}"#),
                Some(true),
                128,
            ),
        ),
        (
            "include_usage true",
            chat(
                with(r#","stream":true,"stream_options":{"include_usage":true}"#),
                Some(true),
                128,
            ),
        ),
        (
            "include_usage null",
            chat(
                with(r#","stream":true,"stream_options":{"include_usage":null}"#),
                Some(true),
                128,
            ),
        ),
        (
            "include_usage a string",
            chat(
                with(r#","stream":true,"stream_options":{"include_usage":"yes"}"#),
                Some(false),
                128,
            ),
        ),
        (
            "stream_options an array",
            chat(
                with(r#","stream":true,"stream_options":[]"#),
                Some(false),
                128,
            ),
        ),
        (
            "stream_options before model",
            chat(
                r#"{"stream_options":{"a":1},"stream":true,"model":"m","messages":[1]}"#,
                Some(true),
                128,
            ),
        ),
        (
            "stream_options duplicate include_usage",
            chat(
                with(
                    r#","stream":true,"stream_options":{"include_usage":true,"include_usage":false}"#,
                ),
                None,
                128,
            ),
        ),
        (
            "stream_options without stream",
            chat(
                with(r#","stream_options":{"include_usage":false}"#),
                Some(true),
                128,
            ),
        ),
        ("a 1 MiB string", chat(content(&big), Some(true), 128)),
        (
            "a 1 MiB model name",
            chat(
                format!(r#"{{"model":"{big}","messages":[1]}}"#),
                Some(true),
                128,
            ),
        ),
        (
            "a number beyond f64",
            chat(with(r#","n":1e400"#), None, 128),
        ),
        (
            "whitespace everywhere",
            chat(
                "\r\n{ \"model\" :\t\"m\" , \"messages\" : [ 1 ] , \"stream\" : true }\n",
                Some(true),
                128,
            ),
        ),
        ("trailing garbage", chat(with("") + "x", Some(false), 128)),
        ("two objects", chat(with("") + "{}", Some(false), 128)),
        (
            "invalid UTF-8 in a string",
            chat(
                [
                    &br#"{"model":"m","messages":[{"role":"user","content":"h"#[..],
                    b"\xff\xfe\"}]}",
                ]
                .concat(),
                Some(false),
                128,
            ),
        ),
        (
            "forbidden api_base",
            chat(with(r#","api_base":"http://x""#), Some(false), 128),
        ),
        ("empty body", chat(String::new(), Some(false), 128)),
    ]
}

#[test]
fn request_parser_seeds() {
    let seeds = seeds();
    fuzz::run_seeds("request", &seeds, check_request);
}

#[test]
fn request_parser_fuzz() {
    let budget = Budget {
        cases: 4000,
        time: Duration::from_secs(10),
    };
    fuzz::run("request", budget, case(), check_request);
}
