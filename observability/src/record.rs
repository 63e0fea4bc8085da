//! What one request did, as the gateway saw it; recorded once at the end.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// The API surface a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
    Other,
}

/// How a request ended. A closed set, so it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered in full.
    Ok,
    /// The client's request was wrong (400, 401, 404, 405, 413).
    ClientError,
    /// Every attempt failed at the providers (429, 5xx, garbage) before any byte was sent.
    UpstreamError,
    /// A timeout (time to first byte, idle or total) ended the request.
    Timeout,
    /// The stream broke after it started: the client got an SSE error event.
    Truncated,
    /// The client went away before the answer was complete.
    Cancelled,
    /// Sluice itself could not serve it (no key for the provider, internal error).
    GatewayError,
}

/// The end-of-request summary. `route` and `model` are `None` when the request never
/// got that far; they are the policy's own names, so label values stay a closed set.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub endpoint: Endpoint,
    pub route: Option<Arc<str>>,
    pub model: Option<Arc<str>>,
    pub stream: bool,
    pub status: u16,
    pub outcome: Outcome,
    pub attempts: u32,
    pub duration: Duration,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Models => "models",
            Self::Other => "other",
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::Truncated => "truncated",
            Self::Cancelled => "cancelled",
            Self::GatewayError => "gateway_error",
        }
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}
