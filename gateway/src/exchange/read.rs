//! Reading a provider's answer up to the commit point: a whole non-streaming body (checked to be
//! an OpenAI answer), a stream's first event with data (checked not to be an error), or an
//! error answer's body (bounded, so its connection can go back to the pool).

use std::time::Duration;

use crate::providers::pool::Connector;
use bytes::{Bytes, BytesMut};
use sluice_policy::Target;
use tokio::time::{Instant, timeout_at};

use super::failure::{self, Failure, QUOTE_CHARS, server, truncate_utf8};
use crate::providers::Upstream;
use crate::sse::{SseDecoder, SseEvent};
use crate::stream::{self, AnswerInfo, AnswerProblem, Usage};

/// Largest single SSE event accepted from a provider.
pub const MAX_EVENT_BYTES: usize = 4 << 20;
/// How much of an error body Sluice reads before giving up on reusing the connection.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A checked answer, ready to commit.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per answer and matched at once; boxing it would cost an allocation per request"
)]
pub enum Ready {
    Whole {
        status: u16,
        body: Bytes,
        answer: AnswerInfo,
        usage: Option<Usage>,
    },
    Stream(Box<StreamStart>),
}

/// A stream that passed its first-event check: the events read so far wait in `held`.
pub struct StreamStart {
    pub upstream: Upstream,
    pub decoder: SseDecoder,
    pub held: Vec<SseEvent>,
}

/// The provider's wait, from `retry-after-ms` (preferred) or `retry-after` in seconds.
pub fn retry_after(up: &Upstream) -> Option<Duration> {
    let parse = |name: &str| {
        up.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    parse("retry-after-ms")
        .map(|ms| Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 86_400.0)))
        .or_else(|| parse("retry-after").map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0))))
}

/// Classifies a non-2xx answer, reading its body so the connection can go back to the pool.
pub async fn failed_status(
    mut up: Upstream,
    status: u16,
    target: &Target,
    connector: &Connector,
) -> Failure {
    let after = retry_after(&up);
    let (body, complete) = read_bounded(&mut up, MAX_ERROR_BODY).await;
    up.release(connector, complete).await;
    // Redacted before anything else looks at it: the body may quote the key it was sent.
    let body = failure::redact_body(body, target);
    failure::classify_status(status, after, body, &target.provider.name)
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

/// Events a passed-through Responses stream may open with before its first content (or its
/// end) commits it; past this many it is committed anyway.
const MAX_NATIVE_PREAMBLE: usize = 64;

/// Whether a stream's first events commit it. A chat stream is committed by its first event
/// with data. A passed-through Responses stream opens with bookkeeping (`response.created`,
/// `in_progress`, `output_item.added`) the provider sends before it has generated anything;
/// it is committed by its first content or its end, so a `response.failed` after the opening
/// still fails over and the time to first token is the first token's.
fn commits(ev: &SseEvent, native: bool, held: usize) -> Result<bool, &'static str> {
    use crate::face::responses::native::{self, Kind};
    if !native {
        return Ok(true);
    }
    if ev.event.as_deref() == Some(b"error".as_slice()) {
        return Err("the provider's stream opened with an error");
    }
    match native::event(&ev.data).kind {
        Kind::Error => Err("the provider's response failed before any content"),
        Kind::Content | Kind::End => Ok(true),
        Kind::Other | Kind::Unknown => Ok(held >= MAX_NATIVE_PREAMBLE),
    }
}

/// Reads a stream up to the event that commits it (see [`commits`]) and checks that it is not
/// an error.
pub async fn first_event(
    mut up: Upstream,
    target: &Target,
    native: bool,
) -> Result<Ready, Failure> {
    let is_sse = up
        .header("content-type")
        .is_some_and(|ct| ct.len() >= 17 && ct[..17].eq_ignore_ascii_case(b"text/event-stream"));
    if !is_sse {
        let ct = up.header("content-type").map(|v| truncate_utf8(v, 100));
        return Err(server(
            "the provider's answer to a stream request was not an event stream",
            format!(
                "the provider answered a stream request with {} instead of text/event-stream",
                ct.as_deref().unwrap_or("no content type")
            ),
        ));
    }
    let mut decoder = SseDecoder::new(MAX_EVENT_BYTES);
    let mut held = Vec::new();
    loop {
        while let Some(ev) = decoder
            .next_event()
            .map_err(|e| server("the provider's stream was not valid", e.to_string()))?
        {
            let has_data = ev.has_data;
            if has_data && stream::is_error_event(&ev) {
                let text = failure::redact_body(ev.data.clone(), target);
                return Err(server(
                    "the provider's stream opened with an error",
                    format!(
                        "the provider's stream opened with an error: {}",
                        truncate_utf8(&text, QUOTE_CHARS)
                    ),
                ));
            }
            if has_data && ev.is_done() {
                return Err(server(
                    "the provider's stream ended before any content",
                    "the provider's stream ended before any content".into(),
                ));
            }
            let commit = if has_data {
                commits(&ev, native, held.len()).map_err(|public| {
                    let text = failure::redact_body(ev.data.clone(), target);
                    server(
                        public,
                        format!("{public}: {}", truncate_utf8(&text, QUOTE_CHARS)),
                    )
                })?
            } else {
                false
            };
            held.push(ev);
            if commit {
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
                    "the provider's stream ended before its first event",
                    "the provider's stream ended before its first event".into(),
                ));
            }
            Err(e) => {
                return Err(server(
                    "reading the provider's stream failed",
                    format!("reading the provider's stream failed: {e}"),
                ));
            }
        }
    }
}

/// Limits for reading a whole answer.
pub struct WholeLimits {
    pub max_bytes: usize,
    pub deadline: Instant,
    pub idle: Duration,
    /// Keep the answer's text (content capture, or no usage to record).
    pub keep_text: bool,
}

/// Reads a whole non-streaming answer and checks it is a JSON object without `error`.
/// `native`: the answer is a Responses `response` object passing through (also refused when
/// its status is `failed`).
pub async fn whole(
    mut up: Upstream,
    limits: &WholeLimits,
    target: &Target,
    connector: &Connector,
    native: bool,
) -> Result<Ready, Failure> {
    let status = up.status();
    let mut parts: Vec<Bytes> = Vec::with_capacity(1);
    let mut len = 0;
    loop {
        let read_by = (Instant::now() + limits.idle).min(limits.deadline);
        match timeout_at(read_by, up.read_chunk()).await {
            Err(_) => return Err(Failure::Timeout(limits.idle)),
            Ok(Err(e)) => {
                return Err(server(
                    "reading the provider's answer failed",
                    format!("reading the provider's answer failed: {e}"),
                ));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                len += chunk.len();
                if len > limits.max_bytes {
                    up.release(connector, false).await;
                    return Err(server(
                        "the provider's answer was too large",
                        format!("the provider's answer exceeded {} bytes", limits.max_bytes),
                    ));
                }
                parts.push(chunk);
            }
        }
    }
    up.release(connector, true).await;
    // Most answers arrive in one chunk: keep it without a copy.
    let body = if parts.len() == 1 {
        parts.swap_remove(0)
    } else {
        parts.concat().into()
    };
    let read = if native {
        crate::face::responses::native::answer_info(&body, limits.keep_text)
    } else {
        AnswerInfo::from_body(&body, limits.keep_text)
    };
    match read {
        Ok((answer, usage)) => Ok(Ready::Whole {
            status,
            body,
            answer,
            usage,
        }),
        Err(AnswerProblem::ErrorObject) => {
            let text = failure::redact_body(body, target);
            Err(server(
                "the provider answered with an error object",
                format!(
                    "the provider answered {status} with an error: {}",
                    truncate_utf8(&text, QUOTE_CHARS)
                ),
            ))
        }
        Err(AnswerProblem::NotJson) => Err(server(
            "the provider's answer was not a JSON object",
            format!("the provider answered {status} with a body that is not a JSON object"),
        )),
    }
}
