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

/// The admin token of the test policies; its SHA-256 is in every test policy.
pub const ADMIN_TOKEN: &str = "sk-sluice-test-admin";

pub fn key_sha256() -> String {
    sha256_hex(KEY)
}

pub fn sha256_hex(plain: &str) -> String {
    let out = sluice_policy::hash_key(plain);
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

/// How many times a gateway is started on fresh ports when its ports were taken.
const PORT_ATTEMPTS: u32 = 5;

/// Whether sluice's log says it could not bind a listener because the port was taken
/// (pingora logs `ADDR is in use, will try again` and keeps trying; a plain bind error says
/// `Address already in use`).
fn lost_a_port(log: &str) -> bool {
    log.contains(" is in use") || log.contains("Address already in use")
}

/// Where a test gateway's policy file lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A plain file.
    File,
    /// As the kubelet mounts a ConfigMap: `sluice.yaml -> ..data/sluice.yaml`, with `..data`
    /// a symlink to a timestamped directory that an update replaces by swapping `..data`.
    ConfigMap,
}

/// Publishes `yaml` into a ConfigMap-style mount as the kubelet does: a new timestamped
/// directory, then an atomic rename of a fresh `..data` symlink over the old one.
pub fn configmap_publish(mount: &std::path::Path, version: &str, yaml: &str) {
    let dir = mount.join(version);
    std::fs::create_dir_all(&dir).expect("version dir");
    std::fs::write(dir.join("sluice.yaml"), yaml).expect("write policy");
    let tmp = mount.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).expect("data symlink");
    std::fs::rename(&tmp, mount.join("..data")).expect("swap ..data");
}

fn spawn_sluice(cfg: &std::path::Path, log: &std::path::Path, env: &[(String, String)]) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    // `SLUICE_TEST_BIN` overrides the binary: helpers sharing one target directory overwrite
    // each other's `debug/sluice`.
    let bin = std::env::var_os("SLUICE_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
        PathBuf::from,
    );
    Command::new(bin)
        .arg("--config")
        .arg(cfg)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(CANARY_ENV, CANARY)
        .env("SLUICE_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn sluice")
}

/// `server_extra` with the test's own data directory, unless it names one itself.
fn with_data_dir(server_extra: &str, dir: &std::path::Path) -> String {
    if server_extra.contains("data_dir:") {
        server_extra.to_owned()
    } else {
        format!("{server_extra}  data_dir: \"{}\"\n", dir.display())
    }
}

/// The policy file of a test gateway: the fixed `server`, `keys` and `admin` sections around
/// `body` (providers, models, routes). The policy file is polled every 100 ms for changes.
fn policy_yaml(
    port: u16,
    admin_port: u16,
    body: &str,
    mock_url: &str,
    server_extra: &str,
    key_extra: &str,
) -> String {
    // Tests that set their own `reload` keep it.
    let reload = if server_extra.contains("reload:") {
        ""
    } else {
        "  reload: { interval: 100ms }\n"
    };
    format!(
        "server:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin_port}\n  threads: 2\n{reload}{server_extra}\n{}\nkeys:\n  - {{ name: test, key_sha256: \"{}\", tenant: test{key_extra} }}\nadmin:\n  tokens:\n    - {{ name: test-admin, token_sha256: \"{}\" }}\n",
        body.replace("{mock}", mock_url),
        key_sha256(),
        sha256_hex(ADMIN_TOKEN),
    )
}

pub async fn mock_llm() -> MockLlm {
    MockLlm::start(MockLlmConfig {
        api_key: Some(CANARY.to_owned()),
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts")
}

/// A route's passive health that never ejects, so what a test sees is remediation's doing.
pub const NO_EJECTION: &str = "health: { consecutive_failures: 1000, min_requests: 1000000 }";

pub struct TestGateway {
    pub port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    log: PathBuf,
    /// The policy file the gateway serves (and reloads).
    pub policy_path: PathBuf,
    /// Its `server.data_dir`, inside the test's own directory.
    pub data_dir: PathBuf,
    /// Extra environment of the process.
    env: Vec<(String, String)>,
    mock_url: String,
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
        Self::start_laid_out(body, mock, server_extra, key_extra, Layout::File).await
    }

    /// As [`Self::start_full`], with the policy file laid out as `layout` says.
    pub async fn start_laid_out(
        body: &str,
        mock: &MockLlm,
        server_extra: &str,
        key_extra: &str,
        layout: Layout,
    ) -> Self {
        Self::launch(body, mock, server_extra, key_extra, layout, &[]).await
    }

    /// As [`Self::start_with`], with more environment variables for the gateway.
    pub async fn start_with_env(
        body: &str,
        mock: &MockLlm,
        server_extra: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(body, mock, server_extra, "", Layout::File, env).await
    }

    async fn launch(
        body: &str,
        mock: &MockLlm,
        server_extra: &str,
        key_extra: &str,
        layout: Layout,
        env: &[(&str, &str)],
    ) -> Self {
        // A port picked free can be taken by another process before sluice binds it: then
        // sluice exits saying so, and the gateway starts again on other ports.
        for attempt in 1.. {
            let mut gw =
                Self::spawn_on_free_ports(body, mock, server_extra, key_extra, layout, env);
            match gw.ready_or_exit(true).await {
                Ok(()) => return gw,
                Err(log) if attempt < PORT_ATTEMPTS && lost_a_port(&log) => {
                    // Dropping it stops the process.
                    eprintln!(
                        "sluice could not bind {} or {}; starting again on other ports",
                        gw.port, gw.admin_port
                    );
                }
                Err(log) => panic!("sluice did not become ready; log:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn spawn_on_free_ports(
        body: &str,
        mock: &MockLlm,
        server_extra: &str,
        key_extra: &str,
        layout: Layout,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let admin_port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let server_extra = with_data_dir(server_extra, &data_dir);
        let yaml = policy_yaml(
            port,
            admin_port,
            body,
            &mock.base_url(),
            &server_extra,
            key_extra,
        );
        let cfg = match layout {
            Layout::File => {
                let cfg = dir.path().join("sluice.yaml");
                std::fs::write(&cfg, yaml).expect("write policy");
                cfg
            }
            Layout::ConfigMap => {
                let mount = dir.path().join("policy");
                configmap_publish(&mount, "..2026_01_01_00_00_00.1", &yaml);
                let link = mount.join("sluice.yaml");
                std::os::unix::fs::symlink("..data/sluice.yaml", &link).expect("file symlink");
                link
            }
        };
        let log = dir.path().join("sluice.log");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let child = spawn_sluice(&cfg, &log, &env);
        Self {
            env,
            port,
            admin_port,
            child: Some(child),
            log,
            policy_path: cfg,
            data_dir,
            mock_url: mock.base_url(),
            _dir: dir,
        }
    }

    /// Stops the process (SIGINT, as an operator would) and starts it again on the same
    /// policy file, ports and data directory; the log goes on in the same file.
    pub async fn restart(&mut self) {
        if let Some(child) = self.child.as_ref() {
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(child.id().to_string())
                .status();
        }
        assert!(self.wait_exit(PATIENCE).await, "stopped for the restart");
        self.child = Some(spawn_sluice(&self.policy_path, &self.log, &self.env));
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        // A restart keeps its ports: sluice's own retries wait for the old process's to free.
        if let Err(log) = self.ready_or_exit(false).await {
            panic!("sluice did not become ready; log:\n{log}");
        }
    }

    /// Waits until the admin and data ports answer; the log when the process exits first,
    /// says a port was taken (someone else would be answering on it), or is not ready within
    /// [`PATIENCE`].
    async fn ready_or_exit(&mut self, fail_on_taken_port: bool) -> Result<(), String> {
        let client = reqwest::Client::new();
        // An HTTPS admin listener (tests/e2e/tls.rs) is checked by its own test client.
        let admin_tls =
            std::fs::read_to_string(&self.policy_path).is_ok_and(|p| p.contains("admin_tls:"));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if fail_on_taken_port {
                let log = self.log_text();
                if lost_a_port(&log) {
                    return Err(log);
                }
            }
            if admin_tls {
                if tokio::net::TcpStream::connect(("127.0.0.1", self.admin_port))
                    .await
                    .is_ok()
                    && tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                        .await
                        .is_ok()
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                continue;
            }
            if let Ok(r) = client.get(self.admin_url("/readyz")).send().await
                && r.status() == 200
            {
                // The admin service can come up a moment before the data plane.
                if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return Err(self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(self.log_text())
    }

    /// The policy text this gateway would be started with for these sections (same ports,
    /// keys and admin token), for tests that rewrite the file.
    pub fn policy_text(&self, body: &str, server_extra: &str, key_extra: &str) -> String {
        policy_yaml(
            self.port,
            self.admin_port,
            body,
            &self.mock_url,
            &with_data_dir(server_extra, &self.data_dir),
            key_extra,
        )
    }

    /// An admin request with the test admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// An admin view (`GET`, the test admin token) as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = self
            .admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
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

    /// Scrapes until `ready` holds (records land in the metrics shortly after a response
    /// ends, via the recorder), for up to [`PATIENCE`]; returns the last scrape either way,
    /// so the caller's assertion says what was missing.
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let last = self.metrics().await;
            if ready(&last) || tokio::time::Instant::now() >= deadline {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
                #[expect(clippy::disallowed_methods, reason = "Drop cannot await")]
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
            assert!(
                !log.contains(ADMIN_TOKEN),
                "the admin token leaked into the gateway log:\n{log}"
            );
        }
    }
}

/// How long a test waits for state it can observe (a metric, a log line, a counter) before
/// it fails: generous, because a loaded two-core machine can be slow, and the wait ends as
/// soon as the state is there.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, for up to [`PATIENCE`].
pub async fn eventually<T>(mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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

/// Whether `haystack` holds any prefix of `secret` longer than 8 characters, written as is,
/// with every character JSON-escaped (`\u0073…`), or inside any JSON string of it (a line, or
/// an SSE `data:` payload, that parses as JSON is searched decoded too, so escapes of any
/// subset of the characters cannot hide it). A cut key keeps a prefix: this is what catches a
/// truncation that came before the redaction. Returns the longest leaked prefix's length and
/// the text around it.
pub fn key_prefix_leak(place: &str, haystack: &str, secret: &str) -> Option<String> {
    let decoded = json_strings(haystack);
    let chars: Vec<char> = secret.chars().collect();
    let mut found = None;
    for len in 9..=chars.len() {
        let prefix: String = chars[..len].iter().collect();
        let escaped = sluice_loadtest::mock_llm::echo::escape_every_char(&prefix);
        for (form, text) in [("raw", haystack), ("decoded", decoded.as_str())] {
            let at = text.find(&prefix).or_else(|| text.find(&escaped));
            if let Some(at) = at {
                // What surrounds it, to tell where it came from.
                let from = text[..at]
                    .char_indices()
                    .rev()
                    .nth(200)
                    .map_or(0, |(i, _)| i);
                let context: String = text[from..].chars().take(300 + 6 * len).collect();
                found = Some(format!(
                    "a {len}-character prefix of the provider key leaked into {place} ({form}): \
                     …{context}…"
                ));
            }
        }
    }
    found
}

/// Every JSON string in `text`'s lines (each line, or its `data: ` payload, parsed alone),
/// decoded and joined by newlines; JSON inside a string is decoded as well.
pub fn json_strings(text: &str) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
                if let Ok(inner) = serde_json::from_str::<serde_json::Value>(s) {
                    walk(&inner, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push_str(k);
                out.push('\n');
                walk(x, out);
            }),
            _ => {}
        }
    }
    let mut out = String::new();
    for line in text.lines() {
        let line = line.strip_prefix("data: ").unwrap_or(line);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            walk(&v, &mut out);
        }
    }
    out
}

/// A `key_extra` (for [`TestGateway::start_full`]) that ends the test key's entry and adds
/// one key per `(name, plain key, tenant)`, so a test can send as several keys and tenants.
pub fn more_keys(keys: &[(&str, &str, &str)]) -> String {
    let mut out = String::new();
    for (name, plain, tenant) in keys {
        out.push_str(&format!(
            " }}\n  - {{ name: {name}, key_sha256: \"{}\", tenant: {tenant}",
            sha256_hex(plain)
        ));
    }
    out
}

/// A stream of named events (`event:` then `data:` lines, as the Messages and Responses APIs
/// send them) as `(name, data)` pairs, each checked to name its data's `type`.
pub fn named_events(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("every event is named: {e:?}"));
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("every event has data: {e:?}"));
            let v: serde_json::Value = serde_json::from_str(data).expect("data is JSON");
            assert_eq!(v["type"], name, "the data's type is the event's name");
            (name.to_owned(), v)
        })
        .collect()
}

/// The access log's JSON lines for `endpoint`, once there are at least `n` of them.
pub async fn access_log_lines(
    gw: &TestGateway,
    endpoint: &str,
    n: usize,
) -> Vec<serde_json::Value> {
    eventually(async || {
        let lines: Vec<serde_json::Value> = gw
            .log_text()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["endpoint"] == endpoint)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("{n} access-log lines for the {endpoint} endpoint"))
}
