//! OTLP span export off the request path.
//!
//! [`SpanSink::offer`] never blocks: it takes the sampling decision, builds the spans
//! (redacting captured content first) and hands them to a bounded queue; when the queue is
//! full the spans are dropped and counted. The gateway calls it from its recorder, off the
//! request path. An export [`Service`] on the background runtime batches them (up to
//! `batch_size`, or whatever has waited `export_interval`) and calls the OTLP exporter
//! (`opentelemetry-otlp`'s `SpanExporter`, gRPC via tonic or HTTP/protobuf via hyper)
//! directly. The SDK's `BatchSpanProcessor` is not used: it cannot count drops for us and wants
//! the tracer API.
//!
//! The queue is bounded in spans (`queue_size`), counted with an atomic reservation that is
//! released only when a batch has been exported (or has failed), so a stalled or absent
//! collector costs at most `queue_size` spans of memory.
//!
//! Export errors increment `failed` by the batch size and log a warning at most every
//! [`WARN_EVERY`], with the number of failures in between. Warnings name the error, never
//! span content. Standard `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
//! add headers (e.g. a collector's auth token) without putting them in the policy file.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use prometheus_client::metrics::counter::Counter;
use sluice_config::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use tokio::sync::mpsc;

use crate::record::{CapturedContent, RequestRecord};
use crate::redact::Redactor;
use crate::sampler::{Flags, TailSampler};
use crate::semconv as sc;
use crate::service::{Service, Services, Shutdown};
use crate::spans::build_spans;

/// At most one export-failure warning this often.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// Span counters, registered by the caller (the metrics file owns their names).
#[derive(Clone, Debug, Default)]
pub struct ExportCounters {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans dropped because the queue was full (or the pipeline had stopped).
    pub dropped: Counter,
    /// Spans in batches the exporter failed to deliver.
    pub failed: Counter,
}

/// Why the pipeline could not start.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

enum Msg {
    Spans(Vec<SpanData>),
}

struct SinkInner {
    tx: mpsc::UnboundedSender<Msg>,
    /// Spans offered and not yet taken by the worker.
    queued: Arc<AtomicUsize>,
    queue_size: usize,
    /// Sampling and redaction of the policy the pipeline started with; callers that follow
    /// reloads pass their own [`SpanPolicy`].
    policy: SpanPolicy,
    counters: ExportCounters,
}

/// Which finished requests' spans are kept, and how captured content is redacted: compiled
/// from a policy's `telemetry` section, so it can follow reloads.
#[derive(Debug)]
pub struct SpanPolicy {
    sampler: TailSampler,
    /// `Some` when `capture_content` is on.
    redactor: Option<Redactor>,
    max_content_bytes: usize,
}

impl SpanPolicy {
    /// Fails only on a custom redaction pattern that does not compile (validation refuses
    /// those before they get here).
    pub fn new(cfg: &TelemetryConfig) -> Result<Self, Error> {
        let redactor = if cfg.capture_content {
            Some(Redactor::new(&cfg.redact).map_err(Error)?)
        } else {
            None
        };
        Ok(Self {
            sampler: TailSampler::new(&cfg.sample),
            redactor,
            max_content_bytes: cfg.max_content_bytes,
        })
    }
}

/// Where the gateway hands finished requests. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct SpanSink {
    inner: Option<Arc<SinkInner>>,
}

impl fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanSink")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl SpanSink {
    /// A sink that keeps nothing (no `otlp` configured).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether spans go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Offers a finished request under the sampling the pipeline started with.
    pub fn offer(&self, r: &RequestRecord, route_slow: Option<Duration>, flags: Flags) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        self.offer_with(r, route_slow, flags, &inner.policy)
    }

    /// Offers a finished request. Never blocks. Returns whether its spans were queued for
    /// export: `false` when sampling dropped them, the queue was full (`dropped` counts
    /// them), or export is off.
    ///
    /// With `capture_content` on, the record's content is redacted and truncated here, after
    /// the sampling decision (so unsampled requests cost nothing) and before anything is
    /// queued; with it off, content is never put on a span even if the record has some.
    pub fn offer_with(
        &self,
        r: &RequestRecord,
        route_slow: Option<Duration>,
        flags: Flags,
        policy: &SpanPolicy,
    ) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let Some(reason) = policy.sampler.keep(r, route_slow, flags) else {
            return false;
        };
        let content = match (&policy.redactor, &r.content) {
            (Some(redactor), Some(c)) => Some(CapturedContent {
                input: redactor.redact_json(&c.input, policy.max_content_bytes),
                output: redactor.redact_json(&c.output, policy.max_content_bytes),
            }),
            _ => None,
        };
        let mut spans = build_spans(r, content.as_ref());
        if let Some(server) = spans.first_mut() {
            server
                .attributes
                .push(KeyValue::new(sc::SLUICE_SAMPLED_BY, reason.as_str()));
        }
        let n = spans.len();
        let before = inner.queued.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > inner.queue_size {
            inner.queued.fetch_sub(n, Ordering::AcqRel);
            inner.counters.dropped.inc_by(n as u64);
            return false;
        }
        if inner.tx.send(Msg::Spans(spans)).is_err() {
            inner.queued.fetch_sub(n, Ordering::AcqRel);
            inner.counters.dropped.inc_by(n as u64);
            return false;
        }
        true
    }
}

impl SpanSink {
    /// Offers a judge's verdict span (see [`crate::spans::evaluation_span`]). Never blocks;
    /// `false` when export is off or the queue is full (counted as dropped).
    pub fn offer_evaluation(&self, e: &crate::spans::Evaluation) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let before = inner.queued.fetch_add(1, Ordering::AcqRel);
        if before >= inner.queue_size
            || inner
                .tx
                .send(Msg::Spans(vec![crate::spans::evaluation_span(e)]))
                .is_err()
        {
            inner.queued.fetch_sub(1, Ordering::AcqRel);
            inner.counters.dropped.inc();
            return false;
        }
        true
    }
}

/// The span sink and the export service behind it.
pub struct SpanPipeline {
    sink: SpanSink,
    /// The background runtime, when this pipeline owns one (see [`Self::start`]).
    own: Option<Services>,
}

impl fmt::Debug for SpanPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanPipeline")
            .field("enabled", &self.sink.is_enabled())
            .finish()
    }
}

/// The export loop: batches queued spans and calls the OTLP exporter.
struct ExportService {
    exporter: opentelemetry_otlp::SpanExporter,
    rx: mpsc::UnboundedReceiver<Msg>,
    queued: Arc<AtomicUsize>,
    otlp: OtlpConfig,
    counters: ExportCounters,
}

impl Service for ExportService {
    fn name(&self) -> &'static str {
        "otlp-export"
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(*self, shutdown))
    }
}

impl SpanPipeline {
    /// Starts span export on a background runtime of its own (one thread); with no `otlp`
    /// configured, a pipeline whose sink keeps nothing. Fails when the exporter cannot be
    /// built (a bad endpoint, a bad custom redaction regex).
    pub fn start(cfg: &TelemetryConfig, counters: ExportCounters) -> Result<SpanPipeline, Error> {
        let mut services = Services::start(1)
            .map_err(|e| Error(format!("cannot start the OTLP export runtime: {e}")))?;
        let handle = services
            .handle()
            .ok_or_else(|| Error("the background runtime has stopped".into()))?;
        let (sink, export) = Self::build(cfg, counters, &handle)?;
        if let Some(export) = export {
            services.spawn(export);
        }
        Ok(SpanPipeline {
            sink,
            own: Some(services),
        })
    }

    /// The sink and, when `otlp` is configured, the export service to spawn on the
    /// background runtime `handle` belongs to (after whatever feeds the sink, so that it is
    /// stopped after them).
    pub fn build(
        cfg: &TelemetryConfig,
        counters: ExportCounters,
        handle: &tokio::runtime::Handle,
    ) -> Result<(SpanSink, Option<Box<dyn Service>>), Error> {
        let Some(otlp) = cfg.otlp.clone() else {
            return Ok((SpanSink::disabled(), None));
        };
        let policy = SpanPolicy::new(cfg)?;
        // tonic builds its channel inside a runtime.
        let exporter = handle
            .block_on(async { build_exporter(&otlp) })
            .map_err(Error)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let export = ExportService {
            exporter,
            rx,
            queued: Arc::clone(&queued),
            otlp: otlp.clone(),
            counters: counters.clone(),
        };
        let sink = SpanSink {
            inner: Some(Arc::new(SinkInner {
                tx,
                queued,
                queue_size: otlp.queue_size,
                policy,
                counters,
            })),
        };
        Ok((sink, Some(Box::new(export))))
    }

    /// A handle for the request path.
    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// Exports what is queued (waiting at most `timeout`), then stops. Spans offered
    /// afterwards are dropped and counted.
    pub fn shutdown(self, timeout: Duration) {
        if let Some(services) = self.own {
            services.stop(timeout);
        }
    }
}

fn build_exporter(otlp: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match otlp.protocol {
        OtlpProtocol::Grpc => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(otlp.endpoint.clone())
                .with_timeout(otlp.timeout);
            if otlp.endpoint.starts_with("https://") {
                b = b.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
            }
            b.build()
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(otlp.endpoint.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(otlp.timeout)
            .build(),
    };
    let mut exporter = built.map_err(|e| format!("OTLP exporter: {e}"))?;
    exporter.set_resource(&resource());
    Ok(exporter)
}

/// `service.name = sluice`, `service.version`.
pub fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("sluice")
        .with_attribute(KeyValue::new(
            sc::SERVICE_VERSION,
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

struct Exporter {
    inner: opentelemetry_otlp::SpanExporter,
    /// The sink's reservation: released when a batch is done with, so `queue_size` bounds
    /// the channel, the batch being filled and the one in flight together.
    queued: Arc<AtomicUsize>,
    timeout: Duration,
    counters: ExportCounters,
    last_warn: Option<tokio::time::Instant>,
    failed_since_warn: u64,
}

impl Exporter {
    async fn export(&mut self, batch: Vec<SpanData>) {
        let len = batch.len();
        let n = len as u64;
        // The exporter has its own timeout; this one guards against one that hangs anyway.
        let result = tokio::time::timeout(self.timeout * 2, self.inner.export(batch)).await;
        self.queued.fetch_sub(len, Ordering::AcqRel);
        let err = match result {
            Ok(Ok(())) => {
                self.counters.exported.inc_by(n);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.counters.failed.inc_by(n);
        self.failed_since_warn += n;
        let due = self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            tracing::warn!(
                target: "sluice::otlp",
                spans = self.failed_since_warn,
                error = %err,
                "OTLP span export failed (spans counted in the failed counter; next warning in 30s at the earliest)"
            );
            self.last_warn = Some(tokio::time::Instant::now());
            self.failed_since_warn = 0;
        }
    }
}

async fn run(svc: ExportService, mut shutdown: Shutdown) {
    let ExportService {
        exporter,
        mut rx,
        queued,
        otlp,
        counters,
    } = svc;
    let mut exporter = Exporter {
        inner: exporter,
        queued,
        timeout: otlp.timeout,
        counters,
        last_warn: None,
        failed_since_warn: 0,
    };
    let batch_size = otlp.batch_size.max(1);
    let mut buf: Vec<SpanData> = Vec::with_capacity(batch_size);
    let mut tick = tokio::time::interval(otlp.export_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Spans(spans)) => {
                    buf.extend(spans);
                    while buf.len() >= batch_size {
                        let rest = buf.split_off(batch_size);
                        let batch = std::mem::replace(&mut buf, rest);
                        exporter.export(batch).await;
                    }
                }
                None => break,
            },
            () = shutdown.wait() => break,
            _ = tick.tick() => {
                if !buf.is_empty() {
                    let rest = buf.split_off(batch_size.min(buf.len()));
                    let batch = std::mem::replace(&mut buf, rest);
                    exporter.export(batch).await;
                }
            }
        }
    }
    // Refuse new spans (offer counts them as dropped), then export what was offered before.
    rx.close();
    while let Ok(Msg::Spans(spans)) = rx.try_recv() {
        buf.extend(spans);
    }
    while !buf.is_empty() {
        let rest = buf.split_off(batch_size.min(buf.len()));
        let batch = std::mem::replace(&mut buf, rest);
        exporter.export(batch).await;
    }
    let _ = exporter.inner.shutdown();
}
