//! Redaction and truncation of captured content (`gen_ai.input.messages`,
//! `gen_ai.output.messages`), so that prompts and answers can be put on spans without
//! e-mail addresses, card numbers or keys, and without blowing attribute size limits.
//!
//! [`Redactor::redact_json`] works on the *string values* of a JSON document (not on its
//! text, so escapes cannot hide a match and the structure survives), then cuts the document
//! to a byte budget while keeping it valid JSON: first every string longer than some cap is
//! shortened (the longest ones pay first), and when that is not enough, trailing array
//! elements and object members are dropped and replaced by a marker.

use std::borrow::Cow;
use std::io::{self, Write};

use regex::{Regex, RegexBuilder};
use serde_json::Value;
use sluice_config::RedactRule;

/// Put where a string was shortened.
pub const TRUNCATED: &str = "…[truncated]";
/// Replacements.
pub const REDACTED_EMAIL: &str = "[REDACTED:email]";
pub const REDACTED_CARD: &str = "[REDACTED:card]";
pub const REDACTED_API_KEY: &str = "[REDACTED:api_key]";
pub const REDACTED_CUSTOM: &str = "[REDACTED]";

const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}";
/// 13 to 19 digits, optionally grouped by single spaces or dashes; Luhn-checked after.
const CARD: &str = r"\b\d(?:[ -]?\d){12,18}\b";
/// OpenAI (`sk-…`, `sk-proj-…`), Anthropic (`sk-ant-…`), AWS access key ids, Google API
/// keys, GitHub and Slack tokens, and `Bearer …` credentials.
const API_KEY: &str = concat!(
    r"\bsk-[A-Za-z0-9_-]{12,}",
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"|\bAIza[0-9A-Za-z_-]{35}",
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}",
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"|(?i:\bbearer)\s+[A-Za-z0-9._~+/-]{8,}=*",
);
/// Shortest a string gets before elements start being dropped.
const STRING_FLOOR: usize = 64;
/// Room kept in a container for the "n more" marker.
const MARKER_RESERVE: usize = 32;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

enum Rule {
    Replace(Regex, &'static str),
    Card(Regex),
}

/// Compiled redaction rules. Build once (at startup or reload), use from any thread.
pub struct Redactor {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Redactor {
    /// Compiles the rules; an error names the custom regex that does not compile (the config
    /// crate checks the same at load, so this fails only for hand-built rules).
    pub fn new(rules: &[RedactRule]) -> Result<Self, String> {
        let compile = |re: &str| {
            RegexBuilder::new(re)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("redaction regex `{re}`: {e}"))
        };
        let mut out = Vec::with_capacity(rules.len());
        for rule in rules {
            out.push(match rule {
                RedactRule::Email => Rule::Replace(compile(EMAIL)?, REDACTED_EMAIL),
                RedactRule::Card => Rule::Card(compile(CARD)?),
                RedactRule::ApiKey => Rule::Replace(compile(API_KEY)?, REDACTED_API_KEY),
                RedactRule::Regex(re) => Rule::Replace(compile(re)?, REDACTED_CUSTOM),
            });
        }
        Ok(Self { rules: out })
    }

    /// Applies every rule to one string; borrows when nothing matched.
    pub fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut cur = Cow::Borrowed(s);
        for rule in &self.rules {
            let next = match rule {
                Rule::Replace(re, with) => match re.replace_all(&cur, *with) {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(o) => Some(o),
                },
                Rule::Card(re) => {
                    let mut changed = false;
                    let replaced = re.replace_all(&cur, |c: &regex::Captures<'_>| {
                        let m = &c[0];
                        if luhn(m) {
                            changed = true;
                            REDACTED_CARD.to_owned()
                        } else {
                            m.to_owned()
                        }
                    });
                    changed.then(|| replaced.into_owned())
                }
            };
            if let Some(next) = next {
                cur = Cow::Owned(next);
            }
        }
        cur
    }

    /// Redacts every string value of `json`, then cuts it to at most `max_bytes` keeping it
    /// valid JSON. Text that is not JSON is redacted and returned as one JSON string.
    ///
    /// The result is at most `max_bytes` long whenever `max_bytes >= 2` (the config allows
    /// 256 and more).
    pub fn redact_json(&self, json: &str, max_bytes: usize) -> String {
        let value = match serde_json::from_str::<Value>(json) {
            Ok(mut v) => {
                self.redact_value(&mut v);
                v
            }
            Err(_) => Value::String(self.redact_str(json).into_owned()),
        };
        truncate_json(&value, max_bytes)
    }

    fn redact_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Cow::Owned(o) = self.redact_str(s) {
                    *s = o;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_value(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.redact_value(i)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// The Luhn check over the digits of `s` (separators ignored).
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// === truncation ===

/// Serialises `v` in at most `max_bytes`, valid JSON whenever `max_bytes >= 2`.
pub fn truncate_json(v: &Value, max_bytes: usize) -> String {
    let full = v.to_string();
    if full.len() <= max_bytes {
        return full;
    }
    // 1. Cap every string at `cap` characters; find the largest cap that fits.
    let longest = longest_string(v).min(max_bytes);
    if longest > STRING_FLOOR && size_capped(v, STRING_FLOOR) <= max_bytes {
        let (mut lo, mut hi) = (STRING_FLOOR, longest);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if size_capped(v, mid) <= max_bytes {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut out = Vec::new();
        if write_capped(v, lo, &mut out).is_ok()
            && let Ok(s) = String::from_utf8(out)
        {
            return s;
        }
    }
    // 2. Still too big: write greedily within the budget, dropping what does not fit.
    match write_budget(v, STRING_FLOOR, max_bytes) {
        Some((s, _)) => s,
        None if max_bytes >= 2 => "\"\"".to_owned(),
        None => String::new(),
    }
}

fn longest_string(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(longest_string).max().unwrap_or(0),
        Value::Object(map) => map.values().map(longest_string).max().unwrap_or(0),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// `s` cut to `cap` characters, with the marker when cut.
fn cap_str(s: &str, cap: usize) -> Cow<'_, str> {
    match s.char_indices().nth(cap) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}{TRUNCATED}", &s[..i])),
    }
}

struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn size_capped(v: &Value, cap: usize) -> usize {
    let mut c = Counter(0);
    match write_capped(v, cap, &mut c) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

fn write_capped<W: Write>(v: &Value, cap: usize, w: &mut W) -> io::Result<()> {
    match v {
        Value::String(s) => serde_json::to_writer(&mut *w, cap_str(s, cap).as_ref())?,
        Value::Array(items) => {
            w.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_capped(item, cap, w)?;
            }
            w.write_all(b"]")?;
        }
        Value::Object(map) => {
            w.write_all(b"{")?;
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, k)?;
                w.write_all(b":")?;
                write_capped(item, cap, w)?;
            }
            w.write_all(b"}")?;
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => serde_json::to_writer(&mut *w, v)?,
    }
    Ok(())
}

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Writes `v` in at most `budget` bytes. `Some((text, complete))`, or `None` when not even a
/// shortened form fits.
fn write_budget(v: &Value, cap: usize, budget: usize) -> Option<(String, bool)> {
    match v {
        Value::String(s) => {
            let capped = cap_str(s, cap);
            let full = json_str(&capped);
            if full.len() <= budget {
                return Some((full, matches!(capped, Cow::Borrowed(_))));
            }
            // The longest prefix that fits with the marker.
            let chars: Vec<(usize, char)> = s.char_indices().collect();
            let fits = |n: usize| {
                let end = chars.get(n).map_or(s.len(), |&(i, _)| i);
                let t = json_str(&format!("{}{TRUNCATED}", &s[..end]));
                (t.len() <= budget).then_some(t)
            };
            let mut best = fits(0)?;
            let (mut lo, mut hi) = (0, chars.len().min(cap));
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                match fits(mid) {
                    Some(t) => {
                        best = t;
                        lo = mid;
                    }
                    None => hi = mid - 1,
                }
            }
            Some((best, false))
        }
        Value::Array(items) => {
            let members = items.iter().map(|i| (None, i));
            write_container(members, items.len(), ('[', ']'), cap, budget)
        }
        Value::Object(map) => {
            let members = map.iter().map(|(k, i)| (Some(k.as_str()), i));
            write_container(members, map.len(), ('{', '}'), cap, budget)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            let s = v.to_string();
            (s.len() <= budget).then_some((s, true))
        }
    }
}

fn write_container<'a>(
    members: impl Iterator<Item = (Option<&'a str>, &'a Value)>,
    len: usize,
    (open, close): (char, char),
    cap: usize,
    budget: usize,
) -> Option<(String, bool)> {
    if budget < 2 {
        return None;
    }
    let mut out = String::from(open);
    let mut written = 0;
    let mut complete = true;
    for (key, item) in members {
        let sep = if written > 0 { 1 } else { 0 };
        let key_text = key.map(|k| format!("{}:", json_str(k)));
        let key_len = key_text.as_ref().map_or(0, String::len);
        let room = budget
            .saturating_sub(out.len() + 1 + MARKER_RESERVE + sep + key_len)
            .min(budget);
        let Some((text, item_complete)) =
            (room > 0).then(|| write_budget(item, cap, room)).flatten()
        else {
            complete = false;
            break;
        };
        if sep == 1 {
            out.push(',');
        }
        if let Some(k) = &key_text {
            out.push_str(k);
        }
        out.push_str(&text);
        written += 1;
        if !item_complete {
            complete = false;
            break;
        }
    }
    let dropped = len - written;
    if dropped > 0 {
        complete = false;
        let note = format!("…[{dropped} more]");
        let marker = match (open, written > 0) {
            ('{', true) => format!(",{}:{}", json_str("…"), json_str(&note)),
            ('{', false) => format!("{}:{}", json_str("…"), json_str(&note)),
            (_, true) => format!(",{}", json_str(&note)),
            (_, false) => json_str(&note),
        };
        if out.len() + marker.len() < budget {
            out.push_str(&marker);
        }
    }
    out.push(close);
    Some((out, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_rules() -> Redactor {
        Redactor::new(&[RedactRule::Email, RedactRule::Card, RedactRule::ApiKey])
            .expect("built-in rules compile")
    }

    #[test]
    fn redacts_each_kind_of_secret() {
        let r = Redactor::new(&[
            RedactRule::Email,
            RedactRule::Card,
            RedactRule::ApiKey,
            RedactRule::Regex("ACME-[0-9]{6}".into()),
        ])
        .expect("compile");
        let cases = [
            (
                "mail me at jane.doe+x@example.co.uk today",
                "mail me at [REDACTED:email] today",
            ),
            ("card 4111 1111 1111 1111 ok", "card [REDACTED:card] ok"),
            ("card 4111-1111-1111-1111", "card [REDACTED:card]"),
            ("card 4111111111111111.", "card [REDACTED:card]."),
            ("amex 378282246310005", "amex [REDACTED:card]"),
            // Fails Luhn: an order number, kept.
            ("order 4111111111111112", "order 4111111111111112"),
            // Too short and too long for a card.
            ("id 123456789012", "id 123456789012"),
            ("id 12345678901234567890123", "id 12345678901234567890123"),
            ("key sk-CANARY-0123456789abcdef", "key [REDACTED:api_key]"),
            ("key sk-proj-AbCdEf0123456789xyz", "key [REDACTED:api_key]"),
            (
                "key sk-ant-api03-AbCdEf0123456789",
                "key [REDACTED:api_key]",
            ),
            ("aws AKIAIOSFODNN7EXAMPLE!", "aws [REDACTED:api_key]!"),
            (
                "Authorization: Bearer abc.def-ghi_jkl==",
                "Authorization: [REDACTED:api_key]",
            ),
            (
                "authorization: bearer eyJhbGciOiJIUzI1NiJ9",
                "authorization: [REDACTED:api_key]",
            ),
            ("ticket ACME-123456 open", "ticket [REDACTED] open"),
            // Not secrets.
            (
                "risk-assessment and task-oriented",
                "risk-assessment and task-oriented",
            ),
            ("sk-short", "sk-short"),
            ("bearer of news", "bearer of news"),
            ("no @ here", "no @ here"),
        ];
        for (input, want) in cases {
            assert_eq!(r.redact_str(input), want, "{input}");
        }
        assert!(matches!(r.redact_str("nothing to see"), Cow::Borrowed(_)));
    }

    #[test]
    fn no_rules_redact_nothing() {
        let r = Redactor::new(&[]).expect("empty");
        assert_eq!(r.redact_str("jane@example.com"), "jane@example.com");
    }

    #[test]
    fn a_bad_custom_regex_is_an_error() {
        let err = Redactor::new(&[RedactRule::Regex("ACME-[0-9".into())]).expect_err("bad");
        assert!(err.starts_with("redaction regex `ACME-[0-9`: "), "{err}");
    }

    #[test]
    fn redacts_string_values_inside_json() {
        let r = default_rules();
        let cases = [
            (
                r#"[{"role":"user","content":"I am jane@example.com, key sk-CANARY-0123456789abcdef"}]"#,
                // (Members come out in key order.)
                r#"[{"content":"I am [REDACTED:email], key [REDACTED:api_key]","role":"user"}]"#,
            ),
            // An escape cannot hide an address: values are matched decoded.
            (
                r#"{"a":"jane\u0040example.com","n":4111111111111111,"ok":true}"#,
                r#"{"a":"[REDACTED:email]","n":4111111111111111,"ok":true}"#,
            ),
            // Not JSON: redacted, and returned as a JSON string.
            ("raw jane@example.com", r#""raw [REDACTED:email]""#),
        ];
        for (input, want) in cases {
            let got = r.redact_json(input, 16384);
            assert_eq!(got, want, "{input}");
            serde_json::from_str::<Value>(&got).expect("valid JSON");
        }
    }

    fn long_chat(n: usize, len: usize) -> String {
        let msgs: Vec<Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "role": if i % 2 == 0 { "user" } else { "assistant" },
                    "parts": [{ "type": "text", "content": format!("{i}:{}", "é".repeat(len)) }],
                })
            })
            .collect();
        Value::Array(msgs).to_string()
    }

    #[test]
    fn truncation_keeps_valid_json_within_the_budget() {
        let r = default_rules();
        let one_huge = serde_json::json!([
            {"role": "system", "content": "x".repeat(50_000)},
            {"role": "user", "content": "short question"},
        ])
        .to_string();
        let table: Vec<(&str, String, usize)> = vec![
            ("fits", r#"{"a":"b"}"#.to_owned(), 256),
            ("one huge string", one_huge.clone(), 1024),
            ("many long messages", long_chat(40, 500), 4096),
            ("thousands of short messages", long_chat(5000, 3), 2048),
            (
                "deep nesting",
                "[[[[[[[[[[\"deep\"]]]]]]]]]]".to_owned(),
                16,
            ),
            (
                "scalar array",
                format!("[{}]", vec!["12345"; 10_000].join(",")),
                300,
            ),
            ("not json", "word ".repeat(10_000), 512),
            ("tiny budget", one_huge, 2),
        ];
        for (name, input, max) in table {
            let got = r.redact_json(&input, max);
            assert!(got.len() <= max, "{name}: {} > {max}", got.len());
            let v: Value = serde_json::from_str(&got)
                .unwrap_or_else(|e| panic!("{name}: invalid JSON {e}: {got}"));
            if name == "fits" {
                assert_eq!(got, input);
            }
            if name == "one huge string" {
                // The long string paid; the short one survived whole.
                assert_eq!(v[1]["content"], "short question", "{got}");
                let sys = v[0]["content"].as_str().expect("string");
                assert!(sys.ends_with(TRUNCATED), "{sys}");
                assert!(got.len() > 900, "uses the budget: {}", got.len());
            }
            if name == "thousands of short messages" {
                let items = v.as_array().expect("array");
                let last = items.last().and_then(Value::as_str).unwrap_or_default();
                assert!(last.starts_with('…') && last.ends_with("more]"), "{last}");
            }
            if name == "many long messages" {
                assert!(got.contains(TRUNCATED), "{name}");
            }
        }
    }

    #[test]
    fn luhn_check() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("0000 0000 0000"), "12 digits is not a card");
    }
}
