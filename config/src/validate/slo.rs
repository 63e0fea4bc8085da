//! SLOs, remediation and the judge: a route's `slos`, `remediation` and `judge`, and the
//! top-level `slo` and `incidents` sections.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::providers::is_env_var_name;
use super::{Ctx, ONE_HOUR, known, line};
use crate::Secret;
use crate::duration::{self, Zero};
use crate::raw::{
    RawAction, RawAiops, RawBurn, RawIncidents, RawJudge, RawPush, RawRemediation, RawRubric,
    RawScalar, RawSli, RawSlo, RawSloSettings, RawWhen,
};
use crate::types::{
    ActionConfig, AiopsSettings, AnomalySignalConfig, BaseUrl, BurnConfig, BurnWindow,
    IncidentsConfig, JudgeConfig, ModelKind, PushConfig, RemediationConfig, RubricConfig,
    SliConfig, SloConfig, SloSettings,
};

pub(crate) const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3600);
const NINETY_DAYS: Duration = Duration::from_secs(90 * 24 * 3600);
pub(crate) const DEFAULT_MIN_EVENTS: i64 = 10;
pub(crate) const DEFAULT_HOLD: Duration = Duration::from_secs(120);
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_PROBE_SHARE: f64 = 0.05;
const SLI_HINT: &str = "expected `errors`, `{ ttft_below: 2s }`, `{ duration_below: 30s }` or `{ judge_score_at_least: 0.7 }`";
const ACTION_HINT: &str = "expected `failover`, `cache_fallback`, `{ downgrade_to: [model, …] }` or `{ shed: { max_priority: 3 } }`";
const ANOMALY_HINT: &str = "expected `ttft`, `time_per_output_token`, `duration`, `error_ratio`, `tokens_per_request` or `cost_per_minute`";
const BURN_HINT: &str = "expected `page`, `ticket` or `{ window: 5m, above: 10 }` (windows: 5m, 30m, 1h, 6h, 1d, 3d, slo)";

/// The `slo` section.
pub(super) fn settings(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawSloSettings>>) -> SloSettings {
    let d = SloSettings::default();
    let Some(raw) = raw else { return d };
    let raw = &raw.value;
    SloSettings {
        window_scale: ctx.number(
            "slo.window_scale",
            raw.window_scale.as_ref(),
            d.window_scale,
            1e-6,
            1.0,
        ),
        evaluate_every: ctx.duration(
            "slo.evaluate_every",
            raw.evaluate_every.as_ref(),
            d.evaluate_every,
            Zero::Rejected,
            Some(Duration::from_secs(60)),
        ),
        snapshot_every: ctx.duration(
            "slo.snapshot_every",
            raw.snapshot_every.as_ref(),
            d.snapshot_every,
            Zero::Rejected,
            Some(ONE_HOUR),
        ),
    }
}

/// The `aiops` section; also refuses anomaly conditions in rules while it is off.
pub(super) fn aiops(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawAiops>>) -> AiopsSettings {
    let d = AiopsSettings::default();
    let s = match raw {
        None => d,
        Some(raw) => {
            let r = &raw.value;
            let dur = |ctx: &mut Ctx<'_>, name: &str, v: &Option<Spanned<String>>, def, max| {
                ctx.duration(
                    &format!("aiops.{name}"),
                    v.as_ref(),
                    def,
                    Zero::Rejected,
                    Some(max),
                )
            };
            let whole =
                |ctx: &mut Ctx<'_>, name: &str, v: &Option<Spanned<i64>>, def: u32, min, max| {
                    let n = ctx.int(
                        &format!("aiops.{name}"),
                        v.as_ref(),
                        i64::from(def),
                        min,
                        max,
                    );
                    u32::try_from(n).unwrap_or(def)
                };
            AiopsSettings {
                enabled: r.enabled.as_ref().is_none_or(|v| v.value),
                interval: dur(ctx, "interval", &r.interval, d.interval, ONE_HOUR),
                window: whole(ctx, "window", &r.window, d.window, 1, 60),
                k: ctx.number("aiops.k", r.k.as_ref(), d.k, 1.0, 20.0),
                hold: dur(ctx, "hold", &r.hold, d.hold, ONE_HOUR * 24),
                clear: dur(ctx, "clear", &r.clear, d.clear, ONE_HOUR * 24),
                min_events: whole(ctx, "min_events", &r.min_events, d.min_events, 1, 1_000_000),
                warmup: whole(ctx, "warmup", &r.warmup, d.warmup, 1, 100_000),
                relearn_after: dur(
                    ctx,
                    "relearn_after",
                    &r.relearn_after,
                    d.relearn_after,
                    ONE_HOUR * 24 * 30,
                ),
                max_tenants: whole(
                    ctx,
                    "max_tenants",
                    &r.max_tenants,
                    d.max_tenants,
                    0,
                    100_000,
                ),
                group_window: dur(
                    ctx,
                    "group_window",
                    &r.group_window,
                    d.group_window,
                    ONE_HOUR * 24,
                ),
            }
        }
    };
    if !s.enabled {
        for (path, line) in std::mem::take(&mut ctx.anomaly_conditions) {
            ctx.error(
                &path,
                line,
                "watches an anomaly, but `aiops.enabled` is false: nothing would ever flag it",
            );
        }
    }
    s
}

/// The `incidents` section.
pub(super) fn incidents(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawIncidents>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> IncidentsConfig {
    let Some(raw) = raw else {
        return IncidentsConfig::default();
    };
    IncidentsConfig {
        alertmanager: raw
            .value
            .alertmanager
            .as_ref()
            .and_then(|p| push(ctx, "incidents.alertmanager", p, env)),
        webhook: raw
            .value
            .webhook
            .as_ref()
            .and_then(|p| push(ctx, "incidents.webhook", p, env)),
    }
}

fn push(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &Spanned<RawPush>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PushConfig> {
    let url = ctx.required(
        path,
        line(raw),
        &raw.value.url,
        "url",
        "e.g. `url: http://alertmanager:9093`",
    )?;
    let url = match BaseUrl::parse(&url.value) {
        Ok(u) => u,
        Err(msg) => {
            ctx.error(&format!("{path}.url"), line(url), msg);
            return None;
        }
    };
    let mut bearer = None;
    let bearer_env = raw.value.bearer_env.as_ref().map(|v| {
        let bpath = format!("{path}.bearer_env");
        if !is_env_var_name(&v.value) {
            ctx.error(
                &bpath,
                line(v),
                "expected the name of an environment variable that holds the token, not the token itself",
            );
        } else {
            match env(&v.value) {
                Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => {
                    bearer = Some(Secret::new(t));
                }
                Some(t) if !t.is_empty() => ctx.error(
                    &bpath,
                    line(v),
                    format!(
                        "environment variable {} holds characters an HTTP header cannot carry; it must hold the token alone",
                        v.value
                    ),
                ),
                _ => ctx.warn(
                    &bpath,
                    line(v),
                    format!(
                        "environment variable {} is not set; incidents are pushed without a token",
                        v.value
                    ),
                ),
            }
        }
        v.value.clone()
    });
    Some(PushConfig {
        url,
        bearer_env,
        bearer,
    })
}

/// A route's `slos`.
pub(super) fn slos(ctx: &mut Ctx<'_>, path: &str, raw: &[Spanned<RawSlo>]) -> Vec<SloConfig> {
    let mut out: Vec<SloConfig> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let before = ctx.errors.len();
        let name = ctx
            .required(
                &p,
                line(s),
                &s.value.name,
                "name",
                "e.g. `name: availability`",
            )
            .and_then(|n| {
                let name = ctx.name(&format!("{p}.name"), n)?.to_owned();
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    ctx.error(
                        &format!("{p}.name"),
                        line(n),
                        "expected letters, digits, `_` and `-` only (it is a metric label)",
                    );
                    return None;
                }
                if out.iter().any(|o| o.name == name) {
                    ctx.error(
                        &format!("{p}.name"),
                        line(n),
                        format!("duplicate SLO name `{name}` in this route"),
                    );
                    return None;
                }
                Some(name)
            });
        let objective = ctx
            .required(&p, line(s), &s.value.objective, "objective", "a percentage, e.g. `objective: 99.5`")
            .and_then(|o| {
                if o.value.is_finite() && o.value > 0.0 && o.value < 100.0 {
                    Some(o.value / 100.0)
                } else {
                    ctx.error(
                        &format!("{p}.objective"),
                        line(o),
                        format!(
                            "expected a percentage strictly between 0 and 100 (e.g. 99.5), found {}",
                            o.value
                        ),
                    );
                    None
                }
            });
        let sli = ctx
            .required(&p, line(s), &s.value.sli, "sli", SLI_HINT)
            .and_then(|v| sli(ctx, &format!("{p}.sli"), v));
        let window = ctx.duration(
            &format!("{p}.window"),
            s.value.window.as_ref(),
            THIRTY_DAYS,
            Zero::Rejected,
            Some(NINETY_DAYS),
        );
        let min_events = ctx.int(
            &format!("{p}.min_events"),
            s.value.min_events.as_ref(),
            DEFAULT_MIN_EVENTS,
            1,
            1_000_000,
        );
        let runbook_url = runbook(
            ctx,
            &format!("{p}.runbook_url"),
            s.value.runbook_url.as_ref(),
        );
        if let (Some(name), Some(objective), Some(sli), true) =
            (name, objective, sli, ctx.errors.len() == before)
        {
            out.push(SloConfig {
                name,
                sli,
                objective,
                window,
                min_events: u64::try_from(min_events).unwrap_or(10),
                runbook_url,
            });
        }
    }
    out
}

fn sli(ctx: &mut Ctx<'_>, path: &str, v: &Spanned<RawSli>) -> Option<SliConfig> {
    match &v.value {
        RawSli::Name(n) if n.trim() == "errors" => Some(SliConfig::Errors),
        RawSli::Name(n) => {
            ctx.error(path, line(v), format!("unknown SLI `{n}` ({SLI_HINT})"));
            None
        }
        RawSli::Map(m) if m.len() == 1 => {
            let (kind, value) = m.iter().next()?;
            let bound = |ctx: &mut Ctx<'_>| match value {
                RawScalar::Str(s) => match duration::parse(s, Zero::Rejected, Some(ONE_HOUR)) {
                    Ok(d) => Some(d),
                    Err(msg) => {
                        ctx.error(&format!("{path}.{kind}"), line(v), msg);
                        None
                    }
                },
                RawScalar::Num(n) => {
                    ctx.error(
                        &format!("{path}.{kind}"),
                        line(v),
                        format!("expected a duration with a unit (e.g. `2s`), found {n}"),
                    );
                    None
                }
            };
            match kind.as_str() {
                "ttft_below" => bound(ctx).map(SliConfig::TtftBelow),
                "duration_below" => bound(ctx).map(SliConfig::DurationBelow),
                "judge_score_at_least" => match value {
                    RawScalar::Num(n) if n.is_finite() && (0.0..=1.0).contains(n) => {
                        Some(SliConfig::JudgeScoreAtLeast(*n))
                    }
                    _ => {
                        ctx.error(
                            &format!("{path}.{kind}"),
                            line(v),
                            "expected a score between 0 and 1 (e.g. 0.7)",
                        );
                        None
                    }
                },
                other => {
                    ctx.error(path, line(v), format!("unknown SLI `{other}` ({SLI_HINT})"));
                    None
                }
            }
        }
        RawSli::Map(_) => {
            ctx.error(
                path,
                line(v),
                format!("expected exactly one SLI ({SLI_HINT})"),
            );
            None
        }
    }
}

fn runbook(ctx: &mut Ctx<'_>, path: &str, v: Option<&Spanned<String>>) -> Option<String> {
    let v = v?;
    let url = v.value.trim();
    if url.starts_with("https://") || url.starts_with("http://") {
        Some(url.to_owned())
    } else {
        ctx.error(path, line(v), "expected an http:// or https:// URL");
        None
    }
}

/// What a route's `remediation` rules may refer to.
pub(super) struct RouteFacts<'a> {
    pub route: &'a str,
    pub slos: &'a [SloConfig],
    pub has_cache: bool,
    pub kind: Option<ModelKind>,
    pub model_kinds: &'a BTreeMap<&'a String, Option<ModelKind>>,
}

/// A route's `remediation`. `names` holds every rule name taken so far (they are unique across
/// routes: incidents and metrics name them).
pub(super) fn remediation(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &[Spanned<RawRemediation>],
    facts: &RouteFacts<'_>,
    names: &mut HashMap<String, String>,
) -> Vec<RemediationConfig> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let before = ctx.errors.len();
        let raw = &r.value;
        let name = match &raw.name {
            Some(n) => ctx.name(&format!("{p}.name"), n).map(str::to_owned),
            None => Some(format!("{}#{i}", facts.route)),
        };
        if let Some(n) = &name {
            if let Some(first) = names.get(n) {
                ctx.error(
                    &format!("{p}.name"),
                    raw.name.as_ref().and_then(line),
                    format!("duplicate remediation name `{n}` (first used at {first})"),
                );
            } else {
                names.insert(n.clone(), p.clone());
            }
        }
        let when = ctx.required(
            &p,
            line(r),
            &raw.when,
            "when",
            "e.g. `when: { slo: availability, burn: page }`",
        );
        let trigger = when.and_then(|w| condition(ctx, &format!("{p}.when"), w, facts, true));
        let action = ctx
            .required(&p, line(r), &raw.action, "do", ACTION_HINT)
            .and_then(|a| action(ctx, &format!("{p}.do"), a, facts));
        let guard = raw.guard.as_ref().and_then(|g| {
            let gpath = format!("{p}.guard");
            if !matches!(action, Some(ActionConfig::DowngradeTo(_))) {
                ctx.error(&gpath, line(g), "a guard applies to `downgrade_to` only");
                return None;
            }
            let (slo, burn, _) = condition(ctx, &gpath, g, facts, false)?;
            Some((slo, burn))
        });
        let hold = ctx.duration(
            &format!("{p}.hold"),
            raw.hold.as_ref(),
            DEFAULT_HOLD,
            Zero::Allowed,
            Some(ONE_HOUR * 24),
        );
        let cooldown = ctx.duration(
            &format!("{p}.cooldown"),
            raw.cooldown.as_ref(),
            DEFAULT_COOLDOWN,
            Zero::Allowed,
            Some(ONE_HOUR * 24),
        );
        let probe_share = ctx.number(
            &format!("{p}.probe_share"),
            raw.probe_share.as_ref(),
            DEFAULT_PROBE_SHARE,
            0.0,
            0.5,
        );
        let max_share = ctx.number(
            &format!("{p}.max_share"),
            raw.max_share.as_ref(),
            1.0,
            0.0,
            1.0,
        );
        let runbook_url = runbook(ctx, &format!("{p}.runbook_url"), raw.runbook_url.as_ref());
        if let (Some(name), Some((slo, burn, no_healthy_target)), Some(action), true) =
            (name, trigger, action, ctx.errors.len() == before)
        {
            out.push(RemediationConfig {
                name,
                slo,
                burn,
                no_healthy_target,
                action,
                hold,
                cooldown,
                probe_share,
                max_share,
                dry_run: raw.dry_run.as_ref().is_some_and(|v| v.value),
                guard,
                runbook_url,
            });
        }
    }
    out
}

/// `when` or `guard`: an SLO of the route and a burn condition (default `page`).
fn condition(
    ctx: &mut Ctx<'_>,
    path: &str,
    w: &Spanned<RawWhen>,
    facts: &RouteFacts<'_>,
    is_trigger: bool,
) -> Option<(String, BurnConfig, bool)> {
    if let Some(a) = &w.value.anomaly {
        return anomaly_condition(ctx, path, w, a, is_trigger);
    }
    if let Some(m) = &w.value.min_score {
        ctx.error(
            &format!("{path}.min_score"),
            line(m),
            "applies to an anomaly condition (`anomaly: ttft`) only",
        );
        return None;
    }
    let slo = ctx.required(
        path,
        line(w),
        &w.value.slo,
        "slo",
        "the name of one of this route's SLOs, or `anomaly: <signal>`",
    )?;
    let Some(spec) = facts.slos.iter().find(|s| s.name == slo.value) else {
        let names: Vec<String> = facts.slos.iter().map(|s| s.name.clone()).collect();
        ctx.error(
            &format!("{path}.slo"),
            line(slo),
            format!("unknown SLO `{}` {}", slo.value, known(&names)),
        );
        return None;
    };
    if !is_trigger && !matches!(spec.sli, SliConfig::JudgeScoreAtLeast(_)) {
        ctx.error(
            &format!("{path}.slo"),
            line(slo),
            format!(
                "a guard watches answer quality: `{}` must be a `judge_score_at_least` SLO",
                slo.value
            ),
        );
        return None;
    }
    let burn = match &w.value.burn {
        None => BurnConfig::Page,
        Some(b) => burn(ctx, &format!("{path}.burn"), b)?,
    };
    let no_healthy = w.value.no_healthy_target.as_ref();
    if !is_trigger && let Some(v) = no_healthy {
        ctx.error(
            &format!("{path}.no_healthy_target"),
            line(v),
            "applies to `when` only",
        );
        return None;
    }
    Some((slo.value.clone(), burn, no_healthy.is_some_and(|v| v.value)))
}

/// `{ anomaly: ttft, min_score: 6 }`: the detector flags the signal (at least `min_score`
/// spreads out, default 0: being flagged is enough). The rule's `slo` is the signal's name.
fn anomaly_condition(
    ctx: &mut Ctx<'_>,
    path: &str,
    w: &Spanned<RawWhen>,
    a: &Spanned<String>,
    is_trigger: bool,
) -> Option<(String, BurnConfig, bool)> {
    let before = ctx.errors.len();
    let signal = AnomalySignalConfig::ALL
        .iter()
        .find(|(n, _)| *n == a.value.trim())
        .map(|(_, s)| *s);
    if signal.is_none() {
        ctx.error(
            &format!("{path}.anomaly"),
            line(a),
            format!("unknown signal `{}` ({ANOMALY_HINT})", a.value),
        );
    }
    if let Some(s) = &w.value.slo {
        ctx.error(
            &format!("{path}.slo"),
            line(s),
            "a condition watches either an SLO (`slo`) or an anomaly (`anomaly`), not both",
        );
    }
    if let Some(b) = &w.value.burn {
        ctx.error(
            &format!("{path}.burn"),
            line(b),
            "`burn` applies to an SLO; an anomaly condition holds while the detector flags the signal (`min_score` asks for a larger one)",
        );
    }
    let min_score = ctx.number(
        &format!("{path}.min_score"),
        w.value.min_score.as_ref(),
        0.0,
        0.0,
        100.0,
    );
    let no_healthy = w.value.no_healthy_target.as_ref();
    if !is_trigger && let Some(v) = no_healthy {
        ctx.error(
            &format!("{path}.no_healthy_target"),
            line(v),
            "applies to `when` only",
        );
    }
    ctx.anomaly_conditions
        .push((format!("{path}.anomaly"), line(a)));
    let signal = signal?;
    (ctx.errors.len() == before).then(|| {
        (
            signal.as_str().to_owned(),
            BurnConfig::Anomaly { signal, min_score },
            no_healthy.is_some_and(|v| v.value),
        )
    })
}

fn burn(ctx: &mut Ctx<'_>, path: &str, b: &Spanned<RawBurn>) -> Option<BurnConfig> {
    match &b.value {
        RawBurn::Level(l) => match l.trim() {
            "page" => Some(BurnConfig::Page),
            "ticket" => Some(BurnConfig::Ticket),
            other => {
                ctx.error(
                    path,
                    line(b),
                    format!("unknown burn `{other}` ({BURN_HINT})"),
                );
                None
            }
        },
        RawBurn::Above(a) => {
            let window = match a.window.trim() {
                "5m" => BurnWindow::M5,
                "30m" => BurnWindow::M30,
                "1h" => BurnWindow::H1,
                "6h" => BurnWindow::H6,
                "1d" => BurnWindow::D1,
                "3d" => BurnWindow::D3,
                "slo" => BurnWindow::Slo,
                other => {
                    ctx.error(
                        &format!("{path}.window"),
                        line(b),
                        format!("unknown burn window `{other}` ({BURN_HINT})"),
                    );
                    return None;
                }
            };
            if !(a.above.is_finite() && a.above > 0.0) {
                ctx.error(
                    &format!("{path}.above"),
                    line(b),
                    format!("expected a burn rate above 0, found {}", a.above),
                );
                return None;
            }
            Some(BurnConfig::Above {
                window,
                burn: a.above,
            })
        }
    }
}

fn action(
    ctx: &mut Ctx<'_>,
    path: &str,
    a: &Spanned<RawAction>,
    facts: &RouteFacts<'_>,
) -> Option<ActionConfig> {
    match &a.value {
        RawAction::Name(n) => match n.trim() {
            "failover" => Some(ActionConfig::Failover),
            "cache_fallback" if facts.has_cache => Some(ActionConfig::CacheFallback),
            "cache_fallback" => {
                ctx.error(
                    path,
                    line(a),
                    "`cache_fallback` serves stale cache entries, but this route has no `cache` (add `cache: { ttl: …, max_stale: … }`)",
                );
                None
            }
            other => {
                ctx.error(
                    path,
                    line(a),
                    format!("unknown action `{other}` ({ACTION_HINT})"),
                );
                None
            }
        },
        RawAction::Map(m) => match (&m.downgrade_to, &m.shed) {
            (Some(models), None) => {
                let mut out = Vec::new();
                for (j, model) in models.0.iter().enumerate() {
                    let mp = format!("{path}.downgrade_to[{j}]");
                    let ml = line(model).or(line(a));
                    match facts.model_kinds.get(&model.value) {
                        None => ctx.error(
                            &mp,
                            ml,
                            format!(
                                "unknown model `{}` {}",
                                model.value,
                                known(facts.model_kinds.keys().copied())
                            ),
                        ),
                        Some(Some(kind)) if facts.kind.is_some_and(|k| k != *kind) => ctx.error(
                            &mp,
                            ml,
                            format!(
                                "`{}` is {} {kind} model, but the route serves {} models",
                                model.value,
                                if *kind == ModelKind::Embedding {
                                    "an"
                                } else {
                                    "a"
                                },
                                facts.kind.map_or(String::new(), |k| k.to_string())
                            ),
                        ),
                        Some(_) => out.push(model.value.clone()),
                    }
                }
                if models.0.is_empty() {
                    ctx.error(
                        &format!("{path}.downgrade_to"),
                        line(a),
                        "expected at least one model",
                    );
                }
                (!out.is_empty() && out.len() == models.0.len())
                    .then_some(ActionConfig::DowngradeTo(out))
            }
            (None, Some(shed)) => match shed.max_priority {
                Some(p) if (0..=9).contains(&p) => Some(ActionConfig::Shed {
                    max_priority: u8::try_from(p).unwrap_or(0),
                }),
                Some(p) => {
                    ctx.error(
                        &format!("{path}.shed.max_priority"),
                        line(a),
                        format!("must be between 0 and 9 (key priorities), found {p}"),
                    );
                    None
                }
                None => {
                    ctx.error(
                        &format!("{path}.shed"),
                        line(a),
                        "missing field `max_priority` (keys with this priority or lower are refused, e.g. `shed: { max_priority: 3 }`)",
                    );
                    None
                }
            },
            _ => {
                ctx.error(
                    path,
                    line(a),
                    format!("expected exactly one action ({ACTION_HINT})"),
                );
                None
            }
        },
    }
}

/// Smallest and largest judge capture, in bytes of text per side (as the judge enforces).
pub(crate) const MIN_CAPTURE: i64 = 256;
pub(crate) const MAX_CAPTURE: i64 = 1 << 20;
pub(crate) const MAX_RUBRIC_NAME: usize = 64;
pub(crate) const MAX_RUBRIC_TEXT: usize = 16 * 1024;
pub(crate) const BUILTIN_RUBRICS: [&str; 4] =
    ["helpfulness", "relevance", "faithfulness", "safety"];

/// A route's `judge:` section. `chat_models` are the catalog's chat models (a judge answers
/// in chat).
pub(super) fn judge(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &Spanned<RawJudge>,
    model_kinds: &BTreeMap<&String, Option<ModelKind>>,
) -> Option<JudgeConfig> {
    let before = ctx.errors.len();
    let j = &raw.value;
    let model = ctx
        .required(
            path,
            line(raw),
            &j.model,
            "model",
            "the catalog model that judges, e.g. `model: gpt-4o-mini`",
        )
        .and_then(|m| match model_kinds.get(&m.value) {
            None => {
                ctx.error(
                    &format!("{path}.model"),
                    line(m),
                    format!(
                        "unknown model `{}` {}",
                        m.value,
                        known(model_kinds.keys().copied())
                    ),
                );
                None
            }
            Some(Some(ModelKind::Embedding)) => {
                ctx.error(
                    &format!("{path}.model"),
                    line(m),
                    format!(
                        "`{}` is an embedding model; a judge must be a chat model",
                        m.value
                    ),
                );
                None
            }
            Some(_) => Some(m.value.clone()),
        });
    let sample = ctx.number(&format!("{path}.sample"), j.sample.as_ref(), 0.0, 0.0, 1.0);
    let (always_remediated, always_downgraded, always_per_minute) = match &j.always {
        None => (true, true, 30),
        Some(a) => (
            a.value.remediated.as_ref().is_none_or(|v| v.value),
            a.value.downgraded.as_ref().is_none_or(|v| v.value),
            ctx.int(
                &format!("{path}.always.per_minute"),
                a.value.per_minute.as_ref(),
                30,
                0,
                100_000,
            ),
        ),
    };
    let rubric = match &j.rubric {
        None => RubricConfig::Builtin("helpfulness".to_owned()),
        Some(r) => match &r.value {
            RawRubric::Builtin(name) if BUILTIN_RUBRICS.contains(&name.trim()) => {
                RubricConfig::Builtin(name.trim().to_owned())
            }
            RawRubric::Builtin(name) => {
                ctx.error(
                    &format!("{path}.rubric"),
                    line(r),
                    format!(
                        "unknown rubric `{name}` (expected {} or `{{ name: tone, text: \"…\" }}` for your own)",
                        BUILTIN_RUBRICS.join(", ")
                    ),
                );
                RubricConfig::Builtin(String::new())
            }
            RawRubric::Custom(c) => {
                let snake = c.name.starts_with(|ch: char| ch.is_ascii_lowercase())
                    && c.name.len() <= MAX_RUBRIC_NAME
                    && c.name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !snake {
                    ctx.error(
                        &format!("{path}.rubric.name"),
                        line(r),
                        format!(
                            "`{}` must be snake_case, 1 to {MAX_RUBRIC_NAME} characters (it is a metric label)",
                            c.name
                        ),
                    );
                } else if BUILTIN_RUBRICS.contains(&c.name.as_str()) {
                    ctx.error(
                        &format!("{path}.rubric.name"),
                        line(r),
                        format!("`{}` is a built-in rubric; give yours another name", c.name),
                    );
                }
                if c.text.trim().is_empty() || c.text.len() > MAX_RUBRIC_TEXT {
                    ctx.error(
                        &format!("{path}.rubric.text"),
                        line(r),
                        format!("expected 1 to {MAX_RUBRIC_TEXT} bytes saying what to assess"),
                    );
                }
                RubricConfig::Custom {
                    name: c.name.clone(),
                    text: c.text.clone(),
                }
            }
        },
    };
    let max_capture_bytes = ctx.int(
        &format!("{path}.max_capture_bytes"),
        j.max_capture_bytes.as_ref(),
        16 * 1024,
        MIN_CAPTURE,
        MAX_CAPTURE,
    );
    let concurrency = ctx.int(
        &format!("{path}.concurrency"),
        j.concurrency.as_ref(),
        4,
        1,
        256,
    );
    let timeout = ctx.duration(
        &format!("{path}.timeout"),
        j.timeout.as_ref(),
        Duration::from_secs(30),
        Zero::Rejected,
        Some(Duration::from_secs(600)),
    );
    let rpm = j
        .rpm
        .as_ref()
        .map(|v| ctx.int(&format!("{path}.rpm"), Some(v), 1, 1, 10_000));
    let usd_per_day = j
        .usd_per_day
        .as_ref()
        .map(|v| ctx.number(&format!("{path}.usd_per_day"), Some(v), 0.0, 0.0, 1e9));
    let model = model?;
    (ctx.errors.len() == before).then(|| JudgeConfig {
        model,
        sample,
        always_remediated,
        always_downgraded,
        always_per_minute: u32::try_from(always_per_minute).unwrap_or(30),
        rubric,
        max_capture_bytes: usize::try_from(max_capture_bytes).unwrap_or(16 * 1024),
        concurrency: usize::try_from(concurrency).unwrap_or(4),
        timeout,
        rpm: rpm.and_then(|r| u32::try_from(r).ok()),
        usd_per_day,
    })
}
