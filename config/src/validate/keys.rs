//! The `keys` and `admin` sections: virtual keys, their limits, admin tokens.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_saphyr::Spanned;

use super::{Ctx, line};
use crate::raw::RawTenant;
use crate::types::{AdminConfig, AdminToken, Budget, KeyConfig, Limits, TenantConfig};

/// The names keys may refer to: public model names and route names.
pub(super) struct Known<'a> {
    pub models: BTreeSet<&'a str>,
    pub routes: BTreeSet<&'a str>,
}

pub(super) fn keys(
    ctx: &mut Ctx<'_>,
    raw: Vec<Spanned<crate::raw::RawKey>>,
    known: &Known<'_>,
) -> Vec<KeyConfig> {
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
        let mut names_in =
            |field: &str, list: &Option<Vec<Spanned<String>>>, set: &BTreeSet<&str>| {
                let mut out = Vec::new();
                for (j, v) in list.iter().flatten().enumerate() {
                    if set.contains(v.value.as_str()) {
                        out.push(v.value.clone());
                    } else {
                        let what = if field == "models" { "model" } else { "route" };
                        ctx.error(
                            &format!("{path}.{field}[{j}]"),
                            line(v),
                            format!(
                                "unknown {what} `{}` (known: {})",
                                v.value,
                                set.iter().copied().collect::<Vec<_>>().join(", ")
                            ),
                        );
                    }
                }
                out
            };
        let models = names_in("models", &k.value.models, &known.models);
        let routes = names_in("routes", &k.value.routes, &known.routes);
        let priority = ctx.int(
            &format!("{path}.priority"),
            k.value.priority.as_ref(),
            5,
            0,
            9,
        );
        let expires = k.value.expires.as_ref().and_then(|e| {
            match humantime::parse_rfc3339_weak(e.value.trim()) {
                Ok(t) => Some(t),
                Err(_) => {
                    ctx.error(
                        &format!("{path}.expires"),
                        line(e),
                        format!(
                            "expected a UTC date and time like `2027-01-31T00:00:00Z`, found `{}`",
                            e.value
                        ),
                    );
                    None
                }
            }
        });
        if let (true, Some(key_sha256), Some(tenant)) = (ctx.errors.len() == before, hash, tenant) {
            out.push(KeyConfig {
                name,
                key_sha256,
                tenant,
                limits,
                models,
                routes,
                priority: u8::try_from(priority).unwrap_or(5),
                expires,
            });
        }
    }
    out
}

pub(super) fn admin(ctx: &mut Ctx<'_>, raw: Option<&Spanned<crate::raw::RawAdmin>>) -> AdminConfig {
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

pub(super) fn tenants(
    ctx: &mut Ctx<'_>,
    raw: Option<&BTreeMap<String, Spanned<RawTenant>>>,
    keys: &[KeyConfig],
) -> BTreeMap<String, TenantConfig> {
    let mut out = BTreeMap::new();
    for (name, t) in raw.into_iter().flatten() {
        let path = format!("tenants.{name}");
        let before = ctx.errors.len();
        if name.trim().is_empty() {
            ctx.error(&path, line(t), "tenant names must not be empty");
        }
        let limits = t
            .value
            .limits
            .as_ref()
            .map(|l| limits(ctx, &format!("{path}.limits"), &l.value))
            .unwrap_or_default();
        let budget = t.value.budget.as_ref().map_or_else(Budget::default, |b| {
            let usd = |ctx: &mut Ctx<'_>, field: &str, v: Option<&Spanned<f64>>| {
                v.map(|v| ctx.number(&format!("{path}.budget.{field}"), Some(v), 0.0, 0.0, 1e12))
            };
            Budget {
                usd_per_day: usd(ctx, "usd_per_day", b.value.usd_per_day.as_ref()),
                usd_per_month: usd(ctx, "usd_per_month", b.value.usd_per_month.as_ref()),
            }
        });
        let attributes = super::telemetry::attributes(
            ctx,
            &format!("{path}.attributes"),
            t.value.attributes.as_ref(),
        );
        if !keys.iter().any(|k| &k.tenant == name) {
            ctx.warn(
                &path,
                line(t),
                format!(
                    "no key belongs to tenant `{name}`; its limits and budget apply to nothing"
                ),
            );
        }
        if ctx.errors.len() == before {
            out.insert(
                name.clone(),
                TenantConfig {
                    name: name.clone(),
                    limits,
                    budget,
                    attributes,
                },
            );
        }
    }
    out
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
}
