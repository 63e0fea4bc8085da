//! `sluice-bench`: Sluice's load generator and comparison harness.
//!
//! ```text
//! sluice-bench run loadtest/scenarios/fixed-5k.yaml --url http://127.0.0.1:8080/v1/chat/completions --key sk-…
//! sluice-bench run loadtest/scenarios/smoke.yaml              # against an in-process mock-llm
//! sluice-bench compare loadtest/scenarios/throughput.yaml --json out.json --md out.md
//! sluice-bench compare loadtest/scenarios/throughput.yaml --baseline /tmp/sluice-main  # vs an earlier build
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sluice_loadtest::bench::compare::{self, CompareOpts};
use sluice_loadtest::bench::scenario::TargetKind;
use sluice_loadtest::bench::{Load, Scenario, Target, procs, report};
use sluice_loadtest::mock_llm::MockTiming;
use sluice_loadtest::{MockLlm, MockLlmConfig};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench",
    version,
    about = "Load generator and proxy comparison for Sluice"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Threads of the load generator's runtime.
    #[arg(long, global = true, default_value_t = 1)]
    client_threads: usize,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario against one URL (or, without --url, an in-process mock-llm).
    Run {
        /// Scenario file.
        scenario: PathBuf,
        /// `http://IP:PORT/PATH` of the target.
        #[arg(long)]
        url: Option<String>,
        /// Bearer key.
        #[arg(long, env = "SLUICE_BENCH_KEY", default_value = "sk-bench")]
        key: String,
        /// Body `model`.
        #[arg(long, default_value = "bench")]
        model: String,
        #[command(flatten)]
        common: Common,
    },
    /// Run a scenario against mock-llm directly, nginx and Sluice (and a baseline build),
    /// interleaved, and compare.
    Compare {
        /// Scenario file.
        scenario: PathBuf,
        /// The sluice binary (default: next to this one, then target/release).
        #[arg(long)]
        sluice: Option<PathBuf>,
        /// The mock-llm binary (default: next to this one, then target/release).
        #[arg(long)]
        mock_llm: Option<PathBuf>,
        /// The nginx binary (default: /usr/sbin/nginx or PATH).
        #[arg(long)]
        nginx: Option<PathBuf>,
        /// A second sluice binary (e.g. an earlier commit's build), measured as the target
        /// `baseline` with the same policy on its own ports; the report gives Sluice's change
        /// against it.
        #[arg(long, value_name = "PATH")]
        baseline: Option<PathBuf>,
        /// Sluice `server.threads`.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Sluice telemetry: `on` exports spans over OTLP (to an in-process receiver) and
        /// writes the access log; `off` keeps metrics only.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        telemetry: String,
        /// First of six consecutive 127.0.0.1 ports (mock, nginx, sluice, sluice admin,
        /// baseline, baseline admin).
        #[arg(long, default_value_t = 29200)]
        base_port: u16,
        /// Override the scenario's rounds.
        #[arg(long)]
        rounds: Option<u32>,
        /// Only these targets (comma-separated: direct,nginx,sluice,baseline); --baseline adds
        /// baseline to them.
        #[arg(long, value_delimiter = ',')]
        targets: Option<Vec<String>>,
        /// Keep the work directory (configs, logs).
        #[arg(long)]
        keep: bool,
        /// Give the bench key `limits: { rpm: N }` in every sluice's policy.
        #[arg(long, value_name = "N")]
        key_rpm: Option<u32>,
        /// Count the target `sluice`'s limits in this Redis (`state.redis.url`); the baseline
        /// keeps counting in-process. With --key-rpm and --baseline, the report gives the
        /// cost of shared limits.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// With --redis: `state.redis.local_allowance` (requests leased per round trip).
        #[arg(long, value_name = "N", requires = "redis")]
        local_allowance: Option<u32>,
        /// Give the target `sluice`'s route SLOs and a (dry-run) failover rule, to measure what
        /// the SLO engine and remediation cost per request; the baseline keeps its policy.
        #[arg(long)]
        slos: bool,
        /// Have the target `sluice` reach mock-llm in Anthropic's dialect (`kind: anthropic`),
        /// to measure what translation costs; the baseline keeps the OpenAI provider.
        #[arg(long)]
        anthropic: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Override the scenario's phase duration (e.g. `3m` for a shortened soak).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the markdown report here.
    #[arg(long)]
    md: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_scenario(path: &std::path::Path, duration: Option<Duration>) -> Result<Scenario, String> {
    let mut s = Scenario::load(path)?;
    if let Some(d) = duration {
        let scale = d.as_secs_f64() / s.duration.as_secs_f64();
        s.max_requests = ((s.max_requests as f64 * scale).ceil() as u64).max(1);
        s.duration = d;
    }
    Ok(s)
}

fn write_outputs(common: &Common, json: &impl serde::Serialize, md: &str) -> Result<(), String> {
    println!("{md}");
    if let Some(path) = &common.json {
        let text = serde_json::to_string_pretty(json).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &common.md {
        std::fs::write(path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Runs the command; Ctrl-C (or SIGINT from `timeout`) drops it, which kills every child process
/// it started (they are spawned with `kill_on_drop`).
async fn main_async(cli: Cli) -> Result<(), String> {
    tokio::select! {
        r = work(cli) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted; every started process was stopped".into()),
    }
}

async fn work(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Run {
            scenario,
            url,
            key,
            model,
            common,
        } => {
            let s = load_scenario(&scenario, common.duration)?;
            let mut mock = None;
            let target = match url {
                Some(url) => Target::from_url("target", &url, &key, &model)?,
                None => {
                    let llm = MockLlm::start(MockLlmConfig {
                        timing: MockTiming {
                            ttft: Duration::from_millis(s.mock.ttft_ms),
                            tokens_per_s: s.mock.tokens_per_s,
                        },
                        burst: s.mock.burst,
                        ..MockLlmConfig::default()
                    })
                    .await
                    .map_err(|e| format!("cannot start the in-process mock-llm: {e}"))?;
                    let t = Target::from_url(
                        "mock-llm",
                        &format!("{}/chat/completions", llm.base_url()),
                        &key,
                        &model,
                    )?;
                    mock = Some(llm);
                    t
                }
            };
            let load = Load::from_scenario(&s);
            if !s.warmup.is_zero() {
                sluice_loadtest::bench::run(&load.with_duration(s.warmup), &target, false).await?;
            }
            let r = sluice_loadtest::bench::run(&load, &target, !common.quiet).await?;
            if let Some(m) = mock {
                m.shutdown().await;
            }
            let rep = r.report();
            let md = report::run_markdown(&target.name, &rep);
            write_outputs(&common, &rep, &md)
        }
        Cmd::Compare {
            scenario,
            sluice,
            mock_llm,
            nginx,
            baseline,
            threads,
            telemetry,
            base_port,
            rounds,
            targets,
            keep,
            key_rpm,
            redis,
            local_allowance,
            slos,
            anthropic,
            common,
        } => {
            let mut s = load_scenario(&scenario, common.duration)?;
            if let Some(r) = rounds {
                s.rounds = r.max(1);
            }
            if let Some(list) = targets {
                s.targets = list
                    .iter()
                    .map(|t| {
                        TargetKind::from_name(t.trim()).ok_or_else(|| format!("unknown target {t}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            if let Some(path) = &baseline
                && !path.is_file()
            {
                return Err(format!("--baseline {}: no such file", path.display()));
            }
            if baseline.is_some() && !s.targets.contains(&TargetKind::Baseline) {
                s.targets.push(TargetKind::Baseline);
            }
            s.check()?;
            let need = |given: Option<PathBuf>, name: &str| {
                given
                    .or_else(|| procs::find_binary(name))
                    .ok_or_else(|| format!("cannot find {name}; pass --{name}"))
            };
            let opts = CompareOpts {
                sluice: need(sluice, "sluice")?,
                mock_llm: need(mock_llm, "mock-llm")?,
                nginx: nginx.or_else(|| procs::find_binary("nginx")),
                baseline,
                threads,
                telemetry: telemetry == "on",
                base_port,
                work_dir: std::env::temp_dir().join(format!("sluice-bench-{}", std::process::id())),
                keep,
                progress: !common.quiet,
                key_rpm,
                redis,
                local_allowance,
                slos,
                anthropic,
            };
            if keep {
                eprintln!("work directory: {}", opts.work_dir.display());
            }
            let rep = compare::compare(&s, &opts).await?;
            let md = report::compare_markdown(&rep);
            write_outputs(&common, &rep, &md)
        }
    }
}
