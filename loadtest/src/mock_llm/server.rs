//! The HTTP side of `mock-llm`: accept loop, routing, auth, counting, faults.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use sluice_gateway::providers::mock::{
    self, CREATED, Endpoint, MockRequest, MockStream, MockTiming,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Shared;
use super::body::{self, ScriptBody, Step};
use super::echo;
use super::fault::{self, EchoKey, Faults, Outcome, ScriptedVerdict};
use super::runtime::{RuntimeFault, Verdict};

/// How long `stall` holds a request or stream before giving up on it.
const STALL_FOR: Duration = Duration::from_secs(120);
/// Largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Header carrying the received body length on every API answer.
const BODY_LEN_HEADER: &str = "x-mock-body-len";
/// Header selecting faults; it wins over a `model@…` suffix.
const FAULT_HEADER: &str = "x-mock";
/// The answer of `verdict:malformed`: what a judge model that ignores the output contract says.
const MALFORMED_VERDICT: &str = "This answer looks mostly fine to me, I would give it a seven.";
/// Models listed by `GET /models` besides every model name seen so far.
const LISTED_MODELS: [&str; 2] = ["mock-chat", "mock-embed"];

type Resp = Response<ScriptBody>;

/// Accepts until the handle's stop sender is dropped, then aborts every connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.counters.connection();
                    // A process-wide `outage: refuse`: the connection is closed unread.
                    if shared.faults.refuses_connections() {
                        drop(stream);
                        continue;
                    }
                    // Best effort: SSE events should leave as soon as they are written.
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let sever = shared.sever.notified();
    tokio::select! {
        () = sever => {}
        () = serve(stream, Arc::clone(&shared)) => {}
    }
}

/// TLS when configured, then HTTP/2 (by ALPN, or its preface on a plain connection when
/// `http2` is on) or HTTP/1.1.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    match shared.tls.as_ref().map(|a| a.0.clone()) {
        Some(acceptor) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_h2(tls, shared).await;
            } else {
                serve_h1(tls, shared).await;
            }
        }
        None if shared.http2 && starts_with_preface(&stream).await => {
            serve_h2(stream, shared).await;
        }
        None => serve_h1(stream, shared).await,
    }
}

/// Whether the client opened with HTTP/2's prior-knowledge preface (read without taking it).
async fn starts_with_preface(stream: &TcpStream) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let Ok(n) = stream.peek(&mut buf).await else {
            return false;
        };
        if n == 0 || buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // Part of the preface so far: wait for the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn service(
    shared: Arc<Shared>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Resp,
    Error = io::Error,
    Future = impl Future<Output = Result<Resp, io::Error>> + Send,
> + Clone {
    service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { handle(&shared, req).await }
    })
}

async fn serve_h1<S>(stream: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Errors here are the peer going away or a fault aborting the body: nothing to do.
    // One flat write buffer, so whatever the body has ready leaves in one write (see `body`).
    let _ = http1::Builder::new()
        .keep_alive(true)
        .writev(false)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service(shared))
        .await;
}

/// Streams beyond this on one connection are refused by the client's own count.
const H2_MAX_STREAMS: u32 = 1000;

async fn serve_h2<S>(stream: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .serve_connection(TokioIo::new(stream), service(shared))
        .await;
}

enum Route {
    Models,
    Api(Endpoint),
    /// OpenAI's Responses API (see `responses.rs`).
    Responses,
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Resp, io::Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match (&method, path.as_str()) {
        (&Method::GET, "/_mock/stats") => {
            return Ok(json_response(
                StatusCode::OK,
                to_json(&shared.counters.snapshot()),
            ));
        }
        (&Method::POST, "/_mock/reset") => {
            shared.counters.reset();
            return Ok(json_response(
                StatusCode::OK,
                to_json(&shared.counters.snapshot()),
            ));
        }
        (_, "/_mock/faults") => return Ok(control_faults(shared, req).await),
        _ => {}
    }
    shared.counters.path(&path);
    if let Some(dialect) = super::dialect::route(&path) {
        return Ok(super::dialect::handle(shared, &dialect, req).await);
    }
    let route = match path.strip_prefix(shared.prefix.as_str()) {
        Some("/models") => Some(Route::Models),
        Some("/responses") => Some(Route::Responses),
        Some(rest) => Endpoint::from_path(rest).map(Route::Api),
        None => None,
    };
    let Some(route) = route else {
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            &format!("Unknown request URL: {method} {path}"),
            "invalid_request_error",
            Some("unknown_url"),
        ));
    };
    let allowed = match route {
        Route::Models => Method::GET,
        Route::Api(_) | Route::Responses => Method::POST,
    };
    if method != allowed {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method {method} not allowed for {path}; use {allowed}"),
            "invalid_request_error",
            None,
        );
        let allow = if allowed == Method::GET {
            "GET"
        } else {
            "POST"
        };
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(resp);
    }

    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                &format!("could not read the request body: {e}"),
                "invalid_request_error",
                None,
            ));
        }
    };
    let model = body_model(&body);
    shared.counters.request(model.as_deref(), body.len());

    let mut resp = match refusal(shared, &parts.headers) {
        Some(resp) => {
            shared.counters.unauthorized();
            resp
        }
        None => match route {
            Route::Models => models(shared),
            Route::Api(_) | Route::Responses => {
                let base = model.as_deref().map(|m| fault::split_model(m).0);
                match shared.faults.judge(base) {
                    Verdict::Fail { status } => status_fault(status, None),
                    Verdict::Close => return Err(io::Error::other("mock outage: refused")),
                    Verdict::Hang => {
                        shared.faults.wait_change(STALL_FOR).await;
                        return Err(io::Error::other("mock outage: hung"));
                    }
                    verdict @ Verdict::Serve { .. } => {
                        let timing = MockTiming {
                            ttft: verdict.ttft(shared.timing.ttft),
                            ..shared.timing
                        };
                        let resp = match route {
                            Route::Api(endpoint) => {
                                answer(
                                    shared,
                                    &timing,
                                    endpoint,
                                    &parts.headers,
                                    model.as_deref(),
                                    &body,
                                )
                                .await?
                            }
                            _ => {
                                super::responses::answer(
                                    shared,
                                    &timing,
                                    &parts.headers,
                                    model.as_deref(),
                                    &body,
                                )
                                .await?
                            }
                        };
                        let Verdict::Serve { permit, .. } = verdict else {
                            unreachable!("matched above")
                        };
                        let (head, body) = resp.into_parts();
                        Response::from_parts(head, body.holding(permit))
                    }
                }
            }
        },
    };
    resp.headers_mut()
        .insert(BODY_LEN_HEADER, HeaderValue::from(body.len()));
    Ok(resp)
}

/// `GET` lists the runtime faults, `POST` sets one scope's, `DELETE [?model=NAME]` clears one
/// scope or all; every answer is the list in force.
async fn control_faults(shared: &Shared, req: Request<Incoming>) -> Resp {
    let list = |shared: &Shared| {
        json_response(
            StatusCode::OK,
            to_json(&json!({"faults": shared.faults.list()})),
        )
    };
    match *req.method() {
        Method::GET => list(shared),
        Method::DELETE => {
            let model = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("model="))
                    .map(str::to_owned)
            });
            shared.faults.clear(model.as_deref());
            list(shared)
        }
        Method::POST => {
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!("could not read the request body: {e}"),
                        "invalid_request_error",
                        None,
                    );
                }
            };
            let set = serde_json::from_slice::<RuntimeFault>(&body)
                .map_err(|e| format!("not a runtime fault: {e}"))
                .and_then(|f| shared.faults.set(f));
            match set {
                Ok(()) => list(shared),
                Err(msg) => error_response(
                    StatusCode::BAD_REQUEST,
                    &msg,
                    "invalid_request_error",
                    Some("invalid_mock_fault"),
                ),
            }
        }
        ref other => {
            let mut resp = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("Method {other} not allowed for /_mock/faults; use GET, POST or DELETE"),
                "invalid_request_error",
                None,
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            resp
        }
    }
}

/// The body's `model` string, if it is a JSON object with one.
fn body_model(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ModelOnly<'a> {
        #[serde(borrow)]
        model: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<ModelOnly<'_>>(body)
        .ok()
        .and_then(|m| m.model)
        .map(Cow::into_owned)
}

/// The credential of `Authorization: Bearer <key>` (scheme in any case, key trimmed), if any.
fn bearer(headers: &http::HeaderMap) -> Option<Cow<'_, str>> {
    let value = String::from_utf8_lossy(headers.get(header::AUTHORIZATION)?.as_bytes());
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    Some(match value {
        Cow::Borrowed(v) => Cow::Borrowed(v[7..].trim()),
        Cow::Owned(v) => Cow::Owned(v[7..].trim().to_owned()),
    })
}

/// The 401 to send when an API key is required and not given, if any.
fn refusal(shared: &Shared, headers: &http::HeaderMap) -> Option<Resp> {
    let key = shared.api_key.as_deref()?;
    match bearer(headers) {
        Some(given) if given == key => None,
        Some(_) => Some(error_response(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        )),
        None => Some(error_response(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. Provide it in the Authorization header \
             (Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            Some("invalid_api_key"),
        )),
    }
}

fn models(shared: &Shared) -> Resp {
    let mut names: Vec<String> = LISTED_MODELS.iter().map(|m| (*m).to_owned()).collect();
    for seen in shared.counters.by_model().keys() {
        names.push(fault::split_model(seen).0.to_owned());
    }
    names.sort();
    names.dedup();
    let data: Vec<_> = names
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "mock-llm"}))
        .collect();
    json_response(
        StatusCode::OK,
        to_json(&json!({"object": "list", "data": data})),
    )
}

/// One chat/completions/embeddings request, after counting and auth.
pub(super) async fn answer(
    shared: &Shared,
    timing: &MockTiming,
    endpoint: Endpoint,
    headers: &http::HeaderMap,
    model: Option<&str>,
    body: &[u8],
) -> Result<Resp, io::Error> {
    // The header wins; without it the model suffix is the fault list (and is stripped).
    let (spec, base_model) = match headers.get(FAULT_HEADER) {
        Some(value) => match value.to_str() {
            Ok(v) => (fault::from_header(v), None),
            Err(_) => {
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "the x-mock header must be ASCII",
                    "invalid_request_error",
                    None,
                ));
            }
        },
        None => match model.map(fault::split_model) {
            Some((name, Some(spec))) => (spec, Some(name)),
            _ => ("", None),
        },
    };
    let faults = match fault::parse(spec) {
        Ok(f) => f,
        Err(msg) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                &msg,
                "invalid_request_error",
                Some("invalid_mock_fault"),
            ));
        }
    };
    if let Some(ttft) = faults.ttft {
        tokio::time::sleep(ttft).await;
    }
    // Rendered only for an echo-key fault: the received key goes nowhere else.
    let echoed = match faults.outcome {
        Some(Outcome::EchoKey(_)) => Some(echo::error_json(
            bearer(headers).as_deref().unwrap_or(""),
            faults.key_pad,
            faults.key_escaped,
        )),
        _ => None,
    };
    // Faults that do not care what was asked.
    match (faults.outcome, echoed) {
        (Some(Outcome::Status { code, retry_after }), _) => Ok(status_fault(code, retry_after)),
        (Some(Outcome::Html502), _) => Ok(html(StatusCode::BAD_GATEWAY, HTML_502)),
        (Some(Outcome::Html200), _) => Ok(html(StatusCode::OK, HTML_200)),
        (Some(Outcome::Garbage), _) => Ok(json_response(StatusCode::OK, GARBAGE)),
        (Some(Outcome::EchoKey(EchoKey::Status(code))), Some(json)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED);
            Ok(json_response(status, json))
        }
        (Some(Outcome::EchoKey(EchoKey::Json200)), Some(json)) => {
            Ok(json_response(StatusCode::OK, json))
        }
        (_, echoed) => {
            answer_request(shared, timing, endpoint, base_model, &faults, echoed, body).await
        }
    }
}

/// The rest of [`answer`]: the faults and answers that depend on the request.
async fn answer_request(
    shared: &Shared,
    timing: &MockTiming,
    endpoint: Endpoint,
    base_model: Option<&str>,
    faults: &Faults,
    echoed: Option<String>,
    body: &[u8],
) -> Result<Resp, io::Error> {
    if faults.legacy
        && let Some(field) = legacy_refuses(body)
    {
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            &format!("Extra inputs are not permitted: `{field}`"),
            "invalid_request_error",
            None,
        ));
    }
    let mut req = match MockRequest::from_body(endpoint, body) {
        Ok(req) => req,
        Err(msg) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                &msg,
                "invalid_request_error",
                None,
            ));
        }
    };
    if let Some(name) = base_model {
        req.model = name.to_owned();
    }
    if faults.nousage {
        req.include_usage = false;
    }
    if let Some(n) = faults.words {
        req.max_tokens = Some(req.max_tokens.map_or(n, |m| m.min(n)));
    }
    if let (Some(script), Some(_)) = (faults.verdict, &req.verdict) {
        req.verdict = match script {
            ScriptedVerdict::Good => sluice_judge::scripted_verdict(body, 0.95),
            ScriptedVerdict::Bad => sluice_judge::scripted_verdict(body, 0.05),
            ScriptedVerdict::Malformed => Some(MALFORMED_VERDICT.to_owned()),
        };
    }
    let timing = effective_timing(*timing, faults);
    if req.stream {
        let plan = StreamPlan {
            outcome: faults.outcome,
            echoed: echoed.map(|json| Bytes::from(echo::event(&json))),
            burst: faults.burst || shared.burst,
        };
        Ok(stream_answer(&req, &timing, plan, &shared.counters.streams_aborted).await)
    } else {
        non_stream_answer(&req, &timing, faults, echoed).await
    }
}

/// What an older OpenAI-compatible server refuses in `body`, if anything (the `legacy` fault).
fn legacy_refuses(body: &[u8]) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let developer = v
        .get("messages")
        .and_then(|m| m.as_array())
        .is_some_and(|m| m.iter().any(|m| m["role"] == "developer"));
    [
        "stream_options",
        "max_completion_tokens",
        "parallel_tool_calls",
    ]
    .into_iter()
    .find(|f| v.get(*f).is_some())
    .or(developer.then_some("developer"))
}

fn effective_timing(base: MockTiming, faults: &Faults) -> MockTiming {
    match faults.delay {
        Some(d) if d.is_zero() => MockTiming {
            tokens_per_s: 0.0,
            ..base
        },
        Some(d) => MockTiming {
            tokens_per_s: 1.0 / d.as_secs_f64(),
            ..base
        },
        None => base,
    }
}

/// What shapes a stream besides the request and its pacing.
struct StreamPlan {
    outcome: Option<Outcome>,
    /// The `echo-key` error event, when that is the outcome.
    echoed: Option<Bytes>,
    burst: bool,
}

async fn stream_answer(
    req: &MockRequest,
    timing: &MockTiming,
    plan: StreamPlan,
    aborted: &Arc<AtomicU64>,
) -> Resp {
    let stream = MockStream::new(req);
    let completion = mock::usage(req).completion_tokens as usize;
    let content_events = match req.endpoint {
        Endpoint::ChatCompletions => 1 + completion,
        Endpoint::Completions => completion,
        Endpoint::Embeddings => 0,
    };
    let delays: Vec<Duration> = (0..stream.len())
        .map(|i| stream.delay_before(timing, i))
        .collect();
    let paced = delays
        .into_iter()
        .zip(stream)
        .flat_map(|(wait, event)| [Step::Wait(wait), Step::Data(event)]);
    let mut close = false;
    let echoed = plan.echoed.unwrap_or_default();
    let steps: Vec<Step> = match plan.outcome {
        Some(Outcome::FirstError) => vec![Step::Data(Bytes::from_static(FIRST_ERROR_EVENT))],
        Some(Outcome::EchoKey(EchoKey::FirstEvent)) => vec![Step::Data(echoed)],
        Some(Outcome::EchoKey(EchoKey::MidStream(k))) => paced
            .take(2 * k.min(content_events))
            .chain([Step::Data(echoed)])
            .collect(),
        Some(Outcome::Stall(k)) => paced
            .take(2 * k.min(content_events))
            .chain([Step::Wait(STALL_FOR), Step::Abort("mock stall elapsed")])
            .collect(),
        Some(Outcome::Cut(k)) => {
            close = true;
            paced.take(2 * k.min(content_events)).collect()
        }
        _ => paced.collect(),
    };
    let steps = if plan.burst {
        let (before_head, steps) = body::burst(steps);
        if !before_head.is_zero() {
            tokio::time::sleep(before_head).await;
        }
        steps
    } else {
        steps
    };
    let mut resp = Response::new(ScriptBody::script(steps).counting_aborts(Arc::clone(aborted)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

async fn non_stream_answer(
    req: &MockRequest,
    timing: &MockTiming,
    faults: &Faults,
    echoed: Option<String>,
) -> Result<Resp, io::Error> {
    if let Some(json) = echoed {
        return Ok(json_response(StatusCode::OK, json));
    }
    match faults.outcome {
        Some(Outcome::FirstError) => {
            return Ok(json_response(StatusCode::OK, FIRST_ERROR_JSON));
        }
        Some(Outcome::Stall(_)) => {
            tokio::time::sleep(STALL_FOR).await;
            return Err(io::Error::other("mock stall elapsed"));
        }
        _ => {}
    }
    let delay = timing.response_delay(req);
    // tokio rounds every timer up to its next 1 ms tick, even a zero one: skip it, or every
    // "instant" answer would take about a millisecond (and cap closed-loop throughput).
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut body = mock::response_json(req);
    if faults.nousage {
        body = without_usage(&body);
    }
    if let Some(Outcome::Cut(_)) = faults.outcome {
        let full_len = body.len();
        let half = body.slice(..full_len / 2);
        // The wait lets hyper flush the head and the half before the abort drops the socket.
        let mut resp = Response::new(ScriptBody::script([
            Step::Data(half),
            Step::Wait(Duration::from_millis(20)),
            Step::Abort("mock cut"),
        ]));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(full_len));
        return Ok(resp);
    }
    Ok(json_response(StatusCode::OK, body))
}

/// The answer without its top-level `usage` key.
fn without_usage(body: &Bytes) -> Bytes {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) {
        Ok(mut obj) => {
            obj.remove("usage");
            Bytes::from(to_json(&obj))
        }
        Err(_) => body.clone(),
    }
}

fn status_fault(code: u16, retry_after: Option<u64>) -> Resp {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = if code == 429 {
        let secs = retry_after.unwrap_or(1);
        error_response(
            status,
            &format!("Rate limit reached (mock-llm fault 429). Please try again in {secs}s."),
            "rate_limit_error",
            Some("rate_limit_exceeded"),
        )
    } else {
        let (kind, err_code) = match code {
            401 => ("invalid_request_error", Some("invalid_api_key")),
            404 => ("invalid_request_error", Some("model_not_found")),
            400..=499 => ("invalid_request_error", None),
            _ => ("server_error", None),
        };
        error_response(
            status,
            &format!("mock-llm fault: HTTP {code}"),
            kind,
            err_code,
        )
    };
    if let Some(secs) = retry_after {
        let h = resp.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        h.insert(
            "retry-after-ms",
            HeaderValue::from(secs.saturating_mul(1000)),
        );
    }
    resp
}

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>mock-llm</center>\r\n</body>\r\n</html>\r\n";
const HTML_200: &str = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head>\
<body><h1>It works!</h1><p>mock-llm html200 fault</p></body></html>\n";
/// Looks like the start of a completion, then stops: not JSON.
const GARBAGE: &str =
    r#"{"id":"chatcmpl-mock-garbage","object":"chat.completion","choices":[{"index":0,"mess"#;
const FIRST_ERROR_JSON: &str =
    r#"{"error":{"message":"overloaded","type":"server_error","code":"overloaded"}}"#;
const FIRST_ERROR_EVENT: &[u8] =
    b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n";

fn html(status: StatusCode, page: &'static str) -> Resp {
    let mut resp = Response::new(ScriptBody::full(page));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

pub(super) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(ScriptBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An OpenAI error object: `{"error":{"message","type","param","code"}}`.
pub(super) fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Resp {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    json_response(status, to_json(&body))
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Only maps, strings and numbers are serialized here; this cannot fail in practice.
    serde_json::to_vec(value).unwrap_or_default()
}
