//! Routing that stays up: failover on the failures peers miss, passive ejection shown in the
//! admin view and the metrics, balancing by latency, retry budgets, header routes, what a key
//! may use, and tenants' shared limits and budgets (kept across a restart).

use std::sync::atomic::Ordering;

use reqwest::Method;

use crate::common::{self, KEY, TestGateway, eventually, sha256_hex};
use crate::rawup::{RawUpstream, Reply};

async fn post_as(gw: &TestGateway, key: &str, model: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(common::chat(model, false))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_503_and_a_429_without_retry_after_both_fail_over() {
    let mock = common::mock_llm().await;
    let no_retry_after = RawUpstream::start(|_| {
        let body = r#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":null}}"#;
        Reply::Writes(vec![format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()])
    })
    .await;
    let policy = format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\n  raw: {{ kind: openai, base_url: \"{}\" }}\nmodels:\n  down: {{ provider: up, upstream_model: \"down@503\" }}\n  limited: {{ provider: raw }}\n  backup: {{ provider: up }}\nroutes:\n  - {{ name: a, match: {{ model: a }}, targets: [ {{ model: down }} ], fallbacks: [ backup ], retry: {{ max_attempts: 2 }} }}\n  - {{ name: b, match: {{ model: b }}, targets: [ {{ model: limited }} ], fallbacks: [ backup ], retry: {{ max_attempts: 2 }} }}\n",
        no_retry_after.base_url()
    );
    let gw = TestGateway::start(&policy, &mock).await;
    for model in ["a", "b"] {
        let r = gw
            .post("/v1/chat/completions", common::chat(model, false))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{model} fails over to the backup");
    }
    assert_eq!(mock.requests_for("down@503"), 1);
    assert_eq!(no_retry_after.requests.load(Ordering::SeqCst), 1);
    assert_eq!(mock.requests_for("backup"), 2);
}

#[tokio::test]
async fn a_failing_target_is_ejected_shown_and_skipped() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  bad: { provider: up, upstream_model: \"bad@503\" }\n  good: { provider: up, upstream_model: good }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets: [ { model: bad }, { model: good } ]\n    retry: { max_attempts: 2 }\n    health: { consecutive_failures: 2, base_ejection: 1m }\n";
    let gw = TestGateway::start(policy, &mock).await;
    for _ in 0..6 {
        let r = gw
            .post("/v1/chat/completions", common::chat("chat", false))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "the good target answers");
    }
    // Two failures in a row took `bad` out; after that no request goes there.
    assert_eq!(mock.requests_for("bad@503"), 2);
    assert_eq!(mock.requests_for("good"), 6);

    let view: serde_json::Value = gw.admin_json("/admin/targets").await;
    let route = view["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"] == "chat"))
        .expect("the route");
    let bad = route["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["model"] == "bad"))
        .expect("bad");
    assert_eq!(bad["health"], "ejected", "{bad}");
    assert!(bad["ejected_until"].is_string(), "{bad}");
    assert_eq!(bad["times_ejected"], 1);
    let good = route["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["model"] == "good"))
        .expect("good");
    assert_eq!(good["health"], "healthy");
    assert!(good["ewma_ttft_ms"].is_number(), "{good}");

    let metrics = gw
        .metrics_when(|m| {
            m.contains("sluice_target_ejected{route=\"chat\",provider=\"up\",model=\"bad\"} 1")
        })
        .await;
    assert!(
        metrics.contains("sluice_target_ejected{route=\"chat\",provider=\"up\",model=\"bad\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_target_ejected{route=\"chat\",provider=\"up\",model=\"good\"} 0")
    );
    // The access log says why each request went where it did.
    let log = eventually(async || {
        let log = gw.log_text();
        log.contains("skipped=bad:ejected").then_some(log)
    })
    .await
    .expect("a decision with the skipped target");
    assert!(log.contains("\"route_decision\":\"weighted pick="), "{log}");
    assert!(
        log.contains("attempts=bad:server_error(503),good:ok(200)"),
        "{log}"
    );
}

#[tokio::test]
async fn p2c_sends_most_requests_to_the_faster_target() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  fast: { provider: up, upstream_model: \"fast@ttft:15\" }\n  slow: { provider: up, upstream_model: \"slow@ttft:150\" }\nroutes:\n  - { name: chat, match: { model: chat }, targets: [ { model: fast }, { model: slow } ], balance: p2c }\n";
    let gw = TestGateway::start(policy, &mock).await;
    for _ in 0..60 {
        let r = gw
            .post("/v1/chat/completions", common::chat("chat", false))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    let fast = mock.requests_for("fast@ttft:15");
    let slow = mock.requests_for("slow@ttft:150");
    assert_eq!(fast + slow, 60);
    assert!(fast * 10 >= 60 * 8, "{fast} fast, {slow} slow");
}

#[tokio::test]
async fn under_constant_failure_retries_stay_within_the_budget() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  down: { provider: up, upstream_model: \"down@503\" }\nroutes:\n  - { name: chat, match: { model: chat }, targets: [ { model: down } ], retry: { max_attempts: 3, budget: { ratio: 0.2, min_per_s: 1 } } }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let requests = 100u64;
    for _ in 0..requests / 10 {
        let batch: Vec<_> = (0..10)
            .map(|_| {
                gw.post("/v1/chat/completions", common::chat("chat", false))
                    .send()
            })
            .collect();
        for r in futures_util::future::join_all(batch).await {
            let r = r.expect("request");
            assert_eq!(r.status(), 503, "the provider's own failure, fast");
        }
    }
    let attempts = mock.requests_for("down@503");
    // ratio × requests, plus the floor of 1/s over the 10 s window.
    let bound = requests + requests / 5 + 10;
    assert!(
        attempts <= bound,
        "{attempts} attempts for {requests} requests"
    );
    assert!(attempts > requests, "some retries were made: {attempts}");
    let metrics = gw
        .metrics_when(|m| m.contains("sluice_retry_budget_exhausted_total{route=\"chat\"}"))
        .await;
    assert!(
        metrics.contains("sluice_retry_budget_exhausted_total{route=\"chat\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_header_picks_a_route_and_keys_see_only_their_models() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  normal: { provider: up }\n  quick: { provider: up }\n  secret: { provider: up }\nroutes:\n  - { name: chat, match: { model: chat }, targets: [ { model: normal } ] }\n  - { name: fast-lane, match: { header: { name: x-sluice-route, value: fast } }, targets: [ { model: quick } ] }\n";
    let gw = TestGateway::start_full(policy, &mock, "", ", models: [chat, quick]").await;
    let r = gw
        .post("/v1/chat/completions", common::chat("chat", false))
        .header("x-sluice-route", "fast")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(mock.requests_for("quick"), 1, "the header chose the route");
    assert_eq!(post_as(&gw, KEY, "chat").await.status(), 200);
    assert_eq!(mock.requests_for("normal"), 1);
    // A model the key may not use is as unknown to it as one that does not exist.
    let r = post_as(&gw, KEY, "secret").await;
    assert_eq!(r.status(), 404);
    let models: serde_json::Value = reqwest::Client::new()
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["chat", "quick"]);
    assert_eq!(mock.requests_for("secret"), 0);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n";
    let gw =
        TestGateway::start_full(policy, &mock, "", ", expires: \"2020-01-01T00:00:00Z\"").await;
    let r = post_as(&gw, KEY, "m").await;
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "expired_api_key");
    assert_eq!(mock.stats().requests, 0);
}

const OTHER_KEY: &str = "sk-sluice-test-second";

/// A second key of tenant `test`, written into the first key's entry's tail.
fn second_key(extra: &str) -> String {
    format!(
        "{extra} }}\n  - {{ name: second, key_sha256: \"{}\", tenant: test",
        sha256_hex(OTHER_KEY)
    )
}

#[tokio::test]
async fn a_tenants_limit_is_shared_by_its_keys() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\ntenants:\n  test: { limits: { rpm: 3 } }\n";
    let gw = TestGateway::start_full(policy, &mock, "", &second_key("")).await;
    let mut statuses = Vec::new();
    for key in [KEY, OTHER_KEY, KEY, OTHER_KEY] {
        let r = post_as(&gw, key, "m").await;
        statuses.push(r.status().as_u16());
        if r.status() == 200 {
            assert_eq!(
                r.headers()
                    .get("x-ratelimit-limit-requests")
                    .and_then(|v| v.to_str().ok()),
                Some("3")
            );
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(mock.stats().requests, 3);
}

#[tokio::test]
async fn a_spent_budget_refuses_and_the_spend_survives_a_restart() {
    let mock = common::mock_llm().await;
    // A price that makes one small request cost about a cent.
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up, pricing: { input: 1000, output: 1000 } }\ntenants:\n  test: { budget: { usd_per_day: 0.01 } }\n";
    let mut gw = TestGateway::start(policy, &mock).await;
    let refused = eventually(async || {
        let r = post_as(&gw, KEY, "m").await;
        (r.status() == 429).then_some(r)
    })
    .await
    .expect("the budget runs out");
    let v: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(v["error"]["type"], "insufficient_quota");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(message.contains("daily budget of $0.01"), "{message}");
    let served = mock.stats().requests;

    gw.restart().await;
    assert!(
        gw.data_dir.join("spend.json").exists(),
        "the spend was saved"
    );
    assert_eq!(
        post_as(&gw, KEY, "m").await.status(),
        429,
        "still spent after a restart"
    );
    assert_eq!(mock.stats().requests, served);
    let view: serde_json::Value = gw.admin_json("/admin/targets").await;
    // The judge's internal tenant is listed too (its spend is its own); find ours.
    let tenant = view["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["tenant"] == "test")
        .expect("tenant test in the view");
    assert!(
        tenant["spend_day_usd"].as_f64().is_some_and(|s| s >= 0.01),
        "{tenant}"
    );
    assert_eq!(tenant["budget_day_usd"], 0.01);
    // Up-to-date metrics too.
    let metrics = gw
        .metrics_when(|m| m.contains("sluice_tenant_spend_usd{tenant=\"test\",period=\"day\"}"))
        .await;
    assert!(metrics.contains("sluice_tenant_spend_usd{tenant=\"test\",period=\"month\"}"));
}

#[tokio::test]
async fn the_live_policy_is_shown_without_secrets() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let text = gw
        .admin(Method::GET, "/admin/policy")
        .send()
        .await
        .expect("policy")
        .text()
        .await
        .expect("body");
    common::assert_no_canary(&text);
    assert!(text.contains("\"api_key\":\"***\""), "{text}");
    assert!(
        !text.contains(&common::key_sha256()),
        "key hashes are shortened: {text}"
    );
    let anonymous = reqwest::Client::new()
        .get(gw.admin_url("/admin/policy"))
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .expect("policy");
    assert_eq!(anonymous.status(), 401);
}
