//! The JSON Schema (draft 2020-12) of the policy file, for editors and CI (`sluice schema`).
//!
//! Written by hand rather than derived from the raw serde types, because those are loose on
//! purpose (`i64`, `String`, every field optional) so that `validate` can report every
//! problem; a derived schema would say nothing about ranges, closed sets or formats. The
//! schema instead states what `raw` parses *and* `validate` checks, one field at a time:
//!
//! - every object has `additionalProperties: false`, like `deny_unknown_fields`;
//! - an optional field also accepts `null` (YAML `field:` with nothing after it), which the
//!   parser reads as absent; a required one does not;
//! - numbers carry validation's bounds and defaults (taken from the same `Default` impls);
//! - closed sets are enums; `kind` of a provider decides which fields may appear (`if/then`);
//! - durations, addresses, URLs, hashes and dates have patterns that accept what the
//!   parsers accept (humantime, `SocketAddr`, [`crate::BaseUrl`]);
//! - names (keys, tenants, routes, models) are "text": YAML reads `tenant: 42` as the text
//!   `42`, so numbers and booleans are accepted there too.
//!
//! What JSON Schema cannot say is left to `sluice check`: references between sections
//! (a model's provider, a route's targets, a key's routes, a remediation rule's SLO, a
//! judge's and a downgrade's models and their kinds), uniqueness of names and hashes
//! across list items (SLO names, remediation names), one model per route, one kind per
//! route, `listen` against `admin_listen`, upper bounds of durations, regexes that compile,
//! and IP/port ranges.
//! It is also stricter than the parser in two small ways: numbers and booleans must not be
//! quoted (`threads: "2"` is read as 2 by the parser), and enum values must be spelt as
//! documented (the parser trims most of them, and `retry.on` ignores case).
//!
//! `config/tests/schema.rs` keeps this honest against the parser and validation.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::types::{
    AiopsSettings, AnomalySignalConfig, Balance, HealthConfig, KeepRule, ModelKind, OtlpConfig,
    OtlpProtocol, RedactRule, ReloadConfig, RetryBudget, RetryConfig, RetryOn, SampleConfig,
    ServerConfig, SloSettings, TelemetryConfig, Timeouts,
};
use crate::types::{FailMode, RedisConfig};
use crate::validate::providers::KIND_FIELDS;
use crate::validate::{
    BUILTIN_RUBRICS, DEFAULT_ANTHROPIC_MAX_TOKENS, DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_COOLDOWN, DEFAULT_HOLD, DEFAULT_MIN_EVENTS,
    DEFAULT_MOCK_TOKENS_PER_S, DEFAULT_MOCK_TTFT_MS, DEFAULT_PROBE_SHARE, MAX_CAPTURE,
    MAX_POOL_SIZE, MAX_RUBRIC_NAME, MAX_RUBRIC_TEXT, MIN_CAPTURE, ONE_GIB, THIRTY_DAYS,
};

/// humantime's grammar (`250ms`, `1h 30m`, `1.5s`) after validation's trim: numbers (digits,
/// optional fraction) each followed by a unit, optionally separated by spaces.
const DURATION: &str = concat!(
    r"^\s*(?:[0-9][0-9\s]*(?:\.[0-9\s]*[0-9][0-9\s]*)?",
    "(?:nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s",
    "|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w",
    r"|months|month|M|years|year|yrs|yr|y)\s*)+$"
);
/// A duration is zero exactly when none of its digits is: units have no digits.
const NON_ZERO: &str = "[1-9]";
const DURATION_FORM: &str = "A duration like `250ms`, `10s`, `5m` or `1h 30m`.";
/// `SocketAddr`'s forms: IPv4 or bracketed IPv6 (with an optional numeric scope), then a port.
const SOCKET_ADDR: &str =
    r"^\s*(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+(?:%[0-9]+)?\]):[0-9]+\s*$";
/// [`crate::BaseUrl`]: http(s), a host without user info, optional port and path, no query
/// or fragment.
const HTTP_URL: &str = r"^\s*[hH][tT][tT][pP][sS]?://[^/?#@\s]+(?:/[^?#\s]*)?\s*$";
/// OTLP/gRPC takes scheme and authority only (trailing slashes are dropped).
const URL_WITHOUT_PATH: &str = r"^\s*[hH][tT][tT][pP][sS]?://[^/?#@\s]+/*\s*$";
/// OTLP/HTTP is plain http only in this build.
const PLAIN_HTTP_URL: &str = r"^\s*[hH][tT][tT][pP]://";
const SHA256_HEX: &str = r"^\s*[0-9A-Fa-f]{64}\s*$";
const ENV_VAR: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// `humantime::parse_rfc3339_weak`: `T` or a space between date and time, optional
/// fraction, UTC only.
const DATE_TIME: &str =
    r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:Z|\+00:00)?\s*$";
/// An HTTP token (RFC 9110 `tchar`s).
const HEADER_NAME: &str = r"^\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+\s*$";
const VISIBLE_ASCII: &str = "^[ -~]+$";
/// A provider setting that goes into a URL or header: letters, digits, `.`, `_`, `-`.
const TOKEN: &str = "^[A-Za-z0-9._-]+$";
/// Not empty once trimmed.
const NOT_BLANK: &str = r"\S";
/// Header names that carry credentials and so cannot select a route.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "cookie"];

/// The JSON Schema of the whole policy file.
pub fn json_schema() -> Value {
    let mut root = object(
        "A Sluice policy file. Every section is optional except `providers`, `models` and \
         `keys`. Durations are written like 250ms, 10s, 5m or 1h. Check a file with \
         `sluice check FILE`, which also verifies what this schema cannot: references \
         between sections and unique names.",
        vec![
            ("server", server()),
            ("telemetry", telemetry()),
            ("providers", providers()),
            ("models", models()),
            ("routes", routes()),
            ("keys", keys()),
            ("admin", admin()),
            ("tenants", tenants()),
            ("slo", slo_settings()),
            ("incidents", incidents()),
            ("state", state()),
            ("aiops", aiops()),
        ],
        &["providers", "models", "keys"],
    );
    insert(
        &mut root,
        "$schema",
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    insert(&mut root, "title", json!("Sluice policy file"));
    root
}

/// [`json_schema`] as `config/policy.schema.json` holds it and `sluice schema` prints it:
/// pretty-printed, with a final newline.
pub fn json_schema_text() -> String {
    format!("{:#}\n", json_schema())
}

fn server() -> Value {
    let d = ServerConfig::default();
    let reload = ReloadConfig::default();
    object(
        "Where Sluice listens and how it treats connections. The listeners, `threads`, \
         `upstream_pool_size` and `cache_max_bytes` only change on restart; a reload that \
         changes them is refused.",
        vec![
            (
                "listen",
                socket_addr(
                    "Where the OpenAI-compatible API listens (POST /v1/chat/completions, ...). \
                     Must differ from `admin_listen`.",
                    &d.listen.to_string(),
                ),
            ),
            (
                "admin_listen",
                socket_addr(
                    "Where /metrics, /healthz, /readyz and /admin/* listen; keep it off the \
                     public network. Must differ from (and not overlap) `listen`.",
                    &d.admin_listen.to_string(),
                ),
            ),
            (
                "max_body_bytes",
                int(
                    "Largest request body accepted, in bytes (32 MiB by default); larger ones \
                     get 413.",
                    1024,
                    Some(ONE_GIB.unsigned_abs()),
                    Some(d.max_body_bytes),
                ),
            ),
            (
                "max_response_bytes",
                int(
                    "Largest buffered (non-streaming) upstream answer, in bytes.",
                    1024,
                    Some(ONE_GIB.unsigned_abs()),
                    Some(d.max_response_bytes),
                ),
            ),
            (
                "threads",
                int("Worker threads.", 1, Some(256), Some(d.threads as u64)),
            ),
            (
                "shutdown_grace",
                duration(
                    "How long in-flight requests get to finish after SIGTERM; at most 1h.",
                    Zero::Allowed,
                    Some(d.shutdown_grace),
                ),
            ),
            (
                "upstream_pool_size",
                int(
                    "Idle upstream connections kept per worker.",
                    1,
                    Some(65536),
                    Some(d.upstream_pool_size as u64),
                ),
            ),
            (
                "cache_max_bytes",
                int(
                    "Memory for the response cache of every route that has one (bytes of \
                     cached answers).",
                    0,
                    Some(16 * ONE_GIB.unsigned_abs()),
                    Some(d.cache_max_bytes),
                ),
            ),
            (
                "reload",
                object(
                    "How the running gateway notices a changed policy file. SIGHUP and \
                     `POST /admin/reload` reload whatever this says.",
                    vec![
                        (
                            "watch",
                            boolean(
                                "Poll the policy file for changes (an editor's rename and a \
                                 Kubernetes ConfigMap update both count).",
                                reload.watch,
                            ),
                        ),
                        (
                            "interval",
                            duration(
                                "How often the file is looked at; 50ms to 1h.",
                                Zero::Rejected,
                                Some(reload.interval),
                            ),
                        ),
                    ],
                    &[],
                ),
            ),
            (
                "max_json_depth",
                int(
                    "How deep JSON values in a request body may nest.",
                    2,
                    Some(4096),
                    Some(d.max_json_depth as u64),
                ),
            ),
            (
                "header_timeout",
                duration(
                    "How long a client may take to send a request head (and a new \
                     connection its first byte); past it, 408 and the connection closes. \
                     At most 1h.",
                    Zero::Rejected,
                    Some(d.header_timeout),
                ),
            ),
            (
                "body_timeout",
                duration(
                    "How long a client may take to send a request body; past it, 408. At \
                     most 1h.",
                    Zero::Rejected,
                    Some(d.body_timeout),
                ),
            ),
            (
                "keepalive_timeout",
                duration(
                    "How long an idle keep-alive connection is kept. At most 1h.",
                    Zero::Rejected,
                    Some(d.keepalive_timeout),
                ),
            ),
            (
                "max_header_bytes",
                int(
                    "Largest request head (request line and headers), in bytes; beyond it, \
                     431.",
                    1024,
                    Some(1024 * 1024),
                    Some(d.max_header_bytes as u64),
                ),
            ),
            (
                "max_connections",
                int(
                    "Open client connections at most; beyond it, new ones get 503.",
                    1,
                    Some(1_000_000),
                    Some(d.max_connections as u64),
                ),
            ),
            (
                "data_dir",
                with_default(
                    not_blank(
                        "Where live state that must survive a restart is kept (tenant spend, \
                         SLO windows, incidents), relative to the working directory unless \
                         absolute.",
                    ),
                    json!(d.data_dir.display().to_string()),
                ),
            ),
            (
                "tls",
                tls(
                    "Serve the API over HTTPS, offering HTTP/2 and HTTP/1.1 by ALPN. Plain HTTP \
                     when absent. The files are reloaded when they change; a certificate that \
                     does not load keeps the previous one serving.",
                ),
            ),
            (
                "admin_tls",
                tls(
                    "Serve the admin listener over HTTPS; with `client_ca`, only clients \
                     holding a certificate from that CA get past the handshake. The admin \
                     token still applies.",
                ),
            ),
            ("http2", http2()),
        ],
        &[],
    )
}

fn tls(description: &str) -> Value {
    object(
        description,
        vec![
            (
                "cert",
                not_blank(
                    "The certificate chain, leaf first (PEM), relative to the working \
                     directory unless absolute.",
                ),
            ),
            (
                "key",
                not_blank("The private key of the certificate (PEM: PKCS#8, PKCS#1 or SEC1)."),
            ),
            (
                "client_ca",
                not_blank(
                    "CA certificates (PEM) a client certificate must chain to; when set, a \
                     client without one is refused during the handshake.",
                ),
            ),
        ],
        &["cert", "key"],
    )
}

fn http2() -> Value {
    let d = crate::types::Http2Config::default();
    object(
        "HTTP/2 from clients. Over TLS it is chosen by ALPN; on a plain listener only with \
         `h2c`. The request head limit is `max_header_bytes` on both protocols.",
        vec![
            (
                "h2c",
                boolean(
                    "Accept HTTP/2 with prior knowledge (no TLS, no upgrade) on a plain API \
                     listener, next to HTTP/1.1.",
                    d.h2c,
                ),
            ),
            (
                "max_concurrent_streams",
                int(
                    "Streams one HTTP/2 connection may have open at once.",
                    1,
                    Some(10_000),
                    Some(u64::from(d.max_concurrent_streams)),
                ),
            ),
        ],
        &[],
    )
}

fn telemetry() -> Value {
    let d = TelemetryConfig::default();
    let redact_defaults: Vec<Value> = d.redact.iter().map(redact_name).collect();
    object(
        "Spans (OpenTelemetry GenAI conventions), sampling, content capture and the access \
         log. Every setting is optional.",
        vec![
            ("otlp", otlp()),
            ("sample", sample()),
            (
                "capture_content",
                boolean(
                    "Record prompts and answers (gen_ai.input.messages, \
                     gen_ai.output.messages) on spans, after redaction, cut to \
                     `max_content_bytes`.",
                    d.capture_content,
                ),
            ),
            (
                "max_content_bytes",
                int(
                    "Largest captured content per attribute, in bytes of JSON.",
                    256,
                    Some(1024 * 1024),
                    Some(d.max_content_bytes as u64),
                ),
            ),
            (
                "redact",
                with_default(
                    list(
                        "What is removed from captured content: built-in rules by name, or \
                         your own pattern as `{ regex: \"ACME-[0-9]{6}\" }`.",
                        json!({
                            "oneOf": [
                                string_enum(
                                    "A built-in rule: `email` (addresses), `card` (payment card \
                                     numbers passing the Luhn check) or `api_key` (`sk-…`, \
                                     `sk-ant-…`, `AKIA…`, `Bearer …`).",
                                    &["email", "card", "api_key"],
                                ),
                                object(
                                    "A custom pattern.",
                                    vec![(
                                        "regex",
                                        json!({
                                            "type": "string",
                                            "minLength": 1,
                                            "description": "A regular expression (Rust `regex` \
                                                syntax) for text to redact. It must compile \
                                                and must not match the empty string.",
                                        }),
                                    )],
                                    &["regex"],
                                ),
                            ],
                        }),
                    ),
                    Value::Array(redact_defaults),
                ),
            ),
            (
                "access_log",
                boolean(
                    "Write one JSON access-log line per request on standard output.",
                    d.access_log,
                ),
            ),
            (
                "access_log_anonymous_per_s",
                int(
                    "Access-log lines per second, at most, for requests that presented no \
                     valid key (what is left out is counted).",
                    0,
                    Some(100_000),
                    Some(u64::from(d.access_log_anonymous_per_s)),
                ),
            ),
            ("destinations", destinations()),
            ("resource", resource()),
        ],
        &[],
    )
}

fn destinations() -> Value {
    let names = |description: &str| list(description, not_blank("A name."));
    let mut item = otlp();
    let fields = [
        (
            "name",
            pattern(
                "Unique among destinations (`otlp` is `telemetry.otlp`'s); the `destination` \
                 label of `sluice_otlp_export_total`. Letters, digits, `-` and `_`.",
                "^[A-Za-z0-9_-]+$",
            ),
        ),
        (
            "headers_env",
            nullable(map_of(
                "Headers sent with every export (a vendor's auth): header name → the \
                 environment variable holding its value, read when the exporter is built. \
                 The value is never written in the policy.",
                "An HTTP header name.",
                pattern("An environment variable name.", "^[A-Za-z0-9_]+$"),
            )),
        ),
        (
            "sampling",
            nullable(with_default(
                string_enum(
                    "`tail`: the requests `telemetry.sample` keeps; `all`: every request \
                     (a canary or test collector).",
                    &["tail", "all"],
                ),
                json!("tail"),
            )),
        ),
        (
            "filter",
            nullable(object(
                "Only requests matching every non-empty list go to this destination.",
                vec![
                    ("routes", names("Route names.")),
                    ("tenants", names("Tenant names.")),
                    (
                        "outcomes",
                        list(
                            "Request outcomes (`sluice.outcome`).",
                            string_enum("An outcome.", &crate::types::OUTCOMES),
                        ),
                    ),
                ],
                &[],
            )),
        ),
        (
            "signals",
            nullable(with_default(
                min_items(
                    list(
                        "What is sent: `traces` (spans), `logs` (the access-log record as \
                         OTLP log records with the trace and span ids).",
                        string_enum("A signal.", &["traces", "logs"]),
                    ),
                    1,
                ),
                json!(["traces"]),
            )),
        ),
    ];
    if let Some(props) = item.get_mut("properties").and_then(Value::as_object_mut) {
        for (k, v) in fields {
            props.insert(k.to_owned(), v);
        }
    }
    insert(&mut item, "required", json!(["name", "endpoint"]));
    insert(
        &mut item,
        "description",
        json!("One OTLP destination with its own queue and worker."),
    );
    list(
        "OTLP destinations besides `otlp`, each with its own endpoint, headers, sampling and \
         filter; a slow one never slows another. Drops are counted per destination.",
        item,
    )
}

fn resource() -> Value {
    let attrs = |description: &str| {
        map_of(
            description,
            "Attribute keys must not be empty.",
            json!({ "type": TEXT, "maxLength": 256, "description": "The value." }),
        )
    };
    object(
        "Resource attributes on every exported span and log record.",
        vec![
            ("environment", not_blank("`deployment.environment.name`.")),
            (
                "instance_id",
                not_blank("`service.instance.id`; default `{hostname}-{pid}`."),
            ),
            ("region", not_blank("`cloud.region`.")),
            (
                "version",
                not_blank("`service.version`; default Sluice's own version."),
            ),
            (
                "attributes",
                attrs("Any other resource attribute; wins over `OTEL_RESOURCE_ATTRIBUTES`."),
            ),
        ],
        &[],
    )
}

fn redact_name(rule: &RedactRule) -> Value {
    match rule {
        RedactRule::Email => json!("email"),
        RedactRule::Card => json!("card"),
        RedactRule::ApiKey => json!("api_key"),
        RedactRule::Regex(re) => json!({ "regex": re }),
    }
}

fn otlp() -> Value {
    let d = OtlpConfig::new("", OtlpProtocol::Grpc);
    let http = [OtlpProtocol::HttpProtobuf.as_str(), "http/protobuf"];
    let mut otlp = object(
        "Where spans go. Without it no spans are exported.",
        vec![
            (
                "endpoint",
                pattern(
                    "The collector's URL, e.g. `http://127.0.0.1:4317` for grpc or \
                     `http://127.0.0.1:4318` for http (`/v1/traces` is appended when \
                     missing). No user info, query or fragment; a gRPC endpoint has no path, \
                     and OTLP/HTTP takes http:// only.",
                    HTTP_URL,
                ),
            ),
            (
                "protocol",
                with_default(
                    string_enum(
                        "`grpc` (OTLP/gRPC, usually port 4317) or `http` (OTLP/HTTP with \
                         protobuf bodies, usually port 4318; `http/protobuf` is the same).",
                        &[OtlpProtocol::Grpc.as_str(), http[0], http[1]],
                    ),
                    json!(d.protocol.as_str()),
                ),
            ),
            (
                "timeout",
                duration(
                    "Per export of a batch, its retries included; at most 1h.",
                    Zero::Rejected,
                    Some(d.timeout),
                ),
            ),
            (
                "queue_size",
                int(
                    "Spans waiting for export; beyond it they are dropped (and counted).",
                    1,
                    Some(1 << 20),
                    Some(d.queue_size as u64),
                ),
            ),
            (
                "batch_size",
                int(
                    "Spans per export call.",
                    1,
                    Some(65536),
                    Some(d.batch_size as u64),
                ),
            ),
            (
                "export_interval",
                duration(
                    "How long a part-filled batch waits; at most 1h.",
                    Zero::Rejected,
                    Some(d.export_interval),
                ),
            ),
        ],
        &["endpoint"],
    );
    insert(
        &mut otlp,
        "allOf",
        json!([{
            "if": {
                "properties": { "protocol": { "enum": http } },
                "required": ["protocol"],
            },
            "then": { "properties": { "endpoint": { "pattern": PLAIN_HTTP_URL } } },
            "else": { "properties": { "endpoint": { "pattern": URL_WITHOUT_PATH } } },
        }]),
    );
    otlp
}

fn sample() -> Value {
    let d = SampleConfig::default();
    let keep: Vec<&str> = KeepRule::ALL.iter().map(|k| k.as_str()).collect();
    let keep_default: Vec<&str> = d.keep.iter().map(|k| k.as_str()).collect();
    object(
        "Which requests' spans are kept. Every request matching a rule of `keep` is kept \
         (decided when it has ended); of the others, a `head_ratio` share, decided from the \
         trace id so that all spans of a trace agree.",
        vec![
            (
                "head_ratio",
                number(
                    "Share of the other requests kept.",
                    Bound::Inclusive(0.0),
                    Some(1.0),
                    Some(d.head_ratio),
                ),
            ),
            (
                "keep",
                with_default(
                    list(
                        "Reasons to keep a request's spans whatever `head_ratio` says.",
                        string_enum(
                            "`error`: it or one of its upstream attempts failed; `slow`: longer \
                             than `slow` (or its route's); `expensive`: cost more than \
                             `expensive_usd`; `remediated`: a remediation changed how it was \
                             served; `judged`: the judge scored it.",
                            &keep,
                        ),
                    ),
                    json!(keep_default),
                ),
            ),
            (
                "slow",
                duration(
                    "Over this a request is slow; routes may set their own \
                     (`telemetry: { slow: … }`).",
                    Zero::Rejected,
                    Some(d.slow),
                ),
            ),
            (
                "expensive_usd",
                number(
                    "Over this cost (USD, from the catalog's prices) a request is expensive.",
                    Bound::Inclusive(0.0),
                    None,
                    Some(d.expensive_usd),
                ),
            ),
        ],
        &[],
    )
}

fn providers() -> Value {
    let kinds: Vec<&str> = KIND_FIELDS.iter().map(|(k, _)| *k).collect();
    let all_fields: Vec<&str> = {
        let mut all: Vec<&str> = KIND_FIELDS
            .iter()
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let token = |description: &str| pattern(description, TOKEN);
    let mut provider = object(
        "An upstream API. `kind` says which fields follow: `base_url`, `api_key_env` and \
         `connect_timeout` for every HTTP kind; `ttft_ms` and `tokens_per_s` for mock; \
         `anthropic_version` and `default_max_tokens` for anthropic; `api_version`, \
         `project` and `location` for gemini; `deployment` and `api_version` for \
         azure_openai; `region` and the `aws_*_env` variables for bedrock.",
        vec![
            (
                "kind",
                string_enum(
                    "`openai`: an OpenAI-compatible HTTP API (OpenAI, vLLM, Ollama, Together, \
                     Groq, …). `anthropic`: Anthropic's Messages API. `gemini`: the Gemini API, \
                     or Vertex AI with `project` and `location`. `azure_openai`: Azure OpenAI \
                     deployments. `bedrock`: Amazon Bedrock Converse, signed with SigV4. \
                     `mock`: the built-in mock provider, for tests, demos and load tests \
                     (streams made-up text, no network, no key).",
                    &kinds,
                ),
            ),
            (
                "base_url",
                pattern(
                    "Where the API lives: http:// or https://, a host, an optional port and \
                     path; no user info, query or fragment. Defaults: openai \
                     `https://api.openai.com/v1`, anthropic `https://api.anthropic.com`, \
                     gemini `https://generativelanguage.googleapis.com` (Vertex AI: the \
                     location's host), bedrock `https://bedrock-runtime.{region}.amazonaws.com`; \
                     required for azure_openai (`https://NAME.openai.azure.com`).",
                    HTTP_URL,
                ),
            ),
            (
                "api_key_env",
                pattern(
                    "The NAME of the environment variable that holds the API key, never the \
                     key itself: sent as `authorization: Bearer` (openai; gemini on Vertex AI, \
                     an access token; bedrock, a Bedrock API key instead of SigV4), \
                     `x-api-key` (anthropic), `x-goog-api-key` (gemini) or `api-key` \
                     (azure_openai). When it is unset Sluice warns and the provider answers \
                     503.",
                    ENV_VAR,
                ),
            ),
            (
                "connect_timeout",
                duration(
                    "HTTP kinds. How long connecting may take.",
                    Zero::Rejected,
                    Some(DEFAULT_CONNECT_TIMEOUT),
                ),
            ),
            (
                "headers",
                map_of(
                    "HTTP kinds. Extra headers sent with every request to this provider \
                     (e.g. `OpenAI-Organization`). A value is literal text, or `{ env: NAME }` \
                     to read it from an environment variable at load; such values are shown \
                     as `***`. Headers Sluice writes itself (host, authorization, \
                     content-type, x-api-key, anthropic-version, …) cannot be set.",
                    "A header name: letters, digits and `-`.",
                    json!({
                        "oneOf": [
                            { "type": "string", "description": "The header's value, printable ASCII." },
                            variant_map(
                                "Read the value from an environment variable at load.",
                                vec![("env", pattern("The NAME of the environment variable.", ENV_VAR))],
                                &["env"],
                            ),
                        ],
                    }),
                ),
            ),
            (
                "ca_file",
                not_blank(
                    "HTTP kinds, https only (the provider's or the proxy's). A PEM bundle of \
                     CA certificates trusted for this provider and its https:// proxy (a \
                     corporate TLS-inspection CA), added to the system roots. Read again when \
                     the file changes (on the policy watcher's tick, or a reload); a bundle \
                     that does not load keeps the previous trust.",
                ),
            ),
            (
                "ca_replaces_roots",
                boolean(
                    "HTTP kinds. Trust only `ca_file`, not the system roots.",
                    false,
                ),
            ),
            ("proxy", proxy()),
            (
                "pool_size",
                int(
                    "HTTP kinds. Idle connections kept for this provider, in a pool of \
                     its own. Default: the shared pool of `server.upstream_pool_size`.",
                    1,
                    Some(MAX_POOL_SIZE.unsigned_abs()),
                    None,
                ),
            ),
            (
                "idle_timeout",
                duration(
                    "HTTP kinds. How long an idle pooled connection is kept; at most 1h. \
                     Default 90s.",
                    Zero::Rejected,
                    None,
                ),
            ),
            (
                "tcp_keepalive",
                duration(
                    "HTTP kinds. TCP keepalive idle time on this provider's connections \
                     (probes every 5s after it, 3 of them); at most 1h. Default: off.",
                    Zero::Rejected,
                    None,
                ),
            ),
            (
                "tls_server_name",
                pattern(
                    "HTTP kinds, https only. The name TLS asks for (SNI) and checks the \
                     certificate against, instead of the base_url's host: for providers \
                     reached by IP address.",
                    "^[A-Za-z0-9.-]+$",
                ),
            ),
            (
                "compat",
                object(
                    "kind: openai. What an OpenAI-compatible server (vLLM, Ollama, TGI, \
                     Together, Groq, …) needs changed in the request body. The default changes \
                     nothing.",
                    vec![
                        (
                            "stream_usage",
                            boolean(
                                "Add `stream_options.include_usage` to streams so the server \
                                 reports usage; false for servers that refuse the field \
                                 (Sluice then counts the tokens itself).",
                                true,
                            ),
                        ),
                        (
                            "max_tokens_field",
                            string_enum(
                                "Send the client's output cap under this name: `max_tokens` for \
                                 servers that predate `max_completion_tokens`.",
                                &["max_tokens", "max_completion_tokens"],
                            ),
                        ),
                        (
                            "developer_as_system",
                            boolean("Send `developer` messages as `system` messages.", false),
                        ),
                        (
                            "drop_fields",
                            list(
                                "Top-level request fields removed before sending (ones the \
                                 server refuses); not model, messages, prompt, input or stream.",
                                pattern("A top-level field name.", "^[A-Za-z0-9_]+$"),
                            ),
                        ),
                    ],
                    &[],
                ),
            ),
            (
                "http_version",
                json!({
                    "description": "HTTP kinds. `http1` (default): HTTP/1.1, one request per \
                     pooled connection at a time. `h2`: HTTP/2, many concurrent requests as \
                     streams of one connection (ALPN over https; prior knowledge, h2c, to an \
                     http:// base_url, not through a proxy). `auto`: HTTP/2 when the \
                     provider's ALPN answer picks it, else HTTP/1.1 (https only).",
                    "enum": ["http1", "h2", "auto"],
                    "default": "http1",
                }),
            ),
            (
                "ttft_ms",
                int(
                    "kind: mock. Milliseconds before the first token.",
                    0,
                    Some(600_000),
                    Some(DEFAULT_MOCK_TTFT_MS.unsigned_abs()),
                ),
            ),
            (
                "tokens_per_s",
                number(
                    "kind: mock. Streaming speed after the first token.",
                    Bound::Exclusive(0.0),
                    None,
                    Some(DEFAULT_MOCK_TOKENS_PER_S),
                ),
            ),
            (
                "anthropic_version",
                with_default(
                    token("kind: anthropic. The `anthropic-version` header."),
                    json!(DEFAULT_ANTHROPIC_VERSION),
                ),
            ),
            (
                "default_max_tokens",
                int(
                    "kind: anthropic. `max_tokens` sent when the client sends none \
                     (Anthropic requires it).",
                    1,
                    Some(1_000_000),
                    Some(DEFAULT_ANTHROPIC_MAX_TOKENS.unsigned_abs()),
                ),
            ),
            (
                "api_version",
                token(
                    "kind: gemini, the API version in the path (default `v1beta`, or `v1` on \
                     Vertex AI); kind: azure_openai, the `api-version` of the classic \
                     deployments API (without it, the v1 API).",
                ),
            ),
            (
                "project",
                token(
                    "kind: gemini. The Google Cloud project: Vertex AI instead of the Gemini API.",
                ),
            ),
            (
                "location",
                token(
                    "kind: gemini. The Vertex AI location (`us-central1`, `global`, `us`, `eu`); \
                     with `project`.",
                ),
            ),
            (
                "deployment",
                token(
                    "kind: azure_openai. The deployment name; default: the model's \
                     `upstream_model`.",
                ),
            ),
            (
                "region",
                token("kind: bedrock (required). The AWS region, e.g. `us-east-1`."),
            ),
            (
                "aws_access_key_id_env",
                pattern(
                    "kind: bedrock. The variable holding the access key id for SigV4 \
                     (default `AWS_ACCESS_KEY_ID`).",
                    ENV_VAR,
                ),
            ),
            (
                "aws_secret_access_key_env",
                pattern(
                    "kind: bedrock. The variable holding the secret access key (default \
                     `AWS_SECRET_ACCESS_KEY`).",
                    ENV_VAR,
                ),
            ),
            (
                "aws_session_token_env",
                pattern(
                    "kind: bedrock. The variable holding a session token, for temporary \
                     credentials (default `AWS_SESSION_TOKEN`, read when set).",
                    ENV_VAR,
                ),
            ),
        ],
        &["kind"],
    );
    // A field of another kind is an error, but `null` (absent) is not.
    let mut rules: Vec<Value> = KIND_FIELDS
        .iter()
        .map(|(kind, own)| {
            let absent: Map<String, Value> = all_fields
                .iter()
                .filter(|f| !own.contains(f))
                .map(|f| {
                    let only: Vec<&str> = KIND_FIELDS
                        .iter()
                        .filter(|(_, fields)| fields.contains(f))
                        .map(|(k, _)| *k)
                        .collect();
                    let only = format!("Only for kind: {}.", only.join(", "));
                    (
                        (*f).to_owned(),
                        json!({ "type": "null", "description": only }),
                    )
                })
                .collect();
            let mut then = json!({ "properties": absent });
            let needs: &[&str] = match *kind {
                "azure_openai" => &["base_url"],
                "bedrock" => &["region"],
                _ => &[],
            };
            for f in needs {
                then["properties"][*f] = json!({ "type": "string" });
            }
            if !needs.is_empty() {
                then["required"] = json!(needs);
            }
            json!({
                "if": { "properties": { "kind": { "const": kind } }, "required": ["kind"] },
                "then": then,
            })
        })
        .collect();
    let set = |f: &str| json!({ "properties": { f: { "type": "string" } }, "required": [f] });
    // Vertex AI takes both `project` and `location`, or neither.
    rules.push(json!({ "if": set("project"), "then": set("location") }));
    rules.push(json!({ "if": set("location"), "then": set("project") }));
    // Bedrock signs with AWS credentials or sends an API key, not both.
    for f in [
        "aws_access_key_id_env",
        "aws_secret_access_key_env",
        "aws_session_token_env",
    ] {
        rules.push(json!({
            "if": set("api_key_env"),
            "then": { "properties": { f: { "type": "null", "description": "Not with `api_key_env`." } } },
        }));
    }
    insert(&mut provider, "allOf", json!(rules));
    let mut map = map_of(
        "Upstream APIs by name; at least one.",
        "Provider names must not be empty.",
        provider,
    );
    insert(&mut map, "minProperties", json!(1));
    map
}

fn proxy() -> Value {
    object(
        "HTTP kinds. An HTTP(S) egress proxy: CONNECT tunnels for https providers, \
         absolute-form requests for http ones. When absent, `HTTPS_PROXY` / `HTTP_PROXY` \
         (and `NO_PROXY`) from the environment apply, except to loopback providers.",
        vec![
            (
                "url",
                pattern(
                    "`http://host:port` or `https://host:port` of the proxy; no user info \
                     (see `credentials_env`). An https:// proxy is reached over TLS, its \
                     certificate checked against the system roots and the provider's \
                     `ca_file`; CONNECT (or a plain request) then runs inside that TLS.",
                    "^[hH][tT][tT][pP][sS]?://[^@/]+/?$",
                ),
            ),
            (
                "credentials_env",
                pattern(
                    "The NAME of the environment variable holding `user:password`, sent as \
                     `Proxy-Authorization: Basic`. Needs `url`.",
                    ENV_VAR,
                ),
            ),
            (
                "no_proxy",
                list(
                    "Hosts reached directly, replacing `NO_PROXY`: a host or `.domain` (with \
                     its subdomains), an IP, a CIDR block, optionally `:port`; `*` for all.",
                    not_blank("One entry."),
                ),
            ),
        ],
        &[],
    )
}

fn models() -> Value {
    let kinds = [ModelKind::Chat.as_str(), ModelKind::Embedding.as_str()];
    let model = object(
        "A catalog model: which provider serves it, under which name, and what it costs.",
        vec![
            (
                "provider",
                text("The name of a provider under `providers`."),
            ),
            (
                "upstream_model",
                not_blank(
                    "The model name sent to the provider. Defaults to the catalog name (the \
                     key of this entry).",
                ),
            ),
            (
                "kind",
                with_default(
                    string_enum(
                        "What the model answers: chat (and text) completions or embeddings. A \
                         route's targets and fallbacks must all be of one kind.",
                        &kinds,
                    ),
                    json!(ModelKind::Chat.as_str()),
                ),
            ),
            (
                "pricing",
                object(
                    "Prices in USD per million tokens, used for cost metrics and budgets.",
                    vec![
                        ("input", price("Per million prompt tokens.")),
                        ("output", price("Per million completion tokens.")),
                        (
                            "cached_input",
                            price(
                                "Per million cached prompt tokens, when the provider discounts \
                                 them.",
                            ),
                        ),
                        (
                            "cache_write_input",
                            price(
                                "Per million prompt tokens written to the provider's cache \
                                 (Anthropic, Bedrock), when it prices them apart; else `input`.",
                            ),
                        ),
                    ],
                    &["input", "output"],
                ),
            ),
        ],
        &["provider"],
    );
    let mut map = map_of(
        "The model catalog by name: every model a route may send traffic to. A catalog model \
         that no route claims answers under its own name. At least one.",
        "Model names must not be empty.",
        model,
    );
    insert(&mut map, "minProperties", json!(1));
    map
}

fn price(description: &str) -> Value {
    number(description, Bound::Inclusive(0.0), None, None)
}

fn routes() -> Value {
    list(
        "Routes turn the `model` a client asks for (or a header it sends) into catalog models \
         to call, in file order.",
        route(),
    )
}

fn route() -> Value {
    let retry = RetryConfig::default();
    let timeouts = Timeouts::default();
    let balances = [Balance::Weighted, Balance::LeastLatency, Balance::P2c].map(Balance::as_str);
    let mut route = object(
        "One route.",
        vec![
            ("name", not_blank("Unique among routes.")),
            ("match", route_match()),
            (
                "targets",
                min_items(
                    list(
                        "Catalog models picked by weight (and `balance`); at least one.",
                        object(
                            "A weighted target.",
                            vec![
                                ("model", text("The name of a model under `models`.")),
                                (
                                    "weight",
                                    int("Relative weight.", 1, Some(u64::from(u32::MAX)), Some(1)),
                                ),
                            ],
                            &["model"],
                        ),
                    ),
                    1,
                ),
            ),
            (
                "fallbacks",
                list(
                    "Catalog models tried in order when all targets fail.",
                    text("The name of a model under `models`."),
                ),
            ),
            (
                "retry",
                object(
                    "When and how often the route retries.",
                    vec![
                        (
                            "max_attempts",
                            int(
                                "Attempts in all, the first included.",
                                1,
                                Some(10),
                                Some(u64::from(retry.max_attempts)),
                            ),
                        ),
                        (
                            "on",
                            with_default(
                                list("Which failures are retried.", retry_on()),
                                json!(retry.on.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
                            ),
                        ),
                        (
                            "max_retry_after",
                            duration(
                                "Longest `Retry-After` honoured before re-trying the same \
                                 provider; at most 1h.",
                                Zero::Allowed,
                                Some(retry.max_retry_after),
                            ),
                        ),
                        ("budget", retry_budget()),
                    ],
                    &[],
                ),
            ),
            (
                "timeouts",
                object(
                    "Per-route timeouts; none may be zero.",
                    vec![
                        (
                            "ttft",
                            duration(
                                "Until the response starts (the first SSE event when \
                                 streaming).",
                                Zero::Rejected,
                                Some(timeouts.ttft),
                            ),
                        ),
                        (
                            "idle",
                            duration(
                                "Longest silence between stream chunks.",
                                Zero::Rejected,
                                Some(timeouts.idle),
                            ),
                        ),
                        (
                            "total",
                            duration(
                                "The whole request, retries included.",
                                Zero::Rejected,
                                Some(timeouts.total),
                            ),
                        ),
                    ],
                    &[],
                ),
            ),
            (
                "telemetry",
                object(
                    "The route's own tail-sampling settings.",
                    vec![(
                        "slow",
                        duration(
                            "This route's \"slow request\" threshold; without it \
                             `telemetry.sample.slow` applies.",
                            Zero::Rejected,
                            None,
                        ),
                    )],
                    &[],
                ),
            ),
            ("cache", cache()),
            (
                "balance",
                with_default(
                    string_enum(
                        "How the route chooses among its targets: `weighted` (a smooth \
                         deterministic rotation by weight), `least_latency` (the lowest time \
                         to first token, EWMA) or `p2c` (of two targets drawn at random, the \
                         one with the better time to first token and fewer requests in \
                         flight).",
                        &balances,
                    ),
                    json!(Balance::default().as_str()),
                ),
            ),
            ("health", health()),
            ("judge", judge()),
            ("slos", slos()),
            ("remediation", remediation()),
        ],
        &["name", "match", "targets"],
    );
    // Remediation rules name the route's SLOs, and `cache_fallback` serves its cache.
    let rules_that = |rule: Value| {
        json!({
            "properties": { "remediation": { "type": "array", "contains": rule } },
            "required": ["remediation"],
        })
    };
    insert(
        &mut route,
        "allOf",
        json!([
            {
                "if": rules_that(json!({})),
                "then": {
                    "properties": { "slos": { "type": "array", "minItems": 1 } },
                    "required": ["slos"],
                },
            },
            {
                "if": rules_that(json!({
                    "properties": { "do": { "const": "cache_fallback" } },
                    "required": ["do"],
                })),
                "then": {
                    "properties": { "cache": { "type": "object" } },
                    "required": ["cache"],
                },
            },
        ]),
    );
    route
}

fn route_match() -> Value {
    let model = json!({
        "type": ["string", "integer", "array"],
        "description": "The `model` values of requests this route serves: one name or a \
            list. A name appears in at most one route (unless this route also needs a header); \
            it need not be in the catalog.",
        "pattern": NOT_BLANK,
        "items": not_blank("A requested model name."),
        "minItems": 1,
        "uniqueItems": true,
    });
    let credentials = CREDENTIAL_HEADERS
        .iter()
        .map(|h| case_insensitive(h))
        .collect::<Vec<_>>()
        .join("|");
    let header = object(
        "Requests that carry this header, e.g. `{ name: x-sluice-route, value: fast }`.",
        vec![
            (
                "name",
                json!({
                    "type": TEXT,
                    "description": "An HTTP header name, any case. `authorization`, \
                        `x-api-key` and `cookie` carry credentials and cannot select a route.",
                    "pattern": HEADER_NAME,
                    "not": {
                        "type": "string",
                        "pattern": format!(r"^\s*(?:{credentials})\s*$"),
                    },
                }),
            ),
            (
                "value",
                json!({
                    "type": TEXT,
                    "description": "The exact header value: visible ASCII and spaces.",
                    "pattern": VISIBLE_ASCII,
                }),
            ),
        ],
        &["name", "value"],
    );
    let present = |field: &str| {
        json!({
            "required": [field],
            "properties": { field: { "not": { "type": "null" } } },
        })
    };
    let mut m = object(
        "Which requests the route serves: `model`, `header` or both, e.g. \
         `{ model: gpt-4o }` or `{ header: { name: x-sluice-route, value: fast } }`.",
        vec![("model", model), ("header", header)],
        &[],
    );
    insert(
        &mut m,
        "anyOf",
        json!([present("model"), present("header")]),
    );
    m
}

fn retry_on() -> Value {
    let mut on: Vec<Value> = RetryOn::ALL.iter().map(|r| json!(r.as_str())).collect();
    // YAML reads an unquoted 429 as a number; the parser takes its text.
    on.push(json!(429));
    json!({
        "type": ["string", "integer"],
        "description": "`connect` (the connection could not be made), `timeout`, `429` (rate \
            limited) or `5xx` (server error).",
        "enum": on,
    })
}

fn retry_budget() -> Value {
    let d = RetryBudget::default();
    object(
        "How many retries the route may add to its traffic: a share of the requests plus a \
         floor.",
        vec![
            (
                "ratio",
                number(
                    "Retries per request over the last 10 s.",
                    Bound::Inclusive(0.0),
                    Some(10.0),
                    Some(d.ratio),
                ),
            ),
            (
                "min_per_s",
                number(
                    "Retries per second allowed whatever the traffic.",
                    Bound::Inclusive(0.0),
                    Some(100_000.0),
                    Some(d.min_per_s),
                ),
            ),
        ],
        &[],
    )
}

fn cache() -> Value {
    object(
        "Exact-match response cache, per tenant: a repeated request gets the stored answer \
         (JSON or SSE, byte for byte) with `x-sluice-cache: hit` and no provider call. Memory \
         for all routes together: `server.cache_max_bytes`.",
        vec![
            (
                "ttl",
                duration(
                    "How long an answer is served from the cache; at most 7 days.",
                    Zero::Rejected,
                    None,
                ),
            ),
            (
                "only_deterministic",
                boolean(
                    "Cache chat and completion answers only when the request asked for \
                     `temperature: 0`; embeddings are deterministic and always cached.",
                    true,
                ),
            ),
            (
                "max_stale",
                duration(
                    "How long past `ttl` an answer is kept, to be served only when the \
                     cache-fallback remediation is on (never as a normal hit); at most 5 weeks.",
                    Zero::Allowed,
                    Some(Duration::ZERO),
                ),
            ),
        ],
        &["ttl"],
    )
}

fn health() -> Value {
    let d = HealthConfig::default();
    object(
        "Passive health checks of the route's targets: when a target is taken out, and for \
         how long.",
        vec![
            (
                "consecutive_failures",
                int(
                    "Failures in a row that eject a target.",
                    1,
                    Some(1000),
                    Some(u64::from(d.consecutive_failures)),
                ),
            ),
            (
                "failure_ratio",
                number(
                    "Share of failed requests over `window` that ejects a target.",
                    Bound::Inclusive(0.01),
                    Some(1.0),
                    Some(d.failure_ratio),
                ),
            ),
            (
                "window",
                duration(
                    "The window of `failure_ratio`; at most 1h.",
                    Zero::Rejected,
                    Some(d.window),
                ),
            ),
            (
                "min_requests",
                int(
                    "Requests in the window before `failure_ratio` applies.",
                    1,
                    Some(1_000_000),
                    Some(u64::from(d.min_requests)),
                ),
            ),
            (
                "base_ejection",
                duration(
                    "The first ejection's length; each repeat doubles it. At most 1h.",
                    Zero::Rejected,
                    Some(d.base_ejection),
                ),
            ),
            (
                "max_ejection",
                duration(
                    "Longest ejection: at least `base_ejection` (which it follows when that is \
                     longer than the default), at most 24h.",
                    Zero::Rejected,
                    Some(d.max_ejection),
                ),
            ),
            (
                "max_ejected_share",
                number(
                    "Most of the route's targets that may be out at once; never the last.",
                    Bound::Inclusive(0.0),
                    Some(1.0),
                    Some(d.max_ejected_share),
                ),
            ),
        ],
        &[],
    )
}

fn keys() -> Value {
    let key = object(
        "A virtual key. Clients send `Authorization: Bearer <key>`; only its SHA-256 is \
         stored here.",
        vec![
            (
                "name",
                not_blank("Unique among keys; used in logs and metrics."),
            ),
            (
                "key_sha256",
                pattern(
                    "The SHA-256 of the plaintext key as 64 hex characters (`sluice hash-key` \
                     prints it). Every key needs its own.",
                    SHA256_HEX,
                ),
            ),
            (
                "tenant",
                not_blank("Who the key's usage is billed to, in metrics and budgets."),
            ),
            ("limits", limits("Per-key limits over a rolling minute.")),
            (
                "models",
                list(
                    "Public model names the key may use (route `match` names or catalog \
                     names); absent or empty means all.",
                    text("A model name."),
                ),
            ),
            (
                "routes",
                list(
                    "Routes (or catalog models) the key may use; absent or empty means all.",
                    text("A route name or catalog model name."),
                ),
            ),
            (
                "priority",
                int(
                    "Higher is more important; load shedding refuses the lowest first.",
                    0,
                    Some(9),
                    Some(5),
                ),
            ),
            (
                "expires",
                pattern(
                    "After this instant (UTC) the key is refused, e.g. \
                     `2027-01-31T00:00:00Z`.",
                    DATE_TIME,
                ),
            ),
        ],
        &["name", "key_sha256", "tenant"],
    );
    min_items(list("Virtual keys; at least one.", key), 1)
}

fn limits(description: &str) -> Value {
    object(
        &format!(
            "{description} Over either, requests get OpenAI's 429 with retry-after. Absent \
             means unlimited."
        ),
        vec![
            (
                "rpm",
                int("Requests per minute.", 1, Some(u64::from(u32::MAX)), None),
            ),
            (
                "tpm",
                int(
                    "Tokens (input + output, as the provider reported them) per minute.",
                    1,
                    None,
                    None,
                ),
            ),
        ],
        &[],
    )
}

fn admin() -> Value {
    object(
        "Who may use the admin routes (`/admin/*` on `server.admin_listen`). /metrics, \
         /healthz and /readyz need no token.",
        vec![(
            "tokens",
            list(
                "Bearer tokens, stored as SHA-256. Without any, every /admin route answers \
                 401.",
                object(
                    "One admin token.",
                    vec![
                        (
                            "name",
                            not_blank(
                                "Unique among tokens; recorded with what the token's holder \
                                 does.",
                            ),
                        ),
                        (
                            "token_sha256",
                            pattern(
                                "The SHA-256 of the token as 64 hex characters (`sluice \
                                 hash-key` prints it). Every token needs its own.",
                                SHA256_HEX,
                            ),
                        ),
                    ],
                    &["name", "token_sha256"],
                ),
            ),
        )],
        &[],
    )
}

fn tenants() -> Value {
    let usd = |description: &str| number(description, Bound::Inclusive(0.0), Some(1e12), None);
    map_of(
        "Tenants (the `tenant` of keys) with limits shared by all their keys and USD budgets.",
        "Tenant names must not be empty.",
        object(
            "One tenant.",
            vec![
                (
                    "limits",
                    limits("For all the tenant's keys together, over a rolling minute."),
                ),
                (
                    "budget",
                    object(
                        "Spend limits in US dollars, from the catalog's prices.",
                        vec![
                            ("usd_per_day", usd("Per UTC day.")),
                            ("usd_per_month", usd("Per UTC calendar month.")),
                        ],
                        &[],
                    ),
                ),
                (
                    "attributes",
                    map_of(
                        "Attributes on every span and OTLP log record of the tenant's \
                         requests (never on metric labels).",
                        "Attribute keys must not be empty.",
                        json!({ "type": TEXT, "maxLength": 256, "description": "The value." }),
                    ),
                ),
            ],
            &[],
        ),
    )
}

fn slo_settings() -> Value {
    let d = SloSettings::default();
    object(
        "How every route's SLOs are evaluated (see a route's `slos` and `remediation`).",
        vec![
            (
                "window_scale",
                number(
                    "Multiplies every SLO window (the burn-rate windows 5m … 3d and each SLO's \
                     own), so drills and tests run a month in minutes; leave it at 1 in \
                     production.",
                    Bound::Inclusive(1e-6),
                    Some(1.0),
                    Some(d.window_scale),
                ),
            ),
            (
                "evaluate_every",
                duration(
                    "How often burn rates are evaluated and remediation rules decide; at most \
                     1m.",
                    Zero::Rejected,
                    Some(d.evaluate_every),
                ),
            ),
            (
                "snapshot_every",
                duration(
                    "How often SLO counts are saved to `server.data_dir` (they survive a \
                     restart); at most 1h.",
                    Zero::Rejected,
                    Some(d.snapshot_every),
                ),
            ),
        ],
        &[],
    )
}

fn incidents() -> Value {
    let push = |description: &str, url: &str| {
        object(
            description,
            vec![
                ("url", pattern(url, HTTP_URL)),
                (
                    "bearer_env",
                    pattern(
                        "The NAME of the environment variable that holds a bearer token to \
                         send, never the token itself. When it is unset Sluice warns and \
                         pushes without a token.",
                        ENV_VAR,
                    ),
                ),
            ],
            &["url"],
        )
    };
    object(
        "Where incident events (opened, action taken, resolved, …) are pushed, besides the \
         incident log in `server.data_dir` (GET /admin/incidents). Pushes are retried and \
         never on the request path.",
        vec![
            (
                "alertmanager",
                push(
                    "Alertmanager: each incident is posted as an alert.",
                    "Alertmanager's base URL, e.g. `http://alertmanager:9093` (alerts go to \
                     `/api/v2/alerts`): http:// or https://, a host, an optional port and \
                     path; no user info, query or fragment.",
                ),
            ),
            (
                "webhook",
                push(
                    "A URL that receives each incident event as JSON.",
                    "Where events are posted, e.g. `https://hooks.example.com/sluice`: http:// \
                     or https://, a host, an optional port and path; no user info, query or \
                     fragment.",
                ),
            ),
        ],
        &[],
    )
}

fn judge() -> Value {
    let rubric_name = format!("^[a-z][a-z0-9_]{{0,{}}}$", MAX_RUBRIC_NAME - 1);
    let builtins = BUILTIN_RUBRICS
        .iter()
        .map(|r| format!("{r}$"))
        .collect::<Vec<_>>()
        .join("|");
    let rubric = json!({
        "description": "What the judge assesses: a built-in rubric by name, or your own as \
            `{ name: tone, text: \"Is the answer polite?\" }`. Scores go to \
            sluice_judge_score{rubric}.",
        "default": "helpfulness",
        "oneOf": [
            string_enum(
                "A built-in rubric: `helpfulness`, `relevance`, `faithfulness` (to the \
                 conversation) or `safety`.",
                &BUILTIN_RUBRICS,
            ),
            variant_map(
                "Your own rubric.",
                vec![
                    (
                        "name",
                        json!({
                            "type": "string",
                            "description": format!(
                                "snake_case, 1 to {MAX_RUBRIC_NAME} characters (it is a metric \
                                 label), not the name of a built-in rubric."
                            ),
                            "pattern": rubric_name,
                            "not": { "pattern": format!("^(?:{builtins})") },
                        }),
                    ),
                    (
                        "text",
                        json!({
                            "type": "string",
                            "description": format!(
                                "What to assess, in words the judge model is given; 1 to \
                                 {MAX_RUBRIC_TEXT} bytes."
                            ),
                            "pattern": NOT_BLANK,
                            "maxLength": MAX_RUBRIC_TEXT,
                        }),
                    ),
                ],
                &["name", "text"],
            ),
        ],
    });
    object(
        "LLM-as-judge, off the request path: a share of the route's answers (and every \
         remediated or downgraded one, up to a cap) is scored by a judge model called through \
         Sluice's own routing under the tenant `judge`. Scores feed sluice_judge_score, GET \
         /admin/judge/recent and `judge_score_at_least` SLOs.",
        vec![
            (
                "model",
                text(
                    "The catalog model that judges: a chat model under `models`, e.g. \
                     `gpt-4o-mini`.",
                ),
            ),
            (
                "sample",
                number(
                    "Share of the route's answers judged.",
                    Bound::Inclusive(0.0),
                    Some(1.0),
                    Some(0.0),
                ),
            ),
            (
                "always",
                object(
                    "Answers judged whatever `sample` says.",
                    vec![
                        (
                            "remediated",
                            boolean("Judge every answer a remediation action touched.", true),
                        ),
                        (
                            "downgraded",
                            boolean("Judge every answer served by a downgraded model.", true),
                        ),
                        (
                            "per_minute",
                            int(
                                "At most this many such answers judged per minute; 0 turns \
                                 these rules off.",
                                0,
                                Some(100_000),
                                Some(30),
                            ),
                        ),
                    ],
                    &[],
                ),
            ),
            ("rubric", rubric),
            (
                "max_capture_bytes",
                int(
                    "Bytes of text judged per side (the conversation, the answer); longer text \
                     is cut.",
                    MIN_CAPTURE,
                    Some(MAX_CAPTURE.unsigned_abs()),
                    Some(16 * 1024),
                ),
            ),
            (
                "concurrency",
                int("Judge calls of this route at once.", 1, Some(256), Some(4)),
            ),
            (
                "timeout",
                duration(
                    "How long one judge call may take; at most 10m.",
                    Zero::Rejected,
                    Some(Duration::from_secs(30)),
                ),
            ),
            (
                "rpm",
                int(
                    "Judge calls per minute at most; absent means no limit.",
                    1,
                    Some(10_000),
                    None,
                ),
            ),
            (
                "usd_per_day",
                number(
                    "USD spent on judge calls per UTC day at most (from the catalog's prices); \
                     absent means no limit.",
                    Bound::Inclusive(0.0),
                    Some(1e9),
                    None,
                ),
            ),
        ],
        &["model"],
    )
}

fn slos() -> Value {
    let sli = json!({
        "description": "What makes a request good: `errors` (5xx, timeouts and cut streams \
            are bad; client mistakes and deliberate refusals count for nothing), or one of \
            `{ ttft_below: 2s }`, `{ duration_below: 30s }`, `{ judge_score_at_least: 0.7 }`.",
        "oneOf": [
            string_enum("Requests that did not fail are good.", &["errors"]),
            variant_map(
                "A threshold; exactly one.",
                vec![
                    (
                        "ttft_below",
                        duration(
                            "Good when the first token (the whole answer when not \
                             streaming) came sooner; at most 1h.",
                            Zero::Rejected,
                            None,
                        ),
                    ),
                    (
                        "duration_below",
                        duration(
                            "Good when the whole request took less; at most 1h.",
                            Zero::Rejected,
                            None,
                        ),
                    ),
                    (
                        "judge_score_at_least",
                        number(
                            "Good when the judge's (or an app's feedback) score is at least \
                             this.",
                            Bound::Inclusive(0.0),
                            Some(1.0),
                            None,
                        ),
                    ),
                ],
                &[],
            ),
        ],
    });
    let mut objective = number(
        "The target share of good requests, in percent, strictly between 0 and 100 (e.g. \
         99.5).",
        Bound::Exclusive(0.0),
        None,
        None,
    );
    insert(&mut objective, "exclusiveMaximum", json!(100));
    list(
        "Service-level objectives of this route. Each finished request counts as good, bad or \
         not at all for each; burn rates (sluice_slo_burn_rate) drive `remediation`.",
        object(
            "One SLO.",
            vec![
                (
                    "name",
                    json!({
                        "type": ["string", "integer", "boolean"],
                        "description": "Unique in this route; letters, digits, `_` and `-` \
                            only (it is a metric label).",
                        "pattern": "^[A-Za-z0-9_-]+$",
                    }),
                ),
                ("objective", objective),
                (
                    "window",
                    duration(
                        "The error budget's period; at most 90 days.",
                        Zero::Rejected,
                        Some(THIRTY_DAYS),
                    ),
                ),
                ("sli", sli),
                (
                    "min_events",
                    int(
                        "Below this many requests in a window its burn rate is unknown (and \
                         no rule acts on it).",
                        1,
                        Some(1_000_000),
                        Some(DEFAULT_MIN_EVENTS.unsigned_abs()),
                    ),
                ),
                ("runbook_url", runbook_url()),
            ],
            &["name", "objective", "sli"],
        ),
    )
}

fn runbook_url() -> Value {
    pattern(
        "Where responders read what to do; copied into incidents and alerts. An http:// or \
         https:// URL.",
        r"^\s*https?://",
    )
}

fn remediation() -> Value {
    let action = json!({
        "description": "What Sluice does: `failover`, `cache_fallback`, \
            `{ downgrade_to: [model, …] }` or `{ shed: { max_priority: 3 } }`.",
        "oneOf": [
            string_enum(
                "`failover`: take the burning target out (never the last one), keeping \
                 `probe_share` of its traffic on it. `cache_fallback`: serve stale cache \
                 entries (up to `cache.max_stale`) while nothing healthy is left; the route \
                 needs a `cache`.",
                &["failover", "cache_fallback"],
            ),
            variant_map(
                "An action with settings; exactly one.",
                vec![
                    (
                        "downgrade_to",
                        json!({
                            "type": ["string", "integer", "array"],
                            "description": "Serve from these catalog models instead, in \
                                order; of the route's kind.",
                            "items": text("The name of a model under `models`."),
                            "minItems": 1,
                        }),
                    ),
                    (
                        "shed",
                        variant_map(
                            "Refuse keys of low priority with 503 and retry-after.",
                            vec![(
                                "max_priority",
                                int(
                                    "Keys with this `priority` or lower are refused.",
                                    0,
                                    Some(9),
                                    None,
                                ),
                            )],
                            &["max_priority"],
                        ),
                    ),
                ],
                &[],
            ),
        ],
    });
    let mut guard = condition(
        "Only for `downgrade_to`: keep the substitute only while this SLO (a \
         `judge_score_at_least` one) holds.",
    );
    if let Some(p) = guard.pointer_mut("/properties/no_healthy_target") {
        *p = json!({ "type": "null", "description": "Only in `when`." });
    }
    let mut rule = object(
        "One remediation rule: when it fires, what it does, how long it holds.",
        vec![
            (
                "name",
                not_blank(
                    "Unique across all routes; names the rule in incidents and metrics. \
                         Defaults to `<route>#<index>`.",
                ),
            ),
            (
                "when",
                condition("When the rule fires: an SLO of this route and how fast it burns."),
            ),
            ("do", action),
            (
                "hold",
                duration(
                    "The action stays at least this long; at most 24h.",
                    Zero::Allowed,
                    Some(DEFAULT_HOLD),
                ),
            ),
            (
                "cooldown",
                duration(
                    "The original's 5-minute burn stays under 1 this long before the \
                         action is undone; at most 24h.",
                    Zero::Allowed,
                    Some(DEFAULT_COOLDOWN),
                ),
            ),
            (
                "probe_share",
                number(
                    "Share of the affected traffic kept on the original to see it recover.",
                    Bound::Inclusive(0.0),
                    Some(0.5),
                    Some(DEFAULT_PROBE_SHARE),
                ),
            ),
            (
                "max_share",
                number(
                    "Most of the route's traffic the action may touch.",
                    Bound::Inclusive(0.0),
                    Some(1.0),
                    Some(1.0),
                ),
            ),
            (
                "dry_run",
                boolean(
                    "Decide and log every step, change nothing: try a rule out first.",
                    false,
                ),
            ),
            ("guard", guard),
            ("runbook_url", runbook_url()),
        ],
        &["when", "do"],
    );
    insert(
        &mut rule,
        "allOf",
        json!([{
            "if": {
                "properties": { "guard": { "type": "object" } },
                "required": ["guard"],
            },
            "then": {
                "properties": { "do": { "type": "object", "required": ["downgrade_to"] } },
            },
        }]),
    );
    list(
        "What Sluice does by itself when an SLO of this route burns too fast. Every step is \
         an incident event (GET /admin/incidents).",
        rule,
    )
}

/// A rule's `when` (and `guard`, which takes no `no_healthy_target`).
fn condition(description: &str) -> Value {
    let windows = ["5m", "30m", "1h", "6h", "1d", "3d", "slo"];
    let burn = json!({
        "description": "How fast the SLO's error budget burns: `page` (1h and 5m over 14.4, or \
            6h and 30m over 6), `ticket` (3d and 6h over 1), or \
            `{ window: 5m, above: 10 }`.",
        "default": "page",
        "oneOf": [
            string_enum(
                "Multi-window burn-rate alerts as in the SRE workbook.",
                &["page", "ticket"],
            ),
            variant_map(
                "One window's burn rate above a threshold.",
                vec![
                    (
                        "window",
                        string_enum(
                            "A burn-rate window, or `slo` for the SLO's own.",
                            &windows,
                        ),
                    ),
                    (
                        "above",
                        number(
                            "The burn rate (1 spends the budget exactly over the SLO's window).",
                            Bound::Exclusive(0.0),
                            None,
                            None,
                        ),
                    ),
                ],
                &["window", "above"],
            ),
        ],
    });
    let signals: Vec<&str> = AnomalySignalConfig::ALL.iter().map(|(n, _)| *n).collect();
    let mut v = object(
        description,
        vec![
            ("slo", text("The name of one of this route's `slos`.")),
            ("burn", burn),
            (
                "no_healthy_target",
                boolean(
                    "Also require that no target of the route is healthy (for \
                     `cache_fallback`).",
                    false,
                ),
            ),
            (
                "anomaly",
                string_enum(
                    "Instead of `slo`: holds while AIOps flags this signal of the route \
                     (needs `aiops.enabled`).",
                    &signals,
                ),
            ),
            (
                "min_score",
                number(
                    "With `anomaly`: only a flag at least this many spreads out of band.",
                    Bound::Inclusive(0.0),
                    Some(100.0),
                    Some(0.0),
                ),
            ),
        ],
        &["slo", "anomaly"],
    );
    // One of `slo` or `anomaly`, never both, and neither may be null; `burn` goes with `slo`
    // only. Under `if` so a nullable condition (`guard`) still takes null.
    if let Some(o) = v.as_object_mut() {
        o.remove("required");
    }
    insert(&mut v, "if", json!({ "type": "object" }));
    insert(
        &mut v,
        "then",
        json!({ "oneOf": [
            { "required": ["slo"], "not": { "required": ["anomaly"] } },
            { "required": ["anomaly"], "not": { "anyOf": [
                { "required": ["slo"] }, { "required": ["burn"] }
            ] } }
        ] }),
    );
    v
}

fn aiops() -> Value {
    let d = AiopsSettings::default();
    let secs = |v: Duration| Some(v);
    object(
        "AIOps: baselines learned per route, target and tenant for TTFT, time per output \
         token, duration, error ratio, tokens per request and spend per minute; anomalies \
         when a signal leaves its band (`sluice_anomaly_active`, `GET /admin/anomalies`, \
         `anomaly:` conditions of remediation rules); related alerts grouped into one \
         incident with a root-cause hint. On by default.",
        vec![
            (
                "enabled",
                boolean(
                    "Learn and detect. Off: no baselines, and no rule may watch an anomaly.",
                    d.enabled,
                ),
            ),
            (
                "interval",
                duration(
                    "The step of learning and detection (at most 1h).",
                    Zero::Rejected,
                    secs(d.interval),
                ),
            ),
            (
                "window",
                int(
                    "The detection window, in intervals.",
                    1,
                    Some(60),
                    Some(u64::from(d.window)),
                ),
            ),
            (
                "k",
                number(
                    "The band's half-width in spreads: larger flags less.",
                    Bound::Inclusive(1.0),
                    Some(20.0),
                    Some(d.k),
                ),
            ),
            (
                "hold",
                duration(
                    "How long a signal stays out of its band before it is flagged (at most 1d).",
                    Zero::Rejected,
                    secs(d.hold),
                ),
            ),
            (
                "clear",
                duration(
                    "How long a flagged signal stays back in its band before it clears (at \
                     most 1d).",
                    Zero::Rejected,
                    secs(d.clear),
                ),
            ),
            (
                "min_events",
                int(
                    "Fewer requests than this in the window: the value is unknown.",
                    1,
                    Some(1_000_000),
                    Some(u64::from(d.min_events)),
                ),
            ),
            (
                "warmup",
                int(
                    "Learning steps before a baseline is trusted.",
                    1,
                    Some(100_000),
                    Some(u64::from(d.warmup)),
                ),
            ),
            (
                "relearn_after",
                duration(
                    "A signal flagged this long is learned as the new normal (at most 30d).",
                    Zero::Rejected,
                    secs(d.relearn_after),
                ),
            ),
            (
                "max_tenants",
                int(
                    "Tenants with their own baselines; the rest share `other`.",
                    0,
                    Some(100_000),
                    Some(u64::from(d.max_tenants)),
                ),
            ),
            (
                "group_window",
                duration(
                    "Alerts that start within this of each other and share a provider, \
                     tenant, model or route are one incident (at most 1d).",
                    Zero::Rejected,
                    secs(d.group_window),
                ),
            ),
        ],
        &[],
    )
}

// === building blocks ===

/// Scalars YAML may write where the parser wants text: `tenant: 42` is the text `42`.
const TEXT: [&str; 3] = ["string", "number", "boolean"];

#[derive(Clone, Copy, PartialEq)]
enum Zero {
    Allowed,
    Rejected,
}

#[derive(Clone, Copy)]
enum Bound {
    Inclusive(f64),
    Exclusive(f64),
}

/// A closed object. Optional fields also accept `null`, which the parser reads as absent.
fn state() -> Value {
    object(
        "Where limits and budgets are counted. Without `redis` each replica counts on its own; \
         changes take a restart.",
        vec![(
            "redis",
            object(
                "Count per-key and per-tenant rpm/tpm and tenants' USD spend in one Redis shared \
                 by every replica.",
                vec![
                    (
                        "url",
                        pattern(
                            "`redis://host:port/db` (plain TCP, no credentials: the password \
                             comes from `password_env`).",
                            r"^\s*redis://[^@/\s]+(?:/[0-9]*)?\s*$",
                        ),
                    ),
                    (
                        "password_env",
                        pattern(
                            "The environment variable that holds Redis's password.",
                            ENV_VAR,
                        ),
                    ),
                    (
                        "key_prefix",
                        with_default(
                            pattern(
                                "Starts every key Sluice writes, so deployments can share a Redis.",
                                r"^[!-~]*$",
                            ),
                            json!(RedisConfig::DEFAULT_KEY_PREFIX),
                        ),
                    ),
                    (
                        "timeout",
                        duration(
                            "The longest a request waits for Redis before `fail` applies \
                             (at most 5s).",
                            Zero::Rejected,
                            Some(RedisConfig::DEFAULT_TIMEOUT),
                        ),
                    ),
                    (
                        "fail",
                        with_default(
                            string_enum(
                                "While Redis cannot be reached: `open` keeps serving with each \
                                 replica counting on its own, `closed` refuses limited requests \
                                 with 503.",
                                &["open", "closed"],
                            ),
                            json!(FailMode::default().as_str()),
                        ),
                    ),
                    (
                        "local_allowance",
                        int(
                            "Requests a replica leases from Redis per round trip for one key \
                             (valid for a second); 0 asks Redis for every request, exactly.",
                            0,
                            Some(u64::from(RedisConfig::MAX_LOCAL_ALLOWANCE)),
                            Some(0),
                        ),
                    ),
                    (
                        "share_cache",
                        boolean(
                            "Share routes' response caches through Redis: a replica's miss \
                             asks Redis (within `timeout`) before the provider, and answers it \
                             stores are written there for every replica, with their ttl.",
                            false,
                        ),
                    ),
                ],
                &["url"],
            ),
        )],
        &[],
    )
}

fn object(description: &str, properties: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .into_iter()
        .map(|(name, schema)| {
            let schema = if required.contains(&name) {
                schema
            } else {
                nullable(schema)
            };
            (name.to_owned(), schema)
        })
        .collect();
    let mut o = json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "properties": properties,
    });
    if !required.is_empty() {
        insert(&mut o, "required", json!(required));
    }
    o
}

/// The map form of a value the parser reads as one of several shapes (a name, or a map like
/// `{ window: 5m, above: 10 }`). Its fields are closed by `propertyNames` and typed under
/// `allOf` rather than by `properties` because the parser cannot name the fields such a map
/// takes (an unknown one "matches no variant"), so it is no section the tests can hold
/// against the parser; the tests check these forms one value at a time instead.
fn variant_map(description: &str, fields: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Value> = fields
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    let mut v = json!({
        "type": "object",
        "description": description,
        "propertyNames": { "enum": names },
        "additionalProperties": { "description": "A field named in `propertyNames`." },
        "allOf": [{ "properties": properties }],
    });
    if required.is_empty() {
        insert(&mut v, "minProperties", json!(1));
        insert(&mut v, "maxProperties", json!(1));
    } else {
        insert(&mut v, "required", json!(required));
    }
    v
}

/// A mapping from user-chosen names to `value`.
fn map_of(description: &str, name_rule: &str, value: Value) -> Value {
    json!({
        "type": "object",
        "description": description,
        "propertyNames": { "pattern": NOT_BLANK, "description": name_rule },
        "additionalProperties": value,
    })
}

fn list(description: &str, items: Value) -> Value {
    json!({ "type": "array", "description": description, "items": items })
}

fn min_items(mut list: Value, n: usize) -> Value {
    insert(&mut list, "minItems", json!(n));
    list
}

fn int(description: &str, min: i64, max: Option<u64>, default: Option<u64>) -> Value {
    let mut v = json!({ "type": "integer", "description": description, "minimum": min });
    if let Some(max) = max {
        insert(&mut v, "maximum", json!(max));
    }
    if let Some(default) = default {
        insert(&mut v, "default", json!(default));
    }
    v
}

fn number(description: &str, min: Bound, max: Option<f64>, default: Option<f64>) -> Value {
    let mut v = json!({ "type": "number", "description": description });
    match min {
        Bound::Inclusive(m) => insert(&mut v, "minimum", json!(m)),
        Bound::Exclusive(m) => insert(&mut v, "exclusiveMinimum", json!(m)),
    }
    if let Some(max) = max {
        insert(&mut v, "maximum", json!(max));
    }
    if let Some(default) = default {
        insert(&mut v, "default", json!(default));
    }
    v
}

fn duration(description: &str, zero: Zero, default: Option<Duration>) -> Value {
    let rule = match zero {
        Zero::Allowed => "",
        Zero::Rejected => " Longer than zero.",
    };
    let mut v = json!({
        "type": "string",
        "description": format!("{description}{rule} {DURATION_FORM}"),
        "pattern": DURATION,
    });
    if zero == Zero::Rejected {
        insert(&mut v, "allOf", json!([{ "pattern": NON_ZERO }]));
    }
    if let Some(d) = default {
        let text = if d.is_zero() {
            "0s".to_owned()
        } else {
            humantime::format_duration(d).to_string()
        };
        insert(&mut v, "default", json!(text));
    }
    v
}

fn boolean(description: &str, default: bool) -> Value {
    json!({ "type": "boolean", "description": description, "default": default })
}

fn string_enum(description: &str, values: &[&str]) -> Value {
    json!({ "type": "string", "description": description, "enum": values })
}

fn pattern(description: &str, pattern: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": pattern })
}

fn socket_addr(description: &str, default: &str) -> Value {
    with_default(
        pattern(
            &format!(
                "{description} An IP address and port like `0.0.0.0:8080` or `[::1]:8080` (no \
                 host names)."
            ),
            SOCKET_ADDR,
        ),
        json!(default),
    )
}

fn text(description: &str) -> Value {
    json!({ "type": TEXT, "description": description })
}

fn not_blank(description: &str) -> Value {
    json!({
        "type": TEXT,
        "description": format!("{description} Must not be empty."),
        "pattern": NOT_BLANK,
    })
}

fn with_default(mut v: Value, default: Value) -> Value {
    insert(&mut v, "default", default);
    v
}

/// Lets `v` also be `null`. Every keyword other than `type` and `enum` applies to one JSON
/// type only, so widening those two is enough.
fn nullable(mut v: Value) -> Value {
    let Some(o) = v.as_object_mut() else {
        return v;
    };
    match o.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            o.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) => types.push(json!("null")),
        _ => return json!({ "anyOf": [{ "type": "null" }, v] }),
    }
    if let Some(Value::Array(values)) = o.get_mut("enum") {
        values.push(Value::Null);
    }
    v
}

fn insert(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

/// `x-api-key` → `[xX]-[aA][pP][iI]-[kK][eE][yY]`: ECMA-262 patterns have no inline flags.
fn case_insensitive(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            } else if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("pattern compiles")
            .is_match(s)
    }

    #[test]
    fn duration_pattern_follows_humantime() {
        for ok in [
            "250ms", "10s", "1h 30m", "1h30m", " 5m ", "1.5s", "2 days", "10 s", "1µs",
        ] {
            assert!(matches(DURATION, ok), "{ok}");
            assert!(humantime::parse_duration(ok.trim()).is_ok(), "{ok}");
        }
        for bad in ["10", "s", "", "5 seconds please", "1.s", "-1s", "1x"] {
            assert!(!matches(DURATION, bad), "{bad}");
            assert!(humantime::parse_duration(bad.trim()).is_err(), "{bad}");
        }
        assert!(!matches(NON_ZERO, "0s 0ms") && !matches(NON_ZERO, "0.0s"));
        assert!(matches(NON_ZERO, "10s") && matches(NON_ZERO, "0.5s"));
    }

    #[test]
    fn nullable_widens_type_and_enum() {
        assert_eq!(
            nullable(json!({ "type": "string", "enum": ["a"] })),
            json!({ "type": ["string", "null"], "enum": ["a", null] })
        );
        assert_eq!(
            nullable(json!({ "type": ["string", "integer"] })),
            json!({ "type": ["string", "integer", "null"] })
        );
        assert_eq!(
            nullable(json!({ "oneOf": [] })),
            json!({ "anyOf": [{ "type": "null" }, { "oneOf": [] }] })
        );
    }

    #[test]
    fn case_insensitive_words() {
        assert_eq!(
            case_insensitive("x-api-key"),
            "[xX]-[aA][pP][iI]-[kK][eE][yY]"
        );
        assert!(matches(
            &format!("^{}$", case_insensitive("cookie")),
            "CooKie"
        ));
    }
}
