//! Assembling and running the pingora server: the data-plane and admin services, and a
//! shutdown that drains in-flight requests instead of sleeping a fixed grace period.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use sluice_policy::Policy;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::Admin;
use crate::handler::DataPlane;
use crate::state::AppState;

/// Builds and runs the server until a signal stops it. Blocks the calling thread; must not
/// be called from inside a tokio runtime (pingora starts its own).
pub fn run(policy: Policy) -> Result<(), String> {
    let server_cfg = policy.server.clone();
    let state = Arc::new(AppState::new(policy)?);

    let conf = ServerConf {
        threads: server_cfg.threads,
        // Sluice drains by itself (see DrainOnTerm); pingora's fixed sleep would only delay exit.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: server_cfg.upstream_pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut data = Service::new(
        "sluice data plane".to_owned(),
        DataPlane {
            state: Arc::clone(&state),
        },
    );
    // No L4 read buffer on the data plane: pingora's default is 64 KiB per connection, zeroed
    // and resident for the connection's life, which dominated memory with many open streams.
    // The H1 session reads request heads and bodies into buffers of its own anyway.
    data.add_listener(
        ListenerConfig::tcp(server_cfg.listen.to_string())
            .l4_buffer(L4BufferSettings::default().read(0)),
    );
    let mut admin = Service::new(
        "sluice admin".to_owned(),
        HttpServer::new_app(Admin {
            state: Arc::clone(&state),
        }),
    );
    admin.threads = Some(1);
    admin.add_tcp(&server_cfg.admin_listen.to_string());
    server.add_service(data);
    server.add_service(admin);

    tracing::info!(
        listen = %server_cfg.listen,
        admin = %server_cfg.admin_listen,
        threads = server_cfg.threads,
        "Sluice is starting."
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnTerm {
            state: Arc::clone(&state),
            grace: server_cfg.shutdown_grace,
        }),
    });
    state.shutdown_telemetry(Duration::from_secs(5));
    tracing::info!("Sluice stopped.");
    Ok(())
}

/// SIGINT stops at once. SIGTERM starts draining: readiness fails, connections stop being
/// kept alive, and the process exits as soon as no request is in flight, or when
/// `server.shutdown_grace` runs out, whichever comes first.
struct DrainOnTerm {
    state: Arc<AppState>,
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnTerm {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("Cannot install signal handlers; stopping.");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT received; stopping now.");
                return ShutdownSignal::FastShutdown;
            }
            _ = term.recv() => {}
        }
        self.state.draining.store(true, Ordering::Relaxed);
        let inflight = self.state.inflight.load(Ordering::Relaxed);
        tracing::info!(inflight, grace = ?self.grace, "SIGTERM received; draining in-flight requests.");
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            let inflight = self.state.inflight.load(Ordering::Relaxed);
            if inflight == 0 {
                tracing::info!("Drained; stopping.");
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    inflight,
                    "Shutdown grace ran out; stopping with requests in flight."
                );
                break;
            }
            tokio::select! {
                _ = int.recv() => break,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        ShutdownSignal::FastShutdown
    }
}
