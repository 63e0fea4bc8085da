//! The policy file as written: private serde types, loosely typed where a value is checked
//! later, so that `validate` can report every problem instead of the parser's first.
//!
//! Leaves are `Spanned` so that semantic diagnostics carry a line. Almost every field is
//! optional here; `validate` reports a missing required field with its path.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_path_to_error::Segment;
use serde_saphyr::{Location, MessageFormatter as _, Spanned, UserMessageFormatter};

use crate::Diagnostic;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: Option<RawServer>,
    #[serde(default)]
    pub telemetry: Option<RawTelemetry>,
    #[serde(default)]
    pub providers: Option<BTreeMap<String, Spanned<RawProvider>>>,
    #[serde(default)]
    pub models: Option<BTreeMap<String, Spanned<RawModel>>>,
    #[serde(default)]
    pub routes: Option<Vec<Spanned<RawRoute>>>,
    #[serde(default)]
    pub keys: Option<Vec<Spanned<RawKey>>>,
    #[serde(default)]
    pub admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    pub tenants: Option<BTreeMap<String, Spanned<RawTenant>>>,
    #[serde(default)]
    pub slo: Option<Spanned<RawSloSettings>>,
    #[serde(default)]
    pub incidents: Option<Spanned<RawIncidents>>,
    #[serde(default)]
    pub state: Option<Spanned<RawState>>,
    pub aiops: Option<Spanned<RawAiops>>,
}

/// `state: { redis: … }`: where live counters are shared between replicas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    #[serde(default)]
    pub redis: Option<Spanned<RawRedis>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    #[serde(default)]
    pub key_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub fail: Option<Spanned<String>>,
    #[serde(default)]
    pub local_allowance: Option<Spanned<i64>>,
    #[serde(default)]
    pub share_cache: Option<Spanned<bool>>,
}

/// The `aiops` section: learned baselines and anomaly detection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAiops {
    #[serde(default)]
    pub enabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub window: Option<Spanned<i64>>,
    #[serde(default)]
    pub k: Option<Spanned<f64>>,
    #[serde(default)]
    pub hold: Option<Spanned<String>>,
    #[serde(default)]
    pub clear: Option<Spanned<String>>,
    #[serde(default)]
    pub min_events: Option<Spanned<i64>>,
    #[serde(default)]
    pub warmup: Option<Spanned<i64>>,
    #[serde(default)]
    pub relearn_after: Option<Spanned<String>>,
    #[serde(default)]
    pub max_tenants: Option<Spanned<i64>>,
    #[serde(default)]
    pub group_window: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSloSettings {
    #[serde(default)]
    pub window_scale: Option<Spanned<f64>>,
    #[serde(default)]
    pub evaluate_every: Option<Spanned<String>>,
    #[serde(default)]
    pub snapshot_every: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIncidents {
    #[serde(default)]
    pub alertmanager: Option<Spanned<RawPush>>,
    #[serde(default)]
    pub webhook: Option<Spanned<RawPush>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPush {
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub bearer_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlo {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub objective: Option<Spanned<f64>>,
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    #[serde(default)]
    pub sli: Option<Spanned<RawSli>>,
    #[serde(default)]
    pub min_events: Option<Spanned<i64>>,
    #[serde(default)]
    pub runbook_url: Option<Spanned<String>>,
}

/// `errors`, or `{ ttft_below: 2s }`, `{ duration_below: 30s }`, `{ judge_score_at_least: 0.7 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSli {
    Name(String),
    Map(BTreeMap<String, RawScalar>),
}

/// A scalar that may be written as a number or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawScalar {
    Num(f64),
    Str(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemediation {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub when: Option<Spanned<RawWhen>>,
    #[serde(default, rename = "do")]
    pub action: Option<Spanned<RawAction>>,
    #[serde(default)]
    pub hold: Option<Spanned<String>>,
    #[serde(default)]
    pub cooldown: Option<Spanned<String>>,
    #[serde(default)]
    pub probe_share: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_share: Option<Spanned<f64>>,
    #[serde(default)]
    pub dry_run: Option<Spanned<bool>>,
    #[serde(default)]
    pub guard: Option<Spanned<RawWhen>>,
    #[serde(default)]
    pub runbook_url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWhen {
    #[serde(default)]
    pub slo: Option<Spanned<String>>,
    #[serde(default)]
    pub burn: Option<Spanned<RawBurn>>,
    #[serde(default)]
    pub no_healthy_target: Option<Spanned<bool>>,
    #[serde(default)]
    pub anomaly: Option<Spanned<String>>,
    #[serde(default)]
    pub min_score: Option<Spanned<f64>>,
}

/// `page`, `ticket`, or `{ window: 5m, above: 10 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawBurn {
    Level(String),
    Above(RawBurnAbove),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBurnAbove {
    pub window: String,
    pub above: f64,
}

/// `failover`, `cache_fallback`, `{ downgrade_to: [model, …] }` or `{ shed: { max_priority } }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawAction {
    Name(String),
    Map(RawActionMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawActionMap {
    #[serde(default)]
    pub downgrade_to: Option<ModelNames>,
    #[serde(default)]
    pub shed: Option<RawShed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShed {
    #[serde(default)]
    pub max_priority: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    #[serde(default)]
    pub limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    pub budget: Option<Spanned<RawBudget>>,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    #[serde(default)]
    pub usd_per_day: Option<Spanned<f64>>,
    #[serde(default)]
    pub usd_per_month: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJudge {
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    #[serde(default)]
    pub sample: Option<Spanned<f64>>,
    #[serde(default)]
    pub always: Option<Spanned<RawJudgeAlways>>,
    #[serde(default)]
    pub rubric: Option<Spanned<RawRubric>>,
    #[serde(default)]
    pub max_capture_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub rpm: Option<Spanned<i64>>,
    #[serde(default)]
    pub usd_per_day: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJudgeAlways {
    #[serde(default)]
    pub remediated: Option<Spanned<bool>>,
    #[serde(default)]
    pub downgraded: Option<Spanned<bool>>,
    #[serde(default)]
    pub per_minute: Option<Spanned<i64>>,
}

/// `helpfulness`, or `{ name: tone, text: "…" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawRubric {
    Builtin(String),
    Custom(RawCustomRubric),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomRubric {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    #[serde(default)]
    pub consecutive_failures: Option<Spanned<i64>>,
    #[serde(default)]
    pub failure_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    #[serde(default)]
    pub min_requests: Option<Spanned<i64>>,
    #[serde(default)]
    pub base_ejection: Option<Spanned<String>>,
    #[serde(default)]
    pub max_ejection: Option<Spanned<String>>,
    #[serde(default)]
    pub max_ejected_share: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetryBudget {
    #[serde(default)]
    pub ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub min_per_s: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderMatch {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub value: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    #[serde(default)]
    pub tokens: Option<Vec<Spanned<RawAdminToken>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdminToken {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub token_sha256: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReload {
    #[serde(default)]
    pub watch: Option<Spanned<bool>>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    #[serde(default)]
    pub otlp: Option<Spanned<RawOtlp>>,
    #[serde(default)]
    pub sample: Option<RawSample>,
    #[serde(default)]
    pub capture_content: Option<Spanned<bool>>,
    #[serde(default)]
    pub max_content_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub redact: Option<Vec<Spanned<RawRedact>>>,
    #[serde(default)]
    pub access_log: Option<Spanned<bool>>,
    #[serde(default)]
    pub access_log_anonymous_per_s: Option<Spanned<i64>>,
    #[serde(default)]
    pub destinations: Option<Vec<Spanned<RawDestination>>>,
    #[serde(default)]
    pub resource: Option<Spanned<RawResource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOtlp {
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub queue_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub batch_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub export_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSample {
    #[serde(default)]
    pub head_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub keep: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub slow: Option<Spanned<String>>,
    #[serde(default)]
    pub expensive_usd: Option<Spanned<f64>>,
}

/// One entry of `telemetry.redact`: a built-in name (`email`) or `{ regex: "…" }`.
#[derive(Debug)]
pub(crate) enum RawRedact {
    Name(String),
    Regex(String),
}

impl<'de> Deserialize<'de> for RawRedact {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;

        impl<'de> Visitor<'de> for V {
            type Value = RawRedact;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`email`, `card`, `api_key` or `{ regex: \"…\" }`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRedact, E> {
                Ok(RawRedact::Name(v.to_owned()))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawRedact, A::Error> {
                let mut regex = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "regex" {
                        return Err(de::Error::unknown_field(&key, &["regex"]));
                    }
                    if regex.is_some() {
                        return Err(de::Error::duplicate_field("regex"));
                    }
                    regex = Some(map.next_value::<String>()?);
                }
                regex
                    .map(RawRedact::Regex)
                    .ok_or_else(|| de::Error::missing_field("regex"))
            }
        }

        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub admin_listen: Option<Spanned<String>>,
    #[serde(default)]
    pub max_body_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_response_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub threads: Option<Spanned<i64>>,
    #[serde(default)]
    pub shutdown_grace: Option<Spanned<String>>,
    #[serde(default)]
    pub upstream_pool_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub cache_max_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub reload: Option<Spanned<RawReload>>,
    #[serde(default)]
    pub max_json_depth: Option<Spanned<i64>>,
    #[serde(default)]
    pub header_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub body_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub keepalive_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub max_header_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    pub data_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub admin_tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub http2: Option<Spanned<RawHttp2>>,
}

/// `server.tls` and `server.admin_tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default)]
    pub cert: Option<Spanned<String>>,
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub client_ca: Option<Spanned<String>>,
}

/// `server.http2`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp2 {
    #[serde(default)]
    pub h2c: Option<Spanned<bool>>,
    #[serde(default)]
    pub max_concurrent_streams: Option<Spanned<i64>>,
}

/// Every field of every provider kind; `validate` rejects the ones that do not belong to the
/// chosen `kind`. (A serde-tagged enum would lose both the field path and the line of errors
/// inside a provider.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    // kind: openai
    #[serde(default)]
    pub base_url: Option<Spanned<String>>,
    #[serde(default)]
    pub api_key_env: Option<Spanned<String>>,
    #[serde(default)]
    pub connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub compat: Option<Spanned<RawCompat>>,
    // kind: mock
    #[serde(default)]
    pub ttft_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub tokens_per_s: Option<Spanned<f64>>,
    // kind: anthropic
    #[serde(default)]
    pub anthropic_version: Option<Spanned<String>>,
    #[serde(default)]
    pub default_max_tokens: Option<Spanned<i64>>,
    // kind: gemini (Vertex AI when `project` is set), azure_openai
    #[serde(default)]
    pub api_version: Option<Spanned<String>>,
    #[serde(default)]
    pub project: Option<Spanned<String>>,
    #[serde(default)]
    pub location: Option<Spanned<String>>,
    // kind: azure_openai
    #[serde(default)]
    pub deployment: Option<Spanned<String>>,
    // kind: bedrock
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    pub aws_access_key_id_env: Option<Spanned<String>>,
    #[serde(default)]
    pub aws_secret_access_key_env: Option<Spanned<String>>,
    #[serde(default)]
    pub aws_session_token_env: Option<Spanned<String>>,
    // HTTP kinds: reaching the provider from inside a company network (issue 20)
    #[serde(default)]
    pub headers: Option<Spanned<BTreeMap<String, Spanned<RawHeaderValue>>>>,
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub ca_replaces_roots: Option<Spanned<bool>>,
    #[serde(default)]
    pub proxy: Option<Spanned<RawProxy>>,
    #[serde(default)]
    pub pool_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub tcp_keepalive: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub http_version: Option<Spanned<String>>,
}

/// `providers.<name>.compat` (kind: openai): an OpenAI-compatible server's quirks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompat {
    #[serde(default)]
    pub stream_usage: Option<Spanned<bool>>,
    #[serde(default)]
    pub max_tokens_field: Option<Spanned<String>>,
    #[serde(default)]
    pub developer_as_system: Option<Spanned<bool>>,
    #[serde(default)]
    pub drop_fields: Option<Vec<Spanned<String>>>,
}

/// `providers.<name>.proxy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub credentials_env: Option<Spanned<String>>,
    #[serde(default)]
    pub no_proxy: Option<Vec<Spanned<String>>>,
}

/// One value of `providers.<name>.headers`: a literal, or `{ env: NAME }`.
#[derive(Debug)]
pub(crate) enum RawHeaderValue {
    Static(String),
    Env(String),
}

impl<'de> Deserialize<'de> for RawHeaderValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;

        impl<'de> Visitor<'de> for V {
            type Value = RawHeaderValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header value or `{ env: NAME }`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHeaderValue, E> {
                Ok(RawHeaderValue::Static(v.to_owned()))
            }

            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawHeaderValue, A::Error> {
                let mut env = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "env" {
                        return Err(de::Error::unknown_field(&key, &["env"]));
                    }
                    if env.is_some() {
                        return Err(de::Error::duplicate_field("env"));
                    }
                    env = Some(map.next_value::<String>()?);
                }
                env.map(RawHeaderValue::Env)
                    .ok_or_else(|| de::Error::missing_field("env"))
            }
        }

        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    #[serde(default)]
    pub provider: Option<Spanned<String>>,
    #[serde(default)]
    pub upstream_model: Option<Spanned<String>>,
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    #[serde(default)]
    pub pricing: Option<Spanned<RawPricing>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPricing {
    #[serde(default)]
    pub input: Option<Spanned<f64>>,
    #[serde(default)]
    pub output: Option<Spanned<f64>>,
    #[serde(default)]
    pub cached_input: Option<Spanned<f64>>,
    #[serde(default)]
    pub cache_write_input: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default, rename = "match")]
    pub match_: Option<Spanned<RawMatch>>,
    #[serde(default)]
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    #[serde(default)]
    pub fallbacks: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub retry: Option<RawRetry>,
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
    #[serde(default)]
    pub telemetry: Option<RawRouteTelemetry>,
    #[serde(default)]
    pub cache: Option<Spanned<RawCache>>,
    #[serde(default)]
    pub balance: Option<Spanned<String>>,
    #[serde(default)]
    pub health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    pub judge: Option<Spanned<RawJudge>>,
    #[serde(default)]
    pub slos: Option<Vec<Spanned<RawSlo>>>,
    #[serde(default)]
    pub remediation: Option<Vec<Spanned<RawRemediation>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub only_deterministic: Option<Spanned<bool>>,
    #[serde(default)]
    pub max_stale: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteTelemetry {
    #[serde(default)]
    pub slow: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    #[serde(default)]
    pub model: Option<Spanned<ModelNames>>,
    #[serde(default)]
    pub header: Option<Spanned<RawHeaderMatch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    #[serde(default)]
    pub weight: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    #[serde(default)]
    pub max_attempts: Option<Spanned<i64>>,
    #[serde(default)]
    pub on: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub max_retry_after: Option<Spanned<String>>,
    #[serde(default)]
    pub budget: Option<Spanned<RawRetryBudget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    #[serde(default)]
    pub ttft: Option<Spanned<String>>,
    #[serde(default)]
    pub idle: Option<Spanned<String>>,
    #[serde(default)]
    pub total: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub key_sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub tenant: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    pub models: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub routes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    #[serde(default)]
    pub expires: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default)]
    pub rpm: Option<Spanned<i64>>,
    #[serde(default)]
    pub tpm: Option<Spanned<i64>>,
}

/// `match: { model: X }` where X is one name or a list of names. A single name has no span
/// of its own; the caller uses the span around the whole value.
#[derive(Debug)]
pub(crate) struct ModelNames(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for ModelNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;

        impl V {
            fn one(name: String) -> ModelNames {
                ModelNames(vec![Spanned {
                    value: name,
                    referenced: Location::UNKNOWN,
                    defined: Location::UNKNOWN,
                }])
            }
        }

        impl<'de> Visitor<'de> for V {
            type Value = ModelNames;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a model name or a list of model names")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ModelNames, E> {
                Ok(Self::one(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ModelNames, E> {
                Ok(Self::one(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ModelNames, E> {
                Ok(Self::one(v.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ModelNames, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(ModelNames(names))
            }
        }

        deserializer.deserialize_any(V)
    }
}

/// The 1-based line of a span, `None` when the parser did not record one.
pub(crate) fn line_of(location: Location) -> Option<usize> {
    match location.line() {
        0 => None,
        n => usize::try_from(n).ok(),
    }
}

/// Parses YAML into the raw schema. Syntax and type errors end parsing, so there is one
/// diagnostic, with the parser's line and the path serde reached.
pub(crate) fn parse(src: &str, origin: &str) -> Result<RawConfig, Diagnostic> {
    let mut path: Option<serde_path_to_error::Path> = None;
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(src, options, |de| {
        serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|err| {
            path = Some(err.path().clone());
            err.into_inner()
        })
    });
    result.map_err(|err| Diagnostic {
        origin: origin.to_owned(),
        path: path
            .as_ref()
            .map_or_else(|| "<root>".to_owned(), render_path),
        line: err.location().and_then(line_of),
        message: user_message(&err),
    })
}

/// Renders a serde path like `routes[0].targets[1].model`, dropping the `value` segments that
/// `Spanned` adds (but not a provider or model that happens to be called `value`).
fn render_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    let mut first_key: Option<&str> = None;
    for (i, segment) in path.iter().enumerate() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                let user_named = i == 1 && matches!(first_key, Some("providers" | "models"));
                if key == "value" && !user_named {
                    continue;
                }
                if i == 0 {
                    first_key = Some(key);
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    if out.is_empty() {
        "<root>".to_owned()
    } else {
        out
    }
}

/// The parser's message in plain words, without its `at line …` suffix.
fn user_message(err: &serde_saphyr::Error) -> String {
    let msg = UserMessageFormatter.format_message(err.without_snippet());
    let msg = match msg.as_ref() {
        "invalid i64" | "invalid u64" => "expected a whole number".to_owned(),
        "invalid f64" => "expected a number".to_owned(),
        "expected mapping start" => "expected a mapping (`key: value` lines or `{ … }`)".to_owned(),
        "expected sequence start" => "expected a list (`- item` lines or `[ … ]`)".to_owned(),
        "expected string scalar" => "expected a single value, not a list or mapping".to_owned(),
        other => other.to_owned(),
    };
    msg.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestination {
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub queue_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub batch_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub export_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub headers_env: Option<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    pub sampling: Option<Spanned<String>>,
    #[serde(default)]
    pub filter: Option<Spanned<RawDestinationFilter>>,
    #[serde(default)]
    pub signals: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestinationFilter {
    #[serde(default)]
    pub routes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub outcomes: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResource {
    #[serde(default)]
    pub environment: Option<Spanned<String>>,
    #[serde(default)]
    pub instance_id: Option<Spanned<String>>,
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    pub version: Option<Spanned<String>>,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, Spanned<String>>>,
}
