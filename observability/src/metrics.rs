//! The only place Sluice defines metrics. Registered once at start-up; handles are cheap to
//! clone and recording is lock-free after a label set's first use (histograms with exemplars
//! take their own short lock).
//!
//! Names follow the OpenTelemetry GenAI semantic conventions where the spec defines a metric
//! (`gen_ai.client.*`, with the spec's bucket boundaries) and `sluice_<noun>_<unit>` otherwise.
//! prometheus-client appends `_total` to counters and the unit suffix, so names here carry
//! neither.
//!
//! Labels only ever come from closed sets: the policy's route, model and tenant names, the
//! catalog's provider names and fixed enums. A requested model the policy does not know is
//! recorded as `other`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::record::{AttemptOutcome, Endpoint, ErrorKind, Outcome, RequestRecord, UsageSource};

/// Label value for a request that never resolved a route, model or tenant.
pub const NONE: &str = "none";

/// `gen_ai.client.operation.duration` boundaries from the GenAI semantic conventions.
const OPERATION_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.client.token.usage` boundaries from the GenAI semantic conventions.
const TOKEN_USAGE_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Time-to-first-chunk boundaries (the spec's `time_to_first_token` set).
const FIRST_CHUNK_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Time-per-output-chunk boundaries (the spec's `time_per_output_token` set).
const PER_CHUNK_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// Gateway overhead is micro- to milliseconds.
/// Judge scores: tenths, so a dashboard can read the share below any objective's threshold.
const JUDGE_SCORE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
const OVERHEAD_BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// The exemplar attached to histogram observations: the request's trace.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// Shared by the request's histograms: one string per request, not one per histogram.
    pub trace_id: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub gen_ai_operation_name: &'static str,
    pub gen_ai_provider_name: Arc<str>,
    pub gen_ai_request_model: Arc<str>,
    pub route: Arc<str>,
    /// Empty when the operation succeeded.
    pub error_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenUsageLabels {
    pub gen_ai_operation_name: &'static str,
    pub gen_ai_provider_name: Arc<str>,
    pub gen_ai_request_model: Arc<str>,
    pub route: Arc<str>,
    pub gen_ai_token_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub gen_ai_operation_name: &'static str,
    pub gen_ai_provider_name: Arc<str>,
    pub gen_ai_request_model: Arc<str>,
    pub route: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: Endpoint,
    pub route: Arc<str>,
    pub model: Arc<str>,
    pub tenant: Arc<str>,
    pub outcome: Outcome,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub route: Arc<str>,
    pub model: Arc<str>,
    pub tenant: Arc<str>,
    /// input | output | cached_input | cache_write_input | reasoning
    pub token_type: &'static str,
    pub usage_source: UsageSource,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    pub route: Arc<str>,
    pub model: Arc<str>,
    pub tenant: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    pub route: Arc<str>,
    pub tenant: Arc<str>,
    /// requests | tokens
    pub limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub route: Arc<str>,
    /// hit | miss | bypass
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub route: Arc<str>,
    pub provider: Arc<str>,
    pub model: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpendLabels {
    pub tenant: Arc<str>,
    /// day | month
    pub period: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabels {
    pub slo: Arc<str>,
    pub route: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloWindowLabels {
    pub slo: Arc<str>,
    pub route: Arc<str>,
    /// 5m | 30m | 1h | 6h | 1d | 3d | slo
    pub window: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloEventLabels {
    pub slo: Arc<str>,
    pub route: Arc<str>,
    /// true | false
    pub good: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemediationLabels {
    pub route: Arc<str>,
    /// failover | downgrade_to | cache_fallback | shed
    pub action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyLabels {
    /// ttft | time_per_output_token | duration | error_ratio | tokens_per_request | cost_per_minute
    pub signal: &'static str,
    /// `route chat`, `target chat/openai/gpt-4o` or `tenant search` (names from the policy;
    /// tenants past `aiops.max_tenants` are `tenant other`).
    pub scope: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyBandLabels {
    pub signal: &'static str,
    pub scope: Arc<str>,
    /// value (the signal over the detection window) | lower | centre | upper (the learned band)
    pub line: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IncidentEventLabels {
    /// failover | downgrade_to | cache_fallback | shed
    pub action: &'static str,
    /// opened | action_taken | blocked | probe_result | reverted | unwound | resolved
    pub event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    /// alertmanager | webhook
    pub sink: &'static str,
    /// sent | failed | dropped
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JudgeScoreLabels {
    pub route: Arc<str>,
    /// The rubric's name (built in or from the policy).
    pub rubric: Arc<str>,
    /// The catalog model that judged.
    pub model: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JudgeSampleLabels {
    pub route: Arc<str>,
    /// sampled | dropped | scored | invalid | failed | over_budget
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpanLabels {
    /// exported | dropped | failed
    pub result: &'static str,
}

/// One OTLP destination's export counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OtlpLabels {
    /// A configured destination's name (`otlp` for `telemetry.otlp`): a closed set.
    pub destination: Arc<str>,
    /// traces | logs
    pub signal: &'static str,
    /// exported | dropped | failed
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The background queue: `records` (finished requests on their way to metrics, the
    /// access log and spans), and more as services arrive.
    pub queue: &'static str,
}

/// How a policy reload ended. A closed set, so it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new policy serves.
    Applied,
    /// The file did not validate, or changed a restart-only setting; the old policy serves.
    Rejected,
    /// The file's policy is the one serving already.
    Unchanged,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::Unchanged => "unchanged",
        }
    }
}

impl prometheus_client::encoding::EncodeLabelValue for ReloadResult {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Why the data plane turned a client away before its request was served. A closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusedReason {
    /// The request head did not arrive within `server.header_timeout` (408).
    HeaderTimeout,
    /// The request head was over `server.max_header_bytes` (431).
    HeaderTooLarge,
    /// The body did not arrive within `server.body_timeout` (408).
    BodyTimeout,
    /// Over `server.max_connections` (503).
    MaxConnections,
    /// Sluice is shutting down (503).
    Draining,
}

impl RefusedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::MaxConnections => "max_connections",
            Self::Draining => "draining",
        }
    }
}

impl prometheus_client::encoding::EncodeLabelValue for RefusedReason {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: RefusedReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

type Exemplified = HistogramWithExemplars<TraceExemplar>;

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `gen_ai.client.operation.duration`: whole LLM operations as the client sees them.
    pub operation_duration: Family<OperationLabels, Exemplified, fn() -> Exemplified>,
    /// `gen_ai.client.token.usage`: tokens per operation, by token type (input | output).
    pub token_usage: Family<TokenUsageLabels, Histogram, fn() -> Histogram>,
    /// `gen_ai.client.operation.time_to_first_chunk`: streams only.
    pub time_to_first_chunk: Family<StreamLabels, Exemplified, fn() -> Exemplified>,
    /// `gen_ai.client.operation.time_per_output_chunk`: streams only.
    pub time_per_output_chunk: Family<StreamLabels, Histogram, fn() -> Histogram>,
    /// Every finished request, LLM or not.
    pub requests: Family<RequestLabels, Counter>,
    /// `sluice_usage_tokens_total`: tokens by type and by where the count came from.
    pub tokens: Family<TokenLabels, Counter>,
    /// Spend in US dollars from the catalog's prices.
    pub cost: Family<CostLabels, Counter<f64, AtomicU64>>,
    /// Request time minus time spent waiting on providers.
    pub overhead: Family<RouteLabels, Exemplified, fn() -> Exemplified>,
    /// Upstream attempts by outcome.
    pub upstream_attempts: Family<AttemptLabels, Counter>,
    /// Requests refused by their key's own rate limits (provider 429s are attempt outcomes).
    pub ratelimited: Family<RateLimitLabels, Counter>,
    /// Requests on routes with a response cache, by what the cache did.
    pub cache_requests: Family<CacheLabels, Counter>,
    /// Spans handed to the exporter, dropped on a full queue, or lost to export errors.
    pub spans: Family<SpanLabels, Counter>,
    /// Spans and log records per OTLP destination: exported, dropped on its full queue, or
    /// lost to its export errors.
    pub otlp_export: Family<OtlpLabels, Counter>,
    /// Items a background service's queue refused because it was full.
    pub background_dropped: Family<QueueLabels, Counter>,
    /// Policy reloads by result.
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// The serving policy's generation: 1 at start, +1 per applied reload.
    pub policy_generation: Gauge,
    /// When the last reload of each result happened (Unix seconds).
    pub policy_last_reload: Family<ReloadLabels, Gauge<f64, AtomicU64>>,
    /// Clients turned away before their request was served, by reason.
    pub downstream_refused: Family<RefusedLabels, Counter>,
    /// Open data-plane connections.
    pub downstream_connections: Gauge,
    /// Access-log lines left out for requests without a valid key, over the per-second cap.
    pub access_log_suppressed: Counter,
    /// 1 while a target is ejected by passive health (probing counts as ejected), else 0.
    pub target_ejected: Family<TargetLabels, Gauge>,
    /// Retries a route wanted but its retry budget refused.
    pub retry_budget_exhausted: Family<RouteLabels, Counter>,
    /// Requests routed with no healthy target (the least-bad one served).
    pub target_panic: Family<RouteLabels, Counter>,
    /// Each tenant's spend in the current UTC day and month.
    pub tenant_spend: Family<SpendLabels, Gauge<f64, AtomicU64>>,
    /// Each route SLO's burn rate per window; absent while the window has too few events.
    pub slo_burn_rate: Family<SloWindowLabels, Gauge<f64, AtomicU64>>,
    /// Each route SLO's error budget left over its window (1 untouched, 0 spent, < 0 over).
    pub slo_budget_remaining: Family<SloLabels, Gauge<f64, AtomicU64>>,
    /// Requests (and judged answers) each SLO counted, good or not.
    pub slo_events: Family<SloEventLabels, Counter>,
    /// Each route SLO's alert level: 0 none, 1 ticket, 2 page.
    pub slo_alert: Family<SloLabels, Gauge>,
    /// Remediation actions in force (not dry-run), per route and action.
    pub remediation_active: Family<RemediationLabels, Gauge>,
    /// Incident timeline events, by action and event.
    pub incident_events: Family<IncidentEventLabels, Counter>,
    /// 1 while the AIOps detector flags a signal in a scope, else 0.
    pub anomaly_active: Family<AnomalyLabels, Gauge>,
    /// The learned band and the current value of each signal that has a baseline.
    pub anomaly_band: Family<AnomalyBandLabels, Gauge<f64, AtomicU64>>,
    /// Incident events pushed to Alertmanager or a webhook, by result.
    pub incident_push: Family<PushLabels, Counter>,
    /// Judge scores of sampled answers.
    pub judge_score: Family<JudgeScoreLabels, Histogram, fn() -> Histogram>,
    /// What became of each sampled answer.
    pub judge_samples: Family<JudgeSampleLabels, Counter>,
    none: Arc<str>,
    /// See [`Metrics::record_request`].
    series: Arc<std::sync::Mutex<SeriesCache>>,
}

fn exemplified(buckets: &'static [f64]) -> Exemplified {
    HistogramWithExemplars::new(buckets.iter().copied())
}

// === impl Metrics ===

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let operation_duration =
            Family::<OperationLabels, Exemplified, fn() -> Exemplified>::new_with_constructor(
                || exemplified(&OPERATION_DURATION_BUCKETS),
            );
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "GenAI operation duration as the client sees it",
            Unit::Seconds,
            operation_duration.clone(),
        );
        let token_usage =
            Family::<TokenUsageLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(TOKEN_USAGE_BUCKETS)
            });
        registry.register_with_unit(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used per operation",
            Unit::Other("tokens".to_owned()),
            token_usage.clone(),
        );
        let time_to_first_chunk =
            Family::<StreamLabels, Exemplified, fn() -> Exemplified>::new_with_constructor(|| {
                exemplified(&FIRST_CHUNK_BUCKETS)
            });
        registry.register_with_unit(
            "gen_ai_client_operation_time_to_first_chunk",
            "Time from the request to the first content chunk sent to the client (streams)",
            Unit::Seconds,
            time_to_first_chunk.clone(),
        );
        let time_per_output_chunk =
            Family::<StreamLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(PER_CHUNK_BUCKETS)
            });
        registry.register_with_unit(
            "gen_ai_client_operation_time_per_output_chunk",
            "Average time between content chunks after the first (streams)",
            Unit::Seconds,
            time_per_output_chunk.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sluice_requests",
            "Requests Sluice finished answering",
            requests.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register_with_unit(
            "sluice_usage",
            "Tokens by type; usage_source says whether the provider reported them or Sluice counted",
            Unit::Other("tokens".to_owned()),
            tokens.clone(),
        );
        let cost = Family::<CostLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "sluice_cost",
            "Spend computed from the catalog's per-token prices",
            Unit::Other("usd".to_owned()),
            cost.clone(),
        );
        let overhead =
            Family::<RouteLabels, Exemplified, fn() -> Exemplified>::new_with_constructor(|| {
                exemplified(&OVERHEAD_BUCKETS)
            });
        registry.register_with_unit(
            "sluice_overhead",
            "Gateway overhead: request time minus time spent waiting on providers",
            Unit::Seconds,
            overhead.clone(),
        );
        let upstream_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "sluice_upstream_attempts",
            "Requests sent to providers, retries and failovers included, by outcome",
            upstream_attempts.clone(),
        );
        let ratelimited = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "sluice_ratelimited",
            "Requests refused with 429 because their key's requests or tokens per minute ran out",
            ratelimited.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "sluice_cache_requests",
            "Requests on routes with a response cache: hit (no provider called), miss, or bypass (not deterministic)",
            cache_requests.clone(),
        );
        let spans = Family::<SpanLabels, Counter>::default();
        registry.register(
            "sluice_spans",
            "Spans exported over OTLP, dropped on a full export queue, or lost to export errors (a collector's rejections included)",
            spans.clone(),
        );
        let otlp_export = Family::<OtlpLabels, Counter>::default();
        registry.register(
            "sluice_otlp_export",
            "Spans and log records per OTLP destination (destination: a configured name; signal: traces | logs; result: exported | dropped on its full queue | failed to export or rejected by the collector)",
            otlp_export.clone(),
        );
        let background_dropped = Family::<QueueLabels, Counter>::default();
        registry.register(
            "sluice_background_dropped",
            "Items a background queue refused because it was full (records: finished requests whose metrics, access-log line and spans were lost)",
            background_dropped.clone(),
        );
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "sluice_policy_reloads",
            "Policy reloads: applied, rejected (invalid file or restart-only change; the old policy serves) or unchanged",
            policy_reloads.clone(),
        );
        let policy_generation = Gauge::default();
        registry.register(
            "sluice_policy_generation",
            "Generation of the serving policy: 1 at start, +1 per applied reload",
            policy_generation.clone(),
        );
        let policy_last_reload = Family::<ReloadLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "sluice_policy_last_reload_timestamp",
            "When the last reload with each result happened, in Unix time",
            Unit::Seconds,
            policy_last_reload.clone(),
        );
        let downstream_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "sluice_downstream_refused",
            "Clients turned away before their request was served: header_timeout (408), header_too_large (431), body_timeout (408), max_connections (503), draining (503)",
            downstream_refused.clone(),
        );
        let downstream_connections = Gauge::default();
        registry.register(
            "sluice_downstream_connections",
            "Open client connections on the data plane",
            downstream_connections.clone(),
        );
        let access_log_suppressed = Counter::default();
        registry.register(
            "sluice_access_log_suppressed",
            "Access-log lines left out because requests without a valid key went over telemetry.access_log_anonymous_per_s",
            access_log_suppressed.clone(),
        );
        let target_ejected = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "sluice_target_ejected",
            "1 while passive health keeps a route's target out (ejected or on probation), else 0",
            target_ejected.clone(),
        );
        let retry_budget_exhausted = Family::<RouteLabels, Counter>::default();
        registry.register(
            "sluice_retry_budget_exhausted",
            "Retries a route wanted but its retry budget (a share of its requests plus a floor) refused",
            retry_budget_exhausted.clone(),
        );
        let target_panic = Family::<RouteLabels, Counter>::default();
        registry.register(
            "sluice_target_panic",
            "Requests routed while no target of their route was healthy (the least-bad one served)",
            target_panic.clone(),
        );
        let tenant_spend = Family::<SpendLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "sluice_tenant_spend",
            "Each tenant's spend from the catalog's prices in the current UTC day and month",
            Unit::Other("usd".to_owned()),
            tenant_spend.clone(),
        );
        let slo_burn_rate = Family::<SloWindowLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "sluice_slo_burn_rate",
            "Error-budget burn rate of each route SLO over each window (1 spends the budget exactly over the SLO window); absent below the SLO's min_events",
            slo_burn_rate.clone(),
        );
        let slo_budget_remaining = Family::<SloLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "sluice_slo_error_budget_remaining_ratio",
            "Share of each route SLO's error budget left over its window (1 untouched, 0 spent, negative when overspent)",
            slo_budget_remaining.clone(),
        );
        let slo_events = Family::<SloEventLabels, Counter>::default();
        registry.register(
            "sluice_slo_events",
            "Events each route SLO counted (requests, or judged answers for quality SLOs), good or not",
            slo_events.clone(),
        );
        let slo_alert = Family::<SloLabels, Gauge>::default();
        registry.register(
            "sluice_slo_alert_level",
            "Each route SLO's multi-window burn-rate alert: 0 none, 1 ticket, 2 page",
            slo_alert.clone(),
        );
        let remediation_active = Family::<RemediationLabels, Gauge>::default();
        registry.register(
            "sluice_remediation_active",
            "Remediation actions in force on each route (dry-run rules excluded)",
            remediation_active.clone(),
        );
        let incident_events = Family::<IncidentEventLabels, Counter>::default();
        registry.register(
            "sluice_incident_events",
            "Incident timeline events written to the incident log, by action and event",
            incident_events.clone(),
        );
        let anomaly_active = Family::<AnomalyLabels, Gauge>::default();
        registry.register(
            "sluice_anomaly_active",
            "1 while the AIOps detector flags a signal as out of its learned band in a scope (route, target or tenant)",
            anomaly_active.clone(),
        );
        let anomaly_band = Family::<AnomalyBandLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "sluice_anomaly_band",
            "A signal's learned band (line lower, centre, upper) and its value over the detection window (line value), in the signal's unit (seconds, ratio, tokens, USD per minute), for every scope with a baseline",
            anomaly_band.clone(),
        );
        let incident_push = Family::<PushLabels, Counter>::default();
        registry.register(
            "sluice_incident_push",
            "Incident events pushed to Alertmanager or a webhook, by result (failed after every retry, or dropped on a full queue)",
            incident_push.clone(),
        );
        let judge_score =
            Family::<JudgeScoreLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(JUDGE_SCORE_BUCKETS)
            });
        registry.register(
            "sluice_judge_score",
            "Scores the judge gave sampled answers (0 to 1; 1 meets the rubric fully)",
            judge_score.clone(),
        );
        let judge_samples = Family::<JudgeSampleLabels, Counter>::default();
        registry.register(
            "sluice_judge_samples",
            "Answers sampled for the judge, and what became of each (scored, invalid verdict, failed call, over the judge's budget, dropped)",
            judge_samples.clone(),
        );
        Self {
            judge_score,
            judge_samples,
            slo_burn_rate,
            slo_budget_remaining,
            slo_events,
            slo_alert,
            remediation_active,
            incident_events,
            anomaly_active,
            anomaly_band,
            incident_push,
            target_ejected,
            retry_budget_exhausted,
            target_panic,
            tenant_spend,
            access_log_suppressed,
            downstream_refused,
            downstream_connections,
            background_dropped,
            policy_reloads,
            policy_generation,
            policy_last_reload,
            operation_duration,
            token_usage,
            time_to_first_chunk,
            time_per_output_chunk,
            requests,
            tokens,
            cost,
            overhead,
            upstream_attempts,
            ratelimited,
            cache_requests,
            spans,
            otlp_export,
            none: Arc::from(NONE),
            series: Arc::default(),
        }
    }

    /// The drop counter of one background queue, to hand to its [`crate::service::Feed`].
    pub fn queue_dropped(&self, queue: &'static str) -> Counter {
        self.background_dropped
            .get_or_create(&QueueLabels { queue })
            .clone()
    }

    /// Counts one judge sample outcome on `route`.
    pub fn record_judge(&self, route: &Arc<str>, outcome: &'static str) {
        self.judge_samples
            .get_or_create(&JudgeSampleLabels {
                route: Arc::clone(route),
                outcome,
            })
            .inc();
    }

    /// Counts a request routed in panic mode.
    pub fn record_panic(&self, route: &Arc<str>) {
        self.target_panic
            .get_or_create(&RouteLabels {
                route: Arc::clone(route),
            })
            .inc();
    }

    /// Counts a retry the route's budget refused.
    pub fn record_retry_budget_exhausted(&self, route: &Arc<str>) {
        self.retry_budget_exhausted
            .get_or_create(&RouteLabels {
                route: Arc::clone(route),
            })
            .inc();
    }

    /// Counts a client turned away.
    pub fn record_refused(&self, reason: RefusedReason) {
        self.downstream_refused
            .get_or_create(&RefusedLabels { reason })
            .inc();
    }

    /// Counts one reload attempt and when it happened.
    pub fn record_reload(&self, result: ReloadResult, generation: u64, unix_seconds: f64) {
        let labels = ReloadLabels { result };
        self.policy_reloads.get_or_create(&labels).inc();
        self.policy_last_reload
            .get_or_create(&labels)
            .set(unix_seconds);
        self.policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// The counter for one span-export result, to hand to the exporter.
    pub fn span_counter(&self, result: &'static str) -> Counter {
        self.spans.get_or_create(&SpanLabels { result }).clone()
    }

    /// Records one finished request: the single call site per request.
    ///
    /// The series a request's own labels select are looked up once per label combination and
    /// their handles kept: a lookup in each family hashes every label string and takes the
    /// family's lock, a dozen times per request. Families are never pruned of these series,
    /// so a kept handle stays the exported one.
    pub fn record_request(&self, r: &RequestRecord) {
        let label = |v: &Option<Arc<str>>| v.clone().unwrap_or_else(|| Arc::clone(&self.none));
        let route = label(&r.route);
        let model = label(&r.model);
        let tenant = label(&r.tenant);
        if let Some(result) = r.cache {
            self.cache_requests
                .get_or_create(&CacheLabels {
                    route: Arc::clone(&route),
                    result,
                })
                .inc();
        }
        if let Some(limit) = r.rate_limited {
            self.ratelimited
                .get_or_create(&RateLimitLabels {
                    route: Arc::clone(&route),
                    tenant: Arc::clone(&tenant),
                    limit,
                })
                .inc();
        }
        for a in &r.attempts {
            self.upstream_attempts
                .get_or_create(&AttemptLabels {
                    provider: Arc::clone(&a.provider),
                    model: Arc::clone(&a.model),
                    outcome: a.outcome,
                })
                .inc();
        }
        // GenAI operation metrics: the requested model is the policy's public name.
        let operation = r.endpoint.operation();
        let provider = r
            .attempts
            .last()
            .map_or_else(|| Arc::clone(&self.none), |a| Arc::clone(&a.provider));
        let requested = r
            .request_model_label
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.none));
        let key = SeriesKey {
            endpoint: r.endpoint,
            outcome: r.outcome,
            status: r.status,
            error_type: r.error_type,
            usage_source: r.usage.map(|u| u.source),
            route: Arc::clone(&route),
            model: Arc::clone(&model),
            tenant: Arc::clone(&tenant),
            provider: Arc::clone(&provider),
            requested: Arc::clone(&requested),
        };
        let mut cache = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_SERIES && !cache.contains_key(&key) {
            // Label sets that come and go (tenants, reloaded routes): start over.
            cache.clear();
        }
        let series = cache.entry(key).or_default();

        series
            .requests
            .get_or_insert_with(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        endpoint: r.endpoint,
                        route: Arc::clone(&route),
                        model: Arc::clone(&model),
                        tenant: Arc::clone(&tenant),
                        outcome: r.outcome,
                        status: r.status,
                    })
                    .clone()
            })
            .inc();
        if matches!(
            r.endpoint,
            Endpoint::Models | Endpoint::Feedback | Endpoint::Other
        ) || r.route.is_none()
        {
            return;
        }

        let trace_id: Arc<str> = Arc::from(crate::spans::trace_id_hex(&r.trace));
        let exemplar = || {
            Some(TraceExemplar {
                trace_id: Arc::clone(&trace_id),
            })
        };
        let stream_labels = || StreamLabels {
            gen_ai_operation_name: operation,
            gen_ai_provider_name: Arc::clone(&provider),
            gen_ai_request_model: Arc::clone(&requested),
            route: Arc::clone(&route),
        };
        series
            .operation_duration
            .get_or_insert_with(|| {
                self.operation_duration
                    .get_or_create(&OperationLabels {
                        gen_ai_operation_name: operation,
                        gen_ai_provider_name: Arc::clone(&provider),
                        gen_ai_request_model: Arc::clone(&requested),
                        route: Arc::clone(&route),
                        error_type: r.error_type.map_or("", ErrorKind::as_str),
                    })
                    .clone()
            })
            .observe(r.duration.as_secs_f64(), exemplar(), None);
        series
            .overhead
            .get_or_insert_with(|| {
                self.overhead
                    .get_or_create(&RouteLabels {
                        route: Arc::clone(&route),
                    })
                    .clone()
            })
            .observe(r.overhead().as_secs_f64(), exemplar(), None);

        if r.stream
            && let Some(ttfc) = r.time_to_first_chunk
        {
            series
                .time_to_first_chunk
                .get_or_insert_with(|| {
                    self.time_to_first_chunk
                        .get_or_create(&stream_labels())
                        .clone()
                })
                .observe(ttfc.as_secs_f64(), exemplar(), None);
            if r.chunks > 1 {
                let rest = r.duration.saturating_sub(ttfc).as_secs_f64();
                series
                    .time_per_output_chunk
                    .get_or_insert_with(|| {
                        self.time_per_output_chunk
                            .get_or_create(&stream_labels())
                            .clone()
                    })
                    .observe(rest / f64::from(r.chunks - 1));
            }
        }

        if let Some(u) = r.usage {
            let usage = [("input", u.input), ("output", u.output)];
            for (slot, (token_type, n)) in series.token_usage.iter_mut().zip(usage) {
                slot.get_or_insert_with(|| {
                    self.token_usage
                        .get_or_create(&TokenUsageLabels {
                            gen_ai_operation_name: operation,
                            gen_ai_provider_name: Arc::clone(&provider),
                            gen_ai_request_model: Arc::clone(&requested),
                            route: Arc::clone(&route),
                            gen_ai_token_type: token_type,
                        })
                        .clone()
                })
                .observe(n as f64);
            }
            let counts = [
                ("input", u.input),
                ("output", u.output),
                ("cached_input", u.cached_input),
                ("cache_write_input", u.cache_write_input),
                ("reasoning", u.reasoning),
            ];
            for (slot, (token_type, n)) in series.tokens.iter_mut().zip(counts) {
                if n > 0 || token_type == "input" || token_type == "output" {
                    slot.get_or_insert_with(|| {
                        self.tokens
                            .get_or_create(&TokenLabels {
                                route: Arc::clone(&route),
                                model: Arc::clone(&model),
                                tenant: Arc::clone(&tenant),
                                token_type,
                                usage_source: u.source,
                            })
                            .clone()
                    })
                    .inc_by(n);
                }
            }
        }
        if let Some(cost) = r.cost_usd {
            series
                .cost
                .get_or_insert_with(|| {
                    self.cost
                        .get_or_create(&CostLabels {
                            route: Arc::clone(&route),
                            model: Arc::clone(&model),
                            tenant: Arc::clone(&tenant),
                        })
                        .clone()
                })
                .inc_by(cost);
        }
    }
}

/// Label combinations whose series [`Metrics::record_request`] keeps before starting over.
const MAX_CACHED_SERIES: usize = 4096;

/// Everything that selects the series of one request.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    endpoint: Endpoint,
    outcome: Outcome,
    status: u16,
    error_type: Option<ErrorKind>,
    usage_source: Option<UsageSource>,
    route: Arc<str>,
    model: Arc<str>,
    tenant: Arc<str>,
    provider: Arc<str>,
    requested: Arc<str>,
}

/// The series of one label combination, each fetched from its family when first needed (so a
/// request that never streams or costs nothing creates no series it would not have).
#[derive(Debug, Default)]
struct Series {
    requests: Option<Counter>,
    operation_duration: Option<Exemplified>,
    overhead: Option<Exemplified>,
    time_to_first_chunk: Option<Exemplified>,
    time_per_output_chunk: Option<Histogram>,
    /// input, output.
    token_usage: [Option<Histogram>; 2],
    /// input, output, cached_input, cache_write_input, reasoning.
    tokens: [Option<Counter>; 5],
    cost: Option<Counter<f64, AtomicU64>>,
}

type SeriesCache = foldhash::HashMap<SeriesKey, Series>;

#[cfg(test)]
pub(crate) mod tests;
