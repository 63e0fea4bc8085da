//! The upstream exchange: the attempt loop, the commit point, and forwarding.
//!
//! An attempt may fail over to the next target only while nothing has been written to the
//! client. For a non-streaming request Sluice reads and checks the whole answer before
//! committing (so a garbage 200 still fails over); for a stream it reads up to the first SSE
//! event carrying data (so a provider that opens with an error event, or with HTML, still fails
//! over). After the commit, failures end the stream with an OpenAI error event instead.
//!
//! Every wait is bounded: time to first byte (`timeouts.ttft`), gaps between chunks
//! (`timeouts.idle`) and the whole request (`timeouts.total`). Every wait also watches the
//! client, so a client that leaves cancels the upstream request at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use sluice_config::{ProviderKind, RetryOn};
use sluice_observability::{AttemptOutcome, Endpoint, Outcome};
use sluice_policy::{AttemptPlan, Target};
use tokio::time::{Instant, timeout_at};

use crate::cache::Fill;
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::providers::mock::{self, MockTiming};
use crate::providers::openai::{self, HttpTarget};
use crate::providers::{ConnectError, MockUpstream, Upstream};
use crate::request::OpenAiRequest;
use crate::sse::{SseDecoder, SseEvent};
use crate::state::AppState;
use crate::stream::{self, AnswerInfo, AnswerProblem, StreamState, Usage, Verdict};

/// Largest single SSE event accepted from a provider.
const MAX_EVENT_BYTES: usize = 4 << 20;
/// How much of an error body Sluice reads before giving up on reusing the connection.
const MAX_ERROR_BODY: usize = 64 << 10;

/// How a request ends when no answer was committed.
#[derive(Debug)]
pub enum Rejection {
    Error(GatewayError),
    /// A provider's own 4xx answer (say, context too long), passed through unchanged.
    Upstream {
        status: u16,
        body: Bytes,
    },
    /// The client went away before anything was written.
    ClientGone,
}

/// Whether the downstream connection can serve another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Complete,
    ClientGone,
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    Connect(String),
    Unavailable(String),
    Timeout(Duration),
    RateLimited(Option<Duration>),
    Server { status: u16, detail: String },
    Client { status: u16, body: Bytes },
}

/// A checked answer, ready to commit.
enum Ready {
    Whole {
        status: u16,
        body: Bytes,
        answer: AnswerInfo,
        usage: Option<Usage>,
    },
    Stream(Box<StreamStart>),
}

/// A stream that passed its first-event check: the events read so far wait in `held`.
struct StreamStart {
    upstream: Upstream,
    decoder: SseDecoder,
    held: Vec<SseEvent>,
}

// === the attempt loop ===

pub async fn run(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    plan: AttemptPlan<'_>,
) -> Result<Delivered, Rejection> {
    let timeouts = &plan.route.timeouts;
    let retry = &plan.route.retry;
    let deadline = ctx.started + timeouts.total;
    // Retry-After applies to the model that said it; keyed by catalog name.
    let mut cooldowns: Vec<(Arc<str>, Instant)> = Vec::new();
    let mut last: Option<Failure> = None;

    for attempt in 0..plan.max_attempts() {
        let Some(target) = plan.target(attempt) else {
            break;
        };
        let now = Instant::now();
        if now >= deadline {
            last = Some(Failure::Timeout(timeouts.total));
            break;
        }
        if let Some(&(_, until)) = cooldowns.iter().find(|(m, _)| *m == target.model) {
            // The provider asked us to wait: honour it when it is short, else move on.
            let wait = until.saturating_duration_since(now);
            if wait > retry.max_retry_after || until >= deadline {
                continue;
            }
            tokio::select! {
                biased;
                _ = ds.read_body_or_idle(true) => return Err(Rejection::ClientGone),
                () = tokio::time::sleep_until(until) => {}
            }
        }

        let body = req.upstream_body(&target.upstream_model);
        let ttft_deadline = (Instant::now() + timeouts.ttft).min(deadline);
        let outcome = tokio::select! {
            biased;
            // Boxed: connecting and reading the answer's head take 10 KiB of future state that
            // a committed stream no longer needs; in place it would stay reserved to the end.
            r = Box::pin(attempt_once(state, ctx, req, target, body, ttft_deadline, deadline, timeouts.idle)) => Some(r),
            _ = ds.read_body_or_idle(true) => None,
        };
        let Some(outcome) = outcome else {
            ctx.end_attempt(AttemptOutcome::Cancelled, None);
            return Err(Rejection::ClientGone);
        };
        match outcome {
            Ok(ready) => return commit(state, ds, ctx, req, ready, deadline, timeouts.idle).await,
            Err(failure) => {
                // Details may quote the provider's answer, which may quote the key it was sent.
                let failure = failure.redacted(target);
                if let Some((outcome, status)) = failure.attempt_outcome() {
                    ctx.end_attempt(outcome, status);
                }
                tracing::debug!(
                    request_id = %ctx.request_id,
                    model = %target.model,
                    attempt,
                    failure = %failure.summary(),
                    "Attempt failed."
                );
                if let Failure::RateLimited(Some(after)) = &failure {
                    cooldowns.push((Arc::clone(&target.model), Instant::now() + *after));
                }
                let retryable = match &failure {
                    Failure::Connect(_) => retry.on.contains(&RetryOn::Connect),
                    Failure::Timeout(_) => retry.on.contains(&RetryOn::Timeout),
                    Failure::RateLimited(_) => retry.on.contains(&RetryOn::RateLimited),
                    Failure::Server { .. } => retry.on.contains(&RetryOn::ServerError),
                    Failure::Unavailable(_) => true,
                    Failure::Client { .. } => false,
                };
                last = Some(failure);
                if !retryable {
                    break;
                }
            }
        }
    }
    Err(final_rejection(&req.model, last))
}

impl Failure {
    /// How the attempt ended, for its record; `None` when nothing was sent.
    fn attempt_outcome(&self) -> Option<(AttemptOutcome, Option<u16>)> {
        Some(match self {
            Self::Unavailable(_) => return None,
            Self::Connect(_) => (AttemptOutcome::ConnectError, None),
            Self::Timeout(_) => (AttemptOutcome::Timeout, None),
            Self::RateLimited(_) => (AttemptOutcome::RateLimited, Some(429)),
            Self::Server { status, .. } => (AttemptOutcome::ServerError, Some(*status)),
            Self::Client { status, .. } => (AttemptOutcome::ClientError, Some(*status)),
        })
    }

    fn redacted(self, target: &Target) -> Self {
        match self {
            Self::Server { status, detail } => Self::Server {
                status,
                detail: redact_str(detail, target),
            },
            other => other,
        }
    }

    /// A one-line description for logs: no bodies, no secrets.
    fn summary(&self) -> String {
        match self {
            Self::Connect(m) | Self::Unavailable(m) => m.clone(),
            Self::Timeout(d) => format!("timed out after {d:?}"),
            Self::RateLimited(after) => format!("rate limited (retry after {after:?})"),
            Self::Server { status, detail } => format!("{status}: {detail}"),
            Self::Client { status, .. } => format!("{status} from the provider"),
        }
    }
}

fn final_rejection(model: &str, last: Option<Failure>) -> Rejection {
    let model = model.to_owned();
    let e = match last {
        None => GatewayError::Unavailable {
            model,
            detail: "every provider asked to wait longer than the route allows".into(),
        },
        Some(Failure::Client { status, body }) => return Rejection::Upstream { status, body },
        Some(Failure::Connect(detail)) => GatewayError::UpstreamFailed {
            model,
            status: 502,
            detail,
        },
        Some(Failure::Unavailable(detail)) => GatewayError::Unavailable { model, detail },
        Some(Failure::Timeout(after)) => GatewayError::Timeout { model, after },
        Some(Failure::RateLimited(after)) => GatewayError::RateLimited {
            model,
            retry_after: after.unwrap_or(Duration::from_secs(1)),
        },
        Some(Failure::Server { status, detail }) => GatewayError::UpstreamFailed {
            model,
            status: if matches!(status, 503 | 504) {
                status
            } else {
                502
            },
            detail,
        },
    };
    Rejection::Error(e)
}

/// One attempt up to the commit point.
#[expect(
    clippy::too_many_arguments,
    reason = "one attempt's inputs, passed once"
)]
async fn attempt_once(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    target: &Target,
    body: Bytes,
    ttft_deadline: Instant,
    deadline: Instant,
    idle: Duration,
) -> Result<Ready, Failure> {
    let started = Instant::now();
    let opened = timeout_at(ttft_deadline, async {
        let up = open(state, ctx, req, target, body).await?;
        let status = up.status();
        if !(200..300).contains(&status) {
            return Err(failed_status(up, status, target, state).await);
        }
        if req.stream {
            peek_first_event(up).await.map(Opened::Stream)
        } else {
            Ok(Opened::Whole(up))
        }
    })
    .await
    .map_err(|_| Failure::Timeout(ttft_deadline - started))??;

    match opened {
        Opened::Stream(ready) => Ok(ready),
        // The time to first byte is met; the rest of the body is bounded by idle and total.
        Opened::Whole(up) => {
            read_whole(
                state,
                up,
                deadline,
                idle,
                ctx.policy_telemetry.capture_content,
            )
            .await
        }
    }
}

/// An attempt past its response header.
enum Opened {
    Stream(Ready),
    Whole(Upstream),
}

async fn open(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    target: &Target,
    body: Bytes,
) -> Result<Upstream, Failure> {
    let provider = &target.provider.config;
    match &provider.kind {
        ProviderKind::Mock { ttft, tokens_per_s } => {
            ctx.begin_attempt(target, sluice_observability::spans::new_span_id());
            let timing = MockTiming {
                ttft: *ttft,
                tokens_per_s: *tokens_per_s,
            };
            Ok(Upstream::Mock(MockUpstream::new(
                mock_endpoint(req.endpoint),
                &body,
                timing,
            )))
        }
        ProviderKind::OpenAi {
            base_url,
            api_key_env,
            api_key,
            connect_timeout,
        } => {
            if let (None, Some(env)) = (api_key, api_key_env) {
                return Err(Failure::Unavailable(format!(
                    "provider `{}` has no API key: the environment variable {env} is not set",
                    provider.name
                )));
            }
            ctx.begin_attempt(target, sluice_observability::spans::new_span_id());
            let addr = state
                .resolver
                .resolve(&base_url.host, base_url.port)
                .await
                .map_err(Failure::Connect)?;
            let http = HttpTarget {
                addr,
                base_url,
                api_key: api_key.as_ref(),
                connect_timeout: *connect_timeout,
                path: api_path(req.endpoint),
                stream: req.stream,
                request_id: &ctx.request_id,
            };
            openai::send(&state.connector, &http, body)
                .await
                .map_err(|e| match e {
                    ConnectError::Connect(m) => Failure::Connect(m),
                    ConnectError::Unavailable(m) => Failure::Unavailable(m),
                })
        }
    }
}

fn api_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Completions => "/completions",
        Endpoint::Embeddings => "/embeddings",
        Endpoint::ChatCompletions | Endpoint::Models | Endpoint::Other => "/chat/completions",
    }
}

fn mock_endpoint(endpoint: Endpoint) -> mock::Endpoint {
    match endpoint {
        Endpoint::Completions => mock::Endpoint::Completions,
        Endpoint::Embeddings => mock::Endpoint::Embeddings,
        Endpoint::ChatCompletions | Endpoint::Models | Endpoint::Other => {
            mock::Endpoint::ChatCompletions
        }
    }
}

/// Classifies a non-2xx answer, reading its body so the connection can go back to the pool.
async fn failed_status(
    mut up: Upstream,
    status: u16,
    target: &Target,
    state: &AppState,
) -> Failure {
    let retry_after = retry_after(&up);
    let (body, complete) = read_bounded(&mut up, MAX_ERROR_BODY).await;
    let provider = &target.provider.config.name;
    up.release(&state.connector, complete).await;
    match status {
        429 => Failure::RateLimited(retry_after),
        401 | 403 => Failure::Server {
            status: 502,
            detail: format!("provider `{provider}` rejected Sluice's credentials ({status})"),
        },
        400..=499 if status != 408 => {
            let body = redact_secret(body, target);
            if serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v.get("error").is_some())
            {
                Failure::Client { status, body }
            } else {
                Failure::Server {
                    status: 502,
                    detail: format!(
                        "provider `{provider}` answered {status} without an OpenAI error body"
                    ),
                }
            }
        }
        _ => Failure::Server {
            status,
            detail: format!("provider `{provider}` answered {status}"),
        },
    }
}

/// A provider error body may quote the credential it was sent; never pass that on.
fn redact_secret(body: Bytes, target: &Target) -> Bytes {
    match provider_key(target) {
        Some(key) if body.windows(key.len()).any(|w| w == key.as_bytes()) => {
            Bytes::from(String::from_utf8_lossy(&body).replace(key, "***"))
        }
        _ => body,
    }
}

fn redact_str(text: String, target: &Target) -> String {
    match provider_key(target) {
        Some(key) if text.contains(key) => text.replace(key, "***"),
        _ => text,
    }
}

/// The key Sluice sends to this target's provider, when it sends one.
fn provider_key(target: &Target) -> Option<&str> {
    match &target.provider.config.kind {
        ProviderKind::OpenAi {
            api_key: Some(key), ..
        } => Some(key.expose()).filter(|k| !k.is_empty()),
        _ => None,
    }
}

fn retry_after(up: &Upstream) -> Option<Duration> {
    let parse = |name: &str| {
        up.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
    };
    parse("retry-after-ms")
        .map(|ms| Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 86_400.0)))
        .or_else(|| parse("retry-after").map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0))))
}

/// Reads at most `limit` bytes of body; says whether the body ended within it.
async fn read_bounded(up: &mut Upstream, limit: usize) -> (Bytes, bool) {
    let mut buf = BytesMut::new();
    loop {
        match up.read_chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return (buf.freeze(), false);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return (buf.freeze(), true),
            Err(_) => return (buf.freeze(), false),
        }
    }
}

/// Reads a stream up to its first event with data and checks that it is not an error.
async fn peek_first_event(mut up: Upstream) -> Result<Ready, Failure> {
    let is_sse = up
        .header("content-type")
        .is_some_and(|ct| ct.len() >= 17 && ct[..17].eq_ignore_ascii_case(b"text/event-stream"));
    if !is_sse {
        let ct = up
            .header("content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        return Err(Failure::Server {
            status: 502,
            detail: format!(
                "the provider answered a stream request with {} instead of text/event-stream",
                ct.as_deref().unwrap_or("no content type")
            ),
        });
    }
    let mut decoder = SseDecoder::new(MAX_EVENT_BYTES);
    let mut held = Vec::new();
    loop {
        while let Some(ev) = decoder.next_event().map_err(|e| server(e.to_string()))? {
            let has_data = ev.has_data;
            if has_data && stream::is_error_event(&ev) {
                return Err(server(format!(
                    "the provider's stream opened with an error: {}",
                    truncate_utf8(&ev.data, 200)
                )));
            }
            if has_data && ev.is_done() {
                return Err(server(
                    "the provider's stream ended before any content".into(),
                ));
            }
            held.push(ev);
            if has_data {
                return Ok(Ready::Stream(Box::new(StreamStart {
                    upstream: up,
                    decoder,
                    held,
                })));
            }
        }
        match up.read_chunk().await {
            Ok(Some(chunk)) => decoder.push(&chunk),
            Ok(None) => {
                return Err(server(
                    "the provider's stream ended before its first event".into(),
                ));
            }
            Err(e) => return Err(server(format!("reading the provider's stream failed: {e}"))),
        }
    }
}

fn server(detail: String) -> Failure {
    Failure::Server {
        status: 502,
        detail,
    }
}

fn truncate_utf8(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(b);
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.into_owned(),
    }
}

/// Reads a whole non-streaming answer and checks it is a JSON object without `error`.
async fn read_whole(
    state: &AppState,
    mut up: Upstream,
    deadline: Instant,
    idle: Duration,
    keep_text: bool,
) -> Result<Ready, Failure> {
    let limit =
        usize::try_from(state.policy.snapshot().server.max_response_bytes).unwrap_or(usize::MAX);
    let status = up.status();
    let mut parts: Vec<Bytes> = Vec::with_capacity(1);
    let mut len = 0;
    loop {
        let read_by = (Instant::now() + idle).min(deadline);
        match timeout_at(read_by, up.read_chunk()).await {
            Err(_) => return Err(Failure::Timeout(idle)),
            Ok(Err(e)) => return Err(server(format!("reading the provider's answer failed: {e}"))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                len += chunk.len();
                if len > limit {
                    up.release(&state.connector, false).await;
                    return Err(server(format!(
                        "the provider's answer exceeded {limit} bytes"
                    )));
                }
                parts.push(chunk);
            }
        }
    }
    up.release(&state.connector, true).await;
    // Most answers arrive in one chunk: keep it without a copy.
    let body = if parts.len() == 1 {
        parts.swap_remove(0)
    } else {
        parts.concat().into()
    };
    match AnswerInfo::from_body(&body, keep_text) {
        Ok((answer, usage)) => Ok(Ready::Whole {
            status,
            body,
            answer,
            usage,
        }),
        Err(AnswerProblem::ErrorObject) => Err(server(format!(
            "the provider answered {status} with an error: {}",
            truncate_utf8(&body, 200)
        ))),
        Err(AnswerProblem::NotJson) => Err(server(format!(
            "the provider answered {status} with a body that is not a JSON object"
        ))),
    }
}

// === the commit point and forwarding ===

async fn commit(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    ready: Ready,
    deadline: Instant,
    idle: Duration,
) -> Result<Delivered, Rejection> {
    match ready {
        Ready::Whole {
            status,
            body,
            answer,
            usage,
        } => {
            ctx.end_attempt(AttemptOutcome::Ok, Some(status));
            ctx.usage = usage;
            ctx.answer = answer;
            ctx.status = status;
            if let Some(fill) = &mut ctx.cache_fill {
                fill.set_whole(&body);
            }
            let header = response_header(status, "application/json", Some(body.len()), ctx)
                .map_err(Rejection::Error)?;
            if ds.write_response_header(header).await.is_err()
                || ds.write_response_body(body, true).await.is_err()
            {
                ctx.outcome = Outcome::Cancelled;
                return Ok(Delivered::ClientGone);
            }
            ctx.outcome = Outcome::Ok;
            Ok(Delivered::Complete)
        }
        Ready::Stream(start) => {
            let StreamStart {
                upstream,
                decoder,
                held,
            } = *start;
            forward_stream(state, ds, ctx, req, upstream, decoder, held, deadline, idle).await
        }
    }
}

/// A response header with the request id and the trace context Sluice continued.
pub fn response_header(
    status: u16,
    content_type: &str,
    content_length: Option<usize>,
    ctx: &RequestCtx,
) -> Result<Box<ResponseHeader>, GatewayError> {
    let build = || -> pingora::Result<Box<ResponseHeader>> {
        let mut h = ResponseHeader::build(status, Some(7))?;
        h.insert_header("content-type", content_type)?;
        match content_length {
            Some(len) => h.insert_header("content-length", len)?,
            None => h.insert_header("transfer-encoding", "chunked")?,
        }
        h.insert_header("x-request-id", ctx.request_id.as_str())?;
        h.insert_header("traceparent", crate::trace::format(&ctx.trace))?;
        if let Some(headroom) = &ctx.headroom {
            crate::ratelimit::add_headers(&mut h, headroom)?;
        }
        if let Some(cache) = ctx.cache {
            h.insert_header("x-sluice-cache", cache.as_str())?;
        }
        Ok(Box::new(h))
    };
    build().map_err(|e| {
        GatewayError::Internal(format!(
            "cannot build a response header: {}",
            e.etype().as_str()
        ))
    })
}

/// How a committed stream ended.
enum StreamEnd {
    /// `[DONE]` or a clean end after a finish reason.
    Finished,
    /// Sluice ends the stream with this error event.
    Failed(GatewayError),
    /// The provider's own error event went to the client.
    ProviderError,
    ClientGone,
}

#[expect(
    clippy::too_many_arguments,
    reason = "the committed attempt's whole state, moved once"
)]
async fn forward_stream(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    mut up: Upstream,
    mut decoder: SseDecoder,
    held: Vec<SseEvent>,
    deadline: Instant,
    idle: Duration,
) -> Result<Delivered, Rejection> {
    let mut header =
        response_header(200, "text/event-stream", None, ctx).map_err(Rejection::Error)?;
    let mut extra = || -> pingora::Result<()> {
        header.insert_header("cache-control", "no-cache")?;
        // Tell nginx-style intermediaries not to buffer the stream.
        header.insert_header("x-accel-buffering", "no")?;
        Ok(())
    };
    extra().map_err(|e| Rejection::Error(GatewayError::Internal(e.etype().as_str().to_owned())))?;
    ctx.status = 200;

    let mut st = StreamState::default();
    let end = if ds.write_response_header(header).await.is_err() {
        StreamEnd::ClientGone
    } else {
        pump(
            ds,
            ctx,
            req,
            &mut up,
            &mut decoder,
            held,
            &mut st,
            deadline,
            idle,
        )
        .await
    };

    // One epilogue for every ending: record what was delivered, settle the upstream
    // connection, finish the downstream body.
    let saw_done = st.saw_done;
    ctx.answer = std::mem::take(&mut st.answer);
    ctx.chunks = st.content_chunks;
    match end {
        StreamEnd::Finished => {
            ctx.end_attempt(AttemptOutcome::Ok, Some(200));
            ctx.outcome = Outcome::Ok;
            if let (true, Some(fill)) = (saw_done, &mut ctx.cache_fill) {
                fill.mark_complete();
            }
            // Read the terminating chunk, if any, so the connection can be pooled.
            let complete = matches!(
                timeout_at(Instant::now() + Duration::from_millis(100), up.read_chunk()).await,
                Ok(Ok(None))
            );
            up.release(&state.connector, complete).await;
            end_stream(ds).await
        }
        StreamEnd::ProviderError => {
            ctx.end_attempt(AttemptOutcome::Interrupted, Some(200));
            ctx.outcome = Outcome::Truncated;
            ctx.error_type = Some("provider_stream_error");
            up.release(&state.connector, false).await;
            end_stream(ds).await
        }
        StreamEnd::Failed(e) => {
            tracing::debug!(request_id = %ctx.request_id, error = %e, "Stream ended with an error event.");
            ctx.end_attempt(AttemptOutcome::Interrupted, Some(200));
            ctx.outcome = e.outcome();
            ctx.error_type = Some(e.code());
            up.release(&state.connector, false).await;
            if ds
                .write_response_body(e.to_sse_event(), false)
                .await
                .is_err()
            {
                ctx.outcome = Outcome::Cancelled;
                return Ok(Delivered::ClientGone);
            }
            end_stream(ds).await
        }
        StreamEnd::ClientGone => {
            ctx.end_attempt(AttemptOutcome::Cancelled, Some(200));
            ctx.outcome = Outcome::Cancelled;
            // Closing the upstream connection is what stops the provider generating (and billing).
            up.release(&state.connector, false).await;
            Ok(Delivered::ClientGone)
        }
    }
}

/// Moves events from the provider to the client until the stream ends one way or another.
#[expect(
    clippy::too_many_arguments,
    reason = "the stream's state, borrowed once"
)]
async fn pump(
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    up: &mut Upstream,
    decoder: &mut SseDecoder,
    held: Vec<SseEvent>,
    st: &mut StreamState,
    deadline: Instant,
    idle: Duration,
) -> StreamEnd {
    let mut batch = Batch::default();
    let mut verdict = Verdict::Forward;
    for ev in held {
        verdict = admit_event(ctx, st, &ev, req.client_wants_usage);
        if verdict != Verdict::Drop {
            batch.push(ev.raw);
        }
    }
    if batch.write(ds, &mut ctx.cache_fill).await.is_err() {
        return StreamEnd::ClientGone;
    }
    if verdict == Verdict::Error {
        return StreamEnd::ProviderError;
    }
    loop {
        if st.saw_done {
            return StreamEnd::Finished;
        }
        let read_by = (Instant::now() + idle).min(deadline);
        let chunk = tokio::select! {
            biased;
            r = timeout_at(read_by, up.read_chunk()) => r,
            _ = ds.read_body_or_idle(true) => return StreamEnd::ClientGone,
        };
        let bytes = match chunk {
            Err(_) => {
                let limit = if read_by >= deadline {
                    "the request's total time limit"
                } else {
                    "the idle limit"
                };
                // Errors name the model the client asked for, as the non-streaming errors do.
                return StreamEnd::Failed(GatewayError::StreamInterrupted {
                    model: req.model.clone(),
                    detail: format!("no data from the provider within {limit}"),
                });
            }
            Ok(Err(e)) => {
                return StreamEnd::Failed(GatewayError::StreamInterrupted {
                    model: req.model.clone(),
                    detail: e,
                });
            }
            Ok(Ok(None)) => {
                if decoder.pending_len() > 0 || st.truncated() {
                    return StreamEnd::Failed(GatewayError::StreamInterrupted {
                        model: req.model.clone(),
                        detail: "the provider closed the stream before it finished".into(),
                    });
                }
                // Finished (a finish_reason arrived) but no [DONE]; SDKs wait for it.
                if !st.saw_done {
                    let mut done = Batch::default();
                    done.push(Bytes::from_static(b"data: [DONE]\n\n"));
                    if done.write(ds, &mut ctx.cache_fill).await.is_err() {
                        return StreamEnd::ClientGone;
                    }
                }
                return StreamEnd::Finished;
            }
            Ok(Ok(Some(bytes))) => bytes,
        };
        decoder.push(&bytes);
        // Whatever else that read brought (a provider that sends each event as its own HTTP
        // chunk delivers them one chunk per call) goes into the same write.
        while let Some(more) = up.read_buffered() {
            decoder.push(&more);
        }
        // Events that arrived in one read leave in one write: no waiting for more, and no
        // syscall per event when a provider sends several at once.
        let mut batch = Batch::default();
        let mut verdict = Verdict::Forward;
        loop {
            let ev = match decoder.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    if batch.write(ds, &mut ctx.cache_fill).await.is_err() {
                        return StreamEnd::ClientGone;
                    }
                    return StreamEnd::Failed(GatewayError::StreamInterrupted {
                        model: req.model.clone(),
                        detail: e.to_string(),
                    });
                }
            };
            verdict = admit_event(ctx, st, &ev, req.client_wants_usage);
            if verdict != Verdict::Drop {
                batch.push(ev.raw);
            }
            if verdict == Verdict::Error {
                break;
            }
        }
        if batch.write(ds, &mut ctx.cache_fill).await.is_err() {
            return StreamEnd::ClientGone;
        }
        if verdict == Verdict::Error {
            return StreamEnd::ProviderError;
        }
    }
}

/// Events bound for the client from one upstream read.
#[derive(Default)]
struct Batch {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
}

impl Batch {
    fn push(&mut self, raw: Bytes) {
        if self.first.is_none() {
            self.first = Some(raw);
        } else {
            self.rest.push(raw);
        }
    }

    /// One write: the event itself when alone (no copy), else the events joined. A cache miss
    /// keeps a copy of what was written.
    async fn write(self, ds: &mut ServerSession, fill: &mut Option<Fill>) -> Result<(), ()> {
        let Some(first) = self.first else {
            return Ok(());
        };
        let out = if self.rest.is_empty() {
            first
        } else {
            let len = first.len() + self.rest.iter().map(Bytes::len).sum::<usize>();
            let mut joined = BytesMut::with_capacity(len);
            joined.extend_from_slice(&first);
            for r in &self.rest {
                joined.extend_from_slice(r);
            }
            joined.freeze()
        };
        if let Some(fill) = fill {
            fill.push(&out);
        }
        ds.write_response_body(out, false).await.map_err(|_| ())
    }
}

/// Updates the stream's state from one event and says whether it goes to the client.
fn admit_event(
    ctx: &mut RequestCtx,
    st: &mut StreamState,
    ev: &SseEvent,
    client_wants_usage: bool,
) -> Verdict {
    let verdict = st.inspect(ev, client_wants_usage);
    if st.usage.is_some() {
        ctx.usage = st.usage;
    }
    if verdict != Verdict::Drop && ctx.first_chunk.is_none() && st.content_chunks > 0 {
        ctx.first_chunk = Some(Instant::now());
    }
    verdict
}

async fn end_stream(ds: &mut ServerSession) -> Result<Delivered, Rejection> {
    match ds.finish_body().await {
        Ok(()) => Ok(Delivered::Complete),
        Err(_) => Ok(Delivered::ClientGone),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_config::{BaseUrl, ModelKind, ProviderConfig, Secret};
    use sluice_policy::{Provider, ProviderId};

    use super::*;

    fn target(key: Option<&str>) -> Target {
        Target {
            model: Arc::from("m"),
            upstream_model: Arc::from("m"),
            provider: Arc::new(Provider {
                id: ProviderId(0),
                name: Arc::from("up"),
                config: ProviderConfig {
                    name: "up".into(),
                    kind: ProviderKind::OpenAi {
                        base_url: BaseUrl {
                            tls: true,
                            host: "api.example.com".into(),
                            port: 443,
                            path: "/v1".into(),
                        },
                        api_key_env: Some("K".into()),
                        api_key: key.map(Secret::new),
                        connect_timeout: Duration::from_secs(1),
                    },
                },
            }),
            kind: ModelKind::Chat,
            pricing: None,
        }
    }

    #[test]
    fn provider_text_never_carries_the_provider_key() {
        let t = target(Some("sk-CANARY-1"));
        let quoted = "bad key sk-CANARY-1 (sk-CANARY-1)".to_owned();
        assert_eq!(redact_str(quoted.clone(), &t), "bad key *** (***)");
        assert_eq!(
            &redact_secret(Bytes::from(quoted), &t)[..],
            b"bad key *** (***)"
        );
        // Nothing to hide: the text is returned as it came.
        assert_eq!(redact_str("fine".into(), &target(None)), "fine");
        assert_eq!(&redact_secret(Bytes::from_static(b"fine"), &t)[..], b"fine");
        let f = Failure::Server {
            status: 502,
            detail: "the provider answered 200 with an error: sk-CANARY-1".into(),
        }
        .redacted(&t);
        assert!(!f.summary().contains("CANARY"), "{}", f.summary());
    }
}
