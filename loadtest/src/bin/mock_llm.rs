//! `mock-llm`: the scriptable fake OpenAI provider as a standalone server.
//!
//! ```text
//! mock-llm --listen 127.0.0.1:9000 [--prefix /v1] [--ttft-ms N] [--tokens-per-s F] [--burst] [--api-key-env NAME]
//!          [--tls-cert FILE --tls-key FILE] [--http2]
//! curl -s localhost:9000/v1/chat/completions -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
//! curl -s localhost:9000/v1/chat/completions -d '{"model":"m@429:2","messages":[{"role":"user","content":"hi"}]}'
//! curl -s localhost:9000/_mock/stats
//! ```
//!
//! Faults (`model@fault,…` or an `x-mock` header) are documented in
//! `sluice_loadtest::mock_llm::fault`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sluice_loadtest::mock_llm::{MockTiming, MockTls};
use sluice_loadtest::{MockLlm, MockLlmConfig};

#[derive(Debug, Parser)]
#[command(
    name = "mock-llm",
    version,
    about = "Scriptable fake OpenAI provider for Sluice tests"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Path prefix of the API routes.
    #[arg(long, default_value = "/v1")]
    prefix: String,
    /// Milliseconds before the first event of a stream (and before non-stream answers).
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Content events per second after the first; 0 means no delay.
    #[arg(long, default_value_t = 0.0)]
    tokens_per_s: f64,
    /// Send every stream at once: after the time its pacing adds up to, the head, every event
    /// and the end of the body in one socket write.
    #[arg(long)]
    burst: bool,
    /// Name of an environment variable holding the API key to require (never the key itself).
    #[arg(long, value_name = "NAME")]
    api_key_env: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<String>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<String>,
    /// Also speak HTTP/2: by ALPN with --tls-cert, else with prior knowledge (h2c).
    #[arg(long)]
    http2: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let api_key = match &args.api_key_env {
        None => None,
        Some(name) => match std::env::var(name) {
            Ok(key) if !key.is_empty() => Some(key),
            _ => {
                eprintln!(
                    "mock-llm: environment variable {name} (from --api-key-env) is unset or empty"
                );
                return ExitCode::from(2);
            }
        },
    };
    if !(args.tokens_per_s.is_finite() && args.tokens_per_s >= 0.0) {
        eprintln!("mock-llm: --tokens-per-s must be a finite number ≥ 0");
        return ExitCode::from(2);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match MockTls::from_pem_files(cert, key) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("mock-llm: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let cfg = MockLlmConfig {
        addr: args.listen,
        prefix: args.prefix,
        timing: MockTiming {
            ttft: Duration::from_millis(args.ttft_ms),
            tokens_per_s: args.tokens_per_s,
        },
        api_key,
        burst: args.burst,
        tls,
        http2: args.http2,
    };
    let server = match MockLlm::start(cfg).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mock-llm: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "mock-llm listening on {} (base URL {})",
        server.addr(),
        server.base_url()
    );
    shutdown_signal().await;
    eprintln!("mock-llm: shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
