//! Sluice, the gateway: the `sluice` binary's CLI, the pingora server and listeners, the
//! request path, provider adapters, the SSE codec and the upstream exchange.
//!
//! Owns everything that touches sockets. Does not define metrics (`sluice-observability`) or
//! policy logic (`sluice-policy`); it asks them.
//!
//! A request's path, one module per step:
//!
//! | step | module | what happens |
//! |---|---|---|
//! | admit | [`handler`] | endpoint and method, virtual key → tenant (401), body under a hard cap (413, before `100 Continue`) |
//! | face | [`face`] | another client API (Anthropic Messages, OpenAI Responses) translated into a chat body here, and every answer rendered back at [`respond`] |
//! | parse | [`request`] | one borrowed pass over the JSON: `model`, `stream`, `stream_options`; 400 on anything wrong |
//! | route | `sluice_policy::Policy::route` | the ordered attempt plan: weighted target, other targets, fallbacks |
//! | limit | [`ratelimit`] | the key's requests and tokens per minute (429 with `retry-after`); `x-ratelimit-*` headers on every answer |
//! | cache | [`cache`] | a route's exact-match response cache: tenant-scoped, replayed as JSON or SSE |
//! | exchange | [`exchange`] | per attempt: rewrite the body, call the provider ([`providers`]), fail over on connect error, timeout, 429, 5xx or a bad first answer — only before the first byte went out |
//! | stream | [`exchange`], [`sse`], [`stream`] | event by event, usage chunk stripped unless asked for, truncation and stalls end in an SSE error event, client disconnect cancels upstream |
//! | answer | [`respond`] | every byte written to the client: JSON, errors, the SSE head and batches, cache replays |
//! | remediate | [`handler`], `sluice_policy::Route::plan` | the remediation overlay (one atomic load): shed low-priority keys (503), answer from a stale cache entry, take a burning target out, substitute a model |
//! | record | [`context`] → [`record`] | once per request, handed to the recorder without waiting; tokens, cost, metrics, access log and spans happen there |
//! | evaluate | [`record`] → [`slo`] | SLO counts per route and target, burn rates, the remediation decision, the incident log ([`incidents`]) |
//!
//! pingora's phase chart (for the parts Sluice does not replace):
//! <https://github.com/cloudflare/pingora/blob/main/docs/user_guide/phase_chart.md>.

pub mod access_log;
pub mod admin;
pub mod aiops;
pub mod cache;
pub mod capture;
pub mod cli;
pub mod console;
pub mod context;
pub mod datadir;
pub mod decision;
pub mod dns;
pub mod downstream;
pub mod error;
pub mod exchange;
pub mod face;
pub mod feedback;
pub mod h2;
pub mod handler;
pub mod incident_push;
pub mod incidents;
pub mod judge;
pub mod live;
pub mod providers;
pub mod ratelimit;
pub mod record;
pub mod reload;
pub mod request;
pub mod respond;
pub mod server;
pub mod shared;
pub mod slo;
pub mod slo_rules;
pub mod sse;
pub mod state;
pub mod stream;
pub mod tap;
pub mod tls;
pub mod trace;

#[cfg(test)]
mod fake_io;
#[cfg(test)]
mod fuzz;

pub use error::GatewayError;
