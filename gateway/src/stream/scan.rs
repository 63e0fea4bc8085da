//! Reading the common chunk without parsing it.
//!
//! Nearly every event of a chat stream is a content delta that tells Sluice nothing but its
//! text: `finish_reason` and `usage` are `null`, and there is no error and no tool call. A
//! full borrowed parse of each such event was the largest share of Sluice's own CPU on a
//! burst stream (profile in `loadtest/RESULTS.md`), so [`chunk`] reads it with one pass over
//! its strings instead — the first chunk's `id` and `model` and the last one's
//! `finish_reason` too — and says "parse it" ([`None`]) whenever the event could say anything
//! more. It never has to be right about the rare case, only sure about the common one: a key
//! or a reason written with escapes, a `finish_reason` anywhere but `choices[]` (or twice in
//! one choice, or in two), a `usage` anywhere but at the top or other than null or an object
//! (the object alone is parsed: the only parse of a usage chunk), a `content` anywhere but
//! `choices[].delta`, a second `content`, a second `id` or `model`, `error`, `tool_calls`,
//! `text`, `function_call`, a raw control byte in a string, or anything that is not one object
//! all fall back to the parse. The property test beside the stream state checks that both
//! readings agree on valid chat-completion chunks.
//!
//! Providers write every chunk of a stream the same way but for its text, so the first delta
//! the scan reads teaches a [`Template`]: the bytes before and after its text. A later chunk
//! with the same bytes around a string is read by comparing them, without the scan. On JSON
//! no provider sends (`choices` an object, a duplicate key elsewhere, a non-string `id`) the
//! scan may count text the parse would not; the bytes are forwarded as they came either way.

use std::borrow::Cow;
use std::ops::Range;

use super::Usage;

/// What a plain content chunk says.
#[derive(Debug, PartialEq, Eq)]
pub enum Plain<'a> {
    /// No text: `content` absent, `null` or empty.
    Nothing,
    /// The delta's text, unescaped.
    Text(Cow<'a, str>),
}

/// Where a container was opened: under which key, if any (array elements and the root have
/// none).
type Frame<'a> = Option<&'a [u8]>;

/// Nesting beyond this is not a chunk Sluice knows; the parse decides.
const MAX_DEPTH: usize = 8;

/// What the scan read from a plain chunk.
#[derive(Debug, PartialEq, Eq)]
pub struct Scanned<'a> {
    pub plain: Plain<'a>,
    /// The choice's `finish_reason`, when it is not null.
    pub finish: Option<&'a str>,
    /// The answer's `id` and `model` (Sluice notes them from the first chunk).
    pub id: Option<&'a str>,
    pub model: Option<&'a str>,
    /// Where the delta's `content` string literal lies in the trimmed data (quotes included),
    /// when it is one: what a [`Template`] is learned from.
    pub literal: Option<Range<usize>>,
    /// The chunk's `usage`, when it is an object (the last chunk of a stream that asked for it).
    pub usage: Option<Usage>,
    /// `choices` is there and empty (as in OpenAI's usage-only chunk).
    pub no_choices: bool,
}

impl<'a> Scanned<'a> {
    /// A chunk that says nothing but its text.
    pub fn text(plain: Plain<'a>) -> Self {
        Self {
            plain,
            finish: None,
            id: None,
            model: None,
            literal: None,
            usage: None,
            no_choices: false,
        }
    }
}

/// The event's text, or `None`: parse it.
#[cfg(test)]
pub fn plain(data: &[u8]) -> Option<Plain<'_>> {
    chunk(data).map(|s| s.plain)
}

/// The event's data read as a plain chunk, or `None`: parse it.
pub fn chunk(data: &[u8]) -> Option<Scanned<'_>> {
    let data = data.trim_ascii();
    if data.first() != Some(&b'{') || data.last() != Some(&b'}') {
        return None;
    }
    let mut stack: [Frame<'_>; MAX_DEPTH] = [None; MAX_DEPTH];
    let mut depth = 0usize;
    // The key whose value comes next, for the container it may open.
    let mut pending: Frame<'_> = None;
    let mut content: Option<Plain<'_>> = None;
    let mut out = Scanned::text(Plain::Nothing);
    // A choice's `finish_reason` key was seen (null or not) in the choice being read.
    let mut finish_key = false;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'{' | b'[' => {
                if depth == MAX_DEPTH {
                    return None;
                }
                stack[depth] = pending.take();
                depth += 1;
                if in_choice(depth, &stack) {
                    finish_key = false;
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                pending = None;
                i += 1;
            }
            b'"' => {
                let (end, escaped) = string_end(data, i + 1)?;
                let after = skip_ws(data, end + 1);
                if data.get(after) != Some(&b':') {
                    // A string value: nothing Sluice reads.
                    pending = None;
                    i = end + 1;
                    continue;
                }
                if escaped {
                    // A key spelled with escapes could be any key.
                    return None;
                }
                let key = &data[i + 1..end];
                let v = skip_ws(data, after + 1);
                match key {
                    b"finish_reason" if in_choice(depth, &stack) => {
                        // One reason per choice (a key written twice is not a chunk the parse
                        // takes), as a plain string or null; anything else is parsed.
                        if std::mem::replace(&mut finish_key, true) {
                            return None;
                        }
                        if data[v..].starts_with(b"null") {
                            i = v + 4;
                        } else {
                            let (value, end) = plain_string(data, v)?;
                            if out.finish.replace(value).is_some() {
                                return None;
                            }
                            i = end + 1;
                        }
                    }
                    _ if data[v..].starts_with(b"null")
                        && matches!(key, b"finish_reason" | b"usage" | b"content") =>
                    {
                        if key == b"content" {
                            if content.is_some() || !in_delta(depth, &stack) {
                                return None;
                            }
                            content = Some(Plain::Nothing);
                        }
                        i = v + 4;
                    }
                    b"content" => {
                        if content.is_some() || !in_delta(depth, &stack) || data[v] != b'"' {
                            return None;
                        }
                        let (end, escaped) = string_end(data, v + 1)?;
                        content = Some(text(&data[v..=end], escaped)?);
                        out.literal = Some(v..end + 1);
                        i = end + 1;
                    }
                    b"usage" if depth == 1 && data.get(v) == Some(&b'{') => {
                        // Only the object is parsed, not the whole chunk around it; the parse
                        // says where the object ends.
                        let mut values =
                            serde_json::Deserializer::from_slice(&data[v..]).into_iter::<Usage>();
                        let usage = values.next()?.ok()?;
                        if out.usage.replace(usage).is_some() {
                            return None;
                        }
                        i = v + values.byte_offset();
                    }
                    b"choices"
                        if depth == 1
                            && data.get(v) == Some(&b'[')
                            && data.get(skip_ws(data, v + 1)) == Some(&b']') =>
                    {
                        out.no_choices = true;
                        i = skip_ws(data, v + 1) + 1;
                    }
                    b"id" | b"model" if depth == 1 && data.get(v) == Some(&b'"') => {
                        let (value, end) = plain_string(data, v)?;
                        let slot = if key == b"id" {
                            &mut out.id
                        } else {
                            &mut out.model
                        };
                        if slot.replace(value).is_some() {
                            return None;
                        }
                        i = end + 1;
                    }
                    b"finish_reason" | b"usage" | b"error" | b"tool_calls" | b"text"
                    | b"function_call" => {
                        return None;
                    }
                    _ => {
                        pending = Some(key);
                        i = v;
                    }
                }
            }
            _ => i += 1,
        }
    }
    if depth != 0 {
        return None;
    }
    if let Some(Plain::Text(t)) = content
        && !t.is_empty()
    {
        out.plain = Plain::Text(t);
    }
    Some(out)
}

/// Whether a key at this depth is a choice's own (`choices[].<key>`).
fn in_choice(depth: usize, stack: &[Frame<'_>; MAX_DEPTH]) -> bool {
    depth == 3 && stack[1] == Some(b"choices") && stack[2].is_none()
}

/// Whether a key at this depth is the delta's own (`choices[].delta.<key>`).
fn in_delta(depth: usize, stack: &[Frame<'_>; MAX_DEPTH]) -> bool {
    depth == 4 && stack[1] == Some(b"choices") && stack[3] == Some(b"delta")
}

/// The string literal opening at `at`, when it has no escapes (a reason, an id), and the
/// index of its closing quote; `None` for anything else.
fn plain_string(data: &[u8], at: usize) -> Option<(&str, usize)> {
    if data.get(at) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string_end(data, at + 1)?;
    if escaped {
        return None;
    }
    Some((std::str::from_utf8(&data[at + 1..end]).ok()?, end))
}

/// The bytes around the content of a plain chunk. A provider writes every chunk of a stream
/// the same way but for the text (the same id, model, creation time and nulls), so once one
/// chunk has been scanned, a later one that starts and ends with the same bytes is read by
/// comparing them and finding where its string ends: the scan would walk the same structure
/// to the same place and come to the same answer. An empty template (the default) reads
/// nothing. Learning again reuses the buffer, so a provider whose frame changes with every
/// chunk (OpenAI's `obfuscation` padding) costs a failed comparison and a copy per chunk, not
/// an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    /// The bytes up to and including the opening quote of the content, then those from its
    /// closing quote on.
    bytes: Vec<u8>,
    /// Where the first part ends.
    split: usize,
}

impl Template {
    /// The template of `data` (see [`Self::learn`]).
    #[cfg(test)]
    pub fn of(data: &[u8], literal: Range<usize>) -> Self {
        let mut t = Self::default();
        t.learn(data, literal);
        t
    }

    /// Learns the frame of `data`, whose content literal (quotes included) lies at `literal`
    /// of the trimmed data (from [`chunk`]); a range that is not one leaves it empty.
    pub fn learn(&mut self, data: &[u8], literal: Range<usize>) {
        let data = data.trim_ascii();
        self.bytes.clear();
        self.split = 0;
        if literal.len() >= 2 && literal.end <= data.len() {
            self.bytes.reserve(data.len() + 2 - literal.len());
            self.bytes.extend_from_slice(&data[..=literal.start]);
            self.split = self.bytes.len();
            self.bytes.extend_from_slice(&data[literal.end - 1..]);
        }
    }

    /// `data` read as the same chunk with other text, or `None` when it is not (scan it).
    pub fn read<'a>(&self, data: &'a [u8]) -> Option<Plain<'a>> {
        if self.bytes.is_empty() {
            return None;
        }
        let (prefix, suffix) = self.bytes.split_at(self.split);
        let data = data.trim_ascii();
        let (open, close) = (prefix.len(), data.len().checked_sub(suffix.len())?);
        if close < open || !data.starts_with(prefix) || !data.ends_with(suffix) {
            return None;
        }
        // The content's first unescaped quote must be the suffix's: otherwise the text holds
        // a quote and the bytes around it are not what they seem.
        let (end, escaped) = string_end(data, open)?;
        if end != close {
            return None;
        }
        Some(match text(&data[open - 1..=close], escaped)? {
            Plain::Text(t) if !t.is_empty() => Plain::Text(t),
            _ => Plain::Nothing,
        })
    }
}

/// The index of the quote that closes the string whose contents start at `from`, and whether
/// it holds escapes. `None` for an unterminated string or a raw control byte (invalid JSON).
fn string_end(data: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    let mut i = from;
    while i < data.len() {
        match data[i] {
            b'"' => return Some((i, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while data.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// A string literal (quotes included) as text: borrowed when it has no escapes, else
/// unescaped by a parse of the literal alone.
fn text(literal: &[u8], escaped: bool) -> Option<Plain<'_>> {
    let t = if escaped {
        Cow::Owned(serde_json::from_slice::<String>(literal).ok()?)
    } else {
        Cow::Borrowed(std::str::from_utf8(&literal[1..literal.len() - 1]).ok()?)
    };
    Some(Plain::Text(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<Plain<'static>> {
        Some(Plain::Text(Cow::Owned(s.to_owned())))
    }

    #[test]
    fn plain_chunks_and_what_falls_back_to_the_parse() {
        let cases: &[(&str, Option<Plain<'_>>)] = &[
            // The common chunk, in OpenAI's spelling and with spaces.
            (
                r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
                t("Hello"),
            ),
            (
                r#" { "choices" : [ { "delta" : { "content" : "a b" } , "finish_reason" : null } ] } "#,
                t("a b"),
            ),
            (
                r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
                Some(Plain::Nothing),
            ),
            (
                r#"{"choices":[{"delta":{"content":null}}]}"#,
                Some(Plain::Nothing),
            ),
            (r#"{"choices":[{"delta":{}}]}"#, Some(Plain::Nothing)),
            (
                r#"{"choices":[{"delta":{"content":"line\nnext \"q\" \u00e9"}}]}"#,
                t("line\nnext \"q\" é"),
            ),
            // Strings that look like keys or markers are values, not keys.
            (
                r#"{"choices":[{"delta":{"content":"\"usage\": {"}}]}"#,
                t("\"usage\": {"),
            ),
            (
                r#"{"model":"usage","choices":[{"delta":{"content":"x"}}]}"#,
                t("x"),
            ),
            (r#"{"choices":[{"delta":{"content":"{[}]"}}]}"#, t("{[}]")),
            // Anything Sluice must read: parse.
            (
                r#"{"choices":[{"delta":{},"finish_reason":"st\u006fp"}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"delta":{},"finish_reason":"stop","finish_reason":null}]}"#,
                None,
            ),
            (r#"{"choices":[{"delta":{"finish_reason":"stop"}}]}"#, None),
            (r#"{"choices":[],"usage":5}"#, None),
            (r#"{"choices":[],"usage":{"prompt_tokens":"1"}}"#, None),
            (r#"{"choices":[{"delta":{},"usage":{}}]}"#, None),
            (r#"{"usage":{"prompt_tokens":1},"usage":{}}"#, None),
            (r#"{"usage":{"prompt_tokens":1}"#, None),
            (r#"{"error":{"message":"x"}}"#, None),
            (
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"text":"legacy","finish_reason":null}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"delta":{"content":"a"},"logprobs":{"content":[]}}]}"#,
                None,
            ),
            (r#"{"content":"top level"}"#, None),
            (r#"{"choices":[{"message":{"content":"x"}}]}"#, None),
            (
                r#"{"choices":[{"delta":{"fin\u0069sh_reason":"stop"}}]}"#,
                None,
            ),
            (r#"{"choices":[{"delta":{"content":1}}]}"#, None),
            // Not one object.
            ("[DONE]", None),
            (r#"{"choices":[{"delta":{"content":"x"}}]"#, None),
            (r#"{"choices":[{"delta":{"content":"x}}]}"#, None),
            ("{\"choices\":[{\"delta\":{\"content\":\"a\nb\"}}]}", None),
            ("", None),
        ];
        for (data, want) in cases {
            assert_eq!(&plain(data.as_bytes()), want, "{data}");
        }
        let deep = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert_eq!(plain(format!("{{\"a\":{deep}}}").as_bytes()), None);
    }

    /// The usage chunk is read by the scan with a parse of its `usage` object alone.
    #[test]
    fn the_usage_object_alone_is_parsed() {
        let totals = |s: &Scanned<'_>| {
            s.usage.map(|u| {
                (
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.total_tokens,
                    u.cached_tokens(),
                )
            })
        };
        let last = br#"{"id":"c","object":"chat.completion.chunk","choices":[ ],"usage":{"prompt_tokens":9,"completion_tokens":16,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"note":"}{]["}}"#;
        let s = chunk(last).expect("read");
        assert!(s.no_choices);
        assert_eq!(totals(&s), Some((9, 16, 25, 4)));
        assert_eq!((s.id, s.plain), (Some("c"), Plain::Nothing));

        // A finish chunk that carries usage too, as some OpenAI-compatible servers send it.
        let finish = br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        let s = chunk(finish).expect("read");
        assert!(!s.no_choices);
        assert_eq!((s.finish, totals(&s)), (Some("stop"), Some((1, 2, 3, 0))));

        // Null usage is no usage; choices that are not empty are not "no choices".
        let s = chunk(br#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#).expect("read");
        assert_eq!((s.usage, s.no_choices), (None, false));
    }

    #[test]
    fn a_template_reads_the_same_chunk_with_other_text_and_nothing_else() {
        let first = r#"{"id":"c","choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        let s = chunk(first.as_bytes()).expect("plain");
        assert_eq!(s.plain, t("Hi").expect("text"));
        let tpl = Template::of(first.as_bytes(), s.literal.expect("a string"));
        let frame = |text: &str| {
            format!(
                r#"{{"id":"c","choices":[{{"delta":{{"content":{text}}},"finish_reason":null}}]}}"#
            )
        };
        let cases: &[(String, Option<Plain<'_>>)] = &[
            (frame(r#"" there""#), t(" there")),
            (frame(r#""""#), Some(Plain::Nothing)),
            (frame(r#""a \"q\" \n""#), t("a \"q\" \n")),
            (format!(" {} ", frame(r#""x""#)), t("x")),
            // Not the same chunk: a quote inside ends the string early, content is not a
            // string, the frame differs, a raw control byte.
            (frame(r#""q","content":"z""#), None),
            (frame("null"), None),
            (first.replace("\"c\"", "\"d\""), None),
            (frame("\"a\u{1}\""), None),
        ];
        for (data, want) in cases {
            assert_eq!(&tpl.read(data.as_bytes()), want, "{data}");
        }
        // Nothing learned, nothing read.
        assert_eq!(Template::default().read(first.as_bytes()), None);
    }

    #[test]
    fn the_first_chunk_and_the_finish_are_read_too() {
        let first = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        let s = chunk(first.as_bytes()).expect("plain");
        assert_eq!(
            (s.plain, s.id, s.model, s.finish),
            (Plain::Nothing, Some("chatcmpl-1"), Some("gpt-x"), None)
        );
        let last = r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":null}"#;
        let s = chunk(last.as_bytes()).expect("plain");
        assert_eq!((s.plain, s.finish), (Plain::Nothing, Some("length")));
        // Two choices, each with its reason: the parse notes both.
        let two = r#"{"choices":[{"finish_reason":"stop"},{"finish_reason":"length"}]}"#;
        assert_eq!(chunk(two.as_bytes()), None);
        // An id written twice, or with escapes: parsed.
        for data in [
            r#"{"id":"a","id":"b","choices":[]}"#,
            r#"{"id":"\u0061","choices":[]}"#,
        ] {
            assert_eq!(chunk(data.as_bytes()), None, "{data}");
        }
        // A nested id is not the answer's.
        let nested = r#"{"choices":[{"delta":{"content":"x"},"x":{"id":"n"}}]}"#;
        assert_eq!(chunk(nested.as_bytes()).expect("plain").id, None);
    }
}
