//! Assembling and running the pingora server: the data-plane and admin services, the
//! background services (policy watcher, recorder, span exporter), and a shutdown that drains
//! in-flight requests instead of sleeping a fixed grace period, then drains the services.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::ListenerConfig;
use pingora::protocols::ALPN;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use prometheus_client::registry::Registry;
use sluice_config::Config;
use sluice_observability::service::{self, Services};
use sluice_observability::{ExportCounters, Metrics, SpanPipeline};
use sluice_policy::{Policy, PolicyStore, RuntimeState};
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::Admin;
use crate::downstream::{Bound, Downstream};
use crate::handler::DataPlane;
use crate::incident_push;
use crate::judge;
use crate::record::{self, Recorder};
use crate::reload::{PolicyWatch, Reloader};
use crate::slo::{self, SloService};
use crate::state::AppState;
use crate::tls::{self, CertStore, Listener, TlsMetrics};
use sluice_judge::{JudgePool, PoolOptions};

/// How long requests get to end themselves after the grace ran out.
const ABORT_WAIT: Duration = Duration::from_secs(2);

/// How long the background services get to drain after the server stopped.
const DRAIN_SERVICES: Duration = Duration::from_secs(5);

/// Builds and runs the server until a signal stops it. Blocks the calling thread; must not
/// be called from inside a tokio runtime (pingora starts its own). `path` is the policy file
/// that `config` came from (`None` for the embedded quickstart); reloads read it again.
/// `read_as` is the file as it was just before `config` was read from it.
pub fn run(
    config: &Config,
    path: Option<PathBuf>,
    read_as: Option<crate::reload::Fingerprint>,
) -> Result<(), String> {
    let runtime = Arc::new(RuntimeState::new());
    // Before the first compile: every policy includes the judge's internal key.
    let judge_key = crate::judge::internal_key(&runtime);
    // Budgets survive a restart: the spend is back before any key can spend.
    runtime.restore_spend(crate::live::load_spend(&config.server.data_dir)?);
    let policy = Policy::compile(config, &runtime).map_err(|e| e.to_string())?;
    let server_cfg = policy.server.clone();

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let tls_metrics = TlsMetrics::register(&mut registry);
    // Before anything starts: a certificate that does not load stops the start.
    let api_cert = load_cert(Listener::Api, server_cfg.tls.as_ref(), &tls_metrics)?;
    let admin_cert = load_cert(Listener::Admin, server_cfg.admin_tls.as_ref(), &tls_metrics)?;
    // Likewise a port that cannot be listened on.
    let data_socket = Bound::new(server_cfg.listen)?;
    let mut services =
        Services::start(2).map_err(|e| format!("cannot start background services: {e}"))?;
    let handle = services
        .handle()
        .ok_or("the background runtime stopped while starting")?;
    let counters = ExportCounters {
        exported: metrics.span_counter("exported"),
        dropped: metrics.span_counter("dropped"),
        failed: metrics.span_counter("failed"),
        by_destination: metrics.otlp_export.clone(),
    };
    let (spans, export) = SpanPipeline::build(&policy.telemetry, counters, &handle)
        .map_err(|e| format!("cannot start span export: {e}"))?;
    let (records, intake) = service::feed(record::QUEUE, metrics.queue_dropped("records"));
    let (slo_events, slo_intake) = service::feed(slo::QUEUE, metrics.queue_dropped("slo"));
    let (incident_push, incident_push_intake) =
        service::feed(incident_push::QUEUE, metrics.queue_dropped("incident_push"));
    let (judge_jobs, judge_intake) = service::feed(judge::QUEUE, metrics.queue_dropped("judge"));
    let (operator_commands, operator_intake) = service::feed(
        crate::console::operator::QUEUE,
        metrics.queue_dropped("operator"),
    );
    // Limits and budgets shared through Redis: connected before the first request, so it
    // does not start on the fail mode when Redis is there.
    let shared_state = config.state.redis.clone().map(|cfg| {
        let state_metrics = crate::shared::metrics::StateMetrics::register(&mut registry);
        let (usage, usage_intake) =
            crate::shared::SharedState::feed(metrics.queue_dropped("shared_state"));
        let (cache_puts, cache_intake) = if cfg.share_cache {
            let (feed, intake) = service::feed(
                crate::shared::cache::QUEUE,
                state_metrics.cache.dropped.clone(),
            );
            (Some(feed), Some(intake))
        } else {
            (None, None)
        };
        let shared = Arc::new(crate::shared::SharedState::new(
            cfg,
            state_metrics,
            usage,
            cache_puts,
        ));
        let svc = crate::shared::service::StateService::new(Arc::clone(&shared), usage_intake);
        handle.block_on(svc.connect_once());
        let writer = cache_intake
            .map(|intake| crate::shared::cache::CacheWriter::new(Arc::clone(&shared), intake));
        ((shared, svc), writer)
    });
    let (shared_state, cache_writer) = match shared_state {
        Some((s, w)) => (Some(s), w),
        None => (None, None),
    };
    let mut app = AppState::new(
        PolicyStore::new(policy),
        runtime,
        metrics.clone(),
        registry,
        records,
        slo_events,
        judge_jobs,
    );
    let mut state_service = None;
    if let Some((shared, svc)) = shared_state {
        app = app.with_shared(shared);
        state_service = Some(svc);
    }
    let state = Arc::new(app);
    let reloader = Arc::new(
        Reloader::new(path, Arc::clone(&state))
            .with_certs(api_cert.iter().chain(&admin_cert).cloned().collect()),
    );
    let slo = SloService::start(
        Arc::clone(&state),
        slo_intake,
        incident_push,
        server_cfg.data_dir.clone(),
    )?
    .with_commands(operator_intake)
    .with_spans(spans.clone());
    // Stopped in this order: nothing reloads while draining, then the recorder writes its
    // last records (and adds their cost), then the judge finishes the calls it started, then
    // the SLO evaluator counts the last requests and verdicts and saves its state, then its
    // last incident events are pushed, then the spend is saved, then the exporter sends the last spans.
    services.spawn(Box::new(PolicyWatch::new(Arc::clone(&reloader), read_as)));
    let spans_for_judge = spans.clone();
    services.spawn(Box::new(Recorder::new(
        intake,
        metrics,
        spans,
        Arc::clone(&state),
    )));
    let judge_pool = JudgePool::new(
        judge_intake,
        Arc::new(
            judge::Loopback::new(
                Arc::clone(&state),
                server_cfg.listen,
                server_cfg.tls.is_some(),
                judge_key,
            )
            .map_err(|e| format!("cannot set up the judge: {e}"))?,
        ),
        Arc::new(judge::Sinks {
            state: Arc::clone(&state),
            spans: spans_for_judge,
            recent: Arc::clone(&state.judge_recent),
        }),
        Arc::new(sluice_judge::SystemClock),
        PoolOptions {
            tick: Duration::from_millis(20),
            max_held: 1024,
            route_backlog: 64,
        },
    );
    services.spawn(Box::new(judge_pool));
    services.spawn(Box::new(slo));
    // After the SLO service, so the events of its last tick are pushed too.
    services.spawn(Box::new(incident_push::for_server(
        incident_push_intake,
        &state,
    )));
    // After the recorder: it adds the last requests' tokens and cost in Redis.
    if let Some(svc) = state_service {
        services.spawn(Box::new(svc));
    }
    // After the connections close: the last stored answers still reach the other replicas.
    if let Some(writer) = cache_writer {
        services.spawn(Box::new(writer));
    }
    let pools = Arc::clone(&state);
    let idle_gauges = state.egress.idle_gauges();
    services.spawn(Box::new(crate::providers::pool::Sweep::new(
        move || {
            let mut all = pools.egress.pools();
            all.push((
                crate::providers::pool::SHARED.to_owned(),
                Arc::clone(&pools.connector),
            ));
            all
        },
        idle_gauges,
    )));
    services.spawn(Box::new(crate::live::LiveState::new(
        Arc::clone(&state),
        server_cfg.data_dir.clone(),
    )));
    if let Some(export) = export {
        services.spawn(export);
    }

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

    // The data plane accepts its own connections (see `downstream::listen`), on a runtime of
    // `server.threads` workers. No L4 buffers: the H1 session reads request heads and bodies
    // into buffers of its own, HTTP/1 connections write through `downstream::coalesce`, and
    // HTTP/2 frames are buffered by the h2 codec.
    let tls = match (&api_cert, &server_cfg.tls) {
        (Some(store), Some(cfg)) => Some(tls::settings(store, cfg, ALPN::H2H1)?.build()),
        _ => None,
    };
    let listener = data_socket.serve(
        tls,
        Downstream {
            app: Arc::new(DataPlane {
                state: Arc::clone(&state),
            }),
        },
    );
    let mut data = background_service("sluice data plane", listener);
    data.threads = Some(server_cfg.threads);
    let mut admin = Service::new(
        "sluice admin".to_owned(),
        HttpServer::new_app(Admin {
            state: Arc::clone(&state),
            reloader,
            console: crate::console::Console {
                sessions: crate::console::Sessions::default(),
                commands: operator_commands,
            },
        }),
    );
    admin.threads = Some(1);
    match (&admin_cert, &server_cfg.admin_tls) {
        (Some(store), Some(cfg)) => admin.add_listener(
            ListenerConfig::tcp(server_cfg.admin_listen.to_string()).tls(tls::settings(
                store,
                cfg,
                ALPN::H2H1,
            )?),
        ),
        _ => admin.add_tcp(&server_cfg.admin_listen.to_string()),
    }
    server.add_service(data);
    server.add_service(admin);

    tracing::info!(
        listen = %server_cfg.listen,
        admin = %server_cfg.admin_listen,
        tls = server_cfg.tls.is_some(),
        admin_tls = server_cfg.admin_tls.is_some(),
        admin_mtls = server_cfg.admin_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        h2c = server_cfg.http2.h2c,
        threads = server_cfg.threads,
        "Sluice is starting."
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnTerm {
            state: Arc::clone(&state),
        }),
    });
    services.stop(DRAIN_SERVICES);
    tracing::info!("Sluice stopped.");
    Ok(())
}

/// The certificate of a listener with TLS configured; `None` for a plain one.
fn load_cert(
    listener: Listener,
    cfg: Option<&sluice_config::TlsConfig>,
    metrics: &TlsMetrics,
) -> Result<Option<Arc<CertStore>>, String> {
    cfg.map(|c| {
        CertStore::load(listener, c, metrics.clone()).map_err(|e| {
            format!(
                "cannot serve TLS on the {} listener: {e}",
                listener.as_str()
            )
        })
    })
    .transpose()
}

/// SIGINT stops at once. SIGTERM starts draining: readiness fails, connections stop being
/// kept alive, and the process exits as soon as no request is in flight, or when
/// `server.shutdown_grace` runs out, whichever comes first.
struct DrainOnTerm {
    state: Arc<AppState>,
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
        // The grace of the policy serving now: it may have been reloaded since the start.
        let grace = self.state.policy.snapshot().server.shutdown_grace;
        tracing::info!(inflight, grace = ?grace, "SIGTERM received; draining in-flight requests.");
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let inflight = self.state.inflight.load(Ordering::Relaxed);
            if inflight == 0 {
                tracing::info!("Drained; stopping.");
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    inflight,
                    "Shutdown grace ran out; ending the requests still in flight."
                );
                // Each open request ends itself properly: a stream with an error event and
                // its terminator, an answer not yet started with a 503; each is recorded.
                self.state.abort.send_replace(true);
                let last_words = tokio::time::Instant::now() + ABORT_WAIT;
                while self.state.inflight.load(Ordering::Relaxed) > 0
                    && tokio::time::Instant::now() < last_words
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
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
