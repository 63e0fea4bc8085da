//! The `sluice` command line: run the gateway, check a policy file, hash a virtual key, print
//! the policy file's JSON Schema, run a fault drill, write Prometheus rules for a policy's SLOs.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: an OpenAI-compatible LLM gateway"
)]
pub struct Cli {
    /// Policy file to serve. Without it, Sluice serves its embedded quickstart policy
    /// (the built-in mock provider; no provider key needed).
    #[arg(long, short, global = true, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate a policy file and print every problem found, with its path and line.
    /// With `--diff OLD`, also print what reloading from OLD to FILE would change.
    Check {
        /// The policy file to check.
        file: PathBuf,
        /// The serving policy to compare against (as a reload would).
        #[arg(long, value_name = "OLD")]
        diff: Option<PathBuf>,
    },
    /// Print the SHA-256 of a virtual key, for `keys[].key_sha256`. Reads the key from
    /// standard input so it stays out of shell history.
    HashKey,
    /// Print the JSON Schema (draft 2020-12) of the policy file, for editors and CI; the same
    /// as `config/policy.schema.json`.
    Schema,
    /// Run a fault drill against mock-llm on loopback and print detection, mitigation, client
    /// error ratio, unwind time and flaps: error-burst, slow-ttft, outage or overload. Runs
    /// `sluice-drill`, which must sit next to this binary.
    Drill {
        /// error-burst, slow-ttft, outage or overload.
        scenario: String,
        /// End with one JSON object on the last line of standard output.
        #[arg(long)]
        json: bool,
        /// More `sluice-drill` options, after `--` (see `sluice-drill --help`).
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// SLO tooling: `sluice slo rules FILE`.
    Slo {
        #[command(subcommand)]
        command: SloCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SloCommand {
    /// Print Prometheus recording rules and multi-window burn-rate alerts (page: 1h & 5m over
    /// 14.4, or 6h & 30m over 6; ticket: 3d & 6h over 1) for every SLO in a policy file.
    Rules {
        /// The policy file whose SLOs the rules are for.
        file: PathBuf,
    },
}

/// Runs the CLI; the exit code is non-zero on any error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Some(Command::Check { file, diff: None }) => check(&file),
        Some(Command::Check {
            file,
            diff: Some(old),
        }) => check_diff(&old, &file),
        Some(Command::HashKey) => hash_key(),
        Some(Command::Schema) => schema(),
        Some(Command::Drill {
            scenario,
            json,
            rest,
        }) => drill(&scenario, json, &rest),
        Some(Command::Slo {
            command: SloCommand::Rules { file },
        }) => slo_rules(&file),
        Some(Command::Run) | None => run(cli.config),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn load(path: Option<&PathBuf>) -> Result<sluice_config::Loaded, sluice_config::Error> {
    match path {
        Some(p) => sluice_config::load_file(p),
        None => sluice_config::load_str(sluice_config::QUICKSTART_YAML, "<embedded quickstart>"),
    }
}

fn report(err: &sluice_config::Error) {
    eprintln!("{err}");
    if let sluice_config::Error::Invalid { diagnostics, .. } = err {
        for d in diagnostics {
            eprintln!("  {d}");
        }
    }
}

fn check(file: &Path) -> ExitCode {
    match sluice_config::load_file(file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            match sluice_policy::Policy::compile(
                &loaded.config,
                &sluice_policy::RuntimeState::new(),
            ) {
                Ok(_) => {
                    eprintln!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// `sluice check --diff OLD NEW`: validates both and prints what a reload from OLD to NEW
/// would change (names only), and whether it would be refused for a restart-only setting.
fn check_diff(old: &Path, new: &Path) -> ExitCode {
    let (old_cfg, new_cfg) = match (sluice_config::load_file(old), sluice_config::load_file(new)) {
        (Ok(o), Ok(n)) => (o.config, n.config),
        (o, n) => {
            for e in [o.err(), n.err()].into_iter().flatten() {
                report(&e);
            }
            return ExitCode::FAILURE;
        }
    };
    let diff = sluice_config::PolicyDiff::between(&old_cfg, &new_cfg);
    #[expect(clippy::print_stdout, reason = "the diff is this command's output")]
    {
        println!("{diff}");
    }
    if diff.restart_only.is_empty() {
        eprintln!(
            "{}: a reload from {} would apply",
            new.display(),
            old.display()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{}: a reload would be refused; restart to change {}",
            new.display(),
            diff.restart_only.join(", ")
        );
        ExitCode::FAILURE
    }
}

fn hash_key() -> ExitCode {
    let mut key = String::new();
    if std::io::stdin().read_to_string(&mut key).is_err() {
        eprintln!("cannot read the key from standard input");
        return ExitCode::FAILURE;
    }
    let key = key.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        eprintln!("no key on standard input; try: printf %s 'sk-...' | sluice hash-key");
        return ExitCode::FAILURE;
    }
    #[expect(clippy::print_stdout, reason = "the hash is this command's output")]
    {
        println!("{}", hex::encode(sluice_policy::hash_key(key)));
    }
    ExitCode::SUCCESS
}

fn schema() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(sluice_config::json_schema_text().as_bytes())
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the schema: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sluice slo rules FILE`: the rules on standard output, problems on standard error.
fn slo_rules(file: &Path) -> ExitCode {
    match sluice_config::load_file(file) {
        Ok(loaded) => {
            #[expect(clippy::print_stdout, reason = "the rules are this command's output")]
            {
                print!("{}", crate::slo_rules::rules_for(&loaded.config));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// `sluice drill`: hands over to `sluice-drill` next to this binary, telling it to drive this
/// very `sluice`.
fn drill(scenario: &str, json: bool, rest: &[String]) -> ExitCode {
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot find the sluice binary's own path: {e}");
            return ExitCode::from(2);
        }
    };
    let runner = me.with_file_name("sluice-drill");
    let mock = me.with_file_name("mock-llm");
    if !(runner.is_file() && mock.is_file())
        && let Err(e) = build_drill_tools(&me)
    {
        eprintln!(
            "sluice drill needs {} and {}, which are missing, and cannot build them: {e}\n\
                 build them with `cargo build -p sluice-loadtest --bin sluice-drill --bin mock-llm` (same profile as sluice)",
            runner.display(),
            mock.display()
        );
        return ExitCode::from(2);
    }
    let mut cmd = std::process::Command::new(&runner);
    cmd.arg(scenario).arg("--sluice").arg(&me);
    if json {
        cmd.arg("--json");
    }
    cmd.args(rest);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let err = cmd.exec();
        eprintln!("cannot run {}: {err}", runner.display());
        ExitCode::from(2)
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(2)).unwrap_or(2)),
        Err(e) => {
            eprintln!("cannot run {}: {e}", runner.display());
            ExitCode::from(2)
        }
    }
}

/// Builds `sluice-drill` and `mock-llm` next to `sluice` when it runs from a source
/// checkout's `target/<profile>/`: the drill is a developer's tool, and one command should do.
fn build_drill_tools(sluice: &Path) -> Result<(), String> {
    let profile_dir = sluice.parent().ok_or("sluice has no directory")?;
    let target_dir = profile_dir
        .parent()
        .ok_or("sluice is not in a target directory")?;
    let workspace = target_dir
        .ancestors()
        .find(|d| d.join("loadtest/Cargo.toml").is_file() && d.join("Cargo.toml").is_file())
        .ok_or("this sluice was not built from a source checkout")?;
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "-p",
            "sluice-loadtest",
            "--bin",
            "sluice-drill",
            "--bin",
            "mock-llm",
        ]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => return Err("cannot tell sluice's build profile".to_owned()),
    }
    eprintln!(
        "building sluice-drill and mock-llm in {} (once)",
        workspace.display()
    );
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed ({status})"))
    }
}

fn run(config: Option<PathBuf>) -> ExitCode {
    // Before the file is read: an edit made while the server starts is a change to reload.
    let read_as = config.as_deref().and_then(crate::reload::fingerprint);
    let loaded = match load(config.as_ref()) {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return ExitCode::FAILURE;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!(warning = %w, "Policy warning.");
    }
    match crate::server::run(&loaded.config, config, read_as) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
