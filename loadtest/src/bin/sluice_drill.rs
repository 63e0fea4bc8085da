//! `sluice-drill`: a scripted fault drill against mock-llm on loopback (also `sluice drill`).
//!
//! ```text
//! sluice-drill error-burst            # the primary at 50 % 5xx → failover
//! sluice-drill slow-ttft --json       # TTFT ×10 → downgrade; last line one JSON object
//! sluice-drill outage                 # every target down → cache fallback
//! sluice-drill overload               # more traffic than the provider takes → shedding
//! ```
//!
//! Exit code 0 when every goal is met (detect < 10 s, mitigate < 15 s, client errors < 1 %,
//! unwind < 120 s, no flaps), 1 when one is missed, 2 when the drill could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice_loadtest::bench::procs;
use sluice_loadtest::drill::{self, Options, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-drill",
    version,
    about = "Fault drills for Sluice's SLO remediation: error-burst, slow-ttft, outage, overload"
)]
struct Args {
    /// error-burst, slow-ttft, outage or overload.
    scenario: Scenario,
    /// End with one JSON object on the last line of standard output.
    #[arg(long)]
    json: bool,
    /// The sluice binary (default: next to this one, then target/release, then PATH).
    #[arg(long, env = "SLUICE_DRILL_SLUICE")]
    sluice: Option<PathBuf>,
    /// The mock-llm binary (default: next to this one, then target/release, then PATH).
    #[arg(long, env = "SLUICE_DRILL_MOCK_LLM")]
    mock_llm: Option<PathBuf>,
    /// Put the policy, data directory and logs here instead of a temporary directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory even when the drill passes (it is always kept on a miss).
    #[arg(long)]
    keep: bool,
    /// No progress lines on standard error.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let binary = |given: Option<PathBuf>, name: &str| {
        given.or_else(|| procs::find_binary(name)).ok_or_else(|| {
            format!(
                "cannot find the {name} binary next to sluice-drill, in target/release or on \
                 PATH; build it (cargo build -p {}) or pass --{name}",
                if name == "sluice" {
                    "sluice-gateway"
                } else {
                    "sluice-loadtest"
                }
            )
        })
    };
    let (sluice, mock_llm) = match (
        binary(args.sluice, "sluice"),
        binary(args.mock_llm, "mock-llm"),
    ) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("sluice-drill: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        scenario: args.scenario,
        sluice,
        mock_llm,
        work_dir: args.work_dir,
        keep: args.keep,
        progress: !args.quiet,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-drill: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(drill::run(&opts)) {
        Ok((plan, report, dir)) => {
            println!("{}", report.summary(&plan));
            if !report.pass || opts.keep || opts.work_dir.is_some() {
                println!("  work dir: {}", dir.display());
            }
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("sluice-drill: cannot encode the report: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            if report.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sluice-drill: {e}");
            ExitCode::from(2)
        }
    }
}
