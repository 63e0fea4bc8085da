//! The failover matrix: every mock-llm failure mode on the first target is answered by the
//! fallback, with exactly one response and asserted upstream call counts; failures after the
//! first byte are never retried; when every target fails the client gets one OpenAI error.

use std::time::Duration;

use crate::common::{self, TestGateway, assert_no_canary, chat, sse_data, stream_text};

/// (mode, upstream model of the failing primary)
const MODES: [(&str, &str); 13] = [
    ("rate_limited", "p@429:0"),
    ("e500", "p@500"),
    ("e502", "p@502"),
    ("e503", "p@503"),
    ("html502", "p@html502"),
    ("html200", "p@html200"),
    ("garbage", "p@garbage"),
    ("first_error", "p@first-error"),
    ("slow_ttft", "p@ttft:3000"),
    ("refused", "refused"),
    // The provider refuses Sluice's own credentials: a status the provider chose, and a real
    // refusal of a wrong key by mock-llm's key check.
    ("unauthorized", "p@401"),
    ("forbidden", "p@403"),
    ("wrong_key", "p-wrong-key"),
];

/// The provider key of the `wrong_key` mode: not the one mock-llm accepts.
const WRONG_KEY_ENV: &str = "SLUICE_TEST_WRONG_PROVIDER_KEY";

fn policy(dead_port: u16) -> String {
    let mut models = String::new();
    let mut routes = String::new();
    for (mode, up) in MODES {
        let provider = match mode {
            "refused" => "dead",
            "wrong_key" => "wrongkey",
            _ => "up",
        };
        for stream in ["s", "n"] {
            models.push_str(&format!(
                "  primary-{mode}-{stream}: {{ provider: {provider}, upstream_model: \"{up}\" }}\n  backup-{mode}-{stream}: {{ provider: up, upstream_model: \"b-{mode}-{stream}\" }}\n"
            ));
            routes.push_str(&format!(
                "  - name: {mode}-{stream}\n    match: {{ model: t-{mode}-{stream} }}\n    targets: [ {{ model: primary-{mode}-{stream} }} ]\n    fallbacks: [ backup-{mode}-{stream} ]\n    timeouts: {{ ttft: 500ms, idle: 1s, total: 10s }}\n"
            ));
        }
    }
    format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: {env}, connect_timeout: 1s }}\n  dead: {{ kind: openai, base_url: \"http://127.0.0.1:{dead_port}/v1\", api_key_env: {env}, connect_timeout: 1s }}\n  wrongkey: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: {WRONG_KEY_ENV}, connect_timeout: 1s }}\nmodels:\n{models}routes:\n{routes}",
        env = common::CANARY_ENV
    )
}

#[tokio::test]
async fn every_failure_mode_before_the_first_byte_fails_over() {
    let mock = common::mock_llm().await;
    let dead_port = common::free_port();
    let gw = TestGateway::start_with_env(
        &policy(dead_port),
        &mock,
        "",
        &[(WRONG_KEY_ENV, "sk-not-the-key-mock-llm-accepts")],
    )
    .await;

    for (mode, up) in MODES {
        for stream in [false, true] {
            let s = if stream { "s" } else { "n" };
            let resp = gw
                .post(
                    "/v1/chat/completions",
                    chat(&format!("t-{mode}-{s}"), stream),
                )
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 200, "{mode} stream={stream}");
            assert!(resp.headers().contains_key("x-request-id"));
            let backup = format!("b-{mode}-{s}");
            if stream {
                assert_eq!(resp.headers()["content-type"], "text/event-stream");
                assert_eq!(resp.headers()["x-accel-buffering"], "no");
                let events = sse_data(resp).await;
                assert_eq!(
                    events.last().map(String::as_str),
                    Some("[DONE]"),
                    "{mode}: {events:?}"
                );
                let roles = events
                    .iter()
                    .filter(|e| e.contains("\"role\":\"assistant\""))
                    .count();
                assert_eq!(roles, 1, "{mode}: exactly one answer: {events:?}");
                assert!(
                    events[0].contains(&format!("\"model\":\"{backup}\"")),
                    "{mode}: {events:?}"
                );
                assert!(!stream_text(&events).is_empty());
            } else {
                let body: serde_json::Value = resp.json().await.expect("json");
                assert_eq!(body["model"], backup, "{mode}");
                assert!(
                    body["choices"][0]["message"]["content"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty())
                );
            }
            let expected_primary = u64::from(mode != "refused");
            assert_eq!(
                mock.requests_for(up),
                expected_primary * (1 + u64::from(stream)),
                "{mode} primary calls"
            );
            assert_eq!(
                mock.requests_for(&backup),
                1,
                "{mode} stream={stream} backup calls"
            );
        }
    }
    assert_eq!(
        mock.stats().unauthorized,
        2,
        "the wrong key was refused by mock-llm itself"
    );

    // Every attempt is counted once, under what became of it. Two requests (a stream and not)
    // per mode: the primary's failure, then the backup's answer.
    let per_mode = |outcome: &str| -> u64 {
        let modes: &[&str] = match outcome {
            "ok" => &MODES.map(|(m, _)| m),
            "rate_limited" => &["rate_limited"],
            "timeout" => &["slow_ttft"],
            "connect_error" => &["refused"],
            "server_error" => &[
                "e500",
                "e502",
                "e503",
                "html502",
                "html200",
                "garbage",
                "first_error",
                "unauthorized",
                "forbidden",
                "wrong_key",
            ],
            _ => &[],
        };
        2 * modes.len() as u64
    };
    let want: Vec<(&str, u64)> = [
        "ok",
        "rate_limited",
        "timeout",
        "connect_error",
        "server_error",
    ]
    .into_iter()
    .map(|o| (o, per_mode(o)))
    .collect();
    let total: u64 = want.iter().map(|(_, n)| n).sum();
    let attempts = |metrics: &str, outcome: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("sluice_upstream_attempts_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let metrics = gw
        .metrics_when(|m| want.iter().map(|(o, _)| attempts(m, o)).sum::<u64>() >= total)
        .await;
    for (outcome, n) in &want {
        assert_eq!(attempts(&metrics, outcome), *n, "{outcome}:\n{metrics}");
    }
    assert_eq!(attempts(&metrics, "client_error"), 0, "{metrics}");
}

/// A `Retry-After` the route may wait for (under `retry.max_retry_after`) is waited for before
/// each retry of the same target, the second and third as well as the first.
#[tokio::test]
async fn a_short_retry_after_is_waited_before_every_retry() {
    let mock = common::mock_llm().await;
    let body = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  limited: { provider: up, upstream_model: \"l@429:1\" }\nroutes:\n  - name: patient\n    match: { model: patient }\n    targets: [ { model: limited } ]\n    retry: { max_attempts: 3, max_retry_after: 5s }\n    timeouts: { total: 60s }\n";
    let gw = TestGateway::start(body, &mock).await;
    let started = tokio::time::Instant::now();
    let resp = gw
        .post("/v1/chat/completions", chat("patient", false))
        .send()
        .await
        .expect("request");
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 429);
    let text = resp.text().await.expect("body");
    assert_no_canary(&text);
    assert_eq!(
        mock.requests_for("l@429:1"),
        3,
        "every attempt was made: {text}"
    );
    // Two retries, each after the provider's one second.
    assert!(
        elapsed >= Duration::from_secs(2),
        "the retries did not wait for Retry-After: {elapsed:?}"
    );
}

#[tokio::test]
async fn failures_after_the_first_byte_end_with_an_error_event_and_no_retry() {
    let mock = common::mock_llm().await;
    let body = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  cut: { provider: up, upstream_model: \"p@cut:3\" }\n  stall: { provider: up, upstream_model: \"p@stall:2\" }\n  backup: { provider: up, upstream_model: b }\nroutes:\n  - name: cut\n    match: { model: t-cut }\n    targets: [ { model: cut } ]\n    fallbacks: [ backup ]\n  - name: stall\n    match: { model: t-stall }\n    targets: [ { model: stall } ]\n    fallbacks: [ backup ]\n    timeouts: { idle: 400ms }\n";
    let gw = TestGateway::start(body, &mock).await;

    let resp = gw
        .post("/v1/chat/completions", chat("t-cut", true))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    let last = events.last().expect("events");
    assert!(last.starts_with("{\"error\""), "{events:?}");
    assert!(last.contains("stream_interrupted"), "{last}");
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "a cut stream must not look finished"
    );
    assert_no_canary(last);

    let started = tokio::time::Instant::now();
    let resp = gw
        .post("/v1/chat/completions", chat("t-stall", true))
        .send()
        .await
        .expect("request");
    let events = sse_data(resp).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the idle timeout ends a stalled stream"
    );
    let last = events.last().expect("events");
    assert!(
        last.contains("stream_interrupted") && last.contains("idle"),
        "{last}"
    );
    // `stall:2` is the role chunk and one content chunk.
    assert_eq!(
        stream_text(&events).split_whitespace().count(),
        1,
        "{events:?}"
    );

    assert_eq!(mock.requests_for("p@cut:3"), 1);
    assert_eq!(mock.requests_for("p@stall:2"), 1);
    assert_eq!(mock.requests_for("b"), 0, "no retry after the first byte");
    // The record is written just after the last byte goes out: wait for it, bounded.
    let metrics = gw
        .metrics_when(|m| m.contains("outcome=\"truncated\""))
        .await;
    assert!(metrics.contains("outcome=\"truncated\""), "{metrics}");
}

#[tokio::test]
async fn when_every_target_fails_the_client_gets_one_openai_error() {
    let mock = common::mock_llm().await;
    let dead = common::free_port();
    let body = format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\n  dead: {{ kind: openai, base_url: \"http://127.0.0.1:{dead}/v1\", api_key_env: SLUICE_TEST_PROVIDER_KEY, connect_timeout: 1s }}\n  nokey: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_UNSET_KEY }}\nmodels:\n  a429: {{ provider: up, upstream_model: \"a@429:30\" }}\n  b429: {{ provider: up, upstream_model: \"b@429:30\" }}\n  a500: {{ provider: up, upstream_model: \"a@500\" }}\n  b503: {{ provider: up, upstream_model: \"b@503\" }}\n  slow: {{ provider: up, upstream_model: \"s@ttft:3000\" }}\n  gone: {{ provider: dead }}\n  keyless: {{ provider: nokey }}\n  bad-request: {{ provider: up, upstream_model: \"x@400\" }}\nroutes:\n  - {{ name: r429, match: {{ model: t429 }}, targets: [ {{ model: a429 }} ], fallbacks: [ b429 ] }}\n  - {{ name: r5xx, match: {{ model: t5xx }}, targets: [ {{ model: a500 }} ], fallbacks: [ b503 ], retry: {{ max_attempts: 2 }} }}\n  - {{ name: rslow, match: {{ model: tslow }}, targets: [ {{ model: slow }} ], retry: {{ max_attempts: 2 }}, timeouts: {{ ttft: 300ms }} }}\n  - {{ name: rgone, match: {{ model: tgone }}, targets: [ {{ model: gone }} ] }}\n"
    );
    let gw = TestGateway::start(&body, &mock).await;

    let cases = [
        ("t429", 429, "rate_limit_error", "rate_limit_exceeded"),
        ("t5xx", 503, "server_error", "upstream_error"),
        ("tslow", 504, "server_error", "upstream_timeout"),
        ("tgone", 502, "server_error", "upstream_error"),
        ("keyless", 503, "server_error", "provider_unavailable"),
    ];
    for (model, status, kind, code) in cases {
        let resp = gw
            .post("/v1/chat/completions", chat(model, false))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), status, "{model}");
        if status == 429 {
            assert_eq!(resp.headers()["retry-after"], "30");
            assert_eq!(resp.headers()["retry-after-ms"], "30000");
        }
        let text = resp.text().await.expect("body");
        assert_no_canary(&text);
        let v: serde_json::Value = serde_json::from_str(&text).expect("OpenAI error JSON");
        assert_eq!(v["error"]["type"], kind, "{model}: {text}");
        assert_eq!(v["error"]["code"], code, "{model}: {text}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(
            v["error"]
                .as_object()
                .is_some_and(|o| o.contains_key("param"))
        );
    }
    // A Retry-After longer than max_retry_after is not waited for: one call each.
    assert_eq!(mock.requests_for("a@429:30"), 1);
    assert_eq!(mock.requests_for("b@429:30"), 1);
    assert_eq!(mock.requests_for("a@500"), 1);
    assert_eq!(mock.requests_for("b@503"), 1);
    assert_eq!(
        mock.requests_for("s@ttft:3000"),
        2,
        "a single-target route retries its target"
    );

    // A provider's own 4xx is the client's problem: passed through, never retried.
    let resp = gw
        .post("/v1/chat/completions", chat("bad-request", false))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert!(v["error"]["message"].is_string());
    assert_eq!(mock.requests_for("x@400"), 1);
}
