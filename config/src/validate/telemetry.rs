//! The `telemetry` section: span export, sampling, content capture, the access log.

use serde_saphyr::Spanned;

use super::{Ctx, ONE_HOUR, line};
use crate::duration::Zero;
use crate::raw::{RawOtlp, RawRedact, RawSample, RawTelemetry};
use crate::types::{
    BaseUrl, KeepRule, OtlpConfig, OtlpProtocol, RedactRule, SampleConfig, TelemetryConfig,
};

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
