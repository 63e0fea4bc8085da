//! The judge, wired into the gateway: which requests are sampled (at admit), what is kept of
//! them (the request body and a copy of the answer as the client got it, through the taps),
//! how they become judge jobs (in the recorder, off the request path), how the judge model is
//! called (through Sluice's own routing), and where verdicts go.
//!
//! ```text
//! admit: Sampler::decide ─► ctx.judge + taps.judge ─► record: JudgePending
//!   recorder: Conversation + Answer (SSE assembled here) ─► JudgeJob feed ─► JudgePool
//!     JudgePool ─► Loopback backend ─► POST 127.0.0.1:<listen>/v1/chat/completions (key: internal)
//!     verdicts ─► metrics, the quality SLI, an evaluation span, /admin/judge/recent
//! ```
//!
//! Judge calls go through the data plane like any client's, with an internal key made at
//! start (never in the policy, tenant [`JUDGE_TENANT`]), so they are routed, retried, priced,
//! rate limited, traced and recorded like any other request, and the sampler never picks
//! them. The crate `sluice-judge` owns every decision; this module only gathers and applies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use sluice_config::{BaseUrl, KeyConfig, Secret};
use sluice_judge::{
    AnswerAssembler, Conversation, Failure, JudgeBackend, JudgeCall, JudgeJob, JudgeOutcome,
    JudgeReply, JudgeSettings, JudgedRequest, RecentVerdicts, SampleOutcome, SampleReason, Sampler,
    VerdictSink,
};
use sluice_observability::SpanSink;
use sluice_observability::metrics::JudgeScoreLabels;
use sluice_observability::slo::QualitySample;
use sluice_observability::spans::Evaluation;
use sluice_policy::Policy;
use sluice_policy::remediation::TargetKey;

use crate::providers::openai::{self, HttpTarget};
use crate::slo::SloEvent;
use crate::sse::SseDecoder;
use crate::state::AppState;
use crate::tap::JudgeTap;

/// The tenant judge calls are billed to (give it a budget in `tenants:` to cap judge spend).
pub const JUDGE_TENANT: &str = "judge";
/// The internal key's name, in logs and metrics.
pub const JUDGE_KEY_NAME: &str = "sluice-judge";
/// Judge jobs waiting for the pool; more are dropped (and counted).
pub const QUEUE: usize = 4096;
/// Verdicts kept for `/admin/judge/recent`.
pub const RECENT: usize = 200;
/// A stream's bytes are several times its text (event framing, JSON around each delta); the
/// tap keeps this multiple of the judge's text bound, so the bound, not the framing, decides.
const STREAM_BYTES_PER_TEXT_BYTE: usize = 8;

/// The serving policy's judges, by route, with samplers that outlive reloads that keep a
/// route's settings.
#[derive(Debug, Default)]
pub struct Judges {
    table: ArcSwap<Table>,
    rebuilding: Mutex<()>,
}

#[derive(Debug, Default)]
struct Table {
    generation: u64,
    routes: HashMap<Arc<str>, RouteJudge>,
}

/// One route's judge.
#[derive(Debug, Clone)]
pub struct RouteJudge {
    pub settings: Arc<JudgeSettings>,
    pub sampler: Arc<Sampler>,
}

/// A sampled request, from admit to its record.
#[derive(Debug)]
pub struct Sampled {
    pub settings: Arc<JudgeSettings>,
    pub reason: SampleReason,
}

/// What the recorder needs to make a judge job of a sampled, answered request.
#[derive(Debug)]
pub struct JudgePending {
    pub settings: Arc<JudgeSettings>,
    pub reason: SampleReason,
    pub route: Arc<str>,
    /// The request body (by reference count).
    pub body: Bytes,
    pub answer: JudgeTap,
    pub judged: JudgedRequest,
}

impl Judges {
    /// The judge of `route` under `policy`, if it has one.
    pub fn of(&self, policy: &Policy, route: &str) -> Option<RouteJudge> {
        let table = self.table.load();
        // A request on an older snapshot than the table's uses the newer table: rebuilding
        // backwards would make two policies take turns.
        if table.generation >= policy.generation {
            return table.routes.get(route).cloned();
        }
        drop(table);
        self.rebuild(policy);
        self.table.load().routes.get(route).cloned()
    }

    fn rebuild(&self, policy: &Policy) {
        let _one = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.table.load_full();
        if old.generation >= policy.generation {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut routes = HashMap::new();
        for r in &policy.config.routes {
            let Some(cfg) = &r.judge else { continue };
            let settings = JudgeSettings::from_config(cfg);
            if let Err(e) = settings.validate() {
                tracing::warn!(route = %r.name, error = %e, "Judge settings refused; this route is not judged.");
                continue;
            }
            let name: Arc<str> = Arc::from(r.name.as_str());
            let judge = match old.routes.get(&name) {
                // Same settings: keep the sampler (its always-sample cap is live state).
                Some(prev) if *prev.settings == settings => prev.clone(),
                _ => RouteJudge {
                    sampler: Arc::new(Sampler::new(&settings, now)),
                    settings: Arc::new(settings),
                },
            };
            routes.insert(name, judge);
        }
        self.table.store(Arc::new(Table {
            generation: policy.generation,
            routes,
        }));
    }
}

impl Sampled {
    /// The tap that keeps the answer for the judge: a body by reference, or a stream's bytes
    /// up to a bound proportional to the settings' text bound.
    pub fn tap(&self) -> JudgeTap {
        JudgeTap::new(
            self.settings
                .max_capture_bytes
                .saturating_mul(STREAM_BYTES_PER_TEXT_BYTE),
        )
    }
}

/// The judge job of a pending sample: the conversation read from the request body, the
/// answer assembled from what the client got. Off the request path (the recorder).
pub fn job(p: JudgePending) -> Result<JudgeJob, sluice_judge::Error> {
    let max = p.settings.max_capture_bytes;
    let conversation = Conversation::from_request(&p.body, max)?;
    let mut answer = AnswerAssembler::new(max);
    let native = p.answer.native;
    let (bytes, stream) = p.answer.into_bytes();
    if native {
        // A passed-through Responses answer: the judge reads its text as chat.
        native_answer(&mut answer, &bytes, stream)?;
    } else if stream {
        let mut decoder = SseDecoder::new(bytes.len().max(1));
        decoder.push(&bytes);
        // The whole stream is here; `finish` takes an event a missing final blank line left
        // (a tap cut at its bound ends mid-event).
        while let Ok(Some(event)) = decoder.next_event() {
            if event.has_data && !event.is_done() {
                answer.push_chunk(&event.data)?;
            }
        }
        if let Some(last) = decoder.finish()
            && last.has_data
            && !last.is_done()
        {
            // A torn last event is not an answer chunk; what came before it is judged.
            let _ = answer.push_chunk(&last.data);
        }
    } else {
        answer.push_body(&bytes)?;
    }
    Ok(JudgeJob {
        settings: p.settings,
        route: p.route,
        judged: p.judged,
        reason: p.reason,
        conversation,
        answer: answer.finish(),
    })
}

/// Feeds a passed-through Responses answer (a `response` object, or its typed events) to the
/// assembler as the chat answer it reads: the `output_text` of its messages.
fn native_answer(
    answer: &mut AnswerAssembler,
    bytes: &Bytes,
    stream: bool,
) -> Result<(), sluice_judge::Error> {
    use crate::face::responses::native;
    if !stream {
        let chat = native::judge_body(bytes).ok_or(sluice_judge::Error::NotJson)?;
        return answer.push_body(&chat);
    }
    let mut decoder = SseDecoder::new(bytes.len().max(1));
    decoder.push(bytes);
    let events = std::iter::from_fn(|| decoder.next_event().ok().flatten());
    for event in events {
        if event.has_data
            && let Some(chunk) = native::judge_chunk(&event.data)
        {
            answer.push_chunk(&chunk)?;
        }
    }
    Ok(())
}

/// A new internal key for the judge, registered with the runtime state (so every policy
/// compiles it in), and its plaintext for the backend. The plaintext is random, held only in
/// memory and never logged.
pub fn internal_key(runtime: &sluice_policy::RuntimeState) -> Secret {
    let plain = format!("sk-sluice-internal-{:032x}", random_u128());
    runtime.add_internal_key(KeyConfig {
        name: JUDGE_KEY_NAME.to_owned(),
        key_sha256: sluice_policy::hash_key(&plain),
        tenant: JUDGE_TENANT.to_owned(),
        limits: sluice_config::Limits::default(),
        models: Vec::new(),
        routes: Vec::new(),
        priority: 9,
        expires: None,
    });
    Secret::new(plain)
}

fn random_u128() -> u128 {
    let mut buf = [0u8; 16];
    // The OS's randomness; a key that cannot be made random is not made at all.
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if from_os.is_err() {
        return sluice_observability::spans::random_id()
            ^ (sluice_observability::spans::random_id() << 64);
    }
    u128::from_le_bytes(buf)
}

/// Calls the judge model through Sluice's own data plane.
pub struct Loopback {
    state: Arc<AppState>,
    addr: SocketAddr,
    base_url: BaseUrl,
    key: Secret,
}

impl Loopback {
    /// A backend calling the data plane listening on `listen` (a wildcard address is reached
    /// on loopback).
    /// `tls`: the listener serves HTTPS (`server.tls`).
    pub fn new(
        state: Arc<AppState>,
        listen: SocketAddr,
        tls: bool,
        key: Secret,
    ) -> Result<Self, String> {
        let addr = if listen.ip().is_unspecified() {
            SocketAddr::new(
                if listen.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                },
                listen.port(),
            )
        } else {
            listen
        };
        let scheme = if tls { "https" } else { "http" };
        let base_url = BaseUrl::parse(&format!("{scheme}://{addr}/v1"))?;
        Ok(Self {
            state,
            addr,
            base_url,
            key,
        })
    }
}

#[async_trait]
impl JudgeBackend for Loopback {
    async fn judge(&self, call: JudgeCall) -> Result<JudgeReply, sluice_judge::Error> {
        let fail =
            |failure: Failure, message: String| sluice_judge::Error::Backend { failure, message };
        let target = HttpTarget {
            addr: self.addr,
            base_url: &self.base_url,
            api_key: Some(&self.key),
            connect_timeout: Duration::from_secs(2),
            path: "/chat/completions",
            stream: false,
            request_id: &call.judged.request_id,
            own_listener: true,
            egress: None,
        };
        let work = async {
            let mut up = openai::send(&self.state.connector, &target, call.body.clone())
                .await
                .map_err(|e| fail(Failure::Transport, format!("{e:?}")))?;
            let status = up.status();
            let mut body = Vec::new();
            while let Some(chunk) = up
                .read_chunk()
                .await
                .map_err(|e| fail(Failure::Transport, e))?
            {
                body.extend_from_slice(&chunk);
            }
            up.release(&self.state.connector, true).await;
            Ok::<_, sluice_judge::Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(call.timeout, work)
            .await
            .map_err(|_| fail(Failure::Timeout, "the judge call timed out".into()))??;
        match status {
            200 => {}
            404 => {
                return Err(fail(
                    Failure::Unroutable,
                    format!("no route serves the judge model `{}`", call.model),
                ));
            }
            429 => {
                return Err(fail(
                    Failure::Limited,
                    "the judge call was rate limited".into(),
                ));
            }
            s => {
                return Err(fail(
                    Failure::Upstream,
                    format!("the judge call answered {s}"),
                ));
            }
        }
        let content = sluice_judge::reply_content(&body)?;
        Ok(JudgeReply {
            content,
            cost_usd: self.cost(&call.model, &body),
        })
    }
}

impl Loopback {
    /// The call's cost from its reported usage and the judge model's catalog price.
    fn cost(&self, model: &str, body: &[u8]) -> Option<f64> {
        #[derive(serde::Deserialize)]
        struct Reply {
            usage: Option<crate::stream::Usage>,
        }
        let usage = serde_json::from_slice::<Reply>(body).ok()?.usage?;
        let policy = self.state.policy.snapshot();
        let pricing = policy.catalog_model(model)?.pricing?;
        let usage = sluice_observability::TokenUsage {
            input: usage.prompt_tokens,
            output: usage.completion_tokens,
            cached_input: usage.cached_tokens(),
            cache_write_input: usage.cache_write_tokens(),
            reasoning: usage.reasoning_tokens(),
            source: sluice_observability::UsageSource::Provider,
        };
        Some(sluice_observability::cost::cost_usd(&usage, &pricing))
    }
}

/// Where verdicts go: metrics, the quality SLI, the evaluation span, the recent list.
pub struct Sinks {
    pub state: Arc<AppState>,
    pub spans: SpanSink,
    pub recent: Arc<RecentVerdicts>,
}

impl VerdictSink for Sinks {
    fn outcome(&self, o: &JudgeOutcome) {
        let metrics = &self.state.metrics;
        metrics.record_judge(&o.route, o.outcome.as_str());
        if let Some(v) = &o.verdict {
            metrics
                .judge_score
                .get_or_create(&JudgeScoreLabels {
                    route: Arc::clone(&o.route),
                    rubric: Arc::from(o.settings.rubric.name()),
                    model: Arc::clone(&o.settings.model),
                })
                .observe(v.score);
            self.state
                .slo_events
                .offer(SloEvent::Quality(QualitySample {
                    route: Arc::clone(&o.route),
                    target: Some(TargetKey {
                        provider: Arc::clone(&o.judged.provider),
                        model: Arc::clone(&o.judged.model),
                    }),
                    score: v.score,
                }));
        }
        if o.outcome != SampleOutcome::Dropped {
            let capture = self.state.policy.snapshot().telemetry.capture_content;
            self.spans.offer_evaluation(&Evaluation {
                trace_id: o.judged.trace_id,
                parent_span_id: o.judged.span_id,
                name: o.settings.rubric.name().to_owned(),
                outcome: o.outcome.as_str(),
                score: o.verdict.as_ref().map(|v| v.score),
                label: o.verdict.as_ref().map(|v| v.label.clone()),
                explanation: o
                    .verdict
                    .as_ref()
                    .filter(|_| capture)
                    .map(|v| v.explanation.clone()),
                response_id: o.judged.response_id.as_deref().map(str::to_owned),
                route: Some(o.route.to_string()),
                judge_model: o.settings.model.to_string(),
                start: o.at.checked_sub(o.duration).unwrap_or(o.at),
                duration: o.duration,
            });
        }
        self.recent.outcome(o);
    }
}
