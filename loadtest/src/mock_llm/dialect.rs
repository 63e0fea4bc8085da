//! `mock-llm` in the other providers' dialects, so Sluice's translated kinds can be tested over
//! real sockets.
//!
//! | path | dialect |
//! |---|---|
//! | `POST /v1/messages` | Anthropic Messages (`x-api-key`; `stream` in the body) |
//! | `POST /{version}/models/{model}:generateContent` / `:streamGenerateContent?alt=sse` | Gemini API (`x-goog-api-key`) |
//! | `POST /{version}/projects/{p}/locations/{l}/publishers/google/models/{model}:…` | Vertex AI (bearer token) |
//! | `POST /openai/deployments/{deployment}/chat/completions?api-version=…`, `POST /openai/v1/chat/completions` | Azure OpenAI (`api-key`) |
//! | `POST /model/{model id}/converse` / `converse-stream` | Bedrock (SigV4 or a bearer key; event-stream frames) |
//! | `…/models/{model}:batchEmbedContents`, `…/publishers/google/models/{model}:predict`, `/openai/deployments/{d}/embeddings`, `/openai/v1/embeddings`, `/model/{id}/invoke` | embeddings: Gemini API, Vertex AI, Azure OpenAI, Bedrock Titan (`inputText`) and Cohere (`texts`), with the OpenAI mock's vectors for the same inputs and width |
//!
//! The answer is the OpenAI mock's (the same words, finish reason and token counts for the
//! same prompt text), rendered by `sluice_gateway::providers::translate::render` as that
//! provider sends it, with these additions, so every translation path is exercised:
//! - a request offering tools is answered with calls to its first (up to two) tools, with
//!   arguments `{"query":"<first word>"}` (`{"answer":…}` for Sluice's own `json_response`
//!   tool), finish reason `tool_calls`;
//! - a request asking for JSON (Gemini `responseMimeType`, a JSON schema on any dialect) is
//!   answered with a JSON object: the schema's required properties, else `{"answer":…}`;
//! - a request carrying images is answered with `I see N images.` before the words;
//! - usage reports a quarter of the prompt as read from the provider's cache and an eighth as
//!   written to it, where the dialect can say so.
//!
//! Faults use the same grammar (a `@faults` suffix on the model, in the path or the body):
//! a status fault answers with that provider's error body (`529` is Anthropic's "overloaded";
//! `retry-after` as given), `first-error` opens the stream with the dialect's error event,
//! `echo-key:mid-stream:K` sends the dialect's overloaded error after K events (no key is
//! echoed in a dialect), `cut:K` and `stall:K` cut or stall after K events, and `ttft`/`delay`
//! pace it. K counts as in the OpenAI dialect: the provider's opening events are event 0, then
//! one per content event, capped before the ending. With a required API key, a wrong or
//! missing credential gets the dialect's 401 (for SigV4: an `authorization` whose credential
//! scope names another access key id).

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};
use sluice_gateway::providers::mock::{self, Endpoint, MockRequest, MockTiming};
use sluice_gateway::providers::translate::render::{self, Answer, AnswerToolCall};
use sluice_gateway::providers::translate::{ErrorClass, FinishReason, Kind, Usage};

use super::Shared;
use super::body::{ScriptBody, Step};
use super::fault::{self, EchoKey, Outcome};

type Resp = Response<ScriptBody>;

/// How long `stall` holds a stream.
const STALL_FOR: Duration = Duration::from_secs(120);

/// A request in some provider's dialect, located by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DialectRoute {
    pub kind: Kind,
    /// The model (or deployment) from the path, percent-decoded; `None` when it is in the body.
    pub model: Option<String>,
    /// A streaming method (`None`: the body's `stream` says).
    pub stream: Option<bool>,
    /// An embeddings method (Gemini `batchEmbedContents`, Vertex `predict`, Azure
    /// `embeddings`, Bedrock `invoke`).
    pub embed: bool,
}

/// The dialect of `path`, if it is one of the provider paths above.
pub(crate) fn route(path: &str) -> Option<DialectRoute> {
    let r = |kind, model: Option<&str>, stream| {
        Some(DialectRoute {
            kind,
            model: model.map(percent_decode),
            stream,
            embed: false,
        })
    };
    let embed = |kind, model: Option<&str>| {
        Some(DialectRoute {
            kind,
            model: model.map(percent_decode),
            stream: Some(false),
            embed: true,
        })
    };
    if path == "/v1/messages" {
        return r(Kind::Anthropic, None, None);
    }
    if path == "/openai/v1/chat/completions" {
        return r(Kind::AzureOpenAi, None, None);
    }
    if path == "/openai/v1/embeddings" {
        return embed(Kind::AzureOpenAi, None);
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, tail) = rest.split_once('/')?;
        return match tail {
            "chat/completions" => r(Kind::AzureOpenAi, Some(deployment), None),
            "embeddings" => embed(Kind::AzureOpenAi, Some(deployment)),
            _ => None,
        };
    }
    if let Some(rest) = path.strip_prefix("/model/") {
        let (model, method) = rest.split_once('/')?;
        return match method {
            "converse" => r(Kind::Bedrock, Some(model), Some(false)),
            "converse-stream" => r(Kind::Bedrock, Some(model), Some(true)),
            "invoke" => embed(Kind::Bedrock, Some(model)),
            _ => None,
        };
    }
    let (before, method) = path.rsplit_once(':')?;
    let (stream, embeds) = match method {
        "generateContent" => (false, false),
        "streamGenerateContent" => (true, false),
        "batchEmbedContents" | "predict" => (false, true),
        _ => return None,
    };
    let (scope, model) = before.rsplit_once("/models/")?;
    let kind = if scope.contains("/projects/") && scope.ends_with("/publishers/google") {
        Kind::Vertex
    } else if scope.len() > 1 && !scope[1..].contains('/') {
        Kind::Gemini
    } else {
        return None;
    };
    // Gemini API embeds with `batchEmbedContents`, Vertex with `predict`.
    if embeds && (method == "predict") != (kind == Kind::Vertex) {
        return None;
    }
    if embeds {
        embed(kind, Some(model))
    } else {
        r(kind, Some(model), Some(stream))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body's model (when the path has none), for counting.
pub(crate) fn model_of(route: &DialectRoute, body: &[u8]) -> Option<String> {
    route.model.clone().or_else(|| {
        serde_json::from_slice::<Value>(body)
            .ok()?
            .get("model")?
            .as_str()
            .map(str::to_owned)
    })
}

/// The 401 for a wrong or missing credential in `kind`'s own header, if a key is required.
pub(crate) fn refusal(shared: &Shared, kind: Kind, headers: &http::HeaderMap) -> Option<Resp> {
    let key = shared.api_key.as_deref()?;
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = get("authorization").and_then(|v| v.strip_prefix("Bearer "));
    let ok = match kind {
        Kind::Anthropic => get("x-api-key") == Some(key),
        Kind::Gemini => get("x-goog-api-key") == Some(key),
        Kind::Vertex => bearer == Some(key),
        Kind::AzureOpenAi => get("api-key") == Some(key),
        Kind::Bedrock => {
            bearer == Some(key)
                || get("authorization").is_some_and(|a| {
                    a.starts_with(&format!("AWS4-HMAC-SHA256 Credential={key}/"))
                        && a.contains("Signature=")
                }) && get("x-amz-date").is_some()
                    && get("x-amz-content-sha256").is_some()
        }
    };
    (!ok).then(|| error(kind, ErrorClass::Authentication, None))
}

/// What the answer depends on, read from a request in any dialect.
#[derive(Debug, Default)]
struct Ask {
    text: String,
    max_tokens: Option<u64>,
    stream: bool,
    tools: Vec<String>,
    /// Tool choice `none`.
    no_tools: bool,
    json: bool,
    /// A JSON schema's properties and required list, when one was given.
    schema: Option<Value>,
    images: usize,
}

fn ask(kind: Kind, v: &Value) -> Ask {
    let mut a = Ask::default();
    collect_text(v, &mut a);
    let num = |p: &str| v.pointer(p).and_then(Value::as_u64);
    let names = |list: Option<&Value>, p: &str| -> Vec<String> {
        list.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.pointer(p).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    match kind {
        Kind::Anthropic => {
            a.max_tokens = num("/max_tokens");
            a.stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
            a.tools = names(v.get("tools"), "/name");
            a.no_tools = v.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none");
            a.schema = v.pointer("/output_config/format/schema").cloned();
        }
        Kind::Gemini | Kind::Vertex => {
            a.max_tokens = num("/generationConfig/maxOutputTokens");
            for t in v
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                a.tools
                    .extend(names(t.get("functionDeclarations"), "/name"));
            }
            a.no_tools = v
                .pointer("/toolConfig/functionCallingConfig/mode")
                .and_then(Value::as_str)
                == Some("NONE");
            a.json = v
                .pointer("/generationConfig/responseMimeType")
                .and_then(Value::as_str)
                == Some("application/json");
            a.schema = v
                .pointer("/generationConfig/responseJsonSchema")
                .or_else(|| v.pointer("/generationConfig/responseSchema"))
                .cloned();
        }
        Kind::AzureOpenAi => {
            a.max_tokens = num("/max_completion_tokens").or_else(|| num("/max_tokens"));
            a.stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
            a.tools = names(v.get("tools"), "/function/name");
            a.no_tools = v.get("tool_choice").and_then(Value::as_str) == Some("none");
            let format = v.pointer("/response_format/type").and_then(Value::as_str);
            a.json = matches!(format, Some("json_object" | "json_schema"));
            a.schema = v.pointer("/response_format/json_schema/schema").cloned();
        }
        Kind::Bedrock => {
            a.max_tokens = num("/inferenceConfig/maxTokens");
            a.tools = names(v.pointer("/toolConfig/tools"), "/toolSpec/name");
            a.schema = v
                .pointer("/outputConfig/textFormat/structure/jsonSchema/schema")
                .and_then(|s| match s {
                    Value::String(text) => serde_json::from_str(text).ok(),
                    other => Some(other.clone()),
                });
        }
    }
    a.json |= a.schema.is_some();
    a
}

/// Every `text` string (and counts image parts) anywhere in the request.
fn collect_text(v: &Value, a: &mut Ask) {
    match v {
        Value::Object(o) => {
            let image = match o.get("type").and_then(Value::as_str) {
                Some("image" | "image_url") => true,
                _ => ["inlineData", "fileData", "image"]
                    .iter()
                    .any(|k| o.get(*k).is_some_and(Value::is_object)),
            };
            if image {
                a.images += 1;
            }
            for (k, child) in o {
                match (k.as_str(), child) {
                    ("text" | "content", Value::String(s)) => {
                        a.text.push_str(s);
                        a.text.push(' ');
                    }
                    _ => collect_text(child, a),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, a)),
        _ => {}
    }
}

/// The answer to `a`, as OpenAI's mock would give it plus the additions in the module doc.
fn answer(kind: Kind, model: &str, a: &Ask) -> Answer {
    let mut openai = json!({
        "model": model,
        "messages": [{"role": "user", "content": a.text}],
    });
    if let Some(m) = a.max_tokens {
        openai["max_tokens"] = json!(m);
    }
    let req = MockRequest::from_body(Endpoint::ChatCompletions, openai.to_string().as_bytes())
        .unwrap_or_else(|_| {
            MockRequest::from_body(
                Endpoint::ChatCompletions,
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            )
            .expect("a fixed request parses")
        });
    let text = mock::completion_text(&req);
    let mut finish = match mock::finish_reason(&req) {
        "length" => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    let mut content: Vec<String> = Vec::new();
    let mut tool_calls = Vec::new();
    if !a.tools.is_empty() && !a.no_tools {
        for (i, name) in a.tools.iter().take(2).enumerate() {
            tool_calls.push(AnswerToolCall {
                id: mock::tool_call_id(req.seed, i),
                name: name.clone(),
                arguments: mock::tool_call_arguments(name, &text),
            });
        }
        finish = FinishReason::ToolCalls;
    } else if a.json {
        content.push(mock::json_answer(a.schema.as_ref(), &text).to_string());
        finish = FinishReason::Stop;
    } else {
        if a.images > 0 {
            content.push(format!("I see {} images. ", a.images));
        }
        for (i, w) in text.split(' ').enumerate() {
            content.push(if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            });
        }
    }
    let u = mock::usage(&req);
    let prompt = u64::from(u.prompt_tokens);
    let completion = u64::from(u.completion_tokens);
    let id = match kind {
        Kind::Anthropic => format!("msg_mock_{:016x}", req.seed),
        _ => format!("chatcmpl-mock-{:016x}", req.seed),
    };
    Answer {
        id,
        model: model.to_owned(),
        content,
        reasoning: vec![],
        tool_calls,
        finish,
        usage: Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: prompt / 4,
            cache_write_tokens: prompt / 8,
            reasoning_tokens: 0,
        },
    }
}

fn class_of(code: u16) -> ErrorClass {
    match code {
        429 => ErrorClass::RateLimited,
        529 => ErrorClass::Overloaded,
        503 => ErrorClass::Unavailable,
        401 | 403 => ErrorClass::Authentication,
        504 => ErrorClass::Timeout,
        400..=499 => ErrorClass::InvalidRequest,
        _ => ErrorClass::ServerError,
    }
}

/// `kind`'s error answer for `class`; `retry_after` seconds replace the rendered ones.
fn error(kind: Kind, class: ErrorClass, retry_after: Option<u64>) -> Resp {
    let (status, headers, body) = render::error_response(kind, class);
    let mut resp = Response::new(ScriptBody::full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        h.remove("retry-after-ms");
    }
    resp
}

/// Largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Serves one request on a provider path: counts it (as the OpenAI routes do), checks the
/// dialect's credential, answers.
pub(crate) async fn handle(
    shared: &Shared,
    route: &DialectRoute,
    req: http::Request<hyper::body::Incoming>,
) -> Resp {
    use http_body_util::{BodyExt, Limited};
    if req.method() != http::Method::POST {
        return error(route.kind, ErrorClass::NotFound, None);
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
    else {
        return error(route.kind, ErrorClass::InvalidRequest, None);
    };
    shared
        .counters
        .request(model_of(route, &body).as_deref(), body.len());
    let mut resp = match refusal(shared, route.kind, &parts.headers) {
        Some(resp) => {
            shared.counters.unauthorized();
            resp
        }
        None => answer_request(shared, route, &body).await,
    };
    resp.headers_mut()
        .insert("x-mock-body-len", HeaderValue::from(body.len()));
    resp
}

/// Answers one dialect request (already counted and authorised).
async fn answer_request(shared: &Shared, route: &DialectRoute, body: &[u8]) -> Resp {
    let kind = route.kind;
    let v: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error(kind, ErrorClass::InvalidRequest, None),
    };
    let full_model = model_of(route, body).unwrap_or_else(|| "mock".into());
    let (model, spec) = fault::split_model(&full_model);
    let faults = match fault::parse(spec.unwrap_or("")) {
        Ok(f) => f,
        Err(_) => return error(kind, ErrorClass::InvalidRequest, None),
    };
    if let Some(ttft) = faults.ttft {
        tokio::time::sleep(ttft).await;
    }
    if let Some(Outcome::Status { code, retry_after }) = faults.outcome {
        return error(kind, class_of(code), retry_after);
    }
    if route.embed {
        return match embeddings(kind, model, &v) {
            Some((body, tokens)) => {
                let mut resp = content(ScriptBody::full(body), "application/json");
                // InvokeModel reports the tokens in a header (Cohere's body has none).
                if kind == Kind::Bedrock {
                    resp.headers_mut().insert(
                        "x-amzn-bedrock-input-token-count",
                        HeaderValue::from(tokens),
                    );
                }
                resp
            }
            None => error(kind, ErrorClass::InvalidRequest, None),
        };
    }
    let mut a = ask(kind, &v);
    if let Some(s) = route.stream {
        a.stream = s;
    }
    let answer = answer(kind, model, &a);
    let timing = match faults.delay {
        Some(d) => MockTiming {
            tokens_per_s: if d.is_zero() {
                0.0
            } else {
                1.0 / d.as_secs_f64()
            },
            ..shared.timing
        },
        None => shared.timing,
    };
    if !a.stream {
        if !timing.ttft.is_zero() {
            tokio::time::sleep(timing.ttft).await;
        }
        let body = match kind {
            Kind::Anthropic => render::anthropic_message(&answer),
            Kind::Gemini | Kind::Vertex => render::gemini_response(&answer),
            Kind::AzureOpenAi => render::azure_completion(&answer),
            Kind::Bedrock => render::bedrock_converse(&answer),
        };
        return content(ScriptBody::full(body), "application/json");
    }
    let events = match kind {
        Kind::Anthropic => render::anthropic_events(&answer),
        Kind::Gemini | Kind::Vertex => render::gemini_events(&answer),
        Kind::AzureOpenAi => render::azure_events(
            &answer,
            v.pointer("/stream_options/include_usage") == Some(&json!(true)),
        ),
        Kind::Bedrock => render::bedrock_frames(&answer),
    };
    let per_token = timing.per_token();
    let (lead, content_end) = content_span(kind, &events);
    let paced = events.into_iter().enumerate().flat_map(|(i, e)| {
        let wait = if i == 0 { timing.ttft } else { per_token };
        [Step::Wait(wait), Step::Data(e)]
    });
    let error_event = || Step::Data(render::stream_error_event(kind, ErrorClass::Overloaded));
    let sent = |k: usize| 2 * events_before_fault(k, lead, content_end);
    let steps: Vec<Step> = match faults.outcome {
        Some(Outcome::FirstError | Outcome::EchoKey(EchoKey::FirstEvent)) => vec![error_event()],
        Some(Outcome::EchoKey(EchoKey::MidStream(k))) => {
            paced.take(sent(k)).chain([error_event()]).collect()
        }
        Some(Outcome::Cut(k)) => paced.take(sent(k)).collect(),
        Some(Outcome::Stall(k)) => paced
            .take(sent(k))
            .chain([Step::Wait(STALL_FOR), Step::Abort("mock stall elapsed")])
            .collect(),
        _ => paced.collect(),
    };
    let content_type = match kind {
        Kind::Bedrock => "application/vnd.amazon.eventstream",
        _ => "text/event-stream",
    };
    let mut resp = content(
        ScriptBody::script(steps).counting_aborts(shared.counters.streams_aborted.clone()),
        content_type,
    );
    if matches!(faults.outcome, Some(Outcome::Cut(_))) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Where a dialect stream's content events lie: the index of the first one and one past the
/// last (both `events.len()`-bounded). What comes before is the dialect's opening (Anthropic's
/// `message_start`, `ping` and `content_block_start`; Azure's prompt filter results and role
/// chunk), what comes after is its ending (finish reason, usage, stop).
fn content_span(kind: Kind, events: &[bytes::Bytes]) -> (usize, usize) {
    let is_content = |e: &bytes::Bytes| -> bool {
        match kind {
            Kind::Anthropic => e.starts_with(b"event: content_block_delta"),
            Kind::Bedrock => e.windows(17).any(|w| w == b"contentBlockDelta"),
            Kind::Gemini | Kind::Vertex => {
                sse_json(e).is_some_and(|v| v.pointer("/candidates/0/finishReason").is_none())
            }
            Kind::AzureOpenAi => sse_json(e).is_some_and(|v| {
                v.pointer("/choices/0/delta/tool_calls").is_some()
                    || v.pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                        .is_some_and(|c| !c.is_empty())
            }),
        }
    };
    let first = events.iter().position(is_content).unwrap_or(events.len());
    let end = events.iter().rposition(is_content).map_or(first, |i| i + 1);
    (first, end)
}

fn sse_json(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    serde_json::from_str(data).ok()
}

/// How many events a `cut:K`, `stall:K` or `echo-key:mid-stream:K` stream sends, counted as
/// mock-llm's OpenAI streams count them: the dialect's whole opening stands for the role chunk
/// (event 0), then one event per content event, never reaching the ending, so a fault never
/// follows a finished answer.
fn events_before_fault(k: usize, lead: usize, content_end: usize) -> usize {
    if k == 0 {
        0
    } else {
        (lead + k - 1).min(content_end)
    }
}

/// An embeddings answer in `kind`'s shape: the OpenAI mock's vectors (the same numbers for
/// the same inputs and width) and token count, for the inputs read from the dialect's body.
/// `None` when the body is not an embeddings request of that dialect.
fn embeddings(kind: Kind, model: &str, v: &Value) -> Option<(bytes::Bytes, u64)> {
    let texts = |list: Option<&Value>, pointer: &str| -> Option<Vec<Value>> {
        list?
            .as_array()?
            .iter()
            .map(|item| item.pointer(pointer).filter(|t| t.is_string()).cloned())
            .collect()
    };
    let (inputs, dimensions): (Vec<Value>, Option<&Value>) = match kind {
        Kind::Gemini => (
            texts(v.get("requests"), "/content/parts/0/text")?,
            v.pointer("/requests/0/outputDimensionality"),
        ),
        Kind::Vertex => (
            texts(v.get("instances"), "/content")?,
            v.pointer("/parameters/outputDimensionality"),
        ),
        Kind::AzureOpenAi => {
            let input = v.get("input")?;
            let inputs = match input {
                Value::Array(a) => a.clone(),
                one => vec![one.clone()],
            };
            (inputs, v.get("dimensions"))
        }
        Kind::Bedrock => match v.get("inputText") {
            Some(t) => (vec![t.clone()], v.get("dimensions")),
            None => (texts(v.get("texts"), "")?, None),
        },
        Kind::Anthropic => return None,
    };
    if inputs.is_empty() {
        return None;
    }
    let mut openai = json!({"model": model, "input": inputs});
    if let Some(d) = dimensions {
        openai["dimensions"] = d.clone();
    }
    let req = MockRequest::from_body(Endpoint::Embeddings, openai.to_string().as_bytes()).ok()?;
    let list = mock::response_json(&req);
    let tokens = u64::from(req.prompt_tokens);
    if kind == Kind::AzureOpenAi {
        return Some((list, tokens));
    }
    let list: Value = serde_json::from_slice(&list).ok()?;
    let vectors: Vec<Vec<f32>> = list
        .get("data")?
        .as_array()?
        .iter()
        .map(|e| serde_json::from_value(e.get("embedding")?.clone()).ok())
        .collect::<Option<_>>()?;
    let body = match kind {
        Kind::Gemini => render::gemini_embeddings(&vectors, false, 0),
        Kind::Vertex => {
            let each = tokens / vectors.len() as u64;
            render::gemini_embeddings(&vectors, true, each)
        }
        _ => render::bedrock_embeddings(&vectors, v.get("inputText").is_some(), tokens),
    };
    Some((body, tokens))
}

fn content(body: ScriptBody, content_type: &'static str) -> Resp {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_paths_are_recognised() {
        let r = |p| route(p).map(|r| (r.kind, r.model, r.stream));
        assert_eq!(r("/v1/messages"), Some((Kind::Anthropic, None, None)));
        assert_eq!(
            r("/v1beta/models/gemini-2.5-flash%40529:streamGenerateContent"),
            Some((
                Kind::Gemini,
                Some("gemini-2.5-flash@529".into()),
                Some(true)
            ))
        );
        assert_eq!(
            r("/v1/projects/p/locations/us-central1/publishers/google/models/g:generateContent"),
            Some((Kind::Vertex, Some("g".into()), Some(false)))
        );
        assert_eq!(
            r("/openai/deployments/gpt-4o/chat/completions"),
            Some((Kind::AzureOpenAi, Some("gpt-4o".into()), None))
        );
        assert_eq!(
            r("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
            Some((
                Kind::Bedrock,
                Some("anthropic.claude-3-haiku-20240307-v1:0".into()),
                Some(true)
            ))
        );
        assert_eq!(r("/v1/chat/completions"), None);
        let e = |p| route(p).filter(|r| r.embed).map(|r| (r.kind, r.model));
        assert_eq!(
            e("/v1beta/models/text-embedding-004:batchEmbedContents"),
            Some((Kind::Gemini, Some("text-embedding-004".into())))
        );
        assert_eq!(
            e("/v1/projects/p/locations/l/publishers/google/models/t:predict"),
            Some((Kind::Vertex, Some("t".into())))
        );
        assert_eq!(
            e("/openai/deployments/emb/embeddings"),
            Some((Kind::AzureOpenAi, Some("emb".into())))
        );
        assert_eq!(e("/openai/v1/embeddings"), Some((Kind::AzureOpenAi, None)));
        assert_eq!(
            e("/model/amazon.titan-embed-text-v2%3A0/invoke"),
            Some((Kind::Bedrock, Some("amazon.titan-embed-text-v2:0".into())))
        );
        assert_eq!(e("/v1beta/models/t:predict"), None);
    }

    #[test]
    fn faults_count_content_events_in_every_dialect() {
        let a = Ask {
            text: "tell me a story about the sea and its tides".into(),
            ..Ask::default()
        };
        for kind in [
            Kind::Anthropic,
            Kind::Gemini,
            Kind::AzureOpenAi,
            Kind::Bedrock,
        ] {
            let ans = answer(kind, "m", &a);
            let events = match kind {
                Kind::Anthropic => render::anthropic_events(&ans),
                Kind::Gemini => render::gemini_events(&ans),
                Kind::AzureOpenAi => render::azure_events(&ans, true),
                _ => render::bedrock_frames(&ans),
            };
            let (lead, end) = content_span(kind, &events);
            assert!(ans.content.len() >= 2, "{kind:?}: a few words");
            assert_eq!(end - lead, ans.content.len(), "{kind:?}");
            assert!(end < events.len(), "{kind:?}: an ending follows");
            assert_eq!(events_before_fault(0, lead, end), 0);
            assert_eq!(events_before_fault(3, lead, end), lead + 2, "{kind:?}");
            assert_eq!(events_before_fault(10_000, lead, end), end, "{kind:?}");
        }
        assert_eq!(events_before_fault(1, 3, 9), 3, "the opening is event 0");
    }

    #[test]
    fn tools_json_and_images_shape_the_answer() {
        let v = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "max_tokens": 100});
        let a = ask(Kind::Anthropic, &v);
        assert_eq!((a.tools.len(), a.images), (1, 1));
        let ans = answer(Kind::Anthropic, "m", &a);
        assert_eq!(ans.finish, FinishReason::ToolCalls);
        assert_eq!(ans.tool_calls[0].name, "get_weather");
        let schema = json!({"type": "object", "required": ["city", "n"],
            "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}});
        let j = mock::json_answer(Some(&schema), "w");
        assert_eq!(j, json!({"city": "w", "n": 42}));
    }
}
