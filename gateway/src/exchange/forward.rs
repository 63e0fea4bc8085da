//! After the commit point: writing a checked whole answer, or forwarding a stream event by
//! event until it ends one way or another.
//!
//! Events that arrived in one upstream read (every HTTP chunk already buffered included) leave
//! in one write: no waiting for more, and no syscall per event when a provider sends several at
//! once. Every wait also watches the client, so a client that leaves cancels the upstream
//! request at once; closing that connection is what stops the provider generating (and billing).

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use sluice_observability::AttemptOutcome;
use sluice_policy::Target;
use sluice_policy::health::Observation;
use tokio::time::{Instant, timeout_at};

use super::failure;
use super::read::{Ready, StreamStart};
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::providers::Upstream;
use crate::request::OpenAiRequest;
use crate::respond::{self, Batch, Delivered, Rejection};
use crate::sse::{SseDecoder, SseEvent};
use crate::state::AppState;
use crate::stream::{StreamState, Verdict};

/// Reads gathered into one client write at most (each up to 64 KiB; see [`Pump::gather`]).
const MAX_READS_PER_WRITE: usize = 8;

/// What a committed stream may take: until `deadline` in all, `idle` between chunks; and the
/// route's health settings, for a stream the provider cuts.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub deadline: Instant,
    pub idle: Duration,
    pub health: sluice_config::HealthConfig,
}

/// Writes a checked answer (or starts forwarding a checked stream) to the client.
///
/// This and [`stream`] are not `async fn`s: one keeps each argument taken by value twice in its
/// future (the argument and its moved copy), and these futures last as long as the stream.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps by-value arguments twice in its future"
)]
pub fn commit(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    target: &Target,
    ready: Ready,
    limits: StreamLimits,
) -> impl Future<Output = Result<Delivered, Rejection>> {
    async move {
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
                if ctx.render.is_native_responses() {
                    ctx.taps.set_native();
                }
                ctx.taps.set_whole(&body);
                let body = crate::face::whole(&mut ctx.render, body);
                let header =
                    respond::response_header(status, "application/json", Some(body.len()), ctx)
                        .map_err(Rejection::Error)?;
                if ds.write_response_header(header).await.is_err()
                    || ds.write_response_body(body, true).await.is_err()
                {
                    ctx.end_cancelled();
                    return Ok(Delivered::ClientGone);
                }
                ctx.end_ok(status);
                Ok(Delivered::Complete)
            }
            Ready::Stream(start) => stream(state, ds, ctx, req, target, *start, limits).await,
        }
    }
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
    clippy::manual_async_fn,
    reason = "an async fn keeps by-value arguments twice in its future"
)]
fn stream(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    target: &Target,
    start: StreamStart,
    limits: StreamLimits,
) -> impl Future<Output = Result<Delivered, Rejection>> {
    async move {
        let StreamStart {
            upstream: mut up,
            mut decoder,
            held,
        } = start;
        let header = respond::sse_header(ctx, None).map_err(Rejection::Error)?;
        let mut st = StreamState::new(ctx.render.is_native_responses());
        if st.native {
            ctx.taps.set_native();
        }
        let end = {
            let mut pump = Pump {
                abort: state.abort.subscribe(),
                ds: &mut *ds,
                ctx: &mut *ctx,
                req,
                target,
                up: &mut up,
                decoder: &mut decoder,
                st: &mut st,
                limits,
            };
            pump.run(header, held).await
        };

        // One epilogue for every ending: record what was delivered, settle the upstream
        // connection, finish the downstream body.
        let saw_done = st.saw_done;
        ctx.answer = std::mem::take(&mut st.answer);
        ctx.chunks = st.content_chunks;
        match end {
            StreamEnd::Finished => {
                ctx.end_attempt(AttemptOutcome::Ok, Some(200));
                if saw_done {
                    ctx.taps.mark_complete();
                }
                // Read the terminating chunk, if any, so the connection can be pooled.
                let complete = matches!(
                    timeout_at(Instant::now() + Duration::from_millis(100), up.read_chunk()).await,
                    Ok(Ok(None))
                );
                up.release(&state.connector, complete).await;
                let delivered = respond::end_stream(ds).await;
                match delivered {
                    Delivered::Complete => ctx.end_ok(200),
                    Delivered::ClientGone => ctx.end_cancelled(),
                }
                Ok(delivered)
            }
            StreamEnd::ProviderError => {
                target
                    .state
                    .observe(&limits.health, Observation::Failure, Instant::now());
                ctx.end_attempt(AttemptOutcome::Interrupted, Some(200));
                ctx.end_provider_stream_error();
                up.release(&state.connector, false).await;
                Ok(respond::end_stream(ds).await)
            }
            StreamEnd::Failed(e) => {
                tracing::debug!(request_id = %ctx.request_id, error = %e, "Stream ended with an error event.");
                // Cut by the provider (a stall, a close, garbage): its health suffers; the
                // gateway's own shutdown is not the provider's fault.
                if !*state.abort.borrow() {
                    target
                        .state
                        .observe(&limits.health, Observation::Failure, Instant::now());
                }
                ctx.end_attempt(AttemptOutcome::Interrupted, Some(200));
                ctx.end_with(&e);
                up.release(&state.connector, false).await;
                // Sluice's own end of a passed-through stream continues the provider's numbering.
                if st.native
                    && let crate::face::Render::Responses(r) = &mut ctx.render
                {
                    let next = st.last_sequence.map_or(0, |n| n + 1);
                    r.resume_native(ctx.answer.id.as_deref(), ctx.answer.model.as_deref(), next);
                }
                if ds
                    .write_response_body(
                        crate::face::error_event(ctx.face, &mut ctx.render, &e),
                        false,
                    )
                    .await
                    .is_err()
                {
                    return Ok(Delivered::ClientGone);
                }
                Ok(respond::end_stream(ds).await)
            }
            StreamEnd::ClientGone => {
                ctx.end_attempt(AttemptOutcome::Cancelled, Some(200));
                ctx.end_cancelled();
                // Closing the upstream connection is what stops the provider generating (and billing).
                up.release(&state.connector, false).await;
                Ok(Delivered::ClientGone)
            }
        }
    }
}

/// A committed stream's moving parts, borrowed for the time it is pumped.
struct Pump<'a> {
    /// Fires when the shutdown grace runs out.
    abort: tokio::sync::watch::Receiver<bool>,
    ds: &'a mut ServerSession,
    ctx: &'a mut RequestCtx,
    req: &'a OpenAiRequest,
    target: &'a Target,
    up: &'a mut Upstream,
    decoder: &'a mut SseDecoder,
    st: &'a mut StreamState,
    limits: StreamLimits,
}

impl Pump<'_> {
    /// Writes the head (chunked) and moves events from the provider to the client until the
    /// stream ends.
    async fn run(&mut self, head: Box<ResponseHeader>, held: Vec<SseEvent>) -> StreamEnd {
        // The events read while checking the first one, and whatever else that read brought:
        // a provider (or a cache) that sends the whole stream at once has sent it all by now.
        let mut batch = Batch::default();
        let mut verdict = Verdict::Forward;
        for ev in held {
            verdict = self.admit(ev, &mut batch);
        }
        let gathered = if verdict == Verdict::Error {
            Ok(verdict)
        } else {
            self.gather(&mut batch)
        };
        if matches!(gathered, Ok(Verdict::Forward)) && self.st.saw_done {
            return self.whole(head, batch).await;
        }
        if self.ds.write_response_header(head).await.is_err() {
            return StreamEnd::ClientGone;
        }
        self.ctx.sent_status(200);
        match gathered {
            Ok(v) => verdict = v,
            Err(end) => return self.flush_then(batch, end).await,
        }
        if batch
            .write(self.ds, &mut self.ctx.taps, &mut self.ctx.render)
            .await
            .is_err()
        {
            return StreamEnd::ClientGone;
        }
        if verdict == Verdict::Error {
            return StreamEnd::ProviderError;
        }
        loop {
            if self.st.saw_done {
                return StreamEnd::Finished;
            }
            if *self.abort.borrow() {
                return StreamEnd::Failed(self.shutting_down());
            }
            let read_by = (Instant::now() + self.limits.idle).min(self.limits.deadline);
            let chunk = tokio::select! {
                biased;
                r = timeout_at(read_by, self.up.read_chunk()) => r,
                _ = self.ds.read_body_or_idle(true) => return StreamEnd::ClientGone,
                _ = self.abort.changed() => return StreamEnd::Failed(self.shutting_down()),
            };
            let bytes = match chunk {
                Err(_) => {
                    let limit = if read_by >= self.limits.deadline {
                        "the request's total time limit"
                    } else {
                        "the idle limit"
                    };
                    return StreamEnd::Failed(
                        self.interrupted(format!("no data from the provider within {limit}")),
                    );
                }
                Ok(Err(e)) => return StreamEnd::Failed(self.interrupted(e)),
                Ok(Ok(None)) => return self.upstream_ended().await,
                Ok(Ok(Some(bytes))) => bytes,
            };
            self.decoder.push(&bytes);
            let mut batch = Batch::default();
            let verdict = match self.gather(&mut batch) {
                Ok(v) => v,
                Err(end) => return self.flush_then(batch, end).await,
            };
            if batch
                .write(self.ds, &mut self.ctx.taps, &mut self.ctx.render)
                .await
                .is_err()
            {
                return StreamEnd::ClientGone;
            }
            if verdict == Verdict::Error {
                return StreamEnd::ProviderError;
            }
        }
    }

    /// Everything the provider has sent so far into `batch`: whatever else the last read
    /// brought (a provider that sends each event as its own HTTP chunk delivers them one chunk
    /// per call), and, while the stream goes on, what already waits on the socket after a read
    /// that filled its buffer. It all goes out in one write; a provider that never pauses is
    /// still forwarded, [`MAX_READS_PER_WRITE`] reads at a time.
    fn gather(&mut self, batch: &mut Batch) -> Result<Verdict, StreamEnd> {
        let mut reads = 0;
        loop {
            while let Some(more) = self.up.read_buffered() {
                self.decoder.push(&more);
            }
            let verdict = self.decode_into(batch)?;
            if verdict == Verdict::Error
                || self.st.saw_done
                || reads == MAX_READS_PER_WRITE
                || !self.up.read_arrived()
            {
                return Ok(verdict);
            }
            reads += 1;
        }
    }

    /// Takes every complete event the decoder holds into `batch`, up to the provider's own
    /// error event (whose verdict is returned) or the end of the stream. A malformed event
    /// ends the stream.
    fn decode_into(&mut self, batch: &mut Batch) -> Result<Verdict, StreamEnd> {
        loop {
            if self.st.saw_done {
                return Ok(Verdict::Forward);
            }
            match self.decoder.next_event() {
                Ok(Some(ev)) => {
                    if self.admit(ev, batch) == Verdict::Error {
                        return Ok(Verdict::Error);
                    }
                }
                Ok(None) => return Ok(Verdict::Forward),
                Err(e) => return Err(StreamEnd::Failed(self.interrupted(e.to_string()))),
            }
        }
    }

    /// The whole stream, `[DONE]` included, came with its first read: head and events go out
    /// in one piece with their length, instead of a head, a chunk and a terminator (three
    /// writes, three wake-ups of the client).
    async fn whole(&mut self, head: Box<ResponseHeader>, batch: Batch) -> StreamEnd {
        let body = batch
            .into_bytes(&mut self.ctx.taps, &mut self.ctx.render)
            .unwrap_or_default();
        let head = respond::sized(head, body.len());
        if self.ds.write_response_header(head).await.is_err() {
            return StreamEnd::ClientGone;
        }
        self.ctx.sent_status(200);
        if self.ds.write_response_body(body, false).await.is_err() {
            return StreamEnd::ClientGone;
        }
        StreamEnd::Finished
    }

    /// Writes what was gathered before `end`, then ends with it.
    async fn flush_then(&mut self, batch: Batch, end: StreamEnd) -> StreamEnd {
        if batch
            .write(self.ds, &mut self.ctx.taps, &mut self.ctx.render)
            .await
            .is_err()
        {
            return StreamEnd::ClientGone;
        }
        end
    }

    /// The provider's body ended: finished, or cut short.
    async fn upstream_ended(&mut self) -> StreamEnd {
        if self.decoder.pending_len() > 0 || self.st.truncated() {
            return StreamEnd::Failed(
                self.interrupted("the provider closed the stream before it finished".into()),
            );
        }
        // Finished (a finish_reason arrived) but no [DONE]; SDKs wait for it.
        if !self.st.saw_done {
            let mut done = Batch::default();
            done.push(Bytes::from_static(b"data: [DONE]\n\n"));
            if done
                .write(self.ds, &mut self.ctx.taps, &mut self.ctx.render)
                .await
                .is_err()
            {
                return StreamEnd::ClientGone;
            }
        }
        StreamEnd::Finished
    }

    /// Updates the stream's state from one event and adds it to `batch` unless it is dropped.
    /// A provider's error event is passed on with the provider key redacted.
    fn admit(&mut self, ev: SseEvent, batch: &mut Batch) -> Verdict {
        let verdict = self.st.inspect(&ev, self.req.client_wants_usage);
        if self.st.usage.is_some() {
            self.ctx.usage = self.st.usage;
        }
        if verdict != Verdict::Drop && self.ctx.first_chunk.is_none() && self.st.content_chunks > 0
        {
            self.ctx.first_chunk = Some(Instant::now());
        }
        match verdict {
            Verdict::Drop => {}
            Verdict::Forward => batch.push(ev.raw),
            Verdict::Error => batch.push(failure::redact_body(ev.raw, self.target)),
        }
        verdict
    }

    fn shutting_down(&self) -> GatewayError {
        GatewayError::StreamInterrupted {
            model: self.req.model.clone(),
            detail: "the gateway shut down before the stream finished".into(),
        }
    }

    /// Errors name the model the client asked for, as the non-streaming errors do.
    fn interrupted(&self, detail: String) -> GatewayError {
        GatewayError::StreamInterrupted {
            model: self.req.model.clone(),
            detail: failure::redact_text(&detail, self.target),
        }
    }
}
