//! The operator's console through the real binary: the login page without a session, a wrong
//! token refused, the session cookie's attributes, the admin API by cookie (and not without),
//! cross-site changes refused, logout, and each operator action in the incident timeline.

use reqwest::Method;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::common::{self, ADMIN_TOKEN, TestGateway, eventually};

/// A client that shows redirects instead of following them, and keeps no cookies itself.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

const SIMPLE: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up, upstream_model: m }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets: [ { model: m } ]\n";

/// Logs in and returns the `name=value` to send back as `Cookie`.
async fn login(gw: &TestGateway) -> String {
    let r = client()
        .post(gw.admin_url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let set = r
        .headers()
        .get(SET_COOKIE)
        .expect("set-cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    set.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn without_a_session_only_the_login_page_is_shown_and_a_wrong_token_is_refused() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(SIMPLE, &mock).await;

    for cookie in [None, Some("sluice_console=0123abcd")] {
        let mut req = client().get(gw.admin_url("/console"));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.expect("console");
        assert_eq!(r.status(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let page = r.text().await.expect("page");
        assert!(page.contains(r#"action="/console/login""#), "{page}");
        assert!(
            !page.contains("app.js"),
            "the app is not served without a session"
        );
    }

    let r = client()
        .post(gw.admin_url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=sk-not-the-admin-token")
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let page = r.text().await.expect("page");
    assert!(page.contains("not valid"), "{page}");
    assert!(!page.contains("sk-not-the-admin-token"));

    // A login posted from another site is refused even with the right token.
    let r = client()
        .post(gw.admin_url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://evil.example")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 403);
    assert!(r.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_session_cookie_authorizes_the_admin_api_until_logout() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(SIMPLE, &mock).await;

    let r = client()
        .post(gw.admin_url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console");
    let set = r.headers()[SET_COOKIE].to_str().expect("ascii").to_owned();
    assert!(set.starts_with("sluice_console="), "{set}");
    assert!(set.contains("; HttpOnly"), "{set}");
    assert!(set.contains("; SameSite=Strict"), "{set}");
    assert!(set.contains("; Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP admin listener: {set}");
    assert!(!set.contains(ADMIN_TOKEN), "the token is never the session");
    let cookie = set.split(';').next().expect("pair").to_owned();
    assert_eq!(cookie.len(), "sluice_console=".len() + 64, "{cookie}");

    // The app itself, and its assets.
    let page = client()
        .get(gw.admin_url("/console"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("app")
        .text()
        .await
        .expect("text");
    assert!(page.contains("/console/app.js"), "{page}");
    let js = client()
        .get(gw.admin_url("/console/app.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript")
    );

    // The admin API: with the cookie yes, without no.
    for path in [
        "/admin/targets",
        "/admin/slo",
        "/admin/incidents",
        "/admin/judge/recent",
        "/admin/policy",
    ] {
        let with = client()
            .get(gw.admin_url(path))
            .header(COOKIE, &cookie)
            .send()
            .await
            .expect("with cookie");
        assert_eq!(with.status(), 200, "{path}");
        let without = client().get(gw.admin_url(path)).send().await.expect("bare");
        assert_eq!(without.status(), 401, "{path}");
        let forged = client()
            .get(gw.admin_url(path))
            .header(COOKIE, "sluice_console=00ff")
            .send()
            .await
            .expect("forged");
        assert_eq!(forged.status(), 401, "{path}");
    }

    // A change carried by the cookie from another site is refused; the same from the
    // console's own origin goes through (and fails only for the unknown rule).
    for (name, value) in [
        ("origin", "http://evil.example".to_owned()),
        ("sec-fetch-site", "cross-site".to_owned()),
        ("sec-fetch-site", "same-site".to_owned()),
    ] {
        let r = client()
            .post(gw.admin_url("/admin/rules/nope/pause"))
            .header(COOKIE, &cookie)
            .header(name, value)
            .send()
            .await
            .expect("cross-site");
        assert_eq!(r.status(), 403, "{name}");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["error"]["type"], "permission_error");
    }
    let r = client()
        .post(gw.admin_url("/admin/rules/nope/pause"))
        .header(COOKIE, &cookie)
        .header("origin", format!("http://127.0.0.1:{}", gw.admin_port))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("same-origin");
    assert_eq!(r.status(), 404);
    // A reload by cookie from another site is refused too: every admin change is covered.
    let r = client()
        .post(gw.admin_url("/admin/reload"))
        .header(COOKIE, &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 403);

    // Logout ends the session on the server, not only in the browser.
    let r = client()
        .post(gw.admin_url("/console/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 303);
    let cleared = r.headers()[SET_COOKIE].to_str().expect("ascii");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let r = client()
        .get(gw.admin_url("/admin/targets"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("after logout");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn over_tls_the_session_cookie_is_also_secure() {
    let mock = common::mock_llm().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = crate::tls::Ca::new("console test CA");
    let (cert, key) = crate::tls::write_leaf(&ca, "sluice-admin", dir.path());
    let extra = format!(
        "  admin_tls: {{ cert: \"{}\", key: \"{}\" }}\n",
        cert.display(),
        key.display()
    );
    let gw = TestGateway::start_with(SIMPLE, &mock, &extra).await;
    let https = reqwest::Client::builder()
        .use_preconfigured_tls(crate::tls::client_config(&ca, &[b"http/1.1"], None))
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let url = |p: &str| format!("https://localhost:{}{p}", gw.admin_port);
    let login = eventually(async || {
        https
            .post(url("/console/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={ADMIN_TOKEN}"))
            .send()
            .await
            .ok()
    })
    .await
    .expect("login over TLS");
    assert_eq!(login.status(), 303);
    let set = login.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        set.contains("; HttpOnly") && set.contains("; SameSite=Strict"),
        "{set}"
    );
    assert!(set.ends_with("; Secure"), "{set}");
    let cookie = set.split(';').next().expect("pair").to_owned();
    let r = https
        .get(url("/admin/incidents"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("incidents");
    assert_eq!(r.status(), 200);
}

async fn incidents(gw: &TestGateway, cookie: &str) -> serde_json::Value {
    client()
        .get(gw.admin_url("/admin/incidents"))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("incidents")
        .json()
        .await
        .expect("json")
}

/// Every incident's events (open and recent).
fn all_events(v: &serde_json::Value) -> Vec<serde_json::Value> {
    ["open", "recent"]
        .iter()
        .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
        .flat_map(|i| i["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn operate(
    gw: &TestGateway,
    cookie: &str,
    path: &str,
    note: &str,
) -> (u16, serde_json::Value) {
    let r = client()
        .post(gw.admin_url(path))
        .header(COOKIE, cookie)
        .header("origin", format!("http://127.0.0.1:{}", gw.admin_port))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "note": note }).to_string())
        .send()
        .await
        .expect("operate");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

#[tokio::test]
async fn operator_actions_are_recorded_in_the_incident_timeline_with_who_did_them() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  flaky: { provider: up, upstream_model: \"flaky@503\" }\n  steady: { provider: up, upstream_model: steady }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets: [ { model: flaky }, { model: steady } ]\n    retry: { max_attempts: 2 }\n    health: { consecutive_failures: 1000, min_requests: 1000000 }\n    slos:\n      - { name: availability, objective: 99, sli: errors, min_events: 5 }\n    remediation:\n      - { name: fo, when: { slo: availability, burn: page }, do: failover, hold: 1m, probe_share: 0.1 }\nslo: { window_scale: 0.001, evaluate_every: 100ms }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let cookie = login(&gw).await;

    let active = eventually(async || {
        for _ in 0..10 {
            let r = gw
                .post("/v1/chat/completions", common::chat("chat", false))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
        }
        let v = incidents(&gw, &cookie).await;
        (v["open"][0]["phase"] == "active").then_some(v)
    })
    .await
    .expect("an active failover incident");
    let id = active["open"][0]["id"].as_u64().expect("id");

    // Acknowledge, from the console.
    let (status, done) = operate(
        &gw,
        &cookie,
        &format!("/admin/incidents/{id}/ack"),
        "looking at flaky",
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["incidents"][0], id);
    let v = incidents(&gw, &cookie).await;
    let ack = all_events(&v)
        .into_iter()
        .find(|e| e["kind"] == "operator" && e["op"] == "acknowledged")
        .expect("acknowledged in the timeline");
    assert_eq!(ack["incident"], id);
    assert_eq!(ack["by"], "test-admin (console)");
    assert_eq!(ack["note"], "looking at flaky");

    // Force-unwind: out of routing at once, and it stays out while the trigger holds.
    let (status, done) = operate(
        &gw,
        &cookie,
        &format!("/admin/incidents/{id}/unwind"),
        "flaky is fine, the SLO is noisy",
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let v = incidents(&gw, &cookie).await;
    let events = all_events(&v);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "operator" && e["op"] == "forced_unwind"),
        "{v}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "unwound" && e["reason"] == "operator"),
        "{v}"
    );
    assert_eq!(v["open"][0]["phase"], "overridden", "{v}");
    let slo: serde_json::Value = gw.admin_json("/admin/slo").await;
    assert_eq!(
        slo["routes"][0]["remediation"]["failover"],
        serde_json::json!([])
    );
    // Nothing is in place any more: a second unwind is a conflict.
    let (status, _) = operate(&gw, &cookie, &format!("/admin/incidents/{id}/unwind"), "").await;
    assert_eq!(status, 409);

    // Pause the rule with the bearer token: named by the token's holder.
    let r = gw
        .admin(Method::POST, "/admin/rules/fo/pause")
        .header("content-type", "application/json")
        .body(r#"{"note": "maintenance window"}"#)
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), 200);
    let v = incidents(&gw, &cookie).await;
    let paused = all_events(&v)
        .into_iter()
        .find(|e| e["kind"] == "operator" && e["op"] == "paused_rule")
        .expect("paused in the timeline");
    assert_eq!(paused["by"], "test-admin");
    assert_eq!(paused["rule"], "fo");
    assert_eq!(paused["note"], "maintenance window");
    let slo: serde_json::Value = gw.admin_json("/admin/slo").await;
    assert_eq!(slo["paused_rules"][0]["rule"], "fo");
    // While paused, the rule acts in dry-run only.
    let dry = eventually(async || {
        let v = incidents(&gw, &cookie).await;
        v["open"]
            .as_array()
            .and_then(|o| o.iter().find(|i| i["dry_run"] == true).cloned())
    })
    .await
    .expect("the paused rule's incident runs in dry-run");
    assert_eq!(dry["rule"], "fo");

    // Resume; unknown targets are refused in the API's error shape.
    let (status, _) = operate(&gw, &cookie, "/admin/rules/fo/resume", "").await;
    assert_eq!(status, 200);
    let (status, body) = operate(&gw, &cookie, "/admin/incidents/999999/ack", "").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _) = operate(&gw, &cookie, "/admin/rules/nope/pause", "").await;
    assert_eq!(status, 404);
    let r = client()
        .get(gw.admin_url(&format!("/admin/incidents/{id}/ack")))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 405);

    // Every operator event is on disk too.
    let log = std::fs::read_to_string(gw.data_dir.join("incidents.jsonl")).expect("log");
    for op in [
        "acknowledged",
        "forced_unwind",
        "paused_rule",
        "resumed_rule",
    ] {
        assert!(log.contains(&format!("\"op\":\"{op}\"")), "{op} not logged");
    }
    assert!(!log.contains(ADMIN_TOKEN));
}
