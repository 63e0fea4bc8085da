//! Sending one attempt to its provider: the provider kind decides how (HTTP through pingora's
//! pooled connector, or the in-process mock), and the attempt's record opens once something is
//! really sent.

use bytes::Bytes;
use sluice_config::ProviderKind;
use sluice_observability::Endpoint;
use sluice_policy::Target;

use super::failure::Failure;
use crate::context::RequestCtx;
use crate::providers::mock::{self, MockTiming};
use crate::providers::openai::{self, HttpTarget};
use crate::providers::{ConnectError, MockUpstream, Upstream};
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
        } => {
            if let (None, Some(env)) = (api_key, api_key_env) {
                return Err(Failure::Unavailable(format!(
                    "provider `{}` has no API key: the environment variable {env} is not set",
                    provider.name
                )));
            }
            ctx.begin_attempt(target, sluice_observability::spans::new_span_id());
            let egress = if provider.egress.is_default() {
                None
            } else {
                // A bundle that cannot be read fails the attempt; failover goes on.
                let built = state
                    .egress
                    .get(&provider.name, &provider.egress, base_url, *connect_timeout)
                    .map_err(Failure::Connect)?;
                Some(built)
            };
            // Through a proxy only the proxy's name is resolved here: inside a company
            // network the provider's may not resolve at all.
            let (host, port) = egress
                .as_ref()
                .map_or((&base_url.host, base_url.port), |e| {
                    (&e.dial_host, e.dial_port)
                });
            let addr = state
                .resolver
                .resolve(host, port)
                .await
                .map_err(Failure::Connect)?;
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
    }
}

fn api_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Completions => "/completions",
        Endpoint::Embeddings => "/embeddings",
        Endpoint::ChatCompletions | Endpoint::Models | Endpoint::Feedback | Endpoint::Other => {
            "/chat/completions"
        }
    }
}

fn mock_endpoint(endpoint: Endpoint) -> mock::Endpoint {
    match endpoint {
        Endpoint::Completions => mock::Endpoint::Completions,
        Endpoint::Embeddings => mock::Endpoint::Embeddings,
        Endpoint::ChatCompletions | Endpoint::Models | Endpoint::Feedback | Endpoint::Other => {
            mock::Endpoint::ChatCompletions
        }
    }
}
