//! `sluice-bench compare`: one scenario against mock-llm directly, nginx as a plain reverse proxy
//! and Sluice (and, with `--baseline`, a second `sluice` build such as an earlier commit's),
//! interleaved round by round so that machine drift hits every target alike.
//!
//! The baseline runs the same policy on its own ports and is measured exactly like Sluice; the
//! report then gives Sluice's change against it. Its rounds are interleaved with Sluice's, so the
//! per-round changes show how much of the difference is noise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::process::Command;

use super::client::Target;
use super::engine::{self, Load, RunReport, RunResult};
use super::procs::{self, Proc, ProcSample};
use super::scenario::{Scenario, TargetKind};

/// The nginx configuration template (`@PREFIX@`, `@LISTEN@`, `@UPSTREAM@` are filled in).
pub const NGINX_CONF: &str = include_str!("../../nginx/nginx.conf");

/// The provider key mock-llm requires (direct and nginx requests carry it).
const PROVIDER_KEY: &str = "sk-bench-provider";
/// The virtual key Sluice is configured with.
const SLUICE_KEY: &str = "sk-sluice-bench";
/// The catalog model name in Sluice's policy.
const MODEL: &str = "bench";

/// How to run `compare`.
#[derive(Debug, Clone)]
pub struct CompareOpts {
    /// The `sluice` binary.
    pub sluice: PathBuf,
    /// The `mock-llm` binary.
    pub mock_llm: PathBuf,
    /// The `nginx` binary (needed when the scenario lists nginx).
    pub nginx: Option<PathBuf>,
    /// A second `sluice` binary measured as the target `baseline` (needed when the targets
    /// list it).
    pub baseline: Option<PathBuf>,
    /// `server.threads` of Sluice.
    pub threads: usize,
    /// Sluice's telemetry: spans exported over OTLP/gRPC (to an in-process receiver, head
    /// ratio 0.05 as in DESIGN.md, errors and slow requests always kept) and the JSON access
    /// log. Metrics are always on.
    pub telemetry: bool,
    /// mock-llm on `base_port`, nginx +1, Sluice +2, Sluice admin +3, baseline +4, baseline
    /// admin +5 (all 127.0.0.1).
    pub base_port: u16,
    /// Where configs and logs go (removed afterwards unless `keep`).
    pub work_dir: PathBuf,
    /// Keep `work_dir`.
    pub keep: bool,
    /// Live progress line.
    pub progress: bool,
    /// `limits: { rpm }` on the bench key of every `sluice` (limits checked on each request).
    pub key_rpm: Option<u32>,
    /// `state.redis.url` of the `sluice` target only: with `key_rpm`, Sluice counts the limit
    /// in this Redis while the baseline counts it in-process.
    pub redis: Option<String>,
    /// With `redis`: requests the target leases per round trip (`local_allowance`).
    pub local_allowance: Option<u32>,
    /// The `sluice` target only: its route states SLOs (errors, TTFT) with a failover rule, so
    /// every request also pays the SLO engine's and remediation's share; the baseline keeps the
    /// plain policy (it may predate SLOs).
    pub slos: bool,
    /// The `sluice` target only: its provider is `kind: anthropic` (mock-llm's Anthropic
    /// dialect), so each request and answer is translated; the baseline speaks OpenAI.
    pub anthropic: bool,
}

/// Per-target figures of a compare run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// `direct`, `nginx`, `sluice`, `baseline`.
    pub name: String,
    /// All rounds merged.
    pub run: RunReport,
    /// CPU seconds of the proxy process during the measured phases (0 for direct).
    pub proxy_cpu_s: f64,
    /// Proxy CPU per successful request, µs.
    pub proxy_cpu_us_per_req: f64,
    /// mock-llm CPU per successful request during this target's phases, µs.
    pub mock_cpu_us_per_req: f64,
    /// Largest sampled RSS of the proxy process, MB.
    pub peak_rss_mb: f64,
    /// Each round on its own (for the noise).
    pub rounds: Vec<RoundFigure>,
}

/// One measured phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RoundFigure {
    /// Round number, from 1.
    pub round: u32,
    /// Successful req/s.
    pub rps: f64,
    /// Proxy CPU per request, µs.
    pub cpu_us_per_req: f64,
    /// Non-stream p50 (or stream TTFC p50 when all requests stream), ms.
    pub p50_ms: f64,
    /// The same at p99.
    pub p99_ms: f64,
}

/// A goal from DESIGN §8 and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct GoalRow {
    /// What is measured.
    pub goal: String,
    /// The bound.
    pub bound: String,
    /// The figure.
    pub measured: String,
    /// Met?
    pub met: bool,
}

/// Everything a compare run found.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// The scenario as run (duration overrides applied).
    pub scenario: Scenario,
    /// Where it ran.
    pub machine: Machine,
    /// Unix seconds at the start.
    pub started_unix: u64,
    /// Sluice worker threads.
    pub sluice_threads: usize,
    /// Sluice exported spans and wrote its access log (metrics are always on).
    pub sluice_telemetry: bool,
    /// Spans the OTLP receiver got from Sluice and the baseline together (telemetry on).
    #[serde(default)]
    pub otlp_spans_received: u64,
    /// `sluice` (not the baseline) ran with route SLOs and a remediation rule.
    pub sluice_slos: bool,
    /// `sluice` (not the baseline) reached mock-llm in Anthropic's dialect.
    #[serde(default)]
    pub sluice_anthropic: bool,
    /// One entry per target, in scenario order.
    pub targets: Vec<TargetReport>,
    /// Goal checks that apply to the scenario.
    pub goals: Vec<GoalRow>,
    /// RSS samples: seconds since start, then KiB per process name.
    pub rss_series: RssSeries,
    /// The `sluice` binary measured as `baseline`, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_binary: Option<PathBuf>,
    /// Sluice against the baseline, when both ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<BaselineDelta>,
}

/// How `sluice` differs from `baseline` in one run. Changes in percent are
/// `(sluice − baseline) / baseline × 100`, so negative means Sluice needs less; `None` when the
/// baseline's figure is zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineDelta {
    /// Proxy CPU per request, all rounds merged.
    pub cpu_us_per_req_change_pct: Option<f64>,
    /// The same for each round number both ran, in round order.
    pub cpu_change_pct_per_round: Vec<Option<f64>>,
    /// Successful req/s.
    pub rps_change_pct: Option<f64>,
    /// Headline p50 (non-stream latency, or stream TTFC when everything streamed), ms.
    pub p50_ms_delta: f64,
    /// Headline p99, ms.
    pub p99_ms_delta: f64,
    /// Peak RSS, MB.
    pub peak_rss_mb_delta: f64,
}

/// `sluice` against `baseline`; rounds are paired by their number.
pub fn vs_baseline(sluice: &TargetReport, baseline: &TargetReport) -> BaselineDelta {
    let (s50, s99) = headline_latency(&sluice.run);
    let (b50, b99) = headline_latency(&baseline.run);
    BaselineDelta {
        cpu_us_per_req_change_pct: change_pct(
            sluice.proxy_cpu_us_per_req,
            baseline.proxy_cpu_us_per_req,
        ),
        cpu_change_pct_per_round: sluice
            .rounds
            .iter()
            .filter_map(|s| {
                let b = baseline.rounds.iter().find(|b| b.round == s.round)?;
                Some(change_pct(s.cpu_us_per_req, b.cpu_us_per_req))
            })
            .collect(),
        rps_change_pct: change_pct(sluice.run.rps, baseline.run.rps),
        p50_ms_delta: s50 - b50,
        p99_ms_delta: s99 - b99,
        peak_rss_mb_delta: sluice.peak_rss_mb - baseline.peak_rss_mb,
    }
}

/// `(new − old) / old` in percent; `None` when `old` is not a positive number.
pub fn change_pct(new: f64, old: f64) -> Option<f64> {
    (old > 0.0 && old.is_finite() && new.is_finite()).then(|| (new - old) / old * 100.0)
}

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal, MB.
    pub mem_mb: u64,
    /// /proc/sys/kernel/osrelease.
    pub kernel: String,
    /// 1-minute load average at the start (other work on the machine).
    pub loadavg_at_start: String,
}

impl Machine {
    /// Reads /proc.
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            mem_mb: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |kb| kb / 1024),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            loadavg_at_start: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

struct Running {
    mock: Proc,
    nginx: Option<Proc>,
    sluice: Option<Proc>,
    baseline: Option<Proc>,
    /// The OTLP receiver Sluice exports to when telemetry is on.
    otlp: Option<crate::otlp_sink::OtlpSink>,
}

impl Running {
    fn pid_of(&self, kind: TargetKind) -> Option<u32> {
        match kind {
            TargetKind::Direct => None,
            TargetKind::Nginx => self.nginx.as_ref().map(|p| p.pid),
            TargetKind::Sluice => self.sluice.as_ref().map(|p| p.pid),
            TargetKind::Baseline => self.baseline.as_ref().map(|p| p.pid),
        }
    }

    async fn stop(self) {
        if let Some(p) = self.baseline {
            p.stop().await;
        }
        if let Some(p) = self.sluice {
            p.stop().await;
        }
        if let Some(p) = self.nginx {
            p.stop().await;
        }
        self.mock.stop().await;
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn start_all(s: &Scenario, o: &CompareOpts) -> Result<Running, String> {
    let dir = &o.work_dir;
    let (mock_port, nginx_port, gw_port, admin_port) = (
        o.base_port,
        o.base_port + 1,
        o.base_port + 2,
        o.base_port + 3,
    );

    let mut cmd = Command::new(&o.mock_llm);
    cmd.args(["--listen", &addr(mock_port).to_string()])
        .args(["--ttft-ms", &s.mock.ttft_ms.to_string()])
        .args(["--tokens-per-s", &s.mock.tokens_per_s.to_string()])
        .args(["--api-key-env", "SLUICE_BENCH_PROVIDER_KEY"])
        .env("SLUICE_BENCH_PROVIDER_KEY", PROVIDER_KEY);
    if s.mock.burst {
        cmd.arg("--burst");
    }
    let mock = Proc::spawn("mock-llm", cmd, &dir.join("mock-llm.log"))?;
    let mut running = Running {
        mock,
        nginx: None,
        sluice: None,
        baseline: None,
        otlp: None,
    };
    if !procs::wait_ready(
        addr(mock_port),
        Some("/_mock/stats"),
        Duration::from_secs(10),
    )
    .await
    {
        running.stop().await;
        return Err("mock-llm did not come up (see its log)".into());
    }

    if s.targets.contains(&TargetKind::Nginx) {
        let Some(nginx) = &o.nginx else {
            running.stop().await;
            return Err("the scenario lists nginx but no nginx binary was found".into());
        };
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join("nginx").join(sub)).map_err(|e| e.to_string())?;
        }
        let conf = NGINX_CONF
            .replace("@PREFIX@", &dir.join("nginx").display().to_string())
            .replace("@LISTEN@", &addr(nginx_port).to_string())
            .replace("@UPSTREAM@", &addr(mock_port).to_string());
        let conf_path = dir.join("nginx").join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(dir.join("nginx"))
            .arg("-e")
            .arg(dir.join("nginx").join("error.log"))
            .arg("-c")
            .arg(&conf_path);
        running.nginx = Some(Proc::spawn("nginx", cmd, &dir.join("nginx.log"))?);
        if !procs::wait_ready(addr(nginx_port), None, Duration::from_secs(10)).await {
            running.stop().await;
            return Err("nginx did not come up (see nginx.log / nginx/error.log)".into());
        }
    }

    let sluices = [
        (
            TargetKind::Sluice,
            Some(o.sluice.clone()),
            gw_port,
            admin_port,
        ),
        (
            TargetKind::Baseline,
            o.baseline.clone(),
            o.base_port + 4,
            o.base_port + 5,
        ),
    ];
    for (kind, binary, gw, admin) in sluices {
        if !s.targets.contains(&kind) {
            continue;
        }
        let Some(binary) = binary else {
            running.stop().await;
            return Err("the targets list baseline but no --baseline binary was given".into());
        };
        match start_sluice(kind, &binary, (gw, admin, mock_port), o, &mut running).await {
            Ok(p) => match kind {
                TargetKind::Baseline => running.baseline = Some(p),
                _ => running.sluice = Some(p),
            },
            Err(e) => {
                running.stop().await;
                return Err(e);
            }
        }
    }
    Ok(running)
}

/// Starts one `sluice` binary (Sluice or the baseline) on `gw`/`admin` in front of mock-llm on
/// `mock` and waits until it is ready. Both get the same policy; the first to start with
/// telemetry on starts the OTLP receiver they share.
async fn start_sluice(
    kind: TargetKind,
    binary: &Path,
    (gw, admin, mock): (u16, u16, u16),
    o: &CompareOpts,
    running: &mut Running,
) -> Result<Proc, String> {
    let name = kind.name();
    let hash = hash_key(binary, SLUICE_KEY).await?;
    let telemetry = if o.telemetry {
        let endpoint = match &running.otlp {
            Some(sink) => sink.endpoint(),
            None => {
                let sink = crate::otlp_sink::OtlpSink::start_counting()
                    .map_err(|e| format!("cannot start the OTLP receiver: {e}"))?;
                let endpoint = sink.endpoint();
                running.otlp = Some(sink);
                endpoint
            }
        };
        Some(endpoint)
    } else {
        None
    };
    let mut policy = sluice_policy(
        telemetry.as_deref(),
        addr(gw),
        addr(admin),
        o.threads,
        addr(mock),
        &hash,
        o.key_rpm,
    );
    if let (TargetKind::Sluice, Some(url)) = (kind, &o.redis) {
        let allowance = o.local_allowance.unwrap_or(0);
        policy.push_str(&format!(
            "state:\n  redis: {{ url: \"{url}\", fail: closed, local_allowance: {allowance} }}\n"
        ));
    }
    if kind == TargetKind::Sluice && o.slos {
        policy.push_str(SLO_ROUTE);
    }
    if kind == TargetKind::Sluice && o.anthropic {
        // The same model on the same mock-llm, in Anthropic's Messages dialect.
        policy = policy.replace(
            &format!("kind: openai, base_url: \"http://{}/v1\"", addr(mock)),
            &format!("kind: anthropic, base_url: \"http://{}\"", addr(mock)),
        );
    }
    let policy_path = o.work_dir.join(format!("{name}.yaml"));
    std::fs::write(&policy_path, policy).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(&policy_path)
        .env("SLUICE_BENCH_PROVIDER_KEY", PROVIDER_KEY)
        .env("SLUICE_LOG", "warn");
    let proc = Proc::spawn(name, cmd, &o.work_dir.join(format!("{name}.log")))?;
    if !procs::wait_ready(addr(admin), Some("/readyz"), Duration::from_secs(20)).await {
        proc.stop().await;
        return Err(format!("{name} did not become ready (see {name}.log)"));
    }
    Ok(proc)
}

/// `--slos`: the bench model behind a route with two SLOs and a failover rule (dry-run: the
/// rule is decided on every tick, and with one target it could only refuse).
const SLO_ROUTE: &str = "routes:\n  - name: bench\n    match: { model: bench }\n    targets: [ { model: bench } ]\n    slos:\n      - { name: availability, objective: 99.5, sli: errors }\n      - { name: fast-start, objective: 95, sli: { ttft_below: 1500ms } }\n    remediation:\n      - { when: { slo: availability, burn: page }, do: failover, dry_run: true }\n";

/// The policy every `sluice` under test runs: one provider (mock-llm), one model, one key;
/// spans to `otlp` (head ratio 0.05 as in DESIGN.md) and the access log when it is given.
fn sluice_policy(
    otlp: Option<&str>,
    gw: SocketAddr,
    admin: SocketAddr,
    threads: usize,
    mock: SocketAddr,
    key_hash: &str,
    key_rpm: Option<u32>,
) -> String {
    let limits = key_rpm.map_or_else(String::new, |rpm| format!(", limits: {{ rpm: {rpm} }}"));
    let telemetry = match otlp {
        Some(endpoint) => format!(
            "telemetry:\n  otlp: {{ endpoint: \"{endpoint}\", protocol: grpc }}\n  sample: {{ head_ratio: 0.05 }}\n  access_log: true\n"
        ),
        None => "telemetry: { access_log: false }\n".to_owned(),
    };
    format!(
        "{telemetry}server: {{ listen: {gw}, admin_listen: {admin}, threads: {threads} }}\n\
         providers:\n  mock-llm: {{ kind: openai, base_url: \"http://{mock}/v1\", api_key_env: SLUICE_BENCH_PROVIDER_KEY }}\n\
         models:\n  {MODEL}: {{ provider: mock-llm }}\n\
         keys:\n  - {{ name: bench, key_sha256: \"{key_hash}\", tenant: bench{limits} }}\n"
    )
}

/// `sluice hash-key` of `key`: the SHA-256 (hex) a policy lists, computed by the binary under
/// test so the two can never disagree.
pub async fn hash_key(sluice: &Path, key: &str) -> Result<String, String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = Command::new(sluice)
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {} hash-key: {e}", sluice.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(key.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || hash.len() != 64 {
        return Err(format!("`sluice hash-key` failed: {hash}"));
    }
    Ok(hash)
}

fn target_of(kind: TargetKind, o: &CompareOpts) -> Target {
    let (port, key, model) = match kind {
        TargetKind::Direct => (o.base_port, PROVIDER_KEY, MODEL),
        TargetKind::Nginx => (o.base_port + 1, PROVIDER_KEY, MODEL),
        TargetKind::Sluice => (o.base_port + 2, SLUICE_KEY, MODEL),
        TargetKind::Baseline => (o.base_port + 4, SLUICE_KEY, MODEL),
    };
    Target {
        name: kind.name().to_owned(),
        addr: addr(port),
        path: "/v1/chat/completions".to_owned(),
        key: key.to_owned(),
        model: model.to_owned(),
    }
}

/// RSS samples: seconds since start, then KiB per process name.
pub type RssSeries = Vec<(f64, BTreeMap<String, u64>)>;

/// Samples every process's RSS until aborted.
fn spawn_rss_sampler(
    pids: Vec<(String, u32)>,
    every: Duration,
    start: Instant,
    series: Arc<Mutex<RssSeries>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut row = BTreeMap::new();
            for (name, pid) in &pids {
                if let Some(s) = procs::sample(*pid) {
                    row.insert(name.clone(), s.rss_kb);
                }
            }
            series
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((start.elapsed().as_secs_f64(), row));
            tokio::time::sleep(every).await;
        }
    })
}

#[derive(Default)]
struct Acc {
    result: RunResult,
    proxy_cpu_s: f64,
    mock_cpu_s: f64,
    rounds: Vec<RoundFigure>,
}

/// Runs the comparison. Every process it starts is stopped before it returns.
pub async fn compare(s: &Scenario, o: &CompareOpts) -> Result<CompareReport, String> {
    std::fs::create_dir_all(&o.work_dir).map_err(|e| e.to_string())?;
    let machine = Machine::describe();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let running = start_all(s, o).await?;
    let result = measure(s, o, &running).await;
    let otlp_spans_received = running.otlp.as_ref().map_or(0, |sink| sink.received());
    running.stop().await;
    if !o.keep {
        let _ = std::fs::remove_dir_all(&o.work_dir);
    }
    let (targets, rss_series) = result?;
    let goals = evaluate_goals(s, &targets, &rss_series);
    let get = |name: &str| targets.iter().find(|t| t.name == name);
    let vs = match (get("sluice"), get("baseline")) {
        (Some(sl), Some(b)) => Some(vs_baseline(sl, b)),
        _ => None,
    };
    Ok(CompareReport {
        scenario: s.clone(),
        machine,
        started_unix,
        sluice_threads: o.threads,
        sluice_telemetry: o.telemetry,
        otlp_spans_received,
        sluice_slos: o.slos,
        sluice_anthropic: o.anthropic,
        targets,
        goals,
        rss_series,
        baseline_binary: s
            .targets
            .contains(&TargetKind::Baseline)
            .then(|| o.baseline.clone())
            .flatten(),
        vs_baseline: vs,
    })
}

type Measured = (Vec<TargetReport>, RssSeries);

async fn measure(s: &Scenario, o: &CompareOpts, running: &Running) -> Result<Measured, String> {
    let load = Load::from_scenario(s);
    let start = Instant::now();
    let mut pids = vec![("mock-llm".to_owned(), running.mock.pid)];
    for kind in [TargetKind::Nginx, TargetKind::Sluice, TargetKind::Baseline] {
        if let Some(pid) = running.pid_of(kind) {
            pids.push((kind.name().to_owned(), pid));
        }
    }
    let series = Arc::new(Mutex::new(Vec::new()));
    let sampler = spawn_rss_sampler(pids, s.rss_every, start, Arc::clone(&series));

    if !s.warmup.is_zero() {
        let warm = load.with_duration(s.warmup);
        for &kind in &s.targets {
            eprintln!("warmup {}", kind.name());
            engine::run(&warm, &target_of(kind, o), o.progress).await?;
        }
    }

    let mut acc: BTreeMap<TargetKind, Acc> = BTreeMap::new();
    let n = s.targets.len();
    for round in 0..s.rounds {
        for i in 0..n {
            // Rotate the order every round: A B C, B C A, C A B, …
            let kind = s.targets[(i + round as usize) % n];
            let target = target_of(kind, o);
            eprintln!("round {}/{} {}", round + 1, s.rounds, kind.name());
            let proxy_pid = running.pid_of(kind);
            let before = proxy_pid.and_then(procs::sample);
            let mock_before = procs::sample(running.mock.pid);
            let r = engine::run(&load, &target, o.progress).await?;
            let after = proxy_pid.and_then(procs::sample);
            let mock_after = procs::sample(running.mock.pid);
            let cpu = cpu_delta(before, after);
            let mock_cpu = cpu_delta(mock_before, mock_after);
            let rep = r.report();
            let (p50, p99) = headline_latency(&rep);
            let ok = rep.counts.ok.max(1) as f64;
            let a = acc.entry(kind).or_default();
            a.rounds.push(RoundFigure {
                round: round + 1,
                rps: rep.rps,
                cpu_us_per_req: cpu / ok * 1e6,
                p50_ms: p50,
                p99_ms: p99,
            });
            a.proxy_cpu_s += cpu;
            a.mock_cpu_s += mock_cpu;
            a.result.merge(&r);
        }
    }
    sampler.abort();
    let series = series
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();

    let targets = s
        .targets
        .iter()
        .map(|&kind| {
            let a = acc.remove(&kind).unwrap_or_default();
            let run = a.result.report();
            let ok = run.counts.ok.max(1) as f64;
            let peak_kb = series
                .iter()
                .filter_map(|(_, row)| row.get(kind.name()))
                .max()
                .copied()
                .unwrap_or(0);
            TargetReport {
                name: kind.name().to_owned(),
                proxy_cpu_s: a.proxy_cpu_s,
                proxy_cpu_us_per_req: a.proxy_cpu_s / ok * 1e6,
                mock_cpu_us_per_req: a.mock_cpu_s / ok * 1e6,
                peak_rss_mb: peak_kb as f64 / 1024.0,
                rounds: a.rounds,
                run,
            }
        })
        .collect();
    Ok((targets, series))
}

fn cpu_delta(before: Option<ProcSample>, after: Option<ProcSample>) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) => (a.cpu_s - b.cpu_s).max(0.0),
        _ => 0.0,
    }
}

/// The latency that speaks for a run: non-stream latency, or stream TTFC when nothing else ran.
pub fn headline_latency(r: &RunReport) -> (f64, f64) {
    if r.latency.count > 0 {
        (r.latency.p50_ms, r.latency.p99_ms)
    } else {
        (r.stream_ttfc.p50_ms, r.stream_ttfc.p99_ms)
    }
}

fn evaluate_goals(
    s: &Scenario,
    targets: &[TargetReport],
    series: &[(f64, BTreeMap<String, u64>)],
) -> Vec<GoalRow> {
    let get = |name: &str| targets.iter().find(|t| t.name == name);
    let (direct, nginx, sluice) = (get("direct"), get("nginx"), get("sluice"));
    let mut rows = Vec::new();
    let g = s.goals;
    if let (true, Some(n), Some(sl)) = (g.cpu, nginx, sluice) {
        let ratio = sl.proxy_cpu_us_per_req / n.proxy_cpu_us_per_req.max(1e-9);
        rows.push(GoalRow {
            goal: "CPU per request vs nginx".into(),
            bound: "≤ 2.0×".into(),
            measured: format!(
                "{ratio:.2}× ({:.1} vs {:.1} µs)",
                sl.proxy_cpu_us_per_req, n.proxy_cpu_us_per_req
            ),
            met: ratio <= 2.0,
        });
    }
    if let (true, Some(n), Some(sl)) = (g.throughput, nginx, sluice) {
        let ratio = sl.run.rps / n.run.rps.max(1e-9);
        rows.push(GoalRow {
            goal: "req/s vs nginx (closed loop)".into(),
            bound: "≥ 0.6×".into(),
            measured: format!("{ratio:.2}× ({:.0} vs {:.0})", sl.run.rps, n.run.rps),
            met: ratio >= 0.6,
        });
    }
    if let (true, Some(d), Some(sl)) = (g.latency, direct, sluice) {
        let (dp50, dp99) = headline_latency(&d.run);
        let (sp50, sp99) = headline_latency(&sl.run);
        let rate = if s.rate > 0.0 {
            format!(" at {:.0} req/s", s.rate)
        } else {
            String::new()
        };
        rows.push(GoalRow {
            goal: format!("added p50{rate}"),
            bound: "≤ 0.2 ms".into(),
            measured: format!("{:.3} ms", sp50 - dp50),
            met: sp50 - dp50 <= 0.2,
        });
        rows.push(GoalRow {
            goal: format!("added p99{rate}"),
            bound: "≤ 1 ms".into(),
            measured: format!("{:.3} ms", sp99 - dp99),
            met: sp99 - dp99 <= 1.0,
        });
    }
    if let (true, Some(d), Some(sl)) = (g.ttft, direct, sluice) {
        let added = sl.run.stream_ttfc.p50_ms - d.run.stream_ttfc.p50_ms;
        rows.push(GoalRow {
            goal: "added time to first streamed token (p50)".into(),
            bound: "≤ 0.2 ms".into(),
            measured: format!(
                "{added:.3} ms (p99 {:+.3} ms)",
                sl.run.stream_ttfc.p99_ms - d.run.stream_ttfc.p99_ms
            ),
            met: added <= 0.2,
        });
    }
    if let (Some(limit), Some(sl)) = (g.rss_mb, sluice) {
        rows.push(GoalRow {
            goal: format!("Sluice peak RSS ({} concurrent)", s.concurrency),
            bound: format!("≤ {limit} MB"),
            measured: format!("{:.1} MB", sl.peak_rss_mb),
            met: sl.peak_rss_mb <= limit as f64,
        });
    }
    if g.flat_rss
        && let Some((early, late)) = rss_drift(series, "sluice")
    {
        let grew = late - early;
        rows.push(GoalRow {
            goal: "flat Sluice RSS (2nd tenth vs last tenth of the run)".into(),
            bound: "growth ≤ 10 % or ≤ 4 MB".into(),
            measured: format!(
                "{:.1} → {:.1} MB ({:+.1} MB)",
                early / 1024.0,
                late / 1024.0,
                grew / 1024.0
            ),
            met: grew <= (early * 0.10).max(4096.0),
        });
    }
    rows
}

/// Mean RSS (KiB) of `name` over the second tenth and the last tenth of the samples.
pub fn rss_drift(series: &[(f64, BTreeMap<String, u64>)], name: &str) -> Option<(f64, f64)> {
    let v: Vec<f64> = series
        .iter()
        .filter_map(|(_, row)| row.get(name).map(|&kb| kb as f64))
        .collect();
    if v.len() < 20 {
        return None;
    }
    let tenth = v.len() / 10;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    Some((mean(&v[tenth..2 * tenth]), mean(&v[v.len() - tenth..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_pct_table() {
        for (new, old, want) in [
            (110.0, 100.0, Some(10.0)),
            (90.0, 100.0, Some(-10.0)),
            (5.0, 5.0, Some(0.0)),
            (5.0, 0.0, None),
            (5.0, -1.0, None),
            (f64::NAN, 1.0, None),
            (1.0, f64::INFINITY, None),
        ] {
            let got = change_pct(new, old);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{new} {old}: {g}"),
                _ => assert_eq!(got, want, "{new} {old}"),
            }
        }
    }

    #[test]
    fn baseline_and_sluice_get_the_same_policy_on_their_own_ports() {
        let mock = addr(29200);
        let sluice = sluice_policy(None, addr(29202), addr(29203), 2, mock, "ab12", None);
        let baseline = sluice_policy(None, addr(29204), addr(29205), 2, mock, "ab12", None);
        assert_eq!(
            sluice.replace("29202", "G").replace("29203", "A"),
            baseline.replace("29204", "G").replace("29205", "A")
        );
        assert!(
            sluice.starts_with("telemetry: { access_log: false }\n"),
            "{sluice}"
        );
        assert!(sluice.contains("listen: 127.0.0.1:29202, admin_listen: 127.0.0.1:29203"));
        assert!(sluice.contains("base_url: \"http://127.0.0.1:29200/v1\""));
        assert!(sluice.contains("key_sha256: \"ab12\", tenant: bench }"));
        let limited = sluice_policy(None, addr(29202), addr(29203), 2, mock, "ab12", Some(9));
        assert!(
            limited.contains("tenant: bench, limits: { rpm: 9 } }"),
            "{limited}"
        );
        let with_spans = sluice_policy(
            Some("http://127.0.0.1:4317"),
            addr(29202),
            addr(29203),
            2,
            mock,
            "ab12",
            None,
        );
        assert!(
            with_spans.contains("otlp: { endpoint: \"http://127.0.0.1:4317\", protocol: grpc }")
        );
        assert!(with_spans.contains("access_log: true"));
    }

    #[test]
    fn the_slo_route_makes_a_policy_sluice_accepts() {
        let mut policy = sluice_policy(
            None,
            addr(29202),
            addr(29203),
            2,
            addr(29200),
            &"ab".repeat(32),
            None,
        );
        policy.push_str(SLO_ROUTE);
        let loaded = sluice_config::load_str(&policy, "bench.yaml")
            .unwrap_or_else(|e| panic!("{e:?}\n{policy}"));
        let route = &loaded.config.routes[0];
        assert_eq!(route.name, "bench");
        assert_eq!(route.slos.len(), 2);
        assert_eq!(route.remediation.len(), 1);
    }

    #[test]
    fn baseline_targets_its_own_port_with_the_sluice_key() {
        let o = CompareOpts {
            sluice: PathBuf::from("sluice"),
            mock_llm: PathBuf::from("mock-llm"),
            nginx: None,
            baseline: Some(PathBuf::from("old")),
            threads: 2,
            telemetry: false,
            base_port: 31000,
            work_dir: PathBuf::from("/tmp/x"),
            keep: false,
            progress: false,
            key_rpm: None,
            redis: None,
            local_allowance: None,
            slos: false,
            anthropic: false,
        };
        let t = target_of(TargetKind::Baseline, &o);
        assert_eq!((t.name.as_str(), t.addr), ("baseline", addr(31004)));
        assert_eq!(t.key, target_of(TargetKind::Sluice, &o).key);
        assert_eq!(target_of(TargetKind::Sluice, &o).addr, addr(31002));
    }
}
