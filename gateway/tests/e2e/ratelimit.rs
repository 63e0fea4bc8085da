//! Per-key limits: requests and tokens per minute refuse with OpenAI's 429 before any upstream
//! call, tell the client when to come back, and are counted.

use crate::common::{self, TestGateway, assert_no_canary};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n";

fn header<'r>(resp: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn requests_over_rpm_get_429_and_never_reach_the_provider() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start_full(POLICY, &mock, "", ", limits: { rpm: 3 }").await;

    // A request that cannot be served does not use up the allowance.
    let unknown = gw
        .post("/v1/chat/completions", common::chat("no-such-model", false))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);

    for remaining in ["2", "1", "0"] {
        let resp = gw
            .post("/v1/chat/completions", common::chat("m", false))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            Some(remaining)
        );
        assert!(header(&resp, "x-ratelimit-reset-requests").is_some());
        assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), None);
    }

    for stream in [false, true] {
        let resp = gw
            .post("/v1/chat/completions", common::chat("m", stream))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 429, "stream={stream}");
        assert_eq!(header(&resp, "content-type"), Some("application/json"));
        assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), Some("0"));
        let retry: u64 = header(&resp, "retry-after")
            .and_then(|v| v.parse().ok())
            .expect("retry-after in seconds");
        // One of three slots a minute comes back within 20 s.
        assert!((1..=20).contains(&retry), "{retry}");
        let retry_ms: u64 = header(&resp, "retry-after-ms")
            .and_then(|v| v.parse().ok())
            .expect("retry-after-ms");
        assert!(retry_ms <= 20_000, "{retry_ms}");
        let text = resp.text().await.expect("body");
        assert_no_canary(&text);
        assert!(
            !text.contains(common::KEY),
            "the virtual key is never echoed: {text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{text}");
        assert_eq!(v["error"]["type"], "requests", "{text}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("3 requests per minute")),
            "{text}"
        );
    }
    assert_eq!(
        mock.stats().requests,
        3,
        "refused requests never reach the provider"
    );

    let metrics = gw
        .metrics_when(|m| {
            m.lines()
                .any(|l| l.starts_with("sluice_ratelimited_total{") && l.ends_with(" 2"))
        })
        .await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sluice_ratelimited_total{"))
        .expect("ratelimited series");
    assert!(line.contains("limit=\"requests\""), "{line}");
    assert!(line.contains("tenant=\"test\""), "{line}");
    assert!(line.contains("route=\"m\""), "{line}");
    assert!(line.ends_with(" 2"), "{line}");
    assert!(
        metrics.contains("status=\"429\""),
        "refusals are requests too"
    );
}

#[tokio::test]
async fn tokens_over_tpm_get_429_after_the_request_that_crossed_the_limit() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start_full(POLICY, &mock, "", ", limits: { tpm: 20 }").await;

    let first = gw
        .post("/v1/chat/completions", common::chat("m", false))
        .send()
        .await
        .expect("request");
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), Some("20"));
    assert_eq!(header(&first, "x-ratelimit-remaining-tokens"), Some("20"));
    let v: serde_json::Value = first.json().await.expect("json");
    let total = v["usage"]["total_tokens"].as_u64().expect("usage");
    assert!(
        total >= 20,
        "the first answer alone must cross the limit: {total}"
    );

    // Usage is added when the request is recorded, just after its last byte.
    gw.metrics_when(|m| m.contains("status=\"200\"")).await;
    let second = gw
        .post("/v1/chat/completions", common::chat("m", true))
        .send()
        .await
        .expect("request");
    assert_eq!(second.status(), 429);
    assert_eq!(header(&second, "x-ratelimit-remaining-tokens"), Some("0"));
    assert!(header(&second, "retry-after-ms").is_some());
    let v: serde_json::Value = second.json().await.expect("json");
    assert_eq!(v["error"]["type"], "tokens");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(mock.stats().requests, 1);

    let metrics = gw.metrics_when(|m| m.contains("limit=\"tokens\"")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_ratelimited_total{") && l.contains("limit=\"tokens\"")),
        "{metrics}"
    );
}

/// `x-ratelimit-*` go on every answer: a stream's head and a cache hit carry them as a plain
/// answer does, and a hit still counts against the key's allowance.
#[tokio::test]
async fn streams_and_cache_hits_carry_the_ratelimit_headers() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\nroutes:\n  - { name: cached, match: { model: c }, targets: [ { model: m } ], cache: { ttl: 1h } }\n";
    let gw = TestGateway::start_full(policy, &mock, "", ", limits: { rpm: 10, tpm: 100000 }").await;
    let deterministic = |stream: bool| {
        serde_json::json!({
            "model": "c",
            "stream": stream,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Say something deterministic."}],
        })
        .to_string()
    };
    let mut remaining = 10;
    for (stream, want_cache) in [
        (true, "miss"),
        (true, "hit"),
        (false, "miss"),
        (false, "hit"),
    ] {
        let resp = gw
            .post("/v1/chat/completions", deterministic(stream))
            .send()
            .await
            .expect("request");
        remaining -= 1;
        let case = format!("stream={stream} cache={want_cache}");
        assert_eq!(resp.status(), 200, "{case}");
        assert_eq!(header(&resp, "x-sluice-cache"), Some(want_cache), "{case}");
        if stream {
            assert_eq!(
                header(&resp, "content-type"),
                Some("text/event-stream"),
                "{case}"
            );
        }
        assert_eq!(
            header(&resp, "x-ratelimit-limit-requests"),
            Some("10"),
            "{case}"
        );
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            Some(remaining.to_string().as_str()),
            "{case}"
        );
        assert!(
            header(&resp, "x-ratelimit-reset-requests").is_some(),
            "{case}"
        );
        assert_eq!(
            header(&resp, "x-ratelimit-limit-tokens"),
            Some("100000"),
            "{case}"
        );
        assert!(
            header(&resp, "x-ratelimit-remaining-tokens").is_some(),
            "{case}"
        );
        let body = resp.text().await.expect("body");
        if stream {
            assert!(body.ends_with("data: [DONE]\n\n"), "{case}: {body}");
        }
        if want_cache == "miss" {
            // Stored when the request is recorded, just after its last byte.
            let misses = if stream { " 1" } else { " 2" };
            gw.metrics_when(|m| {
                m.lines().any(|l| {
                    l.starts_with("sluice_cache_requests_total{route=\"cached\",result=\"miss\"")
                        && l.ends_with(misses)
                })
            })
            .await;
        }
    }
    assert_eq!(mock.stats().requests, 2, "the hits made no provider call");
}
