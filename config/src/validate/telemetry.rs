//! The `telemetry` section: span export, sampling, content capture, the access log.

use serde_saphyr::Spanned;

use super::{Ctx, ONE_HOUR, line};
use crate::duration::Zero;
use std::collections::BTreeMap;

use crate::raw::{RawDestination, RawOtlp, RawRedact, RawResource, RawSample, RawTelemetry};
use crate::types::{
    BaseUrl, DestinationConfig, DestinationFilter, DestinationSampling, KeepRule, OUTCOMES,
    OtlpConfig, OtlpProtocol, RedactRule, ResourceConfig, SampleConfig, TelemetryConfig,
};

/// The name `telemetry.otlp` goes by among the destinations.
pub const OTLP_DESTINATION: &str = "otlp";

const OTLP_EXAMPLE: &str =
    "e.g. `http://127.0.0.1:4317` for grpc, `http://127.0.0.1:4318` for http";
const OTLP_HTTP_PATH: &str = "/v1/traces";
/// Custom redaction patterns are compiled with this size limit, so a pathological pattern is
/// refused at load instead of slowing every captured request.
const REDACT_REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(super) fn telemetry(ctx: &mut Ctx<'_>, t: RawTelemetry) -> TelemetryConfig {
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
    let destinations = destinations(ctx, t.destinations.as_deref(), otlp.is_some());
    let resource = t
        .resource
        .as_ref()
        .map(|r| resource(ctx, &r.value))
        .unwrap_or_default();
    TelemetryConfig {
        destinations,
        resource,
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
    let raw = &o.value;
    exporter(
        ctx,
        "telemetry.otlp",
        line(o),
        ExporterFields {
            endpoint: &raw.endpoint,
            protocol: raw.protocol.as_ref(),
            timeout: raw.timeout.as_ref(),
            queue_size: raw.queue_size.as_ref(),
            batch_size: raw.batch_size.as_ref(),
            export_interval: raw.export_interval.as_ref(),
        },
    )
}

/// The exporter fields `telemetry.otlp` and each destination share.
struct ExporterFields<'a> {
    endpoint: &'a Option<Spanned<String>>,
    protocol: Option<&'a Spanned<String>>,
    timeout: Option<&'a Spanned<String>>,
    queue_size: Option<&'a Spanned<i64>>,
    batch_size: Option<&'a Spanned<i64>>,
    export_interval: Option<&'a Spanned<String>>,
}

fn exporter(
    ctx: &mut Ctx<'_>,
    path: &str,
    at: Option<usize>,
    raw: ExporterFields<'_>,
) -> Option<OtlpConfig> {
    let before = ctx.errors.len();
    let protocol = match raw.protocol {
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
        .required(path, at, raw.endpoint, "endpoint", OTLP_EXAMPLE)
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
        raw.timeout,
        d.timeout,
        Zero::Rejected,
        Some(ONE_HOUR),
    );
    let export_interval = ctx.duration(
        &format!("{path}.export_interval"),
        raw.export_interval,
        d.export_interval,
        Zero::Rejected,
        Some(ONE_HOUR),
    );
    let queue_size = ctx.int(
        &format!("{path}.queue_size"),
        raw.queue_size,
        4096,
        1,
        1 << 20,
    );
    let batch_size = ctx.int(&format!("{path}.batch_size"), raw.batch_size, 512, 1, 65536);
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

fn destinations(
    ctx: &mut Ctx<'_>,
    raw: Option<&[Spanned<RawDestination>]>,
    has_otlp: bool,
) -> Vec<DestinationConfig> {
    let mut out: Vec<DestinationConfig> = Vec::new();
    let mut names: Vec<String> = if has_otlp {
        vec![OTLP_DESTINATION.to_owned()]
    } else {
        Vec::new()
    };
    for (i, d) in raw.into_iter().flatten().enumerate() {
        let path = format!("telemetry.destinations[{i}]");
        let before = ctx.errors.len();
        let raw = &d.value;
        let name = ctx
            .required(&path, line(d), &raw.name, "name", "e.g. `canary`")
            .and_then(|v| {
                ctx.name(&format!("{path}.name"), v)
                    .map(|n| (n.trim().to_owned(), line(v)))
            });
        if let Some((n, at)) = &name {
            if names.contains(n) {
                let why = if n == OTLP_DESTINATION && has_otlp {
                    " (`telemetry.otlp` is the destination named `otlp`)"
                } else {
                    ""
                };
                ctx.error(
                    &format!("{path}.name"),
                    *at,
                    format!("duplicate destination name `{n}`{why}"),
                );
            } else if !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                ctx.error(
                    &format!("{path}.name"),
                    *at,
                    format!("`{n}` is not a valid name (letters, digits, `-` and `_` only; it is a metric label)"),
                );
            } else {
                names.push(n.clone());
            }
        }
        let otlp = exporter(
            ctx,
            &path,
            line(d),
            ExporterFields {
                endpoint: &raw.endpoint,
                protocol: raw.protocol.as_ref(),
                timeout: raw.timeout.as_ref(),
                queue_size: raw.queue_size.as_ref(),
                batch_size: raw.batch_size.as_ref(),
                export_interval: raw.export_interval.as_ref(),
            },
        );
        let mut headers_env = BTreeMap::new();
        for (header, var) in raw.headers_env.iter().flatten() {
            let hpath = format!("{path}.headers_env.{header}");
            let valid_header = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !valid_header {
                ctx.error(&hpath, line(var), "not a valid HTTP header name");
                continue;
            }
            let valid_var = !var.value.is_empty()
                && var
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid_var {
                ctx.error(
                    &hpath,
                    line(var),
                    "expected the name of an environment variable holding the value (letters, digits and `_`), never the value itself",
                );
                continue;
            }
            headers_env.insert(header.to_ascii_lowercase(), var.value.clone());
        }
        let sampling = match &raw.sampling {
            None => DestinationSampling::Tail,
            Some(v) => match v.value.trim() {
                "tail" => DestinationSampling::Tail,
                "all" => DestinationSampling::All,
                other => {
                    ctx.error(
                        &format!("{path}.sampling"),
                        line(v),
                        format!("unknown sampling `{other}` (expected tail or all)"),
                    );
                    DestinationSampling::Tail
                }
            },
        };
        let filter = raw
            .filter
            .as_ref()
            .map_or_else(DestinationFilter::default, |f| {
                let list = |ctx: &mut Ctx<'_>, field: &str, v: &Option<Vec<Spanned<String>>>| {
                    let mut out = Vec::new();
                    for (j, s) in v.iter().flatten().enumerate() {
                        let fpath = format!("{path}.filter.{field}[{j}]");
                        if let Some(n) = ctx.name(&fpath, s) {
                            if field == "outcomes" && !OUTCOMES.contains(&n.trim()) {
                                ctx.error(
                                    &fpath,
                                    line(s),
                                    format!(
                                        "unknown outcome `{}` (expected {} or {})",
                                        n.trim(),
                                        OUTCOMES[..OUTCOMES.len() - 1].join(", "),
                                        OUTCOMES[OUTCOMES.len() - 1]
                                    ),
                                );
                                continue;
                            }
                            out.push(n.trim().to_owned());
                        }
                    }
                    out
                };
                DestinationFilter {
                    routes: list(ctx, "routes", &f.value.routes),
                    tenants: list(ctx, "tenants", &f.value.tenants),
                    outcomes: list(ctx, "outcomes", &f.value.outcomes),
                }
            });
        let (mut traces, mut logs) = (raw.signals.is_none(), false);
        for (j, s) in raw.signals.iter().flatten().enumerate() {
            match s.value.trim() {
                "traces" => traces = true,
                "logs" => logs = true,
                other => ctx.error(
                    &format!("{path}.signals[{j}]"),
                    line(s),
                    format!("unknown signal `{other}` (expected traces or logs)"),
                ),
            }
        }
        if raw.signals.as_ref().is_some_and(Vec::is_empty) {
            ctx.error(
                &format!("{path}.signals"),
                line(d),
                "must name at least one signal (traces, logs)",
            );
        }
        if let (Some((name, _)), Some(otlp), true) = (name, otlp, ctx.errors.len() == before) {
            out.push(DestinationConfig {
                name,
                otlp,
                headers_env,
                sampling,
                filter,
                traces,
                logs,
            });
        }
    }
    out
}

fn resource(ctx: &mut Ctx<'_>, raw: &RawResource) -> ResourceConfig {
    let path = "telemetry.resource";
    let mut text = |field: &str, v: &Option<Spanned<String>>| {
        v.as_ref()
            .and_then(|v| ctx.name(&format!("{path}.{field}"), v))
            .map(|s| s.trim().to_owned())
    };
    ResourceConfig {
        environment: text("environment", &raw.environment),
        instance_id: text("instance_id", &raw.instance_id),
        region: text("region", &raw.region),
        version: text("version", &raw.version),
        attributes: attributes(ctx, &format!("{path}.attributes"), raw.attributes.as_ref()),
    }
}

/// Free attribute keys and values (resource or tenant): non-empty keys, values of at most
/// 256 bytes.
pub(super) fn attributes(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: Option<&BTreeMap<String, Spanned<String>>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in raw.into_iter().flatten() {
        let apath = format!("{path}.{k}");
        if k.trim().is_empty() {
            ctx.error(&apath, line(v), "attribute keys must not be empty");
        } else if v.value.len() > 256 {
            ctx.error(
                &apath,
                line(v),
                format!("at most 256 bytes, found {}", v.value.len()),
            );
        } else {
            out.insert(k.trim().to_owned(), v.value.clone());
        }
    }
    out
}
