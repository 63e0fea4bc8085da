//! The strict verdict parser.
//!
//! The judge model is asked for exactly one JSON object `{"score", "label", "explanation"}`.
//! Anything else is an invalid verdict with a reason, counted as `invalid` and never repaired:
//! stripping code fences or pulling an object out of prose would turn a judge that does not
//! follow its contract into scores nobody can trust. The rules:
//!
//! - the content is at most [`MAX_VERDICT_BYTES`] and is one JSON value, with only JSON
//!   whitespace around it (no fences, no prose, no second value);
//! - the value is an object with exactly the keys `score`, `label`, `explanation`, each once
//!   (`serde_json` keeps the last of duplicate keys, so the object is read entry by entry
//!   to see them);
//! - `score` is a JSON number in `[0, 1]` (not a string; JSON has no NaN or infinity);
//! - `label` is a string of 1 to [`MAX_LABEL_BYTES`] bytes, not blank, without control
//!   characters;
//! - `explanation` is a string of at most [`MAX_EXPLANATION_BYTES`] bytes.
//!
//! Nesting depth is bounded by `serde_json`'s recursion limit, and the size by the first rule,
//! so any input costs at most a linear pass.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest verdict accepted, in bytes.
pub const MAX_VERDICT_BYTES: usize = 8 * 1024;
/// Longest label, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;
/// Longest explanation, in bytes.
pub const MAX_EXPLANATION_BYTES: usize = 2000;

/// A well-formed verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// In `[0, 1]`; 1 meets the rubric fully.
    pub score: f64,
    pub label: String,
    pub explanation: String,
}

/// Why a verdict was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// Nothing but whitespace.
    Empty,
    /// Over [`MAX_VERDICT_BYTES`].
    TooLong,
    /// Not exactly one JSON value: prose, code fences, trailing text, a bare `NaN`.
    NotJson,
    /// A JSON value that is not an object.
    NotObject,
    DuplicateKey,
    UnknownKey,
    MissingKey,
    ScoreNotNumber,
    ScoreOutOfRange,
    LabelNotString,
    LabelEmpty,
    LabelTooLong,
    LabelControlCharacter,
    ExplanationNotString,
    ExplanationTooLong,
}

// === impl Verdict ===

impl Verdict {
    /// Parses a judge model's reply content.
    pub fn parse(content: &str) -> Result<Self, InvalidReason> {
        if content.len() > MAX_VERDICT_BYTES {
            return Err(InvalidReason::TooLong);
        }
        if content.trim().is_empty() {
            return Err(InvalidReason::Empty);
        }
        let entries = match serde_json::from_str::<Top>(content) {
            Ok(Top::Object(entries)) => entries,
            Ok(Top::Other) => return Err(InvalidReason::NotObject),
            Err(_) => return Err(InvalidReason::NotJson),
        };
        let (mut score, mut label, mut explanation) = (None, None, None);
        for (key, value) in entries {
            let slot = match key.as_str() {
                "score" => &mut score,
                "label" => &mut label,
                "explanation" => &mut explanation,
                _ => return Err(InvalidReason::UnknownKey),
            };
            if slot.replace(value).is_some() {
                return Err(InvalidReason::DuplicateKey);
            }
        }
        let (Some(score), Some(label), Some(explanation)) = (score, label, explanation) else {
            return Err(InvalidReason::MissingKey);
        };
        Ok(Self {
            score: read_score(&score)?,
            label: read_label(label)?,
            explanation: read_explanation(explanation)?,
        })
    }
}

fn read_score(v: &Value) -> Result<f64, InvalidReason> {
    let Value::Number(n) = v else {
        return Err(InvalidReason::ScoreNotNumber);
    };
    let score = n.as_f64().ok_or(InvalidReason::ScoreNotNumber)?;
    if !(0.0..=1.0).contains(&score) {
        return Err(InvalidReason::ScoreOutOfRange);
    }
    // `-0` is in range; store it as 0 so equal scores compare and print the same.
    Ok(score + 0.0)
}

fn read_label(v: Value) -> Result<String, InvalidReason> {
    let Value::String(label) = v else {
        return Err(InvalidReason::LabelNotString);
    };
    if label.trim().is_empty() {
        return Err(InvalidReason::LabelEmpty);
    }
    if label.len() > MAX_LABEL_BYTES {
        return Err(InvalidReason::LabelTooLong);
    }
    if label.chars().any(char::is_control) {
        return Err(InvalidReason::LabelControlCharacter);
    }
    Ok(label)
}

fn read_explanation(v: Value) -> Result<String, InvalidReason> {
    let Value::String(explanation) = v else {
        return Err(InvalidReason::ExplanationNotString);
    };
    if explanation.len() > MAX_EXPLANATION_BYTES {
        return Err(InvalidReason::ExplanationTooLong);
    }
    Ok(explanation)
}

/// One JSON value: an object's entries in order, duplicates kept, or anything else.
enum Top {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value::<Value>()?));
        }
        Ok(Top::Object(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::Other)
    }
}

// === impl InvalidReason ===

impl InvalidReason {
    /// A label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::NotJson => "not_json",
            Self::NotObject => "not_object",
            Self::DuplicateKey => "duplicate_key",
            Self::UnknownKey => "unknown_key",
            Self::MissingKey => "missing_key",
            Self::ScoreNotNumber => "score_not_number",
            Self::ScoreOutOfRange => "score_out_of_range",
            Self::LabelNotString => "label_not_string",
            Self::LabelEmpty => "label_empty",
            Self::LabelTooLong => "label_too_long",
            Self::LabelControlCharacter => "label_control_character",
            Self::ExplanationNotString => "explanation_not_string",
            Self::ExplanationTooLong => "explanation_too_long",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
