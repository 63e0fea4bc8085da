//! Parsing an OpenAI request body once, and rewriting it per attempt without re-parsing.
//!
//! The body is validated as JSON in full, but only the top-level members are located: each
//! member is kept as a byte span into the original body, so a 2 MiB chat is never copied into
//! a `serde_json::Value`. Per attempt the upstream body is spliced from those spans with the
//! target's model name and the injected `stream_options`; when nothing changes, the original
//! `Bytes` is sent as is.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;
use sluice_config::OpenAiCompat;
use sluice_observability::{Endpoint, RequestParams};

use crate::error::GatewayError;

/// Body fields that would let a client pick an upstream host or credential; Sluice's policy
/// alone decides those, so they are refused rather than silently dropped.
const FORBIDDEN_FIELDS: [&str; 4] = ["api_base", "base_url", "api_key", "custom_llm_provider"];

/// A parsed OpenAI request: the original body plus what Sluice needs to know about it.
#[derive(Debug, Clone)]
pub struct OpenAiRequest {
    pub endpoint: Endpoint,
    pub body: Bytes,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage: true`).
    pub client_wants_usage: bool,
    /// Parameters recorded on the request's span.
    pub params: RequestParams,
    model_span: Range<usize>,
    stream_options_span: Option<Range<usize>>,
    /// The other members of `stream_options`, kept when Sluice injects `include_usage`.
    stream_options_rest: Vec<(String, Box<RawValue>)>,
}

#[derive(Default)]
struct Members<'a> {
    /// (key, value span) for each top-level member, in order. Keys borrow from the body
    /// unless they contain escapes.
    spans: Vec<(Cow<'a, str>, Range<usize>)>,
}

// === impl OpenAiRequest ===

impl OpenAiRequest {
    /// Parses `body`; values may nest at most `max_depth` deep.
    pub fn parse(endpoint: Endpoint, body: Bytes, max_depth: usize) -> Result<Self, GatewayError> {
        check_bounds(&body, max_depth)?;
        let members = parse_members(&body)?;
        let value = |name: &str| -> Option<&[u8]> {
            members
                .spans
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, r)| &body[r.clone()])
        };
        if let Some((k, _)) = members
            .spans
            .iter()
            .find(|(k, _)| FORBIDDEN_FIELDS.contains(&&**k))
        {
            return Err(GatewayError::invalid(
                format!(
                    "`{k}` is not accepted: Sluice chooses the provider from its routing policy"
                ),
                None,
            ));
        }

        let (model_key, model_span) = members
            .spans
            .iter()
            .find(|(k, _)| k == "model")
            .ok_or_else(|| GatewayError::invalid("`model` is required", Some("model")))?;
        debug_assert_eq!(model_key, "model");
        let model: String = serde_json::from_slice(&body[model_span.clone()])
            .map_err(|_| GatewayError::invalid("`model` must be a string", Some("model")))?;
        if model.is_empty() {
            return Err(GatewayError::invalid(
                "`model` must not be empty",
                Some("model"),
            ));
        }

        let stream = match value("stream") {
            None | Some(b"null") => false,
            Some(b"true") => true,
            Some(b"false") => false,
            Some(_) => {
                return Err(GatewayError::invalid(
                    "`stream` must be a boolean",
                    Some("stream"),
                ));
            }
        };

        match endpoint {
            Endpoint::ChatCompletions => {
                // The body already parsed as JSON, so a value opening with `[` is an array;
                // only emptiness needs a look, not a second parse of every message.
                let ok = value("messages").is_some_and(|v| {
                    v.first() == Some(&b'[')
                        && v[1..].iter().find(|b| !b.is_ascii_whitespace()) != Some(&b']')
                });
                if !ok {
                    return Err(GatewayError::invalid(
                        "`messages` must be a non-empty array of messages",
                        Some("messages"),
                    ));
                }
            }
            Endpoint::Completions => {
                if value("prompt").is_none() {
                    return Err(GatewayError::invalid(
                        "`prompt` is required",
                        Some("prompt"),
                    ));
                }
            }
            Endpoint::Embeddings => {
                if value("input").is_none_or(|v| v == b"null") {
                    return Err(GatewayError::invalid("`input` is required", Some("input")));
                }
                if stream {
                    return Err(GatewayError::invalid(
                        "embeddings cannot be streamed",
                        Some("stream"),
                    ));
                }
            }
            Endpoint::Models
            | Endpoint::Feedback
            | Endpoint::Other
            | Endpoint::Responses
            | Endpoint::Messages
            | Endpoint::MessagesCountTokens => {}
        }

        let number = |name: &str| value(name).and_then(|v| serde_json::from_slice::<f64>(v).ok());
        let params = RequestParams {
            temperature: number("temperature"),
            top_p: number("top_p"),
            max_tokens: value("max_completion_tokens")
                .or_else(|| value("max_tokens"))
                .and_then(|v| serde_json::from_slice::<u64>(v).ok()),
            tool_names: value("tools").map(tool_names).unwrap_or_default(),
            conversation_id: value("metadata").and_then(conversation_id),
            tool_call_ids: match value("messages") {
                Some(m) if contains(m, b"\"tool_call_id\"") => tool_call_ids(m),
                _ => Vec::new(),
            },
        };

        let mut client_wants_usage = false;
        let mut stream_options_rest = Vec::new();
        let stream_options_span = members
            .spans
            .iter()
            .find(|(k, _)| k == "stream_options")
            .map(|(_, r)| r.clone());
        if let Some(span) = &stream_options_span {
            let raw = &body[span.clone()];
            if raw != b"null" {
                let opts: Vec<(String, Box<RawValue>)> = serde_json::from_slice::<
                    serde_json::Map<String, serde_json::Value>,
                >(raw)
                .map_err(|_| {
                    GatewayError::invalid(
                        "`stream_options` must be an object",
                        Some("stream_options"),
                    )
                })?
                .into_iter()
                .filter_map(|(k, v)| serde_json::value::to_raw_value(&v).ok().map(|raw| (k, raw)))
                .collect();
                for (k, v) in opts {
                    if k == "include_usage" {
                        client_wants_usage = match v.get() {
                            "true" => true,
                            "false" | "null" => false,
                            _ => {
                                return Err(GatewayError::invalid(
                                    "`stream_options.include_usage` must be a boolean",
                                    Some("stream_options"),
                                ));
                            }
                        };
                    } else {
                        stream_options_rest.push((k, v));
                    }
                }
            }
        }

        Ok(Self {
            endpoint,
            model,
            stream,
            client_wants_usage,
            params,
            model_span: model_span.clone(),
            stream_options_span,
            stream_options_rest,
            body,
        })
    }

    /// The body to send for one attempt: `model` replaced by the target's upstream name and,
    /// for streams, `stream_options.include_usage` forced on so Sluice always sees usage.
    pub fn upstream_body(&self, upstream_model: &str) -> Bytes {
        let inject_usage = self.stream && !self.client_wants_usage;
        if upstream_model == self.model && !inject_usage {
            return self.body.clone();
        }
        // Written straight into one buffer, in body order: no string per edit.
        let mut out = BytesMut::with_capacity(self.body.len() + upstream_model.len() + 64);
        let options_span = if inject_usage {
            self.stream_options_span.as_ref()
        } else {
            None
        };
        let mut edits = [
            Some((&self.model_span, Edit::Model)),
            options_span.map(|span| (span, Edit::StreamOptions)),
        ];
        if let [Some((model, _)), Some((options, _))] = &edits
            && options.start < model.start
        {
            edits.swap(0, 1);
        }
        let mut cursor = 0;
        for (range, edit) in edits.into_iter().flatten() {
            out.put_slice(&self.body[cursor..range.start]);
            match edit {
                Edit::Model => put_json_str(&mut out, upstream_model),
                Edit::StreamOptions => self.put_stream_options(&mut out),
            }
            cursor = range.end;
        }
        if inject_usage && self.stream_options_span.is_none() {
            // Add the member just before the closing brace of the top-level object.
            let close = self.body[cursor..]
                .iter()
                .rposition(|b| *b == b'}')
                .map_or(self.body.len(), |p| cursor + p);
            out.put_slice(&self.body[cursor..close]);
            out.put_slice(b",\"stream_options\":");
            self.put_stream_options(&mut out);
            out.put_slice(&self.body[close..]);
        } else {
            out.put_slice(&self.body[cursor..]);
        }
        out.freeze()
    }

    /// The body for an OpenAI-compatible server with quirks: as [`Self::upstream_body`], then
    /// changed as `compat` says. Only providers with quirks pay for this parse.
    pub fn compat_body(&self, upstream_model: &str, compat: &OpenAiCompat) -> Bytes {
        let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(&self.body) else {
            // The body was checked to be a JSON object when it arrived.
            return self.upstream_body(upstream_model);
        };
        obj.insert("model".to_owned(), upstream_model.into());
        if !compat.stream_usage {
            // A server that refuses the field refuses the client's own too.
            obj.remove("stream_options");
        } else if self.stream && !self.client_wants_usage {
            let opts = obj
                .entry("stream_options")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let Some(o) = opts.as_object_mut() {
                o.insert("include_usage".to_owned(), true.into());
            }
        }
        if let Some(field) = compat.max_tokens_field
            && let Some(cap) = obj.remove(field.other())
        {
            // Both given: the one the server reads wins, as it would have without Sluice.
            obj.entry(field.as_str()).or_insert(cap);
        }
        if compat.developer_as_system
            && let Some(messages) = obj.get_mut("messages").and_then(|m| m.as_array_mut())
        {
            for m in messages {
                if m.get("role").and_then(|r| r.as_str()) == Some("developer") {
                    m["role"] = "system".into();
                }
            }
        }
        for f in &compat.drop_fields {
            obj.remove(f);
        }
        serde_json::to_vec(&obj).map_or_else(|_| self.upstream_body(upstream_model), Bytes::from)
    }

    /// `stream_options` with `include_usage` on and the client's other options kept.
    fn put_stream_options(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"include_usage\":true");
        for (k, v) in &self.stream_options_rest {
            out.put_u8(b',');
            put_json_str(out, k);
            out.put_u8(b':');
            out.put_slice(v.get().as_bytes());
        }
        out.put_u8(b'}');
    }
}

/// Which part of the body an upstream body replaces.
#[derive(Clone, Copy)]
enum Edit {
    Model,
    StreamOptions,
}

/// `s` as a JSON string literal.
fn put_json_str(out: &mut BytesMut, s: &str) {
    // Writing into memory cannot fail.
    let _ = serde_json::to_writer(out.writer(), s);
}

/// The function names of a `tools` array; anything unexpected is skipped, not an error
/// (the provider validates tools).
fn tool_names(raw: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Tool {
        #[serde(default)]
        function: Option<Function>,
    }
    #[derive(serde::Deserialize)]
    struct Function {
        name: String,
    }
    serde_json::from_slice::<Vec<Tool>>(raw)
        .map(|tools| {
            tools
                .into_iter()
                .filter_map(|t| t.function.map(|f| f.name))
                .collect()
        })
        .unwrap_or_default()
}

/// Longest conversation id kept; a longer one is not an id anyone will search for.
const MAX_CONVERSATION_ID: usize = 256;

/// `metadata.conversation_id` (or `metadata.session_id`), the places OpenAI-style clients
/// and agent frameworks put a thread's id. `user` is not used: it names a person, and one
/// person has many conversations.
pub fn conversation_id(metadata: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        conversation_id: Option<String>,
        #[serde(default)]
        session_id: Option<String>,
    }
    let m: Metadata = serde_json::from_slice(metadata).ok()?;
    m.conversation_id
        .or(m.session_id)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.len() <= MAX_CONVERSATION_ID)
}

/// The `tool_call_id`s of the `tool` messages, at most `MAX_TOOL_CALL_IDS` (the last ones:
/// the results of the latest step), each at most 128 bytes.
fn tool_call_ids(messages: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Message {
        #[serde(default)]
        tool_call_id: Option<String>,
    }
    let Ok(list) = serde_json::from_slice::<Vec<Message>>(messages) else {
        return Vec::new();
    };
    let ids: Vec<String> = list
        .into_iter()
        .filter_map(|m| m.tool_call_id)
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .collect();
    let skip = ids
        .len()
        .saturating_sub(sluice_observability::MAX_TOOL_CALL_IDS);
    ids.into_iter().skip(skip).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Checks what serde's borrowed pass does not: how deep values nest (a skipped value is not
/// depth-limited, so `[[[[…` 100k deep would pass and reach the provider) and that every
/// `\u` escape names a real character (a lone UTF-16 surrogate is not one, and providers
/// answer it with a 400 in their own shape). One forward pass over the bytes.
pub fn check_bounds(body: &[u8], max_depth: usize) -> Result<(), GatewayError> {
    let mut depth = 0usize;
    let mut i = 0;
    let n = body.len();
    while i < n {
        match body[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(GatewayError::invalid(
                        format!("the request body nests JSON deeper than {max_depth} levels"),
                        None,
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                i += 1;
                while i < n {
                    match body[i] {
                        b'"' => break,
                        b'\\' if body.get(i + 1) == Some(&b'u') => {
                            let unit = hex4(body, i + 2).ok_or_else(|| bad_escape(i))?;
                            i += 6;
                            if (0xD800..0xDC00).contains(&unit) {
                                // A high surrogate must be followed by a low one.
                                let low = (body.get(i) == Some(&b'\\')
                                    && body.get(i + 1) == Some(&b'u'))
                                .then(|| hex4(body, i + 2))
                                .flatten()
                                .filter(|u| (0xDC00..0xE000).contains(u));
                                if low.is_none() {
                                    return Err(lone_surrogate(i - 6));
                                }
                                i += 6;
                            } else if (0xDC00..0xE000).contains(&unit) {
                                return Err(lone_surrogate(i - 6));
                            }
                            continue;
                        }
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn hex4(body: &[u8], at: usize) -> Option<u32> {
    let digits = body.get(at..at + 4)?;
    std::str::from_utf8(digits)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .filter(|_| digits.iter().all(u8::is_ascii_hexdigit))
}

fn bad_escape(at: usize) -> GatewayError {
    GatewayError::invalid(
        format!("the request body has an invalid `\\u` escape at byte {at}"),
        None,
    )
}

fn lone_surrogate(at: usize) -> GatewayError {
    GatewayError::invalid(
        format!(
            "the request body has a lone UTF-16 surrogate escape at byte {at}; a string must hold valid Unicode"
        ),
        None,
    )
}

/// Validates the whole body as one JSON object and records each top-level member's span.
fn parse_members(body: &[u8]) -> Result<Members<'_>, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let members = MembersSeed {
        base: body.as_ptr() as usize,
    }
    .deserialize(&mut de)
    .map_err(|e| invalid_json(&e))?;
    de.end().map_err(|e| invalid_json(&e))?;
    Ok(members)
}

fn invalid_json(e: &serde_json::Error) -> GatewayError {
    let message = if e.column() > 0 {
        format!(
            "the request body is not a valid JSON object: {} at line {} column {}",
            describe(e),
            e.line(),
            e.column()
        )
    } else {
        // serde_json has no position for a wrong top-level type.
        format!(
            "the request body is not a valid JSON object: {}",
            describe(e)
        )
    };
    GatewayError::invalid(message, None)
}

/// The serde_json message without its trailing position (we print our own).
fn describe(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

struct MembersSeed {
    base: usize,
}

impl MembersSeed {
    fn deserialize<'de, D: de::Deserializer<'de>>(self, d: D) -> Result<Members<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MembersSeed {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut members = Members::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            // RawValue borrows from the body, so its offset is where the member's value sits.
            let start = raw.get().as_ptr() as usize - self.base;
            if members.spans.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            members.spans.push((key, start..start + raw.get().len()));
        }
        Ok(members)
    }
}

/// A member name that borrows from the body when it has no escapes (serde's own `Cow`
/// impl always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
