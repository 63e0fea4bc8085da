//! Admin endpoints and graceful shutdown: SIGTERM drains in-flight streams, then exits.

use std::time::Duration;

use crate::common::{self, TestGateway, chat, sse_data};

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
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = reqwest::get(gw.admin_url("/readyz"))
        .await
        .expect("readyz while draining");
    assert_eq!(ready.status(), 503, "draining gateways are not ready");

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
