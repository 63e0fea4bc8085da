//! The server-side scripts that count in Redis, and what their replies mean.
//!
//! One `EVALSHA` of [`ADMIT`] per admitted request (or per lease) checks a tenant's budget,
//! the key's and the tenant's tokens per minute, and takes request slots from both GCRA
//! buckets, all or nothing, on Redis's clock (`TIME`), so replicas' clocks do not matter and
//! no two replicas can take the same slot. [`RECORD`] adds finished requests' tokens and spend,
//! off the request path. Every value in a reply is a string: Lua numbers would reach Rust
//! truncated to integers.

use std::time::Duration;

use sluice_config::{Budget, Limits};
use sluice_policy::spend::{OverBudget, Period};
use sluice_policy::{Denied, Headroom, LimitKind};

/// KEYS: key GCRA, key tokens base, tenant GCRA, tenant tokens base, spend today, spend this
/// month. ARGV: key rpm, key tpm, tenant rpm, tenant tpm (0 = none), day and month budgets
/// (-1 = none), slots wanted.
///
/// Reply: `{code, who, a, b, c, d, e, f, g, h}` — code 0 admitted (a granted slots, b/c key
/// remaining/reset ms, d/e tenant remaining/reset ms, f/g key/tenant tokens used, h tokens
/// reset ms; -1 where there is no such limit); 1 out of requests and 2 out of tokens (who: 1
/// key, 2 tenant; a retry after ms); 3 over budget (who: 1 day, 2 month; a spent).
pub const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local WINDOW = 60000000
local function num(k)
  local v = redis.call('GET', k)
  if v then return tonumber(v) end
  return 0
end
local function ms(us) return tostring(math.ceil(us / 1000)) end

local day_limit, month_limit = tonumber(ARGV[5]), tonumber(ARGV[6])
if day_limit >= 0 then
  local spent = num(KEYS[5])
  if spent >= day_limit then return {'3', '1', tostring(spent)} end
end
if month_limit >= 0 then
  local spent = num(KEYS[6])
  if spent >= month_limit then return {'3', '2', tostring(spent)} end
end

local minute = math.floor(now / WINDOW)
local frac = (now % WINDOW) / WINDOW
local until_next = WINDOW - (now % WINDOW)
local function tokens(base, limit, who)
  if limit <= 0 then return -1, 0 end
  local cur = num(base .. ':' .. minute)
  local prev = num(base .. ':' .. (minute - 1))
  local used = cur + prev * (1 - frac)
  if used < limit then
    local reset = until_next
    if cur > 0 then reset = reset + WINDOW end
    return used, reset
  end
  local wait
  if cur >= limit then
    wait = until_next + WINDOW * (1 - limit / cur)
  else
    wait = WINDOW * math.max(0, (1 - (limit - cur) / prev) - frac)
  end
  return nil, math.max(wait, 1000)
end
local key_used, key_tok_reset = tokens(KEYS[2], tonumber(ARGV[2]))
if not key_used then return {'2', '1', ms(key_tok_reset)} end
local tenant_used, tenant_tok_reset = tokens(KEYS[4], tonumber(ARGV[4]))
if not tenant_used then return {'2', '2', ms(tenant_tok_reset)} end

local want = tonumber(ARGV[7])
local function bucket(k, rpm)
  if rpm <= 0 then return want, 0, 0 end
  local T = WINDOW / rpm
  local tat = num(k)
  if tat < now then tat = now end
  return math.floor((now + WINDOW - tat) / T + 1e-9), tat, T
end
local key_free, key_tat, key_t = bucket(KEYS[1], tonumber(ARGV[1]))
if key_free < 1 then return {'1', '1', ms(key_tat + key_t - now - WINDOW)} end
local tenant_free, tenant_tat, tenant_t = bucket(KEYS[3], tonumber(ARGV[3]))
if tenant_free < 1 then return {'1', '2', ms(tenant_tat + tenant_t - now - WINDOW)} end

local grant = math.min(want, key_free, tenant_free)
local function take(k, rpm, tat, T)
  if rpm <= 0 then return '-1', '-1' end
  local new_tat = tat + grant * T
  redis.call('SET', k, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
  return tostring(math.floor((now + WINDOW - new_tat) / T + 1e-9)), ms(new_tat - now)
end
local key_rem, key_reset = take(KEYS[1], tonumber(ARGV[1]), key_tat, key_t)
local tenant_rem, tenant_reset = take(KEYS[3], tonumber(ARGV[3]), tenant_tat, tenant_t)
local tok_reset = math.max(key_tok_reset, tenant_tok_reset)
return {'0', '0', tostring(grant), key_rem, key_reset, tenant_rem, tenant_reset,
  tostring(math.floor(key_used)), tostring(math.floor(tenant_used)), ms(tok_reset)}
";

/// KEYS: token bases (n of them), then spend keys. ARGV: n, then one amount per key (tokens,
/// then USD). Tokens land in the current minute of Redis's clock and expire after two;
/// spend keys (one per tenant and UTC day or month) expire after their period is long over.
pub const RECORD: &str = r"
local t = redis.call('TIME')
local minute = math.floor(tonumber(t[1]) / 60)
local n = tonumber(ARGV[1])
for i = 1, n do
  local k = KEYS[i] .. ':' .. minute
  redis.call('INCRBY', k, ARGV[i + 1])
  redis.call('EXPIRE', k, 180)
end
for i = n + 1, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[i + 1])
  redis.call('EXPIRE', KEYS[i], 5356800)
end
return #KEYS
";

/// What one admission round trip decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// `granted` slots were taken (the request's own and any leased beyond it).
    Admitted {
        granted: u32,
        headroom: Headroom,
    },
    Denied(Denied),
    OverBudget(OverBudget),
}

/// Reads [`ADMIT`]'s reply for a key with `key` limits, its tenant's `tenant` limits and
/// `budget`.
pub fn verdict(
    reply: &[String],
    key: Limits,
    tenant: Limits,
    budget: &Budget,
) -> Result<Verdict, String> {
    let n = |i: usize| -> Result<f64, String> {
        reply
            .get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("unexpected reply from Redis's admit script: {reply:?}"))
    };
    let count = |v: f64| v.max(0.0) as u64;
    let ms = |v: f64| Duration::from_millis(count(v));
    let level = |who: f64| if who == 2.0 { tenant } else { key };
    match n(0)? as u8 {
        0 => {
            let limit = |rpm: Option<u32>, rem: f64, reset: f64| {
                rpm.filter(|_| rem >= 0.0)
                    .map(|r| (u64::from(r), count(rem), ms(reset)))
            };
            let tokens = |tpm: Option<u64>, used: f64, reset: f64| {
                tpm.filter(|_| used >= 0.0)
                    .map(|l| (l, l.saturating_sub(count(used)), ms(reset)))
            };
            let tok_reset = n(9)?;
            let of_key = Headroom {
                requests: limit(key.rpm, n(3)?, n(4)?),
                tokens: tokens(key.tpm, n(7)?, tok_reset),
            };
            let of_tenant = Headroom {
                requests: limit(tenant.rpm, n(5)?, n(6)?),
                tokens: tokens(tenant.tpm, n(8)?, tok_reset),
            };
            Ok(Verdict::Admitted {
                granted: u32::try_from(count(n(2)?)).unwrap_or(u32::MAX),
                headroom: crate::ratelimit::tighter(of_key, of_tenant),
            })
        }
        1 => Ok(Verdict::Denied(Denied {
            kind: LimitKind::Requests,
            limit: u64::from(level(n(1)?).rpm.unwrap_or(0)),
            retry_after: ms(n(2)?).max(Duration::from_millis(1)),
        })),
        2 => Ok(Verdict::Denied(Denied {
            kind: LimitKind::Tokens,
            limit: level(n(1)?).tpm.unwrap_or(0),
            retry_after: ms(n(2)?),
        })),
        3 => {
            let (period, limit) = if n(1)? == 2.0 {
                (Period::Month, budget.usd_per_month)
            } else {
                (Period::Day, budget.usd_per_day)
            };
            Ok(Verdict::OverBudget(OverBudget {
                period,
                limit_usd: limit.unwrap_or(0.0),
                spent_usd: n(2)?,
            }))
        }
        _ => Err(format!(
            "unexpected reply from Redis's admit script: {reply:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(s: &[&str]) -> Vec<String> {
        s.iter().map(|v| (*v).to_owned()).collect()
    }

    const KEY: Limits = Limits {
        rpm: Some(60),
        tpm: Some(1000),
    };
    const TENANT: Limits = Limits {
        rpm: Some(100),
        tpm: None,
    };
    const BUDGET: Budget = Budget {
        usd_per_day: Some(1.0),
        usd_per_month: Some(10.0),
    };

    #[test]
    fn replies_read_as_verdicts() {
        let cases: Vec<(Vec<String>, Verdict)> = vec![
            (
                reply(&[
                    "0", "0", "3", "57", "3000", "80", "20000", "400", "-1", "61000",
                ]),
                Verdict::Admitted {
                    granted: 3,
                    headroom: Headroom {
                        requests: Some((60, 57, Duration::from_secs(3))),
                        tokens: Some((1000, 600, Duration::from_secs(61))),
                    },
                },
            ),
            (
                // The tenant has less left than the key: the tighter one is reported.
                reply(&["0", "0", "1", "50", "1000", "2", "59000", "0", "-1", "0"]),
                Verdict::Admitted {
                    granted: 1,
                    headroom: Headroom {
                        requests: Some((100, 2, Duration::from_secs(59))),
                        tokens: Some((1000, 1000, Duration::ZERO)),
                    },
                },
            ),
            (
                reply(&["1", "2", "600"]),
                Verdict::Denied(Denied {
                    kind: LimitKind::Requests,
                    limit: 100,
                    retry_after: Duration::from_millis(600),
                }),
            ),
            (
                reply(&["2", "1", "1500"]),
                Verdict::Denied(Denied {
                    kind: LimitKind::Tokens,
                    limit: 1000,
                    retry_after: Duration::from_millis(1500),
                }),
            ),
            (
                reply(&["3", "2", "10.25"]),
                Verdict::OverBudget(OverBudget {
                    period: Period::Month,
                    limit_usd: 10.0,
                    spent_usd: 10.25,
                }),
            ),
        ];
        for (r, want) in cases {
            assert_eq!(verdict(&r, KEY, TENANT, &BUDGET), Ok(want), "{r:?}");
        }
    }

    #[test]
    fn a_malformed_reply_is_an_error_not_a_verdict() {
        for r in [
            reply(&[]),
            reply(&["0", "0"]),
            reply(&["9", "0", "0"]),
            reply(&["1", "1", "soon"]),
        ] {
            assert!(verdict(&r, KEY, TENANT, &BUDGET).is_err(), "{r:?}");
        }
    }
}
