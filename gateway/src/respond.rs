//! Writing answers to the client: every response header Sluice sends, JSON bodies, OpenAI
//! errors, the SSE head and its event batches, and replays from the response cache.
//!
//! This is the one module that writes to the downstream session. It reads the request's
//! context (for its id, trace, rate-limit headroom and cache status) and the cache's stored
//! answer; neither of those modules writes anything, so there is no way round the module graph
//! back to here.

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;

use crate::cache::CachedAnswer;
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::face::Render;
use crate::tap::Taps;

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

impl Delivered {
    fn of(written: bool) -> Self {
        if written {
            Self::Complete
        } else {
            Self::ClientGone
        }
    }
}

/// A response header with the request id and the trace context Sluice continued, plus the
/// key's rate-limit headroom and the cache's verdict when there are any.
pub fn response_header(
    status: u16,
    content_type: &'static str,
    content_length: Option<usize>,
    ctx: &RequestCtx,
) -> Result<Box<ResponseHeader>, GatewayError> {
    let build = || -> pingora::Result<Box<ResponseHeader>> {
        // Without pingora's map of each name's original spelling: HTTP/1 names are
        // case-insensitive, and that second map doubled the cost of every header inserted.
        let mut h = ResponseHeader::build_no_case(status, Some(9))?;
        h.insert_header("content-type", HeaderValue::from_static(content_type))?;
        match content_length {
            Some(len) => h.insert_header("content-length", len)?,
            None => h.insert_header("transfer-encoding", HeaderValue::from_static("chunked"))?,
        }
        h.insert_header("x-request-id", ctx.request_id.as_str())?;
        h.insert_header("traceparent", crate::trace::format(&ctx.trace))?;
        if let Some(headroom) = &ctx.headroom {
            crate::ratelimit::add_headers(&mut h, headroom)?;
        }
        if let Some(cache) = ctx.cache {
            h.insert_header("x-sluice-cache", HeaderValue::from_static(cache.as_str()))?;
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

/// The head of an SSE answer, never cached or buffered by intermediaries: chunked, or with
/// its length when the whole stream is already in hand (a cache hit, a provider that sent it
/// all at once), so the head and the events leave together and no terminator follows.
pub fn sse_header(
    ctx: &RequestCtx,
    content_length: Option<usize>,
) -> Result<Box<ResponseHeader>, GatewayError> {
    let mut header = response_header(200, "text/event-stream", content_length, ctx)?;
    header
        .insert_header("cache-control", HeaderValue::from_static("no-cache"))
        // Tell nginx-style intermediaries not to buffer the stream.
        .and_then(|()| header.insert_header("x-accel-buffering", HeaderValue::from_static("no")))
        .map_err(|e| {
            GatewayError::Internal(format!("cannot build the SSE head: {}", e.etype().as_str()))
        })?;
    Ok(header)
}

/// A chunked SSE head turned into one that gives the body's length (the whole stream is in
/// hand), without building it again. Should setting the length fail, the head stays chunked,
/// which frames the body as well (the terminator follows when the stream ends).
pub fn sized(mut head: Box<ResponseHeader>, len: usize) -> Box<ResponseHeader> {
    if head.insert_header("content-length", len).is_ok() {
        head.remove_header("transfer-encoding");
    }
    head
}

/// Writes a whole JSON answer. Returns whether the client took it.
pub async fn write_json(
    ds: &mut ServerSession,
    ctx: &RequestCtx,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, String)],
) -> bool {
    let Ok(mut header) = response_header(status, "application/json", Some(body.len()), ctx) else {
        return false;
    };
    for (name, value) in extra {
        if header.insert_header(*name, value.as_str()).is_err() {
            return false;
        }
    }
    ds.write_response_header(header).await.is_ok()
        && ds.write_response_body(body, true).await.is_ok()
}

/// Writes an error as OpenAI JSON (with `retry-after` when it has one) and ends the request
/// with it. Returns whether the connection is still reusable.
pub async fn write_error(ds: &mut ServerSession, ctx: &mut RequestCtx, e: &GatewayError) -> bool {
    ctx.end_with(e);
    if matches!(e, GatewayError::Draining) {
        // Sluice is going away: the client must not send its next request here.
        ds.set_keepalive(None);
    }
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    if let Some(after) = e.retry_after() {
        extra.push((
            "retry-after",
            after.as_secs_f64().ceil().max(1.0).to_string(),
        ));
        extra.push(("retry-after-ms", after.as_millis().to_string()));
    }
    let (status, body) = crate::face::error_json(ctx.face, e);
    write_json(ds, ctx, status, body, &extra).await
}

/// The room a batch's events get once it has more than one.
const BATCH_START: usize = 32;

/// Events bound for the client from one upstream read, written together.
#[derive(Default)]
pub struct Batch {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
}

impl Batch {
    pub fn push(&mut self, raw: Bytes) {
        if self.first.is_none() {
            self.first = Some(raw);
        } else {
            if self.rest.capacity() == 0 {
                // A provider that sends a whole answer at once brings a few dozen events.
                self.rest.reserve(BATCH_START);
            }
            self.rest.push(raw);
        }
    }

    /// One write: the batch's bytes (see [`Self::into_bytes`]), if any.
    pub async fn write(
        self,
        ds: &mut ServerSession,
        taps: &mut Taps,
        render: &mut Render,
    ) -> Result<(), ()> {
        match self.into_bytes(taps, render) {
            Some(out) => ds.write_response_body(out, false).await.map_err(|_| ()),
            None => Ok(()),
        }
    }

    /// What the client gets: the event itself when alone (no copy), else the events joined;
    /// `None` when there is nothing to send. The taps (a cache miss, a judged answer) keep a
    /// copy of the provider's events; a face other than Chat renders them into its own events
    /// for the client, unless they are already its own (a Responses answer passed through, see
    /// `Render::passes_through`).
    pub fn into_bytes(self, taps: &mut Taps, render: &mut Render) -> Option<Bytes> {
        let first = self.first?;
        if !render.passes_through() {
            let mut out = BytesMut::with_capacity(2 * first.len());
            for raw in std::iter::once(&first).chain(&self.rest) {
                taps.push(raw);
                render.events(raw, &mut out);
            }
            return (!out.is_empty()).then(|| out.freeze());
        }
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
        taps.push(&out);
        Some(out)
    }
}

/// Ends a chunked body with its terminator.
pub async fn end_stream(ds: &mut ServerSession) -> Delivered {
    Delivered::of(ds.finish_body().await.is_ok())
}

/// Answers a request from the cache: the stored bytes, with this request's own id and trace.
pub async fn replay(
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    hit: &CachedAnswer,
) -> Result<Delivered, Rejection> {
    ctx.model.clone_from(&hit.model);
    ctx.answer.id.clone_from(&hit.response_id);
    ctx.answer.model.clone_from(&hit.response_model);
    ctx.answer.finish_reasons.clone_from(&hit.finish_reasons);
    ctx.chunks = hit.chunks;
    let body = crate::face::replay(&mut ctx.render, &hit.body, hit.stream, hit.native);
    let header = if hit.stream {
        sse_header(ctx, Some(body.len()))
    } else {
        response_header(200, "application/json", Some(body.len()), ctx)
    }
    .map_err(Rejection::Error)?;
    let written = ds.write_response_header(header).await.is_ok()
        && ds.write_response_body(body, true).await.is_ok();
    if hit.stream {
        ctx.first_chunk = Some(tokio::time::Instant::now());
    }
    if written {
        ctx.end_ok(200);
    } else {
        ctx.end_cancelled();
    }
    Ok(Delivered::of(written))
}
