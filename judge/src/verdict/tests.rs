use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn reason(content: &str) -> Option<InvalidReason> {
    Verdict::parse(content).err()
}

#[test]
fn a_well_formed_verdict_parses() {
    let v = Verdict::parse(r#"{"score": 0.75, "label": "helpful", "explanation": "Correct."}"#)
        .expect("valid");
    assert_eq!(
        v,
        Verdict {
            score: 0.75,
            label: "helpful".into(),
            explanation: "Correct.".into()
        }
    );
    // Key order is free, integers are numbers, whitespace around the object is JSON.
    let v = Verdict::parse("\n {\"explanation\":\"\",\"label\":\"fail\",\"score\":0}\n")
        .expect("valid");
    assert_eq!(v.score, 0.0);
    assert_eq!(
        Verdict::parse(r#"{"score":1,"label":"x","explanation":""}"#).map(|v| v.score),
        Ok(1.0)
    );
    let v = Verdict::parse(r#"{"score":-0.0,"label":"x","explanation":""}"#).expect("valid");
    assert!(v.score.is_sign_positive(), "-0 is stored as 0");
}

#[test]
fn every_rule_has_its_reason() {
    let long_label = "a".repeat(MAX_LABEL_BYTES + 1);
    let long_explanation = "a".repeat(MAX_EXPLANATION_BYTES + 1);
    let table: Vec<(String, InvalidReason)> = vec![
        ("".into(), InvalidReason::Empty),
        (" \n\t".into(), InvalidReason::Empty),
        (" ".repeat(MAX_VERDICT_BYTES + 1), InvalidReason::TooLong),
        ("The answer is fine.".into(), InvalidReason::NotJson),
        (
            "```json\n{\"score\":1,\"label\":\"x\",\"explanation\":\"\"}\n```".into(),
            InvalidReason::NotJson,
        ),
        (
            "Verdict: {\"score\":1,\"label\":\"x\",\"explanation\":\"\"}".into(),
            InvalidReason::NotJson,
        ),
        (
            "{\"score\":1,\"label\":\"x\",\"explanation\":\"\"} I hope this helps.".into(),
            InvalidReason::NotJson,
        ),
        (
            "{\"score\":1,\"label\":\"x\",\"explanation\":\"\"}{}".into(),
            InvalidReason::NotJson,
        ),
        (
            "{\"score\":NaN,\"label\":\"x\",\"explanation\":\"\"}".into(),
            InvalidReason::NotJson,
        ),
        (
            "{\"score\":Infinity,\"label\":\"x\",\"explanation\":\"\"}".into(),
            InvalidReason::NotJson,
        ),
        (
            "{\"score\":0.5,\"label\":\"x\",\"explanation\":\"\",}".into(),
            InvalidReason::NotJson,
        ),
        (
            "{'score':0.5,'label':'x','explanation':''}".into(),
            InvalidReason::NotJson,
        ),
        (
            "{\"score\":1,\"label\":\"x\"".into(),
            InvalidReason::NotJson,
        ),
        ("[0.5, \"x\", \"\"]".into(), InvalidReason::NotObject),
        ("0.9".into(), InvalidReason::NotObject),
        ("\"{\\\"score\\\":1}\"".into(), InvalidReason::NotObject),
        ("null".into(), InvalidReason::NotObject),
        (
            r#"{"score":1,"score":0,"label":"x","explanation":""}"#.into(),
            InvalidReason::DuplicateKey,
        ),
        (
            r#"{"score":1,"label":"x","explanation":"","confidence":0.9}"#.into(),
            InvalidReason::UnknownKey,
        ),
        (
            r#"{"Score":1,"label":"x","explanation":""}"#.into(),
            InvalidReason::UnknownKey,
        ),
        (
            r#"{"score":1,"label":"x"}"#.into(),
            InvalidReason::MissingKey,
        ),
        ("{}".into(), InvalidReason::MissingKey),
        (
            r#"{"score":"0.9","label":"x","explanation":""}"#.into(),
            InvalidReason::ScoreNotNumber,
        ),
        (
            r#"{"score":null,"label":"x","explanation":""}"#.into(),
            InvalidReason::ScoreNotNumber,
        ),
        (
            r#"{"score":1.5,"label":"x","explanation":""}"#.into(),
            InvalidReason::ScoreOutOfRange,
        ),
        (
            r#"{"score":-0.1,"label":"x","explanation":""}"#.into(),
            InvalidReason::ScoreOutOfRange,
        ),
        (
            r#"{"score":85,"label":"x","explanation":""}"#.into(),
            InvalidReason::ScoreOutOfRange,
        ),
        (
            r#"{"score":1e400,"label":"x","explanation":""}"#.into(),
            InvalidReason::NotJson,
        ),
        (
            r#"{"score":1,"label":3,"explanation":""}"#.into(),
            InvalidReason::LabelNotString,
        ),
        (
            r#"{"score":1,"label":"","explanation":""}"#.into(),
            InvalidReason::LabelEmpty,
        ),
        (
            r#"{"score":1,"label":"  ","explanation":""}"#.into(),
            InvalidReason::LabelEmpty,
        ),
        (
            format!(r#"{{"score":1,"label":"{long_label}","explanation":""}}"#),
            InvalidReason::LabelTooLong,
        ),
        (
            r#"{"score":1,"label":"ok\nrubric","explanation":""}"#.into(),
            InvalidReason::LabelControlCharacter,
        ),
        (
            r#"{"score":1,"label":"x","explanation":null}"#.into(),
            InvalidReason::ExplanationNotString,
        ),
        (
            format!(r#"{{"score":1,"label":"x","explanation":"{long_explanation}"}}"#),
            InvalidReason::ExplanationTooLong,
        ),
    ];
    for (content, expected) in table {
        assert_eq!(reason(&content), Some(expected), "{content:.80}");
    }
}

#[test]
fn reasons_are_snake_case_labels() {
    let all = [
        InvalidReason::Empty,
        InvalidReason::TooLong,
        InvalidReason::NotJson,
        InvalidReason::NotObject,
        InvalidReason::DuplicateKey,
        InvalidReason::UnknownKey,
        InvalidReason::MissingKey,
        InvalidReason::ScoreNotNumber,
        InvalidReason::ScoreOutOfRange,
        InvalidReason::LabelNotString,
        InvalidReason::LabelEmpty,
        InvalidReason::LabelTooLong,
        InvalidReason::LabelControlCharacter,
        InvalidReason::ExplanationNotString,
        InvalidReason::ExplanationTooLong,
    ];
    for r in all {
        let serialized = serde_json::to_value(r).expect("serializes");
        assert_eq!(serialized, Value::String(r.as_str().to_owned()));
        assert!(
            r.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
    }
}

/// The rules, restated independently of the parser, for values that have no duplicate keys.
fn model_accepts(v: &Value) -> bool {
    let Some(o) = v.as_object() else {
        return false;
    };
    let score_ok = o
        .get("score")
        .and_then(Value::as_f64)
        .is_some_and(|s| (0.0..=1.0).contains(&s));
    let label_ok = o.get("label").and_then(Value::as_str).is_some_and(|l| {
        !l.trim().is_empty() && l.len() <= MAX_LABEL_BYTES && !l.chars().any(char::is_control)
    });
    let explanation_ok = o
        .get("explanation")
        .and_then(Value::as_str)
        .is_some_and(|e| e.len() <= MAX_EXPLANATION_BYTES);
    o.len() == 3 && score_ok && label_ok && explanation_ok
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![Just("score"), Just("label"), Just("explanation")].prop_map(String::from),
        1 => prop_oneof![Just("Score"), Just("reason"), Just(""), Just("score ")].prop_map(String::from),
        1 => ".{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-2.0f64..2.0).prop_map(Value::from),
        (0.0f64..=1.0).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,80}".prop_map(Value::String),
        "[a-z_]{1,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects with exactly the three keys and values of every kind: valid about half the time.
fn verdict_shaped() -> impl Strategy<Value = Value> {
    let score = prop_oneof![
        (0.0f64..=1.0).prop_map(Value::from),
        Just(json!(0)),
        Just(json!(1)),
        (-10.0f64..10.0).prop_map(Value::from),
        ".{0,4}".prop_map(Value::String),
        Just(Value::Null),
    ];
    let text = |max: usize| {
        prop_oneof![
            4 => prop::string::string_regex(&format!(".{{0,{max}}}")).expect("regex").prop_map(Value::String),
            1 => "[ \t\n\u{1}]{0,3}".prop_map(Value::String),
            1 => any::<bool>().prop_map(Value::Bool),
        ]
    };
    (score, text(MAX_LABEL_BYTES + 8), text(300))
        .prop_map(|(s, l, e)| json!({"score": s, "label": l, "explanation": e}))
}

fn valid_verdict() -> impl Strategy<Value = Verdict> {
    (
        0.0f64..=1.0,
        "[a-z][a-z_ -]{0,40}[a-z]",
        prop::string::string_regex(".{0,400}").expect("regex"),
    )
        .prop_map(|(score, label, explanation)| Verdict {
            score,
            label,
            explanation,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_text_never_panics_and_only_well_formed_passes(s in any::<String>()) {
        if let Ok(v) = Verdict::parse(&s) {
            let value: Value = serde_json::from_str(&s).expect("accepted text is JSON");
            prop_assert!(model_accepts(&value));
            prop_assert!((0.0..=1.0).contains(&v.score));
        }
    }

    #[test]
    fn json_like_text_never_panics(s in r#"[{}\[\]":,0-9a-z .eE+\-\\]{0,80}"#) {
        if let Ok(v) = Verdict::parse(&s) {
            prop_assert!((0.0..=1.0).contains(&v.score));
            prop_assert!(!v.label.trim().is_empty());
        }
    }

    #[test]
    fn random_json_passes_exactly_when_the_rules_say(v in prop_oneof![json_value(), verdict_shaped()]) {
        let text = serde_json::to_string(&v).expect("serializes");
        let expected = text.len() <= MAX_VERDICT_BYTES && model_accepts(&v);
        prop_assert_eq!(Verdict::parse(&text).is_ok(), expected, "{}", text);
    }

    #[test]
    fn valid_verdicts_round_trip(v in valid_verdict()) {
        let compact = serde_json::to_string(&v).expect("serializes");
        let pretty = format!("\n{}\n", serde_json::to_string_pretty(&v).expect("serializes"));
        for text in [compact, pretty] {
            let back = Verdict::parse(&text);
            prop_assert!(back.is_ok(), "{:?} for {}", back, text);
            let back = back.expect("checked");
            // serde_json's default float parser may be off by one unit in the last place.
            prop_assert!((back.score - v.score).abs() <= 2.0 * f64::EPSILON, "{} vs {}", back.score, v.score);
            prop_assert_eq!(&back.label, &v.label);
            prop_assert_eq!(&back.explanation, &v.explanation);
        }
    }

    #[test]
    fn wrapping_or_extending_a_valid_verdict_invalidates_it(v in valid_verdict(), extra in "[a-z]{1,8}") {
        prop_assume!(!["score", "label", "explanation"].contains(&extra.as_str()));
        let text = serde_json::to_string(&v).expect("serializes");
        let fenced = format!("```json\n{text}\n```");
        prop_assert_eq!(reason(&fenced), Some(InvalidReason::NotJson));
        prop_assert_eq!(reason(&format!("Verdict: {text}")), Some(InvalidReason::NotJson));
        prop_assert_eq!(reason(&format!("{text}\n{extra}")), Some(InvalidReason::NotJson));
        let body = text.strip_prefix('{').expect("an object");
        let with_key = format!("{{\"{extra}\":1,{body}");
        prop_assert_eq!(reason(&with_key), Some(InvalidReason::UnknownKey));
        let duplicated = format!("{{\"label\":\"x\",{body}");
        prop_assert_eq!(reason(&duplicated), Some(InvalidReason::DuplicateKey));
    }
}
