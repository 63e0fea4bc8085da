//! `POST /v1/feedback`: an app scores an answer it got, and the score counts for the
//! `judge_score_at_least` SLOs of the route that served it.
//!
//! ```text
//! POST /v1/feedback   Authorization: Bearer <virtual key>
//! {"response_id": "chatcmpl-…", "score": 0.8}
//! ```
//!
//! The response id is the `id` of the answer (what the SDKs return as `completion.id`). The
//! recorder remembers, for a day and at most [`REMEMBERED`] answers, which route and target
//! served each answer of a route with a quality SLO, and for which tenant: a key can score only
//! its own tenant's answers, and an unknown id and someone else's read the same (404), so ids
//! cannot be probed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use sluice_observability::slo::QualitySample;
use sluice_policy::KeyEntry;
use sluice_policy::remediation::TargetKey;

use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::respond::{self, Delivered, Rejection};
use crate::slo::SloEvent;
use crate::state::AppState;

/// Answers remembered for feedback at most.
pub const REMEMBERED: u64 = 200_000;
/// How long an answer can be scored.
pub const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);
/// A feedback body is small; anything bigger is not one.
const MAX_BODY: u64 = 16 * 1024;

/// Who served an answer, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub route: Arc<str>,
    pub target: Option<TargetKey>,
    pub tenant: Arc<str>,
}

/// Recent answers by response id.
#[derive(Debug)]
pub struct AnswerIndex(moka::sync::Cache<String, Arc<Answered>>);

impl Default for AnswerIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerIndex {
    pub fn new() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(REMEMBER_FOR)
                .build(),
        )
    }

    pub fn remember(&self, response_id: String, answered: Answered) {
        self.0.insert(response_id, Arc::new(answered));
    }

    pub fn find(&self, response_id: &str) -> Option<Arc<Answered>> {
        self.0.get(response_id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    response_id: String,
    score: f64,
}

/// The response id and score of a feedback body.
fn parse(body: &[u8]) -> Result<(String, f64), GatewayError> {
    let b: Body = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(
            format!(
                "expected {{\"response_id\": \"<the answer's id>\", \"score\": <0 to 1>}}: {e}"
            ),
            None,
        )
    })?;
    if b.response_id.is_empty() || b.response_id.len() > 256 {
        return Err(GatewayError::invalid(
            "`response_id` must be the id of an answer (1 to 256 characters)",
            Some("response_id"),
        ));
    }
    if !(b.score.is_finite() && (0.0..=1.0).contains(&b.score)) {
        return Err(GatewayError::invalid(
            format!("`score` must be a number from 0 to 1, found {}", b.score),
            Some("score"),
        ));
    }
    Ok((b.response_id, b.score))
}

/// Serves one feedback request of `key`.
pub async fn serve(
    state: &AppState,
    ds: &mut ServerSession,
    ctx: &mut RequestCtx,
    key: &KeyEntry,
) -> Result<Delivered, Rejection> {
    let deadline = tokio::time::Instant::now()
        + ctx
            .policy
            .as_ref()
            .map_or(Duration::from_secs(30), |p| p.server.body_timeout);
    let body = crate::handler::read_body(ds, MAX_BODY, deadline).await?;
    let (response_id, score) = parse(&body).map_err(Rejection::Error)?;
    // A Responses-face answer's id is `resp_` + the chat answer's id it is recorded under.
    let answered = state
        .answers
        .find(&response_id)
        .or_else(|| {
            response_id
                .strip_prefix("resp_")
                .and_then(|id| state.answers.find(id))
        })
        .filter(|a| a.tenant == key.tenant)
        .ok_or_else(|| Rejection::Error(GatewayError::UnknownResponse(response_id.clone())))?;
    let counted = state.slo_events.offer(SloEvent::Quality(QualitySample {
        route: Arc::clone(&answered.route),
        target: answered.target.clone(),
        score,
    }));
    let out = serde_json::json!({
        "object": "feedback",
        "response_id": response_id,
        "route": &*answered.route,
        "score": score,
        "counted": counted,
    });
    if respond::write_json(ds, ctx, 200, Bytes::from(out.to_string()), &[]).await {
        ctx.end_ok(200);
        Ok(Delivered::Complete)
    } else {
        ctx.end_cancelled();
        Ok(Delivered::ClientGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        assert_eq!(
            parse(br#"{"response_id":"chatcmpl-1","score":0.25}"#).expect("valid"),
            ("chatcmpl-1".to_owned(), 0.25)
        );
        for bad in [
            &br#"{"response_id":"x","score":1.5}"#[..],
            br#"{"response_id":"x","score":-0.1}"#,
            br#"{"response_id":"","score":0.5}"#,
            br#"{"response_id":"x"}"#,
            br#"{"response_id":"x","score":0.5,"extra":1}"#,
            b"not json",
        ] {
            let e = parse(bad).expect_err("refused");
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn answers_are_found_by_id() {
        let index = AnswerIndex::new();
        let a = Answered {
            route: Arc::from("chat"),
            target: None,
            tenant: Arc::from("acme"),
        };
        index.remember("chatcmpl-1".into(), a.clone());
        assert_eq!(index.find("chatcmpl-1").as_deref(), Some(&a));
        assert!(index.find("chatcmpl-2").is_none());
    }
}
