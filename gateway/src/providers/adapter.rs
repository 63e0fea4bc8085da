//! The provider kinds that speak another dialect (anthropic, gemini, azure_openai, bedrock):
//! building their request from the client's OpenAI body, and turning what comes back into
//! the OpenAI answer the exchange forwards and records.
//!
//! The exchange is written once, against OpenAI shapes. A [`TranslatedUpstream`] wraps the
//! provider's HTTP answer and shows the exchange exactly what an OpenAI provider would have
//! sent: a non-2xx answer becomes the status and `{"error":…}` body its class maps to
//! (Anthropic's 529 → 503, Gemini's `RESOURCE_EXHAUSTED` → 429, with `retry-after-ms` when
//! the provider said how long to wait); a whole answer becomes a `chat.completion` (or an
//! embeddings list); a stream becomes `chat.completion.chunk` events, translated as each
//! upstream read arrives — nothing is held back beyond an incomplete provider event.
//!
//! `openai` and `mock` never come here: their bodies go through untouched.

use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use sluice_config::{BaseUrl, ProviderKind};

use super::HttpUpstream;
use super::translate::{
    self, AnthropicOptions, AzureOptions, BedrockOptions, GeminiFlavour, GeminiOptions,
    HeaderSource, KindOptions, RequestState, ResponseCtx, StreamTranslator, TranslateError,
    UpstreamRequest, auth,
};

/// Largest error body read from a provider (the rest is not needed to classify it).
const MAX_ERROR_BODY: usize = 64 << 10;

/// The per-kind options of a translated provider kind; `None` for `openai` and `mock`.
pub fn options(kind: &ProviderKind) -> Option<KindOptions> {
    Some(match kind {
        ProviderKind::OpenAi { .. } | ProviderKind::Mock { .. } => return None,
        ProviderKind::Anthropic {
            anthropic_version,
            default_max_tokens,
            ..
        } => KindOptions::Anthropic(AnthropicOptions {
            version: anthropic_version.clone(),
            default_max_tokens: *default_max_tokens,
            ..AnthropicOptions::default()
        }),
        ProviderKind::Gemini {
            api_version,
            vertex,
            ..
        } => KindOptions::Gemini(GeminiOptions {
            flavour: match vertex {
                None => GeminiFlavour::Api {
                    api_version: api_version.clone(),
                },
                Some(v) => GeminiFlavour::Vertex {
                    project: v.project.clone(),
                    location: v.location.clone(),
                    api_version: api_version.clone(),
                },
            },
        }),
        ProviderKind::AzureOpenAi {
            deployment,
            api_version,
            ..
        } => KindOptions::AzureOpenAi(AzureOptions {
            deployment: deployment.clone(),
            api_version: api_version.clone(),
        }),
        ProviderKind::Bedrock { region, .. } => KindOptions::Bedrock(BedrockOptions {
            region: region.clone(),
        }),
    })
}

/// `gen_ai.provider.name` of a provider kind (OpenTelemetry GenAI semantic conventions).
pub fn genai_provider_name(kind: &ProviderKind) -> &'static str {
    match options(kind) {
        Some(opts) => opts.kind().genai_provider_name(),
        None => match kind {
            ProviderKind::Mock { .. } => "sluice.mock",
            _ => "openai",
        },
    }
}

/// The OpenAI endpoint as the translators know it; legacy completions have no equivalent.
pub fn endpoint(
    kind: translate::Kind,
    endpoint: sluice_observability::Endpoint,
) -> Result<translate::Endpoint, TranslateError> {
    use sluice_observability::Endpoint as E;
    match endpoint {
        E::Embeddings => Ok(translate::Endpoint::Embeddings),
        E::Completions => Err(TranslateError::Unsupported {
            field: "prompt".into(),
            reason: format!(
                "{} has no legacy completions API; send the request to /v1/chat/completions",
                kind.as_str()
            ),
        }),
        E::ChatCompletions
        | E::Models
        | E::Feedback
        | E::Other
        | E::Responses
        | E::Messages
        | E::MessagesCountTokens => Ok(translate::Endpoint::Chat),
    }
}

/// Why the credential headers could not be made.
pub enum CredentialError {
    /// Not configured or not set in the environment: the provider cannot be used now.
    Missing(String),
    /// Signing failed (a malformed URL or header; never a credential).
    Signing(String),
}

/// The credential headers for `req` to a provider of `kind`: `x-api-key`, `x-goog-api-key`,
/// `api-key`, a bearer token, or a SigV4 signature over the final URL, headers and body.
pub fn credentials(
    kind: &ProviderKind,
    provider: &str,
    base_url: &BaseUrl,
    req: &UpstreamRequest,
) -> Result<Vec<auth::AuthHeader>, CredentialError> {
    let missing = |what: String| Err(CredentialError::Missing(what));
    let Some(access) = kind.access() else {
        return Ok(vec![]);
    };
    if let (None, Some(env)) = (&access.api_key, &access.api_key_env) {
        return missing(format!(
            "provider `{provider}` has no API key: the environment variable {env} is not set"
        ));
    }
    let key = access.api_key.as_ref();
    Ok(match kind {
        ProviderKind::OpenAi { .. } | ProviderKind::Mock { .. } => vec![],
        ProviderKind::Anthropic { .. } => key.map(auth::anthropic).into_iter().collect(),
        ProviderKind::Gemini { vertex: None, .. } => {
            key.map(auth::gemini_api_key).into_iter().collect()
        }
        ProviderKind::Gemini {
            vertex: Some(_), ..
        } => key.map(auth::bearer).into_iter().collect(),
        ProviderKind::AzureOpenAi { .. } => key.map(auth::azure_api_key).into_iter().collect(),
        ProviderKind::Bedrock { region, aws, .. } => {
            if let Some(key) = key {
                vec![auth::bearer(key)]
            } else {
                let Some(creds) = aws.as_ref().and_then(|a| a.credentials.as_ref()) else {
                    let vars = aws.as_ref().map_or_else(String::new, |a| {
                        format!(
                            ": the environment variables {} and {} are not set",
                            a.access_key_id_env, a.secret_access_key_env
                        )
                    });
                    return missing(format!(
                        "provider `{provider}` has no AWS credentials{vars}"
                    ));
                };
                let creds = auth::AwsCredentials {
                    access_key_id: creds.access_key_id.clone(),
                    secret_access_key: creds.secret_access_key.clone(),
                    session_token: creds.session_token.clone(),
                };
                auth::bedrock_sigv4(
                    &creds,
                    region,
                    &origin(base_url, true),
                    req,
                    SystemTime::now(),
                )
                .map_err(|e| CredentialError::Signing(e.to_string()))?
            }
        }
    })
}

/// `scheme://host[:port]` plus, with `with_path`, the base URL's path: the port only when it
/// is not the scheme's default, exactly as the `host` header is written (SigV4 signs it).
fn origin(url: &BaseUrl, with_path: bool) -> String {
    let mut s = String::with_capacity(64);
    s.push_str(if url.tls { "https://" } else { "http://" });
    s.push_str(&host_header(url));
    if with_path {
        s.push_str(&url.path);
    }
    s
}

fn host_header(url: &BaseUrl) -> String {
    let mut s = String::with_capacity(url.host.len() + 8);
    if url.host.contains(':') {
        let _ = write!(s, "[{}]", url.host);
    } else {
        s.push_str(&url.host);
    }
    if url.port != if url.tls { 443 } else { 80 } {
        let _ = write!(s, ":{}", url.port);
    }
    s
}

/// The request head for a translated request, in wire format. Every value is checked to be
/// visible ASCII (header values may hold spaces, as a SigV4 `authorization` does), so nothing
/// from the policy, the environment or the client can inject a header line.
pub fn request_head(
    url: &BaseUrl,
    req: &UpstreamRequest,
    credentials: &[auth::AuthHeader],
    request_id: &str,
    egress: Option<&super::egress::ProviderEgress>,
) -> Result<Bytes, String> {
    const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));
    let graphic = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    let printable = |s: &str| s.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if !graphic(&url.path) || !graphic(&req.path_and_query) || !graphic(request_id) {
        return Err("the upstream request has a path or id that is not visible ASCII".into());
    }
    if credentials.iter().any(|(_, v)| !printable(v.expose())) {
        // Never echo the credential: say only where the problem is.
        return Err("the provider's credential contains characters a header cannot carry".into());
    }
    if req.headers.iter().any(|(_, v)| !printable(v)) {
        return Err("a provider header value is not visible ASCII".into());
    }
    let secret_len: usize = credentials
        .iter()
        .map(|(n, v)| n.len() + v.expose().len() + 4)
        .sum();
    let mut b = BytesMut::with_capacity(384 + secret_len + req.path_and_query.len());
    b.put_slice(req.method.as_bytes());
    b.put_u8(b' ');
    if egress.is_some_and(|e| e.absolute_form) {
        // Through a proxy, a plain-HTTP request names its whole target.
        let _ = write!(b, "http://{}", url.authority());
    }
    b.put_slice(url.path.as_bytes());
    b.put_slice(req.path_and_query.as_bytes());
    b.put_slice(b" HTTP/1.1\r\nhost: ");
    b.put_slice(host_header(url).as_bytes());
    for (name, value) in &req.headers {
        let _ = write!(b, "\r\n{name}: {value}");
    }
    for (name, value) in credentials {
        b.put_slice(b"\r\n");
        b.put_slice(name.as_bytes());
        b.put_slice(b": ");
        b.put_slice(value.expose().as_bytes());
    }
    let _ = write!(b, "\r\ncontent-length: {}", req.body.len());
    // Sluice parses what comes back, so it asks for it uncompressed.
    b.put_slice(b"\r\naccept-encoding: identity\r\nuser-agent: ");
    b.put_slice(USER_AGENT.as_bytes());
    b.put_slice(b"\r\nx-request-id: ");
    b.put_slice(request_id.as_bytes());
    if let Some(e) = egress {
        // Checked at load: names are tokens, values printable ASCII, none Sluice writes itself.
        b.put_slice(&e.extra_head);
    }
    b.put_slice(b"\r\n\r\n");
    Ok(b.freeze())
}

/// A provider's answer in another dialect, shown to the exchange as an OpenAI answer.
pub struct TranslatedUpstream {
    inner: Box<HttpUpstream>,
    state: RequestState,
    /// The status the exchange sees (a provider error's mapped status).
    status: u16,
    /// `retry-after-ms` as the provider asked (from its header or its error body).
    retry_after_ms: Option<String>,
    /// The content type the exchange sees.
    content_type: Option<Bytes>,
    phase: Phase,
    /// `chatcmpl-<request id>`: the id of answers whose provider gives none.
    fallback_id: String,
    created: u64,
    /// The provider's body was read to its end (the connection may be pooled).
    inner_complete: bool,
}

enum Phase {
    /// A 2xx whole answer, not read yet.
    Whole { max_bytes: usize },
    /// A stream being translated.
    Stream(Box<StreamTranslator>),
    /// An error answer already read and translated, waiting to be returned.
    Error(Option<Bytes>),
    /// Everything was returned; what is left upstream is drained and dropped.
    Done,
}

/// Response headers of the wrapped HTTP answer, for the translators.
struct Heads<'a>(&'a HttpUpstream);

impl HeaderSource for Heads<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.session.header(name)
    }
}

impl TranslatedUpstream {
    /// Wraps the provider's answer to `state`'s request. A non-2xx answer is read (bounded)
    /// and classified here, so the exchange sees its OpenAI status at once.
    pub async fn open(
        inner: Box<HttpUpstream>,
        state: RequestState,
        request_id: &str,
        max_bytes: usize,
    ) -> Self {
        let created = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let provider_status = inner.session.status();
        let mut up = Self {
            inner,
            status: provider_status,
            retry_after_ms: None,
            content_type: None,
            phase: Phase::Done,
            fallback_id: format!("chatcmpl-{request_id}"),
            created,
            inner_complete: false,
            state,
        };
        if !(200..300).contains(&provider_status) {
            let body = up
                .read_inner_to_end(MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let err = translate::error(up.state.kind, provider_status, &Heads(&up.inner), &body);
            up.fail_with(&err);
            // A status outside the error range still reads as an error to the exchange.
            if (200..300).contains(&up.status) {
                up.status = 502;
            }
            return up;
        }
        up.content_type = Some(Bytes::from_static(b"application/json"));
        up.phase = if up.state.stream {
            let framing_ok = up.inner.session.header("content-type").is_some_and(|ct| {
                let want: &[u8] = match up.state.kind {
                    translate::Kind::Bedrock => b"application/vnd.amazon.eventstream",
                    _ => b"text/event-stream",
                };
                ct.len() >= want.len() && ct[..want.len()].eq_ignore_ascii_case(want)
            });
            // The wrong framing keeps the provider's content type, so the exchange refuses
            // it as "not an event stream" (and fails over) before anything is sent.
            up.content_type = if framing_ok {
                Some(Bytes::from_static(b"text/event-stream"))
            } else {
                up.inner
                    .session
                    .header("content-type")
                    .map(Bytes::copy_from_slice)
            };
            let ctx = ResponseCtx {
                created,
                fallback_id: &up.fallback_id,
            };
            Phase::Stream(Box::new(StreamTranslator::new(&up.state, &ctx)))
        } else {
            Phase::Whole { max_bytes }
        };
        up
    }

    fn fail_with(&mut self, err: &translate::ProviderError) {
        self.status = err.status_for_client;
        self.retry_after_ms = err.retry_after.map(|d| d.as_millis().to_string());
        self.content_type = Some(Bytes::from_static(b"application/json"));
        self.phase = Phase::Error(Some(err.openai_error_json.clone()));
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        if name.eq_ignore_ascii_case("content-type") {
            return self.content_type.as_deref();
        }
        if name.eq_ignore_ascii_case("retry-after-ms") {
            return self.retry_after_ms.as_deref().map(str::as_bytes);
        }
        // `retry-after` in seconds is superseded by the milliseconds above.
        if name.eq_ignore_ascii_case("retry-after") {
            return None;
        }
        self.inner.session.header(name)
    }

    /// Reads the provider's body to its end (at most `limit` bytes).
    async fn read_inner_to_end(&mut self, limit: usize) -> Result<Bytes, String> {
        let mut buf = BytesMut::new();
        loop {
            match self.inner.session.read_chunk().await? {
                Some(chunk) => {
                    if buf.len() + chunk.len() > limit {
                        return Err(format!("the provider's answer exceeded {limit} bytes"));
                    }
                    buf.extend_from_slice(&chunk);
                }
                None => {
                    self.inner_complete = true;
                    return Ok(buf.freeze());
                }
            }
        }
    }

    /// The next chunk of the OpenAI-shaped body; `Ok(None)` at its end.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match &mut self.phase {
                Phase::Done => {
                    // Drain what is left (a stream's terminating chunk) so the connection can
                    // be pooled; nothing more goes to the client.
                    if !self.inner_complete {
                        while self.inner.session.read_chunk().await?.is_some() {}
                        self.inner_complete = true;
                    }
                    return Ok(None);
                }
                Phase::Error(body) => {
                    let body = body.take();
                    self.phase = Phase::Done;
                    if body.is_some() {
                        return Ok(body);
                    }
                }
                Phase::Whole { max_bytes } => {
                    let max = *max_bytes;
                    let body = self.read_inner_to_end(max).await?;
                    let ctx = ResponseCtx {
                        created: self.created,
                        fallback_id: &self.fallback_id,
                    };
                    let translated =
                        translate::response(&self.state, &ctx, 200, &Heads(&self.inner), &body);
                    self.phase = Phase::Done;
                    // An unusable 2xx goes to the exchange as an `error` body, which it
                    // fails over from like any other garbage answer.
                    return Ok(Some(match translated {
                        Ok(t) => t.body,
                        Err(e) => e.openai_error_json,
                    }));
                }
                Phase::Stream(_) => {
                    let chunk = self.inner.session.read_chunk().await;
                    let Phase::Stream(tr) = &mut self.phase else {
                        unreachable!("the phase was just matched");
                    };
                    let mut out = Vec::new();
                    let result = match chunk {
                        Ok(Some(bytes)) => tr.push(&bytes, &mut out),
                        Ok(None) => {
                            self.inner_complete = true;
                            tr.finish(&mut out)
                        }
                        // A read error is the stream breaking off: the translator says so
                        // in OpenAI's shape.
                        Err(e) => {
                            let err = translate::ProviderError::interrupted(self.state.kind, e);
                            Err(err)
                        }
                    };
                    let done = result.is_err() || tr.is_finished() || self.inner_complete;
                    let framed = frame(&out, result.err().as_ref());
                    if done {
                        self.phase = Phase::Done;
                    }
                    if let Some(framed) = framed {
                        return Ok(Some(framed));
                    }
                }
            }
        }
    }

    /// Translated bytes already received, without waiting; `None` when there are none.
    pub fn read_buffered(&mut self) -> Option<Bytes> {
        let Phase::Stream(tr) = &mut self.phase else {
            return None;
        };
        let mut out = Vec::new();
        let mut result = Ok(());
        while result.is_ok()
            && !tr.is_finished()
            && let Ok(Some(bytes)) = self.inner.session.read_buffered()
        {
            result = tr.push(&bytes, &mut out);
        }
        let done = result.is_err() || tr.is_finished();
        let framed = frame(&out, result.err().as_ref());
        if done {
            self.phase = Phase::Done;
        }
        framed
    }

    /// Reads what the provider has already sent, without waiting (see
    /// [`super::Upstream::read_arrived`]).
    pub fn read_arrived(&mut self) -> bool {
        matches!(self.phase, Phase::Stream(_)) && self.inner.session.read_arrived()
    }

    /// The provider's answer, and whether its body was read to the end.
    pub fn into_inner(self) -> (Box<HttpUpstream>, bool) {
        (self.inner, self.inner_complete)
    }
}

/// `data: <payload>\n\n` for each payload, then the error event if any, in one buffer.
fn frame(payloads: &[Bytes], err: Option<&translate::ProviderError>) -> Option<Bytes> {
    if payloads.is_empty() && err.is_none() {
        return None;
    }
    let len: usize = payloads.iter().map(|p| p.len() + 8).sum::<usize>()
        + err.map_or(0, |e| e.openai_error_json.len() + 8);
    let mut b = BytesMut::with_capacity(len);
    for p in payloads {
        b.put_slice(b"data: ");
        b.put_slice(p);
        b.put_slice(b"\n\n");
    }
    if let Some(e) = err {
        b.put_slice(&e.to_sse_event());
    }
    Some(b.freeze())
}

/// Builds what to send for `body` to a translated provider, or the 400 naming the field the
/// target cannot do.
pub fn build(
    opts: &KindOptions,
    endpoint: sluice_observability::Endpoint,
    upstream_model: &str,
    body: &[u8],
) -> Result<UpstreamRequest, TranslateError> {
    let ep = self::endpoint(opts.kind(), endpoint)?;
    translate::request(body, ep, upstream_model, opts)
}

#[cfg(test)]
mod tests {
    use sluice_config::Secret;

    use super::*;

    fn url(tls: bool, host: &str, port: u16, path: &str) -> BaseUrl {
        BaseUrl {
            tls,
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    fn req() -> UpstreamRequest {
        translate::request(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            translate::Endpoint::Chat,
            "claude-x",
            &KindOptions::Anthropic(AnthropicOptions::default()),
        )
        .expect("translates")
    }

    #[test]
    fn the_head_carries_the_dialect_headers_and_credential() {
        let r = req();
        let creds = vec![auth::anthropic(&Secret::new("sk-ant"))];
        let head = request_head(
            &url(false, "127.0.0.1", 9000, ""),
            &r,
            &creds,
            "req_1",
            None,
        )
        .expect("head");
        let text = std::str::from_utf8(&head).expect("ascii");
        assert!(
            text.starts_with("POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:9000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nanthropic-version: 2023-06-01\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nx-api-key: sk-ant\r\n"), "{text}");
        assert!(!text.contains("authorization"), "{text}");
        assert!(
            text.contains(&format!("\r\ncontent-length: {}\r\n", r.body.len())),
            "{text}"
        );
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        assert!(parsed.parse(&head).expect("parses").is_complete());
    }

    #[test]
    fn nothing_can_inject_a_header_line() {
        let r = req();
        let creds = vec![auth::anthropic(&Secret::new("sk\r\nx-evil: 1"))];
        let err = request_head(
            &url(true, "api.anthropic.com", 443, ""),
            &r,
            &creds,
            "id",
            None,
        )
        .expect_err("refused");
        assert!(!err.contains("sk"), "never echoed: {err}");
    }

    #[test]
    fn origins_write_the_port_only_when_it_is_not_the_default() {
        assert_eq!(
            origin(
                &url(true, "bedrock-runtime.us-east-1.amazonaws.com", 443, ""),
                true
            ),
            "https://bedrock-runtime.us-east-1.amazonaws.com"
        );
        assert_eq!(
            origin(&url(false, "::1", 8080, "/p"), true),
            "http://[::1]:8080/p"
        );
    }

    #[test]
    fn payloads_and_errors_are_framed_as_sse_events() {
        let e = translate::ProviderError::interrupted(translate::Kind::Anthropic, "cut");
        let framed = frame(&[Bytes::from_static(b"{\"a\":1}")], Some(&e)).expect("some");
        let text = std::str::from_utf8(&framed).expect("utf-8");
        assert!(
            text.starts_with("data: {\"a\":1}\n\ndata: {\"error\":"),
            "{text}"
        );
        assert!(text.ends_with("\n\n"));
        assert!(frame(&[], None).is_none());
    }
}
