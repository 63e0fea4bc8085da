//! End-to-end tests: the real `sluice` binary, real sockets on 127.0.0.1, the real mock-llm.

mod body;
mod cache;
mod cardinality;
mod common;
mod errors;
mod failover;
mod hardening;
mod judge;
mod lifecycle;
mod prometheus;
mod providers;
mod ratelimit;
mod rawup;
mod reload;
mod routing;
mod slo;
mod streaming;
mod telemetry;
