//! Fixture-driven tests of the translators.
//!
//! - `golden`: every OpenAI request case × every kind → the exact upstream request (or the 400
//!   it is refused with); provider responses and raw stream captures (taken from the
//!   providers' SDK fixtures and documented examples, see `tests/fixtures/providers/README.md`)
//!   → the exact OpenAI answer. Streams are fed whole, byte by byte and in 7-byte pieces, and
//!   must give the same chunks every time.
//! - `roundtrip`: streamed answers reassembled equal the non-stream answer to the same
//!   exchange; mock answers rendered in each dialect (`render`) translate back to themselves.
//! - `openai`, `errors`, `eventstream`, `sigv4`: the shared pieces (request view, error
//!   classes, frame codec against AWS's vectors, SigV4 against AWS's test suite).
//!
//! Golden files are compared as JSON values. `SLUICE_BLESS=1` rewrites a golden file that
//! differs and then *fails* the test, so a blessed run never passes: re-run without it after
//! reviewing the diff.

mod errors;
mod eventstream;
mod golden;
mod openai;
mod roundtrip;
mod sigv4;

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{
    AnthropicOptions, AzureOptions, BedrockOptions, Endpoint, GeminiFlavour, GeminiOptions,
    KindOptions, ProviderError, RequestState, ResponseCtx, StreamTranslator, UpstreamRequest,
};

pub(super) const CTX: ResponseCtx<'static> = ResponseCtx {
    created: 1_700_000_000,
    fallback_id: "chatcmpl-sluice-1",
};

pub(super) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/providers")
}

pub(super) fn read(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(super) fn read_json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Compares `actual` with a golden file (see the module doc for blessing); `Some(message)`
/// when they differ.
pub(super) fn golden_diff(rel: &str, actual: &Value) -> Option<String> {
    let path = fixtures().join(rel);
    let expected: Option<Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if expected.as_ref() == Some(actual) {
        return None;
    }
    let pretty = serde_json::to_string_pretty(actual).expect("serializes") + "\n";
    if std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, pretty).expect("write golden");
        return Some(format!(
            "blessed {rel}: review the diff, then re-run without SLUICE_BLESS"
        ));
    }
    // Name the differing entries, so a failure points at the cases.
    let differing: Vec<String> = match (&expected, actual) {
        (Some(Value::Object(e)), Value::Object(a)) => a
            .iter()
            .filter(|(k, v)| e.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .chain(e.keys().filter(|k| !a.contains_key(*k)).cloned())
            .collect(),
        _ => vec![],
    };
    Some(format!(
        "{rel} differs in {differing:?} (set SLUICE_BLESS=1 to rewrite it); actual:\n{pretty}"
    ))
}

/// Fails with every differing golden file at once.
pub(super) fn assert_goldens(diffs: Vec<Option<String>>) {
    let diffs: Vec<String> = diffs.into_iter().flatten().collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// A kind as the golden matrix configures it.
pub(super) struct KindCase {
    /// The golden file's stem under the kind's directory.
    pub golden: &'static str,
    pub dir: &'static str,
    pub opts: KindOptions,
    pub chat_model: Option<&'static str>,
    pub embed_model: Option<&'static str>,
}

pub(super) fn anthropic_opts() -> KindOptions {
    KindOptions::Anthropic(AnthropicOptions {
        max_tokens_by_model: vec![
            ("claude-sonnet-4".into(), 8192),
            ("claude-3-haiku".into(), 4096),
        ],
        ..AnthropicOptions::default()
    })
}

pub(super) fn gemini_opts() -> KindOptions {
    KindOptions::Gemini(GeminiOptions {
        flavour: GeminiFlavour::Api {
            api_version: "v1beta".into(),
        },
    })
}

pub(super) fn vertex_opts() -> KindOptions {
    KindOptions::Gemini(GeminiOptions {
        flavour: GeminiFlavour::Vertex {
            project: "demo-project".into(),
            location: "us-central1".into(),
            api_version: "v1".into(),
        },
    })
}

pub(super) fn azure_opts() -> KindOptions {
    KindOptions::AzureOpenAi(AzureOptions {
        deployment: None,
        api_version: Some("2024-10-21".into()),
    })
}

pub(super) fn bedrock_opts() -> KindOptions {
    KindOptions::Bedrock(BedrockOptions {
        region: "us-east-1".into(),
    })
}

pub(super) fn kinds() -> Vec<KindCase> {
    vec![
        KindCase {
            golden: "requests",
            dir: "anthropic",
            opts: anthropic_opts(),
            chat_model: Some("claude-sonnet-4-5"),
            embed_model: Some("claude-sonnet-4-5"),
        },
        KindCase {
            golden: "requests",
            dir: "gemini",
            opts: gemini_opts(),
            chat_model: Some("gemini-2.5-flash"),
            embed_model: Some("gemini-embedding-001"),
        },
        KindCase {
            golden: "requests.gemini3",
            dir: "gemini",
            opts: gemini_opts(),
            chat_model: Some("gemini-3-pro-preview"),
            embed_model: None,
        },
        KindCase {
            golden: "requests.vertex",
            dir: "gemini",
            opts: vertex_opts(),
            chat_model: Some("gemini-2.5-pro"),
            embed_model: Some("text-embedding-005"),
        },
        KindCase {
            golden: "requests",
            dir: "azure_openai",
            opts: azure_opts(),
            chat_model: Some("gpt-4o-prod"),
            embed_model: Some("text-embedding-3-small"),
        },
        KindCase {
            golden: "requests.v1",
            dir: "azure_openai",
            opts: KindOptions::AzureOpenAi(AzureOptions {
                deployment: Some("gpt-4o-prod".into()),
                api_version: None,
            }),
            chat_model: Some("gpt-4o"),
            embed_model: None,
        },
        KindCase {
            golden: "requests",
            dir: "bedrock",
            opts: bedrock_opts(),
            chat_model: Some("anthropic.claude-3-5-sonnet-20240620-v1:0"),
            embed_model: Some("amazon.titan-embed-text-v2:0"),
        },
        KindCase {
            golden: "requests.cohere",
            dir: "bedrock",
            opts: bedrock_opts(),
            chat_model: None,
            embed_model: Some("cohere.embed-english-v3"),
        },
    ]
}

/// The request cases, by file stem; `embed_*` are embeddings requests.
pub(super) fn request_cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(fixtures().join("openai/requests"))
        .expect("requests dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .collect();
    cases.sort();
    cases
}

pub(super) fn endpoint_of(case: &str) -> Endpoint {
    if case.starts_with("embed_") {
        Endpoint::Embeddings
    } else {
        Endpoint::Chat
    }
}

/// Builds the upstream request for an OpenAI request case.
pub(super) fn build(
    opts: &KindOptions,
    case: &str,
    model: &str,
) -> Result<UpstreamRequest, super::TranslateError> {
    let body = read(&format!("openai/requests/{case}.json"));
    super::request(&body, endpoint_of(case), model, opts)
}

/// The request state for a case (panics if the case is refused).
pub(super) fn state_for(opts: &KindOptions, case: &str, model: &str) -> RequestState {
    build(opts, case, model)
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .state
}

/// Feeds `body` in pieces of `piece` bytes (0 = whole), then ends it: the chunks written,
/// the first error, and the translator for its final state.
pub(super) fn run_stream(
    state: &RequestState,
    body: &[u8],
    piece: usize,
) -> (Vec<Bytes>, Option<ProviderError>, StreamTranslator) {
    let mut t = StreamTranslator::new(state, &CTX);
    let mut out = vec![];
    let mut error = None;
    let pieces: Vec<&[u8]> = if piece == 0 {
        vec![body]
    } else {
        body.chunks(piece).collect()
    };
    for p in pieces {
        if let Err(e) = t.push(p, &mut out) {
            error = Some(e);
            break;
        }
    }
    if error.is_none()
        && let Err(e) = t.finish(&mut out)
    {
        error = Some(e);
    }
    (out, error, t)
}

/// A chunk payload as JSON (`[DONE]` as a string).
pub(super) fn chunk_json(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| json!(String::from_utf8_lossy(b)))
}

pub(super) fn error_json(e: &ProviderError) -> Value {
    json!({
        "class": e.class.as_str(),
        "status_for_client": e.status_for_client,
        "retryable": e.retryable,
        "retry_after_ms": e.retry_after.map(|d| d.as_millis() as u64),
        "provider_code": e.provider_code,
        "body": serde_json::from_slice::<Value>(&e.openai_error_json).expect("error json"),
    })
}

pub(super) fn usage_json(u: Option<super::Usage>) -> Value {
    u.map_or(Value::Null, |u| {
        json!({
            "prompt": u.prompt_tokens, "completion": u.completion_tokens,
            "cached": u.cached_tokens, "cache_write": u.cache_write_tokens,
            "reasoning": u.reasoning_tokens, "total": u.total_tokens(),
        })
    })
}

/// Bedrock frames from a readable description: `{"event": name, "payload": …}` or
/// `{"exception": name, "payload": …}`.
pub(super) fn encode_frames(rel: &str) -> Vec<u8> {
    use super::eventstream::{Header, encode};
    let frames = read_json(rel);
    let mut out = vec![];
    for f in frames.as_array().expect("array") {
        let payload = f["payload"].to_string();
        let headers = if let Some(name) = f["event"].as_str() {
            vec![
                Header::string(":event-type", name),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ]
        } else {
            vec![
                Header::string(":exception-type", f["exception"].as_str().expect("name")),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "exception"),
            ]
        };
        out.extend_from_slice(&encode(&headers, payload.as_bytes()));
    }
    out
}
