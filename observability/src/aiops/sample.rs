//! What the engine ingests per request: a compact sample the recorder builds from a
//! [`RequestRecord`] (cheap: `Arc` clones and copies, no allocation).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};
use sluice_policy::remediation::TargetKey;

use crate::record::{Endpoint, ErrorKind, RequestRecord};
use crate::slo::ErrorClass;

/// Why a request failed, as the root-cause hint names it: the provider's HTTP status when one
/// came back (`529`), else Sluice's own error kind (`upstream_timeout`). A bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCause {
    Status(u16),
    Kind(ErrorKind),
}

/// One finished request, as the AIOps engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AiopsSample {
    pub route: Arc<str>,
    /// The target that answered (or was tried last); `None` when none was reached.
    pub target: Option<TargetKey>,
    pub tenant: Option<Arc<str>>,
    pub endpoint: Endpoint,
    /// As the SLO engine classifies it: excluded requests (client errors, cancels) count for
    /// spend only.
    pub class: ErrorClass,
    /// Why it failed, for failed requests.
    pub error: Option<ErrorCause>,
    /// Time to the first chunk, for streams that got one.
    pub ttft: Option<Duration>,
    pub duration: Duration,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// 0 when unknown.
    pub cost_usd: f64,
}

// === impl ErrorCause ===

impl ErrorCause {
    /// The last attempt's HTTP status when it was an error (4xx/5xx), else the record's
    /// error kind; `None` for a request that did not fail.
    pub fn of(record: &RequestRecord) -> Option<Self> {
        let kind = record.error_type?;
        let status = record
            .attempts
            .last()
            .and_then(|a| a.status)
            .filter(|s| (400..600).contains(s));
        Some(status.map_or(Self::Kind(kind), Self::Status))
    }
}

/// `529`, `upstream_timeout`.
impl fmt::Display for ErrorCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "{s}"),
            Self::Kind(k) => f.write_str(k.as_str()),
        }
    }
}

impl Serialize for ErrorCause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// === impl AiopsSample ===

impl AiopsSample {
    /// The sample of a finished request, classed as the SLO engine classes it; `None` for a
    /// request that resolved no route (nothing to learn a baseline for).
    pub fn from_record(record: &RequestRecord, class: ErrorClass) -> Option<Self> {
        let route = Arc::clone(record.route.as_ref()?);
        let target = record.attempts.last().map(|a| TargetKey {
            provider: Arc::clone(&a.provider),
            model: Arc::clone(&a.model),
        });
        let usage = record.usage;
        Some(Self {
            route,
            target,
            tenant: record.tenant.clone(),
            endpoint: record.endpoint,
            class,
            error: if class == ErrorClass::Bad {
                ErrorCause::of(record)
            } else {
                None
            },
            ttft: record.time_to_first_chunk,
            duration: record.duration,
            input_tokens: usage.map_or(0, |u| u.input),
            output_tokens: usage.map_or(0, |u| u.output),
            cost_usd: record.cost_usd.unwrap_or(0.0),
        })
    }
}
