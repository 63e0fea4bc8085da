//! Limits and budgets shared through Redis (`state.redis`): several real `sluice` processes on
//! loopback share one real `redis-server` that the test starts (Debian's, installed by
//! `scripts/ensure-deps.sh`), on a free port with its own directory, and kills and restarts.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{self, TestGateway, eventually};

/// A `redis-server` of the test's own: no persistence, loopback only.
struct Redis {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Self {
            port: common::free_port(),
            child: None,
            dir,
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/ensure-deps.sh installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if self
                .command("PING")
                .await
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// SIGKILL, as a crashed or partitioned Redis looks to its clients.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One inline command; the raw reply.
    async fn command(&self, cmd: &str) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Providers and models of every test here: Sluice's in-process mock, fast, with prices that
/// make one small request cost about a cent; and the `state` section pointing at `redis`.
fn policy(redis: &Redis, state_extra: &str, tail: &str) -> String {
    format!(
        "providers:\n  local: {{ kind: mock, ttft_ms: 0, tokens_per_s: 100000 }}\nmodels:\n  m: {{ provider: local, pricing: {{ input: 1000, output: 1000 }} }}\nstate:\n  redis: {{ url: \"{}\"{state_extra} }}\n{tail}",
        redis.url()
    )
}

async fn admin_state(gw: &TestGateway) -> serde_json::Value {
    gw.admin(reqwest::Method::GET, "/admin/state")
        .send()
        .await
        .expect("admin state")
        .json()
        .await
        .expect("json")
}

async fn wait_up(gw: &TestGateway, up: bool) {
    let seen = eventually(async || {
        let v = admin_state(gw).await;
        (v["redis"]["up"] == up).then_some(v)
    })
    .await;
    assert!(
        seen.is_some(),
        "backend up={up} never seen:\n{}",
        gw.log_text()
    );
}

async fn chat(client: &reqwest::Client, gw: &TestGateway) -> (u16, String, Duration) {
    let started = tokio::time::Instant::now();
    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(common::KEY)
        .header("content-type", "application/json")
        .body(common::chat("m", false))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("body");
    (status, body, started.elapsed())
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test]
async fn three_replicas_admit_a_keys_rpm_once_between_them() {
    const N: u64 = 300;
    const SENT: u64 = 450;
    let redis = Redis::start().await;
    let mock = common::mock_llm().await;
    // Closed, so a slow moment on a loaded machine shows as 503s, never as extra admissions.
    let body = policy(&redis, ", timeout: 1s, fail: closed", "");
    let key = format!(", limits: {{ rpm: {N} }}");
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(TestGateway::start_full(&body, &mock, "", &key).await);
    }
    for gw in &gws {
        let v = admin_state(gw).await;
        assert_eq!(v["backend"], "redis", "{v}");
        assert_eq!(v["redis"]["fail"], "closed", "{v}");
    }
    let (ok, limited, other, elapsed) = burst(&gws, SENT).await;
    // The limit is a GCRA, as in-process: N at once, then one more every 60/N s.
    let refilled = (elapsed.as_secs_f64() * N as f64 / 60.0).ceil() as u64;
    eprintln!(
        "shared rpm: N={N}, sent {SENT} over 3 replicas in {elapsed:?}: {ok} accepted, {limited} limited, {other} other (up to {refilled} refilled meanwhile)"
    );
    assert_eq!(other, 0, "no request failed otherwise");
    assert_eq!(ok + limited, SENT);
    let tolerance = N / 100;
    assert!(
        ok + tolerance >= N && ok <= N + refilled + tolerance,
        "accepted {ok} of a limit of {N} (+{refilled} refilled in {elapsed:?})"
    );
    // Each replica took part.
    for gw in &gws {
        let m = gw
            .metrics_when(|m| m.contains("sluice_state_admitted_total{source=\"redis\"}"))
            .await;
        assert!(m.contains("sluice_state_backend_up 1"), "{m}");
    }
}

/// `sent` requests from 30 concurrent clients, spread round robin over `gws`: (accepted,
/// refused by a rate limit, anything else, how long it took).
async fn burst(gws: &[TestGateway], sent: u64) -> (u64, u64, u64, Duration) {
    let urls: Arc<Vec<String>> =
        Arc::new(gws.iter().map(|g| g.url("/v1/chat/completions")).collect());
    let client = reqwest::Client::new();
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let started = tokio::time::Instant::now();
    let workers = 30u64;
    let worker = |w: u64| {
        let (urls, client, counts) = (Arc::clone(&urls), client.clone(), Arc::clone(&counts));
        async move {
            for i in 0..sent / workers {
                let url = &urls[usize::try_from((w + i) % urls.len() as u64).expect("small")];
                let resp = client
                    .post(url)
                    .bearer_auth(common::KEY)
                    .header("content-type", "application/json")
                    .body(common::chat("m", false))
                    .send()
                    .await
                    .expect("request");
                let status = resp.status().as_u16();
                let body = resp.text().await.expect("body");
                let slot = match status {
                    200 => 0,
                    429 if error_code(&body) == "rate_limit_exceeded" => 1,
                    _ => 2,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    futures_util::future::join_all((0..workers).map(worker)).await;
    let elapsed = started.elapsed();
    let [ok, limited, other] = &*counts;
    (
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        elapsed,
    )
}

#[tokio::test]
async fn a_local_allowance_never_admits_more_than_the_limit() {
    const N: u64 = 300;
    const SENT: u64 = 450;
    const LEASE: u64 = 10;
    let redis = Redis::start().await;
    let mock = common::mock_llm().await;
    let body = policy(
        &redis,
        &format!(", timeout: 1s, fail: closed, local_allowance: {LEASE}"),
        "",
    );
    let key = format!(", limits: {{ rpm: {N} }}");
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(TestGateway::start_full(&body, &mock, "", &key).await);
    }
    let (ok, limited, other, elapsed) = burst(&gws, SENT).await;
    let refilled = (elapsed.as_secs_f64() * N as f64 / 60.0).ceil() as u64;
    eprintln!(
        "leased rpm: N={N}, lease {LEASE}, sent {SENT} over 3 replicas in {elapsed:?}: {ok} accepted, {limited} limited, {other} other (up to {refilled} refilled)"
    );
    assert_eq!(other, 0);
    // Leased slots are counted in Redis when leased: never more than the limit, and at most
    // a lease per replica left unused.
    assert!(ok <= N + refilled, "{ok} accepted");
    assert!(ok + 3 * LEASE + N / 100 >= N, "{ok} accepted");
    let mut leased = 0;
    for gw in &gws {
        let m = gw
            .metrics_when(|m| m.contains("sluice_state_admitted_total{source=\"lease\"}"))
            .await;
        leased += m
            .lines()
            .find_map(|l| l.strip_prefix("sluice_state_admitted_total{source=\"lease\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
    }
    eprintln!("leased rpm: {leased} of {ok} admitted without a round trip");
    assert!(
        leased * 2 >= ok,
        "most admissions come from leases: {leased} of {ok}"
    );
}

#[tokio::test]
async fn a_tenants_budget_stops_all_three_replicas_at_the_same_spend() {
    let redis = Redis::start().await;
    let mock = common::mock_llm().await;
    let body = policy(
        &redis,
        ", timeout: 1s",
        "tenants:\n  test: { budget: { usd_per_day: 0.05 } }\n",
    );
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(TestGateway::start(&body, &mock).await);
    }
    let client = reqwest::Client::new();
    // One request at a time, round robin, until one replica says the budget is spent.
    let mut served = 0;
    let mut refused_at = None;
    for i in 0..60 {
        let (status, body, _) = chat(&client, &gws[i % 3]).await;
        if status == 200 {
            served += 1;
            continue;
        }
        assert_eq!(error_code(&body), "insufficient_quota", "{body}");
        refused_at = Some(i);
        break;
    }
    assert!(
        refused_at.is_some(),
        "the budget never ran out after {served} requests"
    );
    // Every replica refuses from now on, naming the same spend.
    let mut spent = Vec::new();
    for gw in &gws {
        let (status, body, _) = chat(&client, gw).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(error_code(&body), "insufficient_quota", "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let message = v["error"]["message"].as_str().unwrap_or("").to_owned();
        let at = message.find("spent $").expect("the spend is named");
        spent.push(message[at..].split(')').next().unwrap_or("").to_owned());
    }
    eprintln!(
        "shared budget $0.05: {served} requests served over 3 replicas; each then refused, {spent:?}"
    );
    assert!(spent.iter().all(|s| s == &spent[0]), "{spent:?}");
    // In-process, each replica would have served its own $0.05: about three times as many.
    // About 2.2 cents a request: the third crosses $0.05 and still finishes, as in-process;
    // one more may slip through while the third's cost is on its way to Redis.
    assert!(
        served <= 4,
        "{served} requests served against a budget of $0.05"
    );
}

#[tokio::test]
async fn redis_killed_mid_run_holds_the_fail_mode_and_counting_resumes_when_it_is_back() {
    const N: u64 = 20;
    let mut redis = Redis::start().await;
    let mock = common::mock_llm().await;
    let key = format!(", limits: {{ rpm: {N} }}");
    let closed = TestGateway::start_full(
        &policy(&redis, ", timeout: 100ms, fail: closed", ""),
        &mock,
        "",
        &key,
    )
    .await;
    let open = TestGateway::start_full(
        &policy(&redis, ", timeout: 100ms, fail: open", ""),
        &mock,
        "",
        &key,
    )
    .await;
    let client = reqwest::Client::new();
    for gw in [&closed, &open] {
        wait_up(gw, true).await;
        for _ in 0..3 {
            assert_eq!(chat(&client, gw).await.0, 200);
        }
    }

    redis.kill();
    // Every request ends promptly, as the fail mode says: none waits on the dead Redis.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (status, body, took) = chat(&client, &closed).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(error_code(&body), "state_unavailable", "{body}");
        slowest = slowest.max(took);
        let (status, body, took) = chat(&client, &open).await;
        assert_eq!(status, 200, "fail open serves under its own limits: {body}");
        slowest = slowest.max(took);
    }
    eprintln!("Redis down: slowest request {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    for (gw, mode) in [(&closed, "closed"), (&open, "open")] {
        let v = admin_state(gw).await;
        assert_eq!(v["redis"]["up"], false, "{v}");
        assert!(v["redis"]["last_error"].is_string(), "{v}");
        let m = gw
            .metrics_when(|m| {
                m.contains(&format!("sluice_state_fallback_total{{mode=\"{mode}\"}}"))
            })
            .await;
        assert!(m.contains("sluice_state_backend_up 0"), "{m}");
        assert!(
            m.contains(&format!("sluice_state_fallback_total{{mode=\"{mode}\"}} ")),
            "{m}"
        );
    }

    redis.spawn().await;
    for gw in [&closed, &open] {
        wait_up(gw, true).await;
    }
    // The restarted Redis starts empty: the two replicas count the key's N afresh, together.
    let mut ok = 0;
    for i in 0..(N + 10) {
        let gw = if i % 2 == 0 { &closed } else { &open };
        let (status, body, _) = chat(&client, gw).await;
        match status {
            200 => ok += 1,
            429 => assert_eq!(error_code(&body), "rate_limit_exceeded", "{body}"),
            _ => panic!("{status}: {body}"),
        }
    }
    eprintln!(
        "after Redis came back: {ok} of {} accepted (limit {N})",
        N + 10
    );
    assert!((N..=N + 1).contains(&ok), "{ok} accepted after recovery");

    // Each change was logged once, not per request.
    for gw in [&closed, &open] {
        let log = gw.log_text();
        assert_eq!(log.matches("Redis is unreachable").count(), 1, "{log}");
        assert_eq!(log.matches("Redis is reachable again").count(), 1, "{log}");
    }
}

#[tokio::test]
async fn tokens_used_on_one_replica_count_on_the_others() {
    let redis = Redis::start().await;
    let mock = common::mock_llm().await;
    let body = policy(&redis, ", timeout: 1s", "");
    let a = TestGateway::start_full(&body, &mock, "", ", limits: { tpm: 300 }").await;
    let b = TestGateway::start_full(&body, &mock, "", ", limits: { tpm: 300 }").await;
    let client = reqwest::Client::new();
    // Only `a` serves until its answers' tokens use up the key's minute.
    let mut served = 0;
    loop {
        let (status, body, _) = chat(&client, &a).await;
        if status == 429 {
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v["error"]["type"], "tokens", "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        served += 1;
        assert!(served < 100, "the token limit never ran out");
    }
    // `b` has served nothing, yet the key's tokens are spent there too.
    let (status, body, _) = chat(&client, &b).await;
    eprintln!("shared tpm: {served} requests on one replica spent the key's 300 tokens");
    assert_eq!(status, 429, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"]["type"], "tokens", "{body}");

    // The connection is made at start: a reload that changes `state` is refused, by name.
    let changed = policy(&redis, ", timeout: 1s, fail: closed", "");
    std::fs::write(
        &b.policy_path,
        b.policy_text(&changed, "", ", limits: { tpm: 300 }"),
    )
    .expect("rewrite policy");
    let resp = b
        .admin(reqwest::Method::POST, "/admin/reload")
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status(), 422);
    let report = resp.text().await.expect("report");
    assert!(
        report.contains("state: changed, but is read only at start"),
        "{report}"
    );
}

/// `share_cache`: what one replica stored answers the same request on another, byte for byte,
/// with no provider call; another tenant still gets its own; with Redis gone, a miss is a miss
/// and nothing fails.
#[tokio::test]
async fn a_cache_shared_through_redis_answers_on_every_replica() {
    let mut redis = Redis::start().await;
    let mock = common::mock_llm().await;
    let body = format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  m: {{ provider: up }}\nroutes:\n  - name: cached\n    match: {{ model: c }}\n    targets: [ {{ model: m }} ]\n    cache: {{ ttl: 1h }}\nstate:\n  redis: {{ url: \"{}\", timeout: 1s, share_cache: true }}\n",
        redis.url()
    );
    const OTHER: &str = "sk-sluice-test-other-tenant";
    let other_key = format!(
        " }}\n  - {{ name: other, key_sha256: \"{}\", tenant: other",
        common::sha256_hex(OTHER)
    );
    let a = TestGateway::start_full(&body, &mock, "", &other_key).await;
    let b = TestGateway::start_full(&body, &mock, "", &other_key).await;
    for gw in [&a, &b] {
        assert_eq!(admin_state(gw).await["redis"]["share_cache"], true);
    }
    let send = async |gw: &TestGateway, key: &str, stream: bool| {
        let body = serde_json::json!({"model": "c", "stream": stream, "temperature": 0,
            "messages": [{"role": "user", "content": "Say something shared."}]});
        let resp = reqwest::Client::new()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let cache = resp.headers()["x-sluice-cache"]
            .to_str()
            .expect("ascii")
            .to_owned();
        (status, cache, resp.text().await.expect("body"))
    };
    let stored = async |gw: &TestGateway, n: u64| {
        gw.metrics_when(|m| {
            m.contains(&format!(
                "sluice_shared_cache_total{{result=\"stored\"}} {n}"
            ))
        })
        .await
    };
    for stream in [false, true] {
        let calls = mock.stats().requests;
        let (status, cache, first) = send(&a, common::KEY, stream).await;
        assert_eq!((status, cache.as_str()), (200, "miss"), "stream={stream}");
        stored(&a, if stream { 2 } else { 1 }).await;
        // The other replica has never seen it: its local miss is answered from Redis.
        let (status, cache, again) = send(&b, common::KEY, stream).await;
        assert_eq!((status, cache.as_str()), (200, "hit"), "stream={stream}");
        assert_eq!(
            first, again,
            "stream={stream}: the very bytes the first client got"
        );
        assert_eq!(
            mock.stats().requests,
            calls + 1,
            "one provider call for both replicas"
        );
        // Another tenant asking the same thing, on the replica that has it: its own call.
        let (status, cache, _) = send(&b, OTHER, stream).await;
        assert_eq!((status, cache.as_str()), (200, "miss"), "stream={stream}");
        assert_eq!(mock.stats().requests, calls + 2);
    }
    let m = b.metrics().await;
    assert!(
        m.contains("sluice_shared_cache_total{result=\"hit\"} 2"),
        "{m}"
    );
    // The entries live under the prefix, one per answer stored (two per replica-tenant pair).
    let keys = redis.command("KEYS sluice:cache:*").await.expect("KEYS");
    assert!(keys.starts_with("*4\r\n"), "{keys}");

    // Redis gone: a new request is a miss, served by the provider; nothing fails or waits
    // past the timeout.
    redis.kill();
    let started = tokio::time::Instant::now();
    let body = serde_json::json!({"model": "c", "temperature": 0,
        "messages": [{"role": "user", "content": "Something new."}]});
    let resp = a
        .post("/v1/chat/completions", body.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-cache"], "miss");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let m = a
        .metrics_when(|m| {
            m.contains("sluice_shared_cache_total{result=\"error\"}")
                && m.contains("sluice_shared_cache_total{result=\"dropped\"} 1")
        })
        .await;
    assert!(
        !m.contains("sluice_shared_cache_total{result=\"error\"} 0"),
        "{m}"
    );
}

/// A Responses answer passed through from an OpenAI-kind target is shared too, and the other
/// replica replays it as stored (the entry says it holds the provider's own Responses bytes).
#[tokio::test]
async fn a_shared_cache_replays_a_passed_through_responses_answer_on_another_replica() {
    let redis = Redis::start().await;
    let mock = common::mock_llm().await;
    let body = format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  m: {{ provider: up }}\nroutes:\n  - name: cached\n    match: {{ model: c }}\n    targets: [ {{ model: m }} ]\n    cache: {{ ttl: 1h }}\nstate:\n  redis: {{ url: \"{}\", timeout: 1s, share_cache: true }}\n",
        redis.url()
    );
    let a = TestGateway::start(&body, &mock).await;
    let b = TestGateway::start(&body, &mock).await;
    let send = async |gw: &TestGateway, stream: bool| {
        let body = serde_json::json!({"model": "c", "stream": stream, "temperature": 0,
            "input": "Say something shared.", "tools": [{"type": "web_search"}]});
        let resp = gw
            .post("/v1/responses", body.to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        let cache = resp.headers()["x-sluice-cache"]
            .to_str()
            .expect("ascii")
            .to_owned();
        (cache, resp.text().await.expect("body"))
    };
    for (n, stream) in [(1, false), (2, true)] {
        let (cache, first) = send(&a, stream).await;
        assert_eq!(cache, "miss");
        assert!(first.contains("web_search_call"), "{first}");
        a.metrics_when(|m| {
            m.contains(&format!(
                "sluice_shared_cache_total{{result=\"stored\"}} {n}"
            ))
        })
        .await;
        let (cache, again) = send(&b, stream).await;
        assert_eq!(cache, "hit", "stream={stream}");
        assert_eq!(
            first, again,
            "stream={stream}: the provider's bytes, as stored"
        );
        assert_eq!(mock.requests_to("/v1/responses"), n);
    }
}
