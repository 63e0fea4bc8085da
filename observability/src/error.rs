//! The crate's one error type.

/// What can go wrong in `sluice-observability` outside the request path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("slo window scale {factor} must be a finite number of at least 0.000001")]
    SloScale { factor: f64 },
    #[error("slo `{slo}` of route `{route}`: {why}")]
    SloSpec {
        slo: String,
        route: String,
        why: &'static str,
    },
    #[error("slo `{slo}` is defined twice for route `{route}`")]
    SloDuplicate { slo: String, route: String },
    #[error("slo snapshot is not readable: {0}")]
    SnapshotDecode(#[source] serde_json::Error),
    #[error("slo snapshot could not be written: {0}")]
    SnapshotEncode(#[source] serde_json::Error),
    #[error("slo snapshot format version {found} is not supported (this build reads {supported})")]
    SnapshotVersion { found: u64, supported: u64 },
    #[error("aiops settings: {why}")]
    AiopsConfig { why: &'static str },
    #[error("aiops snapshot is not readable: {0}")]
    AiopsSnapshotDecode(#[source] serde_json::Error),
    #[error("aiops snapshot could not be written: {0}")]
    AiopsSnapshotEncode(#[source] serde_json::Error),
    #[error(
        "aiops snapshot format version {found} is not supported (this build reads {supported})"
    )]
    AiopsSnapshotVersion { found: u64, supported: u64 },
}
