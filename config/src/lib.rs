//! The Sluice policy file: its schema, loading and validation.
//!
//! This crate owns
//! - the YAML schema of the policy file (`server`, `telemetry`, `providers`, `models`,
//!   `routes`, `keys`), kept as private raw serde types with `deny_unknown_fields` everywhere;
//! - loading it from a file or a string ([`load_file`], [`load_str`], [`load_str_with_env`]);
//! - resolving provider secrets from environment variables (`api_key_env`), which are then
//!   only reachable through [`Secret::expose`] and never printed;
//! - validation into the public types ([`Config`] and friends), reporting **every** problem
//!   as a [`Diagnostic`] with its path in the file and, where known, its line;
//! - the JSON Schema of the file for editors and CI ([`json_schema`]), checked in as
//!   `config/policy.schema.json`.
//!
//! It knows nothing about async runtimes, HTTP or the proxy: `policy` compiles a [`Config`]
//! and `gateway` serves it.
//!
//! ```
//! let loaded = sluice_config::load_str(sluice_config::QUICKSTART_YAML, "quickstart.yaml")
//!     .expect("the embedded quickstart policy is valid");
//! assert!(loaded.config.models.contains_key("mock-chat"));
//! ```

mod base_url;
mod diff;
mod duration;
mod egress;
mod raw;
mod schema;
mod ser;
mod types;
mod validate;

use std::fmt;
use std::path::Path;

pub use diff::{Changes, PolicyDiff};
pub use egress::authority as egress_authority;
pub use egress::{
    Egress, ExtraHeader, HeaderValue, HttpVersion, ProxyConfig, ProxySource, choose_proxy,
    no_proxy_matches,
};
pub use schema::{json_schema, json_schema_text};
pub use types::{
    ActionConfig, AdminConfig, AdminToken, AiopsSettings, AnomalySignalConfig, AwsCredentials,
    AwsCredentialsConfig, Balance, BaseUrl, Budget, BurnConfig, BurnWindow, CacheConfig, Config,
    HeaderMatch, HealthConfig, Http2Config, HttpAccess, IncidentsConfig, JudgeConfig, KeepRule,
    KeyConfig, Limits, ModelConfig, ModelKind, OtlpConfig, OtlpProtocol, Pricing, ProviderConfig,
    ProviderKind, PushConfig, RedactRule, ReloadConfig, RemediationConfig, RetryBudget,
    RetryConfig, RetryOn, RouteConfig, RubricConfig, SampleConfig, Secret, ServerConfig, SliConfig,
    SloConfig, SloSettings, TargetConfig, TelemetryConfig, TenantConfig, Timeouts, TlsConfig,
    VertexConfig,
};
pub use types::{
    DestinationConfig, DestinationFilter, DestinationSampling, OUTCOMES, ResourceConfig,
};
pub use types::{FailMode, MaxTokensField, OpenAiCompat, RedisConfig, StateConfig};

/// The quickstart policy, embedded so that `sluice` runs with no file at all.
pub const QUICKSTART_YAML: &str = include_str!("../examples/quickstart.yaml");

/// A policy file that passed validation, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated policy.
    pub config: Config,
    /// Problems that do not stop the gateway, such as an unset `api_key_env` variable.
    pub warnings: Vec<Diagnostic>,
}

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has one or more problems; every one of them is listed.
    #[error("{origin}: {} problem(s) in the policy file", diagnostics.len())]
    Invalid {
        origin: String,
        diagnostics: Vec<Diagnostic>,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem (or warning) in a policy file.
///
/// Displays as `{origin}:{line}: {path}: {message}`, without `:{line}` when the line is
/// unknown. `path` looks like `routes[0].targets[1].model` or `providers.openai.base_url`,
/// and is `<root>` for problems with the whole document.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Where the text came from: a file path, or a name given to [`load_str`].
    pub origin: String,
    /// Where in the document, e.g. `server.max_body_bytes`.
    pub path: String,
    /// 1-based line, when the parser or a span gives it.
    pub line: Option<usize>,
    /// What was expected and what was found; starts lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.origin, line, self.path, self.message
            ),
            None => write!(f, "{}: {}: {}", self.origin, self.path, self.message),
        }
    }
}

/// Reads and validates the policy file at `path`; secrets come from the process environment.
pub fn load_file(path: &Path) -> Result<Loaded> {
    let src = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&src, &path.display().to_string())
}

/// Validates policy text; `origin` names it in diagnostics. Secrets come from
/// [`std::env::var`].
pub fn load_str(src: &str, origin: &str) -> Result<Loaded> {
    load_str_with_env(src, origin, &|name| std::env::var(name).ok())
}

/// Validates policy text, looking secrets up with `env` instead of the process environment.
pub fn load_str_with_env(
    src: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded> {
    let raw = raw::parse(src, origin).map_err(|diagnostic| Error::Invalid {
        origin: origin.to_owned(),
        diagnostics: vec![diagnostic],
    })?;
    validate::validate(raw, origin, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_display_with_and_without_line() {
        let mut d = Diagnostic {
            origin: "sluice.yaml".into(),
            path: "server.threads".into(),
            line: Some(3),
            message: "must be between 1 and 256, found 0".into(),
        };
        assert_eq!(
            d.to_string(),
            "sluice.yaml:3: server.threads: must be between 1 and 256, found 0"
        );
        d.line = None;
        assert_eq!(
            d.to_string(),
            "sluice.yaml: server.threads: must be between 1 and 256, found 0"
        );
    }

    #[test]
    fn invalid_error_counts_problems() {
        let err = load_str_with_env("server: {threads: 0}\n", "x.yaml", &|_| None)
            .expect_err("no providers, models or keys");
        assert_eq!(err.to_string(), "x.yaml: 4 problem(s) in the policy file");
    }

    #[test]
    fn load_file_reports_unreadable_path() {
        let err = load_file(Path::new("/nonexistent/sluice.yaml")).expect_err("missing file");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/sluice.yaml: "),
            "{err}"
        );
    }

    #[test]
    fn a_provider_called_value_keeps_its_name_in_paths() {
        let err = load_str_with_env(
            "providers:\n  value: { kind: mock, bogus: 1 }\n",
            "v.yaml",
            &|_| None,
        )
        .expect_err("unknown field");
        let Error::Invalid { diagnostics, .. } = err else {
            panic!("invalid, not unreadable");
        };
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].path, "providers.value.bogus");
        assert_eq!(diagnostics[0].line, Some(2));
    }
}
