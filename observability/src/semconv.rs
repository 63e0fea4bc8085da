//! Every span and attribute name Sluice emits, in one file. Pure names: no SDK types.
//!
//! Sluice implements the OpenTelemetry GenAI semantic conventions of [`SEMCONV_VERSION`]
//! (development status). 1.41.0 is the last release that carries the GenAI conventions in
//! the main semantic-conventions repository, and the first with `gen_ai.request.stream`,
//! `gen_ai.response.time_to_first_chunk` and `gen_ai.usage.reasoning.output_tokens`; it
//! already has `gen_ai.provider.name` (1.37.0), content attributes (1.37.0),
//! `gen_ai.tool.definitions` (1.38.0) and the cache token counts (1.40.0). Spans carry
//! [`SCHEMA_URL`] on their instrumentation scope so a backend knows which names to expect.
//!
//! Names Sluice never emits: the deprecated `gen_ai.system` (replaced by
//! `gen_ai.provider.name`), `gen_ai.usage.prompt_tokens` / `gen_ai.usage.completion_tokens`
//! (replaced by `input_tokens` / `output_tokens`), `gen_ai.prompt` / `gen_ai.completion`
//! (replaced by `gen_ai.input.messages` / `gen_ai.output.messages`) and the
//! `gen_ai.openai.*` request/response attributes; see [`DEPRECATED`].
//!
//! Span names: `"{gen_ai.operation.name} {gen_ai.request.model}"`, or just the operation
//! when the model is unknown ([`span_name`]).

/// The GenAI semantic-conventions version implemented.
pub const SEMCONV_VERSION: &str = "1.41.0";
/// The schema URL of [`SEMCONV_VERSION`], set on the instrumentation scope.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";
/// The instrumentation scope name of Sluice's spans.
pub const SCOPE_NAME: &str = "sluice";

// === gen_ai.* (registry: docs/registry/attributes/gen-ai.md) ===

/// Required. `chat`, `text_completion`, `embeddings`.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// Required. The provider as the instrumentation knows it (see [`provider_name`]).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// Conditionally required. The model a request is made to.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// Conditionally required: only when the request streams (`true`); absent means not.
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
pub const GEN_AI_REQUEST_TOP_P: &str = "gen_ai.request.top_p";
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const GEN_AI_REQUEST_FREQUENCY_PENALTY: &str = "gen_ai.request.frequency_penalty";
pub const GEN_AI_REQUEST_PRESENCE_PENALTY: &str = "gen_ai.request.presence_penalty";
pub const GEN_AI_REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";
pub const GEN_AI_REQUEST_TOP_K: &str = "gen_ai.request.top_k";
pub const GEN_AI_REQUEST_SEED: &str = "gen_ai.request.seed";
pub const GEN_AI_REQUEST_CHOICE_COUNT: &str = "gen_ai.request.choice.count";
pub const GEN_AI_REQUEST_ENCODING_FORMATS: &str = "gen_ai.request.encoding_formats";
pub const GEN_AI_OUTPUT_TYPE: &str = "gen_ai.output.type";
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// A tool call's id (`call_…`), on a `gen_ai.tool.message` event per tool result the
/// request carries.
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// The event of one tool result in the request (the GenAI event of a `tool` message).
pub const GEN_AI_TOOL_MESSAGE: &str = "gen_ai.tool.message";
/// The event of one tool call in the answer, with `gen_ai.tool.call.id` and
/// `gen_ai.tool.name`.
pub const GEN_AI_TOOL_CALL: &str = "gen_ai.tool.call";
/// A tool's (function's) name.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
pub const GEN_AI_EMBEDDINGS_DIMENSION_COUNT: &str = "gen_ai.embeddings.dimension.count";
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// The event an evaluation of a response emits, and its attributes.
pub const GEN_AI_EVALUATION_RESULT: &str = "gen_ai.evaluation.result";
pub const GEN_AI_EVALUATION_NAME: &str = "gen_ai.evaluation.name";
pub const GEN_AI_EVALUATION_SCORE_VALUE: &str = "gen_ai.evaluation.score.value";
pub const GEN_AI_EVALUATION_SCORE_LABEL: &str = "gen_ai.evaluation.score.label";
pub const GEN_AI_EVALUATION_EXPLANATION: &str = "gen_ai.evaluation.explanation";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// string[]
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// double, seconds from the request being issued to the first chunk (streams only).
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
/// All input tokens, cached ones included.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Part of `input_tokens`.
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// Part of `input_tokens`. Not reported by OpenAI-compatible APIs, so not emitted yet.
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
/// Part of `output_tokens`; "recommended when applicable": emitted when non-zero.
pub const GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
/// Opt-in. JSON (a string on spans), only when `capture_content` is on, after redaction.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// Opt-in. JSON (a string on spans), only when `capture_content` is on, after redaction.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// Opt-in. JSON: `[{"type":"function","name":…}]`. Sluice records only the required
/// properties (the spec advises against the optional ones by default), which names the
/// request's tools without their schemas; that is how "tool names from the request" are
/// recorded, since 1.41.0 has no plain tool-names attribute for inference spans.
pub const GEN_AI_TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";

// === general ===

/// A low-cardinality error class (Sluice's outcome names, e.g. `timeout`, `rate_limited`).
pub const ERROR_TYPE: &str = "error.type";
/// The provider's host (client spans).
pub const SERVER_ADDRESS: &str = "server.address";
/// The provider's port (client spans; required when `server.address` is set).
pub const SERVER_PORT: &str = "server.port";
/// The status answered (server span) or received from the provider (client spans).
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The OpenAI path template the request hit (server span), e.g. `/v1/chat/completions`.
pub const HTTP_ROUTE: &str = "http.route";
/// Resource: `sluice`.
pub const SERVICE_NAME: &str = "service.name";
/// Resource: the crate version.
pub const SERVICE_VERSION: &str = "service.version";

// === sluice.* (Sluice's own) ===

pub const SLUICE_REQUEST_ID: &str = "sluice.request_id";
pub const SLUICE_ROUTE: &str = "sluice.route";
pub const SLUICE_TENANT: &str = "sluice.tenant";
/// The catalog model that answered (or was tried last), a policy name.
pub const SLUICE_MODEL: &str = "sluice.model";
/// The configured provider name of an attempt (there may be several of one kind).
pub const SLUICE_PROVIDER: &str = "sluice.provider";
/// 0-based index of an upstream attempt (client spans).
pub const SLUICE_ATTEMPT: &str = "sluice.attempt";
/// Number of upstream attempts (server span).
pub const SLUICE_ATTEMPTS: &str = "sluice.attempts";
/// How the request ended (`ok`, `timeout`, …; server span) or the attempt did (client spans).
pub const SLUICE_OUTCOME: &str = "sluice.outcome";
/// `true` when Sluice counted tokens itself because the provider reported none.
pub const SLUICE_USAGE_ESTIMATED: &str = "sluice.usage.estimated";
pub const SLUICE_COST_USD: &str = "sluice.cost_usd";
/// `true` when the response cache answered (server span of a route with a cache).
pub const SLUICE_CACHE_HIT: &str = "sluice.cache.hit";
/// What the route's cache did: `hit`, `miss` or `bypass`.
pub const SLUICE_CACHE_RESULT: &str = "sluice.cache.result";
/// How the request was routed and how each attempt ended (server span), one line:
/// `p2c pick=a order=a,b skipped=c:ejected(4.2s) attempts=a:server_error(503),b:ok(200)`.
pub const SLUICE_ROUTE_DECISION: &str = "sluice.route.decision";
/// `true` when no target was healthy and the least-bad one served (server span).
pub const SLUICE_ROUTE_PANIC: &str = "sluice.route.panic";
/// Remediation actions that changed how the request was served: `failover(rule),shed(rule)`.
pub const SLUICE_REMEDIATION: &str = "sluice.remediation";
/// Content chunks sent (streams).
pub const SLUICE_CHUNKS: &str = "sluice.chunks";
/// Time Sluice itself spent (request duration minus upstream time), seconds.
pub const SLUICE_OVERHEAD: &str = "sluice.overhead";
/// Why the tail sampler kept this trace (`error`, `slow`, …, `head`, `parent`).
pub const SLUICE_SAMPLED_BY: &str = "sluice.sampled_by";

/// Names that must never appear on Sluice's spans: deprecated GenAI attributes.
pub const DEPRECATED: &[&str] = &[
    "gen_ai.system",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.openai.request.seed",
    "gen_ai.openai.request.response_format",
    "gen_ai.openai.request.service_tier",
    "gen_ai.openai.response.service_tier",
    "gen_ai.openai.response.system_fingerprint",
];

/// The required and recommended attributes of an inference (`chat`, `text_completion`)
/// client span in [`SEMCONV_VERSION`], conditionally required ones included.
pub const INFERENCE_REQUIRED_AND_RECOMMENDED: &[&str] = &[
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    ERROR_TYPE,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_OUTPUT_TYPE,
    GEN_AI_REQUEST_CHOICE_COUNT,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_SEED,
    GEN_AI_REQUEST_STREAM,
    SERVER_PORT,
    GEN_AI_REQUEST_FREQUENCY_PENALTY,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_PRESENCE_PENALTY,
    GEN_AI_REQUEST_STOP_SEQUENCES,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_K,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    SERVER_ADDRESS,
];

/// The required and recommended attributes of an embeddings client span.
pub const EMBEDDINGS_REQUIRED_AND_RECOMMENDED: &[&str] = &[
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    ERROR_TYPE,
    GEN_AI_REQUEST_MODEL,
    SERVER_PORT,
    GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
    GEN_AI_REQUEST_ENCODING_FORMATS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    SERVER_ADDRESS,
];

/// Attributes of the lists above that Sluice does not emit, and why. The ones marked
/// "not recorded" need a field in `RequestParams`/`RequestRecord` first; the rest only apply
/// under a condition that a test record can be built to meet (error, stream, …) or do not
/// apply to an OpenAI-compatible gateway.
pub const NOT_EMITTED: &[(&str, &str)] = &[
    (
        GEN_AI_OUTPUT_TYPE,
        "not recorded: the request's response_format",
    ),
    (
        GEN_AI_REQUEST_CHOICE_COUNT,
        "not recorded: the request's n (only required when != 1)",
    ),
    (GEN_AI_REQUEST_SEED, "not recorded: the request's seed"),
    (
        GEN_AI_REQUEST_FREQUENCY_PENALTY,
        "not recorded: the request's frequency_penalty",
    ),
    (
        GEN_AI_REQUEST_PRESENCE_PENALTY,
        "not recorded: the request's presence_penalty",
    ),
    (
        GEN_AI_REQUEST_STOP_SEQUENCES,
        "not recorded: the request's stop",
    ),
    (
        GEN_AI_REQUEST_TOP_K,
        "the OpenAI API has no top_k parameter",
    ),
    (
        GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        "OpenAI-compatible usage reports cache reads only",
    ),
    (
        GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
        "not recorded: the embeddings request's dimensions",
    ),
    (
        GEN_AI_REQUEST_ENCODING_FORMATS,
        "not recorded: the embeddings request's encoding_format",
    ),
];

/// `gen_ai.provider.name` for a Sluice provider kind. Well-known values are used as they
/// are (`openai`, `anthropic`, `azure.ai.openai`, `gcp.gemini`); the in-process mock is
/// `sluice.mock` (a custom value, namespaced so it cannot clash with a real provider).
/// Anything else passes through unchanged.
pub fn provider_name(kind: &str) -> &str {
    match kind {
        "mock" => PROVIDER_SLUICE_MOCK,
        "azure" => "azure.ai.openai",
        "gemini" => "gcp.gemini",
        other => other,
    }
}

/// The provider value of the mock provider kind.
pub const PROVIDER_SLUICE_MOCK: &str = "sluice.mock";
/// The provider value on a server span when no upstream attempt was made (Sluice answered
/// by itself, e.g. a refusal before routing).
pub const PROVIDER_SLUICE: &str = "sluice";

/// `"{operation} {model}"`, or the operation alone when the model is unknown or empty.
pub fn span_name(operation: &str, model: Option<&str>) -> String {
    match model.filter(|m| !m.is_empty()) {
        Some(model) => format!("{operation} {model}"),
        None => operation.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        assert_eq!(span_name("chat", Some("gpt-4o")), "chat gpt-4o");
        assert_eq!(span_name("embeddings", None), "embeddings");
        assert_eq!(span_name("chat", Some("")), "chat");
        assert_eq!(provider_name("openai"), "openai");
        assert_eq!(provider_name("mock"), "sluice.mock");
        assert!(SCHEMA_URL.ends_with(SEMCONV_VERSION));
        for (name, _) in NOT_EMITTED {
            assert!(
                INFERENCE_REQUIRED_AND_RECOMMENDED.contains(name)
                    || EMBEDDINGS_REQUIRED_AND_RECOMMENDED.contains(name),
                "{name}"
            );
        }
        let all = INFERENCE_REQUIRED_AND_RECOMMENDED
            .iter()
            .chain(EMBEDDINGS_REQUIRED_AND_RECOMMENDED);
        for name in all {
            assert!(!DEPRECATED.contains(name), "{name}");
        }
    }
}
