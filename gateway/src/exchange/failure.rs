//! Why an attempt failed, how each failure is classified for retrying and recording, how the
//! last one becomes the client's error, and keeping the provider key out of all of it.
//!
//! Provider text (an error body, a first-event error) may quote the credential Sluice sent.
//! It is redacted where it enters ([`redact_secret`]), before anything is cut to length, and
//! in raw as well as JSON-escaped spellings, so no prefix of the key survives a truncation
//! and no escaped copy slips past a byte search.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use sluice_config::ProviderKind;
use sluice_observability::AttemptOutcome;
use sluice_policy::Target;

use super::retry::FailureClass;
use crate::error::GatewayError;
use crate::respond::Rejection;

/// How much provider text a failure quotes (after redaction).
pub const QUOTE_CHARS: usize = 200;

/// Why one attempt failed. `detail`s are for the log (they may name the provider, its
/// address or a variable); what the client reads comes from [`Failure::public`], which names
/// none of those.
#[derive(Debug)]
pub enum Failure {
    Connect(String),
    Unavailable(String),
    Timeout(Duration),
    RateLimited(Option<Duration>),
    Server {
        status: u16,
        /// What the client is told.
        public: &'static str,
        detail: String,
    },
    Client {
        status: u16,
        body: Bytes,
    },
}

impl Failure {
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Connect(_) => FailureClass::Connect,
            Self::Unavailable(_) => FailureClass::Unavailable,
            Self::Timeout(_) => FailureClass::Timeout,
            Self::RateLimited(_) => FailureClass::RateLimited,
            Self::Server { .. } => FailureClass::ServerError,
            Self::Client { .. } => FailureClass::Client,
        }
    }

    /// Whether the target itself failed (for passive health): connect errors, timeouts and
    /// server errors do; a 429 cools the target down instead, a provider's refusal of the
    /// request is the request's fault, and an unusable provider was never tried.
    pub fn counts_against_health(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::Timeout(_) | Self::Server { .. }
        )
    }

    /// How the attempt ended, for its record; `None` when nothing was sent.
    pub fn attempt_outcome(&self) -> Option<(AttemptOutcome, Option<u16>)> {
        Some(match self {
            Self::Unavailable(_) => return None,
            Self::Connect(_) => (AttemptOutcome::ConnectError, None),
            Self::Timeout(_) => (AttemptOutcome::Timeout, None),
            Self::RateLimited(_) => (AttemptOutcome::RateLimited, Some(429)),
            Self::Server { status, .. } => (AttemptOutcome::ServerError, Some(*status)),
            Self::Client { status, .. } => (AttemptOutcome::ClientError, Some(*status)),
        })
    }

    /// A one-line description for logs: no bodies, no secrets.
    pub fn summary(&self) -> String {
        match self {
            Self::Connect(m) | Self::Unavailable(m) => m.clone(),
            Self::Timeout(d) => format!("timed out after {}", crate::error::human(*d)),
            Self::RateLimited(Some(after)) => {
                format!("rate limited (retry after {})", crate::error::human(*after))
            }
            Self::RateLimited(None) => "rate limited".to_owned(),
            Self::Server { status, detail, .. } => format!("{status}: {detail}"),
            Self::Client { status, .. } => format!("{status} from the provider"),
        }
    }

    /// What a client may read about this failure: no address, provider name or variable.
    pub fn public(&self) -> String {
        match self {
            Self::Connect(_) => "the provider could not be reached".to_owned(),
            Self::Unavailable(_) => "the provider has no credentials configured".to_owned(),
            Self::Timeout(d) => format!("no answer within {}", crate::error::human(*d)),
            Self::RateLimited(_) => "the provider is rate limited".to_owned(),
            Self::Server { public, .. } => (*public).to_owned(),
            Self::Client { status, .. } => format!("the provider refused the request ({status})"),
        }
    }
}

/// A 502 that tells the client `public` and the log `detail`.
pub fn server(public: &'static str, detail: String) -> Failure {
    Failure::Server {
        status: 502,
        public,
        detail,
    }
}

/// Classifies a provider's non-2xx answer from its status, `Retry-After` and (redacted) body.
pub fn classify_status(
    status: u16,
    retry_after: Option<Duration>,
    body: Bytes,
    provider: &str,
) -> Failure {
    match status {
        429 => Failure::RateLimited(retry_after),
        401 | 403 => Failure::Server {
            status: 502,
            public: "the provider refused the gateway's credentials",
            detail: format!("provider `{provider}` rejected Sluice's credentials ({status})"),
        },
        400..=499 if status != 408 => {
            if serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v.get("error").is_some_and(serde_json::Value::is_object))
            {
                Failure::Client { status, body }
            } else {
                // The provider refused the request itself, in a shape of its own (a proxy's
                // HTML page, plain text): the client gets the same status in OpenAI's shape,
                // quoting what the provider said.
                let said = truncate_utf8(&body, QUOTE_CHARS);
                let message = if said.trim().is_empty() {
                    format!("the provider refused the request ({status})")
                } else {
                    format!("the provider refused the request ({status}): {said}")
                };
                let json = serde_json::json!({"error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": null,
                    "code": "provider_error",
                }});
                Failure::Client {
                    status,
                    body: Bytes::from(json.to_string()),
                }
            }
        }
        _ => Failure::Server {
            status,
            public: if status >= 500 {
                "the provider answered with a server error"
            } else {
                "the provider answered with an unexpected status"
            },
            detail: format!("provider `{provider}` answered {status}"),
        },
    }
}

/// The client's error after the last attempt failed with `last` (`None`: no attempt could
/// be made at all, because every target was cooling down for longer than the route waits).
pub fn final_rejection(model: &str, last: Option<Failure>) -> Rejection {
    let model = model.to_owned();
    let e = match last {
        None => GatewayError::Unavailable {
            model,
            detail: "every provider asked to wait longer than the route allows".into(),
        },
        Some(Failure::Client { status, body }) => return Rejection::Upstream { status, body },
        Some(f @ Failure::Connect(_)) => GatewayError::UpstreamFailed {
            model,
            status: 502,
            detail: f.public(),
        },
        Some(f @ Failure::Unavailable(_)) => GatewayError::Unavailable {
            model,
            detail: f.public(),
        },
        Some(Failure::Timeout(after)) => GatewayError::Timeout { model, after },
        Some(Failure::RateLimited(after)) => GatewayError::RateLimited {
            model,
            retry_after: after.unwrap_or(Duration::from_secs(1)),
        },
        Some(f @ Failure::Server { status, .. }) => GatewayError::UpstreamFailed {
            model,
            status: if matches!(status, 503 | 504) {
                status
            } else {
                502
            },
            detail: f.public(),
        },
    };
    Rejection::Error(e)
}

/// The secret Sluice sends to this target's provider, when it sends one: the API key, or for
/// SigV4 the session token (the secret access key itself never leaves Sluice).
pub fn provider_key(target: &Target) -> Option<&str> {
    let kind = &target.provider.config.kind;
    let key = match kind {
        ProviderKind::OpenAi { api_key, .. } => api_key.as_ref(),
        ProviderKind::Mock { .. } => None,
        ProviderKind::Bedrock {
            access: sluice_config::HttpAccess { api_key: None, .. },
            aws,
            ..
        } => aws
            .as_ref()
            .and_then(|a| a.credentials.as_ref())
            .and_then(|c| c.session_token.as_ref()),
        other => other.access().and_then(|a| a.api_key.as_ref()),
    };
    key.map(sluice_config::Secret::expose)
        .filter(|k| !k.is_empty())
}

/// `text` with every occurrence of `secret` replaced by `***`, whether written as is or with
/// any of its characters JSON-escaped (`\u0073`, `\/`). Borrowed when there is none.
pub fn redact_secret<'a>(text: &'a [u8], secret: &str) -> Cow<'a, [u8]> {
    if secret.is_empty() {
        return Cow::Borrowed(text);
    }
    let want: Vec<char> = secret.chars().collect();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        match match_at(text, i, &want) {
            Some(end) => {
                let o = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
                o.extend_from_slice(&text[copied..i]);
                o.extend_from_slice(b"***");
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.extend_from_slice(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// `text` as an owned string with the target's provider key redacted.
pub fn redact_text(text: &str, target: &Target) -> String {
    match provider_key(target) {
        Some(key) => String::from_utf8_lossy(&redact_secret(text.as_bytes(), key)).into_owned(),
        None => text.to_owned(),
    }
}

/// `body` with the target's provider key redacted; the same `Bytes` when it has none.
pub fn redact_body(body: Bytes, target: &Target) -> Bytes {
    match provider_key(target) {
        Some(key) => match redact_secret(&body, key) {
            Cow::Borrowed(_) => body,
            Cow::Owned(o) => Bytes::from(o),
        },
        None => body,
    }
}

/// Where the secret `want` starts at `text[start..]`, the end of the match.
fn match_at(text: &[u8], start: usize, want: &[char]) -> Option<usize> {
    let mut i = start;
    for &c in want {
        i = one_char(text, i, c)?;
    }
    Some(i)
}

/// Matches `c` at `text[i..]`, written raw or JSON-escaped; the index after it.
fn one_char(text: &[u8], i: usize, c: char) -> Option<usize> {
    let mut buf = [0u8; 4];
    let raw = c.encode_utf8(&mut buf).as_bytes();
    if text.get(i..i + raw.len()) == Some(raw) {
        return Some(i + raw.len());
    }
    if text.get(i) != Some(&b'\\') {
        return None;
    }
    match text.get(i + 1)? {
        b'/' if c == '/' => Some(i + 2),
        b'\\' if c == '\\' => Some(i + 2),
        b'"' if c == '"' => Some(i + 2),
        b'u' => {
            let hex = std::str::from_utf8(text.get(i + 2..i + 6)?).ok()?;
            let unit = u32::from_str_radix(hex, 16).ok()?;
            (char::from_u32(unit) == Some(c)).then_some(i + 6)
        }
        _ => None,
    }
}

/// At most `max` characters of `b` (lossy UTF-8), with `…` when cut. Callers redact first.
pub fn truncate_utf8(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(b);
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_config::{BaseUrl, ModelKind, ProviderConfig, Secret};
    use sluice_policy::{Provider, ProviderId, RuntimeState};

    use super::*;

    fn target(key: Option<&str>) -> Target {
        let rt = RuntimeState::new();
        let kind = ProviderKind::OpenAi {
            base_url: BaseUrl {
                tls: true,
                host: "api.example.com".into(),
                port: 443,
                path: "/v1".into(),
            },
            api_key_env: Some("K".into()),
            api_key: key.map(Secret::new),
            connect_timeout: Duration::from_secs(1),
            compat: sluice_config::OpenAiCompat::default(),
        };
        Target {
            model: Arc::from("m"),
            upstream_model: Arc::from("m"),
            state: rt.target(
                "up",
                "m",
                sluice_policy::runtime::TargetIdentity {
                    provider: sluice_policy::runtime::ProviderKindId::of(&kind),
                    upstream_model: "m".into(),
                },
            ),
            provider: Arc::new(Provider {
                id: ProviderId(0),
                name: Arc::from("up"),
                config: ProviderConfig {
                    name: "up".into(),
                    kind,
                    egress: sluice_config::Egress::default(),
                },
            }),
            kind: ModelKind::Chat,
            pricing: None,
        }
    }

    #[test]
    fn provider_text_never_carries_the_provider_key() {
        let t = target(Some("sk-CANARY-1"));
        let quoted = "bad key sk-CANARY-1 (sk-CANARY-1)";
        assert_eq!(redact_text(quoted, &t), "bad key *** (***)");
        assert_eq!(
            &redact_body(Bytes::from(quoted), &t)[..],
            b"bad key *** (***)"
        );
        // Nothing to hide: the text is returned as it came.
        assert_eq!(redact_text("fine", &target(None)), "fine");
        let fine = Bytes::from_static(b"fine");
        assert_eq!(redact_body(fine.clone(), &t).as_ptr(), fine.as_ptr());
    }

    #[test]
    fn json_escaped_spellings_are_redacted_too() {
        let key = "sk-A/b+c";
        for spelled in [
            r#"{"m":"sk-A\/b+c"}"#,
            r#"{"m":"\u0073k-A/b+c"}"#,
            r#"{"m":"\u0073\u006b\u002d\u0041\u002f\u0062\u002b\u0063"}"#,
        ] {
            let out = redact_secret(spelled.as_bytes(), key);
            assert_eq!(&*out, br#"{"m":"***"}"#, "{spelled}");
        }
        let near = br#"{"m":"sk-A/b+d"}"#;
        assert!(matches!(redact_secret(near, key), Cow::Borrowed(_)));
    }

    #[test]
    fn redaction_comes_before_truncation() {
        let key = "sk-CANARY-0123456789abcdef";
        // The key straddles the quoting limit: cut first, its prefix would survive.
        let text = format!("{}{key} trailing", "x".repeat(QUOTE_CHARS - 8));
        let quoted = truncate_utf8(&redact_secret(text.as_bytes(), key), QUOTE_CHARS);
        for n in 9..=key.len() {
            assert!(
                !quoted.contains(&key[..n]),
                "prefix of {n} chars leaked: {quoted}"
            );
        }
    }
}
