//! The per-request context: what one request has done so far, turned into a
//! [`RequestRecord`] once at the end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sluice_config::{Pricing, ProviderKind};
use sluice_observability::{
    AttemptOutcome, AttemptRecord, Endpoint, Outcome, RequestParams, RequestRecord, TokenUsage,
    TraceContext, UsageSource, cost, tokens,
};
use sluice_policy::{Headroom, KeyLimiter, LimitKind, Target};
use tokio::time::Instant;

use crate::cache::{CacheStatus, Fill};
use crate::stream::{AnswerInfo, Usage};

#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub trace: TraceContext,
    pub started: Instant,
    pub start_wall: SystemTime,
    pub endpoint: Endpoint,
    pub tenant: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    /// The catalog model of the latest attempt (the one that answered, on success).
    pub model: Option<Arc<str>>,
    pub request_model: Option<String>,
    /// `request_model` when the policy knows it.
    pub request_model_label: Option<Arc<str>>,
    pub stream: bool,
    pub status: u16,
    pub outcome: Outcome,
    pub error_type: Option<&'static str>,
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
    /// The request body, kept (by reference count) for token estimation.
    pub body: Option<Bytes>,
    /// Prices of the catalog model that answered.
    pub pricing: Option<Pricing>,
    /// The route's slow threshold for the tail sampler.
    pub route_slow: Option<Duration>,
    /// Capture settings of the policy snapshot this request used.
    pub policy_telemetry: TelemetrySettings,
    /// The key's rate limiter, fed with this request's tokens at the end.
    pub limiter: Option<Arc<KeyLimiter>>,
    /// What the key has left, for `x-ratelimit-*` headers.
    pub headroom: Option<Headroom>,
    /// Which of the key's limits refused the request.
    pub rate_limited: Option<LimitKind>,
    /// What the route's response cache did for this request.
    pub cache: Option<CacheStatus>,
    /// A cache miss's answer, collected as it is written.
    pub cache_fill: Option<Fill>,
}

/// The few telemetry settings a request needs at its end, copied from its policy snapshot so
/// a reload mid-request cannot change them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TelemetrySettings {
    pub capture_content: bool,
}

impl TelemetrySettings {
    pub fn of(policy: &sluice_policy::Policy) -> Self {
        Self {
            capture_content: policy.telemetry.capture_content,
        }
    }
}

impl RequestCtx {
    pub fn new(request_id: String, endpoint: Endpoint, trace: TraceContext) -> Self {
        Self {
            request_id,
            trace,
            started: Instant::now(),
            start_wall: SystemTime::now(),
            endpoint,
            tenant: None,
            route: None,
            model: None,
            request_model: None,
            request_model_label: None,
            stream: false,
            status: 0,
            outcome: Outcome::GatewayError,
            error_type: None,
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
            policy_telemetry: TelemetrySettings::default(),
            limiter: None,
            headroom: None,
            rate_limited: None,
            cache: None,
            cache_fill: None,
        }
    }

    /// Opens the record of an attempt at `target`; [`Self::end_attempt`] closes it.
    pub fn begin_attempt(&mut self, target: &Target, span_id: [u8; 8]) {
        let (kind, address, port) = match &target.provider.config.kind {
            ProviderKind::OpenAi { base_url, .. } => {
                ("openai", Some(base_url.host.clone()), Some(base_url.port))
            }
            ProviderKind::Mock { .. } => ("sluice.mock", None, None),
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

    /// The end-of-request record: provider usage when it was reported, else a tokenizer count
    /// of what was sent and delivered (also for streams the client cancelled).
    pub fn record(&mut self) -> RequestRecord {
        let duration = self.started.elapsed();
        let usage = self.token_usage();
        let cost_usd = match (&usage, &self.pricing) {
            (Some(u), Some(p)) => Some(cost::cost_usd(u, p)),
            _ => None,
        };
        RequestRecord {
            request_id: self.request_id.clone(),
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
            error_type: self.error_type,
            attempts: std::mem::take(&mut self.attempts),
            usage,
            cost_usd,
            time_to_first_chunk: self.first_chunk.map(|t| t.duration_since(self.started)),
            chunks: self.chunks,
            response_id: self.answer.id.take(),
            response_model: self.answer.model.take(),
            finish_reasons: std::mem::take(&mut self.answer.finish_reasons),
            params: std::mem::take(&mut self.params),
            rate_limited: self.rate_limited.map(LimitKind::as_str),
            cache: self.cache.map(CacheStatus::as_str),
            content: None,
        }
    }

    fn token_usage(&self) -> Option<TokenUsage> {
        if let Some(u) = &self.usage {
            return Some(TokenUsage {
                input: u.prompt_tokens,
                output: u.completion_tokens,
                cached_input: u.cached_tokens(),
                reasoning: u.reasoning_tokens(),
                source: UsageSource::Provider,
            });
        }
        // Nothing reached a provider, or nothing came back: there is nothing to count.
        let delivered = !self.answer.text.is_empty() || self.outcome == Outcome::Ok;
        if self.attempts.is_empty() || !delivered {
            return None;
        }
        let model = self.model.as_deref().unwrap_or("");
        let input = self
            .body
            .as_ref()
            .map_or(0, |b| tokens::estimate_input(model, b));
        Some(TokenUsage {
            input,
            output: tokens::count(model, &self.answer.text),
            cached_input: 0,
            reasoning: 0,
            source: UsageSource::Estimated,
        })
    }
}
