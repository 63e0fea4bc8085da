//! `base_url` of an OpenAI-compatible provider: scheme, host, port and path prefix, nothing else.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Where an upstream API lives, e.g. `https://api.openai.com/v1`.
///
/// Only `http://` and `https://`, a host (DNS name, IPv4, or `[IPv6]`), an optional port and
/// an optional path. No user info, query or fragment.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https`.
    pub tls: bool,
    /// Lowercase DNS name or IP address; IPv6 without brackets (`::1`).
    pub host: String,
    /// The given port, else 443 for https and 80 for http.
    pub port: u16,
    /// `""` or a prefix such as `/v1`; never a trailing slash.
    pub path: String,
}

impl BaseUrl {
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    fn default_port(&self) -> u16 {
        if self.tls { 443 } else { 80 }
    }

    /// What goes in the `Host` header: the host (IPv6 in brackets), with `:port` unless it
    /// is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Parses a base URL. The error says what was wrong without repeating parts of the URL
    /// that could carry credentials (user info, query).
    pub fn parse(s: &str) -> Result<Self, String> {
        const EXAMPLE: &str = "`https://api.openai.com/v1`";
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!(
                "expected an http:// or https:// URL such as {EXAMPLE}, found `{s}`"
            ));
        };
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => {
                return Err(format!(
                    "expected an http:// or https:// URL, found scheme `{scheme}://`"
                ));
            }
        };
        if rest.contains('?') {
            return Err(
                "must not contain a query (`?…`); expected scheme, host, optional port and path"
                    .to_owned(),
            );
        }
        if rest.contains('#') {
            return Err(
                "must not contain a fragment (`#…`); expected scheme, host, optional port and path"
                    .to_owned(),
            );
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(
                "must not contain user info (`user@`); put the API key in an environment variable named by api_key_env"
                    .to_owned(),
            );
        }
        if authority.is_empty() {
            return Err(format!("expected a host after `{scheme}://`, found none"));
        }
        let (host, port) = split_host_port(authority)?;
        let host = check_host(host)?;
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("expected a port between 1 and 65535, found `{p}`")),
            },
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the path must not contain spaces or control characters".to_owned());
        }
        let path = path.trim_end_matches('/').to_owned();
        Ok(Self {
            tls,
            host,
            port,
            path,
        })
    }
}

/// Splits `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "expected `]` to close the IPv6 address in `{authority}`"
            ));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "expected an IPv6 address in brackets, found `[{host}]`"
            ));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!(
                    "expected `:port` or a path after `[{host}]`, found `{after}`"
                )),
            },
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

/// Checks a DNS name or IPv4 address (IPv6 was checked by `split_host_port`).
fn check_host(host: &str) -> Result<String, String> {
    if host.contains(':') {
        // An IPv6 address that came out of brackets.
        return Ok(host.to_ascii_lowercase());
    }
    if host.is_empty() {
        return Err("expected a host name or IP address, found none".to_owned());
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(host.to_owned()),
            Err(_) => Err(format!("expected an IPv4 address, found `{host}`")),
        };
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "expected a host name (letters, digits, `-` and `.`) or an IP address, found `{host}`"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> BaseUrl {
        BaseUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_usual_forms() {
        let u = ok("https://api.openai.com/v1");
        assert_eq!(
            u,
            BaseUrl {
                tls: true,
                host: "api.openai.com".into(),
                port: 443,
                path: "/v1".into()
            }
        );
        assert_eq!(u.to_string(), "https://api.openai.com/v1");

        let u = ok("http://127.0.0.1:9000/");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 9000, "")
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:9000");

        let u = ok("HTTP://[::1]:8081/v1//");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8081, "/v1")
        );
        assert_eq!(u.authority(), "[::1]:8081");
        assert_eq!(u.to_string(), "http://[::1]:8081/v1");

        let u = ok("https://Example.COM:443");
        assert_eq!(u.to_string(), "https://example.com");
        assert_eq!(
            ok("http://mock_llm:80/a/b").to_string(),
            "http://mock_llm/a/b"
        );
    }

    #[test]
    fn rejects_what_it_should() {
        for (input, want) in [
            (
                "ftp://x.org",
                "expected an http:// or https:// URL, found scheme `ftp://`",
            ),
            (
                "api.openai.com/v1",
                "expected an http:// or https:// URL such as `https://api.openai.com/v1`, found `api.openai.com/v1`",
            ),
            (
                "https://x.org/v1?key=abc",
                "must not contain a query (`?…`); expected scheme, host, optional port and path",
            ),
            (
                "https://x.org/#frag",
                "must not contain a fragment (`#…`); expected scheme, host, optional port and path",
            ),
            (
                "https://u:p@x.org",
                "must not contain user info (`user@`); put the API key in an environment variable named by api_key_env",
            ),
            ("https://", "expected a host after `https://`, found none"),
            (
                "https://:80",
                "expected a host name or IP address, found none",
            ),
            (
                "https://x.org:0",
                "expected a port between 1 and 65535, found `0`",
            ),
            (
                "https://x.org:http",
                "expected a port between 1 and 65535, found `http`",
            ),
            (
                "https://999.1.1.1",
                "expected an IPv4 address, found `999.1.1.1`",
            ),
            (
                "https://[::zz]",
                "expected an IPv6 address in brackets, found `[::zz]`",
            ),
            (
                "https://[::1",
                "expected `]` to close the IPv6 address in `[::1`",
            ),
            (
                "https://a..b",
                "expected a host name (letters, digits, `-` and `.`) or an IP address, found `a..b`",
            ),
            (
                "https://x.org/a b",
                "the path must not contain spaces or control characters",
            ),
        ] {
            assert_eq!(BaseUrl::parse(input).expect_err(input), want, "{input}");
        }
    }
}
