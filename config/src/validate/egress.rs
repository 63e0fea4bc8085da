//! A provider's connection settings: `headers`, `ca_file`, `proxy`, pool and TCP/TLS options.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::providers::is_env_var_name;
use super::{Ctx, line};
use crate::duration::Zero;
use crate::egress::{
    self, Egress, ExtraHeader, HeaderValue, HttpVersion, ProxyConfig, ProxySource,
};
use crate::raw::{RawHeaderValue, RawProvider, RawProxy};
use crate::{BaseUrl, Secret};

/// Largest `pool_size`.
pub(crate) const MAX_POOL_SIZE: i64 = 10_000;
/// The longest `idle_timeout` and `tcp_keepalive`.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(3600);
/// Headers Sluice writes itself (or that would change the request's framing): a policy may
/// not set them, so a provider always sees one of each.
const RESERVED: &[&str] = &[
    "host",
    "authorization",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "accept",
    "accept-encoding",
    "user-agent",
    "x-request-id",
    "proxy-authorization",
    "te",
    "upgrade",
    "expect",
    // The other kinds' credentials and the headers SigV4 signs.
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "anthropic-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

pub(super) fn egress(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawProvider,
    base_url: &BaseUrl,
    env: &dyn Fn(&str) -> Option<String>,
) -> Egress {
    let headers = raw
        .headers
        .as_ref()
        .map(|h| headers(ctx, &format!("{path}.headers"), &h.value, env))
        .unwrap_or_default();
    let ca_file = raw.ca_file.as_ref().and_then(|v| {
        if v.value.trim().is_empty() {
            ctx.error(
                &format!("{path}.ca_file"),
                line(v),
                "must not be empty: the path of a PEM file of CA certificates",
            );
            None
        } else {
            Some(std::path::PathBuf::from(v.value.trim()))
        }
    });
    let ca_replaces_roots = raw.ca_replaces_roots.as_ref().is_some_and(|v| v.value);
    if ca_replaces_roots && ca_file.is_none() && raw.ca_file.is_none() {
        ctx.warn(
            &format!("{path}.ca_replaces_roots"),
            raw.ca_replaces_roots.as_ref().and_then(line),
            "has no effect without `ca_file`: the system roots are used",
        );
    }
    let pool_size = raw.pool_size.as_ref().map(|v| {
        ctx.int(&format!("{path}.pool_size"), Some(v), 1, 1, MAX_POOL_SIZE)
            .unsigned_abs() as usize
    });
    let opt_duration = |ctx: &mut Ctx<'_>, field: &str, v: Option<&Spanned<String>>| {
        v.map(|v| {
            ctx.duration(
                &format!("{path}.{field}"),
                Some(v),
                Duration::from_secs(1),
                Zero::Rejected,
                Some(MAX_IDLE),
            )
        })
    };
    let idle_timeout = opt_duration(ctx, "idle_timeout", raw.idle_timeout.as_ref());
    let tcp_keepalive = opt_duration(ctx, "tcp_keepalive", raw.tcp_keepalive.as_ref());
    let tls_server_name = raw.tls_server_name.as_ref().and_then(|v| {
        let name = v.value.trim();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            ctx.error(
                &format!("{path}.tls_server_name"),
                line(v),
                "expected a DNS name (letters, digits, `-` and `.`) that the provider's certificate is issued for",
            );
        } else if !base_url.tls {
            ctx.error(
                &format!("{path}.tls_server_name"),
                line(v),
                "applies only to an https:// base_url",
            );
        }
        valid.then(|| name.to_ascii_lowercase())
    });
    let proxy = proxy(ctx, path, raw.proxy.as_ref(), base_url, env);
    // The bundle also checks an https:// proxy's certificate.
    if ca_file.is_some() && !base_url.tls && !proxy.as_ref().is_some_and(|p| p.tls) {
        ctx.error(
            &format!("{path}.ca_file"),
            raw.ca_file.as_ref().and_then(line),
            "applies only to an https:// base_url or an https:// proxy",
        );
    }
    let http_version = http_version(ctx, path, raw, base_url, proxy.as_ref());
    Egress {
        headers,
        ca_file,
        ca_replaces_roots,
        proxy,
        pool_size,
        idle_timeout,
        tcp_keepalive,
        tls_server_name,
        http_version,
    }
}

fn http_version(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawProvider,
    base_url: &BaseUrl,
    proxy: Option<&ProxyConfig>,
) -> HttpVersion {
    let Some(v) = raw.http_version.as_ref() else {
        return HttpVersion::default();
    };
    let at = format!("{path}.http_version");
    let version = match v.value.trim() {
        "http1" => HttpVersion::Http1,
        "h2" => HttpVersion::H2,
        "auto" => HttpVersion::Auto,
        other => {
            ctx.error(
                &at,
                line(v),
                format!("unknown HTTP version `{other}` (expected `http1`, `h2` or `auto`)"),
            );
            return HttpVersion::default();
        }
    };
    if !base_url.tls {
        if version == HttpVersion::Auto {
            ctx.error(
                &at,
                line(v),
                "`auto` chooses by TLS ALPN and needs an https:// base_url; use `h2` for HTTP/2 with prior knowledge (h2c) to an http:// one",
            );
            return HttpVersion::default();
        }
        if version == HttpVersion::H2 && proxy.is_some() {
            ctx.error(
                &at,
                line(v),
                "`h2` to an http:// base_url (h2c) cannot go through a proxy, which forwards plain HTTP/1.1 requests; use an https:// base_url, or `no_proxy`",
            );
            return HttpVersion::default();
        }
    }
    version
}

fn headers(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &std::collections::BTreeMap<String, Spanned<RawHeaderValue>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<ExtraHeader> {
    let mut out = Vec::new();
    for (name, v) in raw {
        let at = format!("{path}.{name}");
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            ctx.error(
                &at,
                line(v),
                "expected a header name (letters, digits and `-`, no spaces or `:`)",
            );
            continue;
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            ctx.error(
                &at,
                line(v),
                format!(
                    "`{name}` is written by Sluice itself and cannot be set here (reserved: {})",
                    RESERVED.join(", ")
                ),
            );
            continue;
        }
        // Tabs and spaces inside are fine; line breaks would start a new header line.
        let sendable = |s: &str| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        let value = match &v.value {
            RawHeaderValue::Static(s) => {
                if !sendable(s) {
                    ctx.error(
                        &at,
                        line(v),
                        "expected a header value of printable ASCII (no line breaks)",
                    );
                    continue;
                }
                HeaderValue::Static(s.trim().to_owned())
            }
            RawHeaderValue::Env(var) => {
                if !is_env_var_name(var) {
                    ctx.error(
                        &format!("{at}.env"),
                        line(v),
                        "expected the name of an environment variable (letters, digits and `_`, not starting with a digit), not the value itself",
                    );
                    continue;
                }
                let value = match env(var) {
                    Some(s) if !s.is_empty() && !sendable(&s) => {
                        // Never echo the value: it is a secret by construction.
                        ctx.error(
                            &format!("{at}.env"),
                            line(v),
                            format!(
                                "environment variable {var} holds characters a header cannot carry (line breaks or non-ASCII)"
                            ),
                        );
                        continue;
                    }
                    Some(s) if !s.is_empty() => Some(Secret::new(s.trim())),
                    _ => {
                        ctx.warn(
                            &format!("{at}.env"),
                            line(v),
                            format!(
                                "environment variable {var} is not set; the header is left out until it is"
                            ),
                        );
                        None
                    }
                };
                HeaderValue::Env {
                    env: var.clone(),
                    value,
                }
            }
        };
        out.push(ExtraHeader {
            name: name.to_ascii_lowercase(),
            value,
        });
    }
    out
}

fn proxy(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: Option<&Spanned<RawProxy>>,
    base_url: &BaseUrl,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProxyConfig> {
    let at = format!("{path}.proxy");
    let p = raw.map(|r| &r.value);
    let no_proxy: Vec<String> = match p.and_then(|p| p.no_proxy.as_ref()) {
        Some(list) => list.iter().map(|e| e.value.trim().to_owned()).collect(),
        None => ["NO_PROXY", "no_proxy"]
            .iter()
            .find_map(|v| env(v).filter(|s| !s.trim().is_empty()))
            .map(|s| egress::split_no_proxy(&s))
            .unwrap_or_default(),
    };
    if let Some(list) = p.and_then(|p| p.no_proxy.as_ref()) {
        for (i, e) in list.iter().enumerate() {
            if e.value.trim().is_empty() {
                ctx.error(
                    &format!("{at}.no_proxy[{i}]"),
                    line(e),
                    "must not be empty: a host, `.domain`, IP, CIDR block or `*`",
                );
            }
        }
    }
    let policy_url = p.and_then(|p| p.url.as_ref());
    let credentials_env = p.and_then(|p| p.credentials_env.as_ref());
    if let (Some(c), None) = (credentials_env, policy_url) {
        ctx.warn(
            &format!("{at}.credentials_env"),
            line(c),
            "is ignored without `proxy.url`: credentials for a proxy from the environment go in its URL (`http://user:pass@host:port`)",
        );
    }
    let env_var = egress::proxy_env_vars(base_url.tls)
        .into_iter()
        .find(|v| env(v).is_some_and(|s| !s.trim().is_empty()));
    let source = egress::choose_proxy(base_url, policy_url.is_some(), env_var, &no_proxy)?;
    match source {
        ProxySource::Policy => {
            let url = policy_url?;
            let parsed = match egress::parse_proxy_url(&url.value) {
                Ok(parsed) => parsed,
                Err(msg) => {
                    ctx.error(&format!("{at}.url"), line(url), msg);
                    return None;
                }
            };
            if parsed.userinfo.is_some() {
                ctx.error(
                    &format!("{at}.url"),
                    line(url),
                    "must not contain user info (`user:pass@`); name the environment variable that holds `user:password` in `proxy.credentials_env`",
                );
                return None;
            }
            let credentials = credentials_env.and_then(|c| {
                if !is_env_var_name(&c.value) {
                    ctx.error(
                        &format!("{at}.credentials_env"),
                        line(c),
                        "expected the name of an environment variable holding `user:password`, not the credentials themselves",
                    );
                    return None;
                }
                match env(&c.value) {
                    Some(s) if s.contains(':') && s.bytes().all(|b| b.is_ascii_graphic()) => {
                        Some(Secret::new(s))
                    }
                    Some(s) if !s.is_empty() => {
                        ctx.error(
                            &format!("{at}.credentials_env"),
                            line(c),
                            format!(
                                "environment variable {} must hold `user:password` (visible ASCII, one `:`)",
                                c.value
                            ),
                        );
                        None
                    }
                    _ => {
                        ctx.warn(
                            &format!("{at}.credentials_env"),
                            line(c),
                            format!(
                                "environment variable {} is not set; the proxy is used without credentials",
                                c.value
                            ),
                        );
                        None
                    }
                }
            });
            Some(ProxyConfig {
                source: "policy".into(),
                tls: parsed.tls,
                host: parsed.host,
                port: parsed.port,
                credentials_env: credentials_env.map(|c| c.value.clone()),
                credentials,
            })
        }
        ProxySource::Env(var) => {
            let value = env(var).unwrap_or_default();
            match egress::parse_proxy_url(&value) {
                Ok(parsed) => Some(ProxyConfig {
                    source: var.to_owned(),
                    tls: parsed.tls,
                    host: parsed.host,
                    port: parsed.port,
                    credentials_env: None,
                    credentials: parsed.userinfo.map(Secret::new),
                }),
                Err(_) => {
                    // The value may carry credentials: say where, not what. A warning, as a
                    // malformed machine-wide variable is not this policy's mistake.
                    ctx.warn(
                        &at,
                        raw.and_then(line),
                        format!(
                            "environment variable {var} is not an http:// or https:// proxy URL and is ignored (connecting directly); fix it, or set `proxy.url` for this provider"
                        ),
                    );
                    None
                }
            }
        }
    }
}
