//! The upstream exchange: the attempt loop, up to the commit point.
//!
//! An attempt may fail over to the next target only while nothing has been written to the
//! client. For a non-streaming request Sluice reads and checks the whole answer before
//! committing (so a garbage 200 still fails over); for a stream it reads up to the first SSE
//! event carrying data (so a provider that opens with an error event, or with HTML, still fails
//! over). After the commit, failures end the stream with an OpenAI error event instead.
//!
//! | module | owns |
//! |---|---|
//! | this one | the loop: gather each attempt's inputs, apply [`retry`]'s decision |
//! | [`retry`] | the pure decisions: retry or stop, backoff, wait for a cooldown or skip |
//! | [`failure`] | what a failure is, its class, the client's final error, key redaction |
//! | [`dispatch`] | sending one attempt to its provider kind |
//! | [`read`] | reading an answer up to the commit point |
//! | [`forward`] | writing a whole answer, forwarding a stream |
//!
//! Every wait is bounded: time to first byte (`timeouts.ttft`), gaps between chunks
//! (`timeouts.idle`) and the whole request (`timeouts.total`). Every wait also watches the
//! client, so a client that leaves cancels the upstream request at once.

mod dispatch;
pub mod failure;
mod forward;
mod read;
pub mod retry;

use std::sync::Arc;

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use sluice_config::ProviderKind;
use sluice_observability::AttemptOutcome;
use sluice_policy::health::Observation;
use sluice_policy::{AttemptPlan, Target};
use tokio::time::{Instant, timeout_at};

use self::failure::Failure;
use self::forward::StreamLimits;
use self::read::{Ready, WholeLimits};
use self::retry::{Gate, Step};
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::providers::Upstream;
use crate::request::OpenAiRequest;
use crate::respond::{Delivered, Rejection};
use crate::state::AppState;

/// Runs the attempts of `plan` until one answer is committed or the plan gives up.
pub async fn run(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    plan: AttemptPlan<'_>,
) -> Result<Delivered, Rejection> {
    let timeouts = plan.route.timeouts;
    let retry = &plan.route.retry;
    let health = &plan.route.health;
    // The route's total time, or the client's own patience when it said so and is shorter.
    let deadline = ctx
        .client_deadline
        .map_or(ctx.started + timeouts.total, |d| {
            d.min(ctx.started + timeouts.total)
        });
    let (max_bytes, keep_text) = ctx.policy.as_ref().map_or((usize::MAX, false), |p| {
        (
            usize::try_from(p.server.max_response_bytes).unwrap_or(usize::MAX),
            p.telemetry.capture_content,
        )
    });
    let mut last: Option<Failure> = None;
    let mut attempt = 0;
    let mut sent = false;

    while let Some(step) = plan.step(attempt) {
        let target = step.target;
        attempt += 1;
        let now = Instant::now();
        if now >= deadline {
            last = Some(Failure::Timeout(deadline - ctx.started));
            break;
        }
        // A retry that could not even get its first byte before the deadline is not started.
        if sent
            && let Some(ms) = target.state.ewma_ttft_ms()
            && now + std::time::Duration::from_secs_f64(ms / 1e3) >= deadline
        {
            break;
        }
        match retry::gate(
            target.state.cooling_until(now),
            retry.max_retry_after,
            now,
            deadline,
        ) {
            Gate::Go => {}
            Gate::Skip => continue,
            Gate::WaitUntil(until) => {
                // The provider asked us to wait, and it is short: honour it.
                wait_for(state, ds, until).await?;
            }
        }

        // Counted in flight (for balancing) until the attempt, or the stream it commits, ends.
        let Some(_attempt_guard) = target.state.start_attempt(step.probe) else {
            // Another request took the probation probe first.
            continue;
        };
        let attempt_started = Instant::now();
        let body = match &target.provider.config.kind {
            ProviderKind::OpenAi { compat, .. } if !compat.is_identity() => {
                req.compat_body(&target.upstream_model, compat)
            }
            _ => req.upstream_body(&target.upstream_model),
        };
        let limits = WholeLimits {
            max_bytes,
            deadline,
            idle: timeouts.idle,
            keep_text,
        };
        let ttft_deadline = (Instant::now() + timeouts.ttft).min(deadline);
        let outcome = tokio::select! {
            biased;
            // Boxed: connecting and reading the answer's head take 10 KiB of future state that
            // a committed stream no longer needs; in place it would stay reserved to the end.
            r = Box::pin(attempt_once(state, ctx, req, target, body, ttft_deadline, &limits)) => Ok(r),
            _ = ds.read_body_or_idle(true) => Err(Rejection::ClientGone),
            () = state.aborted() => Err(Rejection::Error(GatewayError::Draining)),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(end) => {
                ctx.end_attempt(AttemptOutcome::Cancelled, None);
                return Err(end);
            }
        };
        let failure = match outcome {
            Ok(ready) => {
                let now = Instant::now();
                target.state.observe_ttft(now - attempt_started);
                target.state.observe(health, Observation::Success, now);
                let limits = StreamLimits {
                    deadline,
                    idle: timeouts.idle,
                    health: *health,
                };
                return forward::commit(state, ds, ctx, req, target, ready, limits).await;
            }
            Err(failure) => failure,
        };
        if let Some((outcome, status)) = failure.attempt_outcome() {
            ctx.end_attempt(outcome, status);
            sent = true;
        }
        if failure.counts_against_health() {
            target
                .state
                .observe(health, Observation::Failure, Instant::now());
        }
        tracing::debug!(
            request_id = %ctx.request_id,
            model = %target.model,
            attempt,
            failure = %failure.summary(),
            "Attempt failed."
        );
        let now = Instant::now();
        if let Failure::RateLimited(Some(after)) = &failure {
            // Shared by every request: the provider said when it wants to hear from us again.
            target.state.cool_down(now + *after);
        }
        let same_target_next = plan
            .target(attempt)
            .is_some_and(|next| Arc::ptr_eq(next, target));
        let step = retry::after_failure(
            failure.class(),
            retry,
            attempt,
            same_target_next,
            now,
            deadline,
            jitter(ctx.trace.trace_id, attempt),
        );
        last = Some(failure);
        let Step::Retry { after } = step else { break };
        // Retries beyond the route's budget are not made: the client gets the real error now.
        if sent && (ctx.no_retries || !plan.route.state.retry_budget.try_retry(&retry.budget, now))
        {
            state
                .metrics
                .record_retry_budget_exhausted(&plan.route.name);
            if let Some(d) = ctx.decision.as_mut() {
                d.retry_budget_exhausted = true;
            }
            break;
        }
        if !after.is_zero() {
            wait_for(state, ds, now + after).await?;
        }
    }
    if let Some(f) = &last {
        // The client's error says what kind of failure it was; the log says which provider,
        // where, and what it answered.
        tracing::info!(
            request_id = %ctx.request_id,
            model = %req.model,
            attempts = attempt,
            last = %f.summary(),
            "Every attempt failed."
        );
    }
    Err(failure::final_rejection(&req.model, last))
}

/// Sleeps until `until` unless the client leaves or the shutdown grace runs out first.
async fn wait_for(
    state: &AppState,
    ds: &mut ServerSession,
    until: Instant,
) -> Result<(), Rejection> {
    tokio::select! {
        biased;
        _ = ds.read_body_or_idle(true) => Err(Rejection::ClientGone),
        () = state.aborted() => Err(Rejection::Error(GatewayError::Draining)),
        () = tokio::time::sleep_until(until) => Ok(()),
    }
}

/// A uniform sample in `0.0..1.0` for the backoff, from the request's (random) trace id, so
/// concurrent requests that failed together do not retry together.
fn jitter(trace_id: [u8; 16], attempt: usize) -> f64 {
    let mut z = u64::from_le_bytes([
        trace_id[0],
        trace_id[1],
        trace_id[2],
        trace_id[3],
        trace_id[4],
        trace_id[5],
        trace_id[6],
        trace_id[7],
    ]) ^ (attempt as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64's finalizer spreads one changed bit over the whole word.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// An attempt past its response header.
enum Opened {
    Stream(Ready),
    Whole(Upstream),
}

/// How long a provider that answered `/responses` with 404/405 is translated before its
/// `/responses` is tried again.
const NO_RESPONSES_API_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// One attempt up to the commit point.
async fn attempt_once(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &OpenAiRequest,
    target: &Target,
    body: Bytes,
    ttft_deadline: Instant,
    limits: &WholeLimits,
) -> Result<Ready, Failure> {
    let started = Instant::now();
    let opened = timeout_at(ttft_deadline, async {
        let mut up =
            dispatch::open(state, ctx, req.endpoint, req.stream, target, body.clone()).await?;
        let mut status = up.status();
        if matches!(status, 404 | 405) && ctx.render.is_native_responses() {
            // An OpenAI-compatible server (kind `openai`) without the Responses API: this
            // attempt goes again translated, and the provider is translated for a while.
            target
                .state
                .note_no_responses_api(Instant::now() + NO_RESPONSES_API_FOR);
            tracing::info!(
                request_id = %ctx.request_id,
                provider = %target.provider.name,
                status,
                "The provider does not serve the Responses API; its Responses requests are translated to chat completions for a while."
            );
            ctx.end_attempt(AttemptOutcome::ClientError, Some(status));
            up.release(&state.connector, false).await;
            up = dispatch::open(state, ctx, req.endpoint, req.stream, target, body).await?;
            status = up.status();
        }
        if !(200..300).contains(&status) {
            return Err(read::failed_status(up, status, target, &state.connector).await);
        }
        if req.stream {
            let native = ctx.render.is_native_responses();
            read::first_event(up, target, native)
                .await
                .map(Opened::Stream)
        } else {
            Ok(Opened::Whole(up))
        }
    })
    .await
    .map_err(|_| Failure::Timeout(ttft_deadline.saturating_duration_since(started)))??;

    match opened {
        Opened::Stream(ready) => Ok(ready),
        // The time to first byte is met; the rest of the body is bounded by idle and total.
        Opened::Whole(up) => {
            let native = ctx.render.is_native_responses();
            read::whole(up, limits, target, &state.connector, native).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_uniform_enough_and_differs_per_attempt() {
        let mut sum = 0.0;
        let n = 10_000u32;
        for i in 0..n {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let j = jitter(id, 1);
            assert!((0.0..1.0).contains(&j));
            sum += j;
        }
        let mean = sum / f64::from(n);
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_ne!(jitter([7; 16], 1), jitter([7; 16], 2));
    }
}
