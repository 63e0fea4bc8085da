//! The admin listener: liveness, readiness and Prometheus metrics, open to anyone who can reach
//! the port; everything else behind an admin token.
//!
//! [`authorize`] is the one check: every path but `/healthz`, `/readyz` and `/metrics` needs
//! `Authorization: Bearer <admin token>` whose SHA-256 is in the serving policy's
//! `admin.tokens`. It looks at nothing else — not `Host`, not `X-Forwarded-*`, not the peer
//! address — so a forged header cannot open anything. Without a valid token the answer is 401
//! for every such path, existing or not, so the routes cannot be probed either.
//!
//! The console (`/console`, see [`crate::console`]) logs in with the same token and keeps a
//! session cookie, which [`authorize`] accepts in place of the bearer token; a change carried
//! by that cookie from another site is refused (403).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use sluice_policy::Policy;

use crate::reload::{Reloader, Trigger};
use crate::state::AppState;

mod console_routes;

pub struct Admin {
    pub state: Arc<AppState>,
    pub reloader: Arc<Reloader>,
    pub console: crate::console::Console,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const JSON: &str = "application/json";

/// An admin answer before it becomes a response.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// `www-authenticate` on a 401.
    challenge: bool,
    /// More headers (the console's cookies, redirects and page policy).
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: body.as_bytes().to_vec(),
            challenge: false,
            headers: Vec::new(),
        }
    }

    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self {
                status,
                content_type: JSON,
                body,
                challenge: false,
                headers: Vec::new(),
            },
            Err(_) => Self::text(500, "cannot encode the answer\n"),
        }
    }

    fn error(status: u16, kind: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
        )
    }
}

/// Why a request is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No valid admin token or console session (401).
    Unauthenticated(&'static str),
    /// A change carried by a console cookie from another site (403).
    CrossSite,
}

/// The holder of the request's admin token (or of the console session it carries), or why
/// there is none.
pub fn authorize(
    session: &ServerSession,
    policy: &Policy,
    console: &crate::console::Sessions,
) -> Result<Arc<str>, Refusal> {
    if session.get_header("authorization").is_none()
        && let Some(cookie) = crate::console::session_cookie(session)
    {
        let who = console
            .holder(cookie, policy, tokio::time::Instant::now())
            .ok_or(Refusal::Unauthenticated(
                "the console session has ended: log in again",
            ))?;
        let method = &session.req_header().method;
        if !matches!(*method, Method::GET | Method::HEAD) && crate::console::is_cross_site(session)
        {
            return Err(Refusal::CrossSite);
        }
        return Ok(who);
    }
    bearer(session, policy).map_err(Refusal::Unauthenticated)
}

fn bearer(session: &ServerSession, policy: &Policy) -> Result<Arc<str>, &'static str> {
    let header = session
        .get_header("authorization")
        .ok_or("an admin token is required: send `Authorization: Bearer <admin token>`")?;
    let value = header.to_str().map_err(|_| "invalid admin token")?;
    let presented = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("an admin token is required: send `Authorization: Bearer <admin token>`")?;
    policy
        .admin(presented)
        .cloned()
        .ok_or("invalid admin token")
}

impl Admin {
    async fn answer(&self, session: &mut ServerSession) -> Answer {
        let path = session.req_header().uri.path().to_owned();
        let method = session.req_header().method.clone();
        match path.as_str() {
            "/healthz" => return Answer::text(200, "ok\n"),
            "/readyz" if self.state.is_draining() => return Answer::text(503, "draining\n"),
            "/readyz" => return Answer::text(200, "ready\n"),
            "/metrics" => {
                let mut out = String::with_capacity(8 << 10);
                return match prometheus_client::encoding::text::encode(
                    &mut out,
                    &self.state.registry,
                ) {
                    Ok(()) => Answer {
                        status: 200,
                        content_type: OPENMETRICS,
                        body: out.into_bytes(),
                        challenge: false,
                        headers: Vec::new(),
                    },
                    Err(_) => Answer::text(500, "cannot encode metrics\n"),
                };
            }
            _ => {}
        }
        if path == "/console" || path.starts_with("/console/") {
            return self.console_page(session, &path, &method).await;
        }
        let policy = self.state.policy.snapshot();
        let who = match authorize(session, &policy, &self.console.sessions) {
            Ok(who) => who,
            Err(Refusal::Unauthenticated(why)) => {
                let mut a = Answer::error(401, "authentication_error", why);
                a.challenge = true;
                return a;
            }
            Err(Refusal::CrossSite) => {
                return Answer::error(
                    403,
                    "permission_error",
                    "a console request from another site is refused",
                );
            }
        };
        if let Some(op) = crate::console::operator::parse_path(&path) {
            if method != Method::POST {
                return Answer::error(405, "invalid_request_error", "method not allowed");
            }
            return self.operator(session, op, who).await;
        }
        match (path.as_str(), &method) {
            ("/admin/reload", &Method::POST) => {
                let reloader = Arc::clone(&self.reloader);
                let trigger = Trigger::Admin(who);
                // Reading and compiling a policy is blocking work; keep it off the listener's
                // async thread.
                match tokio::task::spawn_blocking(move || reloader.reload(&trigger)).await {
                    Ok(report) => {
                        let status = if report.result
                            == sluice_observability::metrics::ReloadResult::Rejected
                        {
                            422
                        } else {
                            200
                        };
                        Answer::json(status, &report)
                    }
                    Err(_) => Answer::error(500, "server_error", "the reload did not finish"),
                }
            }
            ("/admin/inflight", &Method::GET) => Answer::text(
                200,
                &format!("{}\n", self.state.inflight.load(Ordering::Relaxed)),
            ),
            ("/admin/targets", &Method::GET) => Answer::json(200, &targets_view(&self.state)),
            ("/admin/policy", &Method::GET) => Answer::json(
                200,
                &serde_json::json!({
                    "generation": policy.generation,
                    "policy": &*policy.config,
                }),
            ),
            ("/admin/slo", &Method::GET) => Answer::json(200, &slo_view(&self.state)),
            ("/admin/tls", &Method::GET) => Answer::json(
                200,
                &serde_json::json!({"certificates": self.reloader.certs().iter().map(|c| c.view()).collect::<Vec<_>>()}),
            ),
            ("/admin/judge/recent", &Method::GET) => Answer::json(
                200,
                &serde_json::json!({ "verdicts": self.state.judge_recent.snapshot() }),
            ),
            ("/admin/incidents", &Method::GET) => Answer::json(
                200,
                &self.state.slo.incidents(&self.state.runtime.overlay_full()),
            ),
            ("/admin/anomalies", &Method::GET) => Answer::json(200, &*self.state.slo.anomalies()),
            ("/admin/state", &Method::GET) => Answer::json(
                200,
                &self
                    .state
                    .shared
                    .as_ref()
                    .map_or_else(crate::shared::StateView::in_memory, |s| s.view()),
            ),
            (
                "/admin/reload"
                | "/admin/state"
                | "/admin/anomalies"
                | "/admin/inflight"
                | "/admin/targets"
                | "/admin/policy"
                | "/admin/slo"
                | "/admin/incidents"
                | "/admin/judge/recent"
                | "/admin/tls",
                _,
            ) => Answer::error(405, "invalid_request_error", "method not allowed"),
            _ => Answer::error(404, "invalid_request_error", "no such admin route"),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let a = self.answer(session).await;
        let mut b = Response::builder()
            .status(a.status)
            .header("content-type", a.content_type)
            .header("content-length", a.body.len());
        if a.challenge {
            b = b.header("www-authenticate", "Bearer realm=\"sluice-admin\"");
        }
        for (name, value) in a.headers {
            b = b.header(name, value);
        }
        b.body(a.body).unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

/// `GET /admin/slo`: every SLO's status as of the last evaluation (the route's, then each
/// target's), with the remediation in force on each route.
fn slo_view(state: &AppState) -> serde_json::Value {
    use serde_json::json;
    let policy = state.policy.snapshot();
    let overlay = state.runtime.overlay_full();
    let statuses = state.slo.statuses();
    let routes: Vec<serde_json::Value> = policy
        .config
        .routes
        .iter()
        .filter(|r| !r.slos.is_empty())
        .map(|r| {
            let of_route = |target: bool| -> Vec<&sluice_policy::remediation::SloStatus> {
                statuses
                    .iter()
                    .filter(|s| *s.route == *r.name && s.target.is_some() == target)
                    .collect()
            };
            let remedy = overlay.route(&r.name);
            json!({
                "route": r.name,
                "slos": r.slos,
                "status": of_route(false),
                "targets": of_route(true),
                "remediation": {
                    "failover": remedy.map_or(Vec::new(), |o| o
                        .ejected
                        .iter()
                        .map(|e| json!({"target": e.target, "share": e.share, "rule": &*e.set_by.rule, "incident": e.set_by.incident}))
                        .collect()),
                    "downgrade_to": remedy.and_then(|o| o.substitution.as_ref()).map(|s| json!({"model": &*s.model, "share": s.share, "rule": &*s.set_by.rule, "incident": s.set_by.incident})),
                    "cache_fallback": remedy.and_then(|o| o.cache_fallback.as_ref()).map(|c| json!({"share": c.share, "rule": &*c.set_by.rule, "incident": c.set_by.incident})),
                    "shed": remedy.and_then(|o| o.shed.as_ref()).map(|x| json!({"max_priority": x.max_priority, "share": x.share, "rule": &*x.set_by.rule, "incident": x.set_by.incident})),
                },
                "rules": r.remediation,
            })
        })
        .collect();
    json!({
        "paused_rules": &*state.slo.paused(),
        "generation": policy.generation,
        "window_scale": policy.config.slo.window_scale,
        "routes": routes,
    })
}

/// `GET /admin/targets`: every route's targets with their live state, and every tenant's
/// spend against its budget. Instants are shown as wall-clock times.
fn targets_view(state: &AppState) -> serde_json::Value {
    use serde_json::json;
    let policy = state.policy.snapshot();
    let now = tokio::time::Instant::now();
    let wall = std::time::SystemTime::now();
    let at = |i: tokio::time::Instant| {
        humantime::format_rfc3339_millis(wall + i.saturating_duration_since(now)).to_string()
    };
    let routes: Vec<serde_json::Value> = policy
        .routes()
        .iter()
        .map(|route| {
            let (requests, retries) = route.state.retry_budget.totals(now);
            let targets: Vec<serde_json::Value> = route
                .all_targets()
                .map(|(t, weight)| {
                    let v = t.state.view(&route.health, now);
                    let (phase, until) = match v.health.phase {
                        sluice_policy::health::Phase::Healthy => ("healthy", None),
                        sluice_policy::health::Phase::Probing => ("probing", None),
                        sluice_policy::health::Phase::Ejected { until } => {
                            ("ejected", Some(at(until)))
                        }
                    };
                    json!({
                        "provider": &*t.provider.name,
                        "model": &*t.model,
                        "weight": weight,
                        "fallback": weight == 0,
                        "health": phase,
                        "ejected_until": until,
                        "consecutive_failures": v.health.consecutive_failures,
                        "window_requests": v.health.window_requests,
                        "window_failures": v.health.window_failures,
                        "times_ejected": v.health.times_ejected,
                        "ewma_ttft_ms": v.ewma_ttft_ms,
                        "inflight": v.inflight,
                        "cooling_until": v.cooling_until.map(at),
                    })
                })
                .collect();
            json!({
                "route": &*route.name,
                "strategy": route.balance.as_str(),
                "max_ejected_share": route.health.max_ejected_share,
                "retry_budget": {
                    "requests_10s": requests,
                    "retries_10s": retries,
                    "ratio": route.retry.budget.ratio,
                    "min_per_s": route.retry.budget.min_per_s,
                },
                "targets": targets,
            })
        })
        .collect();
    let tenants: Vec<serde_json::Value> = state
        .runtime
        .spend()
        .into_iter()
        .map(|(name, raw)| {
            let s = sluice_policy::spend::current(&raw, wall);
            let budget = policy.config.tenants.get(&name).map(|t| t.budget);
            json!({
                "tenant": name,
                "spend_day_usd": s.day_usd,
                "spend_month_usd": s.month_usd,
                "budget_day_usd": budget.and_then(|b| b.usd_per_day),
                "budget_month_usd": budget.and_then(|b| b.usd_per_month),
            })
        })
        .collect();
    json!({
        "generation": policy.generation,
        "routes": routes,
        "tenants": tenants,
        // Providers with connection settings: HTTP version and open HTTP/2 connections.
        "connections": state.egress.view(),
    })
}
