//! End to end: `SpanPipeline` against real OTLP receivers on loopback, a tonic
//! `TraceService` for gRPC and a hyper server decoding `ExportTraceServiceRequest` protobuf
//! for HTTP, plus the span-building checks in `span_checks`.

mod common;
mod span_checks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use sluice_config::{OtlpConfig, OtlpProtocol, SampleConfig, TelemetryConfig};
use sluice_observability::semconv as sc;
use sluice_observability::{ExportCounters, Flags, RequestRecord, SpanPipeline};

use common::*;

// === receivers ===

type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

struct Receiver {
    addr: SocketAddr,
    received: Received,
    /// For the HTTP receiver: the paths requests came to.
    paths: Arc<Mutex<Vec<String>>>,
    faults: Faults,
    _rt: tokio::runtime::Runtime,
}

/// Calls answered so far, and how many of the next ones to refuse (gRPC with `code`, HTTP
/// with `status`) before accepting again.
#[derive(Clone, Default)]
struct Faults {
    calls: Arc<AtomicUsize>,
    refuse: Arc<AtomicUsize>,
    code: Arc<Mutex<Option<tonic::Code>>>,
    status: Arc<AtomicU16>,
}

impl Faults {
    fn grpc(&self, n: usize, code: tonic::Code) {
        *lock(&self.code) = Some(code);
        self.refuse.store(n, Ordering::SeqCst);
    }

    fn http(&self, n: usize, status: u16) {
        self.status.store(status, Ordering::SeqCst);
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// Counts a call; `true` when it is to be refused.
    fn refuses(&self) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct GrpcSink(Received, Faults);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.1.refuses() {
            let code = lock(&self.1.code).unwrap_or(tonic::Code::Unavailable);
            return Err(tonic::Status::new(code, "refused by the test"));
        }
        lock(&self.0).push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Receiver {
    fn grpc() -> Self {
        let rt = runtime();
        let received = Received::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let faults = Faults::default();
        let service = TraceServiceServer::new(GrpcSink(Arc::clone(&received), faults.clone()));
        rt.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self {
            addr,
            received,
            paths: Arc::default(),
            faults,
            _rt: rt,
        }
    }

    fn http() -> Self {
        let rt = runtime();
        let received = Received::default();
        let paths: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let faults = Faults::default();
        let (r, p, f) = (Arc::clone(&received), Arc::clone(&paths), faults.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, p, f) = (Arc::clone(&r), Arc::clone(&p), f.clone());
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the test's OTLP receiver, not Sluice"
                )]
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            handle_http(req, Arc::clone(&r), Arc::clone(&p), f.clone())
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            paths,
            faults,
            _rt: rt,
        }
    }

    fn spans(&self) -> Vec<(HashMap<String, Any>, String, Span)> {
        let mut out = Vec::new();
        for req in lock(&self.received).iter() {
            for rs in &req.resource_spans {
                let resource: HashMap<String, Any> = rs
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect();
                for ss in &rs.scope_spans {
                    let scope = ss
                        .scope
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    assert_eq!(ss.schema_url, sc::SCHEMA_URL);
                    for span in &ss.spans {
                        out.push((resource.clone(), scope.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }
}

async fn handle_http(
    req: hyper::Request<hyper::body::Incoming>,
    received: Received,
    paths: Arc<Mutex<Vec<String>>>,
    faults: Faults,
) -> Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, hyper::Error> {
    lock(&paths).push(req.uri().path().to_owned());
    let body = req.into_body().collect().await?.to_bytes();
    if faults.refuses() {
        let mut resp = hyper::Response::new(http_body_util::Full::default());
        *resp.status_mut() = hyper::StatusCode::from_u16(faults.status.load(Ordering::SeqCst))
            .unwrap_or(hyper::StatusCode::SERVICE_UNAVAILABLE);
        resp.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("0"),
        );
        return Ok(resp);
    }
    let status = match ExportTraceServiceRequest::decode(body) {
        Ok(decoded) => {
            lock(&received).push(decoded);
            hyper::StatusCode::OK
        }
        Err(_) => hyper::StatusCode::BAD_REQUEST,
    };
    let reply = ExportTraceServiceResponse {
        partial_success: None,
    }
    .encode_to_vec();
    let mut resp = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(reply)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(resp)
}

// === helpers ===

fn config(endpoint: String, protocol: OtlpProtocol, head_ratio: f64) -> TelemetryConfig {
    TelemetryConfig {
        otlp: Some(OtlpConfig {
            timeout: Duration::from_secs(5),
            batch_size: 4,
            export_interval: Duration::from_millis(50),
            ..OtlpConfig::new(endpoint, protocol)
        }),
        sample: SampleConfig {
            head_ratio,
            ..SampleConfig::default()
        },
        ..TelemetryConfig::default()
    }
}

fn grpc_config(rx: &Receiver, head_ratio: f64) -> TelemetryConfig {
    config(
        format!("http://{}", rx.addr),
        OtlpProtocol::Grpc,
        head_ratio,
    )
}

fn attrs(span: &Span) -> HashMap<&str, &AnyValue> {
    span.attributes
        .iter()
        .filter_map(|kv: &KeyValue| Some((kv.key.as_str(), kv.value.as_ref()?.value.as_ref()?)))
        .collect()
}

fn string(v: &str) -> AnyValue {
    AnyValue::StringValue(v.to_owned())
}

fn nanos(t: std::time::SystemTime) -> u64 {
    u64::try_from(
        t.duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_nanos(),
    )
    .expect("fits")
}

fn four_records() -> Vec<RequestRecord> {
    vec![chat(1), streaming_chat(2), embeddings(3), failed_twice(4)]
}

/// Offers `records`, shuts the pipeline down (flushing) and returns the counters.
fn run(cfg: &TelemetryConfig, records: &[RequestRecord]) -> (ExportCounters, Vec<bool>) {
    let counters = ExportCounters::default();
    let pipeline = SpanPipeline::start(cfg, counters.clone()).expect("start");
    let sink = pipeline.sink();
    let kept = records
        .iter()
        .map(|r| sink.offer(r, None, Flags::default()))
        .collect();
    pipeline.shutdown(Duration::from_secs(10));
    (counters, kept)
}

fn check_four(rx: &Receiver) {
    let spans = rx.spans();
    assert_eq!(spans.len(), 9, "2 + 2 + 2 + 3 spans");
    let records = four_records();
    for (resource, scope, _) in &spans {
        assert_eq!(
            resource.get(sc::SERVICE_NAME).and_then(|v| v.value.clone()),
            Some(string("sluice"))
        );
        assert!(resource.contains_key(sc::SERVICE_VERSION));
        assert_eq!(scope, sc::SCOPE_NAME);
    }
    for r in &records {
        let mine: Vec<&Span> = spans
            .iter()
            .map(|(_, _, s)| s)
            .filter(|s| s.trace_id == r.trace.trace_id)
            .collect();
        assert_eq!(mine.len(), 1 + r.attempts.len(), "{}", r.request_id);
        let server = mine
            .iter()
            .find(|s| s.kind == SpanKind::Server as i32)
            .expect("server span");
        assert_eq!(server.span_id, r.trace.span_id);
        assert!(server.parent_span_id.is_empty(), "root span");
        assert_eq!(server.start_time_unix_nano, nanos(r.start));
        assert_eq!(server.end_time_unix_nano, nanos(r.start + r.duration));
        let a = attrs(server);
        assert_eq!(a.get(sc::SLUICE_REQUEST_ID), Some(&&string(&r.request_id)));
        assert_eq!(
            a.get(sc::SLUICE_SAMPLED_BY),
            Some(&&string(if r.status == 200 { "head" } else { "error" }))
        );
        assert!(!a.contains_key("gen_ai.system"));
        for (i, attempt) in r.attempts.iter().enumerate() {
            let client = mine
                .iter()
                .find(|s| s.span_id == attempt.span_id)
                .expect("attempt span");
            assert_eq!(client.kind, SpanKind::Client as i32);
            assert_eq!(client.parent_span_id, r.trace.span_id);
            assert_eq!(client.start_time_unix_nano, nanos(attempt.start));
            assert_eq!(
                client.end_time_unix_nano,
                nanos(attempt.start + attempt.duration)
            );
            let a = attrs(client);
            assert_eq!(
                a.get(sc::SLUICE_ATTEMPT),
                Some(&&AnyValue::IntValue(i as i64))
            );
            assert_eq!(a.get(sc::GEN_AI_PROVIDER_NAME), Some(&&string("openai")));
            assert_eq!(a.get(sc::SERVER_PORT), Some(&&AnyValue::IntValue(443)));
            let failed = attempt.outcome != sluice_observability::AttemptOutcome::Ok;
            assert_eq!(a.contains_key(sc::ERROR_TYPE), failed);
            // Status code 2 is ERROR in OTLP.
            let code = client.status.as_ref().map_or(0, |s| s.code);
            assert_eq!(code == 2, failed, "{} attempt {i}", r.request_id);
        }
    }
    let stream = spans
        .iter()
        .map(|(_, _, s)| s)
        .find(|s| s.trace_id == [2; 16] && s.kind == SpanKind::Server as i32)
        .expect("stream server span");
    let a = attrs(stream);
    assert_eq!(
        a.get(sc::GEN_AI_REQUEST_STREAM),
        Some(&&AnyValue::BoolValue(true))
    );
    assert_eq!(
        a.get(sc::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        Some(&&AnyValue::DoubleValue(0.18))
    );
    assert_eq!(
        a.get(sc::GEN_AI_USAGE_INPUT_TOKENS),
        Some(&&AnyValue::IntValue(300))
    );
    assert_eq!(stream.name, "chat gpt-4o");
}

// === tests ===

#[test]
fn grpc_receiver_gets_every_span_at_ratio_one() {
    let rx = Receiver::grpc();
    let (counters, kept) = run(&grpc_config(&rx, 1.0), &four_records());
    assert_eq!(kept, [true; 4]);
    check_four(&rx);
    assert_eq!(counters.exported.get(), 9);
    assert_eq!((counters.dropped.get(), counters.failed.get()), (0, 0));
}

/// A collector that is briefly away (gRPC `UNAVAILABLE`, HTTP 503 and 502) loses nothing: each
/// refused batch is sent again after a backoff; one that refuses a batch for good (gRPC
/// `INVALID_ARGUMENT`, HTTP 400) is sent it once, and only that batch counts as failed.
#[test]
fn refused_batches_are_retried_when_the_collector_says_so() {
    for (refuse, retried) in [
        (Refuse::Grpc(2, tonic::Code::Unavailable), true),
        (Refuse::Http(1, 503), true),
        (Refuse::Http(2, 502), true),
        (Refuse::Grpc(1, tonic::Code::InvalidArgument), false),
        (Refuse::Http(1, 400), false),
    ] {
        let (rx, cfg) = match refuse {
            Refuse::Grpc(n, code) => {
                let rx = Receiver::grpc();
                rx.faults.grpc(n, code);
                let cfg = grpc_config(&rx, 1.0);
                (rx, cfg)
            }
            Refuse::Http(n, status) => {
                let rx = Receiver::http();
                rx.faults.http(n, status);
                let endpoint = format!("http://{}/v1/traces", rx.addr);
                (rx, config(endpoint, OtlpProtocol::HttpProtobuf, 1.0))
            }
        };
        let (counters, kept) = run(&cfg, &four_records());
        assert_eq!(kept, [true; 4], "{refuse:?}");
        let accepted = lock(&rx.received).len();
        let received: usize = lock(&rx.received)
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        let refused = match refuse {
            Refuse::Grpc(n, _) | Refuse::Http(n, _) => n,
        };
        // Every call was either accepted or one of the refusals.
        assert_eq!(rx.faults.calls(), accepted + refused, "{refuse:?}");
        if retried {
            check_four(&rx);
            assert_eq!(counters.exported.get(), 9, "{refuse:?}");
            assert_eq!(counters.failed.get(), 0, "{refuse:?}");
        } else {
            // The refused batch (one to four spans) is failed, and sent once (the calls
            // above); the others arrived, also when the refusal came during the shutdown's
            // flush: a collector that answers is not given up on.
            let failed = counters.failed.get();
            assert!((1..=4).contains(&failed), "{refuse:?}: {failed}");
            assert_eq!(counters.exported.get(), 9 - failed, "{refuse:?}");
            assert_eq!(received as u64, 9 - failed, "{refuse:?}");
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Refuse {
    Grpc(usize, tonic::Code),
    Http(usize, u16),
}

#[test]
fn http_protobuf_receiver_gets_every_span_at_ratio_one() {
    let rx = Receiver::http();
    let endpoint = format!("http://{}/v1/traces", rx.addr);
    let cfg = config(endpoint, OtlpProtocol::HttpProtobuf, 1.0);
    let (counters, kept) = run(&cfg, &four_records());
    assert_eq!(kept, [true; 4]);
    check_four(&rx);
    assert!(lock(&rx.paths).iter().all(|p| p == "/v1/traces"));
    assert_eq!(counters.exported.get(), 9);
    assert_eq!((counters.dropped.get(), counters.failed.get()), (0, 0));
}

#[test]
fn an_incoming_traceparent_is_continued() {
    let rx = Receiver::grpc();
    let mut r = chat(9);
    r.trace = sluice_observability::spans::traceparent(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        sluice_observability::spans::random_id,
    );
    // Sampled by the caller: kept even at head_ratio 0.
    let (counters, kept) = run(&grpc_config(&rx, 0.0), &[r]);
    assert_eq!(kept, [true]);
    assert_eq!(counters.exported.get(), 2);
    let spans = rx.spans();
    let server = spans
        .iter()
        .map(|(_, _, s)| s)
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server");
    assert_eq!(
        server.parent_span_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        attrs(server).get(sc::SLUICE_SAMPLED_BY),
        Some(&&string("parent"))
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn head_ratio_zero_keeps_only_errors() {
    let rx = Receiver::grpc();
    let mut records: Vec<RequestRecord> = (10..30).map(chat).collect();
    records.push(streaming_chat(30));
    records.push(embeddings(31));
    records.push(failed_twice(40));
    let (counters, kept) = run(&grpc_config(&rx, 0.0), &records);
    let expected: Vec<bool> = records.iter().map(|r| r.status != 200).collect();
    assert_eq!(kept, expected);
    let spans = rx.spans();
    assert_eq!(spans.len(), 3);
    assert!(spans.iter().all(|(_, _, s)| s.trace_id == [40; 16]));
    assert_eq!(counters.exported.get(), 3);
}

#[test]
fn a_full_queue_drops_and_counts_and_never_blocks() {
    // A collector that accepts the connection and never answers: the first export hangs.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = stalled.local_addr().expect("addr");
    let mut cfg = config(format!("http://{addr}"), OtlpProtocol::Grpc, 1.0);
    if let Some(otlp) = cfg.otlp.as_mut() {
        otlp.queue_size = 4;
        otlp.batch_size = 2;
        otlp.timeout = Duration::from_secs(10);
    }
    let counters = ExportCounters::default();
    let pipeline = SpanPipeline::start(&cfg, counters.clone()).expect("start");
    let sink = pipeline.sink();
    let started = Instant::now();
    let mut kept = 0;
    let mut slowest = Duration::ZERO;
    for n in 0..200u8 {
        let r = chat(n);
        let t = Instant::now();
        kept += usize::from(sink.offer(&r, None, Flags::default()));
        slowest = slowest.max(t.elapsed());
    }
    let elapsed = started.elapsed();
    // 2 spans a request: two requests fill the queue of 4, which is held until the stalled
    // export ends.
    assert_eq!(kept, 2);
    assert_eq!(counters.dropped.get(), 2 * 198);
    assert!(
        elapsed < Duration::from_secs(2),
        "200 offers took {elapsed:?}"
    );
    assert!(
        slowest < Duration::from_millis(200),
        "one offer took {slowest:?}"
    );
    let t = Instant::now();
    pipeline.shutdown(Duration::from_millis(200));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?}",
        t.elapsed()
    );
    assert_eq!(counters.exported.get(), 0);
    drop(stalled);
}

#[test]
fn export_failures_are_counted() {
    // A port with nothing listening.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let cfg = config(format!("http://{addr}"), OtlpProtocol::Grpc, 1.0);
    let started = Instant::now();
    let (counters, kept) = run(&cfg, &[chat(1), chat(2), failed_twice(3)]);
    assert_eq!(kept, [true; 3]);
    assert_eq!(counters.failed.get(), 7);
    assert_eq!((counters.exported.get(), counters.dropped.get()), (0, 0));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn no_otlp_means_a_sink_that_keeps_nothing() {
    let counters = ExportCounters::default();
    let pipeline =
        SpanPipeline::start(&TelemetryConfig::default(), counters.clone()).expect("start");
    let sink = pipeline.sink();
    assert!(!sink.is_enabled());
    assert!(!sink.offer(&failed_twice(1), None, Flags::default()));
    pipeline.shutdown(Duration::from_secs(1));
    assert_eq!(counters.dropped.get(), 0);
}

fn all_strings(rx: &Receiver) -> Vec<String> {
    let mut out = Vec::new();
    for (_, _, span) in rx.spans() {
        out.push(span.name.clone());
        for kv in &span.attributes {
            if let Some(AnyValue::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.as_ref())
            {
                out.push(format!("{}={s}", kv.key));
            }
        }
    }
    out
}

#[test]
fn canaries_never_reach_the_collector_with_capture_off() {
    let rx = Receiver::grpc();
    let mut r = chat(50);
    r.content = Some(canary_content());
    let (counters, _) = run(&grpc_config(&rx, 1.0), &[r]);
    assert_eq!(counters.exported.get(), 2);
    let strings = all_strings(&rx);
    assert!(!strings.is_empty());
    for s in &strings {
        assert!(!s.contains("CANARY"), "{s}");
        assert!(!s.contains(CANARY_EMAIL), "{s}");
        assert!(!s.contains("4111"), "{s}");
        assert!(!s.starts_with(sc::GEN_AI_INPUT_MESSAGES), "{s}");
    }
}

#[test]
fn captured_content_is_redacted_and_bounded() {
    let rx = Receiver::grpc();
    let mut cfg = grpc_config(&rx, 1.0);
    cfg.capture_content = true;
    cfg.max_content_bytes = 512;
    let mut r = chat(60);
    r.content = Some(canary_content());
    let mut long = chat(61);
    long.content = Some(sluice_observability::CapturedContent {
        input: format!(
            r#"[{{"role":"user","parts":[{{"type":"text","content":"{} {CANARY_KEY}"}}]}}]"#,
            "lorem ipsum ".repeat(500)
        ),
        output: "not json at all, mail canary.user@example.com".into(),
    });
    let (counters, _) = run(&cfg, &[r, long]);
    assert_eq!(counters.exported.get(), 4);
    for s in all_strings(&rx) {
        assert!(!s.contains("CANARY"), "{s}");
        assert!(!s.contains(CANARY_EMAIL), "{s}");
        assert!(!s.contains("4111 1111"), "{s}");
    }
    let spans = rx.spans();
    let content = |trace: u8, key: &str| -> String {
        spans
            .iter()
            .map(|(_, _, s)| s)
            .filter(|s| s.trace_id == [trace; 16])
            .find_map(|s| match attrs(s).get(key) {
                Some(AnyValue::StringValue(v)) => Some(v.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{key} on trace {trace}"))
    };
    let input = content(60, sc::GEN_AI_INPUT_MESSAGES);
    assert!(input.contains("[REDACTED:api_key]"), "{input}");
    assert!(input.contains("[REDACTED:email]"), "{input}");
    assert!(input.contains("[REDACTED:card]"), "{input}");
    let output = content(60, sc::GEN_AI_OUTPUT_MESSAGES);
    assert!(output.contains("noted [REDACTED:email]"), "{output}");
    let long_input = content(61, sc::GEN_AI_INPUT_MESSAGES);
    assert!(long_input.len() <= 512, "{}", long_input.len());
    serde_json::from_str::<serde_json::Value>(&long_input).expect("still JSON");
    let long_output = content(61, sc::GEN_AI_OUTPUT_MESSAGES);
    assert_eq!(long_output, r#""not json at all, mail [REDACTED:email]""#);
}
