//! How the validated policy is shown (the admin view, `sluice check --diff`): durations as
//! `10s`, instants in RFC 3339, digests shortened to what identifies them. Secrets are `***`
//! (see [`crate::Secret`]).

use std::time::{Duration, SystemTime};

use serde::Serializer;

pub(crate) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub(crate) fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

/// The first 8 hex digits: enough to tell keys apart, too little to attack a weak key with.
pub(crate) fn digest<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}…", hex_prefix(d)))
}

fn hex_prefix(d: &[u8; 32]) -> String {
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shown_policy_carries_no_secret() {
        let yaml = r#"
providers:
  up: { kind: openai, base_url: "https://api.example.com/v1", api_key_env: KEY }
  corp:
    kind: openai
    base_url: "https://llm.corp.example/v1"
    headers: { x-org: org-1, x-token: { env: TOKEN } }
    proxy: { url: "http://proxy.corp:3128", credentials_env: PROXY_CREDS }
models:
  m: { provider: up }
keys:
  - { name: k, key_sha256: "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213", tenant: t, expires: "2030-01-01T00:00:00Z" }
"#;
        let c = crate::load_str_with_env(yaml, "t.yaml", &|v| {
            Some(
                if v == "PROXY_CREDS" {
                    "user:SECRET-pw"
                } else {
                    "sk-live-SECRET-123"
                }
                .into(),
            )
        })
        .expect("valid")
        .config;
        let json = serde_json::to_string(&c).expect("serialises");
        assert!(!json.contains("SECRET"), "{json}");
        assert!(json.contains(r#""api_key":"***""#), "{json}");
        assert!(json.contains(r#""api_key_env":"KEY""#), "{json}");
        assert!(
            json.contains(r#"{"name":"x-token","value":{"env":"TOKEN","value":"***"}}"#),
            "{json}"
        );
        assert!(json.contains(r#""credentials":"***""#), "{json}");
        assert!(json.contains(r#""key_sha256":"1c590839…""#), "{json}");
        assert!(
            !json.contains("af894cf2"),
            "the digest is shortened: {json}"
        );
        assert!(
            json.contains(r#""expires":"2030-01-01T00:00:00Z""#),
            "{json}"
        );
        assert!(json.contains(r#""kind":"openai""#), "{json}");
        assert!(
            json.contains(r#""shutdown_grace":"10s""#),
            "durations read as in the file: {json}"
        );
    }
}
