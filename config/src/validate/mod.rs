//! Raw → validated. Every check records its problem and carries on, so one run reports all
//! of them. References are checked against the names *declared* in the file, valid or not, so
//! one broken provider does not also produce an "unknown provider" for each of its models.

mod egress;
mod keys;
pub(crate) mod providers;
mod routes;
mod server;
mod slo;
mod state;
mod telemetry;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::duration::{self, Zero};
use crate::raw::{RawConfig, line_of};
use crate::types::{Config, ModelKind};
use crate::{Diagnostic, Error, Loaded, Result};

pub(super) const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const DEFAULT_MOCK_TTFT_MS: i64 = 50;
pub(super) const DEFAULT_MOCK_TOKENS_PER_S: f64 = 200.0;
pub(super) const ONE_GIB: i64 = 1024 * 1024 * 1024;
pub(super) const ONE_HOUR: Duration = Duration::from_secs(3600);
pub(super) const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(50);
pub(super) const ONE_WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
pub(crate) use egress::MAX_POOL_SIZE;
pub(crate) const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub(crate) const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
pub(crate) const DEFAULT_ANTHROPIC_MAX_TOKENS: i64 = 4096;
pub(crate) const DEFAULT_GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";
pub(crate) use slo::{
    BUILTIN_RUBRICS, DEFAULT_COOLDOWN, DEFAULT_HOLD, DEFAULT_MIN_EVENTS, DEFAULT_PROBE_SHARE,
    MAX_CAPTURE, MAX_RUBRIC_NAME, MAX_RUBRIC_TEXT, MIN_CAPTURE, THIRTY_DAYS,
};

/// Collects diagnostics for one document.
pub(super) struct Ctx<'a> {
    origin: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Where remediation rules watch an anomaly (path and line), checked against `aiops`.
    anomaly_conditions: Vec<(String, Option<usize>)>,
}

impl Ctx<'_> {
    pub(super) fn diagnostic(
        &self,
        path: &str,
        line: Option<usize>,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            origin: self.origin.to_owned(),
            path: path.to_owned(),
            line,
            message,
        }
    }

    pub(super) fn error(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        let d = self.diagnostic(path, line, message.into());
        self.errors.push(d);
    }

    pub(super) fn warn(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        let d = self.diagnostic(path, line, message.into());
        self.warnings.push(d);
    }

    /// Reports a missing required field at its parent; returns the field when present.
    pub(super) fn required<'v, T>(
        &mut self,
        parent: &str,
        parent_line: Option<usize>,
        field: &'v Option<Spanned<T>>,
        name: &str,
        hint: &str,
    ) -> Option<&'v Spanned<T>> {
        if field.is_none() {
            self.error(
                parent,
                parent_line,
                format!("missing field `{name}` ({hint})"),
            );
        }
        field.as_ref()
    }

    /// A whole number within `min..=max`, or `default` when absent.
    pub(super) fn int(
        &mut self,
        path: &str,
        field: Option<&Spanned<i64>>,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        let Some(v) = field else { return default };
        if (min..=max).contains(&v.value) {
            v.value
        } else {
            let msg = if max == i64::MAX {
                format!("must be at least {min}, found {}", v.value)
            } else {
                format!("must be between {min} and {max}, found {}", v.value)
            };
            self.error(path, line(v), msg);
            default
        }
    }

    /// A finite number within `min..=max`, or `default` when absent.
    pub(super) fn number(
        &mut self,
        path: &str,
        field: Option<&Spanned<f64>>,
        default: f64,
        min: f64,
        max: f64,
    ) -> f64 {
        let Some(v) = field else { return default };
        if v.value.is_finite() && (min..=max).contains(&v.value) {
            v.value
        } else {
            self.error(
                path,
                line(v),
                format!(
                    "must be a number between {min} and {max}, found {}",
                    v.value
                ),
            );
            default
        }
    }

    /// A humantime duration, or `default` when absent.
    pub(super) fn duration(
        &mut self,
        path: &str,
        field: Option<&Spanned<String>>,
        default: Duration,
        zero: Zero,
        max: Option<Duration>,
    ) -> Duration {
        let Some(v) = field else { return default };
        match duration::parse(&v.value, zero, max) {
            Ok(d) => d,
            Err(msg) => {
                self.error(path, line(v), msg);
                default
            }
        }
    }

    /// A non-empty name.
    pub(super) fn name<'v>(&mut self, path: &str, v: &'v Spanned<String>) -> Option<&'v str> {
        if v.value.trim().is_empty() {
            self.error(path, line(v), "must not be empty");
            None
        } else {
            Some(&v.value)
        }
    }
}

pub(super) fn line<T>(s: &Spanned<T>) -> Option<usize> {
    line_of(s.referenced)
}

/// `(known: a, b)` for an "unknown X" message.
pub(super) fn known<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.into_iter().map(String::as_str).collect();
    if list.is_empty() {
        "(none are defined)".to_owned()
    } else {
        format!("(known: {})", list.join(", "))
    }
}

pub(crate) fn validate(
    raw: RawConfig,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded> {
    let mut ctx = Ctx {
        origin,
        errors: Vec::new(),
        warnings: Vec::new(),
        anomaly_conditions: Vec::new(),
    };

    let server = server::server(&mut ctx, raw.server.unwrap_or_default());
    let telemetry = telemetry::telemetry(&mut ctx, raw.telemetry.unwrap_or_default());

    let raw_providers = raw.providers.unwrap_or_default();
    if raw_providers.is_empty() {
        ctx.error("providers", None, "expected at least one provider");
    }
    let mut providers = BTreeMap::new();
    for (name, p) in &raw_providers {
        if let Some(cfg) = providers::provider(&mut ctx, name, p, env) {
            providers.insert(name.clone(), cfg);
        }
    }

    let raw_models = raw.models.unwrap_or_default();
    if raw_models.is_empty() {
        ctx.error("models", None, "expected at least one model");
    }
    let provider_names: BTreeSet<&String> = raw_providers.keys().collect();
    let mut models = BTreeMap::new();
    // Declared kinds, including of models with other problems, for the route kind check.
    let mut model_kinds: BTreeMap<&String, Option<ModelKind>> = BTreeMap::new();
    for (name, m) in &raw_models {
        let (kind, cfg) = providers::model(&mut ctx, name, m, &provider_names);
        model_kinds.insert(name, kind);
        if let Some(cfg) = cfg {
            models.insert(name.clone(), cfg);
        }
    }

    let mut routes = Vec::new();
    let mut matched: HashMap<String, (usize, String)> = HashMap::new();
    let mut route_names: HashMap<String, usize> = HashMap::new();
    let mut remediation_names: HashMap<String, String> = HashMap::new();
    for (i, r) in raw.routes.unwrap_or_default().iter().enumerate() {
        let cfg = routes::route(
            &mut ctx,
            i,
            r,
            &model_kinds,
            &mut matched,
            &mut route_names,
            &mut remediation_names,
        );
        if let Some(cfg) = cfg {
            routes.push(cfg);
        }
    }

    let known = keys::Known {
        models: routes
            .iter()
            .flat_map(|r: &crate::types::RouteConfig| r.models.iter())
            .chain(models.keys())
            .map(String::as_str)
            .collect(),
        routes: routes
            .iter()
            .map(|r| r.name.as_str())
            .chain(models.keys().map(String::as_str))
            .collect(),
    };
    let keys = keys::keys(&mut ctx, raw.keys.unwrap_or_default(), &known);
    let tenants = keys::tenants(&mut ctx, raw.tenants.as_ref(), &keys);
    let admin = keys::admin(&mut ctx, raw.admin.as_ref());
    let slo = slo::settings(&mut ctx, raw.slo.as_ref());
    let incidents = slo::incidents(&mut ctx, raw.incidents.as_ref(), env);
    let state = state::state(&mut ctx, raw.state.as_ref(), env);
    let aiops = slo::aiops(&mut ctx, raw.aiops.as_ref());

    // Top to bottom through the file; whole-document problems (no line) first.
    ctx.errors.sort_by_key(|d| d.line.unwrap_or(0));
    ctx.warnings.sort_by_key(|d| d.line.unwrap_or(0));
    if !ctx.errors.is_empty() {
        return Err(Error::Invalid {
            origin: origin.to_owned(),
            diagnostics: ctx.errors,
        });
    }
    Ok(Loaded {
        config: Config {
            server,
            providers,
            models,
            routes,
            keys,
            telemetry,
            admin,
            tenants,
            slo,
            incidents,
            state,
            aiops,
        },
        warnings: ctx.warnings,
    })
}
