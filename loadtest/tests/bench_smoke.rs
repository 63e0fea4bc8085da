//! CI smoke run of `sluice-bench`'s engine: about one second of load against an in-process
//! mock-llm. Asserts counts only, never timings (CI machines are shared and noisy).

use std::path::Path;
use std::time::Duration;

use sluice_loadtest::bench::scenario::ModeKind;
use sluice_loadtest::bench::{Load, Scenario, Target, run};
use sluice_loadtest::{MockLlm, MockLlmConfig};

async fn mock_target() -> (MockLlm, Target) {
    let llm = MockLlm::start(MockLlmConfig::default())
        .await
        .expect("mock-llm starts");
    let url = format!("{}/chat/completions", llm.base_url());
    let target = Target::from_url("mock-llm", &url, "sk-test", "bench").expect("valid URL");
    (llm, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_smoke_scenario_completes_every_request() {
    let scenario =
        Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.yaml"))
            .unwrap();
    assert_eq!(scenario.mode, ModeKind::Open);
    let (llm, target) = mock_target().await;
    let load = Load::from_scenario(&scenario);
    let r = run(&load, &target, false).await.unwrap();
    let rep = r.report();

    // 200 req/s for 1 s, capped at 200: exactly 200 scheduled, all answered.
    assert_eq!(rep.counts.sent, 200, "{rep:?}");
    assert_eq!(rep.counts.ok, 200, "{rep:?}");
    assert!(rep.counts.errors.is_empty(), "{:?}", rep.counts.errors);
    assert_eq!(llm.stats().requests, 200);
    // Roughly half stream (the choice is a deterministic hash of the request index).
    assert!((60..140).contains(&rep.counts.ok_streams), "{rep:?}");
    assert_eq!(rep.latency.count + rep.stream_ttlb.count, 200);
    assert_eq!(rep.stream_ttfc.count, rep.counts.ok_streams);
    // Each mock stream: role chunk, 16 words, finish chunk, [DONE].
    assert!(rep.chunks_per_stream >= 18.0, "{rep:?}");
    // Keep-alive: never more connections than the pool.
    assert!(rep.counts.connections_opened <= 8, "{rep:?}");
    llm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_is_bounded_by_count_and_time() {
    let (llm, target) = mock_target().await;
    let load = Load {
        mode: ModeKind::Closed,
        rate: 0.0,
        concurrency: 4,
        connections: 4,
        duration: Duration::from_secs(1),
        max_requests: 300,
        stream_share: 0.2,
        prompt_bytes: vec![40],
        max_tokens: Some(4),
        timeout: Duration::from_secs(5),
    };
    let r = run(&load, &target, false).await.unwrap();
    let rep = r.report();
    assert!(rep.counts.ok > 0, "{rep:?}");
    assert!(rep.counts.sent <= 300, "{rep:?}");
    assert_eq!(rep.counts.ok, rep.counts.sent, "{rep:?}");
    assert_eq!(llm.stats().requests, rep.counts.ok);
    assert!(rep.counts.connections_opened <= 4);
    llm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_not_fatal() {
    // A port nothing listens on: every request fails with `connect`, and the run still ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let target = Target::from_url(
        "nothing",
        &format!("http://{addr}/v1/chat/completions"),
        "k",
        "m",
    )
    .unwrap();
    let load = Load {
        mode: ModeKind::Open,
        rate: 100.0,
        concurrency: 1,
        connections: 2,
        duration: Duration::from_millis(200),
        max_requests: 20,
        stream_share: 0.0,
        prompt_bytes: vec![10],
        max_tokens: None,
        timeout: Duration::from_secs(1),
    };
    let rep = run(&load, &target, false).await.unwrap().report();
    assert_eq!(rep.counts.sent, 20);
    assert_eq!(rep.counts.ok, 0);
    assert_eq!(rep.counts.errors.get("connect").copied(), Some(20));
}
