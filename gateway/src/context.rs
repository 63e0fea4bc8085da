//! The per-request context: what one request has done so far, handed to the recorder once at
//! the end as a [`Finished`].
//!
//! A request ends exactly once, through [`RequestCtx::end_ok`], [`RequestCtx::end_with`],
//! [`RequestCtx::end_passthrough`] or [`RequestCtx::end_cancelled`]: they set the status, the
//! outcome and the error kind together, so a record can never say "ok" with an error kind, or
//! keep the status of an earlier attempt. (A stream's 200 is sent before its end is known;
//! [`RequestCtx::sent_status`] records it.)

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sluice_config::ProviderKind;
use sluice_observability::{
    AttemptOutcome, AttemptRecord, Endpoint, ErrorKind, Outcome, RequestParams, RequestRecord,
    RouteDecision, TokenUsage, TraceContext, UsageSource,
};
use sluice_policy::{Headroom, KeyLimiter, LimitKind, Policy, Target, TenantState};
use tokio::time::Instant;

use crate::cache::CacheStatus;
use crate::error::GatewayError;
use crate::face::{Face, Render};
use crate::judge::{JudgePending, Sampled};
use crate::stream::{AnswerInfo, Usage};
use crate::tap::Taps;
use sluice_judge::JudgedRequest;

#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub trace: TraceContext,
    pub started: Instant,
    pub start_wall: SystemTime,
    pub endpoint: Endpoint,
    /// The client API the request came in on (from `endpoint`).
    pub face: Face,
    /// How the answer is rendered for `face`: what it remembers between events.
    pub render: Render,
    /// The one policy snapshot this request uses from admission to its record.
    pub policy: Option<Arc<Policy>>,
    pub tenant: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    /// The catalog model of the latest attempt (the one that answered, on success).
    pub model: Option<Arc<str>>,
    pub request_model: Option<String>,
    /// `request_model` when the policy knows it.
    pub request_model_label: Option<Arc<str>>,
    pub stream: bool,
    status: u16,
    outcome: Outcome,
    error_kind: Option<ErrorKind>,
    ended: bool,
    pub attempts: Vec<AttemptRecord>,
    /// When the current attempt started (monotonic), to time it.
    attempt_started: Option<Instant>,
    /// Usage as the provider reported it.
    pub usage: Option<Usage>,
    pub answer: AnswerInfo,
    /// When the first content chunk went to the client.
    pub first_chunk: Option<Instant>,
    pub chunks: u32,
    pub params: RequestParams,
    /// The request body, kept (by reference count) for token estimation and capture.
    pub body: Option<Bytes>,
    /// Prices of the catalog model that answered.
    pub pricing: Option<sluice_config::Pricing>,
    /// The route's slow threshold for the tail sampler.
    pub route_slow: Option<Duration>,
    /// The key's and its tenant's rate limiters, fed with this request's tokens once they
    /// are known.
    pub limiters: [Option<Arc<KeyLimiter>>; 2],
    /// The tenant's live state: its spend grows by this request's cost.
    pub tenant_state: Option<Arc<TenantState>>,
    /// The key's counters in Redis, when limits are shared (`state.redis`).
    pub shared: Option<Arc<crate::shared::Subject>>,
    /// The route's retry budget is spent by the client's own retry: one attempt only.
    pub no_retries: bool,
    /// When the client stops waiting (`x-stainless-read-timeout`).
    pub client_deadline: Option<Instant>,
    /// How the request was routed.
    pub decision: Option<RouteDecision>,
    /// Remediation actions that changed how this request was served: (action, rule).
    pub remediation: Vec<(&'static str, Arc<str>)>,
    /// Set when the judge sampled this request.
    pub judge: Option<Sampled>,
    /// What the key has left, for `x-ratelimit-*` headers.
    pub headroom: Option<Headroom>,
    /// Which of the key's limits refused the request.
    pub rate_limited: Option<LimitKind>,
    /// What the route's response cache did for this request.
    pub cache: Option<CacheStatus>,
    /// A cache miss's answer and a judged answer, collected as they are written.
    pub taps: Taps,
}

/// A finished request on its way to the recorder: the record, and what the recorder still
/// has to work out off the request path (a token count when the provider reported none, the
/// captured content, cost).
#[derive(Debug)]
pub struct Finished {
    pub record: RequestRecord,
    /// Set when the provider reported no usage but something was sent and delivered.
    pub estimate: Option<Estimate>,
    /// Prompt and answer, only when the request's policy captures content.
    pub capture: Option<(Bytes, AnswerInfo)>,
    pub pricing: Option<sluice_config::Pricing>,
    pub limiters: [Option<Arc<KeyLimiter>>; 2],
    pub tenant_state: Option<Arc<TenantState>>,
    /// The key's counters in Redis, when limits are shared.
    pub shared: Option<Arc<crate::shared::Subject>>,
    pub route_slow: Option<Duration>,
    /// The snapshot the request used, for its telemetry settings.
    pub policy: Option<Arc<Policy>>,
    /// A request the judge sampled: its answer to judge, or the route when it got none.
    pub judge: Option<Result<JudgePending, Arc<str>>>,
}

/// What a tokenizer count needs: the model, what was sent, what was delivered.
#[derive(Debug)]
pub struct Estimate {
    pub model: Arc<str>,
    pub body: Bytes,
    pub text: String,
}

impl RequestCtx {
    pub fn new(request_id: String, endpoint: Endpoint, trace: TraceContext) -> Self {
        Self {
            request_id,
            trace,
            started: Instant::now(),
            start_wall: SystemTime::now(),
            endpoint,
            face: Face::of(endpoint),
            render: Render::Chat,
            policy: None,
            tenant: None,
            route: None,
            model: None,
            request_model: None,
            request_model_label: None,
            stream: false,
            status: 0,
            outcome: Outcome::GatewayError,
            error_kind: None,
            ended: false,
            attempts: Vec::new(),
            attempt_started: None,
            usage: None,
            answer: AnswerInfo::default(),
            first_chunk: None,
            chunks: 0,
            params: RequestParams::default(),
            body: None,
            pricing: None,
            route_slow: None,
            limiters: [None, None],
            tenant_state: None,
            shared: None,
            no_retries: false,
            client_deadline: None,
            decision: None,
            remediation: Vec::new(),
            judge: None,
            headroom: None,
            rate_limited: None,
            cache: None,
            taps: Taps::default(),
        }
    }

    // === how the request ends (once) ===

    fn end(&mut self, status: u16, outcome: Outcome, kind: Option<ErrorKind>) {
        debug_assert!(
            !self.ended,
            "request {} ended twice: {:?} then {outcome:?}",
            self.request_id, self.outcome
        );
        if self.ended {
            return;
        }
        self.ended = true;
        self.status = status;
        self.outcome = outcome;
        self.error_kind = kind;
    }

    /// The status line already sent (a stream's 200), before the end is known.
    pub fn sent_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Answered in full with `status`.
    pub fn end_ok(&mut self, status: u16) {
        self.end(status, Outcome::Ok, None);
    }

    /// Ended by Sluice's own error. After a stream's head, the status stays the 200 sent.
    pub fn end_with(&mut self, e: &GatewayError) {
        let status = if self.status == 200 { 200 } else { e.status() };
        self.end(status, e.outcome(), Some(e.kind()));
    }

    /// A provider's own 4xx, passed through as it came.
    pub fn end_passthrough(&mut self, status: u16) {
        self.end(
            status,
            Outcome::ClientError,
            Some(ErrorKind::ProviderClientError),
        );
    }

    /// The provider's own error event ended a stream that had started.
    pub fn end_provider_stream_error(&mut self) {
        self.end(
            200,
            Outcome::Truncated,
            Some(ErrorKind::ProviderStreamError),
        );
    }

    /// The client left. nginx's 499 ("client closed request") when nothing was sent yet; it
    /// is only recorded, never sent.
    pub fn end_cancelled(&mut self) {
        let status = if self.status == 0 { 499 } else { self.status };
        self.end(status, Outcome::Cancelled, None);
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    // === attempts ===

    /// Opens the record of an attempt at `target`; [`Self::end_attempt`] closes it.
    pub fn begin_attempt(&mut self, target: &Target, span_id: [u8; 8]) {
        let (kind, address, port) = match &target.provider.config.kind {
            ProviderKind::OpenAi { base_url, .. } => {
                ("openai", Some(base_url.host.clone()), Some(base_url.port))
            }
            ProviderKind::Mock { .. } => ("sluice.mock", None, None),
            other => match other.access() {
                Some(a) => (
                    crate::providers::adapter::genai_provider_name(other),
                    Some(a.base_url.host.clone()),
                    Some(a.base_url.port),
                ),
                None => ("sluice", None, None),
            },
        };
        self.model = Some(Arc::clone(&target.model));
        self.pricing = target.pricing;
        self.attempt_started = Some(Instant::now());
        self.attempts.push(AttemptRecord {
            provider: Arc::clone(&target.provider.name),
            provider_kind: kind,
            model: Arc::clone(&target.model),
            upstream_model: Arc::clone(&target.upstream_model),
            server_address: address,
            server_port: port,
            span_id,
            start: SystemTime::now(),
            duration: Duration::ZERO,
            outcome: AttemptOutcome::Ok,
            status: None,
        });
    }

    /// Closes the latest attempt with how it ended.
    pub fn end_attempt(&mut self, outcome: AttemptOutcome, status: Option<u16>) {
        if let (Some(a), Some(started)) = (self.attempts.last_mut(), self.attempt_started.take()) {
            a.duration = started.elapsed();
            a.outcome = outcome;
            if status.is_some() {
                a.status = status;
            }
        }
    }

    // === the end ===

    /// The end-of-request record, cheap to build: usage as the provider reported it; a
    /// tokenizer count, cost and captured content are left to the recorder.
    pub fn finish(&mut self) -> Finished {
        debug_assert!(
            self.ended,
            "request {} recorded before it ended",
            self.request_id
        );
        let duration = self.started.elapsed();
        let usage = self.usage.map(|u| TokenUsage {
            input: u.prompt_tokens,
            output: u.completion_tokens,
            cached_input: u.cached_tokens(),
            cache_write_input: u.cache_write_tokens(),
            reasoning: u.reasoning_tokens(),
            source: UsageSource::Provider,
        });
        // Nothing reached a provider, or nothing came back: there is nothing to count.
        let delivered = !self.answer.text.is_empty() || self.outcome == Outcome::Ok;
        let estimate = match (&usage, &self.model, &self.body) {
            (None, Some(model), Some(body)) if !self.attempts.is_empty() && delivered => {
                Some(Estimate {
                    model: Arc::clone(model),
                    body: body.clone(),
                    text: std::mem::take(&mut self.answer.text),
                })
            }
            _ => None,
        };
        let capture_on = self
            .policy
            .as_ref()
            .is_some_and(|p| p.telemetry.capture_content);
        let capture = match (&self.body, capture_on) {
            (Some(body), true) => Some((
                body.clone(),
                AnswerInfo {
                    id: self.answer.id.clone(),
                    model: self.answer.model.clone(),
                    finish_reasons: self.answer.finish_reasons.clone(),
                    text: estimate
                        .as_ref()
                        .map_or_else(|| self.answer.text.clone(), |e| e.text.clone()),
                    tool_calls: self.answer.tool_calls.clone(),
                },
            )),
            _ => None,
        };
        let judge = self.judge.take().map(|sampled| self.judge_pending(sampled));
        let record = RequestRecord {
            request_id: std::mem::take(&mut self.request_id),
            trace: self.trace,
            start: self.start_wall,
            duration,
            endpoint: self.endpoint,
            route: self.route.clone(),
            model: self.model.clone(),
            request_model: self.request_model.take(),
            request_model_label: self.request_model_label.clone(),
            tenant: self.tenant.clone(),
            stream: self.stream,
            status: self.status,
            outcome: self.outcome,
            error_type: self.error_kind,
            attempts: std::mem::take(&mut self.attempts),
            usage,
            cost_usd: None,
            time_to_first_chunk: self.first_chunk.map(|t| t.duration_since(self.started)),
            chunks: self.chunks,
            response_id: self.answer.id.take(),
            response_model: self.answer.model.take(),
            finish_reasons: std::mem::take(&mut self.answer.finish_reasons),
            params: std::mem::take(&mut self.params),
            rate_limited: self.rate_limited.map(LimitKind::as_str),
            cache: self.cache.map(CacheStatus::as_str),
            content: None,
            decision: self.decision.take(),
            remediation: std::mem::take(&mut self.remediation),
            tool_calls: self.answer.take_tool_calls(),
        };
        Finished {
            record,
            estimate,
            capture,
            pricing: self.pricing,
            limiters: self.limiters.clone(),
            tenant_state: self.tenant_state.clone(),
            shared: self.shared.clone(),
            route_slow: self.route_slow,
            policy: self.policy.clone(),
            judge,
        }
    }

    /// A sampled request's judge job inputs; the route alone when there is no answer to judge.
    fn judge_pending(&mut self, sampled: Sampled) -> Result<JudgePending, Arc<str>> {
        let route = self.route.clone().unwrap_or_else(|| Arc::from(""));
        let (Outcome::Ok, Some(body), Some(answer), Some(last)) = (
            self.outcome,
            &self.body,
            self.taps.judge.take(),
            self.attempts.last(),
        ) else {
            return Err(route);
        };
        Ok(JudgePending {
            settings: sampled.settings,
            reason: sampled.reason,
            judged: JudgedRequest {
                request_id: Arc::from(self.request_id.as_str()),
                trace_id: self.trace.trace_id,
                span_id: self.trace.span_id,
                provider: Arc::clone(&last.provider),
                model: Arc::clone(&last.model),
                response_id: self.answer.id.as_deref().map(Arc::from),
            },
            route,
            body: body.clone(),
            answer,
        })
    }
}
