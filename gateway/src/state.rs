//! Process-wide state shared by every request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use pingora::connectors::{ConnectorOptions, TransportConnector};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

use sluice_observability::{ExportCounters, Metrics, SpanPipeline, SpanSink};
use sluice_policy::{Policy, PolicyStore};

use crate::access_log::AccessLog;
use crate::cache::ResponseCache;
use crate::dns::Resolver;

pub struct AppState {
    pub policy: PolicyStore,
    pub metrics: Metrics,
    pub registry: Registry,
    pub connector: TransportConnector,
    pub resolver: Resolver,
    pub access_log: AccessLog,
    /// Answers of routes with `cache:`; outlives policy reloads.
    pub cache: ResponseCache,
    /// Where finished requests' spans go (sampled, bounded, never blocking).
    pub spans: SpanSink,
    /// Owned here so shutdown can flush it; taken once, after the server stops.
    pipeline: Mutex<Option<SpanPipeline>>,
    /// Requests being served right now; graceful shutdown waits for zero.
    pub inflight: AtomicUsize,
    /// Set on SIGTERM: readiness fails and connections stop being kept alive.
    pub draining: AtomicBool,
    request_seq: AtomicU64,
    request_salt: u64,
}

impl AppState {
    pub fn new(policy: Policy) -> Result<Self, String> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let pool = policy.server.upstream_pool_size;
        let policy_cache_bytes = policy.server.cache_max_bytes;
        let telemetry = &policy.telemetry;
        let counters = ExportCounters {
            exported: metrics.span_counter("exported"),
            dropped: metrics.span_counter("dropped"),
            failed: metrics.span_counter("failed"),
        };
        let pipeline = SpanPipeline::start(telemetry, counters)
            .map_err(|e| format!("cannot start span export: {e}"))?;
        let access_log = AccessLog::start(telemetry.access_log, metrics.access_log_dropped.clone());
        Ok(Self {
            spans: pipeline.sink(),
            pipeline: Mutex::new(Some(pipeline)),
            policy: PolicyStore::new(policy),
            metrics,
            registry,
            connector: TransportConnector::new(Some(ConnectorOptions::new(pool))),
            resolver: Resolver::default(),
            cache: ResponseCache::new(policy_cache_bytes),
            access_log,
            inflight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            request_seq: AtomicU64::new(0),
            request_salt: startup_salt(),
        })
    }

    /// Flushes queued spans and access-log lines; call once, after the server stopped taking
    /// requests.
    pub fn shutdown_telemetry(&self, timeout: std::time::Duration) {
        self.access_log.shutdown();
        let pipeline = self.pipeline.lock().ok().and_then(|mut p| p.take());
        if let Some(p) = pipeline {
            p.shutdown(timeout);
        }
    }

    /// A fresh request id: unique within the process, unguessable across restarts.
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        format!("req_{:016x}", mix(n ^ self.request_salt))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight for as long as it lives.
pub struct InflightGuard<'a>(&'a AtomicUsize);

impl<'a> InflightGuard<'a> {
    pub fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn startup_salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS; good enough to make ids differ across restarts.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// splitmix64's finalizer: a bijection, so distinct counters give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
