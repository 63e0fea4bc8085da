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
//! | `legacy` | an older OpenAI-compatible server: 400 for a body with `stream_options`, `max_completion_tokens`, a `developer` message or `parallel_tool_calls` ("Extra inputs are not permitted", naming the field) |
//! | `echo-len` | accepted for compatibility: every API answer carries `x-mock-body-len` anyway |
//! | `burst` | stream: the pacing its events would have had is waited in one piece before the head, then the head, every event (one chunk each) and the end of the body go out in one socket write; non-stream answers already leave in one write (so do unpaced streams, but only `burst` makes it the rule) |
//! | `echo-key:4xx` | that status (400..=499) with an OpenAI error JSON whose `error.message` quotes the received key (see below) |
//! | `echo-key:200` | 200 `application/json` with that error JSON, even for a stream request |
//! | `echo-key:first-event` | stream: 200 SSE whose first event is that error JSON, then the end of the body (no `[DONE]`); non-stream: like `echo-key:200` |
//! | `echo-key:mid-stream:K` | stream: the first K events, then an event with that error JSON, then the end of the body (no finish chunk, no `[DONE]`); non-stream: like `echo-key:200` |
//! | `key-escaped` | with `echo-key`: every character of the key written as a JSON `\uXXXX` escape (lowercase hex; UTF-16 surrogate pairs beyond the BMP) |
//! | `key-pad:N` | with `echo-key`: N filler characters (`x`, at most 65536) in the message right before the key |
//! | `words:N` | the answer has at most N words, cut as `max_tokens: N` would cut it (`finish_reason: length`): a terse model |
//! | `verdict:good`, `verdict:bad`, `verdict:malformed` | for a Sluice judge request: a verdict scoring 0.95, one scoring 0.05, or prose that is no verdict (other requests are answered as usual) |
//!
//! For `stall`, `cut` and `echo-key:mid-stream`, K counts SSE events from the start of the
//! stream (the chat role chunk is event 0) and is capped at the number of content events, so
//! none of them ever sends the finish chunk or `[DONE]`. At most one outcome fault (status,
//! html, garbage, first-error, stall, cut, echo-key) may be given; `ttft`, `delay`, `nousage`, `legacy`,
//! `echo-len`, `burst`, `words` and `verdict` combine with anything; `key-escaped` and `key-pad` need an `echo-key`.
//!
//! # Echoing the key
//!
//! The `echo-key` faults quote the credential the request carried, as a provider that rejects
//! or mentions it would: the value after `Bearer ` (scheme matched case-insensitively) of the
//! `Authorization` header, trimmed, or the empty string when there is none. The error JSON is
//! always exactly this ([`super::echo::error_json`]):
//!
//! ```text
//! {"error":{"message":"Incorrect API key provided: <pad><key>","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}
//! ```
//!
//! so the key starts at character `KEY_OFFSET + N` ([`super::echo::KEY_OFFSET`], 49) of the
//! body, or of the event's data for streams: a test picks N to put the key across any
//! truncation limit. Without `key-escaped` the key is written as `serde_json` escapes a string (as is,
//! for a usual key). When the server requires an API key, a request with a wrong one is still
//! refused with 401 before any fault applies.

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
    /// `legacy`
    pub legacy: bool,
    /// `echo-len`
    pub echo_len: bool,
    /// `burst`
    pub burst: bool,
    /// `key-escaped`
    pub key_escaped: bool,
    /// `key-pad:N`: filler characters before the echoed key (0 without the fault).
    pub key_pad: usize,
    /// `words:N`: at most N words in the answer.
    pub words: Option<u32>,
    /// `verdict:…`: how a judge request is answered.
    pub verdict: Option<ScriptedVerdict>,
}

/// What `verdict:…` makes a judge request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptedVerdict {
    /// `verdict:good`: a well-formed verdict scoring 0.95.
    Good,
    /// `verdict:bad`: a well-formed verdict scoring 0.05.
    Bad,
    /// `verdict:malformed`: prose instead of the JSON verdict the judge asked for.
    Malformed,
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
    /// `echo-key:…`
    EchoKey(EchoKey),
}

/// Where an `echo-key` fault puts the received key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKey {
    /// `echo-key:4xx`: an error status (400..=499) with the error JSON.
    Status(u16),
    /// `echo-key:200`: the error JSON with status 200.
    Json200,
    /// `echo-key:first-event`
    FirstEvent,
    /// `echo-key:mid-stream:K`
    MidStream(usize),
}

/// Every fault name, for error messages.
pub const KNOWN: &str = "429[:SECONDS], 4xx/5xx[:SECONDS], html502, html200, garbage, \
                         first-error, stall:K, cut:K, ttft:MS, delay:MS, nousage, echo-len, \
                         burst, echo-key:4xx, echo-key:200, echo-key:first-event, \
                         echo-key:mid-stream:K, key-escaped, key-pad:N, words:N, \
                         verdict:good|bad|malformed";

/// The largest `key-pad:N`.
pub const MAX_KEY_PAD: usize = 65_536;

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
    // A key modifier without an echo-key would do nothing: refuse it rather than ignore a typo.
    let mut modifier_item: Option<&str> = None;
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
            "legacy" => {
                no_arg(item, arg)?;
                faults.legacy = true;
                None
            }
            "echo-len" => {
                no_arg(item, arg)?;
                faults.echo_len = true;
                None
            }
            "burst" => {
                no_arg(item, arg)?;
                faults.burst = true;
                None
            }
            "echo-key" => Some(Outcome::EchoKey(echo_key(item, arg)?)),
            "words" => {
                faults.words = Some(number(item, arg)?);
                None
            }
            "verdict" => {
                faults.verdict = Some(match arg {
                    Some("good") => ScriptedVerdict::Good,
                    Some("bad") => ScriptedVerdict::Bad,
                    Some("malformed") => ScriptedVerdict::Malformed,
                    _ => {
                        return Err(format!(
                            "mock fault `{item}` needs one of verdict:good, verdict:bad, \
                             verdict:malformed"
                        ));
                    }
                });
                None
            }
            "key-escaped" => {
                no_arg(item, arg)?;
                faults.key_escaped = true;
                modifier_item = Some(item);
                None
            }
            "key-pad" => {
                let n: usize = number(item, arg)?;
                if n > MAX_KEY_PAD {
                    return Err(format!(
                        "mock fault `{item}` pads at most {MAX_KEY_PAD} characters"
                    ));
                }
                faults.key_pad = n;
                modifier_item = Some(item);
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
    if let Some(item) = modifier_item
        && !matches!(faults.outcome, Some(Outcome::EchoKey(_)))
    {
        return Err(format!(
            "mock fault `{item}` only applies together with an echo-key fault"
        ));
    }
    Ok(faults)
}

/// The argument of `echo-key`: `4xx`, `200`, `first-event` or `mid-stream:K`.
fn echo_key(item: &str, arg: Option<&str>) -> Result<EchoKey, String> {
    let wrong = || {
        format!(
            "mock fault `{item}` needs one of echo-key:4xx (400..=499), echo-key:200, \
             echo-key:first-event, echo-key:mid-stream:K"
        )
    };
    let arg = arg.ok_or_else(wrong)?;
    let (what, k) = match arg.split_once(':') {
        Some((w, k)) => (w.trim(), Some(k.trim())),
        None => (arg, None),
    };
    match (what, k) {
        ("first-event", None) => Ok(EchoKey::FirstEvent),
        ("mid-stream", Some(_)) => Ok(EchoKey::MidStream(number(item, k)?)),
        ("mid-stream", None) => Err(format!(
            "mock fault `{item}` needs a non-negative integer argument (mid-stream:K)"
        )),
        (code, None) if code.len() == 3 => match code.parse::<u16>() {
            Ok(200) => Ok(EchoKey::Json200),
            Ok(c) if (400..=499).contains(&c) => Ok(EchoKey::Status(c)),
            _ => Err(wrong()),
        },
        _ => Err(wrong()),
    }
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

    #[test]
    fn echo_key_grammar() {
        let echo = |spec: &str| parse(spec).map(|f| f.outcome);
        for (spec, want) in [
            ("echo-key:400", EchoKey::Status(400)),
            ("echo-key:401", EchoKey::Status(401)),
            ("echo-key:499", EchoKey::Status(499)),
            ("echo-key:200", EchoKey::Json200),
            ("echo-key:first-event", EchoKey::FirstEvent),
            ("echo-key:mid-stream:0", EchoKey::MidStream(0)),
            ("echo-key:mid-stream:7", EchoKey::MidStream(7)),
            (" echo-key : mid-stream : 3 ", EchoKey::MidStream(3)),
        ] {
            assert_eq!(echo(spec), Ok(Some(Outcome::EchoKey(want))), "{spec}");
        }
        // Modifiers, in any order around the echo-key, and with other faults.
        let f = parse("key-pad:190,echo-key:401,key-escaped,ttft:2,burst").unwrap();
        assert_eq!(f.outcome, Some(Outcome::EchoKey(EchoKey::Status(401))));
        assert_eq!((f.key_pad, f.key_escaped, f.burst), (190, true, true));
        assert_eq!(f.ttft, Some(Duration::from_millis(2)));
        let f = parse("echo-key:200").unwrap();
        assert_eq!((f.key_pad, f.key_escaped, f.burst), (0, false, false));
        assert_eq!(
            parse(&format!("echo-key:200,key-pad:{MAX_KEY_PAD}"))
                .unwrap()
                .key_pad,
            MAX_KEY_PAD
        );

        // Every error names the fault it is about.
        for (spec, names, says) in [
            ("echo-key", "`echo-key`", "needs one of"),
            ("echo-key:500", "`echo-key:500`", "400..=499"),
            ("echo-key:399", "`echo-key:399`", "needs one of"),
            ("echo-key:201", "`echo-key:201`", "needs one of"),
            ("echo-key:4000", "`echo-key:4000`", "needs one of"),
            (
                "echo-key:first-event:2",
                "`echo-key:first-event:2`",
                "needs one of",
            ),
            (
                "echo-key:mid-stream",
                "`echo-key:mid-stream`",
                "mid-stream:K",
            ),
            (
                "echo-key:mid-stream:-1",
                "`echo-key:mid-stream:-1`",
                "integer",
            ),
            ("echo-key:sideways", "`echo-key:sideways`", "needs one of"),
            ("echo-key:200,key-pad", "`key-pad`", "integer"),
            ("echo-key:200,key-pad:x", "`key-pad:x`", "integer"),
            (
                "echo-key:200,key-pad:65537",
                "`key-pad:65537`",
                "at most 65536",
            ),
            (
                "echo-key:200,key-escaped:1",
                "`key-escaped:1`",
                "no argument",
            ),
            (
                "key-escaped",
                "`key-escaped`",
                "only applies together with an echo-key",
            ),
            (
                "429,key-pad:3",
                "`key-pad:3`",
                "only applies together with an echo-key",
            ),
            ("burst:1", "`burst:1`", "no argument"),
            (
                "echo-key:200,500",
                "`echo-key:200` and `500`",
                "conflicting",
            ),
            (
                "cut:1,echo-key:first-event",
                "`cut:1` and `echo-key:first-event`",
                "conflicting",
            ),
        ] {
            let err = parse(spec).unwrap_err();
            assert!(err.contains(names) && err.contains(says), "{spec}: {err}");
        }
        assert!(parse("burst").unwrap().burst);
        // `KNOWN` lists every kind the parser accepts.
        for kind in [
            "burst",
            "echo-key:4xx",
            "echo-key:mid-stream:K",
            "key-escaped",
            "key-pad:N",
            "words:N",
            "verdict:good|bad|malformed",
        ] {
            assert!(KNOWN.contains(kind), "{kind}");
        }
    }

    #[test]
    fn words_and_verdicts_combine_with_other_faults() {
        let f = parse("words:2, verdict:bad, ttft:5").unwrap();
        assert_eq!(f.words, Some(2));
        assert_eq!(f.verdict, Some(ScriptedVerdict::Bad));
        assert_eq!(f.ttft, Some(Duration::from_millis(5)));
        assert_eq!(
            parse("verdict:malformed").unwrap().verdict,
            Some(ScriptedVerdict::Malformed)
        );
        assert_eq!(
            parse("verdict:good").unwrap().verdict,
            Some(ScriptedVerdict::Good)
        );
        for bad in ["verdict", "verdict:great", "words", "words:-1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
