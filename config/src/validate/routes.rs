//! The `routes` section: matching, targets and fallbacks, retries, timeouts, the cache.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::{Ctx, ONE_HOUR, ONE_WEEK, known, line, slo};
use crate::duration::{self, Zero};
use crate::raw::{RawHeaderMatch, RawHealth, RawRetry, RawRoute, RawTimeouts, line_of};
use crate::types::{
    Balance, CacheConfig, HeaderMatch, HealthConfig, ModelKind, RetryBudget, RetryConfig, RetryOn,
    RouteConfig, TargetConfig, Timeouts,
};

pub(super) fn route(
    ctx: &mut Ctx<'_>,
    i: usize,
    r: &Spanned<RawRoute>,
    model_kinds: &BTreeMap<&String, Option<ModelKind>>,
    matched: &mut HashMap<String, (usize, String)>,
    route_names: &mut HashMap<String, usize>,
    remediation_names: &mut HashMap<String, String>,
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
    let mut header = None;
    let match_hint = "e.g. `match: { model: gpt-4o }` or `match: { header: { name: x-sluice-route, value: fast } }`";
    if let Some(m) = ctx.required(&path, line(r), &raw.match_, "match", match_hint) {
        let mpath = format!("{path}.match");
        if let Some(h) = &m.value.header {
            header = header_match(ctx, &format!("{mpath}.header"), h);
        }
        if m.value.model.is_none() && m.value.header.is_none() {
            ctx.error(
                &mpath,
                line(m),
                format!("expected `model`, `header` or both ({match_hint})"),
            );
        }
        // A route that also needs a header shares its model names with the plain route for
        // them: the header picks between the two.
        let exclusive = m.value.header.is_none();
        if let Some(names) = m.value.model.as_ref() {
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
                if !exclusive {
                    if models.contains(&model.value) {
                        ctx.error(&mp, ml, format!("model `{}` is listed twice", model.value));
                    } else {
                        models.push(model.value.clone());
                    }
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
        let max_stale = ctx.duration(
            &format!("{cpath}.max_stale"),
            c.value.max_stale.as_ref(),
            Duration::ZERO,
            Zero::Allowed,
            Some(ONE_WEEK * 5),
        );
        CacheConfig {
            ttl,
            only_deterministic: c.value.only_deterministic.as_ref().is_none_or(|v| v.value),
            max_stale,
        }
    });

    let balance = match &raw.balance {
        None => Balance::default(),
        Some(v) => match v.value.trim() {
            "weighted" => Balance::Weighted,
            "least_latency" => Balance::LeastLatency,
            "p2c" => Balance::P2c,
            other => {
                ctx.error(
                    &format!("{path}.balance"),
                    line(v),
                    format!("unknown balance `{other}` (expected weighted, least_latency or p2c)"),
                );
                Balance::default()
            }
        },
    };
    let health = raw
        .health
        .as_ref()
        .map(|h| health(ctx, &format!("{path}.health"), &h.value))
        .unwrap_or_default();

    let judge = raw
        .judge
        .as_ref()
        .and_then(|j| slo::judge(ctx, &format!("{path}.judge"), j, model_kinds));
    let slos = raw
        .slos
        .as_deref()
        .map(|s| slo::slos(ctx, &format!("{path}.slos"), s))
        .unwrap_or_default();
    let remediation = raw
        .remediation
        .as_deref()
        .map(|rules| {
            let facts = slo::RouteFacts {
                route: &name,
                slos: &slos,
                has_cache: cache.is_some(),
                kind: route_kind.as_ref().map(|k| k.0),
                model_kinds,
            };
            slo::remediation(
                ctx,
                &format!("{path}.remediation"),
                rules,
                &facts,
                remediation_names,
            )
        })
        .unwrap_or_default();

    (ctx.errors.len() == before).then_some(RouteConfig {
        name,
        models,
        targets,
        fallbacks,
        retry,
        timeouts,
        slow,
        cache,
        header,
        balance,
        health,
        judge,
        slos,
        remediation,
    })
}

fn header_match(ctx: &mut Ctx<'_>, path: &str, h: &Spanned<RawHeaderMatch>) -> Option<HeaderMatch> {
    let hint = "e.g. `header: { name: x-sluice-route, value: fast }`";
    let name = ctx.required(path, line(h), &h.value.name, "name", hint)?;
    let value = ctx.required(path, line(h), &h.value.value, "value", hint)?;
    let lower = name.value.trim().to_ascii_lowercase();
    let token = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        ctx.error(
            &format!("{path}.name"),
            line(name),
            format!("expected an HTTP header name, found `{}`", name.value),
        );
        return None;
    }
    if matches!(lower.as_str(), "authorization" | "x-api-key" | "cookie") {
        // A route chosen by a credential would put the credential in the policy file.
        ctx.error(
            &format!("{path}.name"),
            line(name),
            format!("`{lower}` carries credentials and cannot select a route"),
        );
        return None;
    }
    if value.value.is_empty()
        || !value
            .value
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        ctx.error(
            &format!("{path}.value"),
            line(value),
            "expected a non-empty header value of visible ASCII",
        );
        return None;
    }
    Some(HeaderMatch {
        name: lower,
        value: value.value.clone(),
    })
}

fn health(ctx: &mut Ctx<'_>, path: &str, raw: &RawHealth) -> HealthConfig {
    let d = HealthConfig::default();
    let consecutive_failures = ctx.int(
        &format!("{path}.consecutive_failures"),
        raw.consecutive_failures.as_ref(),
        i64::from(d.consecutive_failures),
        1,
        1000,
    );
    let min_requests = ctx.int(
        &format!("{path}.min_requests"),
        raw.min_requests.as_ref(),
        i64::from(d.min_requests),
        1,
        1_000_000,
    );
    let failure_ratio = ctx.number(
        &format!("{path}.failure_ratio"),
        raw.failure_ratio.as_ref(),
        d.failure_ratio,
        0.01,
        1.0,
    );
    let max_ejected_share = ctx.number(
        &format!("{path}.max_ejected_share"),
        raw.max_ejected_share.as_ref(),
        d.max_ejected_share,
        0.0,
        1.0,
    );
    let window = ctx.duration(
        &format!("{path}.window"),
        raw.window.as_ref(),
        d.window,
        Zero::Rejected,
        Some(ONE_HOUR),
    );
    let base_ejection = ctx.duration(
        &format!("{path}.base_ejection"),
        raw.base_ejection.as_ref(),
        d.base_ejection,
        Zero::Rejected,
        Some(ONE_HOUR),
    );
    let max_ejection = ctx.duration(
        &format!("{path}.max_ejection"),
        raw.max_ejection.as_ref(),
        d.max_ejection.max(base_ejection),
        Zero::Rejected,
        Some(ONE_HOUR * 24),
    );
    if max_ejection < base_ejection {
        ctx.error(
            &format!("{path}.max_ejection"),
            raw.max_ejection.as_ref().and_then(line),
            format!(
                "must be at least base_ejection ({})",
                humantime::format_duration(base_ejection)
            ),
        );
    }
    HealthConfig {
        consecutive_failures: u32::try_from(consecutive_failures).unwrap_or(d.consecutive_failures),
        failure_ratio,
        window,
        min_requests: u32::try_from(min_requests).unwrap_or(d.min_requests),
        base_ejection,
        max_ejection,
        max_ejected_share,
    }
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
    let budget = raw.budget.as_ref().map_or(d.budget, |b| RetryBudget {
        ratio: ctx.number(
            &format!("{path}.budget.ratio"),
            b.value.ratio.as_ref(),
            d.budget.ratio,
            0.0,
            10.0,
        ),
        min_per_s: ctx.number(
            &format!("{path}.budget.min_per_s"),
            b.value.min_per_s.as_ref(),
            d.budget.min_per_s,
            0.0,
            100_000.0,
        ),
    });
    RetryConfig {
        max_attempts: u32::try_from(max_attempts).unwrap_or(d.max_attempts),
        on,
        max_retry_after,
        budget,
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
