//! Admin endpoints and graceful shutdown: SIGTERM drains in-flight streams, then exits.

use std::time::Duration;

use crate::common::{self, TestGateway, chat, eventually, sse_data};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  slow: { provider: up, upstream_model: \"slow@delay:100\" }\n";

#[tokio::test]
async fn sigterm_drains_in_flight_streams_then_exits() {
    let mock = common::mock_llm().await;
    let mut gw = TestGateway::start(POLICY, &mock).await;
    assert_eq!(
        reqwest::get(gw.admin_url("/healthz"))
            .await
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(gw.admin_url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        200
    );

    let resp = gw
        .post("/v1/chat/completions", chat("slow", true))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    #[expect(
        clippy::disallowed_methods,
        reason = "the test reads the stream while it signals"
    )]
    let reader = tokio::spawn(sse_data(resp));
    // Signal once the stream is under way upstream.
    eventually(async || (mock.stats().requests == 1).then_some(())).await;
    gw.signal("TERM");
    let not_ready = eventually(async || {
        let r = reqwest::get(gw.admin_url("/readyz")).await.ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    assert!(not_ready.is_some(), "draining gateways are not ready");

    let events = reader.await.expect("reader");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "the stream finished: {events:?}"
    );
    assert!(
        gw.wait_exit(Duration::from_secs(5)).await,
        "exits once drained"
    );
    let log = gw.log_text();
    assert!(log.contains("draining in-flight requests"), "{log}");
}

#[tokio::test]
async fn when_the_grace_runs_out_streams_end_properly_and_are_recorded() {
    let mock = common::mock_llm().await;
    // 16 events 500 ms apart: far longer than the 1 s grace.
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  slow: { provider: up, upstream_model: \"slow@delay:500\" }\n";
    let mut gw = TestGateway::start_with(policy, &mock, "  shutdown_grace: 1s\n").await;
    let mut resp = gw
        .post("/v1/chat/completions", chat("slow", true))
        .header("x-request-id", "req-grace")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    let first = resp.chunk().await.expect("chunk").expect("first event");
    text.push_str(&String::from_utf8_lossy(&first));
    gw.signal("TERM");

    // New requests while draining: a clear 503 that closes the connection.
    let refused = eventually(async || {
        let r = gw
            .post("/v1/chat/completions", chat("slow", false))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(r)
    })
    .await
    .expect("refused while draining");
    assert_eq!(
        refused
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert!(refused.headers().contains_key("retry-after"));
    let v: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(v["error"]["code"], "draining");

    // The stream ends with an error event and a clean end of body, not a reset.
    while let Some(chunk) = resp.chunk().await.expect("the body ends cleanly") {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let last = text
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(last.contains("\"code\":\"stream_interrupted\""), "{text}");
    assert!(last.contains("shut down"), "{last}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(gw.wait_exit(Duration::from_secs(15)).await, "exits");
    let log = gw.log_text();
    let line = log
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"request_id\":\"req-grace\""))
        .unwrap_or_else(|| panic!("the stream's record was written: {log}"));
    assert!(line.contains("\"outcome\":\"truncated\""), "{line}");
}

/// A data-plane port that is taken stops Sluice at once, with an error naming the address,
/// instead of a process that runs without serving.
#[tokio::test]
async fn a_taken_port_stops_the_start_with_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("sluice.yaml");
    let yaml = sluice_config::QUICKSTART_YAML
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace(
            "127.0.0.1:9464",
            &format!("127.0.0.1:{}", common::free_port()),
        )
        .replace(
            "data_dir: sluice-data",
            &format!("data_dir: \"{}\"", dir.path().join("data").display()),
        );
    std::fs::write(&policy, yaml).expect("write policy");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--config")
            .arg(&policy)
            .output(),
    )
    .await
    .expect("sluice exits by itself")
    .expect("sluice runs");
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}: "))
            && stderr.contains("in use"),
        "{stderr}"
    );
    drop(taken);
}
