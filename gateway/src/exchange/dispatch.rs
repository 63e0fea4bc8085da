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
            let http = HttpTarget {
                addr,
                base_url,
                api_key: api_key.as_ref(),
                connect_timeout: *connect_timeout,
                path: api_path(endpoint),
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
