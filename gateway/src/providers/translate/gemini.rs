//! Gemini `generateContent` / `streamGenerateContent?alt=sse`, on the Gemini API or Vertex AI,
//! and embeddings (`batchEmbedContents` on the Gemini API, `predict` on Vertex).
//!
//! Request: system and developer text → `systemInstruction`; user and tool messages fold into
//! `user` contents (a tool result becomes `functionResponse`, its function name recovered from
//! the assistant call with the same id, since OpenAI tool messages carry none); assistant
//! messages → `model` contents with `functionCall` parts. Tool schemas go in
//! `parametersJsonSchema` (plain JSON Schema, so keywords outside Gemini's OpenAPI subset do not
//! cause 400s). Sampling settings go to `generationConfig`, `n` to `candidateCount`.
//!
//! Response and stream: `thought: true` parts → `reasoning_content`; a part that only carries a
//! `thoughtSignature` is not thinking and empty text parts are skipped; function calls arrive
//! whole, each becomes one tool-call delta with a running index and a synthesized id
//! (`call_<response id>_<n>`) unless Gemini gave one. `STOP` means `tool_calls` when the
//! candidate produced a call (the call and the `STOP` may come in different chunks), and the
//! finish reason is written once, at the end of the body, since the stream has no terminal
//! event and some models repeat `STOP`. A candidate without content still yields one choice.
//! `usageMetadata` may come on every chunk: its fields are merged, last value wins.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::openai::{
    self, ChatRequest, ChoiceOut, ChunkWriter, ImageUrl, Part, ReasoningEffort, ResponseFormat,
    ToolCallOut, ToolChoice, Turn, Usage,
};
use super::{
    Endpoint, FinishReason, GeminiFlavour, GeminiOptions, Kind, ProviderError, RequestState,
    ResponseCtx, TranslateError, Translated, UpstreamRequest, stream_error, unsupported,
};

/// Google's documented value for a function call whose signature was lost (history from
/// another model, or a client that dropped `extra_content`).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

// === request ===

pub fn request(
    body: &[u8],
    endpoint: Endpoint,
    upstream_model: &str,
    opts: &GeminiOptions,
) -> Result<UpstreamRequest, TranslateError> {
    let kind = match opts.flavour {
        GeminiFlavour::Api { .. } => Kind::Gemini,
        GeminiFlavour::Vertex { .. } => Kind::Vertex,
    };
    let mut state = RequestState::new(kind, endpoint, upstream_model);
    let model_path = model_path(&opts.flavour, upstream_model);
    let (path_and_query, out) = match endpoint {
        Endpoint::Chat => {
            let req = openai::parse_chat(body)?;
            state.stream = req.stream;
            state.include_usage = req.include_usage;
            let method = if req.stream {
                ":streamGenerateContent?alt=sse"
            } else {
                ":generateContent"
            };
            (
                format!("{model_path}{method}"),
                chat_body(&req, kind, upstream_model)?,
            )
        }
        Endpoint::Embeddings => {
            let req = openai::parse_embeddings(body)?;
            state.base64 = req.base64;
            state.inputs = req.inputs.len();
            match &opts.flavour {
                GeminiFlavour::Api { .. } => {
                    let model_name = model_path
                        .split_once("/models/")
                        .map_or(upstream_model.to_owned(), |(_, m)| format!("models/{m}"));
                    let requests: Vec<Value> = req
                        .inputs
                        .iter()
                        .map(|text| {
                            let mut r = json!({
                                "model": model_name,
                                "content": {"parts": [{"text": text}]},
                            });
                            if let Some(d) = req.dimensions {
                                r["outputDimensionality"] = json!(d);
                            }
                            r
                        })
                        .collect();
                    (
                        format!("{model_path}:batchEmbedContents"),
                        json!({ "requests": requests }),
                    )
                }
                GeminiFlavour::Vertex { .. } => {
                    let instances: Vec<Value> =
                        req.inputs.iter().map(|t| json!({"content": t})).collect();
                    let mut out = json!({ "instances": instances });
                    if let Some(d) = req.dimensions {
                        out["parameters"] = json!({"outputDimensionality": d});
                    }
                    (format!("{model_path}:predict"), out)
                }
            }
        }
    };
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if state.stream {
        headers.push(("accept", "text/event-stream".to_owned()));
    }
    Ok(UpstreamRequest {
        method: "POST",
        path_and_query,
        headers,
        body: Bytes::from(out.to_string()),
        stream: state.stream,
        state,
    })
}

/// `/v1beta/models/{model}` or `/v1/projects/{p}/locations/{l}/publishers/google/models/{model}`.
fn model_path(flavour: &GeminiFlavour, model: &str) -> String {
    let model = encode_path(model);
    match flavour {
        GeminiFlavour::Api { api_version } => {
            if model.starts_with("models/") || model.starts_with("tunedModels/") {
                format!("/{api_version}/{model}")
            } else {
                format!("/{api_version}/models/{model}")
            }
        }
        GeminiFlavour::Vertex {
            project,
            location,
            api_version,
        } => {
            if model.starts_with("projects/") {
                format!("/{api_version}/{model}")
            } else if model.starts_with("publishers/") {
                format!("/{api_version}/projects/{project}/locations/{location}/{model}")
            } else {
                format!(
                    "/{api_version}/projects/{project}/locations/{location}/publishers/google/models/{model}"
                )
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters and `/` (resource paths keep theirs).
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether the model is newer than Gemini 2.x (thought signatures mandatory, `thinkingLevel`).
fn is_gemini3_or_later(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    name.starts_with("gemini-") && !name.starts_with("gemini-1") && !name.starts_with("gemini-2")
}

fn chat_body(req: &ChatRequest, kind: Kind, model: &str) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    let contents = contents(&req.turns, kind, is_gemini3_or_later(model))?;
    if contents.is_empty() {
        return Err(TranslateError::Invalid {
            field: "messages".into(),
            reason: "needs at least one user or assistant message".into(),
        });
    }
    out.insert("contents".into(), Value::Array(contents));
    if !req.system.is_empty() {
        let parts: Vec<Value> = req.system.iter().map(|t| json!({"text": t})).collect();
        out.insert("systemInstruction".into(), json!({ "parts": parts }));
    }

    let mut config = Map::new();
    let mut set = |key: &str, v: Option<Value>| {
        if let Some(v) = v {
            config.insert(key.into(), v);
        }
    };
    set("temperature", req.temperature.map(|v| json!(v)));
    set("topP", req.top_p.map(|v| json!(v)));
    set("topK", req.top_k.map(|v| json!(v)));
    set("maxOutputTokens", req.max_tokens.map(|v| json!(v)));
    set(
        "stopSequences",
        (!req.stop.is_empty()).then(|| json!(req.stop)),
    );
    set("candidateCount", (req.n > 1).then(|| json!(req.n)));
    set("seed", req.seed.map(|v| json!(v)));
    set("presencePenalty", req.presence_penalty.map(|v| json!(v)));
    set("frequencyPenalty", req.frequency_penalty.map(|v| json!(v)));
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            set("responseMimeType", Some(json!("application/json")))
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            set("responseMimeType", Some(json!("application/json")));
            set("responseJsonSchema", Some(schema.clone()));
        }
    }
    if let Some(effort) = req.reasoning_effort {
        set("thinkingConfig", Some(thinking_config(effort, model)));
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }

    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), json!(t.name));
                if let Some(desc) = &t.description {
                    d.insert("description".into(), json!(desc));
                }
                if let Some(p) = &t.parameters {
                    d.insert("parametersJsonSchema".into(), p.clone());
                }
                Value::Object(d)
            })
            .collect();
        out.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
        if let Some(choice) = &req.tool_choice {
            let config = match choice {
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Function(name) => {
                    json!({"mode": "ANY", "allowedFunctionNames": [name]})
                }
            };
            out.insert(
                "toolConfig".into(),
                json!({ "functionCallingConfig": config }),
            );
        }
    }
    Ok(Value::Object(out))
}

/// Gemini 2.x budgets thinking in tokens; later models take a level.
fn thinking_config(effort: ReasoningEffort, model: &str) -> Value {
    if is_gemini3_or_later(model) {
        let level = match effort {
            ReasoningEffort::None | ReasoningEffort::Minimal | ReasoningEffort::Low => "low",
            ReasoningEffort::Medium | ReasoningEffort::High => "high",
        };
        return json!({"thinkingLevel": level, "includeThoughts": true});
    }
    let budget = match effort {
        ReasoningEffort::None => return json!({"thinkingBudget": 0}),
        ReasoningEffort::Minimal => 512,
        ReasoningEffort::Low => 1024,
        ReasoningEffort::Medium => 8192,
        ReasoningEffort::High => 24576,
    };
    json!({"thinkingBudget": budget, "includeThoughts": true})
}

fn mime_from_extension(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        // Gemini's own default when nothing else says otherwise.
        _ => "image/jpeg",
    }
}

fn contents(
    turns: &[Turn],
    kind: Kind,
    need_signatures: bool,
) -> Result<Vec<Value>, TranslateError> {
    // Function names by tool call id, from the assistant turns (tool messages carry no name).
    let names: HashMap<&str, &str> = turns
        .iter()
        .flat_map(|t| match t {
            Turn::Assistant { tool_calls, .. } => tool_calls.as_slice(),
            _ => &[],
        })
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    let mut out: Vec<(&'static str, Vec<Value>)> = vec![];
    for turn in turns {
        let (role, parts) = match turn {
            Turn::User { parts, .. } => ("user", user_parts(parts, kind)?),
            Turn::Tool {
                index,
                tool_call_id,
                content,
            } => {
                let name = names.get(tool_call_id.as_str()).ok_or_else(|| {
                    TranslateError::Invalid {
                        field: format!("messages[{index}].tool_call_id"),
                        reason: format!(
                            "`{tool_call_id}` matches no earlier assistant tool call, and {} needs its function name",
                            kind.as_str()
                        ),
                    }
                })?;
                let response = match serde_json::from_str::<Value>(content) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    _ => json!({ "output": content }),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            Turn::Assistant {
                text, tool_calls, ..
            } => {
                let mut parts = vec![];
                if !text.is_empty() {
                    parts.push(json!({ "text": text }));
                }
                for (k, c) in tool_calls.iter().enumerate() {
                    let mut part = json!({"functionCall": {"name": c.name, "args": c.arguments}});
                    let signature = c.thought_signature.as_deref().or(
                        // Signatures attach to the first call of a step.
                        (k == 0 && need_signatures).then_some(SKIP_SIGNATURE),
                    );
                    if let Some(sig) = signature {
                        part["thoughtSignature"] = json!(sig);
                    }
                    parts.push(part);
                }
                ("model", parts)
            }
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => out.push((role, parts)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect())
}

fn user_parts(parts: &[Part], kind: Kind) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Text(t) if t.is_empty() => {}
            Part::Text(t) => out.push(json!({ "text": t })),
            Part::Image { url, path } => out.push(match url {
                ImageUrl::Data { media_type, data } => {
                    json!({"inlineData": {"mimeType": media_type, "data": data}})
                }
                // Google reads its own storage and (model permitting) public URLs itself.
                ImageUrl::Http(u) => {
                    json!({"fileData": {"mimeType": mime_from_extension(u), "fileUri": u}})
                }
                ImageUrl::Other(u) if u.starts_with("gs://") => {
                    json!({"fileData": {"mimeType": mime_from_extension(u), "fileUri": u}})
                }
                ImageUrl::Other(_) => {
                    return Err(unsupported(
                        kind,
                        format!("{path}.image_url.url"),
                        "takes images as data:, http(s) or gs:// URLs",
                    ));
                }
            }),
            Part::Audio { data, format, path } => {
                let mime = match format.as_str() {
                    "wav" => "audio/wav",
                    "mp3" => "audio/mp3",
                    _ => {
                        return Err(unsupported(
                            kind,
                            format!("{path}.input_audio.format"),
                            "takes wav or mp3 audio",
                        ));
                    }
                };
                out.push(json!({"inlineData": {"mimeType": mime, "data": data}}));
            }
        }
    }
    Ok(out)
}

// === usage ===

/// `usageMetadata` fields as last reported; each set when present, never cleared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UsageFields {
    prompt: Option<u64>,
    tool_use_prompt: Option<u64>,
    cached: Option<u64>,
    candidates: Option<u64>,
    thoughts: Option<u64>,
}

impl UsageFields {
    fn merge(&mut self, u: &Value) {
        for (slot, key) in [
            (&mut self.prompt, "promptTokenCount"),
            (&mut self.tool_use_prompt, "toolUsePromptTokenCount"),
            (&mut self.cached, "cachedContentTokenCount"),
            (&mut self.candidates, "candidatesTokenCount"),
            (&mut self.thoughts, "thoughtsTokenCount"),
        ] {
            if let Some(v) = u.get(key).and_then(Value::as_u64) {
                *slot = Some(v);
            }
        }
    }

    fn to_usage(self) -> Option<Usage> {
        (self != Self::default()).then(|| {
            let thoughts = self.thoughts.unwrap_or(0);
            Usage {
                prompt_tokens: self.prompt.unwrap_or(0) + self.tool_use_prompt.unwrap_or(0),
                completion_tokens: self.candidates.unwrap_or(0) + thoughts,
                cached_tokens: self.cached.unwrap_or(0),
                cache_write_tokens: 0,
                reasoning_tokens: thoughts,
            }
        })
    }
}

// === response ===

pub fn response(
    state: &RequestState,
    ctx: &ResponseCtx<'_>,
    body: &[u8],
) -> Result<Translated, ProviderError> {
    let kind = state.kind;
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ProviderError::bad_response(kind, e))?;
    if v.get("error").is_some() {
        return Err(stream_error(kind, None, body));
    }
    if state.endpoint == Endpoint::Embeddings {
        return embeddings(state, &v);
    }
    let id = v
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or(ctx.fallback_id)
        .to_owned();
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(&state.upstream_model)
        .to_owned();
    let mut calls = 0;
    let mut choices: BTreeMap<u64, (ChoiceOut, String)> = BTreeMap::new();
    for (pos, cand) in v
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let index = cand
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(pos as u64);
        let mut choice = ChoiceOut {
            content: String::new(),
            reasoning: String::new(),
            thinking: vec![],
            tool_calls: vec![],
            finish: FinishReason::Stop,
        };
        for part in parts(cand) {
            match classify(part) {
                PartKind::Thought(t) => choice.reasoning.push_str(t),
                PartKind::Text(t) => choice.content.push_str(t),
                PartKind::Call {
                    id: call_id,
                    name,
                    args,
                    signature,
                } => {
                    choice.tool_calls.push(ToolCallOut {
                        id: call_id.map_or_else(|| synth_id(&id, calls), str::to_owned),
                        name: name.to_owned(),
                        arguments: args,
                        thought_signature: signature.map(str::to_owned),
                    });
                    calls += 1;
                }
                PartKind::Skip => {}
            }
        }
        let raw = cand
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP")
            .to_owned();
        choice.finish = FinishReason::from_gemini(&raw, !choice.tool_calls.is_empty());
        choices.insert(index, (choice, raw));
    }
    if choices.is_empty() {
        // A blocked prompt comes back without candidates; clients still need one choice.
        let blocked = v
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str);
        let (finish, raw) = match blocked {
            Some(reason) => (FinishReason::ContentFilter, reason.to_owned()),
            None => (FinishReason::Stop, "NO_CANDIDATES".to_owned()),
        };
        choices.insert(
            0,
            (
                ChoiceOut {
                    content: String::new(),
                    reasoning: String::new(),
                    thinking: vec![],
                    tool_calls: vec![],
                    finish,
                },
                raw,
            ),
        );
    }
    let mut fields = UsageFields::default();
    if let Some(u) = v.get("usageMetadata") {
        fields.merge(u);
    }
    let usage = fields.to_usage();
    let (choices, raws): (Vec<ChoiceOut>, Vec<String>) = choices.into_values().unzip();
    Ok(Translated {
        body: openai::chat_completion(&id, ctx.created, &model, &choices, usage.as_ref()),
        usage,
        finish_reasons: choices.iter().map(|c| c.finish).collect(),
        provider_finish_reasons: raws,
        id,
        model,
    })
}

fn embeddings(state: &RequestState, v: &Value) -> Result<Translated, ProviderError> {
    let kind = state.kind;
    let bad = |what: &str| ProviderError::bad_response(kind, what.to_owned());
    let floats = |values: Option<&Value>| -> Result<Vec<f32>, ProviderError> {
        values
            .and_then(Value::as_array)
            .ok_or_else(|| bad("an embedding without `values`"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| bad("a non-numeric embedding value"))
            })
            .collect()
    };
    let (vectors, usage) = if kind == Kind::Vertex {
        let predictions = v
            .get("predictions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `predictions`"))?;
        let mut tokens = 0;
        let vectors = predictions
            .iter()
            .map(|p| {
                tokens += p
                    .pointer("/embeddings/statistics/token_count")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0) as u64;
                floats(p.pointer("/embeddings/values"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let usage = Usage {
            prompt_tokens: tokens,
            ..Usage::default()
        };
        (vectors, Some(usage))
    } else {
        let list = v
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `embeddings`"))?;
        let vectors = list
            .iter()
            .map(|e| floats(e.get("values")))
            .collect::<Result<Vec<_>, _>>()?;
        // The Gemini API reports no token counts for embeddings.
        (vectors, None)
    };
    if vectors.len() != state.inputs {
        return Err(bad("a different number of embeddings than inputs"));
    }
    Ok(Translated {
        body: openai::embeddings_list(&state.upstream_model, vectors, state.base64, usage.as_ref()),
        usage,
        finish_reasons: vec![],
        provider_finish_reasons: vec![],
        id: String::new(),
        model: state.upstream_model.clone(),
    })
}

fn parts(candidate: &Value) -> impl Iterator<Item = &Value> {
    candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

enum PartKind<'a> {
    Thought(&'a str),
    Text(&'a str),
    Call {
        id: Option<&'a str>,
        name: &'a str,
        args: String,
        signature: Option<&'a str>,
    },
    Skip,
}

fn classify(part: &Value) -> PartKind<'_> {
    if let Some(call) = part.get("functionCall") {
        return PartKind::Call {
            id: call.get("id").and_then(Value::as_str),
            name: call.get("name").and_then(Value::as_str).unwrap_or_default(),
            args: call
                .get("args")
                .filter(|a| a.is_object())
                .map_or_else(|| "{}".to_owned(), Value::to_string),
            signature: part.get("thoughtSignature").and_then(Value::as_str),
        };
    }
    match part.get("text").and_then(Value::as_str) {
        Some("") | None => PartKind::Skip,
        Some(t) if part.get("thought").and_then(Value::as_bool) == Some(true) => {
            PartKind::Thought(t)
        }
        Some(t) => PartKind::Text(t),
    }
}

fn synth_id(seed: &str, n: usize) -> String {
    format!("call_{seed}_{n}")
}

// === stream ===

/// The state of one Gemini SSE stream.
pub struct StreamState {
    kind: Kind,
    /// Seed for synthesized tool-call ids: the response id once seen.
    id_seed: String,
    identity_set: bool,
    calls: usize,
    usage: UsageFields,
    /// Latest raw finish reason per candidate.
    finish: BTreeMap<u32, String>,
    blocked: Option<String>,
}

impl StreamState {
    pub fn new(kind: Kind, fallback_id: &str) -> Self {
        Self {
            kind,
            id_seed: fallback_id.to_owned(),
            identity_set: false,
            calls: 0,
            usage: UsageFields::default(),
            finish: BTreeMap::new(),
            blocked: None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.to_usage()
    }

    pub fn provider_finish_reasons(&self) -> Vec<String> {
        self.finish
            .values()
            .cloned()
            .chain(self.blocked.clone())
            .collect()
    }

    /// One `data:` payload: a whole `GenerateContentResponse`.
    pub fn event(
        &mut self,
        w: &mut ChunkWriter,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProviderError> {
        let v: Value =
            serde_json::from_slice(data).map_err(|e| ProviderError::bad_response(self.kind, e))?;
        if v.get("error").is_some() {
            return Err(stream_error(self.kind, None, data));
        }
        if !self.identity_set {
            self.identity_set = true;
            let id = v.get("responseId").and_then(Value::as_str);
            if let Some(id) = id {
                id.clone_into(&mut self.id_seed);
            }
            w.set_identity(id, v.get("modelVersion").and_then(Value::as_str));
        }
        for (pos, cand) in v
            .get("candidates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = cand
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(u32::try_from(pos).unwrap_or(u32::MAX));
            w.start(index, out);
            for part in parts(cand) {
                match classify(part) {
                    PartKind::Thought(t) => w.reasoning(index, t, out),
                    PartKind::Text(t) => w.content(index, t, out),
                    PartKind::Call {
                        id,
                        name,
                        args,
                        signature,
                    } => {
                        let id =
                            id.map_or_else(|| synth_id(&self.id_seed, self.calls), str::to_owned);
                        self.calls += 1;
                        w.tool_start(index, &id, name, &args, signature, out);
                    }
                    PartKind::Skip => {}
                }
            }
            if let Some(reason) = cand.get("finishReason").and_then(Value::as_str) {
                self.finish.insert(index, reason.to_owned());
            }
        }
        if let Some(reason) = v
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str)
        {
            self.blocked = Some(reason.to_owned());
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage.merge(u);
        }
        Ok(())
    }

    /// The body ended: the only end a Gemini stream has.
    pub fn eof(&mut self, w: &mut ChunkWriter, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        if self.finish.is_empty() && self.blocked.is_some() {
            w.finish(0, FinishReason::ContentFilter, out);
            w.end(self.usage().as_ref(), out);
            return Ok(());
        }
        let started = w.started_choices().max(1);
        if let Some(missing) = (0..started).find(|i| !self.finish.contains_key(i)) {
            return Err(ProviderError::interrupted(
                self.kind,
                format!("the body ended before candidate {missing} had a finishReason"),
            ));
        }
        for (index, raw) in &self.finish {
            let reason = FinishReason::from_gemini(raw, w.saw_tool_call(*index));
            w.finish(*index, reason, out);
        }
        w.end(self.usage().as_ref(), out);
        Ok(())
    }
}
