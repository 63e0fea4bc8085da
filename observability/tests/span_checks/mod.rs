//! Span building without a collector: GenAI semantic-convention compliance, names, kinds,
//! parent links, explicit timestamps, error spans and content.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::SpanData;
use sluice_observability::semconv as sc;
use sluice_observability::spans::{build_spans, format_traceparent, random_id, traceparent};
use sluice_observability::{Endpoint, RequestRecord};

use crate::common::*;

fn keys(span: &SpanData) -> BTreeSet<&str> {
    span.attributes.iter().map(|kv| kv.key.as_str()).collect()
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// What a compliant span of `r` must carry: the operation's required and recommended
/// attributes, less the documented never-emitted ones and the conditional ones whose
/// condition does not hold.
fn expected(r: &RequestRecord, client: bool) -> BTreeSet<&'static str> {
    let all = if r.endpoint == Endpoint::Embeddings {
        sc::EMBEDDINGS_REQUIRED_AND_RECOMMENDED
    } else {
        sc::INFERENCE_REQUIRED_AND_RECOMMENDED
    };
    let not_emitted: BTreeSet<&str> = sc::NOT_EMITTED.iter().map(|(k, _)| *k).collect();
    let reasoning = r.usage.is_some_and(|u| u.reasoning > 0);
    all.iter()
        .copied()
        .filter(|k| !not_emitted.contains(k))
        .filter(|&k| k != sc::ERROR_TYPE)
        .filter(|&k| r.stream || k != sc::GEN_AI_REQUEST_STREAM)
        .filter(|&k| r.stream || k != sc::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        .filter(|&k| reasoning || k != sc::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)
        .filter(|&k| client || (k != sc::SERVER_ADDRESS && k != sc::SERVER_PORT))
        .collect()
}

/// gen_ai.* keys Sluice may emit at all.
fn known_gen_ai() -> BTreeSet<&'static str> {
    sc::INFERENCE_REQUIRED_AND_RECOMMENDED
        .iter()
        .chain(sc::EMBEDDINGS_REQUIRED_AND_RECOMMENDED)
        .copied()
        .chain([
            sc::GEN_AI_TOOL_DEFINITIONS,
            sc::GEN_AI_INPUT_MESSAGES,
            sc::GEN_AI_OUTPUT_MESSAGES,
        ])
        .collect()
}

#[test]
fn required_and_recommended_attributes_are_present_and_deprecated_ones_absent() {
    let cases = [
        ("chat", chat(1)),
        ("streaming chat", streaming_chat(2)),
        ("embeddings", embeddings(3)),
    ];
    let known = known_gen_ai();
    for (name, r) in cases {
        let spans = build_spans(&r, None);
        assert_eq!(spans.len(), 2, "{name}");
        for (i, span) in spans.iter().enumerate() {
            let client = i > 0;
            let have = keys(span);
            let missing: Vec<_> = expected(&r, client).difference(&have).copied().collect();
            assert!(missing.is_empty(), "{name} span {i}: missing {missing:?}");
            for deprecated in sc::DEPRECATED {
                assert!(!have.contains(deprecated), "{name} span {i}: {deprecated}");
            }
            for k in have.iter().filter(|k| k.starts_with("gen_ai.")) {
                assert!(known.contains(k), "{name} span {i}: unexpected {k}");
            }
            assert!(
                !have.contains(sc::ERROR_TYPE),
                "{name}: no error, no error.type"
            );
            assert_eq!(span.status, Status::Unset, "{name} span {i}");
        }
        let (server, client) = (&spans[0], &spans[1]);
        let op = if r.endpoint == Endpoint::Embeddings {
            "embeddings"
        } else {
            "chat"
        };
        assert_eq!(
            attr(server, sc::GEN_AI_OPERATION_NAME),
            Some(&Value::from(op))
        );
        assert_eq!(
            attr(client, sc::GEN_AI_PROVIDER_NAME),
            Some(&Value::from("openai"))
        );
        assert_eq!(
            attr(server, sc::GEN_AI_PROVIDER_NAME),
            Some(&Value::from("openai"))
        );
        assert_eq!(
            attr(server, sc::GEN_AI_REQUEST_MODEL),
            Some(&Value::from(r.request_model.clone().unwrap_or_default()))
        );
        let upstream = r.attempts[0].upstream_model.to_string();
        assert_eq!(
            attr(client, sc::GEN_AI_REQUEST_MODEL),
            Some(&Value::from(upstream.clone()))
        );
        assert_eq!(client.name, format!("{op} {upstream}"));
        assert_eq!(
            server.name,
            format!("{op} {}", r.request_model.clone().unwrap_or_default())
        );
        assert_eq!(
            attr(client, sc::SERVER_ADDRESS),
            Some(&Value::from("api.openai.com"))
        );
        assert_eq!(attr(client, sc::SERVER_PORT), Some(&Value::I64(443)));
        assert_eq!(
            attr(server, sc::SLUICE_ROUTE),
            r.route.clone().map(Value::from).as_ref()
        );
        assert_eq!(attr(client, sc::SLUICE_ATTEMPT), Some(&Value::I64(0)));
    }
}

#[test]
fn attribute_values_of_a_streaming_chat() {
    let r = streaming_chat(2);
    let spans = build_spans(&r, None);
    let (server, client) = (&spans[0], &spans[1]);
    for span in [server, client] {
        assert_eq!(
            attr(span, sc::GEN_AI_REQUEST_STREAM),
            Some(&Value::Bool(true))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_REQUEST_TEMPERATURE),
            Some(&Value::F64(0.2))
        );
        assert_eq!(attr(span, sc::GEN_AI_REQUEST_TOP_P), Some(&Value::F64(0.9)));
        assert_eq!(
            attr(span, sc::GEN_AI_REQUEST_MAX_TOKENS),
            Some(&Value::I64(256))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_USAGE_INPUT_TOKENS),
            Some(&Value::I64(300))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_USAGE_OUTPUT_TOKENS),
            Some(&Value::I64(90))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
            Some(&Value::I64(0))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
            Some(&Value::I64(30))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_RESPONSE_ID),
            Some(&Value::from("chatcmpl-2"))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_RESPONSE_FINISH_REASONS),
            Some(&Value::Array(Array::String(vec![
                "stop".into(),
                "length".into()
            ])))
        );
        assert_eq!(
            attr(span, sc::GEN_AI_TOOL_DEFINITIONS),
            Some(&Value::from(
                r#"[{"name":"get_weather","type":"function"},{"name":"search_docs","type":"function"}]"#
            ))
        );
    }
    // Time to first chunk: from the request's start on the server span, from the attempt's
    // start (5 ms later) on the client span.
    assert_eq!(
        attr(server, sc::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        Some(&Value::F64(0.18))
    );
    let Some(Value::F64(client_ttft)) = attr(client, sc::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    else {
        panic!("client ttft");
    };
    assert!((client_ttft - 0.175).abs() < 1e-9, "{client_ttft}");
    assert_eq!(
        attr(server, sc::SLUICE_USAGE_ESTIMATED),
        Some(&Value::Bool(true))
    );
    assert_eq!(attr(server, sc::SLUICE_CHUNKS), Some(&Value::I64(17)));
    assert_eq!(
        attr(server, sc::SLUICE_TENANT),
        Some(&Value::from("search"))
    );
    assert_eq!(
        attr(server, sc::SLUICE_REQUEST_ID),
        Some(&Value::from("req-2"))
    );
    assert_eq!(attr(server, sc::SLUICE_COST_USD), Some(&Value::F64(0.0007)));
    assert_eq!(
        attr(server, sc::HTTP_ROUTE),
        Some(&Value::from("/v1/chat/completions"))
    );
}

#[test]
fn kinds_parents_and_explicit_timestamps() {
    let r = failed_twice(4);
    let spans = build_spans(&r, None);
    assert_eq!(spans.len(), 3);
    let server = &spans[0];
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(
        server.parent_span_id,
        SpanId::INVALID,
        "no traceparent: a root span"
    );
    assert_eq!(server.start_time, at(0));
    assert_eq!(server.end_time, at(1_300));
    assert_eq!(server.status, Status::error("upstream_timeout"));
    assert_eq!(
        attr(server, sc::ERROR_TYPE),
        Some(&Value::from("upstream_timeout"))
    );
    assert_eq!(
        attr(server, sc::HTTP_RESPONSE_STATUS_CODE),
        Some(&Value::I64(504))
    );
    assert_eq!(attr(server, sc::SLUICE_ATTEMPTS), Some(&Value::I64(2)));
    let server_id = server.span_context.span_id();
    for (i, (span, (error, start, end, status))) in spans[1..]
        .iter()
        .zip([
            ("server_error", 5, 105, Some(503)),
            ("timeout", 150, 1_150, None),
        ])
        .enumerate()
    {
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.parent_span_id, server_id, "attempt {i}");
        assert!(!span.parent_span_is_remote);
        assert_eq!(span.span_context.trace_id(), TraceId::from_bytes([4; 16]));
        assert_eq!(span.start_time, at(start), "attempt {i}");
        assert_eq!(span.end_time, at(end), "attempt {i}");
        assert_eq!(span.status, Status::error(error));
        assert_eq!(attr(span, sc::ERROR_TYPE), Some(&Value::from(error)));
        assert_eq!(
            attr(span, sc::HTTP_RESPONSE_STATUS_CODE),
            status.map(Value::I64).as_ref()
        );
        assert_eq!(attr(span, sc::SLUICE_ATTEMPT), Some(&Value::I64(i as i64)));
        assert_eq!(attr(span, sc::GEN_AI_RESPONSE_MODEL), None, "no answer");
        assert_eq!(attr(span, sc::GEN_AI_USAGE_INPUT_TOKENS), None);
    }
    assert_ne!(
        spans[1].span_context.span_id(),
        spans[2].span_context.span_id()
    );

    // With an incoming traceparent the server span continues the caller's trace.
    let mut r = chat(5);
    r.trace = traceparent(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        random_id,
    );
    let spans = build_spans(&r, None);
    let server = &spans[0];
    assert_eq!(
        server.span_context.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
    );
    assert_eq!(
        server.parent_span_id,
        SpanId::from_hex("00f067aa0ba902b7").expect("hex")
    );
    assert!(server.parent_span_is_remote);
    assert_eq!(spans[1].parent_span_id, server.span_context.span_id());
    let header = format_traceparent(&r.trace);
    assert!(
        header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{header}"
    );
    assert_eq!(
        &header[36..52],
        server.span_context.span_id().to_string(),
        "the response header names Sluice's span"
    );
}

#[test]
fn the_mock_provider_and_a_request_without_attempts() {
    let mut r = chat(6);
    r.attempts[0].provider_kind = "mock";
    let spans = build_spans(&r, None);
    assert_eq!(
        attr(&spans[1], sc::GEN_AI_PROVIDER_NAME),
        Some(&Value::from("sluice.mock"))
    );

    // Refused before routing: one server span, provider "sluice".
    let mut r = chat(7);
    r.attempts.clear();
    r.status = 401;
    r.outcome = sluice_observability::Outcome::ClientError;
    r.error_type = Some(sluice_observability::ErrorKind::InvalidApiKey);
    r.request_model = None;
    let spans = build_spans(&r, None);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "chat");
    assert_eq!(
        attr(&spans[0], sc::GEN_AI_PROVIDER_NAME),
        Some(&Value::from("sluice"))
    );
    assert_eq!(
        attr(&spans[0], sc::ERROR_TYPE),
        Some(&Value::from("invalid_api_key"))
    );
    assert_eq!(
        spans[0].status,
        Status::Unset,
        "a client error is not the server's"
    );
    assert_eq!(
        spans[0].end_time - Duration::from_millis(250),
        spans[0].start_time
    );
}

#[test]
fn cache_results_are_marked_on_the_server_span() {
    // A cache hit: answered by Sluice alone, one server span that says so.
    let mut r = chat(8);
    r.attempts.clear();
    r.usage = None;
    r.cost_usd = None;
    r.cache = Some("hit");
    let spans = build_spans(&r, None);
    assert_eq!(spans.len(), 1);
    assert_eq!(
        attr(&spans[0], sc::SLUICE_CACHE_HIT),
        Some(&Value::from(true))
    );
    assert_eq!(
        attr(&spans[0], sc::SLUICE_CACHE_RESULT),
        Some(&Value::from("hit"))
    );
    let mut r = chat(9);
    r.cache = Some("miss");
    let spans = build_spans(&r, None);
    assert_eq!(
        attr(&spans[0], sc::SLUICE_CACHE_HIT),
        Some(&Value::from(false))
    );
    // Routes without a cache say nothing about it.
    let spans = build_spans(&chat(10), None);
    assert_eq!(attr(&spans[0], sc::SLUICE_CACHE_HIT), None);
}

#[test]
fn content_goes_only_where_asked_and_only_as_given() {
    let mut r = chat(8);
    r.content = Some(canary_content());
    // Without content passed in, nothing of the record's content shows.
    for span in build_spans(&r, None) {
        for kv in &span.attributes {
            let v = kv.value.as_str();
            assert!(
                !v.contains(CANARY_KEY) && !v.contains(CANARY_EMAIL),
                "{}",
                kv.key
            );
        }
        assert_eq!(attr(&span, sc::GEN_AI_INPUT_MESSAGES), None);
    }
    // Given content lands on the answering attempt's span only.
    let given = sluice_observability::CapturedContent {
        input: "[]".into(),
        output: r#"[{"role":"assistant"}]"#.into(),
    };
    let spans = build_spans(&r, Some(&given));
    assert_eq!(attr(&spans[0], sc::GEN_AI_INPUT_MESSAGES), None);
    assert_eq!(
        attr(&spans[1], sc::GEN_AI_INPUT_MESSAGES),
        Some(&Value::from("[]"))
    );
    assert_eq!(
        attr(&spans[1], sc::GEN_AI_OUTPUT_MESSAGES),
        Some(&Value::from(r#"[{"role":"assistant"}]"#))
    );
}
