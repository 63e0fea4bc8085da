//! The `providers` and `models` sections.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::egress;
use super::{
    Ctx, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MOCK_TOKENS_PER_S, DEFAULT_MOCK_TTFT_MS,
    DEFAULT_OPENAI_BASE_URL, MOCK_FIELDS, OPENAI_FIELDS, known, line,
};
use crate::Egress;
use crate::duration::Zero;
use crate::raw::{RawModel, RawPricing, RawProvider};
use crate::types::{
    BaseUrl, ModelConfig, ModelKind, Pricing, ProviderConfig, ProviderKind, Secret,
};

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
            for (field, l) in egress_fields(raw) {
                not_for(ctx, field, l, "mock", MOCK_FIELDS);
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
    let egress = match &provider_kind {
        ProviderKind::OpenAi { base_url, .. } => egress::egress(ctx, &path, raw, base_url, env),
        ProviderKind::Mock { .. } => Egress::default(),
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

/// The connection fields set on a provider, with their lines (for kinds they do not fit).
fn egress_fields(raw: &RawProvider) -> Vec<(&'static str, Option<usize>)> {
    let mut set = Vec::new();
    let mut add = |name: &'static str, l: Option<Option<usize>>| {
        if let Some(l) = l {
            set.push((name, l));
        }
    };
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
    set
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
    Pricing {
        input,
        output,
        cached_input,
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
