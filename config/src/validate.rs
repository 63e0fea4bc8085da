//! Raw → validated. Every check records its problem and carries on, so one run reports all
//! of them. References are checked against the names *declared* in the file, valid or not, so
//! one broken provider does not also produce an "unknown provider" for each of its models.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::duration::{self, Zero};
use crate::raw::{
    RawConfig, RawModel, RawOtlp, RawPricing, RawProvider, RawRedact, RawRetry, RawRoute,
    RawSample, RawServer, RawTelemetry, RawTimeouts, line_of,
};
use crate::types::{
    AdminConfig, AdminToken, BaseUrl, CacheConfig, Config, KeepRule, KeyConfig, Limits,
    ModelConfig, ModelKind, OtlpConfig, OtlpProtocol, Pricing, ProviderConfig, ProviderKind,
    RedactRule, ReloadConfig, RetryConfig, RetryOn, RouteConfig, SampleConfig, Secret,
    ServerConfig, TargetConfig, TelemetryConfig, Timeouts,
};
use crate::{Diagnostic, Error, Loaded, Result};

const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MOCK_TTFT_MS: i64 = 50;
const DEFAULT_MOCK_TOKENS_PER_S: f64 = 200.0;
const ONE_GIB: i64 = 1024 * 1024 * 1024;
const ONE_HOUR: Duration = Duration::from_secs(3600);
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(50);
const ONE_WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const OPENAI_FIELDS: &str = "base_url, api_key_env, connect_timeout";
const MOCK_FIELDS: &str = "ttft_ms, tokens_per_s";

/// Collects diagnostics for one document.
struct Ctx<'a> {
    origin: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn diagnostic(&self, path: &str, line: Option<usize>, message: String) -> Diagnostic {
        Diagnostic {
            origin: self.origin.to_owned(),
            path: path.to_owned(),
            line,
            message,
        }
    }

    fn error(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        let d = self.diagnostic(path, line, message.into());
        self.errors.push(d);
    }

    fn warn(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        let d = self.diagnostic(path, line, message.into());
        self.warnings.push(d);
    }

    /// Reports a missing required field at its parent; returns the field when present.
    fn required<'v, T>(
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
    fn int(
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

    /// A humantime duration, or `default` when absent.
    fn duration(
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
    fn name<'v>(&mut self, path: &str, v: &'v Spanned<String>) -> Option<&'v str> {
        if v.value.trim().is_empty() {
            self.error(path, line(v), "must not be empty");
            None
        } else {
            Some(&v.value)
        }
    }
}

fn line<T>(s: &Spanned<T>) -> Option<usize> {
    line_of(s.referenced)
}

/// `(known: a, b)` for an "unknown X" message.
fn known<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
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
    };

    let server = server(&mut ctx, raw.server.unwrap_or_default());
    let telemetry = telemetry(&mut ctx, raw.telemetry.unwrap_or_default());

    let raw_providers = raw.providers.unwrap_or_default();
    if raw_providers.is_empty() {
        ctx.error("providers", None, "expected at least one provider");
    }
    let mut providers = BTreeMap::new();
    for (name, p) in &raw_providers {
        if let Some(cfg) = provider(&mut ctx, name, p, env) {
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
        let (kind, cfg) = model(&mut ctx, name, m, &provider_names);
        model_kinds.insert(name, kind);
        if let Some(cfg) = cfg {
            models.insert(name.clone(), cfg);
        }
    }

    let mut routes = Vec::new();
    let mut matched: HashMap<String, (usize, String)> = HashMap::new();
    let mut route_names: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.routes.unwrap_or_default().iter().enumerate() {
        let cfg = route(&mut ctx, i, r, &model_kinds, &mut matched, &mut route_names);
        if let Some(cfg) = cfg {
            routes.push(cfg);
        }
    }

    let keys = keys(&mut ctx, raw.keys.unwrap_or_default());
    let admin = admin(&mut ctx, raw.admin.as_ref());

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
        },
        warnings: ctx.warnings,
    })
}

fn server(ctx: &mut Ctx<'_>, s: RawServer) -> ServerConfig {
    let d = ServerConfig::default();
    let listen = socket_addr(ctx, "server.listen", s.listen.as_ref(), d.listen);
    let admin_listen = socket_addr(
        ctx,
        "server.admin_listen",
        s.admin_listen.as_ref(),
        d.admin_listen,
    );
    if let (Some(l), Some(a)) = (listen, admin_listen) {
        let admin_line = s.admin_listen.as_ref().and_then(line);
        if l == a {
            ctx.error(
                "server.admin_listen",
                admin_line,
                format!("must differ from server.listen (both are `{l}`)"),
            );
        } else if l.port() == a.port() && (l.ip().is_unspecified() || a.ip().is_unspecified()) {
            ctx.error(
                "server.admin_listen",
                admin_line,
                format!(
                    "`{a}` overlaps server.listen `{l}` (same port, and one of them listens on all addresses)"
                ),
            );
        }
    }
    let bytes = |ctx: &mut Ctx<'_>, path: &str, f: Option<&Spanned<i64>>, default: u64| {
        let v = ctx.int(
            path,
            f,
            i64::try_from(default).unwrap_or(ONE_GIB),
            1024,
            ONE_GIB,
        );
        u64::try_from(v).unwrap_or(default)
    };
    let max_body_bytes = bytes(
        ctx,
        "server.max_body_bytes",
        s.max_body_bytes.as_ref(),
        d.max_body_bytes,
    );
    let max_response_bytes = bytes(
        ctx,
        "server.max_response_bytes",
        s.max_response_bytes.as_ref(),
        d.max_response_bytes,
    );
    let threads = ctx.int("server.threads", s.threads.as_ref(), 2, 1, 256);
    let pool = ctx.int(
        "server.upstream_pool_size",
        s.upstream_pool_size.as_ref(),
        128,
        1,
        65536,
    );
    let shutdown_grace = ctx.duration(
        "server.shutdown_grace",
        s.shutdown_grace.as_ref(),
        d.shutdown_grace,
        Zero::Allowed,
        Some(ONE_HOUR),
    );
    let reload = s.reload.as_ref().map_or(d.reload, |r| {
        let watch = r.value.watch.as_ref().map_or(d.reload.watch, |v| v.value);
        let interval = ctx.duration(
            "server.reload.interval",
            r.value.interval.as_ref(),
            d.reload.interval,
            Zero::Rejected,
            Some(ONE_HOUR),
        );
        if interval < MIN_RELOAD_INTERVAL {
            ctx.error(
                "server.reload.interval",
                r.value.interval.as_ref().and_then(line),
                format!("must be at least 50ms, found {interval:?}"),
            );
        }
        ReloadConfig { watch, interval }
    });
    let max_json_depth = ctx.int(
        "server.max_json_depth",
        s.max_json_depth.as_ref(),
        i64::try_from(d.max_json_depth).unwrap_or(128),
        2,
        4096,
    );
    let timeout = |ctx: &mut Ctx<'_>, path: &str, f: Option<&Spanned<String>>, default| {
        ctx.duration(path, f, default, Zero::Rejected, Some(ONE_HOUR))
    };
    let header_timeout = timeout(
        ctx,
        "server.header_timeout",
        s.header_timeout.as_ref(),
        d.header_timeout,
    );
    let body_timeout = timeout(
        ctx,
        "server.body_timeout",
        s.body_timeout.as_ref(),
        d.body_timeout,
    );
    let keepalive_timeout = timeout(
        ctx,
        "server.keepalive_timeout",
        s.keepalive_timeout.as_ref(),
        d.keepalive_timeout,
    );
    let max_header_bytes = ctx.int(
        "server.max_header_bytes",
        s.max_header_bytes.as_ref(),
        i64::try_from(d.max_header_bytes).unwrap_or(65536),
        1024,
        1024 * 1024,
    );
    let max_connections = ctx.int(
        "server.max_connections",
        s.max_connections.as_ref(),
        i64::try_from(d.max_connections).unwrap_or(10_000),
        1,
        1_000_000,
    );
    ServerConfig {
        header_timeout,
        body_timeout,
        keepalive_timeout,
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(d.max_header_bytes),
        max_connections: usize::try_from(max_connections).unwrap_or(d.max_connections),
        max_json_depth: usize::try_from(max_json_depth).unwrap_or(d.max_json_depth),
        reload,
        listen: listen.unwrap_or(d.listen),
        admin_listen: admin_listen.unwrap_or(d.admin_listen),
        max_body_bytes,
        max_response_bytes,
        threads: usize::try_from(threads).unwrap_or(d.threads),
        shutdown_grace,
        upstream_pool_size: usize::try_from(pool).unwrap_or(d.upstream_pool_size),
        cache_max_bytes: {
            let v = ctx.int(
                "server.cache_max_bytes",
                s.cache_max_bytes.as_ref(),
                i64::try_from(d.cache_max_bytes).unwrap_or(ONE_GIB),
                0,
                16 * ONE_GIB,
            );
            u64::try_from(v).unwrap_or(d.cache_max_bytes)
        },
    }
}

/// Parses a listener address; `None` when absent (the caller uses the default) or invalid.
fn socket_addr(
    ctx: &mut Ctx<'_>,
    path: &str,
    field: Option<&Spanned<String>>,
    default: SocketAddr,
) -> Option<SocketAddr> {
    let Some(v) = field else { return Some(default) };
    match v.value.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(
                path,
                line(v),
                format!(
                    "expected an IP address and port like `0.0.0.0:8080` or `[::1]:8080`, found `{}`",
                    v.value
                ),
            );
            None
        }
    }
}

fn provider(
    ctx: &mut Ctx<'_>,
    name: &str,
    p: &Spanned<RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProviderConfig> {
    let path = format!("providers.{name}");
    let before = ctx.errors.len();
    if name.trim().is_empty() {
        ctx.error(&path, line(p), "provider names must not be empty");
    }
    let raw = &p.value;
    let kind = ctx.required(&path, line(p), &raw.kind, "kind", "`openai` or `mock`")?;
    let not_for = |ctx: &mut Ctx<'_>, field: &str, l: Option<usize>, kind: &str, fields: &str| {
        ctx.error(
            &format!("{path}.{field}"),
            l,
            format!("`{field}` does not apply to `kind: {kind}` (its fields: {fields})"),
        );
    };
    let provider_kind = match kind.value.as_str() {
        "openai" => {
            if let Some(f) = &raw.ttft_ms {
                not_for(ctx, "ttft_ms", line(f), "openai", OPENAI_FIELDS);
            }
            if let Some(f) = &raw.tokens_per_s {
                not_for(ctx, "tokens_per_s", line(f), "openai", OPENAI_FIELDS);
            }
            openai(ctx, name, &path, raw, env)
        }
        "mock" => {
            if let Some(f) = &raw.base_url {
                not_for(ctx, "base_url", line(f), "mock", MOCK_FIELDS);
            }
            if let Some(f) = &raw.api_key_env {
                not_for(ctx, "api_key_env", line(f), "mock", MOCK_FIELDS);
            }
            if let Some(f) = &raw.connect_timeout {
                not_for(ctx, "connect_timeout", line(f), "mock", MOCK_FIELDS);
            }
            Some(mock(ctx, &path, raw))
        }
        other => {
            ctx.error(
                &format!("{path}.kind"),
                line(kind),
                format!("unknown provider kind `{other}` (expected `openai` or `mock`)"),
            );
            return None;
        }
    };
    let provider_kind = provider_kind?;
    (ctx.errors.len() == before).then(|| ProviderConfig {
        name: name.to_owned(),
        kind: provider_kind,
    })
}

fn openai(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProviderKind> {
    let base_url = match &raw.base_url {
        None => BaseUrl::parse(DEFAULT_OPENAI_BASE_URL).ok(),
        Some(v) => match BaseUrl::parse(&v.value) {
            Ok(u) => Some(u),
            Err(msg) => {
                ctx.error(&format!("{path}.base_url"), line(v), msg);
                None
            }
        },
    };
    let mut api_key = None;
    let mut api_key_env = None;
    if let Some(v) = &raw.api_key_env {
        // The value is never echoed: a common mistake is to paste the key itself here.
        if is_env_var_name(&v.value) {
            match env(&v.value) {
                // A trailing newline from `$(cat keyfile)` is the usual culprit; never echo it.
                Some(key) if !key.is_empty() && !key.bytes().all(|b| b.is_ascii_graphic()) => {
                    ctx.error(
                        &format!("{path}.api_key_env"),
                        line(v),
                        format!(
                            "environment variable {} holds characters an HTTP header cannot carry (spaces, line breaks or non-ASCII); it must hold the key alone",
                            v.value
                        ),
                    );
                }
                Some(key) if !key.is_empty() => api_key = Some(Secret::new(key)),
                _ => ctx.warn(
                    &format!("{path}.api_key_env"),
                    line(v),
                    format!(
                        "environment variable {} is not set; provider `{name}` will answer 503 until it is",
                        v.value
                    ),
                ),
            }
            api_key_env = Some(v.value.clone());
        } else {
            ctx.error(
                &format!("{path}.api_key_env"),
                line(v),
                "expected the name of an environment variable (letters, digits and `_`, not starting with a digit) that holds the key, not the key itself",
            );
        }
    }
    let connect_timeout = ctx.duration(
        &format!("{path}.connect_timeout"),
        raw.connect_timeout.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
        Zero::Rejected,
        None,
    );
    Some(ProviderKind::OpenAi {
        base_url: base_url?,
        api_key_env,
        api_key,
        connect_timeout,
    })
}

fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn mock(ctx: &mut Ctx<'_>, path: &str, raw: &RawProvider) -> ProviderKind {
    let ttft_ms = ctx.int(
        &format!("{path}.ttft_ms"),
        raw.ttft_ms.as_ref(),
        DEFAULT_MOCK_TTFT_MS,
        0,
        600_000,
    );
    let tokens_per_s = match &raw.tokens_per_s {
        None => DEFAULT_MOCK_TOKENS_PER_S,
        Some(v) if v.value.is_finite() && v.value > 0.0 => v.value,
        Some(v) => {
            ctx.error(
                &format!("{path}.tokens_per_s"),
                line(v),
                format!(
                    "expected a finite number of tokens per second > 0, found {}",
                    v.value
                ),
            );
            DEFAULT_MOCK_TOKENS_PER_S
        }
    };
    ProviderKind::Mock {
        ttft: Duration::from_millis(ttft_ms.unsigned_abs()),
        tokens_per_s,
    }
}

/// Returns the declared kind (when readable) and the validated model (when valid).
fn model(
    ctx: &mut Ctx<'_>,
    name: &str,
    m: &Spanned<RawModel>,
    providers: &BTreeSet<&String>,
) -> (Option<ModelKind>, Option<ModelConfig>) {
    let path = format!("models.{name}");
    let before = ctx.errors.len();
    let raw = &m.value;
    if name.trim().is_empty() {
        ctx.error(&path, line(m), "model names must not be empty");
    }
    let provider = ctx
        .required(
            &path,
            line(m),
            &raw.provider,
            "provider",
            "the name of a provider",
        )
        .map(|p| {
            if !providers.contains(&p.value) {
                ctx.error(
                    &format!("{path}.provider"),
                    line(p),
                    format!(
                        "unknown provider `{}` {}",
                        p.value,
                        known(providers.iter().copied())
                    ),
                );
            }
            p.value.clone()
        });
    let upstream_model = match &raw.upstream_model {
        None => name.to_owned(),
        Some(v) => ctx
            .name(&format!("{path}.upstream_model"), v)
            .unwrap_or_default()
            .to_owned(),
    };
    let kind = match &raw.kind {
        None => Some(ModelKind::Chat),
        Some(v) => match v.value.as_str() {
            "chat" => Some(ModelKind::Chat),
            "embedding" => Some(ModelKind::Embedding),
            other => {
                ctx.error(
                    &format!("{path}.kind"),
                    line(v),
                    format!("unknown model kind `{other}` (expected `chat` or `embedding`)"),
                );
                None
            }
        },
    };
    let pricing = raw
        .pricing
        .as_ref()
        .map(|p| pricing(ctx, &format!("{path}.pricing"), p));
    let valid = ctx.errors.len() == before;
    let cfg = match (valid, provider, kind) {
        (true, Some(provider), Some(kind)) => Some(ModelConfig {
            name: name.to_owned(),
            provider,
            upstream_model,
            kind,
            pricing,
        }),
        _ => None,
    };
    (kind, cfg)
}

fn pricing(ctx: &mut Ctx<'_>, path: &str, p: &Spanned<RawPricing>) -> Pricing {
    let price = |ctx: &mut Ctx<'_>, field: &str, v: &Spanned<f64>| {
        if v.value.is_finite() && v.value >= 0.0 {
            v.value
        } else {
            ctx.error(
                &format!("{path}.{field}"),
                line(v),
                format!(
                    "expected a price in USD per 1M tokens (a finite number >= 0), found {}",
                    v.value
                ),
            );
            0.0
        }
    };
    let hint = "USD per 1M tokens";
    let input = ctx
        .required(path, line(p), &p.value.input, "input", hint)
        .map_or(0.0, |v| price(ctx, "input", v));
    let output = ctx
        .required(path, line(p), &p.value.output, "output", hint)
        .map_or(0.0, |v| price(ctx, "output", v));
    let cached_input = p
        .value
        .cached_input
        .as_ref()
        .map(|v| price(ctx, "cached_input", v));
    Pricing {
        input,
        output,
        cached_input,
    }
}

fn route(
    ctx: &mut Ctx<'_>,
    i: usize,
    r: &Spanned<RawRoute>,
    model_kinds: &BTreeMap<&String, Option<ModelKind>>,
    matched: &mut HashMap<String, (usize, String)>,
    route_names: &mut HashMap<String, usize>,
) -> Option<RouteConfig> {
    let path = format!("routes[{i}]");
    let before = ctx.errors.len();
    let raw = &r.value;

    let name = ctx
        .required(&path, line(r), &raw.name, "name", "a unique route name")
        .and_then(|n| {
            let name = ctx.name(&format!("{path}.name"), n)?.to_owned();
            if let Some(first) = route_names.get(&name) {
                ctx.error(
                    &format!("{path}.name"),
                    line(n),
                    format!("duplicate route name `{name}` (first used by routes[{first}])"),
                );
            } else {
                route_names.insert(name.clone(), i);
            }
            Some(name)
        })
        .unwrap_or_default();

    let mut models = Vec::new();
    let match_hint = "e.g. `match: { model: gpt-4o }`";
    if let Some(m) = ctx.required(&path, line(r), &raw.match_, "match", match_hint) {
        let mpath = format!("{path}.match");
        if let Some(names) = ctx.required(&mpath, line(m), &m.value.model, "model", match_hint) {
            let list = &names.value.0;
            let single = list.len() == 1 && line_of(list[0].referenced).is_none();
            if list.is_empty() {
                ctx.error(
                    &format!("{mpath}.model"),
                    line(names),
                    "expected at least one model name",
                );
            }
            for (j, model) in list.iter().enumerate() {
                let (mp, ml) = if single {
                    (format!("{mpath}.model"), line(names))
                } else {
                    (format!("{mpath}.model[{j}]"), line(model))
                };
                if model.value.trim().is_empty() {
                    ctx.error(&mp, ml, "must not be empty");
                    continue;
                }
                match matched.get(&model.value) {
                    Some((other, _)) if *other == i => {
                        ctx.error(&mp, ml, format!("model `{}` is listed twice", model.value));
                    }
                    Some((other, other_name)) => ctx.error(
                        &mp,
                        ml,
                        format!(
                            "model `{}` is already matched by route `{other_name}` (routes[{other}]); a model name may appear in only one route",
                            model.value
                        ),
                    ),
                    None => {
                        matched.insert(model.value.clone(), (i, name.clone()));
                        models.push(model.value.clone());
                    }
                }
            }
        }
    }

    // The first target or fallback of a known kind sets the route's kind.
    let mut route_kind: Option<(ModelKind, String, String)> = None;
    let mut check_model = |ctx: &mut Ctx<'_>, mpath: &str, m: &Spanned<String>| {
        match model_kinds.get(&m.value) {
            None => ctx.error(
                mpath,
                line(m),
                format!("unknown model `{}` {}", m.value, known(model_kinds.keys().copied())),
            ),
            Some(None) => {}
            Some(Some(kind)) => match &route_kind {
                None => route_kind = Some((*kind, mpath.to_owned(), m.value.clone())),
                Some((first, first_path, first_name)) if first != kind => ctx.error(
                    mpath,
                    line(m),
                    format!(
                        "`{}` is {} {kind} model, but {first_path} `{first_name}` is {} {first} model; a route's targets and fallbacks must all be of one kind",
                        m.value,
                        article(*kind),
                        article(*first),
                    ),
                ),
                Some(_) => {}
            },
        }
    };

    let mut targets = Vec::new();
    let tpath = format!("{path}.targets");
    match &raw.targets {
        None => ctx.error(
            &path,
            line(r),
            "missing field `targets` (e.g. `targets: [ { model: gpt-4o } ]`)",
        ),
        Some(t) if t.value.is_empty() => ctx.error(&tpath, line(t), "expected at least one target"),
        Some(t) => {
            for (j, target) in t.value.iter().enumerate() {
                let p = format!("{tpath}[{j}]");
                let model = ctx.required(
                    &p,
                    line(target),
                    &target.value.model,
                    "model",
                    "the name of a model",
                );
                if let Some(m) = model {
                    check_model(ctx, &format!("{p}.model"), m);
                }
                let weight = ctx.int(
                    &format!("{p}.weight"),
                    target.value.weight.as_ref(),
                    1,
                    1,
                    i64::from(u32::MAX),
                );
                if let Some(m) = model {
                    targets.push(TargetConfig {
                        model: m.value.clone(),
                        weight: u32::try_from(weight).unwrap_or(1),
                    });
                }
            }
        }
    }

    let mut fallbacks = Vec::new();
    for (j, f) in raw.fallbacks.iter().flatten().enumerate() {
        check_model(ctx, &format!("{path}.fallbacks[{j}]"), f);
        fallbacks.push(f.value.clone());
    }

    let retry = retry(ctx, &format!("{path}.retry"), raw.retry.as_ref());
    let timeouts = timeouts(ctx, &format!("{path}.timeouts"), raw.timeouts.as_ref());
    let slow = raw.telemetry.as_ref().and_then(|t| {
        let v = t.slow.as_ref()?;
        let spath = format!("{path}.telemetry.slow");
        match duration::parse(&v.value, Zero::Rejected, None) {
            Ok(d) => Some(d),
            Err(msg) => {
                ctx.error(&spath, line(v), msg);
                None
            }
        }
    });

    let cache = raw.cache.as_ref().map(|c| {
        let cpath = format!("{path}.cache");
        let ttl = ctx
            .required(
                &cpath,
                line(c),
                &c.value.ttl,
                "ttl",
                "how long answers are kept, e.g. `10m`",
            )
            .map_or(Duration::ZERO, |v| {
                ctx.duration(
                    &format!("{cpath}.ttl"),
                    Some(v),
                    Duration::ZERO,
                    Zero::Rejected,
                    Some(ONE_WEEK),
                )
            });
        CacheConfig {
            ttl,
            only_deterministic: c.value.only_deterministic.as_ref().is_none_or(|v| v.value),
        }
    });

    (ctx.errors.len() == before).then_some(RouteConfig {
        name,
        models,
        targets,
        fallbacks,
        retry,
        timeouts,
        slow,
        cache,
    })
}

fn article(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Chat => "a",
        ModelKind::Embedding => "an",
    }
}

fn retry(ctx: &mut Ctx<'_>, path: &str, raw: Option<&RawRetry>) -> RetryConfig {
    let d = RetryConfig::default();
    let Some(raw) = raw else { return d };
    let max_attempts = ctx.int(
        &format!("{path}.max_attempts"),
        raw.max_attempts.as_ref(),
        i64::from(d.max_attempts),
        1,
        10,
    );
    let on = match &raw.on {
        None => d.on,
        Some(list) => {
            let mut on = Vec::new();
            for (j, v) in list.iter().enumerate() {
                let parsed = match v.value.trim().to_ascii_lowercase().as_str() {
                    "connect" => RetryOn::Connect,
                    "timeout" => RetryOn::Timeout,
                    "429" => RetryOn::RateLimited,
                    "5xx" => RetryOn::ServerError,
                    _ => {
                        ctx.error(
                            &format!("{path}.on[{j}]"),
                            line(v),
                            format!(
                                "unknown retry condition `{}` (expected connect, timeout, 429 or 5xx)",
                                v.value
                            ),
                        );
                        continue;
                    }
                };
                if !on.contains(&parsed) {
                    on.push(parsed);
                }
            }
            on
        }
    };
    let max_retry_after = ctx.duration(
        &format!("{path}.max_retry_after"),
        raw.max_retry_after.as_ref(),
        d.max_retry_after,
        Zero::Allowed,
        Some(ONE_HOUR),
    );
    RetryConfig {
        max_attempts: u32::try_from(max_attempts).unwrap_or(d.max_attempts),
        on,
        max_retry_after,
    }
}

fn timeouts(ctx: &mut Ctx<'_>, path: &str, raw: Option<&RawTimeouts>) -> Timeouts {
    let d = Timeouts::default();
    let Some(raw) = raw else { return d };
    let one = |ctx: &mut Ctx<'_>, field: &str, v: Option<&Spanned<String>>, default| {
        ctx.duration(&format!("{path}.{field}"), v, default, Zero::Rejected, None)
    };
    Timeouts {
        ttft: one(ctx, "ttft", raw.ttft.as_ref(), d.ttft),
        idle: one(ctx, "idle", raw.idle.as_ref(), d.idle),
        total: one(ctx, "total", raw.total.as_ref(), d.total),
    }
}

const OTLP_EXAMPLE: &str =
    "e.g. `http://127.0.0.1:4317` for grpc, `http://127.0.0.1:4318` for http";
const OTLP_HTTP_PATH: &str = "/v1/traces";
/// Custom redaction patterns are compiled with this size limit, so a pathological pattern is
/// refused at load instead of slowing every captured request.
const REDACT_REGEX_SIZE_LIMIT: usize = 1 << 20;

fn telemetry(ctx: &mut Ctx<'_>, t: RawTelemetry) -> TelemetryConfig {
    let d = TelemetryConfig::default();
    let otlp = t.otlp.as_ref().and_then(|o| otlp(ctx, o));
    let sample = sample(ctx, t.sample.as_ref());
    let max_content_bytes = ctx.int(
        "telemetry.max_content_bytes",
        t.max_content_bytes.as_ref(),
        i64::try_from(d.max_content_bytes).unwrap_or(16 * 1024),
        256,
        1024 * 1024,
    );
    let redact = match &t.redact {
        None => d.redact,
        Some(list) => {
            let mut out = Vec::new();
            for (j, r) in list.iter().enumerate() {
                let rpath = format!("telemetry.redact[{j}]");
                let rule = match &r.value {
                    RawRedact::Name(name) => match name.trim() {
                        "email" => RedactRule::Email,
                        "card" => RedactRule::Card,
                        "api_key" => RedactRule::ApiKey,
                        other => {
                            ctx.error(
                                &rpath,
                                line(r),
                                format!(
                                    "unknown redaction `{other}` (expected email, card, api_key or `{{ regex: \"…\" }}`)"
                                ),
                            );
                            continue;
                        }
                    },
                    RawRedact::Regex(re) => {
                        if let Err(msg) = check_regex(re) {
                            ctx.error(&format!("{rpath}.regex"), line(r), msg);
                            continue;
                        }
                        RedactRule::Regex(re.clone())
                    }
                };
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
            out
        }
    };
    TelemetryConfig {
        otlp,
        sample,
        capture_content: t.capture_content.map_or(d.capture_content, |v| v.value),
        max_content_bytes: usize::try_from(max_content_bytes).unwrap_or(d.max_content_bytes),
        redact,
        access_log: t.access_log.map_or(d.access_log, |v| v.value),
        access_log_anonymous_per_s: {
            let n = ctx.int(
                "telemetry.access_log_anonymous_per_s",
                t.access_log_anonymous_per_s.as_ref(),
                i64::from(d.access_log_anonymous_per_s),
                0,
                100_000,
            );
            u32::try_from(n).unwrap_or(d.access_log_anonymous_per_s)
        },
    }
}

/// A custom redaction pattern must compile (within the size limit) and must not match the
/// empty string, which would redact between every two characters.
fn check_regex(re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let compiled = regex::RegexBuilder::new(re)
        .size_limit(REDACT_REGEX_SIZE_LIMIT)
        .build()
        .map_err(|err| match err {
            regex::Error::Syntax(text) => {
                // The syntax error is several lines with a caret diagram; keep its last line.
                let reason = text
                    .lines()
                    .rev()
                    .find_map(|l| l.trim().strip_prefix("error: "))
                    .unwrap_or("syntax error");
                format!("invalid regex `{re}`: {reason}")
            }
            regex::Error::CompiledTooBig(limit) => {
                format!("regex `{re}` is too complex (compiled size over {limit} bytes)")
            }
            other => format!("invalid regex `{re}`: {other}"),
        })?;
    if compiled.is_match("") {
        return Err(format!(
            "regex `{re}` matches the empty string; it must match at least one character"
        ));
    }
    Ok(())
}

fn otlp(ctx: &mut Ctx<'_>, o: &Spanned<RawOtlp>) -> Option<OtlpConfig> {
    let path = "telemetry.otlp";
    let before = ctx.errors.len();
    let raw = &o.value;
    let protocol = match &raw.protocol {
        None => OtlpProtocol::Grpc,
        Some(v) => match v.value.trim() {
            "grpc" => OtlpProtocol::Grpc,
            "http" | "http/protobuf" => OtlpProtocol::HttpProtobuf,
            other => {
                ctx.error(
                    &format!("{path}.protocol"),
                    line(v),
                    format!("unknown OTLP protocol `{other}` (expected grpc or http)"),
                );
                OtlpProtocol::Grpc
            }
        },
    };
    let endpoint = ctx
        .required(path, line(o), &raw.endpoint, "endpoint", OTLP_EXAMPLE)
        .and_then(|v| {
            let epath = format!("{path}.endpoint");
            match otlp_endpoint(&v.value, protocol) {
                Ok(url) => Some(url),
                Err(msg) => {
                    ctx.error(&epath, line(v), msg);
                    None
                }
            }
        });
    let d = OtlpConfig::new("", protocol);
    let timeout = ctx.duration(
        &format!("{path}.timeout"),
        raw.timeout.as_ref(),
        d.timeout,
        Zero::Rejected,
        Some(ONE_HOUR),
    );
    let export_interval = ctx.duration(
        &format!("{path}.export_interval"),
        raw.export_interval.as_ref(),
        d.export_interval,
        Zero::Rejected,
        Some(ONE_HOUR),
    );
    let queue_size = ctx.int(
        &format!("{path}.queue_size"),
        raw.queue_size.as_ref(),
        4096,
        1,
        1 << 20,
    );
    let batch_size = ctx.int(
        &format!("{path}.batch_size"),
        raw.batch_size.as_ref(),
        512,
        1,
        65536,
    );
    let endpoint = endpoint?;
    (ctx.errors.len() == before).then(|| OtlpConfig {
        endpoint,
        protocol,
        timeout,
        queue_size: usize::try_from(queue_size).unwrap_or(d.queue_size),
        batch_size: usize::try_from(batch_size).unwrap_or(d.batch_size),
        export_interval,
    })
}

/// The endpoint as the exporter uses it: gRPC takes scheme and authority only; HTTP gets
/// `/v1/traces` appended unless the path already ends with it.
fn otlp_endpoint(s: &str, protocol: OtlpProtocol) -> Result<String, String> {
    let authority = s.split_once("://").map_or(s, |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        // Never echo the value: user info is a credential.
        return Err(
            "must not contain user info (`user@`); expected scheme, host, optional port and path"
                .to_owned(),
        );
    }
    let url = BaseUrl::parse(s)?;
    let base = format!(
        "{}://{}:{}",
        url.scheme(),
        host_for_url(&url.host),
        url.port
    );
    match protocol {
        OtlpProtocol::Grpc if !url.path.is_empty() => Err(format!(
            "a gRPC endpoint has no path, found `{}` (for OTLP/HTTP set `protocol: http`)",
            url.path
        )),
        OtlpProtocol::Grpc => Ok(base),
        OtlpProtocol::HttpProtobuf if url.tls => Err(
            "`protocol: http` supports only http:// endpoints (use a local collector, or `protocol: grpc` for https://)"
                .to_owned(),
        ),
        OtlpProtocol::HttpProtobuf if url.path.ends_with(OTLP_HTTP_PATH) => {
            Ok(format!("{base}{}", url.path))
        }
        OtlpProtocol::HttpProtobuf => Ok(format!("{base}{}{OTLP_HTTP_PATH}", url.path)),
    }
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn sample(ctx: &mut Ctx<'_>, raw: Option<&RawSample>) -> SampleConfig {
    let d = SampleConfig::default();
    let Some(raw) = raw else { return d };
    let path = "telemetry.sample";
    let head_ratio = match &raw.head_ratio {
        None => d.head_ratio,
        Some(v) if (0.0..=1.0).contains(&v.value) => v.value,
        Some(v) => {
            ctx.error(
                &format!("{path}.head_ratio"),
                line(v),
                format!(
                    "expected a share of requests between 0 and 1, found {}",
                    v.value
                ),
            );
            d.head_ratio
        }
    };
    let keep = match &raw.keep {
        None => d.keep,
        Some(list) => {
            let mut keep = Vec::new();
            for (j, v) in list.iter().enumerate() {
                let rule = match v.value.trim() {
                    "error" => KeepRule::Error,
                    "slow" => KeepRule::Slow,
                    "expensive" => KeepRule::Expensive,
                    "remediated" => KeepRule::Remediated,
                    "judged" => KeepRule::Judged,
                    other => {
                        ctx.error(
                            &format!("{path}.keep[{j}]"),
                            line(v),
                            format!(
                                "unknown keep rule `{other}` (expected error, slow, expensive, remediated or judged)"
                            ),
                        );
                        continue;
                    }
                };
                if !keep.contains(&rule) {
                    keep.push(rule);
                }
            }
            keep
        }
    };
    let slow = ctx.duration(
        &format!("{path}.slow"),
        raw.slow.as_ref(),
        d.slow,
        Zero::Rejected,
        None,
    );
    let expensive_usd = match &raw.expensive_usd {
        None => d.expensive_usd,
        Some(v) if v.value.is_finite() && v.value >= 0.0 => v.value,
        Some(v) => {
            ctx.error(
                &format!("{path}.expensive_usd"),
                line(v),
                format!(
                    "expected a cost in USD (a finite number >= 0), found {}",
                    v.value
                ),
            );
            d.expensive_usd
        }
    };
    SampleConfig {
        head_ratio,
        keep,
        slow,
        expensive_usd,
    }
}

fn keys(ctx: &mut Ctx<'_>, raw: Vec<Spanned<crate::raw::RawKey>>) -> Vec<KeyConfig> {
    if raw.is_empty() {
        ctx.error("keys", None, "expected at least one key");
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut hashes: HashMap<[u8; 32], (usize, String)> = HashMap::new();
    for (i, k) in raw.iter().enumerate() {
        let path = format!("keys[{i}]");
        let before = ctx.errors.len();
        let name = ctx
            .required(&path, line(k), &k.value.name, "name", "a unique key name")
            .and_then(|n| {
                let name = ctx.name(&format!("{path}.name"), n)?.to_owned();
                if let Some(first) = names.get(&name) {
                    ctx.error(
                        &format!("{path}.name"),
                        line(n),
                        format!("duplicate key name `{name}` (first used by keys[{first}])"),
                    );
                } else {
                    names.insert(name.clone(), i);
                }
                Some(name)
            })
            .unwrap_or_default();
        let hash_hint = "the SHA-256 of the key as 64 hex characters; `sluice hash-key` prints it";
        let hash = ctx
            .required(&path, line(k), &k.value.key_sha256, "key_sha256", hash_hint)
            .and_then(|h| {
                let hpath = format!("{path}.key_sha256");
                // Never echo the value: it may be the plaintext key pasted by mistake.
                let hash = match parse_sha256(&h.value) {
                    Ok(hash) => hash,
                    Err(found) => {
                        ctx.error(&hpath, line(h), format!("expected {hash_hint} (found {found})"));
                        return None;
                    }
                };
                if let Some((first, first_name)) = hashes.get(&hash) {
                    ctx.error(
                        &hpath,
                        line(h),
                        format!(
                            "same key_sha256 as keys[{first}] (`{first_name}`); every key needs its own secret"
                        ),
                    );
                } else {
                    hashes.insert(hash, (i, name.clone()));
                }
                Some(hash)
            });
        let tenant = ctx
            .required(
                &path,
                line(k),
                &k.value.tenant,
                "tenant",
                "who the key's usage is billed to",
            )
            .and_then(|t| ctx.name(&format!("{path}.tenant"), t).map(str::to_owned));
        let limits = k
            .value
            .limits
            .as_ref()
            .map(|l| limits(ctx, &format!("{path}.limits"), &l.value))
            .unwrap_or_default();
        if let (true, Some(key_sha256), Some(tenant)) = (ctx.errors.len() == before, hash, tenant) {
            out.push(KeyConfig {
                name,
                key_sha256,
                tenant,
                limits,
            });
        }
    }
    out
}

fn admin(ctx: &mut Ctx<'_>, raw: Option<&Spanned<crate::raw::RawAdmin>>) -> AdminConfig {
    let Some(raw) = raw else {
        return AdminConfig::default();
    };
    let mut tokens = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut hashes: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, t) in raw.value.tokens.iter().flatten().enumerate() {
        let path = format!("admin.tokens[{i}]");
        let before = ctx.errors.len();
        let name = ctx
            .required(&path, line(t), &t.value.name, "name", "who holds the token")
            .and_then(|n| {
                let name = ctx.name(&format!("{path}.name"), n)?.to_owned();
                if let Some(first) = names.insert(name.clone(), i) {
                    ctx.error(
                        &format!("{path}.name"),
                        line(n),
                        format!("duplicate admin token name `{name}` (first used by admin.tokens[{first}])"),
                    );
                }
                Some(name)
            });
        let hint = "the SHA-256 of the token as 64 hex characters; `sluice hash-key` prints it";
        let hash = ctx
            .required(&path, line(t), &t.value.token_sha256, "token_sha256", hint)
            .and_then(|h| {
                let hpath = format!("{path}.token_sha256");
                // Never echo the value: it may be the plaintext token pasted by mistake.
                match parse_sha256(&h.value) {
                    Ok(hash) => {
                        if let Some(first) = hashes.insert(hash, i) {
                            ctx.error(
                                &hpath,
                                line(h),
                                format!("same token_sha256 as admin.tokens[{first}]; every token needs its own secret"),
                            );
                        }
                        Some(hash)
                    }
                    Err(found) => {
                        ctx.error(&hpath, line(h), format!("expected {hint} (found {found})"));
                        None
                    }
                }
            });
        if let (true, Some(name), Some(token_sha256)) = (ctx.errors.len() == before, name, hash) {
            tokens.push(AdminToken { name, token_sha256 });
        }
    }
    AdminConfig { tokens }
}

fn limits(ctx: &mut Ctx<'_>, path: &str, raw: &crate::raw::RawLimits) -> Limits {
    // Absent means unlimited, so 0 would only be a confusing way to block a key.
    let rpm = raw.rpm.as_ref().map(|v| {
        let n = ctx.int(&format!("{path}.rpm"), Some(v), 1, 1, i64::from(u32::MAX));
        u32::try_from(n).unwrap_or(u32::MAX)
    });
    let tpm = raw.tpm.as_ref().map(|v| {
        let n = ctx.int(&format!("{path}.tpm"), Some(v), 1, 1, i64::MAX);
        u64::try_from(n).unwrap_or(u64::MAX)
    });
    Limits { rpm, tpm }
}

/// 64 hex characters, any case. The error describes what was found without showing it.
fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    let n = s.chars().count();
    if n != 64 {
        return Err(format!("{n} characters"));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        let hex = std::str::from_utf8(pair).ok();
        *byte = match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if pair.iter().all(u8::is_ascii_hexdigit) => b,
            _ => return Err("a character that is not a hex digit".to_owned()),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex() {
        let hex = "1C590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213";
        let bytes = parse_sha256(hex).expect("valid hex");
        assert_eq!(bytes[0], 0x1c);
        assert_eq!(bytes[31], 0x13);
        assert_eq!(parse_sha256("abc"), Err("3 characters".into()));
        let bad = format!("{}zz", &hex[..62]);
        assert_eq!(
            parse_sha256(&bad),
            Err("a character that is not a hex digit".into())
        );
        let plus = format!("+1{}", &hex[..62]);
        assert_eq!(
            parse_sha256(&plus),
            Err("a character that is not a hex digit".into())
        );
    }

    #[test]
    fn env_var_names() {
        assert!(is_env_var_name("OPENAI_API_KEY"));
        assert!(is_env_var_name("_x1"));
        assert!(!is_env_var_name("1X"));
        assert!(!is_env_var_name("sk-abc"));
        assert!(!is_env_var_name(""));
    }
}
