//! The response cache: a repeated deterministic request is answered without calling the
//! provider, byte for byte as the first time (JSON or SSE); warm requests, failed streams and
//! expired entries go upstream.

use std::time::Duration;

use crate::common::{self, TestGateway};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n  cutm: { provider: up, upstream_model: \"m@cut:2\" }\n  e: { provider: up, kind: embedding }\nroutes:\n  - name: cached\n    match: { model: c }\n    targets: [ { model: m } ]\n    cache: { ttl: 1h }\n  - name: cached-short\n    match: { model: cs }\n    targets: [ { model: m } ]\n    cache: { ttl: 300ms }\n  - name: cached-cut\n    match: { model: cc }\n    targets: [ { model: cutm } ]\n    retry: { max_attempts: 1 }\n    cache: { ttl: 1m }\n  - name: cached-emb\n    match: { model: ce }\n    targets: [ { model: e } ]\n    cache: { ttl: 1m }\n";

fn chat(model: &str, stream: bool, temperature: f64) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "temperature": temperature,
        "messages": [{"role": "user", "content": "Say something deterministic."}],
    })
    .to_string()
}

async fn send(gw: &TestGateway, path: &str, body: String) -> (u16, String, String) {
    let resp = gw.post(path, body).send().await.expect("request");
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-sluice-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, cache, resp.text().await.expect("body"))
}

fn upstream_calls(mock: &sluice_loadtest::mock_llm::MockLlm) -> u64 {
    mock.stats().requests
}

#[tokio::test]
async fn deterministic_answers_replay_from_the_cache() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(POLICY, &mock).await;
    let path = "/v1/chat/completions";

    // Non-streaming: miss, then hit with the very same bytes and no provider call.
    let (status, cache, first) = send(&gw, path, chat("c", false, 0.0)).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    // The answer is stored when the request is recorded, just after its last byte.
    gw.metrics_when(|m| m.contains("result=\"miss\"")).await;
    let (status, cache, again) = send(&gw, path, chat("c", false, 0.0)).await;
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert_eq!(first, again);
    assert_eq!(upstream_calls(&mock), 1);

    // Streaming is a different request (the body differs), cached as the SSE it was.
    let (status, cache, first) = send(&gw, path, chat("c", true, 0.0)).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    assert!(first.ends_with("data: [DONE]\n\n"), "{first}");
    gw.metrics_when(|m| {
        m.lines()
            .any(|l| l.contains("result=\"miss\"") && l.ends_with(" 2"))
    })
    .await;
    let resp = gw
        .post(path, chat("c", true, 0.0))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-sluice-cache"], "hit");
    let again = resp.text().await.expect("body");
    assert_eq!(first, again);
    let events: Vec<String> = again
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_owned))
        .collect();
    assert!(!common::stream_text(&events).is_empty());
    assert_eq!(upstream_calls(&mock), 2);

    // Embeddings are deterministic whatever the temperature.
    let emb = r#"{"model":"ce","input":"hello"}"#;
    let (_, cache, first) = send(&gw, "/v1/embeddings", emb.to_owned()).await;
    assert_eq!(cache, "miss");
    gw.metrics_when(|m| m.contains("route=\"cached-emb\",result=\"miss\""))
        .await;
    let (_, cache, again) = send(&gw, "/v1/embeddings", emb.to_owned()).await;
    assert_eq!((cache.as_str(), first == again), ("hit", true));
    assert_eq!(upstream_calls(&mock), 3);

    // Warm requests are not deterministic: always upstream.
    for _ in 0..2 {
        let (status, cache, _) = send(&gw, path, chat("c", false, 0.7)).await;
        assert_eq!((status, cache.as_str()), (200, "bypass"));
    }
    assert_eq!(upstream_calls(&mock), 5);

    // Past a route's ttl the entry is gone. Only waiting longer than the ttl matters here, so
    // a slow machine cannot make this pass or fail by accident; the hits above use a route
    // whose ttl no pair of requests can outlast.
    let (_, cache, _) = send(&gw, path, chat("cs", false, 0.0)).await;
    assert_eq!(cache, "miss");
    gw.metrics_when(|m| m.contains("route=\"cached-short\",result=\"miss\""))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, cache, _) = send(&gw, path, chat("cs", false, 0.0)).await;
    assert_eq!(cache, "miss");
    assert_eq!(upstream_calls(&mock), 7);

    let metrics = gw
        .metrics_when(|m| {
            m.lines().any(|l| {
                l.starts_with("sluice_cache_requests_total{route=\"cached-short\",result=\"miss\"")
                    && l.ends_with(" 2")
            })
        })
        .await;
    let value = |route: &str, result: &str| {
        let prefix =
            format!("sluice_cache_requests_total{{route=\"{route}\",result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
    };
    assert_eq!(value("cached", "hit").as_deref(), Some("2"), "{metrics}");
    assert_eq!(value("cached", "miss").as_deref(), Some("2"), "{metrics}");
    assert_eq!(
        value("cached-short", "miss").as_deref(),
        Some("2"),
        "{metrics}"
    );
    assert_eq!(value("cached", "bypass").as_deref(), Some("2"), "{metrics}");
    assert_eq!(
        value("cached-emb", "hit").as_deref(),
        Some("1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_never_replayed() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(POLICY, &mock).await;
    for round in 1..=2u64 {
        let (status, cache, body) = send(&gw, "/v1/chat/completions", chat("cc", true, 0.0)).await;
        assert_eq!((status, cache.as_str()), (200, "miss"), "round {round}");
        assert!(body.contains("stream_interrupted"), "{body}");
        gw.metrics_when(|m| {
            m.lines().any(|l| {
                l.starts_with("sluice_cache_requests_total{route=\"cached-cut\",result=\"miss\"")
                    && l.ends_with(&format!(" {round}"))
            })
        })
        .await;
        assert_eq!(upstream_calls(&mock), round);
    }
}

/// The cache is scoped by tenant: the same deterministic request from two keys of two tenants
/// is two provider calls; from two keys of one tenant it is one.
#[tokio::test]
async fn cached_answers_are_shared_within_a_tenant_only() {
    const SAME_TENANT: &str = "sk-sluice-test-same-tenant";
    const OTHER_TENANT: &str = "sk-sluice-test-other-tenant";
    let mock = common::mock_llm().await;
    let keys = common::more_keys(&[
        ("same", SAME_TENANT, "test"),
        ("other", OTHER_TENANT, "other"),
    ]);
    let gw = TestGateway::start_full(POLICY, &mock, "", &keys).await;
    let path = "/v1/chat/completions";
    let as_key = |key: &str, stream: bool| {
        reqwest::Client::new()
            .post(gw.url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(chat("c", stream, 0.0))
    };

    for stream in [false, true] {
        let n = u64::from(stream);
        let first = as_key(common::KEY, stream).send().await.expect("request");
        assert_eq!(first.headers()["x-sluice-cache"], "miss", "stream={stream}");
        let first = first.text().await.expect("body");
        // Stored when the request is recorded, just after its last byte.
        gw.metrics_when(|m| {
            m.lines().any(|l| {
                l.starts_with("sluice_cache_requests_total{route=\"cached\",result=\"miss\"")
                    && l.ends_with(&format!(" {}", 1 + 2 * n))
            })
        })
        .await;

        // Another tenant asking the very same thing: its own provider call.
        let other = as_key(OTHER_TENANT, stream).send().await.expect("request");
        assert_eq!(other.status(), 200);
        assert_eq!(other.headers()["x-sluice-cache"], "miss", "stream={stream}");
        other.text().await.expect("body");
        assert_eq!(upstream_calls(&mock), 2 + 2 * n, "stream={stream}");

        // A second key of the first tenant: served from the first key's entry.
        let same = as_key(SAME_TENANT, stream).send().await.expect("request");
        assert_eq!(same.headers()["x-sluice-cache"], "hit", "stream={stream}");
        assert_eq!(same.text().await.expect("body"), first, "stream={stream}");
        assert_eq!(upstream_calls(&mock), 2 + 2 * n, "stream={stream}");
    }
}
