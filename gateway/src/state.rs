//! Process-wide state shared by every request: the policy store and the live state beside it,
//! metrics, the upstream connector, the cache, and the feed into the recorder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use prometheus_client::registry::Registry;
use sluice_observability::Metrics;
use sluice_observability::service::Feed;
use sluice_policy::{PolicyStore, RuntimeState};

use crate::cache::ResponseCache;
use crate::context::Finished;
use crate::dns::Resolver;
use crate::feedback::AnswerIndex;
use crate::judge::Judges;
use crate::slo::{SloEvent, SloView};
use sluice_judge::{ContentCapture, JudgeJob, RecentVerdicts};

pub struct AppState {
    pub policy: PolicyStore,
    /// Live state that outlives a policy (limiter windows, cooldowns).
    pub runtime: Arc<RuntimeState>,
    pub metrics: Metrics,
    pub registry: Registry,
    /// Provider connections: dialing, and the idle ones kept for reuse.
    pub connector: Arc<crate::providers::pool::Connector>,
    pub resolver: Resolver,
    /// Answers of routes with `cache:`; outlives policy reloads.
    pub cache: ResponseCache,
    /// Finished requests, on their way to the recorder (never waits; drops counted).
    pub records: Feed<Finished>,
    /// Requests and quality scores, on their way to the SLO evaluator (never waits).
    pub slo_events: Feed<SloEvent>,
    /// SLO statuses and incident timelines, for the admin views.
    pub slo: SloView,
    /// Recent answers by response id, so apps can score them (`POST /v1/feedback`).
    pub answers: AnswerIndex,
    /// Each route's judge (sampler and settings) under the serving policy.
    pub judges: Judges,
    /// Sampled answers, on their way to the judge pool (never waits; drops counted).
    pub judge_jobs: Feed<JudgeJob>,
    /// The last verdicts, for `/admin/judge/recent`.
    pub judge_recent: Arc<RecentVerdicts>,
    /// Requests being served right now; graceful shutdown waits for zero.
    pub inflight: AtomicUsize,
    /// Open data-plane connections, against `server.max_connections`.
    pub connections: AtomicUsize,
    /// Set on SIGTERM: readiness fails and connections stop being kept alive.
    pub draining: AtomicBool,
    /// Set when the shutdown grace ran out: every request still running ends now.
    pub abort: tokio::sync::watch::Sender<bool>,
    /// Limits and budgets shared through Redis (`state.redis`); `None` counts in-process.
    pub shared: Option<Arc<crate::shared::SharedState>>,
    /// Each provider's built headers, CA, proxy and pool (issue 20); outlives policy reloads.
    pub egress: crate::providers::egress::EgressCache,
    request_seq: AtomicU64,
    request_salt: u64,
}

impl AppState {
    pub fn new(
        policy: PolicyStore,
        runtime: Arc<RuntimeState>,
        metrics: Metrics,
        registry: Registry,
        records: Feed<Finished>,
        slo_events: Feed<SloEvent>,
        judge_jobs: Feed<JudgeJob>,
    ) -> Self {
        let snapshot = policy.snapshot();
        let server = &snapshot.server;
        let mut registry = registry;
        let egress = crate::providers::egress::EgressCache::new(
            crate::providers::egress::EgressMetrics::register(&mut registry),
        );
        // Each problem (a CA bundle that cannot be read) is logged as it is found; the
        // provider's attempts fail, and fail over, until it is fixed.
        egress.prepare(&snapshot.config);
        metrics
            .policy_generation
            .set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
        Self {
            connector: Arc::new(crate::providers::pool::Connector::new(
                server.upstream_pool_size,
            )),
            cache: ResponseCache::new(server.cache_max_bytes),
            policy,
            runtime,
            metrics,
            registry,
            resolver: Resolver::default(),
            records,
            slo_events,
            slo: SloView::default(),
            answers: AnswerIndex::new(),
            judges: Judges::default(),
            judge_jobs,
            judge_recent: Arc::new(RecentVerdicts::new(
                crate::judge::RECENT,
                recent_capture(&snapshot.telemetry),
            )),
            inflight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            abort: tokio::sync::watch::Sender::new(false),
            shared: None,
            egress,
            request_seq: AtomicU64::new(0),
            request_salt: startup_salt(),
        }
    }

    /// Counts limits and budgets through `shared` instead of in-process only.
    pub fn with_shared(mut self, shared: Arc<crate::shared::SharedState>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// A fresh request id: unique within the process, unguessable across restarts.
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        request_id(mix(n ^ self.request_salt))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Resolves once the shutdown grace has run out.
    pub async fn aborted(&self) {
        let mut rx = self.abort.subscribe();
        let _ = rx.wait_for(|aborted| *aborted).await;
    }
}

/// `req_` and 16 lowercase hex digits, written directly: `format!` cost a visible share of a
/// short request's CPU.
fn request_id(n: u64) -> String {
    let mut id = String::with_capacity(20);
    id.push_str("req_");
    sluice_observability::spans::push_hex(&mut id, &n.to_be_bytes());
    id
}

/// Counts a request as in flight for as long as it lives.
pub struct InflightGuard<'a>(&'a AtomicUsize);

impl<'a> InflightGuard<'a> {
    pub fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Content in `/admin/judge/recent` only with `capture_content`, redacted like spans.
fn recent_capture(t: &sluice_config::TelemetryConfig) -> ContentCapture {
    if !t.capture_content {
        return ContentCapture::Off;
    }
    match sluice_observability::Redactor::new(&t.redact) {
        Ok(r) => ContentCapture::On(Some(Arc::new(r))),
        // Validation compiled these rules already; without them nothing is shown.
        Err(_) => ContentCapture::Off,
    }
}

fn startup_salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS; good enough to make ids differ across restarts.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// splitmix64's finalizer: a bijection, so distinct counters give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_req_and_sixteen_hex_digits() {
        for n in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(super::request_id(n), format!("req_{n:016x}"));
        }
    }
}
