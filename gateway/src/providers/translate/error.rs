//! Provider errors → OpenAI's error shape, the status a client should see, and whether another
//! attempt can help.
//!
//! Each provider names its errors its own way (Anthropic `error.type`, Google `error.status`,
//! AWS `x-amzn-ErrorType`, Azure OpenAI's `error.code`); each is first mapped to one
//! [`ErrorClass`], and the class alone decides the client status, OpenAI `type`/`code` and
//! retryability (one table, [`ErrorClass::client`]). The provider's HTTP status is only the
//! fallback when its body names nothing known.
//!
//! Statuses follow the exchange's existing rules: a provider rejecting *Sluice's* credentials
//! (or not knowing the configured model) is the gateway's problem, never the client's, so it is
//! a 502 and worth another target; overload and unavailability are 503 (Anthropic's 529 has no
//! meaning to OpenAI clients); quota and rate limits stay 429 so the SDKs back off.
//! `retryable` means *another attempt may succeed* (the same target after `retry_after`, or a
//! fallback); [`ErrorClass::QuotaExceeded`] is retryable only elsewhere, which is why the class
//! is reported too.
//!
//! Messages quote the provider's own message, never a request header: credentials are not
//! available here. (A provider could still echo a key inside its message; the exchange's
//! redaction of provider text applies to these bodies too.)

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::{HeaderSource, Kind};

/// What went wrong, in terms that decide what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is wrong for this provider (400).
    InvalidRequest,
    /// The prompt was refused by a content filter (400).
    ContentFilter,
    RequestTooLarge,
    /// The provider rejected Sluice's credentials.
    Authentication,
    PermissionDenied,
    /// The configured model or deployment does not exist there.
    NotFound,
    RateLimited,
    /// Spend limit, billing or quota exhausted: the same target will not recover soon.
    QuotaExceeded,
    /// The provider is overloaded (Anthropic 529).
    Overloaded,
    /// The provider says it is unavailable (503).
    Unavailable,
    ServerError,
    Timeout,
    /// The provider's answer could not be understood (bad JSON, bad frame, missing fields).
    BadResponse,
    /// The stream ended before its terminal event.
    Interrupted,
}

/// How a class is shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView {
    pub status: u16,
    pub openai_type: &'static str,
    pub code: &'static str,
    pub retryable: bool,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::ContentFilter => "content_filter",
            Self::RequestTooLarge => "request_too_large",
            Self::Authentication => "authentication",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::BadResponse => "bad_response",
            Self::Interrupted => "interrupted",
        }
    }

    /// The one table: status, OpenAI `type` and `code`, retryability.
    pub fn client(self) -> ClientView {
        let (status, openai_type, code, retryable) = match self {
            Self::InvalidRequest => (400, "invalid_request_error", "invalid_request", false),
            Self::ContentFilter => (400, "invalid_request_error", "content_filter", false),
            Self::RequestTooLarge => (413, "invalid_request_error", "request_too_large", false),
            Self::Authentication => (502, "server_error", "upstream_auth_error", true),
            Self::PermissionDenied => (502, "server_error", "upstream_permission_denied", true),
            Self::NotFound => (502, "server_error", "upstream_not_found", true),
            Self::RateLimited => (429, "rate_limit_error", "rate_limit_exceeded", true),
            Self::QuotaExceeded => (429, "insufficient_quota", "insufficient_quota", true),
            Self::Overloaded => (503, "server_error", "provider_overloaded", true),
            Self::Unavailable => (503, "server_error", "provider_unavailable", true),
            Self::ServerError => (502, "server_error", "upstream_error", true),
            Self::Timeout => (504, "server_error", "upstream_timeout", true),
            Self::BadResponse => (502, "server_error", "upstream_bad_response", true),
            Self::Interrupted => (502, "server_error", "stream_interrupted", true),
        };
        ClientView {
            status,
            openai_type,
            code,
            retryable,
        }
    }

    /// The class a bare HTTP status implies.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => Self::Authentication,
            402 => Self::QuotaExceeded,
            403 => Self::PermissionDenied,
            404 => Self::NotFound,
            408 | 504 => Self::Timeout,
            413 => Self::RequestTooLarge,
            429 => Self::RateLimited,
            503 => Self::Unavailable,
            529 => Self::Overloaded,
            409 | 500..=599 => Self::ServerError,
            _ => Self::InvalidRequest,
        }
    }
}

/// A provider failure, ready for the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} failed ({}): {message}", class.as_str(), kind = kind.as_str())]
pub struct ProviderError {
    pub kind: Kind,
    pub class: ErrorClass,
    /// The status to answer with (before the first byte; after it, the JSON goes out as the
    /// stream's last `data:` event).
    pub status_for_client: u16,
    /// `{"error":{"message","type","param","code"}}`.
    pub openai_error_json: Bytes,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// The provider's HTTP status, when the error came as one (not mid-stream).
    pub provider_status: Option<u16>,
    /// The provider's own name for the error (`overloaded_error`, `RESOURCE_EXHAUSTED`,
    /// `ThrottlingException`, …): for logs and spans, not for metric labels.
    pub provider_code: Option<String>,
    /// The message as sent in the JSON.
    pub message: String,
}

/// What one provider body said, before classification.
#[derive(Debug, Default)]
struct Parsed {
    code: Option<String>,
    message: Option<String>,
    class: Option<ErrorClass>,
    /// An OpenAI `code` more precise than the class's (e.g. `context_length_exceeded`).
    openai_code: Option<&'static str>,
    param: Option<String>,
    retry_after: Option<Duration>,
}

impl ProviderError {
    /// Builds the error and its JSON.
    pub fn new(
        kind: Kind,
        class: ErrorClass,
        provider_status: Option<u16>,
        provider_code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    ) -> Self {
        Self::build(
            kind,
            class,
            provider_status,
            provider_code,
            message,
            retry_after,
            None,
            None,
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one private constructor behind two public ones"
    )]
    fn build(
        kind: Kind,
        class: ErrorClass,
        provider_status: Option<u16>,
        provider_code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
        openai_code: Option<&'static str>,
        param: Option<String>,
    ) -> Self {
        let view = class.client();
        let json = serde_json::json!({
            "error": {
                "message": message,
                "type": view.openai_type,
                "param": param,
                "code": openai_code.unwrap_or(view.code),
            }
        });
        Self {
            kind,
            class,
            status_for_client: view.status,
            openai_error_json: Bytes::from(json.to_string()),
            retryable: view.retryable,
            retry_after,
            provider_status,
            provider_code,
            message,
        }
    }

    /// An answer Sluice could not understand.
    pub fn bad_response(kind: Kind, detail: impl std::fmt::Display) -> Self {
        Self::new(
            kind,
            ErrorClass::BadResponse,
            None,
            None,
            format!(
                "{} sent an answer Sluice could not read: {detail}",
                kind.as_str()
            ),
            None,
        )
    }

    /// A stream that stopped before its end.
    pub fn interrupted(kind: Kind, detail: impl std::fmt::Display) -> Self {
        Self::new(
            kind,
            ErrorClass::Interrupted,
            None,
            None,
            format!("the stream from {} broke off: {detail}", kind.as_str()),
            None,
        )
    }

    /// The same JSON as a complete SSE event.
    pub fn to_sse_event(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.openai_error_json.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.openai_error_json);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    fn from_parsed(kind: Kind, status: Option<u16>, p: Parsed) -> Self {
        let class = p
            .class
            .or_else(|| status.map(ErrorClass::from_status))
            .unwrap_or(ErrorClass::ServerError);
        let what = p.code.as_deref().unwrap_or("an error");
        let said = p.message.as_deref().unwrap_or("no message");
        let message = match status {
            Some(s) => format!("{} answered {s} ({what}): {said}", kind.as_str()),
            None => format!("{} reported {what}: {said}", kind.as_str()),
        };
        Self::build(
            kind,
            class,
            status,
            p.code,
            message,
            p.retry_after,
            p.openai_code,
            p.param,
        )
    }
}

/// Classifies a non-2xx answer.
pub fn error(
    kind: Kind,
    status: u16,
    headers: &(impl HeaderSource + ?Sized),
    body: &[u8],
) -> ProviderError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let mut parsed = match kind {
        Kind::Anthropic => anthropic(json.as_ref()),
        Kind::Gemini | Kind::Vertex => google(json.as_ref()),
        Kind::AzureOpenAi => azure(json.as_ref(), Some(status)),
        Kind::Bedrock => {
            let name = headers
                .header("x-amzn-errortype")
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(|v| v.split(':').next().unwrap_or(v).to_owned());
            bedrock(name, json.as_ref())
        }
    };
    if parsed.retry_after.is_none() {
        parsed.retry_after = retry_after_header(headers);
    }
    if parsed.class.is_none() && parsed.message.is_none() && !body.is_empty() {
        // Not the provider's error shape (a proxy's HTML page, say): quote a bounded prefix.
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        parsed.message = Some(text);
    }
    ProviderError::from_parsed(kind, Some(status), parsed)
}

/// Classifies an error that arrived inside a 200 stream: Anthropic's `error` event, a Google
/// or Azure `{"error":…}` event, or a Bedrock exception frame (`name` = `:exception-type`).
pub fn stream_error(kind: Kind, name: Option<&str>, payload: &[u8]) -> ProviderError {
    let json: Option<Value> = serde_json::from_slice(payload).ok();
    let parsed = match kind {
        Kind::Anthropic => anthropic(json.as_ref()),
        Kind::Gemini | Kind::Vertex => google(json.as_ref()),
        Kind::AzureOpenAi => azure(json.as_ref(), None),
        Kind::Bedrock => bedrock(name.map(str::to_owned), json.as_ref()),
    };
    ProviderError::from_parsed(kind, None, parsed)
}

/// `retry-after-ms` (Azure), else `retry-after` in seconds. HTTP dates are not used by these
/// providers and would need a clock, so they are ignored.
pub fn retry_after_header(headers: &(impl HeaderSource + ?Sized)) -> Option<Duration> {
    let text = |name| {
        headers
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    text("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

fn str_at<'a>(v: Option<&'a Value>, pointer: &str) -> Option<&'a str> {
    v.and_then(|v| v.pointer(pointer)).and_then(Value::as_str)
}

fn context_length(message: Option<&str>) -> Option<&'static str> {
    let m = message?.to_ascii_lowercase();
    [
        "prompt is too long",
        "input is too long",
        "too many input tokens",
        "exceeds the maximum number of tokens",
        "context length",
        "context window",
    ]
    .iter()
    .any(|p| m.contains(p))
    .then_some("context_length_exceeded")
}

/// `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`.
fn anthropic(json: Option<&Value>) -> Parsed {
    let code = str_at(json, "/error/type").map(str::to_owned);
    let message = str_at(json, "/error/message").map(str::to_owned);
    let spend_limit =
        str_at(json, "/error/details/error_code") == Some("enforced_spend_limit_reached");
    let class = code.as_deref().and_then(|t| {
        Some(match t {
            "invalid_request_error" => ErrorClass::InvalidRequest,
            "authentication_error" => ErrorClass::Authentication,
            "permission_error" => ErrorClass::PermissionDenied,
            "not_found_error" => ErrorClass::NotFound,
            "billing_error" => ErrorClass::QuotaExceeded,
            "rate_limit_error" if spend_limit => ErrorClass::QuotaExceeded,
            "rate_limit_error" => ErrorClass::RateLimited,
            "request_too_large" => ErrorClass::RequestTooLarge,
            "overloaded_error" => ErrorClass::Overloaded,
            "timeout_error" => ErrorClass::Timeout,
            "api_error" | "conflict_error" => ErrorClass::ServerError,
            _ => return None,
        })
    });
    Parsed {
        openai_code: (class == Some(ErrorClass::InvalidRequest))
            .then(|| context_length(message.as_deref()))
            .flatten(),
        code,
        message,
        class,
        ..Parsed::default()
    }
}

/// A `google.rpc.Status`: `{"error":{"code":429,"message":…,"status":"RESOURCE_EXHAUSTED",
/// "details":[…]}}`. The stream endpoint without `alt=sse` wraps it in an array.
fn google(json: Option<&Value>) -> Parsed {
    let json = match json {
        Some(Value::Array(items)) => items.first(),
        other => other,
    };
    let code = str_at(json, "/error/status").map(str::to_owned);
    let message = str_at(json, "/error/message").map(str::to_owned);
    let details = json
        .and_then(|v| v.pointer("/error/details"))
        .and_then(Value::as_array);
    let detail_of = |suffix: &str| {
        details.and_then(|d| {
            d.iter().find(|x| {
                x.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with(suffix))
            })
        })
    };
    let reason = detail_of("google.rpc.ErrorInfo")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    let retry_after = detail_of("google.rpc.RetryInfo")
        .and_then(|d| d.get("retryDelay"))
        .and_then(Value::as_str)
        .and_then(parse_google_duration);
    let class = code.as_deref().and_then(|s| {
        Some(match s {
            _ if reason == Some("API_KEY_INVALID") => ErrorClass::Authentication,
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
                ErrorClass::InvalidRequest
            }
            "UNAUTHENTICATED" => ErrorClass::Authentication,
            "PERMISSION_DENIED" => ErrorClass::PermissionDenied,
            "NOT_FOUND" => ErrorClass::NotFound,
            "RESOURCE_EXHAUSTED" => ErrorClass::RateLimited,
            "UNAVAILABLE" => ErrorClass::Unavailable,
            "DEADLINE_EXCEEDED" => ErrorClass::Timeout,
            "INTERNAL" | "UNKNOWN" | "ABORTED" | "CANCELLED" | "DATA_LOSS" => {
                ErrorClass::ServerError
            }
            _ => return None,
        })
    });
    Parsed {
        openai_code: (class == Some(ErrorClass::InvalidRequest))
            .then(|| context_length(message.as_deref()))
            .flatten(),
        code,
        message,
        class,
        retry_after,
        ..Parsed::default()
    }
}

/// A protobuf `Duration` in JSON: `"30s"`, `"57.238747106s"`.
fn parse_google_duration(s: &str) -> Option<Duration> {
    s.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

/// Azure OpenAI answers in OpenAI's own shape, plus `innererror` for content filtering.
fn azure(json: Option<&Value>, status: Option<u16>) -> Parsed {
    let code = str_at(json, "/error/code").map(str::to_owned);
    let message = str_at(json, "/error/message").map(str::to_owned);
    let inner = str_at(json, "/error/innererror/code");
    let class = match (code.as_deref(), inner) {
        (Some("content_filter"), _) | (_, Some("ResponsibleAIPolicyViolation")) => {
            Some(ErrorClass::ContentFilter)
        }
        (Some("DeploymentNotFound"), _) => Some(ErrorClass::NotFound),
        (Some("insufficient_quota"), _) => Some(ErrorClass::QuotaExceeded),
        // Azure names some errors by their status (`"code":"429"`), also inside streams.
        (Some(c), _) => c.parse::<u16>().ok().map(ErrorClass::from_status),
        _ => None,
    };
    // A 400 keeps OpenAI's own code and param (`context_length_exceeded`, `messages`, …):
    // clients match on them, and Azure speaks the same language.
    let own_code = match code.as_deref() {
        Some("context_length_exceeded") => Some("context_length_exceeded"),
        Some("invalid_prompt") => Some("invalid_prompt"),
        _ => None,
    };
    Parsed {
        param: (status == Some(400))
            .then(|| str_at(json, "/error/param").map(str::to_owned))
            .flatten(),
        openai_code: own_code,
        code,
        message,
        class,
        ..Parsed::default()
    }
}

/// `x-amzn-ErrorType: ThrottlingException:http://…` with `{"message":"…"}`; exception frames
/// name it in `:exception-type` with the same payload.
fn bedrock(name: Option<String>, json: Option<&Value>) -> Parsed {
    let message = str_at(json, "/message")
        .or_else(|| str_at(json, "/Message"))
        .map(str::to_owned);
    let class = name.as_deref().and_then(|n| {
        // Stream exception members are camelCase (`throttlingException`).
        let n = n.strip_suffix("Exception").unwrap_or(n);
        Some(match n.to_ascii_lowercase().as_str() {
            "throttling" | "modelnotready" | "servicequotaexceeded" | "toomanyrequests" => {
                ErrorClass::RateLimited
            }
            "serviceunavailable" => ErrorClass::Unavailable,
            "internalserver" | "modelerror" | "modelstreamerror" => ErrorClass::ServerError,
            "modeltimeout" => ErrorClass::Timeout,
            "validation" => ErrorClass::InvalidRequest,
            "accessdenied" => ErrorClass::PermissionDenied,
            "resourcenotfound" => ErrorClass::NotFound,
            "unrecognizedclient" | "invalidsignature" | "expiredtoken" => {
                ErrorClass::Authentication
            }
            _ => return None,
        })
    });
    Parsed {
        openai_code: (class == Some(ErrorClass::InvalidRequest))
            .then(|| context_length(message.as_deref()))
            .flatten(),
        code: name,
        message,
        class,
        ..Parsed::default()
    }
}
