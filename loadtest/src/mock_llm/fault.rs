//! The fault grammar: what a request asks `mock-llm` to do wrong.
//!
//! ```text
//! model   = name [ "@" faults ]          (split at the LAST '@' of the body's `model`)
//! x-mock  = [ anything "@" ] faults      (header; when present it wins over the model suffix)
//! faults  = fault *( "," fault )         (empty = no faults; spaces around items are ignored)
//! fault   = kind [ ":" arg ]
//! ```
//!
//! | fault | effect |
//! |---|---|
//! | `429[:SECONDS]` | 429 `rate_limit_error` / `rate_limit_exceeded`, `retry-after: SECONDS` (default 1) and `retry-after-ms` |
//! | `4xx[:SECONDS]`, `5xx[:SECONDS]` | that status (400..=599) with OpenAI error JSON; `retry-after` only when SECONDS is given |
//! | `html502` | 502 `text/html` page, as a load balancer sends |
//! | `html200` | 200 `text/html` page, even for a stream request |
//! | `garbage` | 200 `application/json` whose body is not JSON |
//! | `first-error` | stream: 200 SSE whose first event is an `{"error":…}` object, then the end; non-stream: 200 with that JSON |
//! | `stall:K` | stream: the first K events, then silence (connection held open, at most 120 s, then aborted); non-stream: no answer for 120 s, then the connection closes |
//! | `cut:K` | stream: the first K events, then a cleanly terminated chunked body and `connection: close` (no finish chunk, no `[DONE]`); non-stream: half the `content-length` body, then the connection is aborted |
//! | `ttft:MS` | MS more before the response head (either kind) |
//! | `delay:MS` | MS between content events of a stream (replaces `1/tokens_per_s`) |
//! | `nousage` | no usage, in streams or non-stream answers, even when asked for |
//! | `echo-len` | accepted for compatibility: every API answer carries `x-mock-body-len` anyway |
//!
//! For `stall` and `cut`, K counts SSE events from the start of the stream (the chat role chunk
//! is event 0) and is capped at the number of content events, so neither ever sends the finish
//! chunk or `[DONE]`. At most one outcome fault (status, html, garbage, first-error, stall, cut)
//! may be given; `ttft`, `delay`, `nousage` and `echo-len` combine with anything.

use std::time::Duration;

/// What one request asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// The one fault that replaces the normal answer, if any.
    pub outcome: Option<Outcome>,
    /// `ttft:MS`: added before the response head.
    pub ttft: Option<Duration>,
    /// `delay:MS`: the per-event delay of streams.
    pub delay: Option<Duration>,
    /// `nousage`
    pub nousage: bool,
    /// `echo-len`
    pub echo_len: bool,
}

/// A fault that replaces the normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `429`, `500`, `503`, …: an OpenAI error JSON with this status.
    Status {
        /// 400..=599
        code: u16,
        /// Seconds for `retry-after` (429 defaults to 1).
        retry_after: Option<u64>,
    },
    /// `html502`
    Html502,
    /// `html200`
    Html200,
    /// `garbage`
    Garbage,
    /// `first-error`
    FirstError,
    /// `stall:K`
    Stall(usize),
    /// `cut:K`
    Cut(usize),
}

/// Every fault name, for error messages.
pub const KNOWN: &str = "429[:SECONDS], 4xx/5xx[:SECONDS], html502, html200, garbage, \
                         first-error, stall:K, cut:K, ttft:MS, delay:MS, nousage, echo-len";

/// Splits a body's `model` into the name and the fault list after its last `@`.
pub fn split_model(model: &str) -> (&str, Option<&str>) {
    match model.rsplit_once('@') {
        Some((name, faults)) => (name, Some(faults)),
        None => (model, None),
    }
}

/// The fault list of an `x-mock` header value: what follows its last `@`, or all of it.
pub fn from_header(value: &str) -> &str {
    value.rsplit_once('@').map_or(value, |(_, faults)| faults)
}

/// Parses a fault list. The error names the offending fault.
pub fn parse(spec: &str) -> Result<Faults, String> {
    let mut faults = Faults::default();
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(faults);
    }
    let mut outcome_item: Option<&str> = None;
    for item in spec.split(',').map(str::trim) {
        let (kind, arg) = match item.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (item, None),
        };
        let outcome = match kind {
            "" => return Err(format!("empty mock fault in `{spec}`")),
            "html502" => no_arg(item, arg).map(|()| Some(Outcome::Html502))?,
            "html200" => no_arg(item, arg).map(|()| Some(Outcome::Html200))?,
            "garbage" => no_arg(item, arg).map(|()| Some(Outcome::Garbage))?,
            "first-error" => no_arg(item, arg).map(|()| Some(Outcome::FirstError))?,
            "stall" => Some(Outcome::Stall(number(item, arg)?)),
            "cut" => Some(Outcome::Cut(number(item, arg)?)),
            "ttft" => {
                faults.ttft = Some(Duration::from_millis(number(item, arg)?));
                None
            }
            "delay" => {
                faults.delay = Some(Duration::from_millis(number(item, arg)?));
                None
            }
            "nousage" => {
                no_arg(item, arg)?;
                faults.nousage = true;
                None
            }
            "echo-len" => {
                no_arg(item, arg)?;
                faults.echo_len = true;
                None
            }
            _ => match kind.parse::<u16>() {
                Ok(code) if kind.len() == 3 && (400..=599).contains(&code) => {
                    let retry_after = match arg {
                        Some(_) => Some(number(item, arg)?),
                        None if code == 429 => Some(1),
                        None => None,
                    };
                    Some(Outcome::Status { code, retry_after })
                }
                _ => return Err(format!("unknown mock fault `{item}` (known: {KNOWN})")),
            },
        };
        if let Some(outcome) = outcome {
            if let Some(first) = outcome_item {
                return Err(format!(
                    "conflicting mock faults `{first}` and `{item}`: at most one may replace \
                     the answer"
                ));
            }
            outcome_item = Some(item);
            faults.outcome = Some(outcome);
        }
    }
    Ok(faults)
}

fn no_arg(item: &str, arg: Option<&str>) -> Result<(), String> {
    match arg {
        None => Ok(()),
        Some(_) => Err(format!("mock fault `{item}` takes no argument")),
    }
}

fn number<T: std::str::FromStr>(item: &str, arg: Option<&str>) -> Result<T, String> {
    arg.and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("mock fault `{item}` needs a non-negative integer argument"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(
            split_model("gpt@429:3,ttft:5"),
            ("gpt", Some("429:3,ttft:5"))
        );
        assert_eq!(split_model("a@b@cut:2"), ("a@b", Some("cut:2")));
        assert_eq!(split_model("plain"), ("plain", None));
        assert_eq!(from_header("x@500"), "500");
        assert_eq!(from_header("500"), "500");
        assert_eq!(parse("").unwrap(), Faults::default());
        let f = parse("429, ttft:5,nousage").unwrap();
        assert_eq!(
            f.outcome,
            Some(Outcome::Status {
                code: 429,
                retry_after: Some(1)
            })
        );
        assert_eq!(f.ttft, Some(Duration::from_millis(5)));
        assert!(f.nousage);
        assert_eq!(
            parse("503").unwrap().outcome,
            Some(Outcome::Status {
                code: 503,
                retry_after: None
            })
        );
        assert_eq!(parse("stall:2").unwrap().outcome, Some(Outcome::Stall(2)));
        assert_eq!(parse("cut:0").unwrap().outcome, Some(Outcome::Cut(0)));
        assert!(parse("bogus").unwrap_err().contains("`bogus`"));
        assert!(parse("200").unwrap_err().contains("unknown"));
        assert!(parse("stall").unwrap_err().contains("argument"));
        assert!(parse("garbage:1").unwrap_err().contains("no argument"));
        assert!(parse("429,500").unwrap_err().contains("conflicting"));
        assert!(parse("429,,ttft:1").unwrap_err().contains("empty"));
    }
}
