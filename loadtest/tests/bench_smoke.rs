//! CI smoke run of `sluice-bench`: about one second of load against an in-process mock-llm, and
//! a tiny `compare` of the real binaries (mock-llm, Sluice and Sluice again as the baseline).
//! Asserts counts only, never timings (CI machines are shared and noisy).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

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

/// The `sluice` binary of this build: cargo puts it next to this package's binaries.
fn sluice_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .parent()
        .expect("a target directory");
    let sluice = dir.join("sluice");
    assert!(
        sluice.is_file(),
        "{} is missing: build it first with `cargo build -p sluice-gateway --bin sluice`",
        sluice.display()
    );
    sluice
}

/// The first of six consecutive free ports on 127.0.0.1 (compare's mock, nginx, sluice, sluice
/// admin, baseline, baseline admin).
fn six_free_ports() -> u16 {
    for _ in 0..100 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let base = probe.local_addr().expect("an address").port();
        drop(probe);
        if base > u16::MAX - 6 {
            continue;
        }
        let held: Vec<_> = (base..base + 6)
            .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == 6 {
            return base;
        }
    }
    panic!("no six consecutive free ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_with_a_baseline_measures_it_like_sluice() {
    let sluice = sluice_binary();
    let dir = std::env::temp_dir().join(format!("sluice-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("tiny.yaml");
    // 2 rounds × 3 targets × at most 100 requests, a second each at most.
    std::fs::write(
        &scenario,
        "name: tiny\nmode: closed\nconcurrency: 4\nduration: 1s\nmax_requests: 100\nrounds: 2\n\
         stream_share: 0.5\nmax_tokens: 4\ntargets: [direct, sluice]\n",
    )
    .unwrap();
    let (json, md) = (dir.join("out.json"), dir.join("out.md"));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-bench"));
    cmd.arg("compare")
        .arg(&scenario)
        .arg("--sluice")
        .arg(&sluice)
        .arg("--mock-llm")
        .arg(env!("CARGO_BIN_EXE_mock-llm"))
        .arg("--baseline")
        .arg(&sluice)
        .args(["--telemetry", "off", "--quiet", "--threads", "1"])
        .args(["--base-port", &six_free_ports().to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--md")
        .arg(&md)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("compare ends within 2 minutes")
        .expect("sluice-bench runs");
    assert!(
        out.status.success(),
        "sluice-bench compare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let md = std::fs::read_to_string(&md).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // --baseline added the target after the scenario's, measured round by round like the others.
    let names: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["direct", "sluice", "baseline"]);
    for t in report["targets"].as_array().unwrap() {
        let counts = &t["run"]["counts"];
        let ok = counts["ok"].as_u64().unwrap();
        assert!((1..=200).contains(&ok), "{t}");
        assert_eq!(counts["sent"].as_u64(), Some(ok), "{t}");
        assert_eq!(counts["errors"], serde_json::json!({}), "{t}");
        assert_eq!(t["rounds"].as_array().unwrap().len(), 2, "{t}");
        assert!(t["proxy_cpu_us_per_req"].as_f64().unwrap() >= 0.0, "{t}");
    }
    let baseline = &report["targets"][2];
    assert!(
        baseline["peak_rss_mb"].as_f64().unwrap() > 0.0,
        "{baseline}"
    );
    assert!(
        report["rss_series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row[1].get("baseline").is_some())
    );
    assert_eq!(report["baseline_binary"], sluice.display().to_string());
    let vs = &report["vs_baseline"];
    assert_eq!(
        vs["cpu_change_pct_per_round"].as_array().unwrap().len(),
        2,
        "{vs}"
    );
    assert!(md.contains("| baseline |"), "{md}");
    assert!(md.contains("Sluice vs baseline"), "{md}");
}
