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
use sluice_policy::{KeyEntry, Policy};
use tokio::time::{Instant, timeout_at};

use crate::cache::{self, CacheKey, CacheStatus};
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::exchange;
use crate::request::OpenAiRequest;
use crate::respond::{self, Delivered, Rejection};
use crate::state::{AppState, InflightGuard};

pub struct DataPlane {
    pub state: Arc<AppState>,
}

impl DataPlane {
    /// Serves the one request of `ds`; the connection back when it can take another.
    pub async fn serve(
        &self,
        mut ds: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusableHttpStream> {
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
        if let Some(fill) = ctx.cache_fill.take() {
            state.cache.store(fill, &finished.record);
        }
        // Provider-reported usage is known now; a tokenizer count waits for the recorder.
        if let (Some(limiter), Some(usage)) = (&finished.limiter, &finished.record.usage) {
            limiter.consume_tokens(usage.input.saturating_add(usage.output));
        }
        state.records.offer(finished);
        if !reusable {
            return None;
        }
        ds.finish().await.ok().flatten()
    }
}

fn endpoint_of(path: &str) -> Endpoint {
    match path.trim_end_matches('/') {
        "/v1/chat/completions" => Endpoint::ChatCompletions,
        "/v1/completions" => Endpoint::Completions,
        "/v1/embeddings" => Endpoint::Embeddings,
        "/v1/models" => Endpoint::Models,
        _ => Endpoint::Other,
    }
}

/// A client-supplied `x-request-id` is kept when it is short printable ASCII, so callers can
/// correlate; anything else is replaced.
fn client_request_id(ds: &ServerSession) -> Option<String> {
    let v = ds.get_header("x-request-id")?.as_bytes();
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
    let key = authenticate(ds, &policy).map_err(Rejection::Error)?;
    ctx.tenant = Some(Arc::clone(&key.tenant));
    ctx.limiter = key.limiter.clone();

    if ctx.endpoint == Endpoint::Models {
        return list_models(ds, ctx, &policy).await;
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
    let req = OpenAiRequest::parse(ctx.endpoint, body, policy.server.max_json_depth)
        .map_err(Rejection::Error)?;
    ctx.stream = req.stream;
    ctx.request_model = Some(req.model.clone());
    ctx.params = req.params.clone();
    ctx.body = Some(req.body.clone());
    let plan = policy
        .route(&req.model)
        .ok_or_else(|| Rejection::Error(GatewayError::UnknownModel(req.model.clone())))?;
    ctx.route = Some(Arc::clone(&plan.route.name));
    ctx.route_slow = plan.route.slow;
    ctx.request_model_label = Some(Arc::clone(plan.requested));
    let expected = match plan.route.kind() {
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
    // Only requests that could be served count against the key's limits.
    if let Some(limiter) = &ctx.limiter {
        match limiter.admit() {
            Ok(headroom) => ctx.headroom = Some(headroom),
            Err(denied) => {
                ctx.rate_limited = Some(denied.kind);
                ctx.headroom = Some(crate::ratelimit::exhausted(&denied));
                return Err(Rejection::Error(GatewayError::LimitExceeded {
                    kind: denied.kind,
                    limit: denied.limit,
                    retry_after: denied.retry_after,
                }));
            }
        }
    }
    if let Some(cfg) = &plan.route.cache {
        if cache::cacheable(cfg, ctx.endpoint, &ctx.params) {
            let key = CacheKey::of(&key.tenant, &plan.route.name, ctx.endpoint, &req.body);
            if let Some(hit) = state.cache.get(&key) {
                ctx.cache = Some(CacheStatus::Hit);
                return respond::replay(ds, ctx, &hit).await;
            }
            ctx.cache = Some(CacheStatus::Miss);
            ctx.cache_fill = Some(state.cache.fill(key, cfg.ttl));
        } else {
            ctx.cache = Some(CacheStatus::Bypass);
        }
    }
    // Boxed: awaited in place, the exchange's state machine doubled the size of this one
    // (22 KiB, held by every open stream); on the heap it is the exchange's own size.
    Box::pin(exchange::run(state, ds, ctx, &req, plan)).await
}

/// Resolves `Authorization: Bearer <key>` to its key entry.
fn authenticate<'p>(ds: &ServerSession, policy: &'p Policy) -> Result<&'p KeyEntry, GatewayError> {
    let header = ds
        .get_header("authorization")
        .ok_or(GatewayError::MissingKey)?;
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
async fn read_body(
    ds: &mut ServerSession,
    limit: u64,
    deadline: Instant,
) -> Result<Bytes, Rejection> {
    let declared = ds
        .get_header("content-length")
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
        .get_header("expect")
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
) -> Result<Delivered, Rejection> {
    let data: Vec<serde_json::Value> = policy
        .public_models()
        .iter()
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
