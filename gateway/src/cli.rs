//! The `sluice` command line: run the gateway, check a policy file, hash a virtual key, write
//! Prometheus rules for a policy's SLOs.

use std::io::Read as _;
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

fn run(config: Option<PathBuf>) -> ExitCode {
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
    match crate::server::run(&loaded.config, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
