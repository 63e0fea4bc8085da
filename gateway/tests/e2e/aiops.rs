//! AIOps through the real binary: a TTFT drift on one target flagged (metric, admin view,
//! incident) and driving a downgrade through an anomaly rule; one provider failing across
//! three routes is one incident whose hint names it; baselines survive a restart.
//!
//! The detector runs on a 200 ms interval with a short warmup, so baselines are learned in a
//! couple of seconds of traffic; a drift or a failure is then brought in by a policy reload
//! that changes only a model's `upstream_model` (the mock-llm fault suffix), which keeps the
//! target and its baselines.

use std::time::Duration;

use reqwest::Method;

use crate::common::{self, NO_EJECTION, TestGateway, eventually};

/// Fast learning for tests: 200 ms steps, a 600 ms window, trusted after 5 steps.
const FAST_AIOPS: &str = "aiops: { interval: 200ms, window: 3, k: 5, hold: 400ms, clear: 2s, min_events: 5, warmup: 5, group_window: 1m }\nslo: { evaluate_every: 100ms, snapshot_every: 300ms }\n";

/// Sends `n` requests at once and reads every answer to its end; returns the statuses.
async fn batch(gw: &TestGateway, model: &str, stream: bool, n: usize) -> Vec<u16> {
    let sends = (0..n).map(|_| async {
        match gw
            .post("/v1/chat/completions", common::chat(model, stream))
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                status
            }
            Err(_) => 0,
        }
    });
    futures_util::future::join_all(sends).await
}

/// Traffic on `models` (one batch of 10 each) every 50 ms for `d`.
async fn traffic(gw: &TestGateway, models: &[&str], stream: bool, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        for m in models {
            batch(gw, m, stream, 10).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rewrites the policy file and reloads it at once.
async fn reload(gw: &TestGateway, body: &str) {
    std::fs::write(&gw.policy_path, gw.policy_text(body, "", "")).expect("write policy");
    let r = gw
        .admin(Method::POST, "/admin/reload")
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// The signal's status in `scope` (`target chat/up/big`) from `/admin/anomalies`.
fn signal<'v>(
    view: &'v serde_json::Value,
    name: &str,
    scope_kind: &str,
    needle: &str,
) -> Option<&'v serde_json::Value> {
    view["signals"].as_array()?.iter().find(|s| {
        s["signal"] == name
            && s["scope"]["kind"] == scope_kind
            && s["scope"].to_string().contains(needle)
    })
}

/// The incident log's events.
fn logged(gw: &TestGateway) -> Vec<serde_json::Value> {
    std::fs::read_to_string(gw.data_dir.join("incidents.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn ttft_policy(upstream: &str) -> String {
    format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  big: {{ provider: up, upstream_model: \"{upstream}\" }}\n  small: {{ provider: up, upstream_model: small }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: big }} ]\n    remediation:\n      - {{ name: slow-start, when: {{ anomaly: ttft }}, do: {{ downgrade_to: [small] }}, hold: 1m, probe_share: 0.1 }}\n{FAST_AIOPS}"
    )
}

#[tokio::test]
async fn a_ttft_drift_is_flagged_and_downgrades_the_route() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&ttft_policy("big@ttft:30"), &mock).await;

    // The admin view is behind the token like every admin route.
    let r = reqwest::get(gw.admin_url("/admin/anomalies"))
        .await
        .expect("get");
    assert_eq!(r.status(), 401);

    // Normal traffic until the target's TTFT baseline is learned: a band about 30 ms wide.
    // On a loaded machine the first samples can be slow and widen it, so wait for it to
    // settle rather than judge the first band learned.
    let mut last = serde_json::Value::Null;
    let learned = eventually(async || {
        traffic(&gw, &["chat"], true, Duration::from_millis(300)).await;
        let v = gw.admin_json("/admin/anomalies").await;
        let s = signal(&v, "ttft", "target", "big")?;
        last = s.clone();
        let upper = s["band"]["upper"].as_f64()?;
        (s["state"] == "normal" && upper < 0.3).then(|| s.clone())
    })
    .await;
    assert!(
        learned.is_some(),
        "no learned TTFT band under 300 ms for the target; last seen: {last}"
    );

    // The provider's time to first token drifts from 30 ms to 400 ms.
    reload(&gw, &ttft_policy("big@ttft:400")).await;
    let flagged = eventually(async || {
        traffic(&gw, &["chat"], true, Duration::from_millis(300)).await;
        let v = gw.admin_json("/admin/anomalies").await;
        let s = signal(&v, "ttft", "target", "big")?;
        s["state"]
            .as_str()
            .is_some_and(|st| st == "anomalous" || st == "clearing")
            .then(|| s.clone())
    })
    .await
    .expect("the drift flagged");
    assert!(
        flagged["peak_score"].as_f64().expect("peak score") > 5.0,
        "{flagged}"
    );

    // The gauge says so.
    let metrics = gw
        .metrics_when(|m| {
            m.contains("sluice_anomaly_active{signal=\"ttft\",scope=\"target chat/up/big\"} 1")
        })
        .await;
    assert!(metrics.contains("sluice_anomaly_active{signal=\"ttft\",scope=\"route chat\"}"));
    // The learned band is exported with the value it was judged on: the flagged value lies
    // above the band's upper line.
    let line = |name: &str| -> f64 {
        let prefix = format!(
            "sluice_anomaly_band{{signal=\"ttft\",scope=\"target chat/up/big\",line=\"{name}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {name} line in:\n{metrics}"))
            .trim()
            .parse()
            .expect("a number")
    };
    // (Read against the admin view's flagged status: once the route is downgraded the target
    // gets too few requests for a `value` line of its own, and a frozen band is the same.)
    assert!(line("lower") <= line("centre") && line("centre") < line("upper"));
    let admin_upper = flagged["band"]["upper"].as_f64().expect("upper");
    assert!(
        (line("upper") - admin_upper).abs() <= 1e-6 * admin_upper.max(1.0),
        "metric upper {} vs /admin/anomalies {admin_upper}",
        line("upper")
    );
    // The value is unknown (null) when the last interval had too few events, which happens
    // when the downgrade came before the poll that saw the flag; when known, it is above.
    if let Some(flagged_value) = flagged["value"].as_f64() {
        assert!(flagged_value > line("upper"), "{flagged}\n{metrics}");
    } else {
        assert!(flagged["value"].is_null(), "{flagged}");
    }

    // The anomaly rule downgraded the route: `small` serves it now.
    let v = eventually(async || {
        let v = gw.admin_json("/admin/incidents").await;
        v["open"]
            .as_array()?
            .iter()
            .find(|i| i["rule"] == "slow-start" && i["phase"] == "active")
            .cloned()
    })
    .await
    .expect("an active downgrade incident");
    assert_eq!(v["action"], "downgrade_to");
    assert_eq!(v["applied"]["model"], "small", "{v}");
    let opened = &v["events"][0];
    assert_eq!(opened["kind"], "opened");
    assert_eq!(opened["condition"]["anomaly"]["signal"], "ttft");
    assert_eq!(opened["anomalies"][0]["signal"], "ttft");
    let before = mock.requests_for("small");
    batch(&gw, "chat", true, 10).await;
    assert!(
        mock.requests_for("small") > before,
        "no request went to small"
    );

    // The anomaly is also an alert incident, on disk with its anomaly.
    let alert = logged(&gw)
        .into_iter()
        .find(|e| e["action"] == "alert" && e["kind"] == "opened")
        .expect("an alert incident in incidents.jsonl");
    assert_eq!(alert["rule"], "aiops");
    assert!(
        alert["anomalies"]
            .as_array()
            .expect("anomalies")
            .iter()
            .any(|a| a["signal"] == "ttft"),
        "{alert}"
    );
}

fn three_routes_policy(bad: &str) -> String {
    let mut p = format!(
        "providers:\n  shaky: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\n  solid: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  m1: {{ provider: shaky, upstream_model: \"one{bad}\" }}\n  m2: {{ provider: shaky, upstream_model: \"two{bad}\" }}\n  m3: {{ provider: shaky, upstream_model: \"three{bad}\" }}\n  m4: {{ provider: solid, upstream_model: four }}\nroutes:\n"
    );
    for (route, model) in [("r1", "m1"), ("r2", "m2"), ("r3", "m3"), ("r4", "m4")] {
        p.push_str(&format!(
            "  - {{ name: {route}, match: {{ model: {route} }}, targets: [ {{ model: {model} }} ], retry: {{ max_attempts: 1 }}, {NO_EJECTION} }}\n"
        ));
    }
    p + FAST_AIOPS
}

#[tokio::test]
async fn one_provider_failing_across_three_routes_is_one_incident_naming_it() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&three_routes_policy(""), &mock).await;
    let routes = ["r1", "r2", "r3", "r4"];
    eventually(async || {
        traffic(&gw, &routes, false, Duration::from_millis(300)).await;
        let v = gw.admin_json("/admin/anomalies").await;
        ["m1", "m2", "m3"]
            .iter()
            .all(|m| {
                signal(&v, "error_ratio", "target", m)
                    .is_some_and(|s| s["state"] == "normal" && !s["band"].is_null())
            })
            .then_some(())
    })
    .await
    .expect("error-ratio baselines learned");

    // Provider `shaky` starts answering 503 on every model.
    reload(&gw, &three_routes_policy("@503")).await;
    eventually(async || {
        traffic(&gw, &routes, false, Duration::from_millis(300)).await;
        let v = gw.admin_json("/admin/anomalies").await;
        ["m1", "m2", "m3"]
            .iter()
            .all(|m| {
                signal(&v, "error_ratio", "target", m).is_some_and(|s| s["state"] == "anomalous")
            })
            .then_some(())
    })
    .await
    .expect("the three targets' error ratios flagged");
    // A few more ticks for every alert (routes, tenant) to be in.
    traffic(&gw, &routes, false, Duration::from_secs(1)).await;

    let incidents = gw.admin_json("/admin/incidents").await;
    let failing: Vec<&serde_json::Value> = incidents["open"]
        .as_array()
        .expect("open")
        .iter()
        .filter(|i| {
            i["action"] == "alert"
                && i["events"].as_array().is_some_and(|es| {
                    es.iter().any(|e| {
                        e["anomalies"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|a| a["signal"] == "error_ratio"))
                    })
                })
        })
        .collect();
    assert_eq!(failing.len(), 1, "{incidents:#}");
    let inc = failing[0];
    let hint = &inc["hint"];
    assert_eq!(hint["focus"], "failed", "{hint}");
    assert_eq!(hint["top"][0]["dimension"], "provider", "{hint}");
    assert_eq!(hint["top"][0]["value"], "shaky", "{hint}");
    assert!(
        hint["top"][0]["share"].as_f64().expect("share") > 0.9,
        "{hint}"
    );
    assert!(
        hint["text"]
            .as_str()
            .expect("text")
            .contains("provider shaky"),
        "{hint}"
    );
    assert_eq!(hint["error"]["value"], "503", "{hint}");

    // Every route's and target's error-ratio alert is in that one incident.
    let members: Vec<String> = inc["events"]
        .as_array()
        .expect("events")
        .iter()
        .flat_map(|e| e["anomalies"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["signal"] == "error_ratio")
        .map(|a| a["scope"].to_string())
        .collect();
    for needle in ["\"m1\"", "\"m2\"", "\"m3\""] {
        assert!(
            members.iter().any(|m| m.contains(needle)),
            "{needle} in {members:?}"
        );
    }

    // The same incident, with its hint, is on disk.
    let opened = logged(&gw)
        .into_iter()
        .find(|e| e["incident"] == inc["id"] && e["kind"] == "opened")
        .expect("opened on disk");
    assert_eq!(opened["hint"]["top"][0]["value"], "shaky");
}

#[tokio::test]
async fn baselines_survive_a_restart() {
    let mock = common::mock_llm().await;
    let mut gw = TestGateway::start(&ttft_policy("big@ttft:30"), &mock).await;
    let band = eventually(async || {
        traffic(&gw, &["chat"], true, Duration::from_millis(300)).await;
        let v = gw.admin_json("/admin/anomalies").await;
        let s = signal(&v, "ttft", "target", "big")?;
        (s["state"] == "normal").then(|| s["band"].clone())
    })
    .await
    .expect("a learned band");
    // Saved with the SLO snapshot.
    eventually(async || gw.data_dir.join("aiops.json").exists().then_some(()))
        .await
        .expect("aiops.json");

    gw.restart().await;
    // No traffic since the restart: the band can only come from the snapshot.
    let after = eventually(async || {
        let v = gw.admin_json("/admin/anomalies").await;
        let s = signal(&v, "ttft", "target", "big")?;
        (!s["band"].is_null()).then(|| s.clone())
    })
    .await
    .expect("the band restored");
    assert_ne!(after["state"], "learning");
    let (c0, c1) = (
        band["centre"].as_f64().expect("centre"),
        after["band"]["centre"].as_f64().expect("centre"),
    );
    assert!((c0 - c1).abs() <= c0 * 0.5, "{c0} then {c1}");
    assert!(gw.log_text().contains("AIOps baselines restored."));
    let v = gw.admin_json("/admin/anomalies").await;
    assert!(
        v["footprint"]["series"].as_u64().expect("series") >= 2,
        "{v}"
    );
}
