//! The access log's line: one JSON object per request, with no content and no secret (names
//! from the policy, numbers, ids). The recorder writes the lines to standard output.
//!
//! The line is written field by field into the recorder's buffer rather than through a serde
//! struct: the serializer's per-field machinery, the number formatting behind it and the two
//! strings it needed for the routing lines were the recorder's largest cost per request. The
//! test below keeps the serde rendering as the reference the line must equal byte for byte.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use sluice_observability::{ErrorKind, RequestRecord};

/// Appends the request's line (and its newline) to `out`.
pub fn write_line(out: &mut Vec<u8>, r: &RequestRecord) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    out.extend_from_slice(b"{\"ts\":");
    put_f64(
        out,
        r.start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    out.extend_from_slice(b",\"request_id\":");
    put_str(out, &r.request_id);
    out.extend_from_slice(b",\"trace_id\":\"");
    let mut hex = [0u8; 32];
    // 16 bytes always fit 32 hex digits.
    let _ = hex::encode_to_slice(r.trace.trace_id, &mut hex);
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\",\"endpoint\":");
    put_str(out, r.endpoint.as_str());
    out.extend_from_slice(b",\"route\":");
    put_opt_str(out, r.route.as_deref());
    out.extend_from_slice(b",\"model\":");
    put_opt_str(out, r.model.as_deref());
    out.extend_from_slice(b",\"tenant\":");
    put_opt_str(out, r.tenant.as_deref());
    out.extend_from_slice(if r.stream {
        b",\"stream\":true,\"status\":"
    } else {
        b",\"stream\":false,\"status\":"
    });
    put_u64(out, u64::from(r.status));
    out.extend_from_slice(b",\"outcome\":");
    put_str(out, r.outcome.as_str());
    out.extend_from_slice(b",\"error_type\":");
    put_opt_str(out, r.error_type.map(ErrorKind::as_str));
    out.extend_from_slice(b",\"duration_ms\":");
    put_f64(out, ms(r.duration));
    out.extend_from_slice(b",\"time_to_first_chunk_ms\":");
    put_opt_f64(out, r.time_to_first_chunk.map(ms));
    out.extend_from_slice(b",\"overhead_ms\":");
    put_f64(out, ms(r.overhead()));
    out.extend_from_slice(b",\"attempts\":");
    put_u64(out, r.attempts.len() as u64);
    out.extend_from_slice(b",\"input_tokens\":");
    put_opt_u64(out, r.usage.map(|u| u.input));
    out.extend_from_slice(b",\"output_tokens\":");
    put_opt_u64(out, r.usage.map(|u| u.output));
    out.extend_from_slice(b",\"usage_source\":");
    put_opt_str(out, r.usage.map(|u| u.source.as_str()));
    out.extend_from_slice(b",\"cost_usd\":");
    put_opt_f64(out, r.cost_usd);
    if let Some(cache) = r.cache {
        out.extend_from_slice(b",\"cache\":");
        put_str(out, cache);
    }
    if let Some(limited) = r.rate_limited {
        out.extend_from_slice(b",\"rate_limited\":");
        put_str(out, limited);
    }
    put_text_if(out, b",\"route_decision\":\"", |e| r.write_decision_line(e));
    put_text_if(out, b",\"remediation\":\"", |e| r.write_remediation_line(e));
    out.extend_from_slice(b"}\n");
}

/// `opening` (a key and the string's opening quote), what `write` writes, escaped, and the
/// closing quote; nothing at all when `write` says it had nothing to write.
fn put_text_if(out: &mut Vec<u8>, opening: &[u8], write: impl FnOnce(&mut Escaped<'_>) -> bool) {
    let mark = out.len();
    out.extend_from_slice(opening);
    if write(&mut Escaped(out)) {
        out.push(b'"');
    } else {
        out.truncate(mark);
    }
}

/// A JSON string's body: what is written to it lands in the buffer escaped.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put_escaped(self.0, s);
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    put_escaped(out, s);
    out.push(b'"');
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `s` escaped as JSON wants it inside a string. Names and ids need nothing and are copied
/// whole; the rest (client input in a model name, say) is escaped by `serde_json`, whose
/// quotes are then taken off.
fn put_escaped(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let start = out.len();
    // Writing into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
    out.pop();
    out.remove(start);
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn put_opt_u64(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => put_u64(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

/// The shortest form that reads back as `f` (what `serde_json` writes); JSON has no NaN or
/// infinity, so those are `null`, as there.
fn put_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn put_opt_f64(out: &mut Vec<u8>, f: Option<f64>) {
    match f {
        Some(f) => put_f64(out, f),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use serde::Serialize;
    use sluice_observability::{
        AttemptOutcome, AttemptRecord, Outcome, RouteDecision, TokenUsage, TraceContext,
        UsageSource,
    };

    use super::*;

    /// The line as the serde struct wrote it before the writer above replaced it.
    #[derive(Serialize)]
    struct Line<'a> {
        ts: f64,
        request_id: &'a str,
        trace_id: String,
        endpoint: &'static str,
        route: Option<&'a str>,
        model: Option<&'a str>,
        tenant: Option<&'a str>,
        stream: bool,
        status: u16,
        outcome: &'static str,
        error_type: Option<&'static str>,
        duration_ms: f64,
        time_to_first_chunk_ms: Option<f64>,
        overhead_ms: f64,
        attempts: usize,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
        usage_source: Option<&'static str>,
        cost_usd: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rate_limited: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        route_decision: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        remediation: Option<String>,
    }

    fn reference(r: &RequestRecord) -> Vec<u8> {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let line = Line {
            ts: r
                .start
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            request_id: &r.request_id,
            trace_id: sluice_observability::spans::trace_id_hex(&r.trace),
            endpoint: r.endpoint.as_str(),
            route: r.route.as_deref(),
            model: r.model.as_deref(),
            tenant: r.tenant.as_deref(),
            stream: r.stream,
            status: r.status,
            outcome: r.outcome.as_str(),
            error_type: r.error_type.map(ErrorKind::as_str),
            duration_ms: ms(r.duration),
            time_to_first_chunk_ms: r.time_to_first_chunk.map(ms),
            overhead_ms: ms(r.overhead()),
            attempts: r.attempts.len(),
            input_tokens: r.usage.map(|u| u.input),
            output_tokens: r.usage.map(|u| u.output),
            usage_source: r.usage.map(|u| u.source.as_str()),
            cost_usd: r.cost_usd,
            cache: r.cache,
            rate_limited: r.rate_limited,
            route_decision: r.decision_line(),
            remediation: r.remediation_line(),
        };
        let mut out = serde_json::to_vec(&line).expect("serializes");
        out.push(b'\n');
        out
    }

    fn bare() -> RequestRecord {
        RequestRecord {
            request_id: "req_0123456789abcdef".into(),
            trace: TraceContext {
                trace_id: [0x0f; 16],
                ..sluice_observability::testing::record(Outcome::ClientError).trace
            },
            start: UNIX_EPOCH + Duration::from_nanos(1_796_402_499_884_868_100),
            duration: Duration::from_nanos(1_381_274),
            stream: false,
            status: 401,
            ..sluice_observability::testing::record(Outcome::ClientError)
        }
    }

    fn attempt(model: &str, outcome: AttemptOutcome, status: Option<u16>) -> AttemptRecord {
        AttemptRecord {
            provider: Arc::from("mock"),
            provider_kind: "openai",
            model: Arc::from(model),
            upstream_model: Arc::from(model),
            server_address: None,
            server_port: None,
            span_id: [2; 8],
            start: SystemTime::now(),
            duration: Duration::from_micros(1_234_567),
            outcome,
            status,
        }
    }

    #[test]
    fn the_line_is_what_the_serde_struct_wrote() {
        let mut served = bare();
        served.route = Some(Arc::from("chat"));
        served.model = Some(Arc::from("gpt-4o"));
        served.tenant = Some(Arc::from("search"));
        served.stream = true;
        served.status = 200;
        served.outcome = Outcome::Ok;
        served.time_to_first_chunk = Some(Duration::from_nanos(1_308_336));
        served.usage = Some(TokenUsage {
            input: 9,
            output: 16,
            cached_input: 0,
            cache_write_input: 0,
            reasoning: 0,
            source: UsageSource::Provider,
        });
        served.cost_usd = Some(0.000_125);
        served.attempts = vec![
            attempt("a", AttemptOutcome::ServerError, Some(503)),
            attempt("b", AttemptOutcome::Ok, Some(200)),
        ];
        served.decision = Some(RouteDecision {
            strategy: "weighted",
            candidates: vec![Arc::from("a"), Arc::from("b")],
            skipped: vec![
                (Arc::from("c"), "ejected", Some(4.25)),
                (Arc::from("d"), "open", None),
            ],
            panic: true,
            retry_budget_exhausted: true,
        });
        served.remediation = vec![
            ("failover", Arc::from("rule-a")),
            ("shed", Arc::from("r b")),
        ];
        served.cache = Some("miss");
        served.rate_limited = Some("tpm");

        // Client input and odd names: every character class the escaper treats apart.
        let mut odd = bare();
        odd.model = Some(Arc::from("m\"o\\d\ne\r\t\u{8}\u{c}\u{1}\u{1f} é ☃ \u{7f}"));
        odd.route = Some(Arc::from(""));
        odd.error_type = Some(ErrorKind::InvalidRequest);
        odd.cost_usd = Some(f64::NAN);
        odd.duration = Duration::ZERO;
        odd.attempts = vec![attempt("x\"y", AttemptOutcome::Timeout, None)];
        odd.decision = Some(RouteDecision {
            strategy: "p2c",
            candidates: vec![Arc::from("x\"y")],
            ..RouteDecision::default()
        });

        let mut infinite = bare();
        infinite.cost_usd = Some(f64::INFINITY);
        infinite.start = UNIX_EPOCH;
        infinite.decision = Some(RouteDecision::default());

        for (name, r) in [
            ("bare", bare()),
            ("served", served),
            ("odd", odd),
            ("infinite", infinite),
        ] {
            let mut out = b"earlier line\n".to_vec();
            write_line(&mut out, &r);
            let want = [b"earlier line\n".as_slice(), &reference(&r)].concat();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want),
                "{name}"
            );
            let parsed: serde_json::Value =
                serde_json::from_slice(&out[13..]).expect("one JSON object");
            assert!(parsed.is_object(), "{name}");
        }
    }
}
