//! The `state` section: where limits and budgets are counted.

use serde_saphyr::Spanned;

use super::providers::is_env_var_name;
use super::{Ctx, line};
use crate::duration::Zero;
use crate::raw::{RawRedis, RawState};
use crate::types::{FailMode, RedisConfig, Secret, StateConfig};

/// The longest `state.redis.timeout`: a request never waits longer than this on Redis.
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) fn state(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawState>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> StateConfig {
    let Some(raw) = raw else {
        return StateConfig::default();
    };
    StateConfig {
        redis: raw.value.redis.as_ref().and_then(|r| redis(ctx, r, env)),
    }
}

fn redis(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<RawRedis>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<RedisConfig> {
    const PATH: &str = "state.redis";
    let r = &raw.value;
    let url = ctx.required(
        PATH,
        line(raw),
        &r.url,
        "url",
        "e.g. `url: redis://redis:6379/0`",
    );
    let url = url.and_then(|u| match check_url(u.value.trim()) {
        Ok(()) => Some(u.value.trim().to_owned()),
        Err(msg) => {
            ctx.error(&format!("{PATH}.url"), line(u), msg);
            None
        }
    });
    let mut password = None;
    let password_env = r.password_env.as_ref().map(|v| {
        let path = format!("{PATH}.password_env");
        if !is_env_var_name(&v.value) {
            ctx.error(
                &path,
                line(v),
                "expected the name of an environment variable that holds the password, not the password itself",
            );
        } else {
            match env(&v.value) {
                Some(p) if !p.is_empty() => password = Some(Secret::new(p)),
                _ => ctx.warn(
                    &path,
                    line(v),
                    format!(
                        "environment variable {} is not set; Sluice connects to Redis without a password",
                        v.value
                    ),
                ),
            }
        }
        v.value.clone()
    });
    let key_prefix = match &r.key_prefix {
        None => RedisConfig::DEFAULT_KEY_PREFIX.to_owned(),
        Some(p) if p.value.bytes().all(|b| b.is_ascii_graphic()) => p.value.clone(),
        Some(p) => {
            ctx.error(
                &format!("{PATH}.key_prefix"),
                line(p),
                "must be visible ASCII without spaces (it starts every key Sluice writes)",
            );
            String::new()
        }
    };
    let timeout = ctx.duration(
        &format!("{PATH}.timeout"),
        r.timeout.as_ref(),
        RedisConfig::DEFAULT_TIMEOUT,
        Zero::Rejected,
        Some(MAX_TIMEOUT),
    );
    let fail = match &r.fail {
        None => FailMode::default(),
        Some(v) => match v.value.trim() {
            "open" => FailMode::Open,
            "closed" => FailMode::Closed,
            other => {
                ctx.error(
                    &format!("{PATH}.fail"),
                    line(v),
                    format!("unknown fail mode `{other}` (expected open or closed)"),
                );
                FailMode::default()
            }
        },
    };
    let local_allowance = ctx.int(
        &format!("{PATH}.local_allowance"),
        r.local_allowance.as_ref(),
        0,
        0,
        i64::from(RedisConfig::MAX_LOCAL_ALLOWANCE),
    );
    Some(RedisConfig {
        url: url?,
        password_env,
        password,
        key_prefix,
        timeout,
        fail,
        local_allowance: u32::try_from(local_allowance).unwrap_or(0),
        share_cache: r.share_cache.as_ref().is_some_and(|b| b.value),
    })
}

/// `redis://host[:port][/db]`: plain TCP (this build has no TLS to Redis), and no password in
/// the URL, where it would show in the admin view and in logs.
fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(if url.starts_with("rediss://") {
            format!("`{url}`: TLS to Redis is not supported by this build; use redis://")
        } else {
            format!("expected a URL like redis://host:6379/0, found `{url}`")
        });
    };
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(
            "must not carry credentials; put the password in an environment variable named by `password_env`"
                .to_owned(),
        );
    }
    if authority.is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("`{url}`: the port must be a number up to 65535"));
    }
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("`{url}`: the database must be a number, like /0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls_name_a_plain_redis_without_credentials() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://redis:6379/0",
            "redis://redis",
            "redis://[::1]:6379/2",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://redis:6379",
            "rediss://redis:6379",
            "redis://:secret@redis:6379",
            "redis://",
            "redis://redis:port",
            "redis://redis:6379/zero",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
