//! SLOs and remediation through the real binary: a burning target taken out with its
//! incident on disk and in the admin views, shedding by key priority, stale answers when every
//! target is down, quality scores from apps, and SLO counts kept across a restart.
//!
//! Windows are scaled down (`slo.window_scale`) so a page alert needs seconds, not an hour.

use std::time::Duration;

use reqwest::Method;

use crate::common::{self, KEY, NO_EJECTION, PATIENCE, TestGateway, eventually, sha256_hex};

const OTHER_KEY: &str = "sk-sluice-test-other-tenant";
const GOLD_KEY: &str = "sk-sluice-test-gold";

fn chat_about(model: &str, topic: usize) -> String {
    serde_json::json!({
        "model": model,
        "temperature": 0,
        "messages": [{"role": "user", "content": format!("Tell me about topic {topic}.")}],
    })
    .to_string()
}

async fn incidents(gw: &TestGateway) -> serde_json::Value {
    gw.admin_json("/admin/incidents").await
}

/// The kinds of the incident log's events, in order.
fn logged_kinds(gw: &TestGateway) -> Vec<String> {
    std::fs::read_to_string(gw.data_dir.join("incidents.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_burning_target_is_taken_out_and_the_incident_is_on_record() {
    let mock = common::mock_llm().await;
    let policy = format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  flaky: {{ provider: up, upstream_model: \"flaky@503\" }}\n  steady: {{ provider: up, upstream_model: steady }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: flaky }}, {{ model: steady }} ]\n    retry: {{ max_attempts: 2 }}\n    {NO_EJECTION}\n    slos:\n      - {{ name: availability, objective: 99, sli: errors, min_events: 5 }}\n    remediation:\n      - {{ name: fo, when: {{ slo: availability, burn: page }}, do: failover, hold: 1m, probe_share: 0.1, runbook_url: \"https://runbooks.example/fo\" }}\nslo: {{ window_scale: 0.001, evaluate_every: 100ms }}\n"
    );
    let gw = TestGateway::start(&policy, &mock).await;

    // The admin views are behind the token like every other admin route.
    for path in ["/admin/slo", "/admin/incidents"] {
        let r = reqwest::get(gw.admin_url(path)).await.expect("get");
        assert_eq!(r.status(), 401, "{path}");
    }

    // Every request to `flaky` fails and is retried on `steady`: clients see no error, but
    // `flaky`'s own SLO burns and the controller takes it out.
    let taken_out = eventually(async || {
        for _ in 0..10 {
            let r = gw
                .post("/v1/chat/completions", common::chat("chat", false))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
        }
        let v = incidents(&gw).await;
        (v["open"][0]["phase"] == "active").then_some(v)
    })
    .await
    .expect("an active failover incident");
    let open = &taken_out["open"][0];
    assert_eq!(open["rule"], "fo");
    assert_eq!(open["action"], "failover");
    assert_eq!(open["target"]["model"], "flaky");
    assert_eq!(open["runbook_url"], "https://runbooks.example/fo");
    let kinds: Vec<&str> = open["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds[..2], ["opened", "action_taken"]);
    // The evidence is the burn that triggered it.
    let evidence = &open["events"][0]["evidence"][0];
    assert_eq!(evidence["target"]["model"], "flaky");
    assert!(evidence["windows"]["5m"]["burn"].as_f64().expect("burn") > 14.4);

    // On disk, synced, in the data directory.
    assert_eq!(logged_kinds(&gw)[..2], ["opened", "action_taken"]);

    // Now `flaky` gets only the probe share of the route's requests.
    let before = mock.requests_for("flaky@503");
    for _ in 0..40 {
        let r = gw
            .post("/v1/chat/completions", common::chat("chat", false))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    let probes = mock.requests_for("flaky@503") - before;
    assert!(probes <= 10, "{probes} of 40 requests still went to flaky");

    // The route's view, the gauges and the access log say so.
    let slo: serde_json::Value = gw.admin_json("/admin/slo").await;
    let route = &slo["routes"][0];
    assert_eq!(route["route"], "chat");
    assert_eq!(
        route["remediation"]["failover"][0]["target"]["model"],
        "flaky"
    );
    let flaky = route["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["target"]["model"] == "flaky")
        .expect("flaky's status");
    assert!(flaky["windows"]["slo"]["bad"].as_u64().expect("bad") >= 5);
    let m = gw
        .metrics_when(|m| {
            m.contains(r#"sluice_remediation_active{route="chat",action="failover"} 1"#)
        })
        .await;
    assert!(
        m.contains(r#"sluice_remediation_active{route="chat",action="failover"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sluice_incident_events_total{action="failover",event="action_taken"} 1"#)
    );
    assert!(
        m.contains(r#"sluice_slo_error_budget_remaining_ratio{slo="availability",route="chat"}"#)
    );
    assert!(m.contains(r#"sluice_slo_events_total{slo="availability",route="chat",good="true"}"#));
    let log = eventually(async || {
        let log = gw.log_text();
        log.contains(r#""remediation":"failover(fo)""#)
            .then_some(log)
    })
    .await
    .unwrap_or_else(|| gw.log_text());
    assert!(log.contains(r#""remediation":"failover(fo)""#), "{log}");
}

#[tokio::test]
async fn low_priority_keys_are_shed_with_503_and_retry_after_ms() {
    let mock = common::mock_llm().await;
    let policy = format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  down: {{ provider: up, upstream_model: \"down@503\" }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: down }} ]\n    retry: {{ max_attempts: 1 }}\n    {NO_EJECTION}\n    slos: [ {{ name: availability, objective: 99, sli: errors, min_events: 5 }} ]\n    remediation: [ {{ name: shed-bulk, when: {{ slo: availability }}, do: {{ shed: {{ max_priority: 3 }} }}, probe_share: 0 }} ]\nslo: {{ window_scale: 0.001, evaluate_every: 100ms }}\n"
    );
    let gold = format!(
        ", priority: 2 }}\n  - {{ name: gold, key_sha256: \"{}\", tenant: test, priority: 8",
        sha256_hex(GOLD_KEY)
    );
    let gw = TestGateway::start_full(&policy, &mock, "", &gold).await;
    let send = async |key: &str| {
        reqwest::Client::new()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(common::chat("chat", false))
            .send()
            .await
            .expect("request")
    };
    let shed = eventually(async || {
        let r = send(KEY).await;
        let code = r.status().as_u16();
        let after = r
            .headers()
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        (body["error"]["code"] == "load_shed").then_some((code, after, body))
    })
    .await
    .expect("the low-priority key is shed");
    assert_eq!(shed.0, 503);
    assert_eq!(shed.1.as_deref(), Some("2000"));
    assert_eq!(shed.2["error"]["type"], "server_error");

    // The high-priority key is still served (here: still tried upstream, which fails).
    let upstream_before = mock.requests_for("down@503");
    let r = send(GOLD_KEY).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_ne!(body["error"]["code"], "load_shed");
    assert_eq!(mock.requests_for("down@503"), upstream_before + 1);

    // Shed requests never reach the provider and do not count against the SLO.
    let upstream_before = mock.requests_for("down@503");
    for _ in 0..5 {
        assert_eq!(send(KEY).await.status(), 503);
    }
    assert_eq!(mock.requests_for("down@503"), upstream_before);
    let log = eventually(async || {
        let log = gw.log_text();
        log.contains(r#""remediation":"shed(shed-bulk)""#)
            .then_some(log)
    })
    .await
    .unwrap_or_else(|| gw.log_text());
    assert!(log.contains(r#""error_type":"load_shed""#), "{log}");
}

#[tokio::test]
async fn stale_answers_stand_in_while_every_target_is_down() {
    let mock = common::mock_llm().await;
    let body = |upstream: &str| {
        format!(
            "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  m: {{ provider: up, upstream_model: \"{upstream}\" }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: m }} ]\n    retry: {{ max_attempts: 1 }}\n    {NO_EJECTION}\n    cache: {{ ttl: 1s, max_stale: 10m }}\n    slos: [ {{ name: availability, objective: 99, sli: errors, min_events: 5 }} ]\n    remediation: [ {{ name: stale, when: {{ slo: availability }}, do: cache_fallback, probe_share: 0 }} ]\nslo: {{ window_scale: 0.001, evaluate_every: 100ms }}\n"
        )
    };
    let gw = TestGateway::start(&body("m"), &mock).await;
    // Warm the cache with five answers.
    let mut answers = Vec::new();
    for topic in 0..5 {
        let r = gw
            .post("/v1/chat/completions", chat_about("chat", topic))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        answers.push(r.text().await.expect("body"));
    }
    // The provider goes down (a reload points the model at a failing one) and the answers age
    // past their ttl.
    std::fs::write(&gw.policy_path, gw.policy_text(&body("m@503"), "", "")).expect("rewrite");
    let reloaded = gw
        .admin(Method::POST, "/admin/reload")
        .send()
        .await
        .expect("reload");
    assert_eq!(reloaded.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Stale-if-error: the attempt fails, the stale answer is served, marked as such.
    let r = gw
        .post("/v1/chat/completions", chat_about("chat", 0))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("x-sluice-cache")
            .and_then(|v| v.to_str().ok()),
        Some("stale")
    );
    assert_eq!(r.text().await.expect("body"), answers[0]);
    // A question never answered before has nothing to stand in: the error goes through.
    for topic in 100..110 {
        let r = gw
            .post("/v1/chat/completions", chat_about("chat", topic))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 503);
    }
    // Those failures burn the SLO; cache fallback turns on and answers without calling the
    // provider at all.
    let on = eventually(async || {
        let v = incidents(&gw).await;
        (v["open"][0]["phase"] == "active").then_some(())
    })
    .await;
    assert!(on.is_some(), "cache fallback turned on");
    let upstream_before = mock.requests_for("m@503");
    for (topic, answer) in answers.iter().enumerate() {
        let r = gw
            .post("/v1/chat/completions", chat_about("chat", topic))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get("x-sluice-cache")
                .and_then(|v| v.to_str().ok()),
            Some("stale")
        );
        assert_eq!(&r.text().await.expect("body"), answer);
    }
    assert_eq!(mock.requests_for("m@503"), upstream_before);
    let m = gw.metrics_when(|m| m.contains(r#"result="stale""#)).await;
    assert!(
        m.contains(r#"sluice_cache_requests_total{route="chat",result="stale"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn apps_score_answers_for_the_quality_slo() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets: [ { model: m } ]\n    slos: [ { name: quality, objective: 90, sli: { judge_score_at_least: 0.7 }, min_events: 1 } ]\n";
    let other = format!(
        " }}\n  - {{ name: other, key_sha256: \"{}\", tenant: other",
        sha256_hex(OTHER_KEY)
    );
    let gw = TestGateway::start_full(policy, &mock, "", &other).await;
    let feedback = async |key: &str, body: serde_json::Value| {
        reqwest::Client::new()
            .post(gw.url("/v1/feedback"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("feedback")
    };
    let mut ids = Vec::new();
    for topic in 0..2 {
        let r = gw
            .post("/v1/chat/completions", chat_about("chat", topic))
            .send()
            .await
            .expect("request");
        let v: serde_json::Value = r.json().await.expect("json");
        ids.push(v["id"].as_str().expect("id").to_owned());
    }
    // The recorder remembers answers shortly after they end.
    let first = eventually(async || {
        let r = feedback(
            KEY,
            serde_json::json!({"response_id": ids[0], "score": 0.2}),
        )
        .await;
        (r.status() == 200).then_some(r)
    })
    .await
    .expect("the answer can be scored");
    let v: serde_json::Value = first.json().await.expect("json");
    assert_eq!(v["route"], "chat");
    assert_eq!(v["counted"], true);
    let second = eventually(async || {
        let r = feedback(
            KEY,
            serde_json::json!({"response_id": ids[1], "score": 0.9}),
        )
        .await;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(second.is_some(), "the second answer can be scored");

    // Someone else's answer reads like an unknown one; bad scores are refused.
    let r = feedback(
        OTHER_KEY,
        serde_json::json!({"response_id": ids[0], "score": 1.0}),
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "response_not_found");
    let r = feedback(
        KEY,
        serde_json::json!({"response_id": "chatcmpl-nope", "score": 1.0}),
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = feedback(KEY, serde_json::json!({"response_id": ids[0], "score": 7})).await;
    assert_eq!(r.status(), 400);
    let r = reqwest::Client::new()
        .post(gw.url("/v1/feedback"))
        .json(&serde_json::json!({"response_id": ids[0], "score": 1.0}))
        .send()
        .await
        .expect("no key");
    assert_eq!(r.status(), 401);

    // One good and one bad score: half the events, five times the 10 % budget.
    let status = eventually(async || {
        let v: serde_json::Value = gw
            .admin(Method::GET, "/admin/slo")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let s = v["routes"][0]["status"][0].clone();
        (s["windows"]["slo"]["total"] == 2).then_some(s)
    })
    .await
    .expect("both scores counted");
    assert_eq!(status["slo"], "quality");
    assert_eq!(status["windows"]["slo"]["bad"], 1);
    assert!((status["windows"]["slo"]["burn"].as_f64().expect("burn") - 5.0).abs() < 1e-9);
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"sluice_slo_events_total{slo="quality",route="chat",good="false"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn spent_error_budget_is_remembered_across_a_restart() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n  down: { provider: up, upstream_model: \"down@503\" }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets: [ { model: m } ]\n    slos: [ { name: availability, objective: 99, sli: errors, window: 7d } ]\n  - name: broken\n    match: { model: broken }\n    targets: [ { model: down } ]\n    retry: { max_attempts: 1 }\n    slos: [ { name: availability, objective: 99, sli: errors } ]\n";
    let mut gw = TestGateway::start(policy, &mock).await;
    for i in 0..10 {
        let model = if i < 3 { "broken" } else { "chat" };
        let _ = gw
            .post("/v1/chat/completions", common::chat(model, false))
            .send()
            .await
            .expect("request");
    }
    let totals = async |gw: &TestGateway| -> Option<Vec<(u64, u64)>> {
        let v: serde_json::Value = gw
            .admin(Method::GET, "/admin/slo")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["routes"]
            .as_array()?
            .iter()
            .map(|r| {
                let w = &r["status"][0]["windows"]["slo"];
                Some((w["bad"].as_u64()?, w["total"].as_u64()?))
            })
            .collect()
    };
    let before = eventually(async || totals(&gw).await.filter(|t| t == &[(0, 7), (3, 3)]))
        .await
        .expect("counted");
    gw.restart().await;
    assert!(gw.data_dir.join("slo.json").exists());
    let after = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(t) = totals(&gw).await
                && t == before
            {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("restored");
    assert_eq!(after, before);
    // Three failures of three against a 1 % budget: spent a hundred times over.
    let series = r#"sluice_slo_error_budget_remaining_ratio{slo="availability",route="broken"} "#;
    let m = gw.metrics_when(|m| m.contains(series)).await;
    let remaining: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!((remaining + 99.0).abs() < 1e-6, "{remaining}");
}
