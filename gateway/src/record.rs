//! The recorder: the background service every finished request goes to.
//!
//! A request hands its [`Finished`] over with one `offer` (a bounded queue; a full queue drops
//! and counts it in `sluice_background_dropped_total{queue="records"}`) and its connection is
//! reusable at once. Everything that is only accounting happens here, off the request path:
//! a tokenizer count when the provider reported no usage, cost from the catalog's prices, the
//! key's token window, captured content, the metrics, the access-log line and the spans.
//!
//! The queue is drained on a short tick rather than awaited, so a request never pays for
//! waking this thread; lines reach standard output within [`TICK`].

use std::collections::HashSet;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sluice_observability::aiops::AiopsSample;
use sluice_observability::service::{Intake, Service, Shutdown};
use sluice_observability::{
    Flags, Metrics, RequestRecord, SpanPolicy, SpanSink, TokenUsage, UsageSource, cost, tokens,
};

use crate::context::Finished;
use crate::feedback::Answered;
use crate::slo;
use crate::state::AppState;

/// How often the queue is drained.
pub const TICK: Duration = Duration::from_millis(20);
/// Finished requests waiting for the recorder; more are dropped (and counted).
pub const QUEUE: usize = 65_536;

pub struct Recorder {
    /// The current second and how many anonymous lines it has had.
    anonymous: (Option<tokio::time::Instant>, u32),
    intake: Intake<Finished>,
    metrics: Metrics,
    spans: SpanSink,
    /// The span sampling of the last policy generation seen: (generation, policy).
    span_policy: Option<(u64, SpanPolicy)>,
    /// Which routes have SLOs, and which quality SLOs, as of policy generation `.0`.
    slo_routes: (u64, SloRoutes),
    /// Where SLO events and answers for feedback go.
    state: Arc<AppState>,
    out: Vec<u8>,
    /// An access-log line for an OTLP log record alone.
    scratch: Vec<u8>,
}

/// The routes of one policy generation that have SLOs.
#[derive(Debug, Default)]
struct SloRoutes {
    any: HashSet<Arc<str>>,
    /// Routes with a `judge_score_at_least` SLO: their answers can be scored.
    quality: HashSet<Arc<str>>,
}

impl SloRoutes {
    fn of(policy: &sluice_policy::Policy) -> Self {
        let mut s = Self::default();
        for r in &policy.config.routes {
            if r.slos.is_empty() {
                continue;
            }
            let name: Arc<str> = Arc::from(r.name.as_str());
            if r.slos
                .iter()
                .any(|x| matches!(x.sli, sluice_config::SliConfig::JudgeScoreAtLeast(_)))
            {
                s.quality.insert(Arc::clone(&name));
            }
            s.any.insert(name);
        }
        s
    }
}

impl Recorder {
    pub fn new(
        intake: Intake<Finished>,
        metrics: Metrics,
        spans: SpanSink,
        state: Arc<AppState>,
    ) -> Self {
        Self {
            anonymous: (None, 0),
            intake,
            metrics,
            spans,
            span_policy: None,
            slo_routes: (0, SloRoutes::default()),
            state,
            out: Vec::with_capacity(64 << 10),
            scratch: Vec::new(),
        }
    }

    /// Completes and records one request.
    fn record(&mut self, f: Finished) {
        let Finished {
            mut record,
            estimate,
            capture,
            pricing,
            limiters,
            tenant_state,
            shared,
            route_slow,
            policy,
            judge,
        } = f;
        let flags = Flags {
            remediated: !record.remediation.is_empty(),
            judged: judge.is_some(),
        };
        if let Some(judge) = judge {
            self.hand_to_judge(judge);
        }
        let estimated = estimate.is_some();
        if let Some(e) = estimate {
            let usage = TokenUsage {
                input: tokens::estimate_input(&e.model, &e.body),
                output: tokens::count(&e.model, &e.text),
                cached_input: 0,
                cache_write_input: 0,
                reasoning: 0,
                source: UsageSource::Estimated,
            };
            record.usage = Some(usage);
            // Provider-reported usage fed the windows on the request path already.
            for limiter in limiters.iter().flatten() {
                limiter.consume_tokens(usage.input.saturating_add(usage.output));
            }
        }
        if let (Some(u), Some(p)) = (&record.usage, &pricing) {
            let usd = cost::cost_usd(u, p);
            record.cost_usd = Some(usd);
            if let Some(t) = &tenant_state {
                t.spend.add(usd, record.start + record.duration);
            }
        }
        // Provider-reported usage went to Redis on the request path already.
        if let (Some(subject), Some(shared), true) = (&shared, &self.state.shared, estimated) {
            let tokens = record.usage.map_or(0, |u| u.input.saturating_add(u.output));
            shared.record(
                subject,
                tokens,
                record.cost_usd.unwrap_or(0.0),
                record.start + record.duration,
            );
        }
        if let Some((body, answer)) = &capture {
            record.content = Some(crate::capture::capture(body, answer));
        }
        self.metrics.record_request(&record);
        self.feed_slos(&record, policy.as_deref());
        self.feed_aiops(&record, policy.as_deref());
        let (access_log, anonymous_cap, generation) = policy.as_ref().map_or((true, 10, 0), |p| {
            (
                p.telemetry.access_log,
                p.telemetry.access_log_anonymous_per_s,
                p.generation,
            )
        });
        // A request that never presented a valid key is anyone's: a flood of them is kept to
        // a few lines a second, and the rest counted.
        let line_start = self.out.len();
        let mut on_stdout = false;
        if access_log && (record.tenant.is_some() || self.anonymous_allowed(anonymous_cap)) {
            crate::access_log::write_line(&mut self.out, &record);
            on_stdout = true;
        } else if access_log {
            self.metrics.access_log_suppressed.inc();
        }
        let current = self
            .span_policy
            .as_ref()
            .is_some_and(|(g, _)| *g == generation);
        if !current && let Some(p) = &policy {
            // Destinations follow the policy: a changed list is built and started here, off
            // the request path; the old workers export what they hold and stop.
            if let Err(e) = self.spans.follow(&p.telemetry) {
                tracing::warn!(error = %e, "Cannot apply the new OTLP destinations; keeping the previous ones.");
            }
            match SpanPolicy::new(&p.telemetry) {
                Ok(sp) => self.span_policy = Some((generation, sp)),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot apply the new span sampling; keeping the previous one.")
                }
            }
        }
        if !self.spans.is_enabled() {
            return;
        }
        // The OTLP log record's body is the access-log line, written for it alone when
        // standard output did not get one (off, or an anonymous line over the cap).
        self.scratch.clear();
        let line_bytes: &[u8] = if !self.spans.wants_logs() {
            &[]
        } else if on_stdout {
            &self.out[line_start..]
        } else {
            crate::access_log::write_line(&mut self.scratch, &record);
            &self.scratch
        };
        let line = std::str::from_utf8(line_bytes)
            .ok()
            .map(str::trim_end)
            .filter(|l| !l.is_empty());
        let tenant_attributes = match (&policy, &record.tenant) {
            (Some(p), Some(t)) => p
                .config
                .tenants
                .get(&**t)
                .map(|t| &t.attributes)
                .filter(|a| !a.is_empty()),
            _ => None,
        };
        let extras = sluice_observability::Extras {
            tenant_attributes,
            access_line: line,
        };
        match &self.span_policy {
            Some((_, sp)) => {
                self.spans
                    .offer_enriched(&record, route_slow, flags, sp, extras);
            }
            None => {
                self.spans.offer(&record, route_slow, flags);
            }
        }
    }

    /// Hands the request to the SLO evaluator, and remembers its answer for feedback, when
    /// its route has SLOs.
    fn feed_slos(&mut self, record: &RequestRecord, policy: Option<&sluice_policy::Policy>) {
        let Some(route) = &record.route else { return };
        if let Some(p) = policy
            && p.generation != self.slo_routes.0
        {
            self.slo_routes = (p.generation, SloRoutes::of(p));
        }
        let routes = &self.slo_routes.1;
        if !routes.any.contains(route) {
            return;
        }
        if let (true, Some(id), Some(tenant)) = (
            routes.quality.contains(route),
            &record.response_id,
            &record.tenant,
        ) {
            self.state.answers.remember(
                id.clone(),
                Answered {
                    route: Arc::clone(route),
                    target: record
                        .attempts
                        .last()
                        .map(|a| sluice_policy::remediation::TargetKey {
                            provider: Arc::clone(&a.provider),
                            model: Arc::clone(&a.model),
                        }),
                    tenant: Arc::clone(tenant),
                },
            );
        }
        if let Some(event) = slo::event_of(record) {
            self.state.slo_events.offer(event);
        }
    }

    /// Hands every routed request to the AIOps baselines (through the SLO feed, without
    /// waiting), while `aiops.enabled`.
    fn feed_aiops(&self, record: &RequestRecord, policy: Option<&sluice_policy::Policy>) {
        if !policy.is_some_and(|p| p.config.aiops.enabled) {
            return;
        }
        if let Some(sample) = AiopsSample::from_record(record, slo::class_of(record)) {
            self.state.slo_events.offer(slo::SloEvent::Aiops(sample));
        }
    }

    /// Makes a judge job of a sampled request (assembling a streamed answer here, off the
    /// request path) and hands it to the judge pool without waiting.
    fn hand_to_judge(&self, judge: Result<crate::judge::JudgePending, Arc<str>>) {
        let dropped = |route: &Arc<str>| self.metrics.record_judge(route, "dropped");
        match judge {
            Ok(pending) => {
                let route = Arc::clone(&pending.route);
                match crate::judge::job(pending) {
                    Ok(job) => {
                        if !self.state.judge_jobs.offer(job) {
                            dropped(&route);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(route = %route, error = %e, "A sampled answer cannot be judged.");
                        dropped(&route);
                    }
                }
            }
            // Sampled, but the request got no answer to judge.
            Err(route) => dropped(&route),
        }
    }

    /// Whether another anonymous line fits this second's `cap`.
    fn anonymous_allowed(&mut self, cap: u32) -> bool {
        let now = tokio::time::Instant::now();
        let (since, used) = &mut self.anonymous;
        if since.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1)) {
            *since = Some(now);
            *used = 0;
        }
        if *used < cap {
            *used += 1;
            true
        } else {
            false
        }
    }

    fn drain(&mut self, batch: &mut Vec<Finished>) {
        while self.intake.drain_into(batch, 1024) > 0 {
            for f in batch.drain(..) {
                self.record(f);
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let out = &self.out;
        // A blocked stdout (a full pipe) holds this worker, not a request; the queue absorbs
        // what arrives meanwhile, and drops what it cannot.
        let write = || {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out);
            let _ = stdout.flush();
        };
        crate::datadir::blocking(write);
        self.out.clear();
    }
}

impl Service for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn run(self: Box<Self>, mut shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut this = *self;
        Box::pin(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut batch = Vec::with_capacity(1024);
            loop {
                tokio::select! {
                    _ = tick.tick() => this.drain(&mut batch),
                    () = shutdown.wait() => break,
                }
            }
            this.intake.close();
            this.drain(&mut batch);
        })
    }
}
