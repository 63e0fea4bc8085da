//! The `providers` and `models` sections.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::egress;
use super::{
    Ctx, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_ANTHROPIC_MAX_TOKENS, DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_GEMINI_BASE_URL, DEFAULT_MOCK_TOKENS_PER_S,
    DEFAULT_MOCK_TTFT_MS, DEFAULT_OPENAI_BASE_URL, known, line,
};
use crate::Egress;
use crate::duration::Zero;
use crate::raw::{RawCompat, RawModel, RawPricing, RawProvider};
use crate::types::{
    AwsCredentials, AwsCredentialsConfig, BaseUrl, HttpAccess, MaxTokensField, ModelConfig,
    ModelKind, OpenAiCompat, Pricing, ProviderConfig, ProviderKind, Secret, VertexConfig,
};

/// An HTTP kind's fields: how it is reached, its own fields, then the connection settings
/// (`validate::egress`) every HTTP kind takes, in the order messages list them.
macro_rules! http_kind {
    ($kind:literal $(, $field:literal)*) => {
        (
            $kind,
            &[
                "base_url",
                "api_key_env",
                "connect_timeout",
                $($field,)*
                "headers",
                "ca_file",
                "ca_replaces_roots",
                "proxy",
                "pool_size",
                "idle_timeout",
                "tcp_keepalive",
                "tls_server_name",
                "http_version",
            ],
        )
    };
}

/// The fields each provider kind takes besides `kind`, in the order messages list them.
pub(crate) const KIND_FIELDS: [(&str, &[&str]); 6] = [
    http_kind!("openai", "compat"),
    ("mock", &["ttft_ms", "tokens_per_s"]),
    http_kind!("anthropic", "anthropic_version", "default_max_tokens"),
    http_kind!("gemini", "api_version", "project", "location"),
    http_kind!("azure_openai", "deployment", "api_version"),
    http_kind!(
        "bedrock",
        "region",
        "aws_access_key_id_env",
        "aws_secret_access_key_env",
        "aws_session_token_env"
    ),
];

/// `` `openai`, `mock`, … or `bedrock` `` for messages.
fn kind_list() -> String {
    let names: Vec<String> = KIND_FIELDS.iter().map(|(k, _)| format!("`{k}`")).collect();
    match names.split_last() {
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Every field set on a raw provider (besides `kind`), with its line.
fn fields_set(raw: &RawProvider) -> Vec<(&'static str, Option<usize>)> {
    let mut set = Vec::new();
    let mut add = |name: &'static str, l: Option<Option<usize>>| {
        if let Some(l) = l {
            set.push((name, l));
        }
    };
    add("base_url", raw.base_url.as_ref().map(line));
    add("api_key_env", raw.api_key_env.as_ref().map(line));
    add("connect_timeout", raw.connect_timeout.as_ref().map(line));
    add("ttft_ms", raw.ttft_ms.as_ref().map(line));
    add("tokens_per_s", raw.tokens_per_s.as_ref().map(line));
    add(
        "anthropic_version",
        raw.anthropic_version.as_ref().map(line),
    );
    add(
        "default_max_tokens",
        raw.default_max_tokens.as_ref().map(line),
    );
    add("api_version", raw.api_version.as_ref().map(line));
    add("project", raw.project.as_ref().map(line));
    add("location", raw.location.as_ref().map(line));
    add("deployment", raw.deployment.as_ref().map(line));
    add("region", raw.region.as_ref().map(line));
    add(
        "aws_access_key_id_env",
        raw.aws_access_key_id_env.as_ref().map(line),
    );
    add(
        "aws_secret_access_key_env",
        raw.aws_secret_access_key_env.as_ref().map(line),
    );
    add(
        "aws_session_token_env",
        raw.aws_session_token_env.as_ref().map(line),
    );
    add("headers", raw.headers.as_ref().map(line));
    add("ca_file", raw.ca_file.as_ref().map(line));
    add(
        "ca_replaces_roots",
        raw.ca_replaces_roots.as_ref().map(line),
    );
    add("proxy", raw.proxy.as_ref().map(line));
    add("pool_size", raw.pool_size.as_ref().map(line));
    add("idle_timeout", raw.idle_timeout.as_ref().map(line));
    add("tcp_keepalive", raw.tcp_keepalive.as_ref().map(line));
    add("tls_server_name", raw.tls_server_name.as_ref().map(line));
    add("compat", raw.compat.as_ref().map(line));
    add("http_version", raw.http_version.as_ref().map(line));
    set
}

pub(super) fn provider(
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
    let kind = ctx.required(&path, line(p), &raw.kind, "kind", &kind_list())?;
    let Some((kind_name, allowed)) = KIND_FIELDS.iter().find(|(k, _)| *k == kind.value) else {
        ctx.error(
            &format!("{path}.kind"),
            line(kind),
            format!(
                "unknown provider kind `{}` (expected {})",
                kind.value,
                kind_list()
            ),
        );
        return None;
    };
    for (field, l) in fields_set(raw) {
        if !allowed.contains(&field) {
            ctx.error(
                &format!("{path}.{field}"),
                l,
                format!(
                    "`{field}` does not apply to `kind: {kind_name}` (its fields: {})",
                    allowed.join(", ")
                ),
            );
        }
    }
    let provider_kind = match *kind_name {
        "openai" => openai(ctx, name, &path, raw, env),
        "mock" => Some(mock(ctx, &path, raw)),
        "anthropic" => anthropic(ctx, name, &path, raw, env),
        "gemini" => gemini(ctx, name, &path, raw, env),
        "azure_openai" => azure(ctx, name, &path, line(p), raw, env),
        _ => bedrock(ctx, name, &path, line(p), raw, env),
    };
    let provider_kind = provider_kind?;
    let egress = match &provider_kind {
        ProviderKind::OpenAi { base_url, .. } => egress::egress(ctx, &path, raw, base_url, env),
        ProviderKind::Mock { .. } => Egress::default(),
        other => match other.access() {
            Some(a) => egress::egress(ctx, &path, raw, &a.base_url, env),
            None => Egress::default(),
        },
    };
    (ctx.errors.len() == before).then(|| ProviderConfig {
        name: name.to_owned(),
        kind: provider_kind,
        egress,
    })
}

fn openai(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProviderKind> {
    let access = access(
        ctx,
        name,
        path,
        raw,
        env,
        Some(DEFAULT_OPENAI_BASE_URL.into()),
    );
    let compat = compat(ctx, path, raw.compat.as_ref());
    let access = access?;
    Some(ProviderKind::OpenAi {
        base_url: access.base_url,
        api_key_env: access.api_key_env,
        api_key: access.api_key,
        connect_timeout: access.connect_timeout,
        compat,
    })
}

/// `compat`: an OpenAI-compatible server's quirks.
fn compat(ctx: &mut Ctx<'_>, path: &str, raw: Option<&Spanned<RawCompat>>) -> OpenAiCompat {
    let mut out = OpenAiCompat::default();
    let Some(raw) = raw else {
        return out;
    };
    let raw = &raw.value;
    if let Some(v) = &raw.stream_usage {
        out.stream_usage = v.value;
    }
    if let Some(v) = &raw.developer_as_system {
        out.developer_as_system = v.value;
    }
    if let Some(v) = &raw.max_tokens_field {
        out.max_tokens_field = match v.value.as_str() {
            "max_tokens" => Some(MaxTokensField::MaxTokens),
            "max_completion_tokens" => Some(MaxTokensField::MaxCompletionTokens),
            other => {
                ctx.error(
                    &format!("{path}.compat.max_tokens_field"),
                    line(v),
                    format!("unknown field name `{other}` (expected max_tokens or max_completion_tokens)"),
                );
                None
            }
        };
    }
    for (i, f) in raw.drop_fields.iter().flatten().enumerate() {
        let at = format!("{path}.compat.drop_fields[{i}]");
        if OpenAiCompat::REQUIRED_FIELDS.contains(&f.value.as_str()) {
            ctx.error(
                &at,
                line(f),
                format!("`{}` cannot be dropped: the request needs it", f.value),
            );
        } else if f.value.is_empty()
            || !f
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            ctx.error(
                &at,
                line(f),
                "expected a top-level field name (letters, digits, `_`)",
            );
        } else if !out.drop_fields.contains(&f.value) {
            out.drop_fields.push(f.value.clone());
        }
    }
    out
}

/// `base_url` (or `default_base`; required when there is none), the key from `api_key_env`
/// and `connect_timeout`: what every HTTP kind shares.
fn access(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
    default_base: Option<String>,
) -> Option<HttpAccess> {
    let base_url = match (&raw.base_url, default_base) {
        (None, Some(default)) => BaseUrl::parse(&default).ok(),
        // Kinds without a default check for `base_url` themselves.
        (None, None) => None,
        (Some(v), _) => match BaseUrl::parse(&v.value) {
            Ok(u) => Some(u),
            Err(msg) => {
                ctx.error(&format!("{path}.base_url"), line(v), msg);
                None
            }
        },
    };
    let api_key_env = raw.api_key_env.as_ref();
    let api_key = api_key_env.and_then(|v| env_secret(ctx, name, path, "api_key_env", v, env));
    let connect_timeout = ctx.duration(
        &format!("{path}.connect_timeout"),
        raw.connect_timeout.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
        Zero::Rejected,
        None,
    );
    Some(HttpAccess {
        base_url: base_url?,
        api_key_env: api_key_env.map(|v| v.value.clone()),
        api_key,
        connect_timeout,
    })
}

/// The secret in the environment variable named by `field` (`v`). Unset or empty warns (the
/// provider answers 503 until it is set); a value a header cannot carry is an error.
fn env_secret(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    field: &str,
    v: &Spanned<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    // The value is never echoed: a common mistake is to paste the key itself here.
    if !is_env_var_name(&v.value) {
        ctx.error(
            &format!("{path}.{field}"),
            line(v),
            "expected the name of an environment variable (letters, digits and `_`, not starting with a digit) that holds the key, not the key itself",
        );
        return None;
    }
    env_value(ctx, name, path, field, &v.value, line(v), env)
}

fn env_value(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    field: &str,
    var: &str,
    l: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    match env(var) {
        // A trailing newline from `$(cat keyfile)` is the usual culprit; never echo it.
        Some(key) if !key.is_empty() && !key.bytes().all(|b| b.is_ascii_graphic()) => {
            ctx.error(
                &format!("{path}.{field}"),
                l,
                format!(
                    "environment variable {var} holds characters an HTTP header cannot carry (spaces, line breaks or non-ASCII); it must hold the key alone"
                ),
            );
            None
        }
        Some(key) if !key.is_empty() => Some(Secret::new(key)),
        _ => {
            ctx.warn(
                &format!("{path}.{field}"),
                l,
                format!(
                    "environment variable {var} is not set; provider `{name}` will answer 503 until it is"
                ),
            );
            None
        }
    }
}

/// A value that goes into a URL path segment, query or header: letters, digits, `.`, `_`, `-`.
fn token(ctx: &mut Ctx<'_>, path: &str, v: &Spanned<String>, what: &str) -> Option<String> {
    let ok = !v.value.is_empty()
        && v.value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Some(v.value.clone())
    } else {
        ctx.error(
            path,
            line(v),
            format!(
                "expected {what} (letters, digits, `.`, `_` and `-` only), found `{}`",
                v.value
            ),
        );
        None
    }
}

fn anthropic(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProviderKind> {
    let access = access(
        ctx,
        name,
        path,
        raw,
        env,
        Some(DEFAULT_ANTHROPIC_BASE_URL.into()),
    );
    let anthropic_version = match &raw.anthropic_version {
        None => Some(DEFAULT_ANTHROPIC_VERSION.to_owned()),
        Some(v) => token(
            ctx,
            &format!("{path}.anthropic_version"),
            v,
            "an `anthropic-version` such as 2023-06-01",
        ),
    };
    let default_max_tokens = ctx.int(
        &format!("{path}.default_max_tokens"),
        raw.default_max_tokens.as_ref(),
        DEFAULT_ANTHROPIC_MAX_TOKENS,
        1,
        1_000_000,
    );
    Some(ProviderKind::Anthropic {
        access: access?,
        anthropic_version: anthropic_version?,
        default_max_tokens: u32::try_from(default_max_tokens).unwrap_or(4096),
    })
}

fn gemini(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProviderKind> {
    let project = raw.project.as_ref().map(|v| {
        token(
            ctx,
            &format!("{path}.project"),
            v,
            "a Google Cloud project id",
        )
    });
    let location = raw
        .location
        .as_ref()
        .map(|v| token(ctx, &format!("{path}.location"), v, "a Vertex AI location"));
    let vertex = match (project, location) {
        (None, None) => None,
        (Some(p), Some(l)) => Some(VertexConfig {
            project: p?,
            location: l?,
        }),
        (Some(_), None) | (None, Some(_)) => {
            ctx.error(
                path,
                line_of_either(&raw.project, &raw.location),
                "Vertex AI needs both `project` and `location` (leave both out for the Gemini API)",
            );
            return None;
        }
    };
    let default_base = match &vertex {
        None => DEFAULT_GEMINI_BASE_URL.to_owned(),
        Some(v) => match v.location.as_str() {
            "global" => "https://aiplatform.googleapis.com".to_owned(),
            "us" | "eu" => format!("https://aiplatform.{}.rep.googleapis.com", v.location),
            l => format!("https://{l}-aiplatform.googleapis.com"),
        },
    };
    let access = access(ctx, name, path, raw, env, Some(default_base));
    let api_version = match &raw.api_version {
        None => Some(if vertex.is_some() { "v1" } else { "v1beta" }.to_owned()),
        Some(v) => token(
            ctx,
            &format!("{path}.api_version"),
            v,
            "an API version such as v1beta",
        ),
    };
    Some(ProviderKind::Gemini {
        access: access?,
        api_version: api_version?,
        vertex,
    })
}

fn line_of_either(a: &Option<Spanned<String>>, b: &Option<Spanned<String>>) -> Option<usize> {
    a.as_ref().or(b.as_ref()).and_then(line)
}

fn azure(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    pline: Option<usize>,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProviderKind> {
    if raw.base_url.is_none() {
        ctx.error(
            path,
            pline,
            "missing field `base_url` (the resource's endpoint, e.g. https://NAME.openai.azure.com)",
        );
        return None;
    }
    let access = access(ctx, name, path, raw, env, None);
    let deployment = match &raw.deployment {
        None => Some(None),
        Some(v) => token(ctx, &format!("{path}.deployment"), v, "a deployment name").map(Some),
    };
    let api_version = match &raw.api_version {
        None => Some(None),
        Some(v) => token(
            ctx,
            &format!("{path}.api_version"),
            v,
            "an api-version such as 2024-10-21",
        )
        .map(Some),
    };
    Some(ProviderKind::AzureOpenAi {
        access: access?,
        deployment: deployment?,
        api_version: api_version?,
    })
}

fn bedrock(
    ctx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    pline: Option<usize>,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProviderKind> {
    let region = ctx
        .required(
            path,
            pline,
            &raw.region,
            "region",
            "an AWS region such as us-east-1",
        )
        .and_then(|v| {
            token(
                ctx,
                &format!("{path}.region"),
                v,
                "an AWS region such as us-east-1",
            )
        });
    let default_base = region
        .as_ref()
        .map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"));
    let access = access(ctx, name, path, raw, env, default_base);
    let aws_fields = [
        (
            "aws_access_key_id_env",
            &raw.aws_access_key_id_env,
            "AWS_ACCESS_KEY_ID",
        ),
        (
            "aws_secret_access_key_env",
            &raw.aws_secret_access_key_env,
            "AWS_SECRET_ACCESS_KEY",
        ),
        (
            "aws_session_token_env",
            &raw.aws_session_token_env,
            "AWS_SESSION_TOKEN",
        ),
    ];
    let aws = if raw.api_key_env.is_some() {
        // A Bedrock API key is sent as a bearer token instead of signing.
        for (field, v, _) in &aws_fields {
            if let Some(v) = v {
                ctx.error(
                    &format!("{path}.{field}"),
                    line(v),
                    format!("`{field}` and `api_key_env` exclude each other: sign with AWS credentials or send a Bedrock API key, not both"),
                );
            }
        }
        None
    } else {
        let mut vars = Vec::with_capacity(3);
        for (field, v, default) in &aws_fields {
            let var = match v {
                None => (*default).to_owned(),
                Some(v) if is_env_var_name(&v.value) => v.value.clone(),
                Some(v) => {
                    ctx.error(
                        &format!("{path}.{field}"),
                        line(v),
                        "expected the name of an environment variable (letters, digits and `_`, not starting with a digit), not its value",
                    );
                    (*default).to_owned()
                }
            };
            vars.push((*field, var, v.as_ref().and_then(line)));
        }
        let read = |ctx: &mut Ctx<'_>, i: usize, required: bool| {
            let (field, var, l) = &vars[i];
            if required {
                env_value(ctx, name, path, field, var, *l, env)
            } else {
                // The session token is only there for temporary credentials.
                env(var)
                    .filter(|t| !t.is_empty())
                    .and_then(|_| env_value(ctx, name, path, field, var, *l, env))
            }
        };
        let id = read(ctx, 0, true);
        let secret = read(ctx, 1, true);
        let session_token = read(ctx, 2, false);
        Some(AwsCredentialsConfig {
            access_key_id_env: vars[0].1.clone(),
            secret_access_key_env: vars[1].1.clone(),
            session_token_env: vars[2].1.clone(),
            credentials: match (id, secret) {
                (Some(id), Some(secret)) => Some(AwsCredentials {
                    access_key_id: id.expose().to_owned(),
                    secret_access_key: secret,
                    session_token,
                }),
                _ => None,
            },
        })
    };
    Some(ProviderKind::Bedrock {
        access: access?,
        region: region?,
        aws,
    })
}

pub(super) fn is_env_var_name(s: &str) -> bool {
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
pub(super) fn model(
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
    let cache_write_input = p
        .value
        .cache_write_input
        .as_ref()
        .map(|v| price(ctx, "cache_write_input", v));
    Pricing {
        input,
        output,
        cached_input,
        cache_write_input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        assert!(is_env_var_name("OPENAI_API_KEY"));
        assert!(is_env_var_name("_x1"));
        assert!(!is_env_var_name("1X"));
        assert!(!is_env_var_name("sk-abc"));
        assert!(!is_env_var_name(""));
    }
}
