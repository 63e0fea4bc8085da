//! The judge through the real binary: sampled answers scored by a judge model that mock-llm
//! serves, called through Sluice's own routing; scores in the metrics, the recent verdicts, the
//! quality SLI and an evaluation span under the judged request's span; the judge's own limits.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use reqwest::Method;
use sluice_loadtest::otlp_sink::OtlpSink;

use crate::common::{self, TestGateway, eventually};

fn chat_about(topic: usize, stream: bool) -> String {
    serde_json::json!({
        "model": "chat",
        "stream": stream,
        "messages": [{"role": "user", "content": format!("Explain topic {topic} briefly.")}],
    })
    .to_string()
}

fn policy(judge: &str, extra: &str) -> String {
    format!(
        "{extra}providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  m: {{ provider: up, pricing: {{ input: 1, output: 2 }} }}\n  judge-model: {{ provider: up, pricing: {{ input: 1, output: 2 }} }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: m }} ]\n    judge: {judge}\n    slos: [ {{ name: quality, objective: 90, sli: {{ judge_score_at_least: 0.5 }}, min_events: 1 }} ]\n"
    )
}

fn series(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn sampled_answers_are_scored_off_the_request_path() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(
        &policy(
            "{ model: judge-model, sample: 1.0, rubric: helpfulness }",
            "",
        ),
        &mock,
    )
    .await;
    for topic in 0..6 {
        let r = gw
            .post("/v1/chat/completions", chat_about(topic, topic % 2 == 0))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        let _ = r.text().await.expect("body");
    }
    let scored = r#"sluice_judge_samples_total{route="chat",outcome="scored"}"#;
    // A verdict is counted when the judge's call returns; that call's own record reaches the
    // metrics on the recorder's next tick, so both are waited for.
    let judge_calls = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("sluice_requests_total") && l.contains(r#"tenant="judge""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let m = gw
        .metrics_when(|m| series(m, scored) >= 6.0 && judge_calls(m) >= 6.0)
        .await;
    assert_eq!(series(&m, scored), 6.0, "{m}");
    assert_eq!(
        series(
            &m,
            r#"sluice_judge_samples_total{route="chat",outcome="sampled"}"#
        ),
        6.0,
        "the judge's own calls are never sampled"
    );
    assert_eq!(
        series(
            &m,
            r#"sluice_judge_score_count{route="chat",rubric="helpfulness",model="judge-model"}"#
        ),
        6.0
    );
    // The judge calls went through Sluice: recorded, priced, billed to tenant `judge`.
    assert_eq!(judge_calls(&m), 6.0, "{m}");
    assert!(m.contains(r#"sluice_cost_usd_total{"#) && m.contains(r#"tenant="judge""#));
    assert_eq!(mock.requests_for("judge-model"), 6);

    // The recent verdicts (no content without capture), and the quality SLI.
    let recent: serde_json::Value = gw.admin_json("/admin/judge/recent").await;
    let verdicts = recent["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 6);
    for v in verdicts {
        assert_eq!(v["outcome"], "scored");
        assert_eq!(v["route"], "chat");
        assert_eq!(v["judge_model"], "judge-model");
        let score = v["score"].as_f64().expect("score");
        assert!((0.0..=1.0).contains(&score));
        assert!(v.get("content").is_none() && v.get("explanation").is_none());
    }
    let quality = eventually(async || {
        let v: serde_json::Value = gw
            .admin(Method::GET, "/admin/slo")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let s = v["routes"][0]["status"][0].clone();
        (s["windows"]["slo"]["total"] == 6).then_some(s)
    })
    .await;
    assert!(
        quality.is_some(),
        "six verdicts counted for the quality SLO"
    );
}

#[tokio::test]
async fn a_verdict_is_an_evaluation_span_under_the_judged_request() {
    let mock = common::mock_llm().await;
    let sink = OtlpSink::start().await.expect("otlp sink");
    let telemetry = format!(
        "telemetry:\n  otlp: {{ endpoint: \"{}\", protocol: grpc, export_interval: 200ms }}\n  sample: {{ head_ratio: 0.0 }}\n",
        sink.endpoint()
    );
    let gw = TestGateway::start(
        &policy("{ model: judge-model, sample: 1.0 }", &telemetry),
        &mock,
    )
    .await;
    let r = gw
        .post("/v1/chat/completions", chat_about(1, false))
        .send()
        .await
        .expect("request");
    let answer: serde_json::Value = r.json().await.expect("json");
    let found = eventually(async || {
        let spans = sink.spans();
        let eval = spans
            .iter()
            .find(|s| s.name == "evaluate helpfulness")?
            .clone();
        // Judged requests are kept by the tail sampler even at head_ratio 0.
        let server = spans
            .iter()
            .find(|s| s.kind == SpanKind::Server as i32 && s.span_id == eval.parent_span_id)?
            .clone();
        Some((eval, server))
    })
    .await;
    let (eval, server) = found.expect("an evaluation span whose parent is the judged server span");
    assert_eq!(eval.trace_id, server.trace_id);
    let event = eval
        .events
        .iter()
        .find(|e| e.name == "gen_ai.evaluation.result")
        .expect("the evaluation event");
    let attr = |k: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
    };
    assert_eq!(
        attr("gen_ai.evaluation.name"),
        Some(Value::StringValue("helpfulness".into()))
    );
    assert!(
        matches!(attr("gen_ai.evaluation.score.value"), Some(Value::DoubleValue(s)) if (0.0..=1.0).contains(&s))
    );
    assert!(matches!(
        attr("gen_ai.evaluation.score.label"),
        Some(Value::StringValue(_))
    ));
    assert_eq!(
        attr("gen_ai.response.id"),
        answer["id"]
            .as_str()
            .map(|s| Value::StringValue(s.to_owned()))
    );
    // Without content capture, no explanation (it quotes the answer).
    assert!(attr("gen_ai.evaluation.explanation").is_none());
}

#[tokio::test]
async fn the_judges_own_rate_limit_stops_it_and_says_so() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(
        &policy("{ model: judge-model, sample: 1.0, rpm: 2 }", ""),
        &mock,
    )
    .await;
    for topic in 0..5 {
        let r = gw
            .post("/v1/chat/completions", chat_about(topic, false))
            .send()
            .await
            .expect("request");
        assert_eq!(
            r.status(),
            200,
            "user requests are never refused for the judge"
        );
    }
    let over = r#"sluice_judge_samples_total{route="chat",outcome="over_budget"}"#;
    let scored = r#"sluice_judge_samples_total{route="chat",outcome="scored"}"#;
    let m = gw
        .metrics_when(|m| series(m, over) + series(m, scored) >= 5.0)
        .await;
    assert_eq!(series(&m, scored), 2.0, "{m}");
    assert_eq!(series(&m, over), 3.0, "{m}");
    assert_eq!(mock.requests_for("judge-model"), 2);
    let recent: serde_json::Value = gw.admin_json("/admin/judge/recent").await;
    let details: Vec<&str> = recent["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter(|v| v["outcome"] == "over_budget")
        .filter_map(|v| v["detail"].as_str())
        .collect();
    assert_eq!(details.len(), 3);
    assert!(details.iter().all(|d| d.contains("rpm")), "{details:?}");
}

#[tokio::test]
async fn a_slow_judge_never_slows_user_requests() {
    let mock = common::mock_llm().await;
    // The judge takes 10 s a verdict, one at a time; users must not notice. The margins are
    // wide (an answer takes milliseconds) so a loaded machine cannot fail this by accident.
    let gw = TestGateway::start(
        &policy(
            "{ model: slow-judge, sample: 1.0, concurrency: 1, timeout: 30s }",
            "",
        )
        .replace(
            "  judge-model: {",
            "  slow-judge: { provider: up, upstream_model: \"judge-model@ttft:10000\" }\n  judge-model: {",
        ),
        &mock,
    )
    .await;
    let started = tokio::time::Instant::now();
    for topic in 0..20 {
        let one = tokio::time::Instant::now();
        let r = gw
            .post("/v1/chat/completions", chat_about(topic, topic % 2 == 0))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        let _ = r.text().await.expect("body");
        assert!(
            one.elapsed() < Duration::from_secs(5),
            "request {topic} took {:?} with the judge backed up",
            one.elapsed()
        );
    }
    // Twenty answers in far less than one judge verdict each would take (200 s).
    assert!(started.elapsed() < Duration::from_secs(60));
    let m = gw.metrics().await;
    assert!(
        series(
            &m,
            r#"sluice_judge_samples_total{route="chat",outcome="scored"}"#
        ) < 20.0,
        "the judge is still behind: {m}"
    );
}

#[tokio::test]
async fn a_judge_that_answers_prose_is_counted_invalid_and_scores_nothing() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(
        &policy("{ model: prose-judge, sample: 1.0 }", "").replace(
            "  judge-model: {",
            "  prose-judge: { provider: up, upstream_model: \"judge-model@verdict:malformed\" }\n  judge-model: {",
        ),
        &mock,
    )
    .await;
    for topic in 0..4 {
        let r = gw
            .post("/v1/chat/completions", chat_about(topic, topic % 2 == 1))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        let _ = r.text().await.expect("body");
    }
    let invalid = r#"sluice_judge_samples_total{route="chat",outcome="invalid"}"#;
    let m = gw.metrics_when(|m| series(m, invalid) >= 4.0).await;
    assert_eq!(series(&m, invalid), 4.0, "{m}");
    assert_eq!(
        series(
            &m,
            r#"sluice_judge_samples_total{route="chat",outcome="scored"}"#
        ),
        0.0
    );
    assert_eq!(series(&m, "sluice_judge_score_count"), 0.0, "never guessed");
    assert_eq!(mock.requests_for("judge-model@verdict:malformed"), 4);
    let recent: serde_json::Value = gw.admin_json("/admin/judge/recent").await;
    let verdicts = recent["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 4);
    assert!(
        verdicts
            .iter()
            .all(|v| v["outcome"] == "invalid" && v.get("score").is_none_or(|s| s.is_null())),
        "{recent}"
    );
    // Invalid verdicts feed nothing into the quality SLI.
    let slo: serde_json::Value = gw.admin_json("/admin/slo").await;
    assert_eq!(slo["routes"][0]["status"][0]["windows"]["slo"]["total"], 0);
}

/// A downgrade for slow first tokens whose substitute is terse: the judge scores the terse
/// answers low, the quality guard burns on the substitute, and the controller reverts to the
/// original model, saying so in the incident timeline.
#[tokio::test]
async fn a_guarded_downgrade_is_reverted_when_the_judge_scores_it_low() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  slow: { provider: up, upstream_model: \"slow@ttft:120\" }\n  terse: { provider: up, upstream_model: \"terse@words:2\" }\n  judge-model: { provider: up, upstream_model: judge-model }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets: [ { model: slow } ]\n    health: { consecutive_failures: 1000, min_requests: 1000000 }\n    judge: { model: judge-model, sample: 0.0, always: { downgraded: true, per_minute: 1000 } }\n    slos:\n      - { name: fast-start, objective: 95, sli: { ttft_below: 40ms }, min_events: 5 }\n      - { name: quality, objective: 90, sli: { judge_score_at_least: 0.5 }, min_events: 3 }\n    remediation:\n      - { name: faster, when: { slo: fast-start, burn: page }, do: { downgrade_to: [terse] }, guard: { slo: quality, burn: { window: 5m, above: 2 } }, hold: 1m, probe_share: 0.1 }\nslo: { window_scale: 0.01, evaluate_every: 100ms }\n";
    let gw = TestGateway::start(policy, &mock).await;

    let mut topic = 0;
    let events = eventually(async || {
        for _ in 0..5 {
            topic += 1;
            let r = gw
                .post("/v1/chat/completions", chat_about(topic, topic % 2 == 0))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
            let _ = r.text().await.expect("body");
        }
        let v: serde_json::Value = gw
            .admin(Method::GET, "/admin/incidents")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let all = v["open"]
            .as_array()?
            .iter()
            .chain(v["recent"].as_array()?.iter())
            .cloned()
            .collect::<Vec<_>>();
        let inc = all.into_iter().find(|i| i["rule"] == "faster")?;
        let events = inc["events"].as_array()?.clone();
        events
            .iter()
            .any(|e| e["kind"] == "reverted")
            .then_some(events)
    })
    .await
    .expect("the downgrade reverted by its quality guard");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let taken = kinds
        .iter()
        .position(|k| *k == "action_taken")
        .expect("action_taken");
    let reverted = kinds
        .iter()
        .position(|k| *k == "reverted")
        .expect("reverted");
    assert!(taken < reverted, "{kinds:?}");
    let revert = &events[reverted];
    assert_eq!(revert["guard_slo"], "quality", "{revert}");
    assert_eq!(revert["from"], "terse", "{revert}");

    // The terse answers were judged (every downgraded one) and scored low.
    let m = gw.metrics().await;
    assert!(mock.requests_for("terse@words:2") > 0);
    assert!(mock.requests_for("judge-model") > 0);
    let count = series(
        &m,
        r#"sluice_judge_score_count{route="chat",rubric="helpfulness",model="judge-model"}"#,
    );
    let sum = series(
        &m,
        r#"sluice_judge_score_sum{route="chat",rubric="helpfulness",model="judge-model"}"#,
    );
    assert!(
        count >= 3.0 && sum / count < 0.5,
        "{count} verdicts, sum {sum}"
    );

    // Back on the original model: new requests go to `slow` again.
    let before = mock.requests_for("slow@ttft:120");
    for t in 0..4 {
        let r = gw
            .post("/v1/chat/completions", chat_about(1000 + t, false))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(mock.requests_for("slow@ttft:120") - before, 4);
}
