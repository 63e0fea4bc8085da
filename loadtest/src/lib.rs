//! `sluice-loadtest`: the tools that exercise Sluice from the outside. Needed for tests,
//! benchmarks and fault drills only, never at run time.
//!
//! - [`mock_llm`]: a scriptable fake OpenAI provider (`mock-llm` binary, or in-process for other
//!   crates' tests). Every answer comes from `sluice_gateway::providers::mock`, the same synthesis
//!   the gateway's in-process `mock` provider uses; per-request faults (429, 5xx, HTML error
//!   pages, garbage, first-event errors, stalls, cuts, added latency, the received API key
//!   quoted back, whole streams in one write) are chosen by a `model@fault` suffix or an
//!   `x-mock` header.
//! - [`otlp_sink`]: a real OTLP/gRPC trace receiver for tests that check exported spans.
//! - [`bench`]: `sluice-bench`, the load generator and the direct / nginx / Sluice comparison.
//! - [`drill`]: `sluice-drill` (`sluice drill SCENARIO`), scripted fault drills that measure
//!   SLO remediation: detection, mitigation, client errors, unwind, flaps.

pub mod bench;
pub mod drill;
pub mod keepalive;
pub mod mock_llm;
pub mod otlp_sink;

pub use mock_llm::{MockLlm, MockLlmConfig, Stats};
