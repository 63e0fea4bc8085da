//! Durations written as humantime strings: `250ms`, `10s`, `5m`, `1h 30m`.

use std::time::Duration;

const FORM: &str = "a duration like `250ms`, `10s` or `5m`";

/// Whether zero is a meaningful value for the setting being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    Allowed,
    Rejected,
}

/// Parses `s` and checks it against `zero` and `max`; the error says what was expected.
pub(crate) fn parse(s: &str, zero: Zero, max: Option<Duration>) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s.trim()).map_err(|_| format!("expected {FORM}, found `{s}`"))?;
    if zero == Zero::Rejected && d.is_zero() {
        return Err(format!("must be longer than zero ({FORM}), found `{s}`"));
    }
    if let Some(max) = max
        && d > max
    {
        return Err(format!(
            "must be at most {}, found `{s}`",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        assert_eq!(
            parse("250ms", Zero::Rejected, None),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse("1m 30s", Zero::Rejected, None),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(parse("0s", Zero::Allowed, None), Ok(Duration::ZERO));
        assert_eq!(
            parse("0s", Zero::Rejected, None),
            Err(
                "must be longer than zero (a duration like `250ms`, `10s` or `5m`), found `0s`"
                    .into()
            )
        );
        assert_eq!(
            parse("10", Zero::Allowed, None),
            Err("expected a duration like `250ms`, `10s` or `5m`, found `10`".into())
        );
        assert_eq!(
            parse("2h", Zero::Allowed, Some(Duration::from_secs(3600))),
            Err("must be at most 1h, found `2h`".into())
        );
    }
}
