//! The validated policy: what the rest of Sluice reads. Built only by `validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::base_url::BaseUrl;

/// A whole validated policy file.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The model catalog by name: what exists, where, and what it costs.
    pub models: BTreeMap<String, ModelConfig>,
    /// Routes in file order.
    pub routes: Vec<RouteConfig>,
    /// Virtual keys in file order.
    pub keys: Vec<KeyConfig>,
    /// Spans, sampling, content capture and the access log. Defaults when absent.
    pub telemetry: TelemetryConfig,
    /// Who may use `/admin/*`. Without tokens every admin route answers 401.
    pub admin: AdminConfig,
    /// Tenants with limits shared by all their keys and USD budgets, by name.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// How SLOs are evaluated (all routes).
    pub slo: SloSettings,
    /// Where incident events are pushed, besides the incident log.
    pub incidents: IncidentsConfig,
    /// Where limits and budgets are counted: in-process (default) or shared through Redis.
    pub state: StateConfig,
    /// Learned baselines, anomaly detection, alert grouping and root-cause hints.
    pub aiops: AiopsSettings,
}

/// The `state` section. Without `redis` every replica counts on its own.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq)]
pub struct StateConfig {
    pub redis: Option<RedisConfig>,
}

/// Limits and budgets counted in one Redis shared by every replica.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://host:port/db`, without a password (that comes from `password_env`).
    pub url: String,
    pub password_env: Option<String>,
    /// Read from `password_env` at load time.
    pub password: Option<Secret>,
    /// Prepended to every key Sluice writes, so several deployments can share one Redis.
    pub key_prefix: String,
    /// The longest a request waits for Redis before the fail mode applies.
    #[serde(serialize_with = "crate::ser::duration")]
    pub timeout: Duration,
    pub fail: FailMode,
    /// Requests a replica leases per round trip for a key; 0 asks Redis for every request.
    pub local_allowance: u32,
    /// Routes' response caches are shared by every replica through Redis.
    pub share_cache: bool,
}

impl RedisConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
    pub const DEFAULT_KEY_PREFIX: &'static str = "sluice:";
    pub const MAX_LOCAL_ALLOWANCE: u32 = 10_000;
}

/// The quirks of an OpenAI-compatible server (vLLM, Ollama, TGI, Together, Groq, …): options,
/// not forks. The default changes nothing, and then the body is not even parsed.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct OpenAiCompat {
    /// Add `stream_options.include_usage` to streams so the server reports usage (default
    /// true). Off for servers that refuse the field: Sluice then counts tokens itself.
    pub stream_usage: bool,
    /// Send the client's output cap under this name (`max_tokens` for servers that predate
    /// `max_completion_tokens`); `None` sends it as the client did.
    pub max_tokens_field: Option<MaxTokensField>,
    /// Send `developer` messages as `system` messages.
    pub developer_as_system: bool,
    /// Top-level request fields removed before sending (ones the server refuses).
    pub drop_fields: Vec<String>,
}

impl Default for OpenAiCompat {
    fn default() -> Self {
        Self {
            stream_usage: true,
            max_tokens_field: None,
            developer_as_system: false,
            drop_fields: Vec::new(),
        }
    }
}

impl OpenAiCompat {
    /// Fields `drop_fields` may not name: without them there is no request.
    pub const REQUIRED_FIELDS: [&'static str; 5] =
        ["model", "messages", "prompt", "input", "stream"];

    /// True when the body goes to the server as it does to OpenAI.
    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }
}

/// The name an OpenAI-compatible server takes the output cap under.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    MaxTokens,
    MaxCompletionTokens,
}

impl MaxTokensField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_tokens",
            Self::MaxCompletionTokens => "max_completion_tokens",
        }
    }

    /// The other name, the one this replaces.
    pub fn other(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_completion_tokens",
            Self::MaxCompletionTokens => "max_tokens",
        }
    }
}

/// What a replica does while Redis cannot be reached.
#[derive(serde::Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Keep serving, each replica counting on its own (limits hold per replica).
    #[default]
    Open,
    /// Refuse requests whose key or tenant has a limit or budget (503).
    Closed,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// The `aiops` section: baselines learned per route, target and tenant, anomalies when a
/// signal leaves its band, related alerts grouped into one incident with a root-cause hint.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
pub struct AiopsSettings {
    /// On by default: baselines need days of history, so they learn from the first request.
    pub enabled: bool,
    /// The step of learning and detection. Default 1m.
    #[serde(serialize_with = "crate::ser::duration")]
    pub interval: Duration,
    /// The detection window, in intervals. Default 5.
    pub window: u32,
    /// The band's half-width in spreads. Default 5.
    pub k: f64,
    /// Out of band this long before a signal is flagged. Default 2m.
    #[serde(serialize_with = "crate::ser::duration")]
    pub hold: Duration,
    /// Back in band this long before a flag clears. Default 3m.
    #[serde(serialize_with = "crate::ser::duration")]
    pub clear: Duration,
    /// Fewer events in the window: the value is unknown. Default 30.
    pub min_events: u32,
    /// Learning steps before a baseline is trusted. Default 30.
    pub warmup: u32,
    /// Flagged this long, a change is learned as the new normal. Default 6h.
    #[serde(serialize_with = "crate::ser::duration")]
    pub relearn_after: Duration,
    /// Tenants with their own baselines; the rest share `other`. Default 100.
    pub max_tenants: u32,
    /// Alerts starting within this of each other and sharing a dimension are one incident.
    /// Default 5m.
    #[serde(serialize_with = "crate::ser::duration")]
    pub group_window: Duration,
}

impl Default for AiopsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            window: 5,
            k: 5.0,
            hold: Duration::from_secs(120),
            clear: Duration::from_secs(180),
            min_events: 30,
            warmup: 30,
            relearn_after: Duration::from_secs(6 * 3600),
            max_tenants: 100,
            group_window: Duration::from_secs(300),
        }
    }
}

/// A signal the AIOps detector learns (the `signal` label of `sluice_anomaly_active`).
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AnomalySignalConfig {
    Ttft,
    TimePerOutputToken,
    Duration,
    ErrorRatio,
    TokensPerRequest,
    CostPerMinute,
}

impl AnomalySignalConfig {
    pub const ALL: [(&'static str, AnomalySignalConfig); 6] = [
        ("ttft", Self::Ttft),
        ("time_per_output_token", Self::TimePerOutputToken),
        ("duration", Self::Duration),
        ("error_ratio", Self::ErrorRatio),
        ("tokens_per_request", Self::TokensPerRequest),
        ("cost_per_minute", Self::CostPerMinute),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }
}

/// The `slo` section: evaluation of every route's SLOs.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
pub struct SloSettings {
    /// Multiplies every SLO window (5m … 3d and each SLO's own), so drills and tests run a
    /// month in minutes. Default 1.
    pub window_scale: f64,
    /// How often burn rates are evaluated and remediation decides. Default 1s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub evaluate_every: Duration,
    /// How often SLO state is saved to the data directory. Default 30s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub snapshot_every: Duration,
}

impl Default for SloSettings {
    fn default() -> Self {
        Self {
            window_scale: 1.0,
            evaluate_every: Duration::from_secs(1),
            snapshot_every: Duration::from_secs(30),
        }
    }
}

/// The `incidents` section.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq)]
pub struct IncidentsConfig {
    /// Alertmanager's base URL: incidents are posted to `/api/v2/alerts`.
    pub alertmanager: Option<PushConfig>,
    /// A URL that receives each incident event as JSON.
    pub webhook: Option<PushConfig>,
}

/// Where incident events go, and the bearer token (from the environment) to send.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct PushConfig {
    pub url: BaseUrl,
    pub bearer_env: Option<String>,
    /// Read from `bearer_env` at load time.
    pub bearer: Option<Secret>,
}

/// An SLO of a route.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct SloConfig {
    /// Unique within the route.
    pub name: String,
    pub sli: SliConfig,
    /// The good share as a ratio (the file says a percentage: `99.5`).
    pub objective: f64,
    #[serde(serialize_with = "crate::ser::duration")]
    pub window: Duration,
    /// Below this many events in a window its burn rate is unknown. Default 10.
    pub min_events: u64,
    pub runbook_url: Option<String>,
}

/// What an SLO measures.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum SliConfig {
    Errors,
    TtftBelow(#[serde(serialize_with = "crate::ser::duration")] Duration),
    DurationBelow(#[serde(serialize_with = "crate::ser::duration")] Duration),
    JudgeScoreAtLeast(f64),
}

/// When an SLO counts as burning, for a remediation rule.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum BurnConfig {
    /// The SRE Workbook's page alert (1h & 5m over 14.4, or 6h & 30m over 6).
    Page,
    /// The ticket alert (3d & 6h over 1).
    Ticket,
    /// The burn over one window (`5m`, `30m`, `1h`, `6h`, `1d`, `3d`, `slo`) above a value.
    Above { window: BurnWindow, burn: f64 },
    /// Not a burn: the AIOps detector flags `signal` (on the route; on the target for
    /// `failover`, on the substitute for a guard) at least `min_score` spreads out.
    Anomaly {
        signal: AnomalySignalConfig,
        min_score: f64,
    },
}

/// A burn-rate window.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BurnWindow {
    M5,
    M30,
    H1,
    H6,
    D1,
    D3,
    Slo,
}

/// What a remediation rule does.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ActionConfig {
    Failover,
    /// Catalog models in order of preference.
    DowngradeTo(Vec<String>),
    CacheFallback,
    Shed {
        max_priority: u8,
    },
}

/// A remediation rule of a route.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct RemediationConfig {
    /// Unique across routes; default `<route>#<index>`.
    pub name: String,
    /// The SLO (of this route) that triggers it; the signal's name for an anomaly rule.
    pub slo: String,
    pub burn: BurnConfig,
    pub no_healthy_target: bool,
    pub action: ActionConfig,
    #[serde(serialize_with = "crate::ser::duration")]
    pub hold: Duration,
    #[serde(serialize_with = "crate::ser::duration")]
    pub cooldown: Duration,
    pub probe_share: f64,
    pub max_share: f64,
    pub dry_run: bool,
    /// For `downgrade_to`: a quality SLO of the route and when it counts as burning.
    pub guard: Option<(String, BurnConfig)>,
    pub runbook_url: Option<String>,
}

/// One entry of `tenants`.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// The key under `tenants` (the `tenant` of keys).
    pub name: String,
    /// Requests and tokens per minute for all the tenant's keys together.
    pub limits: Limits,
    pub budget: Budget,
    /// Attributes put on every span and OTLP log record of the tenant's requests (e.g.
    /// `team: payments`); never on metric labels.
    pub attributes: BTreeMap<String, String>,
}

/// Spend limits in US dollars, from the catalog's prices.
#[derive(serde::Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// Per UTC day.
    pub usd_per_day: Option<f64>,
    /// Per UTC calendar month.
    pub usd_per_month: Option<f64>,
}

/// How a route chooses among its targets.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// By weight, in a smooth deterministic rotation (the default).
    #[default]
    Weighted,
    /// The target with the lowest time to first token (EWMA).
    LeastLatency,
    /// Power of two choices: of two targets drawn at random, the one with the better time to
    /// first token (EWMA) and fewer requests in flight.
    P2c,
}

impl Balance {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::Weighted => "weighted",
            Balance::LeastLatency => "least_latency",
            Balance::P2c => "p2c",
        }
    }
}

/// A route's `judge:` section: which answers are judged, by which catalog model, on what.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// The catalog (chat) model that judges, called through Sluice's own routing.
    pub model: String,
    /// Share of the route's answers judged, in `[0, 1]`.
    pub sample: f64,
    /// Judge every remediated request (any action touched it). Default true.
    pub always_remediated: bool,
    /// Judge every downgraded request. Default true.
    pub always_downgraded: bool,
    /// At most this many always-sampled requests per minute; 0 turns the rules off. Default 30.
    pub always_per_minute: u32,
    pub rubric: RubricConfig,
    /// Bound on each side judged (the conversation, the answer), in bytes. Default 16 KiB.
    pub max_capture_bytes: usize,
    /// Judge calls of this route at once. Default 4.
    pub concurrency: usize,
    #[serde(serialize_with = "crate::ser::duration")]
    pub timeout: Duration,
    /// Judge calls per minute at most.
    pub rpm: Option<u32>,
    /// USD spent on judge calls per UTC day at most.
    pub usd_per_day: Option<f64>,
}

/// What the judge assesses.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RubricConfig {
    /// `helpfulness`, `relevance`, `faithfulness` or `safety`.
    Builtin(String),
    Custom {
        name: String,
        text: String,
    },
}

/// Passive health checks of a route's targets: when a target is taken out, and for how long.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// Failures in a row that eject a target. Default 5.
    pub consecutive_failures: u32,
    /// Share of failed requests over `window` that ejects a target. Default 0.5.
    pub failure_ratio: f64,
    /// The window of `failure_ratio`. Default 30s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub window: Duration,
    /// Requests in the window before `failure_ratio` applies. Default 10.
    pub min_requests: u32,
    /// The first ejection's length; each repeat doubles it. Default 10s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub base_ejection: Duration,
    /// Longest ejection. Default 5m.
    #[serde(serialize_with = "crate::ser::duration")]
    pub max_ejection: Duration,
    /// Most of a route's targets that may be out at once; never the last. Default 0.5.
    pub max_ejected_share: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            window: Duration::from_secs(30),
            min_requests: 10,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_share: 0.5,
        }
    }
}

/// How many retries a route may add to its traffic: a share of the requests plus a floor.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Retries per request over the last 10 s. Default 0.2.
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic. Default 10.
    pub min_per_s: f64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_s: 10.0,
        }
    }
}

/// A route that serves requests carrying a header (besides, or instead of, a model name).
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lowercase header name.
    pub name: String,
    pub value: String,
}

/// The `admin` section: bearer tokens for the admin listener's `/admin/*` routes.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// In file order; names are unique, so actions can say who took them.
    pub tokens: Vec<AdminToken>,
}

/// One admin bearer token, stored as the SHA-256 of its plaintext.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Unique; recorded with what the token's holder does.
    pub name: String,
    #[serde(serialize_with = "crate::ser::digest")]
    pub token_sha256: [u8; 32],
}

/// `server.reload`: how the running gateway notices a changed policy file.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadConfig {
    /// Poll the file for changes (SIGHUP and `POST /admin/reload` work either way).
    /// Default true.
    pub watch: bool,
    /// How often the file is looked at. Default 1s; 50ms..=1h.
    #[serde(serialize_with = "crate::ser::duration")]
    pub interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            interval: Duration::from_secs(1),
        }
    }
}

/// The `server` section. The listeners and `threads` only change on restart.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the OpenAI-compatible API listens. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Where `/metrics` and health endpoints listen. Default `127.0.0.1:9464`.
    pub admin_listen: SocketAddr,
    /// Largest request body accepted. Default 32 MiB; 1024..=1 GiB.
    pub max_body_bytes: u64,
    /// Largest buffered (non-streaming) upstream answer. Default 64 MiB; 1024..=1 GiB.
    pub max_response_bytes: u64,
    /// Worker threads. Default 2; 1..=256.
    pub threads: usize,
    /// How long in-flight requests get after SIGTERM. Default 10s; at most 1h.
    #[serde(serialize_with = "crate::ser::duration")]
    pub shutdown_grace: Duration,
    /// Idle upstream connections kept per worker. Default 128; 1..=65536.
    pub upstream_pool_size: usize,
    /// Memory for the response cache of every route that has one (bytes of cached answers).
    pub cache_max_bytes: u64,
    /// Watching the policy file for changes.
    pub reload: ReloadConfig,
    /// Where live state that must survive a restart is kept (tenant spend, SLO windows,
    /// incidents). Default `sluice-data`, relative to the working directory.
    pub data_dir: std::path::PathBuf,
    /// How deep JSON values in a request body may nest. Default 128; 2..=4096.
    pub max_json_depth: usize,
    /// How long a client may take to send a request head (and a new connection its first
    /// byte); past it, 408 and the connection closes. Default 10s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub header_timeout: Duration,
    /// How long a client may take to send a request body; past it, 408. Default 60s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection is kept. Default 60s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub keepalive_timeout: Duration,
    /// Largest request head (request line and headers); beyond it, 431. Default 64 KiB;
    /// 1 KiB..=1 MiB.
    pub max_header_bytes: usize,
    /// Open client connections at most; beyond it, new ones get 503. Default 10000.
    pub max_connections: usize,
    /// HTTPS on the API listener (ALPN `h2` and `http/1.1`); plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// HTTPS on the admin listener, optionally requiring client certificates.
    pub admin_tls: Option<TlsConfig>,
    /// HTTP/2 from clients: limits, and h2c on a plain listener.
    pub http2: Http2Config,
}

/// A listener's certificate and key (PEM files, reloaded when they change), and the CA
/// whose client certificates it requires, if any.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// When set, a client without a certificate signed by this CA is refused during the
    /// handshake, before any HTTP is read.
    pub client_ca: Option<std::path::PathBuf>,
}

/// HTTP/2 from clients: over TLS it is chosen by ALPN; on a plain listener only with `h2c`
/// (prior knowledge).
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Config {
    /// Accept HTTP/2 with prior knowledge (no TLS) on the plain API listener. Default off.
    pub h2c: bool,
    /// Streams one HTTP/2 connection may have open at once. Default 100; 1..=10000.
    pub max_concurrent_streams: u32,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            h2c: false,
            max_concurrent_streams: 100,
        }
    }
}

/// One entry of `providers`.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// The key under `providers`.
    pub name: String,
    pub kind: ProviderKind,
    /// Headers, CA bundle, proxy and connection settings (HTTP kinds only).
    pub egress: crate::Egress,
}

/// What a provider is, with the settings of that kind.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderKind {
    /// An OpenAI-compatible HTTP API.
    #[serde(rename = "openai")]
    OpenAi {
        /// Default `https://api.openai.com/v1`.
        base_url: BaseUrl,
        /// The environment variable holding the API key, if any.
        api_key_env: Option<String>,
        /// The key read from `api_key_env` at load time; `None` when unset or empty.
        api_key: Option<Secret>,
        /// Default 5s.
        #[serde(serialize_with = "crate::ser::duration")]
        connect_timeout: Duration,
        /// What an OpenAI-compatible server needs changed in the body.
        compat: OpenAiCompat,
    },
    /// The built-in mock provider, for tests, demos and load tests.
    Mock {
        /// Time to first token (YAML `ttft_ms`). Default 50ms.
        #[serde(serialize_with = "crate::ser::duration")]
        ttft: Duration,
        /// Streaming speed. Default 200; finite and > 0.
        tokens_per_s: f64,
    },
    /// Anthropic's Messages API (`x-api-key`, `anthropic-version`).
    Anthropic {
        /// Default `https://api.anthropic.com`.
        #[serde(flatten)]
        access: HttpAccess,
        /// `anthropic-version`; default `2023-06-01`.
        anthropic_version: String,
        /// `max_tokens` sent when the client sends none (Anthropic requires one); default 4096.
        default_max_tokens: u32,
    },
    /// The Gemini API (`x-goog-api-key`), or Vertex AI when `vertex` is set (a bearer token).
    Gemini {
        /// Default `https://generativelanguage.googleapis.com`, or Vertex AI's regional host.
        #[serde(flatten)]
        access: HttpAccess,
        /// Default `v1beta` (Gemini API) or `v1` (Vertex AI).
        api_version: String,
        vertex: Option<VertexConfig>,
    },
    /// Azure OpenAI: deployment URLs, `api-key` header.
    #[serde(rename = "azure_openai")]
    AzureOpenAi {
        /// The resource's endpoint (`https://NAME.openai.azure.com`); required.
        #[serde(flatten)]
        access: HttpAccess,
        /// Deployment name; default: the catalog model's `upstream_model`.
        deployment: Option<String>,
        /// `api-version` of the classic deployments API; `None` uses the v1 API.
        api_version: Option<String>,
    },
    /// Amazon Bedrock Runtime (Converse / ConverseStream), signed with SigV4, or a Bedrock API
    /// key (`api_key_env`) as a bearer token.
    Bedrock {
        /// Default `https://bedrock-runtime.{region}.amazonaws.com`.
        #[serde(flatten)]
        access: HttpAccess,
        region: String,
        /// SigV4 credentials from the environment; `None` when `api_key_env` is used.
        aws: Option<AwsCredentialsConfig>,
    },
}

impl ProviderKind {
    /// The config name of the kind (`openai`, `anthropic`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenAi { .. } => "openai",
            Self::Mock { .. } => "mock",
            Self::Anthropic { .. } => "anthropic",
            Self::Gemini { .. } => "gemini",
            Self::AzureOpenAi { .. } => "azure_openai",
            Self::Bedrock { .. } => "bedrock",
        }
    }

    /// Where and how the HTTP kinds other than `openai` are reached.
    pub fn access(&self) -> Option<&HttpAccess> {
        match self {
            Self::OpenAi { .. } | Self::Mock { .. } => None,
            Self::Anthropic { access, .. }
            | Self::Gemini { access, .. }
            | Self::AzureOpenAi { access, .. }
            | Self::Bedrock { access, .. } => Some(access),
        }
    }

    /// The secrets Sluice sends to this provider, for redacting provider text.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        let (key, aws) = match self {
            Self::OpenAi { api_key, .. } => (api_key.as_ref(), None),
            Self::Mock { .. } => (None, None),
            Self::Anthropic { access, .. }
            | Self::Gemini { access, .. }
            | Self::AzureOpenAi { access, .. } => (access.api_key.as_ref(), None),
            Self::Bedrock { access, aws, .. } => (access.api_key.as_ref(), aws.as_ref()),
        };
        key.into_iter().chain(
            aws.and_then(|a| a.credentials.as_ref())
                .into_iter()
                .flat_map(|c| std::iter::once(&c.secret_access_key).chain(&c.session_token)),
        )
    }
}

/// How an HTTP provider is reached: the fields every HTTP kind shares.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct HttpAccess {
    pub base_url: BaseUrl,
    /// The environment variable holding the API key (or token), if any.
    pub api_key_env: Option<String>,
    /// The key read from `api_key_env` at load time; `None` when unset or empty.
    pub api_key: Option<Secret>,
    /// Default 5s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub connect_timeout: Duration,
}

/// Gemini on Vertex AI (YAML `project` and `location` on a `gemini` provider).
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct VertexConfig {
    pub project: String,
    /// A region (`us-central1`), `global`, `us` or `eu`.
    pub location: String,
}

/// Where Bedrock's SigV4 credentials come from, and what was read there at load time.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct AwsCredentialsConfig {
    /// Default `AWS_ACCESS_KEY_ID`.
    pub access_key_id_env: String,
    /// Default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_env: String,
    /// Default `AWS_SESSION_TOKEN` (read when set: temporary credentials).
    pub session_token_env: String,
    /// `None` when the access key id or the secret is not set. Never shown in a policy view.
    #[serde(skip)]
    pub credentials: Option<AwsCredentials>,
}

/// AWS credentials read from the environment.
#[derive(Clone, PartialEq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// The access key id is an identifier, not a secret; the rest never shows.
impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

/// A secret read from the environment. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Shown as `***` (or `null` when unset, by the `Option` around it) wherever a policy is
/// shown: the admin view never carries a secret.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One entry of the model catalog.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The key under `models`.
    pub name: String,
    /// A key of `providers`.
    pub provider: String,
    /// The name sent upstream. Defaults to `name`.
    pub upstream_model: String,
    pub kind: ModelKind,
    pub pricing: Option<Pricing>,
}

/// What a model answers: chat completions or embeddings.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Chat,
    Embedding,
}

impl ModelKind {
    /// The YAML spelling: `chat` or `embedding`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prices in USD per million tokens; finite and >= 0.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Pricing {
    pub input: f64,
    pub output: f64,
    /// Price of cached prompt tokens, when the provider discounts them.
    pub cached_input: Option<f64>,
    /// Price of prompt tokens written to the provider's cache (Anthropic bills them above the
    /// input price), when the provider reports them; else the input price.
    pub cache_write_input: Option<f64>,
}

/// One entry of `routes`.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Unique, non-empty.
    pub name: String,
    /// The `model` values of requests this route serves (YAML `match: { model: … }`). A name
    /// appears in at most one route; it need not be in the catalog.
    pub models: Vec<String>,
    /// Weighted catalog models; never empty.
    pub targets: Vec<TargetConfig>,
    /// Catalog models tried in order when the targets fail.
    pub fallbacks: Vec<String>,
    pub retry: RetryConfig,
    pub timeouts: Timeouts,
    /// The route's own "slow request" threshold for tail sampling (YAML
    /// `telemetry: { slow: 5s }`); `None` uses `telemetry.sample.slow`.
    #[serde(serialize_with = "crate::ser::opt_duration")]
    pub slow: Option<Duration>,
    /// Exact-match response cache; `None` caches nothing.
    pub cache: Option<CacheConfig>,
    /// Requests that carry this header (YAML `match: { header: { name, value } }`).
    pub header: Option<HeaderMatch>,
    pub balance: Balance,
    pub health: HealthConfig,
    /// A sample of the route's answers scored by a judge model, off the request path.
    pub judge: Option<JudgeConfig>,
    /// The route's SLOs, evaluated in-line on every finished request.
    pub slos: Vec<SloConfig>,
    /// What Sluice does when one of the route's SLOs burns, in order.
    pub remediation: Vec<RemediationConfig>,
}

/// A route's response cache: identical requests from the same tenant replay the stored answer.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer is served from the cache.
    #[serde(serialize_with = "crate::ser::duration")]
    pub ttl: Duration,
    /// Cache chat and completion answers only when the request asked for `temperature: 0`
    /// (embeddings are always deterministic).
    pub only_deterministic: bool,
    /// How long past `ttl` an answer is kept, to be served only when the cache-fallback
    /// remediation is on (never as a normal hit). Default 0.
    #[serde(serialize_with = "crate::ser::duration")]
    pub max_stale: Duration,
}

/// A weighted target of a route.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// A key of `models`.
    pub model: String,
    /// Relative weight; default 1, at least 1.
    pub weight: u32,
}

/// When and how often a route retries.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included. Default 3; 1..=10.
    pub max_attempts: u32,
    /// Which failures are retried. Default all four.
    pub on: Vec<RetryOn>,
    /// Longest `Retry-After` honoured before re-trying the same provider. Default 2s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub max_retry_after: Duration,
    pub budget: RetryBudget,
}

/// A kind of failure that can be retried.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The connection could not be made (YAML `connect`).
    Connect,
    /// A timeout fired (YAML `timeout`).
    Timeout,
    /// The upstream answered 429 (YAML `"429"`).
    #[serde(rename = "429")]
    RateLimited,
    /// The upstream answered 5xx (YAML `5xx`).
    #[serde(rename = "5xx")]
    ServerError,
}

impl RetryOn {
    /// All four, the default.
    pub const ALL: [RetryOn; 4] = [
        RetryOn::Connect,
        RetryOn::Timeout,
        RetryOn::RateLimited,
        RetryOn::ServerError,
    ];

    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::Connect => "connect",
            RetryOn::Timeout => "timeout",
            RetryOn::RateLimited => "429",
            RetryOn::ServerError => "5xx",
        }
    }
}

/// Per-route timeouts; none is zero.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until the response header (and the first SSE event for streams). Default 60s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub ttft: Duration,
    /// Between stream chunks. Default 30s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub idle: Duration,
    /// The whole request, retries included. Default 600s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub total: Duration,
}

/// A virtual key, stored as the SHA-256 of its plaintext.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// Unique; used in logs and metrics.
    pub name: String,
    /// SHA-256 of the plaintext key (YAML: 64 hex characters).
    #[serde(serialize_with = "crate::ser::digest")]
    pub key_sha256: [u8; 32],
    /// Who pays; non-empty.
    pub tenant: String,
    /// Per-key rate limits; `None` fields are unlimited.
    pub limits: Limits,
    /// Public model names the key may use; empty = all.
    pub models: Vec<String>,
    /// Routes the key may use; empty = all.
    pub routes: Vec<String>,
    /// 0..=9, higher is more important; load shedding refuses the lowest first. Default 5.
    pub priority: u8,
    /// After this instant the key is refused.
    #[serde(serialize_with = "crate::ser::opt_time")]
    pub expires: Option<std::time::SystemTime>,
}

/// A key's rate limits, each over a rolling minute.
#[derive(serde::Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (input + output, as the provider reported them) per minute.
    pub tpm: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            max_body_bytes: 32 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            threads: 2,
            shutdown_grace: Duration::from_secs(10),
            upstream_pool_size: 128,
            cache_max_bytes: 64 * 1024 * 1024,
            reload: ReloadConfig::default(),
            data_dir: std::path::PathBuf::from("sluice-data"),
            max_json_depth: 128,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            tls: None,
            admin_tls: None,
            http2: Http2Config::default(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            on: RetryOn::ALL.to_vec(),
            max_retry_after: Duration::from_secs(2),
            budget: RetryBudget::default(),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            ttft: Duration::from_secs(60),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

/// The `telemetry` section: span export, sampling, content capture, the access log.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans go; `None` (the default) exports no spans.
    pub otlp: Option<OtlpConfig>,
    pub sample: SampleConfig,
    /// Record prompts and answers (`gen_ai.input.messages`, `gen_ai.output.messages`) on
    /// spans, after redaction. Default false.
    pub capture_content: bool,
    /// Largest captured content per attribute, in bytes of JSON. Default 16384;
    /// 256..=1048576.
    pub max_content_bytes: usize,
    /// What is removed from captured content. Default `[email, card, api_key]`.
    pub redact: Vec<RedactRule>,
    /// Write one access-log line per request. Default true.
    pub access_log: bool,
    /// Access-log lines per second, at most, for requests that presented no valid key (a
    /// flood of them cannot grow the log without bound; what is left out is counted).
    /// Default 10; 0..=100000.
    pub access_log_anonymous_per_s: u32,
    /// OTLP destinations besides `otlp` (which is the destination named `otlp`).
    pub destinations: Vec<DestinationConfig>,
    /// Resource attributes on everything exported.
    pub resource: ResourceConfig,
}

/// An OTLP trace exporter.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The URL spans are sent to, as used: for `protocol: http` it ends in `/v1/traces`
    /// (appended when the file does not say it); for gRPC it has no path.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Per export of a batch, its retries included. Default 10s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub timeout: Duration,
    /// Spans waiting for export; more are dropped (and counted). Default 4096;
    /// 1..=1048576.
    pub queue_size: usize,
    /// Spans per export call. Default 512; 1..=65536.
    pub batch_size: usize,
    /// How long a part-filled batch waits. Default 1s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub export_interval: Duration,
}

/// The OTLP transport.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (YAML `grpc`), usually port 4317. The default.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (YAML `http`), usually port 4318.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http",
        }
    }
}

/// Which requests' spans are kept.
///
/// Every request matching a rule of `keep` is kept (tail sampling, decided when the request
/// has ended); of the rest, a `head_ratio` share is kept, decided from the trace id.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct SampleConfig {
    /// Share of the other requests kept. Default 0.05; 0..=1.
    pub head_ratio: f64,
    /// Default: all five rules.
    pub keep: Vec<KeepRule>,
    /// Over this a request is slow (routes may set their own). Default 10s.
    #[serde(serialize_with = "crate::ser::duration")]
    pub slow: Duration,
    /// Over this cost (USD) a request is expensive. Default 0.1; finite, >= 0.
    pub expensive_usd: f64,
}

/// A reason to keep a request's spans whatever `head_ratio` says.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeepRule {
    /// It failed, or one of its upstream attempts did.
    Error,
    /// It took longer than the route's (or the sample's) `slow`.
    Slow,
    /// It cost more than `expensive_usd`.
    Expensive,
    /// A remediation action changed how it was served.
    Remediated,
    /// The judge scored it.
    Judged,
}

impl KeepRule {
    /// All five, the default.
    pub const ALL: [KeepRule; 5] = [
        KeepRule::Error,
        KeepRule::Slow,
        KeepRule::Expensive,
        KeepRule::Remediated,
        KeepRule::Judged,
    ];

    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepRule::Error => "error",
            KeepRule::Slow => "slow",
            KeepRule::Expensive => "expensive",
            KeepRule::Remediated => "remediated",
            KeepRule::Judged => "judged",
        }
    }
}

/// What redaction removes from captured content.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedactRule {
    /// Email addresses (YAML `email`).
    Email,
    /// Payment card numbers that pass the Luhn check (YAML `card`).
    Card,
    /// API keys and bearer tokens: `sk-…`, `sk-ant-…`, `AKIA…`, `Bearer …` (YAML `api_key`).
    ApiKey,
    /// A custom pattern (YAML `{ regex: "ACME-[0-9]{6}" }`), checked to compile at load.
    Regex(String),
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp: None,
            sample: SampleConfig::default(),
            capture_content: false,
            max_content_bytes: 16 * 1024,
            redact: vec![RedactRule::Email, RedactRule::Card, RedactRule::ApiKey],
            access_log: true,
            access_log_anonymous_per_s: 10,
            destinations: Vec::new(),
            resource: ResourceConfig::default(),
        }
    }
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            head_ratio: 0.05,
            keep: KeepRule::ALL.to_vec(),
            slow: Duration::from_secs(10),
            expensive_usd: 0.1,
        }
    }
}

impl OtlpConfig {
    /// The defaults for everything but the endpoint.
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            timeout: Duration::from_secs(10),
            queue_size: 4096,
            batch_size: 512,
            export_interval: Duration::from_secs(1),
        }
    }
}

/// One OTLP destination of `telemetry.destinations`: its own exporter, queue and worker, so a
/// slow one never holds up another.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct DestinationConfig {
    /// Unique; the `destination` label of its metrics.
    pub name: String,
    /// Endpoint, protocol, timeout and queue, as for `telemetry.otlp`.
    pub otlp: OtlpConfig,
    /// Header name → the environment variable holding its value (read when the exporter is
    /// built; the value is never in the policy, so `/admin/policy` shows only the variable).
    pub headers_env: BTreeMap<String, String>,
    pub sampling: DestinationSampling,
    pub filter: DestinationFilter,
    /// Send spans. Default true.
    pub traces: bool,
    /// Send the access-log record as OTLP log records. Default false.
    pub logs: bool,
}

/// Which requests a destination gets, before its filter.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DestinationSampling {
    /// The requests `telemetry.sample` keeps (the default).
    #[default]
    Tail,
    /// Every request (a canary or test collector).
    All,
}

impl DestinationSampling {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationSampling::Tail => "tail",
            DestinationSampling::All => "all",
        }
    }
}

/// Requests a destination gets: an empty list lets every value through.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct DestinationFilter {
    pub routes: Vec<String>,
    pub tenants: Vec<String>,
    /// Request outcomes ([`OUTCOMES`]).
    pub outcomes: Vec<String>,
}

/// The request outcomes a destination filter may name (`sluice.outcome`).
pub const OUTCOMES: [&str; 7] = [
    "ok",
    "client_error",
    "upstream_error",
    "timeout",
    "truncated",
    "cancelled",
    "gateway_error",
];

/// `telemetry.resource`: who is exporting, on every span and log record.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceConfig {
    /// `deployment.environment.name`.
    pub environment: Option<String>,
    /// `service.instance.id`; default `{hostname}-{pid}`.
    pub instance_id: Option<String>,
    /// `cloud.region`.
    pub region: Option<String>,
    /// `service.version`; default Sluice's own version.
    pub version: Option<String>,
    /// Any other resource attribute; these win over `OTEL_RESOURCE_ATTRIBUTES`.
    pub attributes: BTreeMap<String, String>,
}
