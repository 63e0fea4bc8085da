//! The operator's console at `/console` on the admin listener: a login page, a session kept
//! server-side, and a single page (plain HTML, CSS and JS embedded in the binary) that polls
//! the `/admin/*` JSON.
//!
//! A session is a random 256-bit id in an `HttpOnly; SameSite=Strict` cookie (`Secure` when
//! the admin listener serves TLS). The server keeps only the id's SHA-256, the SHA-256 of the
//! admin token it was opened with (so a reload that removes the token ends the session) and
//! an expiry; the token itself is never kept or put in a URL. `admin::authorize` accepts such
//! a cookie in place of the bearer token, and [`cross_site`] refuses cookie-carried changes
//! that a browser says came from another site.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pingora::protocols::http::ServerSession;
use sha2::{Digest, Sha256};
use sluice_policy::Policy;
use tokio::time::Instant;

pub mod operator;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_console";
/// How long a session lasts from login.
pub const TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once; the oldest goes first past this.
const MAX_SESSIONS: usize = 256;

pub const LOGIN_HTML: &str = include_str!("assets/login.html");
pub const APP_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const APP_CSS: &str = include_str!("assets/app.css");

/// Headers on every console page: no framing, no caching, nothing loaded from elsewhere.
pub const PAGE_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    // Not `no-referrer`: with it a browser sends `Origin: null` on the console's own POSTs.
    ("referrer-policy", "same-origin"),
    ("cache-control", "no-store"),
];

/// What the admin listener keeps for the console: its sessions, and the feed of operator
/// commands into the SLO service.
pub struct Console {
    pub sessions: Sessions,
    pub commands: sluice_observability::service::Feed<operator::Command>,
}

struct Entry {
    /// SHA-256 of the admin token the session was opened with.
    token: [u8; 32],
    expires: Instant,
}

/// The open console sessions.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Sessions {
    /// Opens a session for `token` (already checked); returns the cookie value.
    pub fn open(&self, token: &str, now: Instant) -> Result<String, getrandom::Error> {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id)?;
        let cookie = hex::encode(id);
        let mut map = self.lock();
        map.retain(|_, e| e.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            digest(&cookie),
            Entry {
                token: sluice_policy::hash_key(token),
                expires: now + TTL,
            },
        );
        Ok(cookie)
    }

    /// The holder of the token behind a live session, named as a console session.
    pub fn holder(&self, cookie: &str, policy: &Policy, now: Instant) -> Option<Arc<str>> {
        let key = digest(cookie);
        let mut map = self.lock();
        let entry = map.get(&key)?;
        if entry.expires <= now {
            map.remove(&key);
            return None;
        }
        let name = policy.admin_by_hash(&entry.token)?;
        Some(Arc::from(format!("{name} (console)")))
    }

    /// Ends a session (logout).
    pub fn close(&self, cookie: &str) {
        self.lock().remove(&digest(cookie));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn session_cookie(session: &ServerSession) -> Option<&str> {
    session
        .req_header()
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| cookie_value(v, COOKIE))
}

/// `name`'s value in one `Cookie` header line.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// `Set-Cookie` opening a session.
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` ending a session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a browser says this request came from another site: `Sec-Fetch-Site` other than
/// `same-origin` or `none`, or an `Origin` whose host is not the request's `Host`. A request
/// carrying neither (not from a browser) is not cross-site.
pub fn cross_site(sec_fetch_site: Option<&str>, origin: Option<&str>, host: Option<&str>) -> bool {
    if let Some(site) = sec_fetch_site
        && !matches!(site.trim(), "same-origin" | "none")
    {
        return true;
    }
    match origin.map(str::trim) {
        None => false,
        Some(origin) => {
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            match (authority, host) {
                (Some(a), Some(h)) => !a.eq_ignore_ascii_case(h.trim()),
                _ => true,
            }
        }
    }
}

/// [`cross_site`] for a request.
pub fn is_cross_site(session: &ServerSession) -> bool {
    let header = |name: &str| session.get_header(name).and_then(|v| v.to_str().ok());
    let host = header("host").or_else(|| session.req_header().uri.authority().map(|a| a.as_str()));
    cross_site(header("sec-fetch-site"), header("origin"), host)
}

/// The `token` field of an `application/x-www-form-urlencoded` login form.
pub fn form_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| url_decode(v)).flatten()
    })
}

fn url_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The login page, with an error line when a login failed.
pub fn login_page(error: Option<&str>) -> String {
    let line = error.map_or_else(String::new, |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, escape(e))
    });
    LOGIN_HTML.replace("<!--error-->", &line)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_table() {
        let host = Some("127.0.0.1:9090");
        for (site, origin, want) in [
            (None, None, false),
            (Some("same-origin"), None, false),
            (Some("none"), None, false),
            (Some("cross-site"), None, true),
            (Some("same-site"), None, true),
            (None, Some("http://127.0.0.1:9090"), false),
            (None, Some("https://127.0.0.1:9090"), false),
            (None, Some("http://evil.example"), true),
            (None, Some("null"), true),
            (Some("same-origin"), Some("http://evil.example"), true),
        ] {
            assert_eq!(cross_site(site, origin, host), want, "{site:?} {origin:?}");
        }
        assert!(cross_site(None, Some("http://127.0.0.1:9090"), None));
    }

    #[test]
    fn cookies_and_forms_are_read() {
        assert_eq!(
            cookie_value("a=1; sluice_console=abc; b=2", COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("sluice_console=", COOKIE), None);
        assert_eq!(cookie_value("xsluice_console=abc", COOKIE), None);
        assert_eq!(
            form_token(b"x=1&token=sk-a%2Bb+c").as_deref(),
            Some("sk-a+b c")
        );
        assert_eq!(form_token(b"token=%zz"), None);
        assert_eq!(form_token(b"other=1"), None);
        let c = set_cookie("id", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("id", false).contains("Secure"));
    }

    #[test]
    fn login_errors_are_escaped() {
        let page = login_page(Some("<script>"));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
    }
}
