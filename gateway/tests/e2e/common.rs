//! Test harness: the real `sluice` binary as a child process on pre-picked loopback ports,
//! in front of an in-process `mock-llm`. pingora cannot report a port-0 listener's port, so
//! ports are picked by binding port 0 and releasing it just before the gateway starts.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_loadtest::mock_llm::{MockLlm, MockLlmConfig};

/// The provider key every test gateway is given. It must never show up in a log line or in a
/// response body; [`TestGateway`] checks its own log on drop and [`assert_no_canary`] checks
/// bodies.
pub const CANARY: &str = "sk-CANARY-7f3a9c1e5b2d4f60a8c3e1d7b9f2a4c6";
pub const CANARY_ENV: &str = "SLUICE_TEST_PROVIDER_KEY";
/// The virtual key of the test policies, and its SHA-256.
pub const KEY: &str = "sk-sluice-test";

pub fn key_sha256() -> String {
    let out = sluice_policy::hash_key(KEY);
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// A free port below the kernel's ephemeral range (32768+), so a port-0 bind elsewhere in the
/// test process (mock-llm) can never be handed the same port between this pick and sluice's
/// bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 200) * 50;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(base + n % 2_000).expect("port fits");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub async fn mock_llm() -> MockLlm {
    MockLlm::start(MockLlmConfig {
        api_key: Some(CANARY.to_owned()),
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts")
}

pub struct TestGateway {
    pub port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts `sluice` on a policy whose `server`, `keys` sections are added here; `body`
    /// holds the providers, models and routes. `{mock}` in it is replaced by the mock-llm base
    /// URL.
    pub async fn start(body: &str, mock: &MockLlm) -> Self {
        Self::start_with(body, mock, "").await
    }

    pub async fn start_with(body: &str, mock: &MockLlm, server_extra: &str) -> Self {
        Self::start_full(body, mock, server_extra, "").await
    }

    /// As [`Self::start_with`], with `key_extra` (e.g. `, limits: { rpm: 3 }`) appended to the
    /// test key's entry.
    pub async fn start_full(
        body: &str,
        mock: &MockLlm,
        server_extra: &str,
        key_extra: &str,
    ) -> Self {
        let port = free_port();
        let admin_port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "server:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin_port}\n  threads: 2\n{server_extra}\n{}\nkeys:\n  - {{ name: test, key_sha256: \"{}\", tenant: test{key_extra} }}\n",
            body.replace("{mock}", &mock.base_url()),
            key_sha256()
        );
        let cfg = dir.path().join("sluice.yaml");
        std::fs::write(&cfg, yaml).expect("write policy");
        let log = dir.path().join("sluice.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--config")
            .arg(&cfg)
            .env(CANARY_ENV, CANARY)
            .env("SLUICE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn sluice");
        let gw = Self {
            port,
            admin_port,
            child: Some(child),
            log,
            _dir: dir,
        };
        gw.wait_ready().await;
        gw
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(self.admin_url("/readyz")).send().await
                && r.status() == 200
            {
                // The admin service can come up a moment before the data plane.
                if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("sluice did not become ready; log:\n{}", self.log_text());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig}");
    }

    /// Waits for the process to exit by itself, up to `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().expect("try_wait").is_some()
            {
                self.child = None;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(self.url(path))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Scrapes until `ready` holds (records land just after a response ends), at most 3 s.
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..150 {
            last = self.metrics().await;
            if ready(&last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(child.id().to_string())
                .status();
            for _ in 0..200 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = self.log_text();
        if !std::thread::panicking() {
            assert!(
                !log.contains(CANARY),
                "the provider key leaked into the gateway log:\n{log}"
            );
            assert!(
                !log.contains(KEY),
                "the virtual key leaked into the gateway log:\n{log}"
            );
        }
    }
}

pub fn assert_no_canary(body: &str) {
    assert!(
        !body.contains(CANARY),
        "the provider key leaked into a response: {body}"
    );
    assert!(
        !body.contains("CANARY"),
        "a canary fragment leaked into a response: {body}"
    );
}

/// A chat request body.
pub fn chat(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say something deterministic."}],
    })
    .to_string()
}

/// Reads a whole SSE response and returns its `data:` payloads in order.
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.expect("stream body");
    text.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

/// The concatenated `delta.content` of chat chunks.
pub fn stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
