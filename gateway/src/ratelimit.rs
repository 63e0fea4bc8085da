//! The edge of per-key rate limiting: admitting a request against its key's limiter and the
//! `x-ratelimit-*` headers OpenAI's clients read. The limiter itself lives in `sluice-policy`.

use std::time::Duration;

use pingora::http::ResponseHeader;
use sluice_policy::{Denied, Headroom, LimitKind};

/// Adds OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the limits the
/// key has.
pub fn add_headers(h: &mut ResponseHeader, headroom: &Headroom) -> pingora::Result<()> {
    const NAMES: [[&str; 3]; 2] = [
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
        [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
    ];
    for (names, v) in NAMES.iter().zip([headroom.requests, headroom.tokens]) {
        let Some((limit, remaining, reset)) = v else {
            continue;
        };
        h.insert_header(names[0], limit)?;
        h.insert_header(names[1], remaining)?;
        h.insert_header(names[2], format_reset(reset))?;
    }
    Ok(())
}

/// The tighter of two headrooms (a key's and its tenant's), limit by limit: the one with
/// less remaining is what the client can really count on.
pub fn tighter(a: Headroom, b: Headroom) -> Headroom {
    let pick = |x: Option<(u64, u64, Duration)>, y: Option<(u64, u64, Duration)>| match (x, y) {
        (Some(x), Some(y)) => Some(if y.1 < x.1 { y } else { x }),
        (x, y) => x.or(y),
    };
    Headroom {
        requests: pick(a.requests, b.requests),
        tokens: pick(a.tokens, b.tokens),
    }
}

/// The headroom a refused request reports: nothing left until `retry_after`.
pub fn exhausted(d: &Denied) -> Headroom {
    let spent = Some((d.limit, 0, d.retry_after));
    match d.kind {
        LimitKind::Requests => Headroom {
            requests: spent,
            tokens: None,
        },
        LimitKind::Tokens => Headroom {
            requests: None,
            tokens: spent,
        },
    }
}

/// OpenAI's reset format: `250ms`, `1.5s`, `6m0s`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{secs:.3}");
        return format!("{}s", s.trim_end_matches('0').trim_end_matches('.'));
    }
    let whole = d.as_secs();
    format!("{}m{}s", whole / 60, whole % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openais() {
        assert_eq!(format_reset(Duration::from_millis(250)), "250ms");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(20)), "20s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
    }

    #[test]
    fn headers_name_each_configured_limit() {
        let mut h = ResponseHeader::build(200, None).expect("header");
        let headroom = Headroom {
            requests: Some((60, 59, Duration::from_secs(1))),
            tokens: None,
        };
        add_headers(&mut h, &headroom).expect("headers");
        let get = |n: &str| {
            h.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(get("x-ratelimit-limit-requests").as_deref(), Some("60"));
        assert_eq!(get("x-ratelimit-remaining-requests").as_deref(), Some("59"));
        assert_eq!(get("x-ratelimit-reset-requests").as_deref(), Some("1s"));
        assert_eq!(get("x-ratelimit-limit-tokens"), None);
    }
}
