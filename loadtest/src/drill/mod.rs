//! `sluice-drill` (and `sluice drill SCENARIO`): a scripted fault drill against mock-llm on
//! loopback, measuring how Sluice's SLO remediation handles it.
//!
//! One drill, every step bounded in time:
//!
//! ```text
//! start mock-llm and sluice (short SLO windows, one remediation rule) ─ steady traffic ─┐
//! warm-up ─► inject the fault (POST /_mock/faults) ─► wait for the action (/admin/incidents)
//!   ─► keep the fault a few seconds ─► clear it (DELETE /_mock/faults)
//!   ─► wait for `unwound`, then `resolved` ─► settle ─► stop traffic, read incidents.jsonl
//! ```
//!
//! [`report`] turns the incident log's stamped events and the clients' answers into the
//! numbers issue 9 sets goals for; [`scenario`] holds the four drills.

pub mod client;
pub mod report;
pub mod scenario;
pub mod traffic;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use tokio::process::Command;
use tokio::time::Instant;

use crate::bench::compare::hash_key;
use crate::bench::procs::{self, Proc};
use client::Http;
pub use report::Report;
use scenario::{Hashes, PROVIDER_KEY_ENV, Ports, TOPICS};
pub use scenario::{Plan, Scenario};
use traffic::{Keys, Traffic};

/// The longest the drill waits for the action after the fault starts.
pub const MITIGATE_WAIT: Duration = Duration::from_secs(30);
/// The longest it waits for the action to be undone after the fault is cleared.
pub const UNWIND_WAIT: Duration = Duration::from_secs(130);
/// The longest it waits for the incident to be resolved after the unwind.
pub const RESOLVE_WAIT: Duration = Duration::from_secs(60);
/// Traffic kept after the end, to see that nothing comes back.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How many times the processes are started before the drill gives up.
const START_ATTEMPTS: u32 = 3;
/// How often the admin views are read.
const POLL: Duration = Duration::from_millis(100);

const PROVIDER_KEY: &str = "sk-drill-provider";
const GOLD_KEY: &str = "sk-drill-gold";
const BULK_KEY: &str = "sk-drill-bulk";
const ADMIN_TOKEN: &str = "sk-drill-admin";

/// How to run one drill.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    /// The `sluice` binary.
    pub sluice: PathBuf,
    /// The `mock-llm` binary.
    pub mock_llm: PathBuf,
    /// Where the policy, data directory and logs go; a fresh temporary directory by default.
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory even when the drill passes.
    pub keep: bool,
    /// Progress lines on standard error.
    pub progress: bool,
}

/// The drill's work directory, policy and processes.
struct Rig {
    ports: Ports,
    mock: Proc,
    sluice: Proc,
}

/// Runs one drill. `Err` is a drill that could not run (a process would not start, a port was
/// taken); a drill that ran and missed a goal is an `Ok` report with `pass: false`.
pub async fn run(o: &Options) -> Result<(Plan, Report, PathBuf), String> {
    let plan = o.scenario.plan();
    let dir = match &o.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "sluice-drill-{}-{}-{}",
            plan.scenario.name(),
            std::process::id(),
            unix_ms(SystemTime::now())
        )),
    };
    std::fs::create_dir_all(dir.join("data"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let say = |msg: &str| {
        if o.progress {
            eprintln!("[drill {}] {msg}", plan.scenario.name());
        }
    };
    // A port picked free can be taken by another process before mock-llm or sluice binds it:
    // start again on other ports rather than fail the drill.
    let mut attempt = 1;
    let rig = loop {
        match start(o, &plan, &dir).await {
            Ok(rig) => break rig,
            Err(e) if attempt < START_ATTEMPTS => {
                say(&format!("{e}; starting again on other ports"));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    say(&format!(
        "sluice on 127.0.0.1:{} (admin {}), mock-llm on {}; work dir {}",
        rig.ports.gateway,
        rig.ports.admin,
        rig.ports.mock,
        dir.display()
    ));
    let outcome = drive(&plan, &rig, &say).await;
    let Rig { mock, sluice, .. } = rig;
    sluice.stop().await;
    mock.stop().await;
    let (tally, fault_ms, clear_ms, peak) = outcome?;
    let lines = read_log(&dir.join("data").join("incidents.jsonl"));
    let steps = report::steps_of(&lines, plan.rule);
    let report = report::measure(&plan, steps, &tally, fault_ms, clear_ms, peak);
    if report.pass && !o.keep && o.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((plan, report, dir))
}

async fn start(o: &Options, plan: &Plan, dir: &Path) -> Result<Rig, String> {
    let ports = Ports {
        mock: free_port()?,
        gateway: free_port()?,
        admin: free_port()?,
    };
    let mut cmd = Command::new(&o.mock_llm);
    cmd.args(["--listen", &format!("127.0.0.1:{}", ports.mock)])
        .args(["--ttft-ms", &plan.mock_ttft.as_millis().to_string()])
        .args(["--api-key-env", PROVIDER_KEY_ENV])
        .env(PROVIDER_KEY_ENV, PROVIDER_KEY);
    let mock = Proc::spawn("mock-llm", cmd, &dir.join("mock-llm.log"))?;
    if !procs::wait_ready(
        loopback(ports.mock),
        Some("/_mock/stats"),
        Duration::from_secs(20),
    )
    .await
    {
        mock.stop().await;
        return Err(format!(
            "mock-llm did not start (see {})",
            dir.join("mock-llm.log").display()
        ));
    }
    let hashes = match hashes(&o.sluice).await {
        Ok(h) => h,
        Err(e) => {
            mock.stop().await;
            return Err(e);
        }
    };
    let data = dir.join("data");
    let policy = plan.policy(ports, &hashes, &data.display().to_string());
    let policy_path = dir.join("policy.yaml");
    if let Err(e) = std::fs::write(&policy_path, policy) {
        mock.stop().await;
        return Err(format!("cannot write {}: {e}", policy_path.display()));
    }
    let mut cmd = Command::new(&o.sluice);
    cmd.arg("--config")
        .arg(&policy_path)
        .env(PROVIDER_KEY_ENV, PROVIDER_KEY)
        .env("SLUICE_LOG", "info");
    let sluice = match Proc::spawn("sluice", cmd, &dir.join("sluice.log")) {
        Ok(p) => p,
        Err(e) => {
            mock.stop().await;
            return Err(e);
        }
    };
    // The admin listener can answer before the data plane's is bound: wait for both.
    let ready = procs::wait_ready(
        loopback(ports.admin),
        Some("/readyz"),
        Duration::from_secs(30),
    )
    .await
        && procs::wait_ready(loopback(ports.gateway), None, Duration::from_secs(10)).await;
    if !ready {
        sluice.stop().await;
        mock.stop().await;
        return Err(format!(
            "sluice did not become ready (see {})",
            dir.join("sluice.log").display()
        ));
    }
    Ok(Rig {
        ports,
        mock,
        sluice,
    })
}

async fn hashes(sluice: &Path) -> Result<Hashes, String> {
    Ok(Hashes {
        gold: hash_key(sluice, GOLD_KEY).await?,
        bulk: hash_key(sluice, BULK_KEY).await?,
        admin: hash_key(sluice, ADMIN_TOKEN).await?,
    })
}

type Driven = (traffic::Tally, u64, u64, Option<f64>);

/// The drill itself, once everything runs: traffic, fault, watching, clearing.
async fn drive(plan: &Plan, rig: &Rig, say: &dyn Fn(&str)) -> Result<Driven, String> {
    let gateway = loopback(rig.ports.gateway);
    let mut admin = Http::new(loopback(rig.ports.admin));
    let mut mock = Http::new(loopback(rig.ports.mock));
    if plan.scenario == Scenario::Outage {
        warm_cache(plan, gateway).await?;
    }
    let traffic = Traffic::start(
        plan.scenario,
        plan.rate,
        gateway,
        Keys {
            gold: GOLD_KEY.to_owned(),
            bulk: BULK_KEY.to_owned(),
        },
    );
    let mut watch = Watch {
        admin: &mut admin,
        rule: plan.rule,
        slo: plan.slo,
        peak: None,
        last_slo_read: None,
    };
    say(&format!(
        "steady traffic at {} req/s for {:?}",
        plan.rate, plan.warmup
    ));
    tokio::time::sleep(plan.warmup).await;

    for f in &plan.faults {
        let body = Bytes::from(serde_json::to_vec(f).map_err(|e| e.to_string())?);
        let a = mock
            .send(
                Method::POST,
                "/_mock/faults",
                None,
                Some(body),
                Duration::from_secs(5),
            )
            .await?;
        if a.status != 200 {
            let _ = traffic.stop().await;
            return Err(format!(
                "mock-llm refused the fault: {}",
                String::from_utf8_lossy(&a.body)
            ));
        }
    }
    let fault_ms = unix_ms(SystemTime::now());
    say("fault injected; waiting for the action");

    let acted = watch
        .until(MITIGATE_WAIT, |kinds| kinds.contains(&"action_taken"))
        .await;
    if acted {
        say("action in effect; keeping the fault a little longer");
        watch.until(plan.fault_after_mitigation, |_| false).await;
    } else {
        say("no action within the wait; clearing the fault");
    }

    let cleared = mock
        .send(
            Method::DELETE,
            "/_mock/faults",
            None,
            None,
            Duration::from_secs(5),
        )
        .await;
    let clear_ms = unix_ms(SystemTime::now());
    if let Err(e) = cleared {
        let _ = traffic.stop().await;
        return Err(format!("cannot clear the fault: {e}"));
    }
    if acted {
        say("fault cleared; waiting for the unwind");
        let unwound = watch
            .until(UNWIND_WAIT, |kinds| {
                kinds
                    .iter()
                    .skip_while(|k| **k != "action_taken")
                    .any(|k| *k == "unwound")
            })
            .await;
        if unwound {
            say("unwound; waiting for the incident to be resolved");
            watch
                .until(RESOLVE_WAIT, |kinds| {
                    kinds
                        .iter()
                        .skip_while(|k| **k != "unwound")
                        .any(|k| *k == "resolved")
                })
                .await;
        }
    }
    watch.until(SETTLE, |_| false).await;
    let peak = watch.peak;
    let tally = traffic.stop().await;
    say(&format!("done: {} requests", tally.samples.len()));
    Ok((tally, fault_ms, clear_ms, peak))
}

/// Asks every question of the outage drill once, so each has an answer to stand in later.
async fn warm_cache(plan: &Plan, gateway: SocketAddr) -> Result<(), String> {
    let mut http = Http::new(gateway);
    for i in 0..TOPICS as u64 {
        let req = plan.scenario.request(i);
        let a = http
            .send(
                Method::POST,
                "/v1/chat/completions",
                Some(GOLD_KEY),
                Some(req.body),
                Duration::from_secs(10),
            )
            .await?;
        if a.status != 200 {
            return Err(format!("warming the cache: HTTP {}", a.status));
        }
    }
    Ok(())
}

/// Reads `/admin/incidents` (and, about once a second, `/admin/slo`).
struct Watch<'a> {
    admin: &'a mut Http,
    rule: &'static str,
    slo: &'static str,
    peak: Option<f64>,
    last_slo_read: Option<Instant>,
}

impl Watch<'_> {
    /// Polls until `done` holds for the rule's event kinds (in time order) or `within` passes;
    /// whether it held.
    async fn until(&mut self, within: Duration, done: impl Fn(&[&str]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self
                .last_slo_read
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                self.read_slo().await;
            }
            if let Some(events) = self.events().await {
                let steps = report::steps_of(&events, self.rule);
                let kinds: Vec<&str> = steps.iter().map(|s| s.kind.as_str()).collect();
                if done(&kinds) {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn get(&mut self, path: &str) -> Option<Value> {
        let a = self
            .admin
            .send(
                Method::GET,
                path,
                Some(ADMIN_TOKEN),
                None,
                Duration::from_secs(5),
            )
            .await
            .ok()?;
        (a.status == 200).then(|| a.json())
    }

    /// Every event of every incident `/admin/incidents` lists.
    async fn events(&mut self) -> Option<Vec<Value>> {
        let v = self.get("/admin/incidents").await?;
        let mut out = Vec::new();
        for list in ["open", "recent"] {
            for inc in v[list].as_array().into_iter().flatten() {
                out.extend(inc["events"].as_array().into_iter().flatten().cloned());
            }
        }
        Some(out)
    }

    /// Keeps the highest 5-minute burn of the trigger SLO (route or target).
    async fn read_slo(&mut self) {
        self.last_slo_read = Some(Instant::now());
        if let Some(v) = self.get("/admin/slo").await {
            let mut burns = Vec::new();
            burns_of(&v, self.slo, &mut burns);
            for b in burns {
                self.peak = Some(self.peak.map_or(b, |p: f64| p.max(b)));
            }
        }
    }
}

/// Every `windows.5m.burn` of an object whose `slo` is `slo`, anywhere in `v`.
fn burns_of(v: &Value, slo: &str, out: &mut Vec<f64>) {
    match v {
        Value::Object(map) => {
            if map.get("slo").and_then(Value::as_str) == Some(slo)
                && let Some(b) = v["windows"]["5m"]["burn"].as_f64()
            {
                out.push(b);
            }
            for child in map.values() {
                burns_of(child, slo, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                burns_of(child, slo, out);
            }
        }
        _ => {}
    }
}

/// The incident log's lines that parse.
fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A free port below the kernel's ephemeral range (32768+), so no outgoing connection of this
/// or another drill can be handed it between this pick and the bind.
fn free_port() -> Result<u16, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 200) * 50;
    for _ in 0..2_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(base + n % 12_000).map_err(|e| e.to_string())?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port on 127.0.0.1".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burns_are_found_wherever_the_slo_is() {
        let v = serde_json::json!({"routes": [{"status": [
            {"slo": "availability", "windows": {"5m": {"burn": 3.0}}},
            {"slo": "other", "windows": {"5m": {"burn": 99.0}}}
        ], "targets": [{"slo": "availability", "windows": {"5m": {"burn": 50.0}}}]}]});
        let mut out = Vec::new();
        burns_of(&v, "availability", &mut out);
        out.sort_by(f64::total_cmp);
        assert_eq!(out, [3.0, 50.0]);
    }
}
