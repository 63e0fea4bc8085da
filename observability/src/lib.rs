//! Sluice's telemetry: every metric the gateway exports, defined in one file
//! ([`metrics`]), and the per-request [`RequestRecord`] the gateway fills while serving and
//! hands over once, at the end of the request.
//!
//! Owns: metric names, help texts, label sets (closed sets only: configured routes, catalog
//! models, fixed enums; never a key, user id or prompt) and recording a finished request.
//! Does not own: pingora, sockets, or deciding what happened to a request.

pub mod metrics;
mod record;

pub use metrics::Metrics;
pub use record::{Endpoint, Outcome, RequestRecord};
