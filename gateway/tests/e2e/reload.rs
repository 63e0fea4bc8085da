//! Live policy: the file is reloaded while traffic flows — on change (rename, ConfigMap symlink
//! swap), on SIGHUP and on `POST /admin/reload` — keeping live state, refusing bad files and
//! restart-only changes, and never touching a request in flight.

use std::process::Command;

use reqwest::Method;

use crate::common::{self, Layout, TestGateway, eventually};

/// Two catalog models on mock-llm; `chat` is routed by `{route}`.
fn policy(route_target: &str, extra_routes: &str) -> String {
    format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  a: {{ provider: up, upstream_model: \"a@delay:100\" }}\n  b: {{ provider: up, upstream_model: b }}\nroutes:\n  - {{ name: chat, match: {{ model: alias }}, targets: [ {{ model: {route_target} }} ] }}\n{extra_routes}"
    )
}

/// Waits until the gateway's policy generation is `generation`.
async fn generation(gw: &TestGateway, generation: u64) -> String {
    let want = format!("sluice_policy_generation {generation}\n");
    let metrics = gw.metrics_when(|m| m.contains(&want)).await;
    assert!(
        metrics.contains(&want),
        "generation {generation} never came:\n{}",
        reload_lines(&metrics)
    );
    metrics
}

fn reload_lines(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| l.starts_with("sluice_policy"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn reloads(metrics: &str, result: &str) -> u64 {
    let prefix = format!("sluice_policy_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes the file the way editors do: a new file, renamed over the old one.
fn write_then_rename(gw: &TestGateway, yaml: &str) {
    let tmp = gw.policy_path.with_extension("yaml.tmp");
    std::fs::write(&tmp, yaml).expect("write");
    std::fs::rename(&tmp, &gw.policy_path).expect("rename");
}

async fn status_of(gw: &TestGateway, model: &str) -> u16 {
    gw.post("/v1/chat/completions", common::chat(model, false))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_reload_during_a_stream_leaves_it_untouched_and_later_requests_see_new_routes() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&policy("a", ""), &mock).await;

    // A stream of 16 content events 100 ms apart, on the first policy's route.
    let mut resp = gw
        .post("/v1/chat/completions", common::chat("alias", true))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    let first = resp.chunk().await.expect("chunk").expect("first chunk");
    text.push_str(&String::from_utf8_lossy(&first));

    // Now `alias` goes to `b`, and a new route appears.
    let next = policy(
        "b",
        "  - { name: fresh, match: { model: fresh }, targets: [ { model: b } ] }\n",
    );
    write_then_rename(&gw, &gw.policy_text(&next, "", ""));
    generation(&gw, 2).await;

    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "finished: {text}");
    assert!(!text.contains("error"), "untouched: {text}");
    let events: Vec<String> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_owned))
        .collect();
    assert!(
        common::stream_text(&events).len() > 16,
        "whole answer: {text}"
    );

    assert_eq!(status_of(&gw, "alias").await, 200);
    assert_eq!(status_of(&gw, "fresh").await, 200);
    let stats = mock.stats();
    assert_eq!(stats.by_model.get("a@delay:100"), Some(&1), "{stats:?}");
    assert_eq!(stats.by_model.get("b"), Some(&2), "{stats:?}");

    // The stream's record is the old policy's: route chat, model a.
    let metrics = gw
        .metrics_when(|m| m.contains("model=\"a\",tenant=\"test\",outcome=\"ok\""))
        .await;
    assert!(
        metrics.contains(
            "sluice_requests_total{endpoint=\"chat_completions\",route=\"chat\",model=\"a\",tenant=\"test\",outcome=\"ok\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    let log = gw.log_text();
    assert!(log.contains("Policy reloaded."), "{log}");
    assert!(
        log.contains("changes=routes +fresh ~chat"),
        "the summary names what changed: {log}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_rate_limit_window_of_a_key_whose_limits_did_not_change() {
    let mock = common::mock_llm().await;
    let limits = ", limits: { rpm: 2 }";
    let gw = TestGateway::start_full(&policy("b", ""), &mock, "", limits).await;
    assert_eq!(status_of(&gw, "alias").await, 200);
    assert_eq!(status_of(&gw, "alias").await, 200);
    assert_eq!(status_of(&gw, "alias").await, 429, "two a minute");

    // An unrelated route changes: the key is still out of requests.
    let unrelated = policy(
        "b",
        "  - { name: other, match: { model: other }, targets: [ { model: a } ] }\n",
    );
    write_then_rename(&gw, &gw.policy_text(&unrelated, "", limits));
    generation(&gw, 2).await;
    assert_eq!(status_of(&gw, "alias").await, 429, "the window survived");
    assert_eq!(mock.stats().by_model.get("b"), Some(&2));

    // A new limit is a new rule: it starts with a full allowance.
    write_then_rename(&gw, &gw.policy_text(&unrelated, "", ", limits: { rpm: 5 }"));
    generation(&gw, 3).await;
    assert_eq!(status_of(&gw, "alias").await, 200);
}

#[tokio::test]
async fn invalid_files_and_restart_only_changes_are_rejected_and_the_old_policy_serves() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&policy("b", ""), &mock).await;

    // A file that does not validate: a misspelt field on a known line.
    let broken = gw
        .policy_text(&policy("b", ""), "", "")
        .replace("upstream_model: b", "upstream_modle: b");
    write_then_rename(&gw, &broken);
    let metrics = gw.metrics_when(|m| reloads(m, "rejected") == 1).await;
    assert_eq!(
        reloads(&metrics, "rejected"),
        1,
        "{}",
        reload_lines(&metrics)
    );
    assert!(metrics.contains("sluice_policy_generation 1\n"));
    assert!(metrics.contains("sluice_policy_last_reload_timestamp_seconds{result=\"rejected\"}"));
    assert_eq!(status_of(&gw, "alias").await, 200, "the old policy answers");
    let line = broken
        .lines()
        .position(|l| l.contains("upstream_modle"))
        .expect("line")
        + 1;
    let log = eventually(async || {
        let log = gw.log_text();
        log.contains("unknown field `upstream_modle`")
            .then_some(log)
    })
    .await
    .expect("the rejection is logged");
    let path = gw.policy_path.display().to_string();
    assert!(
        log.contains(&format!(
            "{path}:{line}: models.b.upstream_modle: unknown field"
        )),
        "logged with file and line as `sluice check` prints it: {log}"
    );

    // A restart-only setting: refused by name, also through the admin API.
    let restart = gw.policy_text(&policy("b", ""), "  threads: 3\n", "");
    let restart = restart.replacen("  threads: 2\n", "", 1);
    write_then_rename(&gw, &restart);
    let metrics = gw.metrics_when(|m| reloads(m, "rejected") == 2).await;
    assert_eq!(
        reloads(&metrics, "rejected"),
        2,
        "{}",
        reload_lines(&metrics)
    );
    let resp = gw
        .admin(Method::POST, "/admin/reload")
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status(), 422);
    let report: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(report["result"], "rejected");
    assert_eq!(report["generation"], 1);
    let problems = report["problems"].to_string();
    assert!(problems.contains("server.threads"), "{report}");
    assert!(problems.contains("restart"), "{report}");
    assert_eq!(status_of(&gw, "alias").await, 200);
    assert!(gw.log_text().contains("server.threads"));
}

#[tokio::test]
async fn the_watcher_sees_a_configmap_symlink_swap() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start_laid_out(&policy("b", ""), &mock, "", "", Layout::ConfigMap).await;
    assert_eq!(status_of(&gw, "fresh").await, 404);
    let mount = gw.policy_path.parent().expect("mount").to_owned();
    let next = policy(
        "b",
        "  - { name: fresh, match: { model: fresh }, targets: [ { model: b } ] }\n",
    );
    common::configmap_publish(
        &mount,
        "..2026_01_01_00_01_00.2",
        &gw.policy_text(&next, "", ""),
    );
    generation(&gw, 2).await;
    assert_eq!(status_of(&gw, "fresh").await, 200);
}

#[tokio::test]
async fn sighup_and_the_admin_api_reload_and_the_admin_api_needs_its_token() {
    let mock = common::mock_llm().await;
    let no_watch = "  reload: { watch: false }\n";
    let gw = TestGateway::start_with(&policy("b", ""), &mock, no_watch).await;
    let client = reqwest::Client::new();

    // Open without a token: health, readiness, metrics. Nothing else.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = client.get(gw.admin_url(path)).send().await.expect("get");
        assert_eq!(r.status(), 200, "{path}");
    }
    let fresh = policy(
        "b",
        "  - { name: fresh, match: { model: fresh }, targets: [ { model: b } ] }\n",
    );
    write_then_rename(&gw, &gw.policy_text(&fresh, no_watch, ""));
    let forged = [
        ("host", "localhost"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", "localhost"),
        ("x-real-ip", "127.0.0.1"),
    ];
    for (path, method) in [
        ("/admin/reload", Method::POST),
        ("/admin/inflight", Method::GET),
        ("/admin/nonexistent", Method::GET),
    ] {
        let mut req = client.request(method.clone(), gw.admin_url(path));
        for (h, v) in forged {
            req = req.header(h, v);
        }
        let r = req.send().await.expect("admin");
        assert_eq!(r.status(), 401, "{method} {path} without a token");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = client
            .request(method.clone(), gw.admin_url(path))
            .bearer_auth("sk-not-the-admin-token")
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status(), 401, "{method} {path} with a wrong token");
        // The virtual key is not an admin token either.
        let r = client
            .request(method, gw.admin_url(path))
            .bearer_auth(common::KEY)
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status(), 401, "{path} with a virtual key");
    }
    assert!(gw.metrics().await.contains("sluice_policy_generation 1\n"));
    assert_eq!(status_of(&gw, "fresh").await, 404, "nothing was reloaded");

    let r = gw
        .admin(Method::POST, "/admin/reload")
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.expect("json");
    assert_eq!(report["result"], "applied", "{report}");
    assert_eq!(report["generation"], 2);
    assert_eq!(report["changes"], "routes +fresh");
    assert_eq!(status_of(&gw, "fresh").await, 200);
    let r = gw
        .admin(Method::POST, "/admin/reload")
        .send()
        .await
        .expect("reload");
    let report: serde_json::Value = r.json().await.expect("json");
    assert_eq!(report["result"], "unchanged", "{report}");
    let r = gw
        .admin(Method::GET, "/admin/inflight")
        .send()
        .await
        .expect("inflight");
    assert_eq!(r.status(), 200);
    let r = gw
        .admin(Method::GET, "/admin/reload")
        .send()
        .await
        .expect("wrong method");
    assert_eq!(r.status(), 405);

    // SIGHUP reloads too.
    write_then_rename(&gw, &gw.policy_text(&policy("a", ""), no_watch, ""));
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(gw.pid().to_string())
        .status()
        .expect("kill");
    assert!(ok.success());
    let metrics = generation(&gw, 3).await;
    assert_eq!(reloads(&metrics, "applied"), 2);
    assert_eq!(reloads(&metrics, "unchanged"), 1);
    assert_eq!(status_of(&gw, "fresh").await, 404);
    let log = gw.log_text();
    assert!(log.contains("trigger=\"SIGHUP\""), "{log}");
    assert!(
        log.contains("by=test-admin"),
        "who reloaded is logged: {log}"
    );
}
