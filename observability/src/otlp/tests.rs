//! What is written decodes, with the protocol's generated types, to exactly what
//! `opentelemetry-proto`'s own conversion of the same spans gives.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;

use super::*;
use crate::record::{AttemptOutcome, AttemptRecord, Outcome, RequestRecord};
use crate::spans::{Evaluation, build_spans, evaluation_span};

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("sluice")
        .with_attributes([
            KeyValue::new("service.instance.id", "i-1"),
            KeyValue::new("host.cpu.count", 2_i64),
        ])
        .with_schema_url([], "https://opentelemetry.io/schemas/1.37.0")
        .build()
}

/// The SDK's request for the same spans, scopes in the order they first appear.
fn expected(spans: &[SpanData], resource: &Resource) -> ExportTraceServiceRequest {
    if spans.is_empty() {
        return ExportTraceServiceRequest::default();
    }
    let resource = ResourceAttributesWithSchema::from(resource);
    let mut resource_spans = group_spans_by_resource_and_scope(spans.to_vec(), &resource);
    let order: Vec<String> = spans
        .iter()
        .map(|s| s.instrumentation_scope.name().to_owned())
        .fold(Vec::new(), |mut seen, name| {
            if !seen.contains(&name) {
                seen.push(name);
            }
            seen
        });
    for rs in &mut resource_spans {
        rs.scope_spans.sort_by_key(|ss| {
            let name = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            order.iter().position(|n| *n == name)
        });
    }
    ExportTraceServiceRequest { resource_spans }
}

fn roundtrip(spans: &[SpanData]) {
    let resource = resource();
    let bytes = TraceEncoder::new(&resource).encode(spans);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, expected(spans, &resource));
}

fn scope(name: &'static str) -> InstrumentationScope {
    InstrumentationScope::builder(name)
        .with_version("1.2.3")
        .with_schema_url("https://example.com/schema")
        .with_attributes([KeyValue::new("scope.attr", true)])
        .build()
}

fn span(name: &str, attributes: Vec<KeyValue>) -> SpanData {
    let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes([7; 16]),
            SpanId::from_bytes([8; 8]),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from_bytes([9; 8]),
        parent_span_is_remote: true,
        span_kind: SpanKind::Client,
        name: Cow::Owned(name.to_owned()),
        start_time: start,
        end_time: start + Duration::from_millis(250),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope("sluice"),
    }
}

#[test]
fn an_empty_batch_is_an_empty_request() {
    assert!(TraceEncoder::new(&resource()).encode(&[]).is_empty());
    roundtrip(&[]);
}

#[test]
fn every_kind_of_value_and_the_defaults_a_oneof_keeps() {
    let attrs = vec![
        KeyValue::new("s", "text"),
        KeyValue::new("empty", ""),
        KeyValue::new("t", true),
        KeyValue::new("f", false),
        KeyValue::new("zero", 0_i64),
        KeyValue::new("neg", -1_i64),
        KeyValue::new("min", i64::MIN),
        KeyValue::new("max", i64::MAX),
        KeyValue::new("pi", std::f64::consts::PI),
        KeyValue::new("negzero", -0.0_f64),
        KeyValue::new("inf", f64::INFINITY),
        KeyValue::new("unicode", "é ✓ 𝄞 \u{0}"),
        KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("ints", Value::Array(Array::I64(vec![0, -5, 300]))),
        KeyValue::new("floats", Value::Array(Array::F64(vec![0.5, 0.0]))),
        KeyValue::new(
            "strings",
            Value::Array(Array::String(vec![
                StringValue::from(""),
                StringValue::from("b"),
            ])),
        ),
        KeyValue::new("none", Value::Array(Array::I64(Vec::new()))),
        KeyValue::new("", "empty key"),
    ];
    roundtrip(&[span("values", attrs)]);
}

#[test]
fn every_span_field() {
    let mut s = span("chat gpt-4o", vec![KeyValue::new("a", 1_i64)]);
    s.span_context = SpanContext::new(
        TraceId::from_bytes([0xab; 16]),
        SpanId::from_bytes([0xcd; 8]),
        TraceFlags::default(),
        true,
        TraceState::from_key_value([("vendor", "value"), ("other", "x")]).unwrap(),
    );
    s.span_kind = SpanKind::Server;
    s.dropped_attributes_count = 3;
    s.status = Status::error("upstream_timeout");
    s.events.events.push(Event::new(
        "gen_ai.tool.message",
        s.start_time + Duration::from_millis(1),
        vec![KeyValue::new("gen_ai.tool.call.id", "call_1")],
        2,
    ));
    s.events
        .events
        .push(Event::new("bare", s.start_time, Vec::new(), 0));
    s.events.dropped_count = 4;
    s.links.links.push(Link::new(
        SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("k", "v")]).unwrap(),
        ),
        vec![KeyValue::new("link.attr", "x")],
        1,
    ));
    s.links.dropped_count = 5;
    let mut ok = span("ok", Vec::new());
    ok.status = Status::Ok;
    ok.span_kind = SpanKind::Producer;
    ok.parent_span_id = SpanId::INVALID;
    ok.parent_span_is_remote = false;
    let mut consumer = span("consumer", Vec::new());
    consumer.span_kind = SpanKind::Consumer;
    let mut internal = span("internal", Vec::new());
    internal.span_kind = SpanKind::Internal;
    // Before the epoch: the SDK writes 0 and so does this.
    internal.start_time = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
    roundtrip(&[s, ok, consumer, internal]);
}

/// Lengths on each side of a varint's byte boundaries, at every level of nesting: the
/// attribute value, its `AnyValue`, the `KeyValue`, the span, the scope and resource spans.
#[test]
fn lengths_across_every_varint_boundary() {
    for len in [
        0, 1, 100, 117, 118, 119, 120, 121, 125, 126, 127, 128, 129, 200, 16_250, 16_371, 16_372,
        16_373, 16_380, 16_383, 16_384, 16_385, 40_000, 2_097_151, 2_097_152, 2_200_000,
    ] {
        let value = "x".repeat(len);
        roundtrip(&[span("big", vec![KeyValue::new("v", value)])]);
    }
}

#[test]
fn spans_group_by_scope_in_the_order_scopes_first_appear() {
    let mut judge = span("evaluate", Vec::new());
    judge.instrumentation_scope = scope("sluice-judge");
    let batch = [
        span("one", Vec::new()),
        judge.clone(),
        span("two", Vec::new()),
        judge,
    ];
    roundtrip(&batch);
    let bytes = TraceEncoder::new(&resource()).encode(&batch);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    let names: Vec<Vec<&str>> = decoded.resource_spans[0]
        .scope_spans
        .iter()
        .map(|ss| ss.spans.iter().map(|s| s.name.as_str()).collect())
        .collect();
    assert_eq!(names, [vec!["one", "two"], vec!["evaluate", "evaluate"]]);
}

#[test]
fn a_resource_without_attributes_or_schema() {
    let empty = Resource::builder_empty().build();
    let spans = [span("a", Vec::new())];
    let bytes = TraceEncoder::new(&empty).encode(&spans);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, expected(&spans, &empty));
}

/// Sluice's own spans: a served request with two attempts and tool calls, and a verdict.
#[test]
fn sluice_request_and_evaluation_spans() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    let attempt = |i: u8, outcome| AttemptRecord {
        provider: Arc::from("mock-llm"),
        provider_kind: "openai",
        model: Arc::from("bench"),
        upstream_model: Arc::from("gpt-4o-mini"),
        server_address: Some("127.0.0.1".to_owned()),
        server_port: Some(8081),
        span_id: [i; 8],
        start,
        duration: Duration::from_millis(40),
        outcome,
        status: Some(200),
    };
    let record = RequestRecord {
        start,
        model: Some(Arc::from("bench")),
        request_model: Some("bench".to_owned()),
        route: Some(Arc::from("default")),
        tenant: Some(Arc::from("team-a")),
        attempts: vec![
            attempt(3, AttemptOutcome::ServerError),
            attempt(4, AttemptOutcome::Ok),
        ],
        cost_usd: Some(0.000_42),
        time_to_first_chunk: Some(Duration::from_millis(12)),
        chunks: 17,
        ..crate::testing::record(Outcome::Ok)
    };
    let mut spans = build_spans(&record, None);
    spans.push(evaluation_span(&Evaluation {
        trace_id: [1; 16],
        parent_span_id: [2; 8],
        name: "helpfulness".to_owned(),
        outcome: "scored",
        score: Some(0.8),
        label: Some("good".to_owned()),
        explanation: None,
        response_id: Some("chatcmpl-1".to_owned()),
        route: Some("default".to_owned()),
        judge_model: "judge".to_owned(),
        start,
        duration: Duration::from_millis(300),
    }));
    assert_eq!(spans.len(), 4);
    roundtrip(&spans);
}

#[test]
fn varint_lengths() {
    for (v, len) in [
        (0_u64, 1),
        (1, 1),
        (127, 1),
        (128, 2),
        (16_383, 2),
        (16_384, 3),
        (2_097_151, 3),
        (2_097_152, 4),
        (u64::MAX, 10),
    ] {
        assert_eq!(varint_len(v), len, "{v}");
        let mut buf = Vec::new();
        varint(&mut buf, v);
        assert_eq!(buf.len(), len, "{v}");
    }
}
