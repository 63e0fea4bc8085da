//! `sluice-bench`: the benchmark kit behind DESIGN §8.
//!
//! - [`engine`]: open loop at a constant rate (latency counted from each request's scheduled
//!   time, so no coordinated omission) or closed loop at a fixed concurrency, over HTTP/1.1
//!   keep-alive connections; non-streaming and streaming requests (time to first byte, to the
//!   first content chunk, to the last byte, chunk counts) into HDR histograms.
//! - [`scenario`]: the YAML files under `loadtest/scenarios/`.
//! - [`compare`]: one scenario against mock-llm directly, nginx and Sluice (and optionally a
//!   baseline `sluice` build), interleaved, with CPU time and RSS of each proxy process from
//!   `/proc`.
//! - [`report`]: markdown; the JSON is the serde form of the same structs.

pub mod client;
pub mod compare;
pub mod engine;
pub mod hist;
pub mod procs;
pub mod report;
pub mod scenario;
pub mod schedule;

pub use client::Target;
pub use engine::{Load, RunReport, RunResult, run};
pub use scenario::Scenario;
