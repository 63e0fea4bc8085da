//! The console's pages and the operator actions, on the admin listener.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use pingora::protocols::http::ServerSession;

use super::{Admin, Answer};
use crate::console::{self, operator};

/// The largest body a login form or an operator command may have.
const MAX_BODY: usize = 8 << 10;
/// How long an operator command may wait for the SLO service to apply it.
const COMMAND_WAIT: Duration = Duration::from_secs(5);

impl Answer {
    fn page(status: u16, content_type: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type,
            body: body.as_bytes().to_vec(),
            challenge: false,
            headers: console::PAGE_HEADERS
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect(),
        }
    }

    fn see_other(location: &'static str) -> Self {
        let mut a = Self::page(303, "text/plain", "");
        a.headers.push(("location", location.to_owned()));
        a
    }
}

impl Admin {
    /// `/console`, its assets, login and logout. Everything else the console shows comes from
    /// the `/admin/*` JSON, authorized by the session cookie.
    pub(super) async fn console_page(
        &self,
        session: &mut ServerSession,
        path: &str,
        method: &Method,
    ) -> Answer {
        let policy = self.state.policy.snapshot();
        let secure = policy.server.admin_tls.is_some();
        let now = tokio::time::Instant::now();
        let signed_in = || {
            console::session_cookie(session)
                .and_then(|c| self.console.sessions.holder(c, &policy, now))
                .is_some()
        };
        match (path, method) {
            ("/console" | "/console/", &Method::GET) => {
                if signed_in() {
                    Answer::page(200, "text/html; charset=utf-8", console::APP_HTML)
                } else {
                    Answer::page(200, "text/html; charset=utf-8", &console::login_page(None))
                }
            }
            ("/console/app.js", &Method::GET) => {
                Answer::page(200, "text/javascript; charset=utf-8", console::APP_JS)
            }
            ("/console/app.css", &Method::GET) => {
                Answer::page(200, "text/css; charset=utf-8", console::APP_CSS)
            }
            ("/console/login", &Method::POST) => {
                if console::is_cross_site(session) {
                    return Answer::page(
                        403,
                        "text/html; charset=utf-8",
                        &console::login_page(Some("A login from another site is refused.")),
                    );
                }
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(a) => return a,
                };
                let token = console::form_token(&body).unwrap_or_default();
                if token.is_empty() || policy.admin(token.trim()).is_none() {
                    return Answer::page(
                        401,
                        "text/html; charset=utf-8",
                        &console::login_page(Some("That admin token is not valid.")),
                    );
                }
                match self.console.sessions.open(token.trim(), now) {
                    Ok(id) => {
                        let mut a = Answer::see_other("/console");
                        a.headers
                            .push(("set-cookie", console::set_cookie(&id, secure)));
                        a
                    }
                    Err(_) => Answer::error(500, "server_error", "cannot open a session"),
                }
            }
            ("/console/logout", &Method::POST) => {
                if console::is_cross_site(session) {
                    return Answer::error(
                        403,
                        "permission_error",
                        "a console request from another site is refused",
                    );
                }
                if let Some(c) = console::session_cookie(session) {
                    self.console.sessions.close(c);
                }
                let mut a = Answer::see_other("/console");
                a.headers
                    .push(("set-cookie", console::clear_cookie(secure)));
                a
            }
            ("/console" | "/console/" | "/console/app.js" | "/console/app.css", _)
            | ("/console/login" | "/console/logout", _) => {
                Answer::error(405, "invalid_request_error", "method not allowed")
            }
            _ => Answer::error(404, "invalid_request_error", "no such console page"),
        }
    }

    /// An operator action: handed to the SLO service without waiting, then its answer awaited
    /// here, on the admin listener's own thread.
    pub(super) async fn operator(
        &self,
        session: &mut ServerSession,
        op: Result<operator::Op, &'static str>,
        who: Arc<str>,
    ) -> Answer {
        let op = match op {
            Ok(op) => op,
            Err(why) => return Answer::error(400, "invalid_request_error", why),
        };
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(a) => return a,
        };
        let note = match operator::parse_note(&body) {
            Ok(n) => n,
            Err(why) => return Answer::error(400, "invalid_request_error", &why),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let cmd = operator::Command {
            op,
            by: who,
            note,
            reply,
        };
        if !self.console.commands.offer(cmd) {
            return Answer::error(
                503,
                "server_error",
                "the remediation controller is busy or stopped; try again",
            );
        }
        match tokio::time::timeout(COMMAND_WAIT, answer).await {
            Ok(Ok(Ok(done))) => Answer::json(200, &done),
            Ok(Ok(Err(refused))) => Answer::error(
                refused.status(),
                "invalid_request_error",
                &refused.to_string(),
            ),
            Ok(Err(_)) | Err(_) => Answer::error(
                503,
                "server_error",
                "the remediation controller did not answer in time; see /admin/incidents",
            ),
        }
    }
}

/// The request body, up to [`MAX_BODY`].
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Answer> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(Answer::error(
                        413,
                        "invalid_request_error",
                        "the body is too large",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                return Err(Answer::error(
                    400,
                    "invalid_request_error",
                    "cannot read the body",
                ));
            }
        }
    }
}
