//! How a provider is reached from inside a company network: extra request headers, a CA
//! bundle, an egress proxy, and per-provider connection settings (issue 20).
//!
//! The proxy decision is made once, at load: a provider's host is fixed by its `base_url`, so
//! whether it goes through a proxy (the policy's, else `HTTPS_PROXY`/`HTTP_PROXY`) and whether
//! `no_proxy` exempts it are pure functions of the policy and the environment.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{BaseUrl, Secret};

/// A provider's connection settings beyond its `base_url`. All default to "as before":
/// no extra headers, the system roots, no proxy (unless the environment names one), the
/// server-wide pool.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Default)]
pub struct Egress {
    /// Sent with every request to this provider, after Sluice's own headers.
    pub headers: Vec<ExtraHeader>,
    /// A PEM bundle trusted for this provider's TLS.
    pub ca_file: Option<PathBuf>,
    /// `ca_file` is the only trust (not added to the system roots).
    pub ca_replaces_roots: bool,
    /// The proxy this provider's connections go through; `None` connects directly.
    pub proxy: Option<ProxyConfig>,
    /// Idle connections kept for this provider; `None` shares the server-wide pool.
    pub pool_size: Option<usize>,
    /// How long an idle pooled connection is kept (default 90s).
    #[serde(serialize_with = "crate::ser::opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive idle time on this provider's connections.
    #[serde(serialize_with = "crate::ser::opt_duration")]
    pub tcp_keepalive: Option<Duration>,
    /// The name TLS asks for (SNI) and checks the certificate against, instead of the host
    /// of `base_url` (for providers reached by IP).
    pub tls_server_name: Option<String>,
    /// Which HTTP version requests to this provider use.
    pub http_version: HttpVersion,
}

/// `http_version` of a provider.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/1.1 on pooled connections, one request at a time each (the default).
    #[default]
    Http1,
    /// HTTP/2: over TLS by ALPN (a provider that refuses it fails the attempt), or with prior
    /// knowledge (h2c) to an `http://` base_url. Many concurrent streams share one connection.
    H2,
    /// HTTP/2 when the provider's ALPN answer picks it, else HTTP/1.1 (https only).
    Auto,
}

impl HttpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2 => "h2",
            Self::Auto => "auto",
        }
    }
}

impl Egress {
    /// Nothing beyond the defaults: the plain, shared connection path serves it.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One extra request header.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ExtraHeader {
    /// As written in the policy (sent lowercased).
    pub name: String,
    pub value: HeaderValue,
}

/// A header value: written in the policy, or read from the environment at load.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum HeaderValue {
    Static(String),
    /// Shown as `{ env: NAME, value: "***" }`: the value itself never leaves the process.
    Env {
        env: String,
        value: Option<Secret>,
    },
}

impl HeaderValue {
    /// What is sent; `None` when the environment variable is not set.
    pub fn expose(&self) -> Option<&str> {
        match self {
            Self::Static(v) => Some(v),
            Self::Env { value, .. } => value.as_ref().map(Secret::expose),
        }
    }
}

/// An HTTP forward proxy: CONNECT tunnels for https targets, absolute-form requests for http.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// `policy` or the environment variable it came from (`HTTPS_PROXY`, …).
    pub source: String,
    /// An `https://` proxy: TLS to the proxy itself, then CONNECT (or the plain request)
    /// inside it. Its certificate is checked like the provider's (system roots and `ca_file`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The variable holding `user:password` (policy), if any.
    pub credentials_env: Option<String>,
    /// `user:password` for `Proxy-Authorization: Basic`, read at load.
    pub credentials: Option<Secret>,
}

impl ProxyConfig {
    /// `host:port` as a CONNECT target or `Host` is written (IPv6 in brackets).
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, IPv6 in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether `host:port` is exempt from proxying under a `no_proxy` list, with the usual
/// meaning of its entries: `*` (everything), a domain (`example.com` or `.example.com`:
/// itself and every subdomain), an IP address, a CIDR block (`10.0.0.0/8`), each optionally
/// with `:port`. Matching ignores case.
pub fn no_proxy_matches(list: &[String], host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    list.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        let (pattern, entry_port) = split_entry_port(&entry);
        if entry_port.is_some_and(|p| p != port) {
            return false;
        }
        let pattern = pattern.trim_start_matches('[').trim_end_matches(']');
        if let Some((net, bits)) = pattern.split_once('/') {
            return match (ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                _ => false,
            };
        }
        if let Ok(addr) = pattern.parse::<IpAddr>() {
            return ip == Some(addr);
        }
        let domain = pattern.trim_start_matches("*.").trim_start_matches('.');
        !domain.is_empty()
            && (host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.')))
    })
}

/// `host:port` → (`host`, port); a bare IPv6 address has no port.
fn split_entry_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    if entry.matches(':').count() == 1
        && let Some((host, port)) = entry.split_once(':')
        && let Ok(port) = port.parse()
    {
        return (host, Some(port));
    }
    (entry, None)
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Loopback is never sent through a proxy taken from the environment: a proxy set for the
/// whole machine must not capture a provider on the same host (a local model server).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where a provider's proxy setting comes from, before `no_proxy` is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySource<'a> {
    /// `proxy.url` in the policy.
    Policy,
    /// An environment variable (its name).
    Env(&'a str),
}

/// The environment variables consulted for a target, in order: the scheme's own, upper then
/// lower case (curl reads `http_proxy` lowercase only; both are accepted here).
pub fn proxy_env_vars(tls: bool) -> [&'static str; 2] {
    if tls {
        ["HTTPS_PROXY", "https_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy"]
    }
}

/// The proxy decision for one provider: `Some(source)` when its connections go through a
/// proxy. `policy_url` is whether the policy names one; `env_var` the first set proxy variable
/// for the target's scheme; `no_proxy` the policy's list when it has one, else `NO_PROXY`.
pub fn choose_proxy<'a>(
    target: &BaseUrl,
    policy_url: bool,
    env_var: Option<&'a str>,
    no_proxy: &[String],
) -> Option<ProxySource<'a>> {
    let source = if policy_url {
        ProxySource::Policy
    } else {
        let var = env_var?;
        if is_loopback(&target.host) {
            return None;
        }
        ProxySource::Env(var)
    };
    (!no_proxy_matches(no_proxy, &target.host, target.port)).then_some(source)
}

/// A parsed proxy URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `https://`: TLS to the proxy.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `user:password` when the URL carries it.
    pub userinfo: Option<String>,
}

/// Parses a proxy URL: `http://host[:port]` (port 80 when absent) or `https://host[:port]`
/// (443), with a trailing `/` allowed. Errors never repeat the user info.
pub fn parse_proxy_url(s: &str) -> Result<ProxyUrl, String> {
    let s = s.trim();
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("expected an http:// or https:// URL such as `http://proxy.corp:3128`")?;
    let tls = if scheme.eq_ignore_ascii_case("http") {
        false
    } else if scheme.eq_ignore_ascii_case("https") {
        true
    } else {
        return Err(format!(
            "expected an http:// or https:// proxy URL, found `{scheme}://` (SOCKS proxies are not supported)"
        ));
    };
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h),
        None => (None, rest),
    };
    let scheme = if tls { "https" } else { "http" };
    let url = BaseUrl::parse(&format!("{scheme}://{hostport}"))?;
    if !url.path.is_empty() {
        return Err(format!(
            "a proxy URL has no path; expected `{scheme}://host:port`"
        ));
    }
    Ok(ProxyUrl {
        tls,
        host: url.host,
        port: url.port,
        userinfo,
    })
}

/// Splits a `NO_PROXY` value into its entries.
pub fn split_no_proxy(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &str) -> Vec<String> {
        split_no_proxy(entries)
    }

    #[test]
    fn no_proxy_entries_match_as_curl_reads_them() {
        let cases: &[(&str, &str, u16, bool)] = &[
            ("", "api.openai.com", 443, false),
            ("*", "api.openai.com", 443, true),
            ("openai.com", "api.openai.com", 443, true),
            ("openai.com", "openai.com", 443, true),
            (".openai.com", "api.openai.com", 443, true),
            (".openai.com", "openai.com", 443, true),
            ("*.openai.com", "api.openai.com", 443, true),
            ("openai.com", "notopenai.com", 443, false),
            ("OpenAI.COM", "api.openai.com", 443, true),
            ("api.openai.com:443", "api.openai.com", 443, true),
            ("api.openai.com:8443", "api.openai.com", 443, false),
            ("10.0.0.0/8", "10.1.2.3", 443, true),
            ("10.0.0.0/8", "11.1.2.3", 443, false),
            ("10.0.0.0/8", "ten.corp", 443, false),
            ("192.168.1.7", "192.168.1.7", 80, true),
            ("192.168.1.7", "192.168.1.8", 80, false),
            ("::1", "::1", 80, true),
            ("[::1]:8080", "::1", 8080, true),
            ("fd00::/8", "fd12::1", 443, true),
            ("fd00::/8", "fe80::1", 443, false),
            ("localhost, .internal", "llm.internal", 443, true),
            ("localhost, .internal", "llm.external", 443, false),
            ("10.0.0.0/33", "10.0.0.1", 443, false),
        ];
        for (entries, host, port, want) in cases {
            assert_eq!(
                no_proxy_matches(&list(entries), host, *port),
                *want,
                "no_proxy `{entries}` against {host}:{port}"
            );
        }
    }

    /// Target, policy names a proxy, proxy variable set, no_proxy, decision.
    type Case<'a> = (
        &'a BaseUrl,
        bool,
        Option<&'a str>,
        &'a [String],
        Option<ProxySource<'a>>,
    );

    #[test]
    fn the_proxy_decision() {
        let remote = BaseUrl::parse("https://api.openai.com/v1").expect("url");
        let local = BaseUrl::parse("http://127.0.0.1:8000/v1").expect("url");
        let none: Vec<String> = Vec::new();
        let exempt = list(".openai.com");
        let cases: &[Case<'_>] = &[
            (&remote, false, None, &none, None),
            (&remote, true, None, &none, Some(ProxySource::Policy)),
            (
                &remote,
                true,
                Some("HTTPS_PROXY"),
                &none,
                Some(ProxySource::Policy),
            ),
            (
                &remote,
                false,
                Some("HTTPS_PROXY"),
                &none,
                Some(ProxySource::Env("HTTPS_PROXY")),
            ),
            (&remote, false, Some("HTTPS_PROXY"), &exempt, None),
            (&remote, true, None, &exempt, None),
            // A machine-wide proxy never captures loopback; one the policy names does.
            (&local, false, Some("HTTP_PROXY"), &none, None),
            (&local, true, None, &none, Some(ProxySource::Policy)),
        ];
        for (url, policy, env, no_proxy, want) in cases {
            assert_eq!(
                &choose_proxy(url, *policy, *env, no_proxy),
                want,
                "{url:?} policy={policy} env={env:?} no_proxy={no_proxy:?}"
            );
        }
    }

    #[test]
    fn proxy_urls() {
        let url = |tls, host: &str, port, userinfo: Option<&str>| {
            Ok(ProxyUrl {
                tls,
                host: host.into(),
                port,
                userinfo: userinfo.map(str::to_owned),
            })
        };
        assert_eq!(
            parse_proxy_url("http://proxy.corp:3128"),
            url(false, "proxy.corp", 3128, None)
        );
        assert_eq!(
            parse_proxy_url("http://proxy.corp/"),
            url(false, "proxy.corp", 80, None)
        );
        assert_eq!(
            parse_proxy_url("http://u:p@10.0.0.1:8080"),
            url(false, "10.0.0.1", 8080, Some("u:p"))
        );
        assert_eq!(
            parse_proxy_url("HTTPS://proxy.corp"),
            url(true, "proxy.corp", 443, None)
        );
        assert_eq!(
            parse_proxy_url("https://u:secret@proxy:8443"),
            url(true, "proxy", 8443, Some("u:secret"))
        );
        let err = parse_proxy_url("socks5://u:secret@proxy:1080").expect_err("socks");
        assert!(!err.contains("secret"), "{err}");
        let err = parse_proxy_url("https://u:secret@proxy:8443/path").expect_err("path");
        assert!(!err.contains("secret"), "{err}");
        assert!(parse_proxy_url("proxy.corp:3128").is_err());
        assert!(parse_proxy_url("http://proxy.corp:3128/path").is_err());
    }
}
