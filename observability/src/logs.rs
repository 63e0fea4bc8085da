//! The access-log record as an OTLP log record: the same line standard output gets (as the
//! body), with the request's trace and server-span ids so a log store links it to its trace,
//! and the fields a log query filters on as attributes.

use std::sync::LazyLock;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLogger, SdkLoggerProvider};

use crate::record::RequestRecord;
use crate::semconv as sc;

/// The event name of an access-log record.
pub const ACCESS_EVENT: &str = "sluice.access";
/// The event name of an incident event's record.
pub const INCIDENT_EVENT: &str = "sluice.incident";
/// Attributes of an incident event's record.
pub const INCIDENT_ID: &str = "sluice.incident.id";
pub const INCIDENT_EVENT_KIND: &str = "sluice.incident.event";
pub const INCIDENT_ACTION: &str = "sluice.incident.action";
pub const INCIDENT_RULE: &str = "sluice.incident.rule";
pub const INCIDENT_DRY_RUN: &str = "sluice.incident.dry_run";

/// One step of an incident, as its log record says it. The gateway builds it from the
/// remediation engine's event; `line` is that event as written to `incidents.jsonl`.
#[derive(Debug, Clone, Copy)]
pub struct IncidentLog<'a> {
    pub at: std::time::SystemTime,
    pub incident: u64,
    pub route: &'a str,
    pub rule: &'a str,
    pub action: &'a str,
    /// `opened`, `action_taken`, `probe_result`, `reverted`, `resolved`, …
    pub event: &'a str,
    pub dry_run: bool,
    pub line: &'a str,
}

/// Log records can only be made by a logger; this one has no processor (Sluice exports the
/// records itself, per destination).
static LOGGER: LazyLock<SdkLogger> =
    LazyLock::new(|| SdkLoggerProvider::builder().build().logger("sluice"));

pub(crate) static SCOPE: LazyLock<InstrumentationScope> = LazyLock::new(|| {
    InstrumentationScope::builder(sc::SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
});

/// The log record of a finished request. `line` is its access-log line (JSON, no newline),
/// when one was written; `extra` are the tenant's attributes.
pub fn access_record(r: &RequestRecord, line: Option<&str>, extra: &[KeyValue]) -> SdkLogRecord {
    let mut rec = LOGGER.create_log_record();
    let end = r.start + r.duration;
    rec.set_event_name(ACCESS_EVENT);
    rec.set_timestamp(end);
    rec.set_observed_timestamp(end);
    let (severity, text) = severity(r);
    rec.set_severity_number(severity);
    rec.set_severity_text(text);
    let body = line.map_or_else(
        || {
            format!(
                "{} {} {}",
                r.endpoint.as_str(),
                r.status,
                r.outcome.as_str()
            )
        },
        str::to_owned,
    );
    rec.set_body(AnyValue::from(body));
    rec.set_trace_context(
        TraceId::from_bytes(r.trace.trace_id),
        SpanId::from_bytes(r.trace.span_id),
        Some(TraceFlags::SAMPLED),
    );
    rec.add_attribute(sc::SLUICE_REQUEST_ID, r.request_id.clone());
    rec.add_attribute(sc::SLUICE_OUTCOME, r.outcome.as_str());
    rec.add_attribute(sc::HTTP_RESPONSE_STATUS_CODE, i64::from(r.status));
    if let Some(route) = &r.route {
        rec.add_attribute(sc::SLUICE_ROUTE, route.to_string());
    }
    if let Some(tenant) = &r.tenant {
        rec.add_attribute(sc::SLUICE_TENANT, tenant.to_string());
    }
    if let Some(model) = &r.request_model {
        rec.add_attribute(sc::GEN_AI_REQUEST_MODEL, model.clone());
    }
    if let Some(id) = &r.params.conversation_id {
        rec.add_attribute(sc::GEN_AI_CONVERSATION_ID, id.clone());
    }
    for kv in extra {
        rec.add_attribute(kv.key.clone(), AnyValue::from(kv.value.to_string()));
    }
    rec
}

/// The log record of an incident event: no trace (an incident is about many requests), the
/// incident log's JSON line as the body, WARN while it opens or acts, INFO as it eases.
pub fn incident_record(e: &IncidentLog<'_>) -> SdkLogRecord {
    let mut rec = LOGGER.create_log_record();
    rec.set_event_name(INCIDENT_EVENT);
    rec.set_timestamp(e.at);
    rec.set_observed_timestamp(e.at);
    let (severity, text) = match e.event {
        "opened" | "action_taken" | "blocked" | "reverted" => (Severity::Warn, "WARN"),
        _ => (Severity::Info, "INFO"),
    };
    rec.set_severity_number(severity);
    rec.set_severity_text(text);
    rec.set_body(AnyValue::from(e.line.to_owned()));
    rec.add_attribute(INCIDENT_ID, i64::try_from(e.incident).unwrap_or(i64::MAX));
    rec.add_attribute(INCIDENT_EVENT_KIND, e.event.to_owned());
    rec.add_attribute(INCIDENT_ACTION, e.action.to_owned());
    rec.add_attribute(INCIDENT_RULE, e.rule.to_owned());
    rec.add_attribute(INCIDENT_DRY_RUN, e.dry_run);
    rec.add_attribute(sc::SLUICE_ROUTE, e.route.to_owned());
    rec
}

/// ERROR for the failures an operator acts on, WARN for the caller's mistakes, INFO else.
fn severity(r: &RequestRecord) -> (Severity, &'static str) {
    if r.is_error() {
        (Severity::Error, "ERROR")
    } else if r.status >= 400 {
        (Severity::Warn, "WARN")
    } else {
        (Severity::Info, "INFO")
    }
}
