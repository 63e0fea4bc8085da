//! Sluice's telemetry: every metric the gateway exports, defined in one file
//! ([`metrics`]), and the per-request [`RequestRecord`] the gateway fills while serving and
//! hands over once, at the end of the request.
//!
//! Owns: metric names, help texts, label sets (closed sets only: configured routes, catalog
//! models, declared tenants, fixed enums; never a key, user id or prompt), token counting and
//! cost, recording a finished request, spans and their OTLP wire encoding ([`otlp`]), the SLO
//! engine ([`slo`]: windows, burn rates, budgets, snapshots, Prometheus rules) and the AIOps
//! engine ([`aiops`]: learned baselines, anomalies, alert grouping, root-cause hints). Does
//! not own: pingora, sockets, or deciding what happened to a request.

pub mod aiops;
pub mod cost;
pub mod destination;
pub mod enrich;
mod error;
pub mod export;
pub mod logs;
pub mod metrics;
pub mod otlp;
mod record;
pub mod redact;
pub mod sampler;
pub mod semconv;
pub mod service;
pub mod slo;
pub mod spans;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod tokens;

pub use error::Error;
pub use export::{ExportCounters, Extras, SpanPipeline, SpanPolicy, SpanSink};
pub use metrics::Metrics;
pub use record::{
    AttemptOutcome, AttemptRecord, CapturedContent, Endpoint, ErrorKind, MAX_TOOL_CALL_IDS,
    Outcome, RequestParams, RequestRecord, RouteDecision, TokenUsage, ToolCall, TraceContext,
    UsageSource,
};
pub use redact::Redactor;
pub use sampler::{Flags, KeepReason, TailSampler};
