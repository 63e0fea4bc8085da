//! Sending one attempt to its provider: the provider kind decides how (HTTP through pingora's
//! pooled connector, or the in-process mock), and the attempt's record opens once something is
//! really sent.

use std::sync::Arc;

use bytes::Bytes;
use sluice_config::{BaseUrl, ProviderKind};
use sluice_observability::Endpoint;
use sluice_policy::Target;

use super::failure::Failure;
use crate::context::RequestCtx;
use crate::providers::egress::ProviderEgress;
use crate::providers::mock::{self, MockTiming};
use crate::providers::openai::{self, HttpTarget};
use crate::providers::{
    ConnectError, MockUpstream, TranslatedUpstream, Upstream, adapter, translate,
};
use crate::state::AppState;

/// Sends the request for `endpoint` (streamed or not) with `body` to `target`, up to the
/// answer's head.
pub async fn open(
    state: &AppState,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    stream: bool,
    target: &Target,
    body: Bytes,
) -> Result<Upstream, Failure> {
    let provider = &target.provider.config;
    // The Responses face: the client's own body to a target that speaks the Responses API.
    let native = match &mut ctx.render {
        crate::face::Render::Responses(r) => {
            let lacks = target
                .state
                .lacks_responses_api(tokio::time::Instant::now());
            let plan = responses_plan(&provider.kind, r.builtin(), lacks);
            let native = match plan {
                ResponsesPlan::Native => r.native_body(&target.upstream_model),
                ResponsesPlan::Translate => None,
                ResponsesPlan::Refuse(b) => {
                    return Err(builtin_refusal(b, &provider.name, lacks));
                }
            };
            r.set_native(native.is_some());
            native
        }
        _ => None,
    };
    match &provider.kind {
        ProviderKind::Mock { ttft, tokens_per_s } => {
            ctx.begin_attempt(target, sluice_observability::spans::new_span_id());
            let timing = MockTiming {
                ttft: *ttft,
                tokens_per_s: *tokens_per_s,
            };
            Ok(Upstream::Mock(MockUpstream::new(
                mock_endpoint(endpoint),
                &body,
                timing,
            )))
        }
        ProviderKind::OpenAi {
            base_url,
            api_key_env,
            api_key,
            connect_timeout,
            ..
        } => {
            if let (None, Some(env)) = (api_key, api_key_env) {
                return Err(Failure::Unavailable(format!(
                    "provider `{}` has no API key: the environment variable {env} is not set",
                    provider.name
                )));
            }
            ctx.begin_attempt(target, sluice_observability::spans::new_span_id());
            let egress = egress_of(state, provider, base_url, *connect_timeout)?;
            let addr = dial(state, base_url, egress.as_deref()).await?;
            let (path, body) = match native {
                Some(native) => ("/responses", native),
                None => (api_path(endpoint), body),
            };
            let http = HttpTarget {
                addr,
                base_url,
                api_key: api_key.as_ref(),
                connect_timeout: *connect_timeout,
                path,
                stream,
                request_id: &ctx.request_id,
                own_listener: false,
                egress: egress.as_deref(),
            };
            openai::send(&state.connector, &http, body)
                .await
                .map_err(|e| match e {
                    ConnectError::Connect(m) => Failure::Connect(m),
                    ConnectError::Unavailable(m) => Failure::Unavailable(m),
                })
        }
        kind => open_translated(state, ctx, endpoint, target, kind, &body).await,
    }
}

/// How a Responses request goes to one target.
#[derive(Debug, PartialEq, Eq)]
enum ResponsesPlan<'a> {
    /// The client's own body to the provider's `/responses`; the answer passes through.
    Native,
    /// Translated to chat completions (and the chat answer rendered back).
    Translate,
    /// The request needs a built-in tool, which only OpenAI's own Responses API runs: the
    /// client's 400, final — whether a later target could run it would depend on the plan's
    /// order, and the client should learn that this route can reach a target that cannot.
    Refuse(&'a crate::face::responses::Builtin),
}

/// Which targets speak the Responses API: OpenAI-kind providers without compat quirks (a
/// server that needs its chat body adjusted is an OpenAI-compatible server, and those
/// rarely serve `/responses`). Azure OpenAI is translated: its Responses API lives on other
/// paths and versions than its chat deployments.
///
/// `lacks_api`: the provider answered `/responses` with 404/405 lately (an OpenAI-compatible
/// server of kind `openai`); it is translated for a while, as if it had quirks.
fn responses_plan<'a>(
    kind: &ProviderKind,
    builtin: Option<&'a crate::face::responses::Builtin>,
    lacks_api: bool,
) -> ResponsesPlan<'a> {
    match (kind, builtin) {
        (ProviderKind::OpenAi { compat, .. }, _) if compat.is_identity() && !lacks_api => {
            ResponsesPlan::Native
        }
        (_, Some(b)) => ResponsesPlan::Refuse(b),
        (_, None) => ResponsesPlan::Translate,
    }
}

/// The client's 400 for a built-in tool on a target that cannot run it, in OpenAI's shape.
fn builtin_refusal(
    b: &crate::face::responses::Builtin,
    provider: &str,
    lacks_api: bool,
) -> Failure {
    let message = if lacks_api {
        format!(
            "the built-in tool `{}` (in `{}`) runs only on OpenAI's Responses API, and this request's target (provider `{provider}`) does not serve it (it answered 404 at /responses); leave the tool out or route the model to OpenAI",
            b.kind, b.param
        )
    } else if b.param == "input" {
        format!(
            "the `{}` item in `input` is a built-in tool's call, which only OpenAI-kind targets take, and this request's target (provider `{provider}`) is not one; leave the item out or route the model to an OpenAI provider",
            b.kind
        )
    } else {
        format!(
            "the built-in tool `{}` (in `{}`) runs only on OpenAI-kind targets, and this request's target (provider `{provider}`) is not one; leave the tool out or route the model to an OpenAI provider",
            b.kind, b.param
        )
    };
    let param = if b.param == "input" { "input" } else { "tools" };
    let e = crate::error::GatewayError::invalid(message, Some(param));
    Failure::Client {
        status: 400,
        body: e.to_json(),
    }
}

/// The provider's built connection settings; `None` (nothing looked up) for a provider that
/// has none. A bundle that cannot be read fails the attempt, and failover goes on.
fn egress_of(
    state: &AppState,
    provider: &sluice_config::ProviderConfig,
    base_url: &BaseUrl,
    connect_timeout: std::time::Duration,
) -> Result<Option<Arc<ProviderEgress>>, Failure> {
    if provider.egress.is_default() {
        return Ok(None);
    }
    state
        .egress
        .get(&provider.name, &provider.egress, base_url, connect_timeout)
        .map(Some)
        .map_err(Failure::Connect)
}

/// The address to connect to: through a proxy only the proxy's name is resolved here, since
/// inside a company network the provider's may not resolve at all.
async fn dial(
    state: &AppState,
    base_url: &BaseUrl,
    egress: Option<&ProviderEgress>,
) -> Result<std::net::SocketAddr, Failure> {
    let (host, port) = egress.map_or((&base_url.host, base_url.port), |e| {
        (&e.dial_host, e.dial_port)
    });
    state
        .resolver
        .resolve(host, port)
        .await
        .map_err(Failure::Connect)
}

/// Anthropic, Gemini, Azure OpenAI and Bedrock: the body is translated into the provider's
/// dialect, sent with its credential, and its answer wrapped to look like OpenAI's.
async fn open_translated(
    state: &AppState,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    target: &Target,
    kind: &ProviderKind,
    body: &[u8],
) -> Result<Upstream, Failure> {
    let provider = &target.provider.config;
    let (Some(opts), Some(access)) = (adapter::options(kind), kind.access()) else {
        return Err(Failure::Unavailable(format!(
            "provider `{}` is of a kind Sluice cannot send to",
            provider.name
        )));
    };
    // A request the target cannot do is the client's 400, naming the field; nothing is sent.
    // The Messages face sends its own body to an Anthropic-kind target (see
    // `face::messages::Render::native_request`); every other pair is translated from chat.
    let native = match (&ctx.render, &opts) {
        (crate::face::Render::Messages(m), translate::KindOptions::Anthropic(a)) => {
            m.native_request(&target.upstream_model, a)
        }
        _ => None,
    };
    let req = native.map_or_else(
        || adapter::build(&opts, endpoint, &target.upstream_model, body),
        Ok,
    );
    let req = req.map_err(|e| Failure::Client {
        status: 400,
        body: e.to_openai_json(),
    })?;
    let creds = adapter::credentials(kind, &provider.name, &access.base_url, &req).map_err(
        |e| match e {
            adapter::CredentialError::Missing(m) => Failure::Unavailable(m),
            adapter::CredentialError::Signing(m) => {
                Failure::Unavailable(format!("provider `{}`: {m}", provider.name))
            }
        },
    )?;
    ctx.begin_attempt(target, sluice_observability::spans::new_span_id());
    let egress = egress_of(state, provider, &access.base_url, access.connect_timeout)?;
    let head = adapter::request_head(
        &access.base_url,
        &req,
        &creds,
        &ctx.request_id,
        egress.as_deref(),
    )
    .map_err(Failure::Connect)?;
    drop(creds);
    let addr = dial(state, &access.base_url, egress.as_deref()).await?;
    let http = HttpTarget {
        addr,
        base_url: &access.base_url,
        api_key: None,
        connect_timeout: access.connect_timeout,
        path: "",
        stream: req.stream,
        request_id: &ctx.request_id,
        own_listener: false,
        egress: egress.as_deref(),
    };
    let max_bytes = ctx.policy.as_ref().map_or(usize::MAX, |p| {
        usize::try_from(p.server.max_response_bytes).unwrap_or(usize::MAX)
    });
    let up = openai::send_prepared(&state.connector, &http, head, req.body)
        .await
        .map_err(|e| match e {
            ConnectError::Connect(m) => Failure::Connect(m),
            ConnectError::Unavailable(m) => Failure::Unavailable(m),
        })?;
    let Upstream::Http(inner) = up else {
        return Err(Failure::Connect(
            "the provider's answer was not an HTTP answer".into(),
        ));
    };
    Ok(Upstream::Translated(Box::new(
        TranslatedUpstream::open(inner, req.state, &ctx.request_id, max_bytes).await,
    )))
}

fn api_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Completions => "/completions",
        Endpoint::Embeddings => "/embeddings",
        Endpoint::ChatCompletions
        | Endpoint::Models
        | Endpoint::Feedback
        | Endpoint::Other
        | Endpoint::Responses
        | Endpoint::Messages
        | Endpoint::MessagesCountTokens => "/chat/completions",
    }
}

fn mock_endpoint(endpoint: Endpoint) -> mock::Endpoint {
    match endpoint {
        Endpoint::Completions => mock::Endpoint::Completions,
        Endpoint::Embeddings => mock::Endpoint::Embeddings,
        Endpoint::ChatCompletions
        | Endpoint::Models
        | Endpoint::Feedback
        | Endpoint::Other
        | Endpoint::Responses
        | Endpoint::Messages
        | Endpoint::MessagesCountTokens => mock::Endpoint::ChatCompletions,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_config::{BaseUrl, HttpAccess, OpenAiCompat};

    use super::*;
    use crate::face::responses::Builtin;

    #[test]
    fn responses_go_native_to_openai_and_built_in_tools_nowhere_else() {
        let url = BaseUrl::parse("https://api.openai.com/v1").expect("url");
        let openai = |compat| ProviderKind::OpenAi {
            base_url: url.clone(),
            api_key_env: None,
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            compat,
        };
        let quirky = OpenAiCompat {
            max_tokens_field: Some(sluice_config::MaxTokensField::MaxTokens),
            ..OpenAiCompat::default()
        };
        let anthropic = ProviderKind::Anthropic {
            access: HttpAccess {
                base_url: url.clone(),
                api_key_env: None,
                api_key: None,
                connect_timeout: Duration::from_secs(5),
            },
            anthropic_version: "2023-06-01".into(),
            default_max_tokens: 4096,
        };
        let mock = ProviderKind::Mock {
            ttft: Duration::ZERO,
            tokens_per_s: 100.0,
        };
        let web = Builtin {
            kind: "web_search".into(),
            param: "tools",
        };
        // (target kind, built-in tool, the provider lately answered 404 at /responses, plan)
        let cases = [
            (
                openai(OpenAiCompat::default()),
                None,
                false,
                ResponsesPlan::Native,
            ),
            (
                openai(OpenAiCompat::default()),
                Some(&web),
                false,
                ResponsesPlan::Native,
            ),
            (
                openai(OpenAiCompat::default()),
                None,
                true,
                ResponsesPlan::Translate,
            ),
            (
                openai(OpenAiCompat::default()),
                Some(&web),
                true,
                ResponsesPlan::Refuse(&web),
            ),
            (
                openai(quirky.clone()),
                None,
                false,
                ResponsesPlan::Translate,
            ),
            (
                openai(quirky),
                Some(&web),
                false,
                ResponsesPlan::Refuse(&web),
            ),
            (anthropic.clone(), None, false, ResponsesPlan::Translate),
            (anthropic, Some(&web), false, ResponsesPlan::Refuse(&web)),
            (mock.clone(), None, false, ResponsesPlan::Translate),
            (mock, Some(&web), false, ResponsesPlan::Refuse(&web)),
        ];
        for (kind, builtin, lacks, want) in cases {
            assert_eq!(
                responses_plan(&kind, builtin, lacks),
                want,
                "{kind:?} {builtin:?} {lacks}"
            );
        }
        let Failure::Client { status, body } = builtin_refusal(&web, "anthropic", false) else {
            panic!("a client error");
        };
        assert_eq!(status, 400);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "tools");
        let m = v["error"]["message"].as_str().expect("message");
        assert!(m.contains("`web_search`") && m.contains("OpenAI"), "{m}");
        // A built-in tool's call item sent back in `input`: named, with its field.
        let item = Builtin {
            kind: "web_search_call".into(),
            param: "input",
        };
        let Failure::Client { body, .. } = builtin_refusal(&item, "anthropic", false) else {
            panic!("a client error");
        };
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["param"], "input");
        let m = v["error"]["message"].as_str().expect("message");
        assert!(m.contains("`web_search_call` item in `input`"), "{m}");
    }
}
