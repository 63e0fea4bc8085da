//! The data plane's request handler: admits a request (endpoint, key, body, JSON), routes it,
//! runs the exchange, and hands its record over. One request per call; the connection it came
//! on is `downstream`'s.
//!
//! Sluice serves requests itself rather than through `ProxyHttp`: the LLM exchange owns the
//! upstream side (see `exchange`), so pingora's proxy phases would only be bypassed. This keeps
//! one request path with no `upstream_peer` that is never called.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::server::ReusableHttpStream;
use pingora::server::ShutdownWatch;
use sluice_observability::Endpoint;
use sluice_observability::metrics::RefusedReason;
use sluice_policy::remediation::in_share;
use sluice_policy::{KeyEntry, Policy};
use std::time::SystemTime;

use tokio::time::{Instant, timeout_at};

use crate::cache::{self, CacheKey, CacheStatus};
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::exchange;
use crate::face::Face;
use crate::request::OpenAiRequest;
use crate::respond::{self, Delivered, Rejection};
use crate::shared::Admission;
use crate::state::{AppState, InflightGuard};
use sluice_config::FailMode;

pub struct DataPlane {
    pub state: Arc<AppState>,
}

impl DataPlane {
    /// Serves the one request of `ds`; the connection back when it can take another.
    ///
    /// Not an `async fn`: one would keep the session twice in its future (the argument and
    /// its moved copy), and this future lives as long as the request in every connection.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps by-value arguments twice in its future"
    )]
    pub fn serve<'a>(
        &'a self,
        mut ds: ServerSession,
        shutdown: &'a ShutdownWatch,
    ) -> impl Future<Output = Option<ReusableHttpStream>> + Send + 'a {
        async move {
            if !matches!(ds.read_request().await, Ok(true)) {
                return None;
            }
            let state = &*self.state;
            let _inflight = InflightGuard::new(&state.inflight);
            let draining = *shutdown.borrow() || state.is_draining();
            // pingora has already decided from the request whether the client keeps the
            // connection (HTTP/1.0 without `keep-alive`, `connection: close`, a body framed two
            // ways): Sluice only ever shortens that, to its idle timeout or to none.
            let idle = state
                .policy
                .snapshot()
                .server
                .keepalive_timeout
                .as_secs()
                .max(1);
            let keepalive = ds.get_keepalive().is_some() && !draining;
            ds.set_keepalive(keepalive.then_some(idle));

            let endpoint = endpoint_of(ds.req_header().uri.path());
            let request_id = client_request_id(&ds).unwrap_or_else(|| state.next_request_id());
            let trace = crate::trace::incoming(&ds);
            let mut ctx = RequestCtx::new(request_id, endpoint, trace);

            let served = if draining {
                // Sluice is going away: a clear refusal the client can retry elsewhere.
                state.metrics.record_refused(RefusedReason::Draining);
                Err(Rejection::Error(GatewayError::Draining))
            } else {
                serve(state, &mut ds, &mut ctx).await
            };
            let reusable = match served {
                Ok(Delivered::Complete) => true,
                Ok(Delivered::ClientGone) => false,
                Err(Rejection::Error(e)) => respond::write_error(&mut ds, &mut ctx, &e).await,
                Err(Rejection::Upstream { status, body }) => {
                    ctx.end_passthrough(status);
                    let body = crate::face::upstream_error(ctx.face, status, body);
                    respond::write_json(&mut ds, &ctx, status, body, &[]).await
                }
                Err(Rejection::ClientGone) => {
                    ctx.end_cancelled();
                    false
                }
            };
            tracing::debug!(
                request_id = %ctx.request_id,
                status = ctx.status(),
                outcome = ?ctx.outcome(),
                attempts = ctx.attempts.len(),
                "Request finished."
            );
            let finished = ctx.finish();
            // Before the connection is reused: the client's next request may be the same one.
            if let Some(fill) = ctx.taps.cache.take()
                && let Some((key, answer)) = state.cache.store(fill, &finished.record)
                && let Some(shared) = &state.shared
            {
                shared.cache_put(&key, &answer);
            }
            // Provider-reported usage is known now; a tokenizer count waits for the recorder.
            if let Some(usage) = &finished.record.usage {
                for limiter in finished.limiters.iter().flatten() {
                    limiter.consume_tokens(usage.input.saturating_add(usage.output));
                }
                // Other replicas see this request's tokens and cost as soon as Redis has them,
                // not a recorder tick later.
                if let (Some(shared), Some(subject)) = (&state.shared, &finished.shared) {
                    let usd = finished
                        .pricing
                        .as_ref()
                        .map_or(0.0, |p| sluice_observability::cost::cost_usd(usage, p));
                    shared.record(
                        subject,
                        usage.input.saturating_add(usage.output),
                        usd,
                        // The recorder stamps this request's in-process spend the same way: both
                        // land in the same UTC day even across midnight.
                        finished.record.start + finished.record.duration,
                    );
                }
            }
            state.records.offer(finished);
            if !reusable {
                return None;
            }
            // Boxed: pingora's `finish` future (3.7 KB) would otherwise double this one's size,
            // room every connection's task carries through an open stream.
            Box::pin(ds.finish()).await.ok().flatten()
        }
    }
}

/// Request headers Sluice reads, parsed once: a lookup by a string name parses the name
/// every time.
mod names {
    use http::HeaderName;

    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
    pub const X_STAINLESS_RETRY_COUNT: HeaderName =
        HeaderName::from_static("x-stainless-retry-count");
    pub const X_STAINLESS_READ_TIMEOUT: HeaderName =
        HeaderName::from_static("x-stainless-read-timeout");
    pub const X_SLUICE_CACHE: HeaderName = HeaderName::from_static("x-sluice-cache");
}

fn endpoint_of(path: &str) -> Endpoint {
    match path.trim_end_matches('/') {
        "/v1/chat/completions" => Endpoint::ChatCompletions,
        "/v1/completions" => Endpoint::Completions,
        "/v1/embeddings" => Endpoint::Embeddings,
        "/v1/models" => Endpoint::Models,
        "/v1/feedback" => Endpoint::Feedback,
        "/v1/responses" => Endpoint::Responses,
        "/v1/messages" => Endpoint::Messages,
        "/v1/messages/count_tokens" => Endpoint::MessagesCountTokens,
        _ => Endpoint::Other,
    }
}

/// A client-supplied `x-request-id` is kept when it is short printable ASCII, so callers can
/// correlate; anything else is replaced.
fn client_request_id(ds: &ServerSession) -> Option<String> {
    let v = ds.get_header(&names::X_REQUEST_ID)?.as_bytes();
    (!v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()))
        .then(|| String::from_utf8_lossy(v).into_owned())
}

async fn serve(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
) -> Result<Delivered, Rejection> {
    let method = ds.req_header().method.clone();
    let want = match ctx.endpoint {
        Endpoint::Models => http::Method::GET,
        Endpoint::Other => {
            return Err(Rejection::Error(GatewayError::UnknownEndpoint {
                method: method.to_string(),
                path: ds.req_header().uri.path().to_owned(),
            }));
        }
        _ => http::Method::POST,
    };
    if method != want {
        return Err(Rejection::Error(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: ds.req_header().uri.path().to_owned(),
        }));
    }

    // One snapshot for the whole request: it never sees two policies.
    let policy = state.policy.snapshot();
    ctx.policy = Some(Arc::clone(&policy));
    let key = authenticate(ds, &policy, ctx.face).map_err(Rejection::Error)?;
    if key.expired(SystemTime::now()) {
        return Err(Rejection::Error(GatewayError::ExpiredKey));
    }
    ctx.tenant = Some(Arc::clone(&key.tenant));
    ctx.limiters = [key.limiter.clone(), key.tenant_state.limiter()];
    ctx.tenant_state = Some(Arc::clone(&key.tenant_state));

    if ctx.endpoint == Endpoint::Models {
        return list_models(ds, ctx, &policy, key).await;
    }
    if ctx.endpoint == Endpoint::Feedback {
        return crate::feedback::serve(state, ds, ctx, key).await;
    }
    if ctx.endpoint == Endpoint::MessagesCountTokens {
        return crate::face::messages::count_tokens(ds, ctx, &policy, key).await;
    }

    let body = read_body(
        ds,
        policy.server.max_body_bytes,
        Instant::now() + policy.server.body_timeout,
    )
    .await
    .inspect_err(|r| {
        if matches!(r, Rejection::Error(GatewayError::BodyTimeout)) {
            state.metrics.record_refused(RefusedReason::BodyTimeout);
        }
    })?;
    let body = crate::face::request(ctx.face, body, &mut ctx.render).map_err(Rejection::Error)?;
    if let crate::face::Render::Messages(m) = &mut ctx.render {
        m.set_beta(ds.get_header(&names::ANTHROPIC_BETA).map(|v| v.as_bytes()));
    }
    let req = OpenAiRequest::parse(
        ctx.face.exchange_endpoint(ctx.endpoint),
        body,
        policy.server.max_json_depth,
    )
    .map_err(Rejection::Error)?;
    ctx.stream = req.stream;
    ctx.request_model = Some(req.model.clone());
    ctx.params = req.params.clone();
    if let Some(id) = crate::trace::conversation_id(ds) {
        ctx.params.conversation_id = Some(id);
    }
    ctx.body = Some(req.body.clone());
    let has = |name: &str, value: &str| {
        ds.get_header(name)
            .is_some_and(|v| v.as_bytes() == value.as_bytes())
    };
    let (route, public) = policy
        .find_route(&req.model, has)
        // A model the key may not use is as unknown to it as one that does not exist.
        .filter(|(route, _)| key.allows(&req.model, &route.name))
        .ok_or_else(|| Rejection::Error(GatewayError::UnknownModel(req.model.clone())))?;
    ctx.route = Some(Arc::clone(&route.name));
    ctx.route_slow = route.slow;
    ctx.request_model_label = Some(Arc::clone(public));
    let expected = match route.kind() {
        sluice_config::ModelKind::Chat => ctx.endpoint != Endpoint::Embeddings,
        sluice_config::ModelKind::Embedding => ctx.endpoint == Endpoint::Embeddings,
    };
    if !expected {
        return Err(Rejection::Error(GatewayError::invalid(
            format!(
                "the model `{}` cannot serve {}",
                req.model,
                if ctx.endpoint == Endpoint::Embeddings {
                    "embeddings"
                } else {
                    "completions"
                }
            ),
            Some("model"),
        )));
    }
    // Only requests that could be served count against limits and budgets.
    admit(state, ctx, key).await?;
    let now = Instant::now();
    route.state.retry_budget.record_request(now);
    // A client's own retry is load the provider sees twice: it spends the route's retry
    // budget, and when there is none left Sluice adds no retries of its own.
    if client_retry(ds) && !route.state.retry_budget.try_retry(&route.retry.budget, now) {
        ctx.no_retries = true;
    }
    ctx.client_deadline = client_read_timeout(ds).map(|t| ctx.started + t);
    let random = random_words(&ctx.trace.trace_id);

    let mut stale_key = None;
    let mut hit = None;
    // The cache key of a cacheable request on a caching route; `None` for the others.
    let cache_key = route
        .cache
        .as_ref()
        .filter(|cfg| !cache_bypassed(ds) && cache::cacheable(cfg, ctx.endpoint, &ctx.params))
        .map(|_| {
            CacheKey::of(
                &key.tenant,
                &route.name,
                ctx.endpoint,
                cache_body(ctx, &req),
            )
        });
    // With a cache shared through Redis, a local miss asks Redis before anything is decided;
    // an answer found there is kept locally, where the lookup below finds it.
    if let (Some(cfg), Some(k), Some(shared)) = (&route.cache, &cache_key, &state.shared)
        && shared.shares_cache()
        && state.cache.get(k, cfg.ttl).is_none()
        && let Some(answer) = shared.cache_get(k).await
    {
        state.cache.insert(*k, Arc::new(answer));
    }
    let shed = {
        // What remediation changed on this route: one atomic load, released before any await.
        let overlay = state.runtime.overlay();
        let remedy = overlay.route(&route.name);
        if let Some(cfg) = &route.cache {
            if let Some(key) = cache_key {
                if let Some(fresh) = state.cache.get(&key, cfg.ttl) {
                    ctx.cache = Some(CacheStatus::Hit);
                    hit = Some(fresh);
                } else if let Some(fallback) = remedy
                    .and_then(|r| r.cache_fallback.as_ref())
                    .filter(|c| in_share(c.share, random[1]))
                    && let Some(stale) = state.cache.get_stale(&key)
                {
                    // No provider is called while the fallback is on: a stale answer now beats
                    // a fresh error later.
                    ctx.cache = Some(CacheStatus::Stale);
                    ctx.remediation
                        .push(("cache_fallback", Arc::clone(&fallback.set_by.rule)));
                    hit = Some(stale);
                } else {
                    ctx.cache = Some(CacheStatus::Miss);
                    ctx.taps.cache = Some(state.cache.fill(key, cfg.ttl, cfg.max_stale));
                    if !cfg.max_stale.is_zero() {
                        stale_key = Some(key);
                    }
                }
            } else {
                ctx.cache = Some(CacheStatus::Bypass);
            }
        }
        let shed = remedy
            .and_then(|r| r.shed.as_ref())
            .filter(|s| key.priority <= s.max_priority && in_share(s.share, random[0]))
            .map(|s| Arc::clone(&s.set_by.rule));
        if hit.is_none() && shed.is_none() {
            let plan = route.plan(public, now, random, remedy);
            if plan.panic {
                state.metrics.record_panic(&route.name);
            }
            ctx.decision = Some(crate::decision::of(&plan, now));
            ctx.remediation.extend(
                plan.remediation
                    .iter()
                    .map(|(action, rule)| (action.as_str(), Arc::clone(rule))),
            );
            Ok(plan)
        } else {
            Err(shed)
        }
    };
    let plan = match shed {
        Ok(plan) => plan,
        Err(Some(rule)) => {
            ctx.remediation.push(("shed", rule));
            ctx.cache = None;
            ctx.taps.cache = None;
            return Err(Rejection::Error(GatewayError::Shed {
                retry_after: SHED_RETRY_AFTER,
            }));
        }
        Err(None) => {
            let hit = hit.ok_or_else(|| {
                Rejection::Error(GatewayError::Internal("cache answer vanished".into()))
            })?;
            return respond::replay(ds, ctx, &hit).await;
        }
    };
    sample_for_judge(state, ctx, &policy, &route.name, key, now);
    // Boxed: awaited in place, the exchange's state machine doubled the size of this one
    // (22 KiB, held by every open stream); on the heap it is the exchange's own size.
    let result = Box::pin(exchange::run(state, ds, ctx, &req, plan)).await;
    // Stale-if-error: when every attempt failed before anything was sent, an answer kept past
    // its ttl (within the route's `max_stale`) is better than the error.
    if let (Err(Rejection::Error(e)), Some(key)) = (&result, stale_key)
        && e.is_provider_failure()
        && let Some(stale) = state.cache.get_stale(&key)
    {
        ctx.cache = Some(CacheStatus::Stale);
        ctx.taps.cache = None;
        return respond::replay(ds, ctx, &stale).await;
    }
    result
}

/// Decides whether the judge scores this request's answer; if so the answer is tapped as it
/// goes out. Only requests that go to a provider are sampled (a cached answer was judged, if
/// at all, when it was first given), and never the judge's own calls.
fn sample_for_judge(
    state: &AppState,
    ctx: &mut RequestCtx,
    policy: &Policy,
    route: &str,
    key: &KeyEntry,
    now: Instant,
) {
    let Some(judge) = state.judges.of(policy, route) else {
        return;
    };
    let flags = sluice_judge::SampleFlags {
        remediated: !ctx.remediation.is_empty(),
        downgraded: ctx.remediation.iter().any(|(a, _)| *a == "downgrade_to"),
        judge_traffic: key.internal,
    };
    let Some(reason) = judge.sampler.decide(
        sluice_judge::key_from_trace_id(ctx.trace.trace_id),
        flags,
        now,
    ) else {
        return;
    };
    if let Some(r) = &ctx.route {
        state.metrics.record_judge(r, "sampled");
    }
    let sampled = crate::judge::Sampled {
        settings: judge.settings,
        reason,
    };
    ctx.taps.judge = Some(sampled.tap());
    ctx.judge = Some(sampled);
}

/// How long a shed client is told to wait before it tries again. The OpenAI SDKs honour
/// `retry-after-ms` on a 503, so shed keys back off instead of hammering the route.
const SHED_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Admits the request against its key's and its tenant's limits and the tenant's budget:
/// counted in Redis when they are shared (`state.redis`), in this process otherwise — and
/// also while Redis cannot be asked under `fail: open`.
async fn admit(state: &AppState, ctx: &mut RequestCtx, key: &KeyEntry) -> Result<(), Rejection> {
    // A key with no limits and no budget has nothing to count, in Redis or here.
    let counted = ctx.limiters.iter().any(Option::is_some) || key.budget != Default::default();
    if let Some(shared) = state.shared.as_ref().filter(|_| counted) {
        let subject = shared.subject(key, &ctx.limiters);
        let admission = shared.admit(&subject).await;
        ctx.shared = Some(subject);
        match admission {
            Admission::Admitted(headroom) => {
                ctx.headroom = headroom;
                return Ok(());
            }
            Admission::Denied(denied) => return Err(refuse_limit(ctx, &denied)),
            Admission::OverBudget(over) => return Err(refuse_budget(key, &over)),
            Admission::Unavailable(FailMode::Closed) => {
                return Err(Rejection::Error(GatewayError::StateUnavailable));
            }
            Admission::Unavailable(FailMode::Open) => {}
        }
    }
    let mut headroom: Option<sluice_policy::Headroom> = None;
    for limiter in ctx.limiters.iter().flatten() {
        match limiter.admit() {
            Ok(h) => {
                headroom = Some(headroom.map_or(h, |have| crate::ratelimit::tighter(have, h)));
            }
            Err(denied) => return Err(refuse_limit(ctx, &denied)),
        }
    }
    ctx.headroom = headroom;
    if let Err(over) = key.tenant_state.spend.check(&key.budget, SystemTime::now()) {
        return Err(refuse_budget(key, &over));
    }
    Ok(())
}

fn refuse_limit(ctx: &mut RequestCtx, denied: &sluice_policy::Denied) -> Rejection {
    ctx.rate_limited = Some(denied.kind);
    ctx.headroom = Some(crate::ratelimit::exhausted(denied));
    Rejection::Error(GatewayError::LimitExceeded {
        kind: denied.kind,
        limit: denied.limit,
        retry_after: denied.retry_after,
    })
}

fn refuse_budget(key: &KeyEntry, over: &sluice_policy::spend::OverBudget) -> Rejection {
    Rejection::Error(GatewayError::OverBudget {
        tenant: key.tenant.to_string(),
        period: over.period,
        limit_usd: over.limit_usd,
        spent_usd: over.spent_usd,
    })
}

/// `x-stainless-retry-count` above zero: the OpenAI SDKs' own retry.
fn client_retry(ds: &ServerSession) -> bool {
    ds.get_header(&names::X_STAINLESS_RETRY_COUNT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|n| n > 0)
}

/// `x-stainless-read-timeout`: how long the SDK will wait (seconds). Past it nobody reads the
/// answer, so no attempt starts that could not finish before.
fn client_read_timeout(ds: &ServerSession) -> Option<std::time::Duration> {
    ds.get_header(&names::X_STAINLESS_READ_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
        .map(std::time::Duration::from_secs_f64)
}

/// What a request's cache key covers besides its tenant, route and endpoint: the body the
/// exchange routes, except for a Responses request, keyed by the client's own body — its
/// chat body leaves out what only an OpenAI-kind target reads (built-in tools, `include`,
/// `reasoning.summary`, …), and that changes the answer.
fn cache_body<'a>(ctx: &'a RequestCtx, req: &'a OpenAiRequest) -> &'a [u8] {
    match &ctx.render {
        crate::face::Render::Responses(r) => r.original(),
        _ => &req.body,
    }
}

/// The client asked not to be answered from (or stored in) the cache.
fn cache_bypassed(ds: &ServerSession) -> bool {
    let header = |name: &http::HeaderName| {
        ds.get_header(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    header(&names::X_SLUICE_CACHE).is_some_and(|v| v.trim() == "bypass")
        || header(&http::header::CACHE_CONTROL).is_some_and(|v| {
            v.split(',')
                .any(|d| matches!(d.trim(), "no-cache" | "no-store"))
        })
}

/// Two random words for balancing, from the request's (random) trace id.
fn random_words(trace_id: &[u8; 16]) -> [u64; 2] {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&trace_id[..8]);
    b.copy_from_slice(&trace_id[8..]);
    [u64::from_le_bytes(a), u64::from_le_bytes(b)]
}

/// Resolves `Authorization: Bearer <key>` to its key entry; on the Messages face also
/// `x-api-key: <key>`, which the Anthropic SDKs send.
fn authenticate<'p>(
    ds: &ServerSession,
    policy: &'p Policy,
    face: Face,
) -> Result<&'p KeyEntry, GatewayError> {
    let header = match ds.get_header(http::header::AUTHORIZATION) {
        Some(h) => h,
        None if face == Face::Messages => {
            let key = ds
                .get_header(&names::X_API_KEY)
                .ok_or(GatewayError::MissingKey)?;
            let key = key.to_str().map_err(|_| GatewayError::InvalidKey)?.trim();
            if key.is_empty() {
                return Err(GatewayError::MissingKey);
            }
            return policy.authenticate(key).ok_or(GatewayError::InvalidKey);
        }
        None => return Err(GatewayError::MissingKey),
    };
    let value = header.to_str().map_err(|_| GatewayError::InvalidKey)?;
    let presented = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(GatewayError::MissingKey)?;
    policy
        .authenticate(presented)
        .ok_or(GatewayError::InvalidKey)
}

/// Reads the whole body under a hard cap. An over-cap Content-Length is refused before any
/// byte of the body is read (and before `100 Continue`, so the client need not send it).
pub(crate) async fn read_body(
    ds: &mut ServerSession,
    limit: u64,
    deadline: Instant,
) -> Result<Bytes, Rejection> {
    let declared = ds
        .get_header(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit
    {
        // The unread body makes the connection unusable for another request.
        ds.set_keepalive(None);
        return Err(Rejection::Error(GatewayError::BodyTooLarge {
            size: len,
            limit,
        }));
    }
    let expects_continue = ds
        .get_header(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && ds.write_continue_response().await.is_err() {
        return Err(Rejection::ClientGone);
    }
    let capacity = usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0);
    let mut parts: Vec<Bytes> = Vec::with_capacity(2);
    let mut len: u64 = 0;
    loop {
        let Ok(read) = timeout_at(deadline, ds.read_request_body()).await else {
            // A client trickling its body holds a connection and a buffer: let it go.
            ds.set_keepalive(None);
            return Err(Rejection::Error(GatewayError::BodyTimeout));
        };
        match read {
            Ok(Some(chunk)) => {
                len += chunk.len() as u64;
                if len > limit {
                    ds.set_keepalive(None);
                    return Err(Rejection::Error(GatewayError::BodyTooLarge {
                        size: len,
                        limit,
                    }));
                }
                parts.push(chunk);
            }
            Ok(None) => break,
            Err(_) => return Err(Rejection::ClientGone),
        }
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => {
            let mut buf = BytesMut::with_capacity(capacity.max(len as usize));
            for p in parts {
                buf.extend_from_slice(&p);
            }
            buf.freeze()
        }
    })
}

async fn list_models(
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    policy: &Policy,
    key: &KeyEntry,
) -> Result<Delivered, Rejection> {
    let data: Vec<serde_json::Value> = policy
        .public_models()
        .iter()
        .filter(|m| key.models.is_empty() || key.models.contains(&m.id))
        .map(|m| serde_json::json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}))
        .collect();
    let body = Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string());
    if respond::write_json(ds, ctx, 200, body, &[]).await {
        ctx.end_ok(200);
        Ok(Delivered::Complete)
    } else {
        ctx.end_cancelled();
        Ok(Delivered::ClientGone)
    }
}
