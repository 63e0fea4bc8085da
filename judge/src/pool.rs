//! The judge workers: a background [`Service`] that takes sampled answers off a [`Feed`],
//! calls the judge model for each with bounded concurrency and a timeout, and reports every
//! outcome to a [`VerdictSink`].
//!
//! [`Feed`]: sluice_observability::service::Feed
//!
//! # Flow
//!
//! The request path hands a [`JudgeJob`] to the pool's `Feed` at record time: `offer` never
//! waits, and a full queue drops the job and counts it on the feed's counter (pass the
//! `outcome="dropped"` counter when building the feed, so both kinds of drop land on one
//! series). The pool drains the queue on a tick ([`PoolOptions::tick`]) rather than waking
//! for every job, and starts one task per job, up to [`PoolOptions::max_held`] jobs held at
//! once (queued jobs beyond it stay in the feed, whose bound then applies).
//!
//! Each task: fits the capture into its bound; waits for one of its route's `concurrency`
//! slots; asks the route's [`Budget`] (over budget: outcome `over_budget`, no call; the first
//! refusal of an episode is logged at WARN); builds the judge request; calls the backend
//! under the route's `timeout` (`failed` with [`Failure::Timeout`] past it); counts the
//! reported cost; parses the verdict strictly (`scored` or `invalid`). A route may hold at
//! most `concurrency + route_backlog` jobs; more are `dropped` at once, so one slow judge
//! cannot take every held slot from the other routes.
//!
//! State per route (its slots and its budget) is kept by route name across policy reloads.
//! When a reload changes a route's `concurrency`, new jobs use a new set of slots while calls
//! already running finish on the old one, so for the length of one call the route may run
//! both.
//!
//! # Shutdown
//!
//! When shutdown fires the pool stops taking jobs (the feed refuses new ones), reports the
//! jobs still queued and those still waiting for a slot as `dropped`
//! ([`DropReason::Shutdown`]), and waits for the running calls, which end within their
//! timeout. Every job taken from the feed gets exactly one outcome: a task that is cancelled
//! or panics reports one from its drop guard.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sluice_observability::service::{Intake, Service, Shutdown};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backend::{Failure, JudgeBackend, JudgeCall};
use crate::budget::{Budget, BudgetLimit, Clock, day_index};
use crate::capture::{Answer, Conversation, fit_pair};
use crate::rubric::request_body;
use crate::sampler::SampleReason;
use crate::settings::JudgeSettings;
use crate::verdict::{InvalidReason, Verdict};

/// One sampled answer to judge.
#[derive(Debug)]
pub struct JudgeJob {
    /// The route's settings when the request was admitted.
    pub settings: Arc<JudgeSettings>,
    pub route: Arc<str>,
    pub judged: JudgedRequest,
    pub reason: SampleReason,
    pub conversation: Conversation,
    pub answer: Answer,
}

/// The request whose answer is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgedRequest {
    pub request_id: Arc<str>,
    pub trace_id: [u8; 16],
    /// The request's own (server) span: the verdict's evaluation event links to it.
    pub span_id: [u8; 8],
    /// The configured provider that answered.
    pub provider: Arc<str>,
    /// The catalog model that answered.
    pub model: Arc<str>,
    /// The judged answer's id (`gen_ai.response.id` on the evaluation event).
    pub response_id: Option<Arc<str>>,
}

/// The conversation and the answer as they were judged (fitted to the bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JudgedContent {
    pub conversation: Conversation,
    pub answer: Answer,
}

/// What became of a sampled request; a label value of `sluice_judge_samples_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleOutcome {
    /// Picked at admit. Counted by the gateway when [`crate::Sampler::decide`] says so; the
    /// pool never reports it.
    Sampled,
    /// Not judged: the queue or the route's backlog was full, or shutdown came first.
    Dropped,
    /// Judged, with a well-formed verdict.
    Scored,
    /// The judge answered, but not with a well-formed verdict.
    Invalid,
    /// The judge call failed or timed out.
    Failed,
    /// The route's judge budget refused the call; no call was made.
    OverBudget,
}

/// Why an outcome is not `scored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeDetail {
    Invalid(InvalidReason),
    Failed(Failure),
    OverBudget(BudgetLimit),
    Dropped(DropReason),
}

/// Why a job was dropped by the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The route already held `concurrency + route_backlog` jobs.
    RouteBacklog,
    /// Shutdown came before the job's call started.
    Shutdown,
    /// The job's task was cancelled (the runtime stopped before the pool drained).
    Cancelled,
}

/// One reported outcome.
#[derive(Debug, Clone)]
pub struct JudgeOutcome {
    pub outcome: SampleOutcome,
    /// Why, for every outcome but `scored`.
    pub detail: Option<OutcomeDetail>,
    /// The settings the job was judged with (rubric, judge model, capture bound).
    pub settings: Arc<JudgeSettings>,
    pub route: Arc<str>,
    pub judged: JudgedRequest,
    pub reason: SampleReason,
    /// Present exactly when `outcome` is `scored`.
    pub verdict: Option<Verdict>,
    /// The judge call's cost, when one was made and priced.
    pub cost_usd: Option<f64>,
    /// How long the judge call took (zero when none was made).
    pub duration: Duration,
    /// When the outcome was decided (wall clock).
    pub at: SystemTime,
    /// What was judged. Sinks that keep or show it must honour content capture settings.
    pub content: Arc<JudgedContent>,
}

/// Receives every outcome. Called from the pool's tasks: it must be quick and never block
/// for long (take a short lock, bump a counter, push to a bounded queue) and never panic.
pub trait VerdictSink: Send + Sync + 'static {
    fn outcome(&self, outcome: &JudgeOutcome);
}

/// Hands each outcome to several sinks, in order.
#[derive(Clone, Default)]
pub struct Fanout(pub Vec<Arc<dyn VerdictSink>>);

/// Tuning of the pool itself (the per-route limits are in [`JudgeSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// How often the queue is drained.
    pub tick: Duration,
    /// Most jobs held at once (running and waiting for a slot), over all routes.
    pub max_held: usize,
    /// Jobs a route may hold waiting for a slot, beyond the `concurrency` running.
    pub route_backlog: usize,
}

/// The judge workers, as a background service.
pub struct JudgePool {
    intake: Intake<JudgeJob>,
    ctx: Arc<Ctx>,
    options: PoolOptions,
}

/// What every task needs.
struct Ctx {
    backend: Arc<dyn JudgeBackend>,
    sink: Arc<dyn VerdictSink>,
    clock: Arc<dyn Clock>,
}

/// A route's slots and budget.
struct RouteState {
    concurrency: usize,
    slots: Arc<Semaphore>,
    held: Arc<AtomicUsize>,
    budget: Arc<Mutex<Budget>>,
}

/// A job taken from the feed, fitted, owed exactly one outcome.
struct Pending {
    ctx: Arc<Ctx>,
    held: Option<Arc<AtomicUsize>>,
    head: Option<Head>,
}

struct Head {
    settings: Arc<JudgeSettings>,
    route: Arc<str>,
    judged: JudgedRequest,
    reason: SampleReason,
    content: Arc<JudgedContent>,
}

/// The end of a job.
struct Ending {
    outcome: SampleOutcome,
    detail: Option<OutcomeDetail>,
    verdict: Option<Verdict>,
    cost_usd: Option<f64>,
    duration: Duration,
}

// === impl JudgePool ===

impl JudgePool {
    /// The pool reading `intake` (the other half of the [`Feed`] the request path offers to).
    ///
    /// [`Feed`]: sluice_observability::service::Feed
    pub fn new(
        intake: Intake<JudgeJob>,
        backend: Arc<dyn JudgeBackend>,
        sink: Arc<dyn VerdictSink>,
        clock: Arc<dyn Clock>,
        options: PoolOptions,
    ) -> Self {
        Self {
            intake,
            ctx: Arc::new(Ctx {
                backend,
                sink,
                clock,
            }),
            options,
        }
    }

    async fn serve(self, mut shutdown: Shutdown) {
        let Self {
            mut intake,
            ctx,
            options,
        } = self;
        let mut routes: HashMap<Arc<str>, RouteState> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut batch = Vec::new();
        let mut tick = tokio::time::interval(options.tick.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    while let Some(done) = tasks.try_join_next() {
                        note_join(done);
                    }
                    let room = options.max_held.saturating_sub(tasks.len());
                    intake.drain_into(&mut batch, room);
                    for job in batch.drain(..) {
                        start(job, &ctx, &mut routes, &mut tasks, &options, &shutdown);
                    }
                }
                () = shutdown.wait() => break,
            }
        }
        intake.close();
        intake.drain_into(&mut batch, usize::MAX);
        let unstarted = batch.len();
        for job in batch.drain(..) {
            Pending::new(&ctx, None, job).dropped(DropReason::Shutdown);
        }
        let running = tasks.len();
        tracing::debug!(
            unstarted,
            held = running,
            "Judge pool stopping: queued jobs dropped, waiting for running calls."
        );
        while let Some(done) = tasks.join_next().await {
            note_join(done);
        }
    }
}

impl Service for JudgePool {
    fn name(&self) -> &'static str {
        "judge"
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin((*self).serve(shutdown))
    }
}

/// Starts a task for `job`, or drops it when its route holds too many.
fn start(
    job: JudgeJob,
    ctx: &Arc<Ctx>,
    routes: &mut HashMap<Arc<str>, RouteState>,
    tasks: &mut JoinSet<()>,
    options: &PoolOptions,
    shutdown: &Shutdown,
) {
    let concurrency = job.settings.concurrency.max(1);
    let state = routes
        .entry(job.route.clone())
        .or_insert_with(|| RouteState {
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            held: Arc::new(AtomicUsize::new(0)),
            budget: Arc::new(Mutex::new(Budget::new())),
        });
    if state.concurrency != concurrency {
        state.concurrency = concurrency;
        state.slots = Arc::new(Semaphore::new(concurrency));
    }
    if state.held.load(Ordering::Relaxed) >= concurrency + options.route_backlog {
        Pending::new(ctx, None, job).dropped(DropReason::RouteBacklog);
        return;
    }
    state.held.fetch_add(1, Ordering::Relaxed);
    let pending = Pending::new(ctx, Some(state.held.clone()), job);
    tasks.spawn(judge(
        pending,
        state.slots.clone(),
        state.budget.clone(),
        shutdown.clone(),
    ));
}

/// One job, from waiting for a slot to its outcome.
async fn judge(
    pending: Pending,
    slots: Arc<Semaphore>,
    budget: Arc<Mutex<Budget>>,
    mut shutdown: Shutdown,
) {
    let slot = tokio::select! {
        biased;
        () = shutdown.wait() => None,
        slot = slots.acquire_owned() => slot.ok(),
    };
    let Some(_slot) = slot else {
        return pending.dropped(DropReason::Shutdown);
    };
    let Some(head) = &pending.head else {
        return;
    };
    let settings = &head.settings;
    let ctx = &pending.ctx;
    let admitted = budget.lock().unwrap_or_else(PoisonError::into_inner).admit(
        settings.rpm,
        settings.usd_per_day,
        Instant::now(),
        day_index(ctx.clock.now()),
    );
    if let Err(over) = admitted {
        if over.newly {
            tracing::warn!(
                route = %head.route,
                limit = over.limit.as_str(),
                judge_model = %settings.model,
                "Judge budget reached; answers are not judged until it frees up."
            );
        }
        return pending.end(Ending::not_called(
            SampleOutcome::OverBudget,
            OutcomeDetail::OverBudget(over.limit),
        ));
    }
    let call = JudgeCall {
        route: head.route.clone(),
        model: settings.model.clone(),
        body: request_body(settings, &head.content.conversation, &head.content.answer),
        timeout: settings.timeout,
        judged: head.judged.clone(),
    };
    let started = Instant::now();
    let result = tokio::time::timeout(settings.timeout, ctx.backend.judge(call)).await;
    let duration = started.elapsed();
    let failed = |failure: Failure| Ending {
        outcome: SampleOutcome::Failed,
        detail: Some(OutcomeDetail::Failed(failure)),
        verdict: None,
        cost_usd: None,
        duration,
    };
    let ending = match result {
        Err(_elapsed) => failed(Failure::Timeout),
        Ok(Err(e)) => {
            tracing::debug!(route = %head.route, error = %e, "Judge call failed.");
            failed(e.failure())
        }
        Ok(Ok(reply)) => {
            if let Some(cost) = reply.cost_usd {
                budget
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .spend(cost, day_index(ctx.clock.now()));
            }
            match Verdict::parse(&reply.content) {
                Ok(verdict) => Ending {
                    outcome: SampleOutcome::Scored,
                    detail: None,
                    verdict: Some(verdict),
                    cost_usd: reply.cost_usd,
                    duration,
                },
                Err(reason) => {
                    tracing::debug!(
                        route = %head.route,
                        reason = reason.as_str(),
                        "Judge reply is not a well-formed verdict."
                    );
                    Ending {
                        outcome: SampleOutcome::Invalid,
                        detail: Some(OutcomeDetail::Invalid(reason)),
                        verdict: None,
                        cost_usd: reply.cost_usd,
                        duration,
                    }
                }
            }
        }
    };
    pending.end(ending);
}

fn note_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::warn!("A judge call panicked; it is counted as failed.");
    }
}

// === impl Pending ===

impl Pending {
    fn new(ctx: &Arc<Ctx>, held: Option<Arc<AtomicUsize>>, job: JudgeJob) -> Self {
        let JudgeJob {
            settings,
            route,
            judged,
            reason,
            mut conversation,
            mut answer,
        } = job;
        fit_pair(&mut conversation, &mut answer, settings.max_capture_bytes);
        Self {
            ctx: ctx.clone(),
            held,
            head: Some(Head {
                settings,
                route,
                judged,
                reason,
                content: Arc::new(JudgedContent {
                    conversation,
                    answer,
                }),
            }),
        }
    }

    fn dropped(self, why: DropReason) {
        self.end(Ending::not_called(
            SampleOutcome::Dropped,
            OutcomeDetail::Dropped(why),
        ));
    }

    fn end(mut self, ending: Ending) {
        self.report(ending);
    }

    fn report(&mut self, ending: Ending) {
        let Some(head) = self.head.take() else {
            return;
        };
        let outcome = JudgeOutcome {
            outcome: ending.outcome,
            detail: ending.detail,
            settings: head.settings,
            route: head.route,
            judged: head.judged,
            reason: head.reason,
            verdict: ending.verdict,
            cost_usd: ending.cost_usd,
            duration: ending.duration,
            at: self.ctx.clock.now(),
            content: head.content,
        };
        self.ctx.sink.outcome(&outcome);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.head.is_some() {
            let ending = if std::thread::panicking() {
                Ending {
                    outcome: SampleOutcome::Failed,
                    detail: Some(OutcomeDetail::Failed(Failure::Panicked)),
                    verdict: None,
                    cost_usd: None,
                    duration: Duration::ZERO,
                }
            } else {
                Ending::not_called(
                    SampleOutcome::Dropped,
                    OutcomeDetail::Dropped(DropReason::Cancelled),
                )
            };
            self.report(ending);
        }
        if let Some(held) = &self.held {
            held.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Ending {
    fn not_called(outcome: SampleOutcome, detail: OutcomeDetail) -> Self {
        Self {
            outcome,
            detail: Some(detail),
            verdict: None,
            cost_usd: None,
            duration: Duration::ZERO,
        }
    }
}

// === impl JudgeOutcome ===

impl JudgeOutcome {
    /// The rubric's name (a label value).
    pub fn rubric(&self) -> &str {
        self.settings.rubric.name()
    }

    /// The judge model (a catalog model name).
    pub fn judge_model(&self) -> &str {
        &self.settings.model
    }

    /// The verdict's score, when scored.
    pub fn score(&self) -> Option<f64> {
        self.verdict.as_ref().map(|v| v.score)
    }
}

impl SampleOutcome {
    /// A label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sampled => "sampled",
            Self::Dropped => "dropped",
            Self::Scored => "scored",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
            Self::OverBudget => "over_budget",
        }
    }
}

impl OutcomeDetail {
    /// A label value: the reason, failure, limit or drop cause.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid(r) => r.as_str(),
            Self::Failed(f) => f.as_str(),
            Self::OverBudget(l) => l.as_str(),
            Self::Dropped(d) => d.as_str(),
        }
    }
}

impl DropReason {
    /// A label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RouteBacklog => "route_backlog",
            Self::Shutdown => "shutdown",
            Self::Cancelled => "cancelled",
        }
    }
}

impl VerdictSink for Fanout {
    fn outcome(&self, outcome: &JudgeOutcome) {
        for sink in &self.0 {
            sink.outcome(outcome);
        }
    }
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(50),
            max_held: 1024,
            route_backlog: 64,
        }
    }
}

#[cfg(test)]
mod tests;
