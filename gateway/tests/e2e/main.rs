//! End-to-end tests: the real `sluice` binary, real sockets on 127.0.0.1, the real mock-llm.

mod aiops;
mod body;
mod cache;
mod common;
mod console;
mod egress;
mod errors;
mod failover;
mod hardening;
mod incident_push;
mod judge;
mod lifecycle;
mod otlp_pipeline;
mod prometheus;
mod providers;
mod ratelimit;
mod rawup;
mod redaction;
mod redis;
mod reload;
mod routing;
mod schema;
mod slo;
mod streaming;
mod telemetry;
mod tls;
