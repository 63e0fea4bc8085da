//! Azure OpenAI: OpenAI's own dialect behind deployment URLs.
//!
//! Request: the body passes through with two changes: `model` names the deployment (what the v1
//! API routes on; the classic API routes on the URL and ignores it), and a stream asks for
//! `stream_options.include_usage` (on the v1 API and api-versions from 2024-09-01, which accept
//! it) so usage is always known. Nothing is refused here: Azure validates its own dialect.
//!
//! Response and stream: bytes pass through unchanged, only read for id, model, usage and finish
//! reasons. Azure's filter annotations are dropped from streams: the first chunk
//! (`"id":""`, `"choices":[]`, `prompt_filter_results`) and `content_filter_offsets` chunks
//! without a `delta` both crash clients that read `choices[0].delta`. The usage chunk Sluice
//! asked for is dropped unless the client asked for it too.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::openai::{ChunkWriter, Usage};
use super::{
    AzureOptions, Endpoint, FinishReason, Kind, ProviderError, RequestState, ResponseCtx,
    TranslateError, Translated, UpstreamRequest, stream_error,
};

const KIND: Kind = Kind::AzureOpenAi;

/// The first GA-era api-version that accepts `stream_options`.
const STREAM_OPTIONS_SINCE: &str = "2024-09-01";

pub fn request(
    body: &[u8],
    endpoint: Endpoint,
    upstream_model: &str,
    opts: &AzureOptions,
) -> Result<UpstreamRequest, TranslateError> {
    let invalid = |reason: &str| TranslateError::Invalid {
        field: "body".into(),
        reason: reason.into(),
    };
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| invalid(&format!("not JSON: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| invalid("must be a JSON object"))?;
    let deployment = opts.deployment.as_deref().unwrap_or(upstream_model);
    obj.insert("model".into(), json!(deployment));
    strip_extensions(obj);
    let stream = obj.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let accepts_stream_options = opts
        .api_version
        .as_deref()
        .is_none_or(|v| v >= STREAM_OPTIONS_SINCE);
    if stream && endpoint == Endpoint::Chat && accepts_stream_options {
        let so = obj.entry("stream_options").or_insert_with(|| json!({}));
        if let Value::Object(so) = so {
            so.insert("include_usage".into(), json!(true));
        } else {
            *so = json!({"include_usage": true});
        }
    }
    let tail = match endpoint {
        Endpoint::Chat => "chat/completions",
        Endpoint::Embeddings => "embeddings",
    };
    let path_and_query = match &opts.api_version {
        Some(version) => format!(
            "/openai/deployments/{}/{tail}?api-version={}",
            encode_segment(deployment),
            encode_segment(version)
        ),
        None => format!("/openai/v1/{tail}"),
    };
    let mut state = RequestState::new(KIND, endpoint, upstream_model);
    state.stream = stream;
    state.include_usage = include_usage;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if stream {
        headers.push(("accept", "text/event-stream".to_owned()));
    }
    Ok(UpstreamRequest {
        method: "POST",
        path_and_query,
        headers,
        body: Bytes::from(v.to_string()),
        stream,
        state,
    })
}

/// Removes the fields Sluice itself adds to answers from other kinds (`reasoning_content`,
/// `thinking_blocks`, `tool_calls[].extra_content`): a client replaying such a history to an
/// Azure target would otherwise be refused, since OpenAI's dialect rejects unknown message
/// fields.
fn strip_extensions(obj: &mut serde_json::Map<String, Value>) {
    let Some(Value::Array(messages)) = obj.get_mut("messages") else {
        return;
    };
    for m in messages.iter_mut().filter_map(Value::as_object_mut) {
        if m.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        m.remove("reasoning_content");
        m.remove("thinking_blocks");
        if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
            for c in calls.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("extra_content");
            }
        }
    }
}

fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// OpenAI's `usage` object, as Azure sends it.
pub fn openai_usage(u: &Value) -> Option<Usage> {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    u.is_object().then(|| Usage {
        prompt_tokens: n("/prompt_tokens"),
        completion_tokens: n("/completion_tokens"),
        cached_tokens: n("/prompt_tokens_details/cached_tokens"),
        cache_write_tokens: n("/prompt_tokens_details/cache_write_tokens"),
        reasoning_tokens: n("/completion_tokens_details/reasoning_tokens"),
    })
}

pub fn response(
    state: &RequestState,
    ctx: &ResponseCtx<'_>,
    body: &[u8],
) -> Result<Translated, ProviderError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ProviderError::bad_response(KIND, e))?;
    if v.get("error").is_some() {
        return Err(stream_error(KIND, None, body));
    }
    let text = |key: &str| v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut finish_reasons = vec![];
    let mut raw = vec![];
    if state.endpoint == Endpoint::Chat {
        let choices = v
            .get("choices")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::bad_response(KIND, "no `choices`"))?;
        for c in choices {
            if let Some(r) = c.get("finish_reason").and_then(Value::as_str) {
                raw.push(r.to_owned());
                finish_reasons.extend(FinishReason::from_openai(r));
            }
        }
    }
    Ok(Translated {
        body: Bytes::copy_from_slice(body),
        usage: v.get("usage").and_then(openai_usage),
        finish_reasons,
        provider_finish_reasons: raw,
        id: text("id").unwrap_or(ctx.fallback_id).to_owned(),
        model: text("model").unwrap_or(&state.upstream_model).to_owned(),
    })
}

/// The state of one Azure stream: payloads pass through; this only watches them.
pub struct StreamState {
    include_usage: bool,
    usage: Option<Usage>,
    finish: BTreeMap<u64, FinishReason>,
    id: Option<String>,
    model: Option<String>,
}

impl StreamState {
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            usage: None,
            finish: BTreeMap::new(),
            id: None,
            model: None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn finish_reasons(&self) -> Vec<FinishReason> {
        self.finish.values().copied().collect()
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    pub fn event(
        &mut self,
        w: &mut ChunkWriter,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), ProviderError> {
        if data == super::openai::DONE {
            w.end(None, out);
            return Ok(());
        }
        let v: Value =
            serde_json::from_slice(data).map_err(|e| ProviderError::bad_response(KIND, e))?;
        if v.get("error").is_some() {
            return Err(stream_error(KIND, None, data));
        }
        if let Some(u) = v.get("usage").and_then(openai_usage) {
            self.usage = Some(u);
        }
        let choices = v.get("choices").and_then(Value::as_array);
        let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
        match choices {
            Some(c) if c.is_empty() => {
                // The usage chunk, or the prompt-filter annotation (no usage): only the former
                // goes out, and only when the client asked for it.
                if v.get("usage").is_some_and(Value::is_object) && self.include_usage {
                    out.push(Bytes::copy_from_slice(data));
                }
            }
            Some(c) => {
                if id.is_empty() || !c.iter().any(|x| x.get("delta").is_some()) {
                    // A filter annotation (`content_filter_offsets`), not an answer chunk.
                    return Ok(());
                }
                if self.id.is_none() {
                    self.id = Some(id.to_owned());
                    self.model = v.get("model").and_then(Value::as_str).map(str::to_owned);
                }
                for choice in c {
                    let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(r) = choice
                        .get("finish_reason")
                        .and_then(Value::as_str)
                        .and_then(FinishReason::from_openai)
                    {
                        self.finish.insert(index, r);
                    }
                }
                out.push(Bytes::copy_from_slice(data));
            }
            None => {
                return Err(ProviderError::bad_response(
                    KIND,
                    "a chunk without `choices`",
                ));
            }
        }
        Ok(())
    }

    /// A stream that finished its choices but lost `[DONE]` gets one; anything else was cut.
    pub fn eof(&mut self, w: &mut ChunkWriter, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        if self.finish.is_empty() {
            return Err(ProviderError::interrupted(
                KIND,
                "the body ended before `[DONE]` or a finish_reason",
            ));
        }
        w.end(None, out);
        Ok(())
    }
}
