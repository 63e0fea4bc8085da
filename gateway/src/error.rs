//! The gateway's one error enum and its mapping to HTTP status and OpenAI error JSON.
//!
//! Every failure a client can see is one of these variants; [`GatewayError::status`] is the one
//! table of status codes and [`GatewayError::to_json`] the one renderer. Messages never carry
//! secrets: provider keys and virtual keys are not available to this module at all.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use sluice_observability::{ErrorKind, Outcome};
use sluice_policy::LimitKind;

/// A duration as people write it: whole milliseconds under a second (`300ms`, not the
/// `299.99ms` a deadline taken a moment after the start gives), else seconds to a tenth
/// (`1.5s`, `30s`).
pub fn human(d: Duration) -> impl std::fmt::Display {
    struct Human(u128);
    impl std::fmt::Display for Human {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let ms = self.0;
            if ms < 1000 {
                write!(f, "{ms}ms")
            } else if ms % 1000 < 50 || ms % 1000 >= 950 {
                write!(f, "{}s", (ms + 500) / 1000)
            } else {
                write!(f, "{}.{}s", ms / 1000, (ms % 1000 + 50) / 100)
            }
        }
    }
    Human((d.as_micros() + 500) / 1000)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("missing API key: send `Authorization: Bearer <your Sluice key>`")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    #[error("this API key has expired")]
    ExpiredKey,
    #[error(
        "tenant `{tenant}` has used its {} budget of ${limit_usd:.2} (spent ${spent_usd:.2}); it resets at the start of the next UTC {}",
        period.adjective(), period.as_str()
    )]
    OverBudget {
        tenant: String,
        period: sluice_policy::spend::Period,
        limit_usd: f64,
        spent_usd: f64,
    },
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
    },
    #[error("request body is {size} bytes or more; the limit is {limit} bytes")]
    BodyTooLarge { size: u64, limit: u64 },
    #[error("the model `{0}` does not exist or you do not have access to it")]
    UnknownModel(String),
    #[error(
        "no answer with id `{0}` is known to this key (answers can be scored for a day, on routes with a `judge_score_at_least` SLO)"
    )]
    UnknownResponse(String),
    #[error("unknown endpoint {method} {path}")]
    UnknownEndpoint { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the provider for `{model}` is rate limited; retry after {}", human(*retry_after))]
    RateLimited {
        model: String,
        retry_after: Duration,
    },
    #[error(
        "rate limit reached for this key: {limit} {} per minute; try again in {retry_after:.1?}",
        kind.as_str()
    )]
    LimitExceeded {
        kind: LimitKind,
        limit: u64,
        retry_after: Duration,
    },
    #[error("every provider for `{model}` failed; the last said: {detail}")]
    UpstreamFailed {
        model: String,
        status: u16,
        detail: String,
    },
    #[error("no provider for `{model}` is available: {detail}")]
    Unavailable { model: String, detail: String },
    #[error("the provider for `{model}` did not answer within {}", human(*after))]
    Timeout { model: String, after: Duration },
    #[error("the stream from the provider for `{model}` broke off: {detail}")]
    StreamInterrupted { model: String, detail: String },
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the gateway is shutting down; retry the request")]
    Draining,
    #[error("the route is shedding load from lower-priority keys; retry after {}", human(*retry_after))]
    Shed { retry_after: Duration },
    #[error(
        "limits and budgets cannot be checked right now (the shared state store is unreachable); retry shortly"
    )]
    StateUnavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// Every attempt failed at the providers (not the client's doing, nor Sluice's): what a
    /// stale cache answer may stand in for.
    pub fn is_provider_failure(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::UpstreamFailed { .. }
                | Self::Unavailable { .. }
                | Self::Timeout { .. }
        )
    }

    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param,
        }
    }

    /// The one table of status codes. The OpenAI SDKs pick their exception type from it.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingKey | Self::InvalidKey | Self::ExpiredKey => 401,
            Self::OverBudget { .. } => 429,
            Self::InvalidRequest { .. } => 400,
            Self::BodyTooLarge { .. } => 413,
            Self::UnknownModel(_) | Self::UnknownResponse(_) | Self::UnknownEndpoint { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::RateLimited { .. } | Self::LimitExceeded { .. } => 429,
            Self::UpstreamFailed { status, .. } => *status,
            Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::StreamInterrupted { .. } => 502,
            Self::BodyTimeout => 408,
            Self::Draining | Self::Shed { .. } | Self::StateUnavailable => 503,
            Self::Internal(_) => 500,
        }
    }

    /// OpenAI's `error.type`.
    pub fn openai_type(&self) -> &'static str {
        match self {
            Self::MissingKey | Self::InvalidKey | Self::ExpiredKey => "authentication_error",
            Self::OverBudget { .. } => "insufficient_quota",
            Self::InvalidRequest { .. }
            | Self::BodyTooLarge { .. }
            | Self::UnknownModel(_)
            | Self::UnknownResponse(_)
            | Self::UnknownEndpoint { .. }
            | Self::MethodNotAllowed { .. }
            | Self::BodyTimeout => "invalid_request_error",
            Self::RateLimited { .. } => "rate_limit_error",
            // OpenAI names the exhausted limit here (`requests` or `tokens`).
            Self::LimitExceeded { kind, .. } => kind.as_str(),
            Self::UpstreamFailed { .. }
            | Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::StreamInterrupted { .. }
            | Self::Draining
            | Self::Shed { .. }
            | Self::StateUnavailable
            | Self::Internal(_) => "server_error",
        }
    }

    /// OpenAI's `error.code`: stable strings, documented in docs/errors.md. The same word as
    /// the error's metric label, so a client's report and a dashboard name the same thing.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::InvalidRequest { param, .. } => *param,
            Self::UnknownModel(_) => Some("model"),
            Self::UnknownResponse(_) => Some("response_id"),
            _ => None,
        }
    }

    /// The bounded error label this error records under (`error.type`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingKey => ErrorKind::MissingApiKey,
            Self::InvalidKey => ErrorKind::InvalidApiKey,
            Self::ExpiredKey => ErrorKind::ExpiredApiKey,
            Self::OverBudget { .. } => ErrorKind::InsufficientQuota,
            Self::InvalidRequest { .. } => ErrorKind::InvalidRequest,
            Self::BodyTooLarge { .. } => ErrorKind::RequestTooLarge,
            Self::UnknownModel(_) => ErrorKind::ModelNotFound,
            Self::UnknownResponse(_) => ErrorKind::ResponseNotFound,
            Self::UnknownEndpoint { .. } => ErrorKind::UnknownUrl,
            Self::MethodNotAllowed { .. } => ErrorKind::MethodNotAllowed,
            Self::RateLimited { .. } | Self::LimitExceeded { .. } => ErrorKind::RateLimitExceeded,
            Self::UpstreamFailed { .. } => ErrorKind::UpstreamError,
            Self::Unavailable { .. } => ErrorKind::ProviderUnavailable,
            Self::Timeout { .. } => ErrorKind::UpstreamTimeout,
            Self::StreamInterrupted { .. } => ErrorKind::StreamInterrupted,
            Self::BodyTimeout => ErrorKind::RequestTimeout,
            Self::Draining => ErrorKind::Draining,
            Self::Shed { .. } => ErrorKind::LoadShed,
            Self::StateUnavailable => ErrorKind::StateUnavailable,
            Self::Internal(_) => ErrorKind::InternalError,
        }
    }

    /// The outcome label this error records under.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::MissingKey
            | Self::InvalidKey
            | Self::ExpiredKey
            | Self::OverBudget { .. }
            | Self::InvalidRequest { .. }
            | Self::BodyTooLarge { .. }
            | Self::UnknownModel(_)
            | Self::UnknownResponse(_)
            | Self::UnknownEndpoint { .. }
            | Self::MethodNotAllowed { .. }
            | Self::LimitExceeded { .. }
            | Self::BodyTimeout => Outcome::ClientError,
            Self::RateLimited { .. } | Self::UpstreamFailed { .. } => Outcome::UpstreamError,
            Self::Timeout { .. } => Outcome::Timeout,
            Self::StreamInterrupted { .. } => Outcome::Truncated,
            Self::Unavailable { .. }
            | Self::Draining
            | Self::Shed { .. }
            | Self::StateUnavailable
            | Self::Internal(_) => Outcome::GatewayError,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::LimitExceeded { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Draining | Self::StateUnavailable => Some(Duration::from_secs(1)),
            Self::Shed { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// `{"error":{"message","type","param","code"}}`.
    pub fn to_json(&self) -> Bytes {
        let mut message = String::with_capacity(96);
        // Display cannot fail into a String.
        let _ = write!(message, "{self}");
        let body = serde_json::json!({
            "error": {
                "message": message,
                "type": self.openai_type(),
                "param": self.param(),
                "code": self.code(),
            }
        });
        Bytes::from(body.to_string())
    }

    /// The same error as a final SSE event, for failures after a stream has started.
    pub fn to_sse_event(&self) -> Bytes {
        let json = self.to_json();
        let mut out = Vec::with_capacity(json.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&json);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        for (micros, want) in [
            (299_990, "300ms"),
            (1_200, "1ms"),
            (0, "0ms"),
            (999_400, "999ms"),
            (999_600, "1s"),
            (1_040_000, "1s"),
            (1_500_000, "1.5s"),
            (1_949_000, "1.9s"),
            (1_960_000, "2s"),
            (30_000_000, "30s"),
        ] {
            assert_eq!(
                human(Duration::from_micros(micros)).to_string(),
                want,
                "{micros}µs"
            );
        }
        let e = GatewayError::Timeout {
            model: "m".into(),
            after: Duration::from_micros(299_990),
        };
        assert_eq!(
            e.to_string(),
            "the provider for `m` did not answer within 300ms"
        );
    }

    #[test]
    fn renders_openai_error_json_exactly() {
        let e = GatewayError::UnknownModel("gpt-9".into());
        assert_eq!(e.status(), 404);
        assert_eq!(
            std::str::from_utf8(&e.to_json()).expect("utf8"),
            r#"{"error":{"code":"model_not_found","message":"the model `gpt-9` does not exist or you do not have access to it","param":"model","type":"invalid_request_error"}}"#
        );
        let e = GatewayError::invalid("`messages` must be a non-empty array", Some("messages"));
        assert_eq!(e.status(), 400);
        assert!(
            std::str::from_utf8(&e.to_sse_event())
                .expect("utf8")
                .starts_with("data: {\"error\"")
        );
    }

    #[test]
    fn status_table() {
        let d = Duration::from_secs(1);
        assert_eq!(GatewayError::MissingKey.status(), 401);
        assert_eq!(
            GatewayError::BodyTooLarge { size: 2, limit: 1 }.status(),
            413
        );
        assert_eq!(
            GatewayError::RateLimited {
                model: "m".into(),
                retry_after: d
            }
            .status(),
            429
        );
        assert_eq!(
            GatewayError::Timeout {
                model: "m".into(),
                after: d
            }
            .status(),
            504
        );
        assert_eq!(
            GatewayError::Unavailable {
                model: "m".into(),
                detail: "x".into()
            }
            .status(),
            503
        );
    }
}
